"""The compact structures behind rapo's memory and speed at scale: each equals the plain one it replaces.

Sparse agent contexts against the dense matrix, compact routing scores against a list of models,
the ledger's indexed lookup against a scan of every fact, and `trusted` models against validated ones.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, PrivateAttr

from rapo.embed import HashingEmbedder
from rapo.ledger import Fact, Ledger, segment_query
from rapo.orchestrator import ContextItem, TurnRecord
from rapo.routing import AgentScore, AgentScores, Router, RoutingDecision
from rapo.state import AgentContexts, CapabilityMatrix
from rapo.team import RoutingConfig
from rapo.types import Message, trusted

DIM = 8


def _dense_absorb(dense: np.ndarray, agents: list[int], vector: np.ndarray, rate: float = 0.5) -> None:
    """The dense update AgentContexts replaces (rapo before sparse contexts), as the reference."""
    idx = np.asarray(agents, dtype=np.int64)
    if idx.size:
        moved = (1.0 - rate) * dense[idx] + rate * vector
        norms = np.linalg.norm(moved, axis=1, keepdims=True)
        dense[idx] = moved / np.where(norms > 0, norms, 1.0)


vectors = st.lists(st.floats(-1, 1, allow_subnormal=False, width=32), min_size=DIM, max_size=DIM).map(
    lambda v: np.asarray(v, dtype=np.float32))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_sparse_contexts_equal_the_dense_matrix(n: int, data: st.DataObject) -> None:
    ctx, dense = AgentContexts(n, DIM), np.zeros((n, DIM), dtype=np.float32)
    assert (ctx.agents is None) == (n <= AgentContexts.DENSE_MAX_AGENTS)
    steps = data.draw(st.lists(st.tuples(st.lists(st.integers(0, n - 1), max_size=4), vectors), max_size=12))
    for agents, vec in steps:  # repeated agents, zero vectors and empty updates included
        ctx.absorb(agents, vec, 0.5)
        _dense_absorb(dense, agents, vec)
    assert ctx.shape == (n, DIM)
    np.testing.assert_array_equal(np.asarray(ctx), dense)  # the update is the same arithmetic, row by row
    probe = data.draw(vectors)
    sims = ctx @ probe
    assert sims.dtype == (dense @ probe).dtype and sims.shape == (n,)
    if ctx.agents is None:
        np.testing.assert_array_equal(sims, dense @ probe)  # small teams: the very same product
    else:  # a BLAS product over fewer rows may round differently in the last place
        np.testing.assert_allclose(sims, dense @ probe, rtol=1e-5, atol=1e-6)
        assert set(ctx.agents.tolist()) == set(np.flatnonzero(np.any(dense != 0, axis=1)).tolist())
        assert len(ctx.rows) == len(ctx.agents) and np.all(np.diff(ctx.agents) > 0)
    again = AgentContexts.from_dense(np.asarray(ctx))  # a checkpoint's dense matrix restores the same state
    np.testing.assert_array_equal(again @ probe, sims)


def test_a_thousand_agents_store_only_the_rows_of_agents_that_acted() -> None:
    ctx = AgentContexts(1000, 384)
    for agent in (7, 3, 7, 999):
        ctx.absorb([agent], np.ones(384, dtype=np.float32), 0.5)
    assert ctx.agents.tolist() == [3, 7, 999] and ctx.rows.nbytes == 3 * 384 * 4
    sims = ctx @ np.ones(384, dtype=np.float32)
    assert np.count_nonzero(sims) == 3 and sims[[3, 7, 999]] == pytest.approx([384**0.5] * 3)


def _route(n: int, trace_scores: int | None, seed: int = 0) -> tuple[RoutingDecision, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = [f"a{i}" for i in range(n)]
    matrix = CapabilityMatrix(rng.random((n, 3)), 10.0)
    context = AgentContexts.from_dense(np.where(rng.random((n, 1)) < 0.3, rng.random((n, DIM)), 0).astype(np.float32))
    router = Router(names, RoutingConfig(exploration="thompson", trace_scores=trace_scores, seed=seed))
    return router.rank(np.array([0.5, 0.3, 0.2]), rng.random(DIM).astype(np.float32), matrix, context,
                       rng.integers(0, 3, n).astype(float), previous=int(rng.integers(n)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.one_of(st.none(), st.integers(1, 20)), seed=st.integers(0, 1000))
def test_compact_scores_are_the_full_decision_cut_to_the_best(n: int, k: int | None, seed: int) -> None:
    full, order = _route(n, None, seed)
    cut, order_cut = _route(n, k, seed)
    np.testing.assert_array_equal(order, order_cut)  # the same random stream, the same routing
    assert full.chosen == cut.chosen and full.confidence == cut.confidence
    assert full.ranked == order.tolist() and len(full.scores) == n
    keep = n if k is None else min(k, n)
    assert cut.ranked == order[:keep].tolist()
    by_name = {s.agent: s for s in full.scores}
    assert [s.agent for s in cut.scores] == [f"a{i}" for i in sorted(order[:keep].tolist())]  # team order
    for s in cut.scores:
        assert s == by_name[s.agent]
        assert s.score == pytest.approx(s.capability + s.context + s.load + s.switch)
    # the trace's JSON is what a list of AgentScore models gives, and reads back equal
    dumped = cut.model_dump(mode="json")
    assert dumped["scores"] == [AgentScore.model_validate(s.model_dump()).model_dump() for s in cut.scores]
    assert RoutingDecision.model_validate(json.loads(json.dumps(dumped))) == cut
    assert pickle.loads(pickle.dumps(cut)) == cut


def test_agent_scores_read_like_a_list() -> None:
    scores = AgentScores.from_scores([AgentScore(agent=n, score=i, capability=i, capability_mean=i, context=0,
                                                 load=0, switch=0) for i, n in enumerate("xyz")])
    assert len(scores) == 3 and scores[-1].agent == "z" and [s.agent for s in scores[1:]] == ["y", "z"]
    assert scores == list(scores) and scores.dump()[0] == scores[0].model_dump()
    with pytest.raises(IndexError):
        scores[3]


# --- the ledger's indexes against a scan of every fact ----------------------------------------------

ATTRS = ["refund limit", "shipping fee", "fee", "tier", "credit score", "deposits", "limit"]
IDS = ["A17", "B22", "C5", "K4", "L40"]


def _scan_named(ledger: Ledger, query: str, excluded: set[str]) -> set[int]:
    """Every current, allowed fact the query names, found by looking at each fact in turn."""
    segments = segment_query(query)
    all_tokens = set().union(*(s.tokens for s in segments)) if segments else set()

    def attr_in(f: Fact, words: frozenset[str]) -> bool:
        aw = f.attribute.split()
        return bool(aw) and all(w in words for w in aw)

    named = set()
    for f in (ledger.get(i) for i in range(len(ledger))):
        if not f.current or f.origin in excluded:
            continue
        if f.entity_ids:
            ids = set(f.entity_ids)
            hit = any(ids <= s.tokens and attr_in(f, s.words) for s in segments)
            hit = hit or bool(f.value_ids and ids <= all_tokens)
        else:
            hit = any(attr_in(f, s.words) for s in segments)
        if hit:
            named.add(f.id)
    return named


statements = st.tuples(st.sampled_from(ATTRS), st.one_of(st.none(), st.sampled_from(IDS)),
                       st.one_of(st.integers(1, 9).map(lambda v: f"{v} dollars"), st.sampled_from(IDS)),
                       st.sampled_from(["user", "agent"]))


@settings(max_examples=60, deadline=None)
@given(facts=st.lists(statements, max_size=25),
       asked=st.lists(st.tuples(st.sampled_from(ATTRS), st.one_of(st.none(), st.sampled_from(IDS))), min_size=1,
                      max_size=3))
def test_indexed_lookup_names_what_a_scan_of_every_fact_names(facts, asked) -> None:
    ledger = Ledger(HashingEmbedder(dim=64))
    for turn, (attr, eid, value, origin) in enumerate(facts):
        subject = f"the {attr} for order {eid}" if eid else f"the {attr}"
        ledger.add_text(f"{subject[0].upper()}{subject[1:]} is {value}.", turn=turn, source=origin, origin=origin)
    query = "What is " + " and ".join(f"the {a} for {e}" if e else f"the {a}" for a, e in asked) + "?"
    for excluded in (set(), {"agent"}):
        chosen = ledger.select(query, budget_tokens=10_000, k_relevant=0, exclude_origin=excluded)
        assert {s.fact.id for s in chosen if s.reason == "named"} == _scan_named(ledger, query, excluded)


# --- trusted models ---------------------------------------------------------------------------------


def test_trusted_models_equal_validated_ones_and_share_one_field_set() -> None:
    a = trusted(ContextItem, fact_id=1, turn=2, source="user", text="t", reason="named", score=0.5)
    b = ContextItem(fact_id=1, turn=2, source="user", text="t", reason="named", score=0.5)
    assert a == b and a.model_dump() == b.model_dump() and repr(a) == repr(b)
    c = trusted(ContextItem, fact_id=2, turn=2, source="user", text="u", reason="relevant", score=0.1)
    assert a.model_fields_set is c.model_fields_set == set(ContextItem.model_fields)
    r = TurnRecord.start("c1", 3, "What is it?", True)
    assert r == TurnRecord(conversation="c1", turn=3, text="What is it?", needs_answer=True)
    r.agent = "retriever"  # assignment works as on any record, and leaves other records alone
    assert TurnRecord.start("c1", 4, "x", False).agent is None
    m = trusted(Message, role="user", content="hi")  # a missing field takes its default
    assert m == Message(role="user", content="hi") and hash(m) == hash(Message(role="user", content="hi"))
    assert pickle.loads(pickle.dumps(r)) == r


def test_trusted_refuses_models_with_private_state() -> None:
    class Secret(BaseModel):
        x: int
        _cache: int = PrivateAttr(0)

    with pytest.raises(TypeError):
        trusted(Secret, x=1)
