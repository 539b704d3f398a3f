"""Prompt rendering: a custom template splits at its user marker; the default one, rendered half by
half (system part cached, user part shared by a round's agents), equals its whole render."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.orchestrator import ContextItem
from rapo.prompts import OUTPUT_FORMAT, USER_MARKER, PromptBuilder
from rapo.types import Message

TYPES = ["lookup", "arithmetic", "multi_hop"]


def test_a_custom_template_splits_at_its_marker_and_without_one_is_all_user():
    b = PromptBuilder(TYPES)
    plan = b.plan(np.array([0.6, 0.4, 0.0]), 0.2, 0.5)
    two = b.render("You are {{ role }}. " + USER_MARKER + " Task: {{ task }}", role="clerk", plan=plan,
                   context=[], task="What is it?", handoff=None)
    assert [(m.role, m.content) for m in two] == [("system", "You are clerk."), ("user", "Task: What is it?")]
    one = b.render("Only {{ task }}", role="clerk", plan=plan, context=[], task="t?", handoff=None)
    assert [(m.role, m.content) for m in one] == [("user", "Only t?")]


words = st.text(alphabet="abcdefgh ijk.,?0123456789", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(role=words, task=words, handoff=st.none() | words, peers=st.none() | words,
       facts=st.lists(words, max_size=3), r=st.lists(st.floats(0, 1), min_size=3, max_size=3),
       difficulty=st.floats(0, 1), match=st.floats(0, 1))
def test_the_default_template_rendered_by_halves_equals_its_whole_render(role, task, handoff, peers, facts, r,
                                                                          difficulty, match):
    b = PromptBuilder(TYPES)
    plan = b.plan(np.array(r) + 1e-3, difficulty, match)
    context = [ContextItem(fact_id=i, turn=1, source="user", text=f, reason="named", score=1.0)
               for i, f in enumerate(facts)]
    history = [Message(role="user", content="earlier"), Message(role="assistant", content="Answer: 3")]
    shared: dict[str, Message] = {}
    halves = [b.render(None, role=role, plan=plan, context=context, task=task, handoff=handoff, history=history,
                       peers=peers, shared=shared) for _ in range(2)]  # the second reuses the shared user message
    compiled, env_globals = b._compile(b.default_template())
    whole = b._run(compiled, {**env_globals, "role": role, "strategy": plan.strategy, "output_format": OUTPUT_FORMAT,
                              "context": context, "handoff": handoff or "", "history": history,
                              "task": task if not peers else f"{task}\n{peers}"})
    system, _, user = whole.partition(USER_MARKER)
    for messages in halves:
        assert [(m.role, m.content) for m in messages] == [("system", system.strip()), ("user", user.strip())]
