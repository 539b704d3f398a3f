"""The executor seam without Ray: sharding, the counts hub's exact once-only merge, the shard link."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.executor.learning import CountsHub, HubLink
from rapo.executor.ray_cluster import shards
from rapo.state import CapabilityMatrix

counts = st.lists(st.integers(0, 5), min_size=6, max_size=6).map(lambda v: np.array(v, float).reshape(2, 3))


@given(st.integers(0, 300), st.integers(1, 40))
def test_shards_deal_every_conversation_once_and_evenly(n, k):
    parts = shards(n, k)
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert len(parts) == max(1, min(n, k))


@settings(max_examples=50)
@given(st.lists(st.tuples(counts, counts), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_the_hub_merge_is_exact_order_free_and_counts_a_conversation_once(deltas, rnd):
    items = [(f"c{i}", d) for i, d in enumerate(deltas)]
    shuffled = items[:]
    rnd.shuffle(shuffled)
    a, b = CountsHub(), CountsHub()
    for cid, d in items:
        a.add("job", cid, d)
    for cid, d in shuffled + shuffled[: len(shuffled) // 2]:  # some replayed, as by a retried task
        b.add("job", cid, d)
    want = (sum(d[0] for _, d in items), sum(d[1] for _, d in items))
    for hub in (a, b):
        got = hub.counts("job")
        np.testing.assert_allclose(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
        assert hub.applied("job") == len(items)


def _matrix() -> CapabilityMatrix:
    return CapabilityMatrix(np.full((2, 3), 0.5), strength=2.0)


def test_two_shards_linked_to_one_hub_learn_what_both_learned():
    hub = CountsHub()
    call = lambda m, *a: getattr(hub, m)(*a)  # noqa: E731
    m1, m2 = _matrix(), _matrix()
    l1, l2 = HubLink(call, call, "job", m1), HubLink(call, call, "job", m2)
    l1.begin()
    l2.begin()
    m1.update(0, np.array([1.0, 0, 0]), True)
    m2.update(1, np.array([0, 1.0, 0]), False)
    m2.update(1, np.array([0, 0, 1.0]), True)
    l1.done("a", l1.delta())
    l2.done("b", l2.delta())
    s, f = hub.counts("job")
    assert s[0, 0] == 1 and s[1, 2] == 1 and f[1, 1] == 1 and s.sum() + f.sum() == 3
    np.testing.assert_allclose(m2.counts()[0], s)  # the second shard now sees the first's learning too
    l2.done("b", l2.delta())  # a replay of b adds nothing
    np.testing.assert_allclose(hub.counts("job")[0], s)


def test_a_shard_that_learns_nothing_reports_progress_in_batches():
    hub = CountsHub()
    sent = []
    link = HubLink(lambda m, *a: getattr(hub, m)(*a), lambda m, *a: (sent.append(len(a[1])), getattr(hub, m)(*a)),
                   "rr", None)
    for i in range(60):
        link.done(f"c{i}", None)
    link.flush()
    assert hub.progress() == 60 and len(sent) < 60 and sum(sent) == 60
