"""Checkpoints: a conversation resumed from the store continues exactly as if never stopped."""

import sqlite3

import pytest

from rapo.backends.sim import SimBackend
from rapo.orchestrator import Orchestrator
from rapo.store import SQLiteStore, open_store
from rapo.team import bench_team
from rapo.types import RapoError

TURNS = [
    "The refund limit for order A17 is 120 dollars. The customer for order A17 is customer C5.",
    "The tier for customer C5 is Gold. The refund limit for order A71 is 90 dollars.",
    "What is the refund limit for order A17?",
    "Correction: the refund limit for order A17 is now 150 dollars.",
    "The discount rate for the Gold tier is 15 percent.",
    "What is the refund limit for order A17 plus the refund limit for order A71?",
    "What is the discount rate for the tier of the customer for order A17?",
    "Is it true that the refund limit for order A17 is 120 dollars?",
]


def _signature(records):
    return [(r.turn, r.agent, r.value, r.answer, r.prompt_tokens, r.calls) for r in records]


async def test_resume_equals_uninterrupted(tmp_path):
    straight = Orchestrator(bench_team(), SimBackend(seed=4))
    conv = straight.new_conversation("c1")
    for t in TURNS:
        await straight.astep(conv, t)

    store = SQLiteStore(tmp_path / "run.db")
    first = Orchestrator(bench_team(), SimBackend(seed=4))
    half = first.new_conversation("c1")
    for t in TURNS[:4]:
        await first.astep(half, t)
        first.checkpoint(half, store, "run-1")
    store.close()

    store = open_store(f"sqlite:///{tmp_path / 'run.db'}")
    second = Orchestrator(bench_team(), SimBackend(seed=4))
    resumed = second.restore(store, "run-1", "c1")
    assert resumed.turn == 4 and len(resumed.ledger) == len(half.ledger)
    assert [f.value for f in resumed.ledger.current()] == [f.value for f in half.ledger.current()]
    for t in TURNS[4:]:
        await second.astep(resumed, t)
    assert _signature(resumed.records) == _signature(conv.records)
    assert (second.matrix.successes == straight.matrix.successes).all()
    assert store.runs() == ["run-1"] and store.keys("run-1", "conversation/") == ["conversation/c1"]


def test_unknown_conversation_names_what_the_run_has(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    orch = Orchestrator(bench_team(), SimBackend())
    orch.checkpoint(orch.new_conversation("a"), store, "r")
    with pytest.raises(RapoError, match="no checkpoint of conversation 'b'.*it has: a"):
        orch.restore(store, "r", "b")


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(RapoError, match="not a rapo checkpoint store"):
        SQLiteStore(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(RapoError, match="not a rapo checkpoint store.*users"):
        SQLiteStore(other)
    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE rapo_meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(RapoError, match="newer rapo"):
        SQLiteStore(newer)


def test_put_many_writes_all_documents_or_none(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    store.put("r", "x", {"v": 1})
    with pytest.raises(TypeError):
        store.put_many("r", {"x": {"v": 2}, "y": {"v": object()}})  # the second cannot be serialised
    assert store.get("r", "x") == {"v": 1} and store.get("r", "y") is None
