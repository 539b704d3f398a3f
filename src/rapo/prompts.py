"""Reasoning-aware prompt building: sections of P_i filled for one step and one agent.

The strategy section depends on what the step needs (r(s)), how hard it looks and how well the agent
matches; the context section carries ledger facts, never the transcript, so prompts stay short and
facts from any distance stay in view.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np
from jinja2 import Environment, StrictUndefined, TemplateError
from pydantic import BaseModel

from rapo.types import Message, RapoError, trusted

USER_MARKER = "---user---"

OUTPUT_FORMAT = (
    "Reply with one short sentence that states the result and the facts it rests on, then a last line "
    "'Answer: <value>' holding the value alone (a number with its unit, a name, or yes/no). "
    "If the facts needed are not given, say so and answer 'Answer: unknown'."
)

STATIC_STRATEGY = "Answer the user's request using the facts given."

TERSE = {
    "lookup": "Read the value straight from the facts.",
    "arithmetic": "Take the two quantities from the facts and compute.",
    "comparison": "Compare the quantities named and name the winner.",
    "aggregation": "Combine the quantities named over the listed items.",
    "deduction": "Follow the links between the facts to the value asked for.",
    "verification": "Check the claim against the current fact.",
    "planning": "Lay out the plan directly.",
    "summarisation": "Summarise the facts in one sentence.",
}

SCAFFOLD = {
    "lookup": "1) Find the fact whose subject matches the question exactly (same item, same attribute; "
    "watch for similar identifiers). 2) Use its current value. 3) State it.",
    "arithmetic": "1) Find each quantity named, matching item and attribute exactly. 2) Write the operation "
    "with the numbers. 3) Compute carefully and keep the unit. 4) Re-check the sum.",
    "comparison": "1) Find the value of each item compared. 2) Put them side by side. 3) Say which one is "
    "higher or lower as asked, naming the item, not the number.",
    "aggregation": "1) List the value for every item named. 2) Apply the total, largest or smallest as asked. "
    "3) Check no item is missing or counted twice.",
    "deduction": "1) Start from the item named in the question. 2) Follow each link fact (which customer, "
    "which tier, ...) one hop at a time, writing each hop. 3) Read the final value at the end of the chain.",
    "verification": "1) Find the current value of the subject in the claim (later corrections replace "
    "earlier values). 2) Compare it with the claimed value. 3) Answer yes only if they match.",
    "planning": "1) List the constraints. 2) Order the steps. 3) Check each constraint is met.",
    "summarisation": "1) Collect the facts on the subject. 2) Keep only current values. 3) Say it in one "
    "sentence.",
}


class PromptPlan(BaseModel):
    strategy: str
    strategy_kind: str  # "terse" | "scaffold" | "static"
    dominant_type: str
    difficulty: float
    match: float


class PromptBuilder:
    def __init__(self, reasoning_types: Sequence[str], adaptive: bool = True) -> None:
        self.types = list(reasoning_types)
        self.adaptive = adaptive
        self.env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
        # System prompts repeat (one per role and strategy): every record kept shares one copy of each.
        self._system_texts: dict[str, str] = {}
        # The default template's system message, by (role, strategy): nothing else goes into it.
        self._system_messages: dict[tuple[str, str], Message] = {}
        self._leading: dict[bytes, tuple[str, str | None]] = {}

    @lru_cache(maxsize=64)
    def _compile(self, source: str):  # type: ignore[no-untyped-def]
        """The template and its globals as one flat dict: `Template.render` merges a ChainMap of them
        on every call, about half its cost for a template this small."""
        try:
            template = self.env.from_string(source)
        except TemplateError as err:
            raise RapoError(f"prompt template does not compile: {err}") from None
        return template, dict(template.globals)

    @staticmethod
    @lru_cache(maxsize=1)
    def default_template() -> str:
        return resources.files("rapo").joinpath("templates/default.j2").read_text()

    def _default_halves(self):  # type: ignore[no-untyped-def]
        """The default template cut at its user marker: the system half depends on role and strategy
        only, the user half on the step only, so each is rendered once where the whole was rendered
        per agent. (Only the default: a custom template may carry state across the marker.)"""
        head, _, tail = self.default_template().partition(USER_MARKER)
        return self._compile(head), self._compile(tail)

    def _leading_types(self, requirement: np.ndarray) -> tuple[str, str | None]:
        """The dominant type, and the second where it weighs >= 0.3; cached, since every agent of a
        step (and every step with the same text) plans from the same requirement."""
        key = requirement.dtype.str.encode() + requirement.tobytes()
        hit = self._leading.get(key)
        if hit is None:
            dominant = self.types[int(np.argmax(requirement))]
            order = np.argsort(-requirement)
            second = self.types[int(order[1])] if len(order) > 1 and requirement[order[1]] >= 0.3 else None
            if len(self._leading) >= 4096:
                self._leading.clear()
            hit = self._leading[key] = (dominant, second)
        return hit

    def plan(self, requirement: np.ndarray, difficulty: float, match: float) -> PromptPlan:
        dominant, second = self._leading_types(np.asarray(requirement))
        if not self.adaptive:
            return trusted(PromptPlan, strategy=STATIC_STRATEGY, strategy_kind="static", dominant_type=dominant,
                           difficulty=difficulty, match=match)
        strong = match >= 0.9 and difficulty < 0.5
        table = TERSE if strong else SCAFFOLD
        strategy = table.get(dominant, STATIC_STRATEGY)
        # A step that mixes two types gets the second one's hint too.
        if second is not None and not strong:
            strategy += " Also: " + SCAFFOLD.get(second, "")
        return trusted(PromptPlan, strategy=strategy, strategy_kind="terse" if strong else "scaffold",
                       dominant_type=dominant, difficulty=difficulty, match=match)

    def render(
        self,
        template: str | None,
        *,
        role: str,
        plan: PromptPlan,
        context: Sequence[object],
        task: str,
        handoff: str | None,
        history: Sequence[Message] = (),
        peers: str | None = None,
        shared: dict[str, Message] | None = None,
    ) -> list[Message]:
        """The step's messages for one agent. `shared`: a dict the caller keeps for one step's agents
        (same context, task, handoff, history, peers), so the user message is rendered once for all."""
        source = template or self.default_template()
        if source == self.default_template():
            messages = self._render_default(role, plan, context, task, handoff, history, peers, shared)
            if messages is not None:
                return messages
        compiled, env_globals = self._compile(source)
        variables = {
            **env_globals,
            "role": role,
            "strategy": plan.strategy,
            "output_format": OUTPUT_FORMAT,
            "context": list(context),
            "handoff": handoff or "",
            "history": list(history),
            "task": task if not peers else f"{task}\n{peers}",
        }
        system, sep, user = self._run(compiled, variables).partition(USER_MARKER)
        # trusted: the roles are literals and the contents strings we just rendered.
        if not sep:
            return [trusted(Message, role="user", content=system.strip(), name=None)]
        system = system.strip()
        interned = self._system_texts.get(system)
        if interned is None:
            if len(self._system_texts) >= 4096:
                self._system_texts.clear()
            interned = self._system_texts[system] = system
        return [trusted(Message, role="system", content=interned, name=None),
                trusted(Message, role="user", content=user.strip(), name=None)]

    def _render_default(self, role: str, plan: PromptPlan, context: Sequence[object], task: str,
                        handoff: str | None, history: Sequence[Message], peers: str | None,
                        shared: dict[str, Message] | None) -> list[Message] | None:
        """`render` for the default template, half by half; None where the halves would not split the
        whole render the same way (the marker inside the role or strategy text)."""
        (head, head_globals), (tail, tail_globals) = self._default_halves()
        system = self._system_messages.get((role, plan.strategy))
        if system is None:
            variables = {**head_globals, "role": role, "strategy": plan.strategy, "output_format": OUTPUT_FORMAT}
            text = self._run(head, variables)
            if USER_MARKER in text:
                return None
            if len(self._system_messages) >= 4096:
                self._system_messages.clear()
            system = self._system_messages[(role, plan.strategy)] = trusted(
                Message, role="system", content=text.strip(), name=None)
        user = shared.get("user") if shared is not None else None
        if user is None:
            variables = {
                **tail_globals,
                "context": list(context),
                "handoff": handoff or "",
                "history": list(history),
                "task": task if not peers else f"{task}\n{peers}",
            }
            user = trusted(Message, role="user", content=self._run(tail, variables).strip(), name=None)
            if shared is not None:
                shared["user"] = user
        return [system, user]

    def _run(self, compiled, variables: dict[str, object]) -> str:  # type: ignore[no-untyped-def]
        try:  # what Template.render does, with the globals already merged
            return "".join(compiled.root_render_func(compiled.new_context(variables, shared=True)))
        except Exception:
            self.env.handle_exception()
            raise  # handle_exception always raises; this keeps the type checker sure of it


def estimate_difficulty(requirement: np.ndarray, n_named: int, n_dependencies: int) -> float:
    """Rough 0..1 difficulty: more facts to combine and longer chains are harder; entropy of r adds."""
    p = np.clip(requirement, 1e-9, 1.0)
    entropy = float(-(p * np.log(p)).sum() / np.log(len(p))) if len(p) > 1 else 0.0
    return float(min(1.0, 0.15 * max(n_named - 1, 0) + 0.2 * n_dependencies + 0.3 * entropy))


def check_template(source: str) -> None:
    """Render a custom template with sample values, empty and filled, so that a mistake in it (bad
    syntax, an unknown variable) is reported when the team loads, not at the first question."""
    from types import SimpleNamespace

    builder = PromptBuilder(["lookup"])
    plan = PromptPlan(strategy="Answer from the facts.", strategy_kind="terse", dominant_type="lookup",
                      difficulty=0.0, match=1.0)
    fact = SimpleNamespace(fact_id=0, turn=1, source="user", text="The refund limit for order A17 is 120 dollars.",
                           reason="named", score=1.0)
    filled = {"context": [fact], "handoff": "A note from the previous agent.",
              "history": [Message(role="user", content="Hello.")], "peers": "Another agent answered 120 dollars."}
    for extra in ({"context": [], "handoff": None, "history": [], "peers": None}, filled):
        try:
            builder.render(source, role="A sample role.", plan=plan, task="What is the refund limit for order A17?",
                           **extra)  # type: ignore[arg-type]
        except RapoError:
            raise
        except Exception as err:  # noqa: BLE001 - jinja2 raises many kinds; each is the template's fault
            raise RapoError(f"the prompt template fails to render: {type(err).__name__}: {err} (it may use the "
                            "variables role, strategy, output_format, context, handoff, history and task)") from None
