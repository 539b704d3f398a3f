"""A consensus on a backend that sends one request at a time (a llama.cpp server): it waits or
degrades with a warning, and counts as calls and tokens only what reached the endpoint."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fake_openai_server import FakeOpenAIServer

from rapo.backends import dispatch
from rapo.backends.openai_compat import OpenAIBackend
from rapo.orchestrator import Orchestrator
from rapo.team import team_from_dict
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Completion

QUESTION = "What is the refund limit for order A17?"


def four_agent_team(**consensus):
    agents = [{"name": n, "role": f"You are {n}.", "model": f"m-{n}", "capabilities": {"lookup": 0.9}}
              for n in ("ann", "bob", "cy", "dee")]
    return team_from_dict({"agents": agents, "routing": {"exploration": "none", "beta": 0.0, "delta": 0.0},
                           "consensus": {"mode": "always", "m": 4, "threshold": 0.5, **consensus}})


class OneSlot:
    """A client-side queue of one slot in front of a model that takes real time, as OpenAIBackend
    with max_concurrency=1 is; it counts the requests it really sent and the tokens it served."""

    max_concurrency = 1

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s, self.sent, self.served_prompt_tokens = delay_s, 0, 0
        self._slot = asyncio.Semaphore(1)

    async def complete(self, messages, *, model, max_tokens=None, sample=0):
        dispatch.queued()
        async with self._slot:
            dispatch.sent()
            self.sent += 1
            await asyncio.sleep(self.delay_s)
            text = "The limit is 150.\nAnswer: 150 dollars"
            c = Completion(text=text, prompt_tokens=count_message_tokens(m.content for m in messages),
                           output_tokens=count_tokens(text), latency_s=self.delay_s, model=model)
            self.served_prompt_tokens += c.prompt_tokens
            return c

    async def aclose(self) -> None:
        return None


async def test_queued_consensus_waits_warns_and_counts_only_sent_calls(caplog):
    backend = OneSlot()
    orch = Orchestrator(four_agent_team(), backend)
    with caplog.at_level(logging.WARNING, logger="rapo"):
        rec = await orch.astep(orch.new_conversation(), QUESTION, requirement={"lookup": 1.0})
        sent, served = backend.sent, backend.served_prompt_tokens
        await orch.astep(orch.new_conversation(), QUESTION, requirement={"lookup": 1.0})
    assert rec.value == "150 dollars" and rec.error is None  # answered, not failed
    warned = [r for r in caplog.records if "sends 1 request(s) at a time" in r.getMessage()]
    assert len(warned) == 1  # once per backend, not per turn
    rnd = rec.consensus.rounds[0]
    answered = sum(v is not None for v in rnd.values.values())
    assert answered == 2 and len(rnd.agents) == 4  # two equal votes of four settle it
    # The fourth call was still queued when the vote was settled: never sent, so never counted.
    assert rec.calls == sent < 4
    assert rec.unanswered_calls == rec.calls - answered
    assert rec.prompt_tokens - rec.unanswered_prompt_tokens == served  # exactly what the model served


async def test_degrade_asks_only_as_many_agents_as_the_backend_has_slots(caplog):
    backend = OneSlot()
    orch = Orchestrator(four_agent_team(queued="degrade"), backend)
    with caplog.at_level(logging.WARNING, logger="rapo"):
        rec = await orch.astep(orch.new_conversation(), QUESTION, requirement={"lookup": 1.0})
    assert rec.value == "150 dollars"
    assert rec.consensus.rounds[0].agents == [rec.agent] and backend.sent == 1 and rec.calls == 1
    assert any("degrade" in r.getMessage() for r in caplog.records)


async def test_consensus_over_http_counts_what_the_server_served():
    """OpenAIBackend with one slot against a loopback server: the prompt tokens rapo reports for
    answered calls are the server's own usage figures, and no call is counted that it never got."""
    server = FakeOpenAIServer().start()
    server.state.default_delay_s = 0.05
    try:
        backend = OpenAIBackend(base_url=server.base_url, max_concurrency=1, timeout_s=10)
        orch = Orchestrator(four_agent_team(), backend)
        rec = await orch.astep(orch.new_conversation(), QUESTION, requirement={"lookup": 1.0})
        await backend.aclose()
        await asyncio.sleep(0.2)  # a request cancelled in flight still reaches the server's log
        answered = sum(v is not None for v in rec.consensus.rounds[0].values.values())
        assert rec.calls < 4 and server.request_count <= rec.calls
        assert rec.prompt_tokens - rec.unanswered_prompt_tokens == 11 * answered  # the server's usage: 11 each
        assert rec.output_tokens == 3 * answered
    finally:
        server.stop()


def test_slots_look_through_wrappers():
    class Wrapper:
        def __init__(self, inner):
            self.inner = inner

    assert dispatch.slots(Wrapper(Wrapper(OneSlot()))) == 1
    assert dispatch.slots(object()) is None
