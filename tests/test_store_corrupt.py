"""Issue 12, defect 5: a damaged store never takes the service down with a traceback and never loses
data silently. A damaged row is quarantined with a warning naming it while the rest loads; a damaged
file is refused with one message and the way to recover, and left exactly as it was."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rapo.store import SQLiteStore, open_store
from rapo.types import RapoError

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
RUN = "serve/bench-support"


def _filled(path: Path, n: int = 300) -> None:
    store = SQLiteStore(path)
    for i in range(n):
        store.put("r", f"doc/{i:05d}", {"i": i, "text": f"row {i} " * 40})
    store.close()


def _bytes(*paths: Path) -> list[bytes | None]:
    return [p.read_bytes() if p.exists() else None for p in paths]


def test_garbage_in_the_middle_of_the_file_is_refused_with_the_recovery_path(tmp_path):
    db = tmp_path / "g.db"
    _filled(db)
    data = bytearray(db.read_bytes())
    mid = len(data) // 2 // 4096 * 4096
    data[mid:mid + 4096] = b"\xde\xad\xbe\xef" * 1024  # one whole page in the middle
    db.write_bytes(bytes(data))
    before = _bytes(db)
    with pytest.raises(RapoError, match=r"is damaged .*nothing in it was changed.*\.recover") as err:
        SQLiteStore(db)
    assert "not a rapo checkpoint store" not in str(err.value)
    assert _bytes(db) == before


def _with_wal(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a store taken while a writer had it open: main file and write-ahead log."""
    src = tmp_path / "live.db"
    _filled(src, 10)
    store = SQLiteStore(src)
    store._db.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(200):
        store.put("r", f"late/{i:05d}", {"i": i, "text": "in the log only " * 40})
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(src, copy / "y.db")
    shutil.copy(src.with_name("live.db-wal"), copy / "y.db-wal")
    store.close()
    return copy / "y.db", copy / "y.db-wal"


def test_a_truncated_file_beside_its_log_is_called_damaged_not_foreign(tmp_path):
    db, wal = _with_wal(tmp_path)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    before = _bytes(db, wal)
    with pytest.raises(RapoError, match="is damaged") as err:
        SQLiteStore(db)
    assert "not a rapo checkpoint store" not in str(err.value) and ".recover" in str(err.value)
    assert _bytes(db, wal) == before


def test_an_empty_file_beside_a_log_that_holds_data_is_not_opened_empty(tmp_path):
    db, wal = _with_wal(tmp_path)
    db.write_bytes(b"")
    before = _bytes(db, wal)
    with pytest.raises(RapoError, match=r"is 0 bytes long but its write-ahead log y\.db-wal holds \d+ bytes"):
        SQLiteStore(db)
    assert _bytes(db, wal) == before  # SQLite would have discarded the log
    db.unlink()
    with pytest.raises(RapoError, match="is missing but its write-ahead log"):
        open_store(f"sqlite:///{db}")
    assert not db.exists()


def test_the_service_refuses_a_damaged_file_with_one_message(tmp_path):
    db, _ = _with_wal(tmp_path)
    db.write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "rapo.cli", "serve", "--team", str(TEAM), "--backend", "sim",
                          "--port", "8977", "--store", f"sqlite:///{db}"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text
    assert "write-ahead log" in " ".join(text.split())


@pytest.fixture
def served(tmp_path):
    """A server store with three conversations, each with a turn, closed again."""
    pytest.importorskip("fastapi")
    import asyncio

    import httpx

    from rapo.server import create_app
    from rapo.server.durable import DurableConversationStore

    url = f"sqlite:///{tmp_path / 's.db'}"

    async def fill() -> list[str]:
        durable = DurableConversationStore.open(url)
        app = create_app(TEAM, backend="sim", store=durable)
        ids = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for i in range(3):
                cid = (await c.post("/conversations")).json()["id"]
                await c.post(f"/conversations/{cid}/turns", json={"text": f"The tier for customer C{i} is Gold."})
                ids.append(cid)
        durable.close()
        return ids

    return url, asyncio.run(fill())


def _restart(url: str):
    from rapo.server import create_app
    from rapo.server.durable import DurableConversationStore

    durable = DurableConversationStore.open(url)
    create_app(TEAM, backend="sim", store=durable)
    return durable


@pytest.mark.parametrize("where", ["journal", "legacy", "meta"])
def test_a_damaged_row_is_quarantined_with_a_warning_and_the_rest_loads(served, where, caplog):
    url, ids = served
    bad = ids[1]
    store = open_store(url)
    if where == "journal":
        key, raw = f"journal/{bad}/base", json.dumps({"format": 1})
        store.put(RUN, key, {"format": 1})
    elif where == "legacy":  # a store written before the journal, with the row of the original report
        for k in store.keys(RUN, f"journal/{bad}/"):
            store.put_many(RUN, {}, delete=[k])
        key, raw = f"conversation/{bad}", json.dumps({"format": 1})
        store.put(RUN, key, {"format": 1})
    else:
        key, raw = f"meta/{bad}", "{not json"
        store.close()
        con = sqlite3.connect(url[len("sqlite:///"):])
        con.execute("UPDATE docs SET doc=? WHERE key=?", (raw, key))
        con.commit()
        con.close()
        store = open_store(url)
    store.close()
    with caplog.at_level(logging.WARNING, logger="rapo.server"):
        durable = _restart(url)
    try:
        assert key in durable.quarantined
        assert any(key in r.getMessage() and "quarantine/" + key in r.getMessage() for r in caplog.records)
        assert durable.get(ids[0]).state.turn == 1 and durable.get(ids[2]).state.turn == 1  # the rest loaded
        assert durable.get(bad) is None
        kept = durable.store.get(RUN, f"quarantine/{key}")
        assert kept["raw"] == raw.replace(" ", "") or kept["raw"] == raw  # its text, as it was
    finally:
        durable.close()


def test_the_sqlalchemy_store_makes_the_same_refusals(tmp_path):
    pytest.importorskip("sqlalchemy")
    db, wal = _with_wal(tmp_path)
    db.write_bytes(b"")
    with pytest.raises(RapoError, match="write-ahead log"):
        open_store(f"sqlite+pysqlite:///{db}")
    missing = tmp_path / "missing.db"
    with pytest.raises(RapoError, match="nothing was created"):
        open_store(f"sqlite+pysqlite:///{missing}", create=False)
    assert not missing.exists()
    garbage = tmp_path / "g.db"
    _filled(garbage)
    data = bytearray(garbage.read_bytes())
    mid = len(data) // 2 // 4096 * 4096
    data[mid:mid + 4096] = b"\xde\xad\xbe\xef" * 1024
    garbage.write_bytes(bytes(data))
    with pytest.raises(RapoError, match="is damaged"):
        open_store(f"sqlite+pysqlite:///{garbage}")
