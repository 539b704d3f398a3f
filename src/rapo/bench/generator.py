"""Seeded synthetic conversations with ground truth (docs/conversation-language.md).

Each conversation keeps a hidden world (entities, link values, the current value of every stated
fact) and writes user turns in the controlled language. Questions are answered from the world's
CURRENT values; every needed fact carries the exact sentence that stated its current value, so the
metrics can tell whether a prompt held it. Systems under test only ever get ``user_texts()``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from rapo.bench.language import (
    SCENARIOS,
    Attribute,
    EntityKind,
    Scenario,
    entity_display,
    fact_key,
    format_number,
    join_statements,
    named_entity,
    normalise_answer,
    parse_number,
    parse_statements,
    q_aggregation,
    q_arithmetic,
    q_comparison,
    q_deduction,
    q_lookup,
    q_verification,
    render_statement,
    value_entity,
)
from rapo.types import RapoError

LANGUAGES = ("controlled", "natural")
"""The wordings a conversation can be written in; the world, the questions and the truth are the same."""

QUESTION_PROBABILITY = 0.37
"""Share of turns after the first that ask a question (the last turn always does)."""

_TYPE_WEIGHTS: dict[str, float] = {
    "lookup": 0.2,
    "arithmetic": 0.17,
    "comparison": 0.16,
    "aggregation": 0.15,
    "deduction": 0.16,
    "verification": 0.16,
}


class NeededFact(BaseModel):
    """A fact a question needs: its key, CURRENT value, the sentence that stated it and its turn."""

    key: str
    attr: str
    entity: str
    value: str
    sentence: str  # as written in the conversation (in the natural language, perhaps "It ships in five days")
    turn: int
    written: str = ""  # the value as that sentence writes it ("five days", "$120"); empty: as `value`
    plain: str = ""  # the fact in the controlled language, self-contained (what the oracle is handed)


class QuestionTruth(BaseModel):
    type: str
    text: str
    answer: str
    needed: list[NeededFact]
    reference: str


class Turn(BaseModel):
    """One user message; ``index`` starts at 1 (turn 1 is the first agent transition)."""

    index: int
    text: str
    question: QuestionTruth | None = None


class Conversation(BaseModel):
    id: str
    seed: int
    scenario: str
    turns: list[Turn]

    def user_texts(self) -> list[str]:
        """What a system under test gets: the user messages, nothing else."""
        return [t.text for t in self.turns]


@dataclass
class _Stated:
    value: str
    sentence: str
    turn: int
    history: list[str] = field(default_factory=list)
    written: str = ""
    plain: str = ""


@dataclass
class _Plan:
    attr: str
    entity: str
    value: str
    update: bool = False
    old: str = ""


class _World:
    """The hidden state of one conversation and the writer of its turns."""

    def __init__(self, scenario: Scenario, rng: random.Random, n_turns: int) -> None:
        self.sc = scenario
        self.rng = rng
        self.entities: dict[str, list[str]] = {k.noun: [] for k in scenario.kinds}
        self.used_numbers: dict[str, set[int]] = {}
        self.stated: dict[tuple[str, str], _Stated] = {}
        self.links: dict[tuple[str, str], str] = {}
        self.protected: tuple[str, str] | None = None
        self.writer: Any = None  # a NaturalWriter: the same world, written in everyday English
        self.texts: list[str] = []  # the turns written so far (a natural correction may point back)
        id_kinds = [k for k in scenario.kinds if not k.named]
        for i, kind in enumerate(id_kinds):
            for _ in range((3 + n_turns // 8) if i == 0 else (2 + n_turns // 15)):
                self._new_entity(kind)
        for kind in scenario.kinds:
            if kind.named:
                for name in rng.sample(list(kind.names), 3):
                    self.entities[kind.noun].append(named_entity(name, kind.noun))

    # ------------------------------------------------------------------ values and entities

    def _new_entity(self, kind: EntityKind, ident: str | None = None) -> str | None:
        existing = set(self.entities[kind.noun])
        for _ in range(50):
            cand = ident or f"{self.rng.choice(kind.letters)}{self.rng.randint(10, 99) if self.rng.random() < 0.6 else self.rng.randint(100, 999)}"
            key = f"{kind.noun} {cand.lower()}"
            if key not in existing:
                self.entities[kind.noun].append(key)
                return key
            if ident is not None:
                return None
        return None

    def _fresh_number(self, attr: Attribute, near: int | None = None) -> str:
        used = self.used_numbers.setdefault(attr.name, set())
        for attempt in range(400):
            if near is not None and attempt < 100:  # near the old value if there is room, else anywhere
                span = max(2, int(abs(near) * 0.3))
                n = near + self.rng.choice((-1, 1)) * self.rng.randint(1, span)
                n = min(max(n, attr.lo), attr.hi)
            else:
                n = self.rng.randint(attr.lo, attr.hi)
            if n not in used:
                used.add(n)
                return format_number(n, attr.unit)
        raise RapoError(f"attribute {attr.name!r}: value range {attr.lo}..{attr.hi} exhausted; widen it")

    def _has_room(self, name: str) -> bool:
        """A numeric attribute keeps values unique (no ties): stop using it when its range fills up."""
        attr = self._attr(name)
        if attr.kind != "number":
            return True
        return len(self.used_numbers.get(name, ())) < 0.8 * (attr.hi - attr.lo + 1)

    def _link_value(self, attr: Attribute, entity: str, avoid: str | None = None) -> str:
        shown = [e.split(" ", 1)[0].title() if attr.kind == "name" else entity_display(e) for e in self.entities[attr.target]]
        return self.rng.choice([v for v in shown if v != avoid] or shown)

    def _value_for(self, attr: Attribute, entity: str, previous: str | None = None) -> str:
        if attr.kind == "number":
            near = parse_number(previous)[0] if previous and self.rng.random() < 0.5 else None  # type: ignore[index]
            return self._fresh_number(attr, near)
        return self._link_value(attr, entity, avoid=previous)

    def _attr(self, name: str) -> Attribute:
        return next(a for a in self.sc.attributes if a.name == name)

    def _all_keys(self, kinds: Sequence[str] = ("number", "entity", "name")) -> list[tuple[str, str]]:
        return [
            (a.name, e)
            for a in self.sc.attributes
            if a.kind in kinds
            for e in self.entities[a.owner]
        ]

    # ------------------------------------------------------------------ statements

    def _plan_new(self, taken: set[tuple[str, str]], kinds: Sequence[str]) -> _Plan | None:
        cands = [k for k in self._all_keys(kinds) if k not in self.stated and k not in taken and self._has_room(k[0])]
        if not cands:
            return None
        attr, entity = self.rng.choice(cands)
        return _Plan(attr, entity, self._value_for(self._attr(attr), entity))

    def _plan_update(self, taken: set[tuple[str, str]]) -> _Plan | None:
        cands = [k for k in self.stated if k not in taken and k != self.protected and self._has_room(k[0])]
        if not cands:
            return None
        attr, entity = self.rng.choice(cands)
        old = self.stated[(attr, entity)].value
        return _Plan(attr, entity, self._value_for(self._attr(attr), entity, previous=old), update=True, old=old)

    def _plan_distractor(self, taken: set[tuple[str, str]]) -> _Plan | None:
        """A near-duplicate key: same attribute with a transposed/neighbour id, or same id with a
        neighbouring attribute."""
        stated_ids = [k for k in self.stated if not self.sc.kind(self._attr(k[0]).owner).named]
        if not stated_ids:
            return None
        attr, entity = self.rng.choice(stated_ids)
        kind = self.sc.kind(self._attr(attr).owner)
        if self.rng.random() < 0.6:
            ident = entity.split(" ", 1)[1].upper()
            letter, digits = ident[0], ident[1:]
            options = [str(int(digits) + d) for d in (-1, 1) if 0 < int(digits) + d < 1000]  # ids keep 1-3 digits
            if len(digits) >= 2 and digits[::-1] != digits and digits[::-1][0] != "0":
                options.append(digits[::-1])
            new = self._new_entity(kind, letter + self.rng.choice(options))
            if new is not None and (attr, new) not in taken:
                return _Plan(attr, new, self._value_for(self._attr(attr), new))
        owner_attrs = [a.name for a in self.sc.attrs_of(kind.noun) if (a.name, entity) not in self.stated]
        owner_attrs = [a for a in owner_attrs if (a, entity) not in taken]
        if not owner_attrs:
            return None
        a = self.rng.choice(owner_attrs)
        return _Plan(a, entity, self._value_for(self._attr(a), entity))

    def statements(self, turn: int, n: int, first: bool) -> str:
        plans: list[_Plan] = []
        taken: set[tuple[str, str]] = set()
        for i in range(n):
            plan: _Plan | None = None
            if first and i == 0:
                plan = self._plan_new(taken, ("number",))
            elif first and i == 1:
                plan = self._plan_new(taken, ("entity", "name"))
            else:
                r = self.rng.random()
                if r < 0.25:
                    plan = self._plan_update(taken)
                elif r < 0.45:
                    plan = self._plan_new(taken, ("entity", "name"))
                elif r < 0.6:
                    plan = self._plan_distractor(taken)
            plan = plan or self._plan_new(taken, ("number", "entity", "name")) or self._plan_update(taken)
            if plan is None:
                break
            taken.add((plan.attr, plan.entity))
            plans.append(plan)
        sentences = [
            render_statement(p.attr, p.entity, p.value, self.rng.randrange(4), update=p.update, old=p.old) for p in plans
        ]
        joins = [self.rng.choice((" ", " ", "; ", ", and ")) for _ in sentences[1:]]
        text = join_statements(sentences, joins)
        parsed = parse_statements(text)
        got = [(s.attr, s.entity, s.value) for s in parsed]
        if got != [(p.attr, p.entity, p.value) for p in plans]:  # pragma: no cover - a template/parser bug
            raise RapoError(f"generator wrote a turn the parser reads differently: {text!r} -> {got}")
        written = [(s.text, p.value) for p, s in zip(plans, parsed)]
        if self.writer is not None:
            text, written = self._natural(plans)
        for p, s, (sentence, shown) in zip(plans, parsed, written):
            key = (p.attr, p.entity)
            history = self.stated[key].history + [self.stated[key].value] if key in self.stated else []
            self.stated[key] = _Stated(p.value, sentence, turn, history, shown, s.text)
            if first and self.protected is None and self._attr(p.attr).kind == "number":
                self.protected = key
        return text

    def _natural(self, plans: list[_Plan]) -> tuple[str, list[tuple[str, str]]]:
        """The turn in everyday English, checked to read back (with the turns before it) to the plans."""
        from collections import Counter

        from rapo.bench.natural import Plan, read_facts

        seen = Counter(normalise_answer(v) for st in self.stated.values() for v in [st.value, *st.history])
        seen.update(normalise_answer(p.value) for p in plans)
        unique = [v for v, n in seen.items() if n == 1]
        text, written = self.writer.statements([Plan(p.attr, p.entity, p.value, p.update, p.old) for p in plans],
                                               unique)
        want = sorted((p.attr, p.entity, normalise_answer(p.value)) for p in plans)
        got = sorted((f.attr, f.entity, normalise_answer(f.value)) for f in read_facts([text]))
        if got != want:  # a correction that names only the old value reads with the turns before it
            base = sum(len(t) + 1 for t in self.texts)
            got = sorted((f.attr, f.entity, normalise_answer(f.value)) for f in read_facts([*self.texts, text])
                         if f.offset >= base)
        if got != want:  # pragma: no cover - a writer/reader bug
            raise RapoError(f"natural writer wrote a turn its reader reads differently: {text!r} -> {got}, want {want}")
        return text, [(w.sentence, w.value) for w in written]

    def natural_question(self, q: QuestionTruth) -> QuestionTruth:
        """The question in everyday English, checked to read back to the same question."""
        from rapo.bench.language import parse_question
        from rapo.bench.natural import parse_natural_question

        parsed = parse_question(q.text)
        assert parsed is not None
        text = self.writer.question(parsed)
        back = parse_natural_question(text)
        fields = ("type", "subjects", "chain", "operator", "constant")
        if back is None or any(getattr(back, f) != getattr(parsed, f) for f in fields) or \
                normalise_answer(back.claimed or "") != normalise_answer(parsed.claimed or ""):  # pragma: no cover
            raise RapoError(f"natural writer wrote a question its reader reads differently: {text!r} -> {back}")
        return q.model_copy(update={"text": text})

    # ------------------------------------------------------------------ questions

    def _pick(self, cands: list[tuple[str, str]]) -> tuple[str, str]:
        """Uniform over the turns that stated the candidates, then over keys: spreads dependency distance."""
        turns = sorted({self.stated[k].turn for k in cands})
        t = self.rng.choice(turns)
        return self.rng.choice([k for k in cands if self.stated[k].turn == t])

    def _needed(self, keys: list[tuple[str, str]]) -> list[NeededFact]:
        return [
            NeededFact(
                key=fact_key(a, e),
                attr=a,
                entity=e,
                value=self.stated[(a, e)].value,
                sentence=self.stated[(a, e)].sentence,
                turn=self.stated[(a, e)].turn,
                written=self.stated[(a, e)].written,
                plain=self.stated[(a, e)].plain,
            )
            for a, e in keys
        ]

    def _numeric_stated(self) -> list[tuple[str, str]]:
        return [k for k in self.stated if self._attr(k[0]).kind == "number"]

    def q_lookup(self, key: tuple[str, str] | None = None) -> QuestionTruth | None:
        if not self.stated:
            return None
        attr, entity = key or self._pick(list(self.stated))
        v = self.stated[(attr, entity)].value
        text = q_lookup(attr, entity, self.rng.randrange(3))
        ref = render_statement(attr, entity, v, 0)
        return QuestionTruth(type="lookup", text=text, answer=normalise_answer(v), needed=self._needed([(attr, entity)]), reference=ref)

    def q_verification(self, key: tuple[str, str] | None = None) -> QuestionTruth | None:
        if not self.stated:
            return None
        if key is None:
            updated = [k for k in self.stated if self.stated[k].history]
            key = self._pick(updated if updated and self.rng.random() < 0.5 else list(self.stated))
        attr, entity = key
        st = self.stated[key]
        r = self.rng.random()
        if st.history and r < 0.6:
            claimed = self.rng.choice(st.history)
        elif r < 0.8:
            claimed = st.value
        else:
            spec = self._attr(attr)
            if spec.kind == "number":
                n = parse_number(st.value)[0]  # type: ignore[index]
                claimed = format_number(n + self.rng.choice((-1, 1)) * self.rng.randint(1, max(2, n // 5)), spec.unit)
            elif len(self.entities[spec.target]) > 1:
                claimed = self._link_value(spec, entity, avoid=st.value)
            else:
                claimed = st.value
        yes = normalise_answer(claimed) == normalise_answer(st.value)
        text = q_verification(attr, entity, claimed, self.rng.randrange(2))
        ref = ("Yes, " if yes else "No, ") + render_statement(attr, entity, st.value, 0)[0].lower() + render_statement(attr, entity, st.value, 0)[1:]
        return QuestionTruth(type="verification", text=text, answer="yes" if yes else "no", needed=self._needed([key]), reference=ref)

    def q_arithmetic(self) -> QuestionTruth | None:
        nums = self._numeric_stated()
        if not nums:
            return None
        a = self._pick(nums)
        unit = self._attr(a[0]).unit
        partners = [k for k in nums if k != a and self._attr(k[0]).unit == unit]
        va = parse_number(self.stated[a].value)[0]  # type: ignore[index]
        ea = entity_display(a[1])
        if not partners or self.rng.random() < 0.25:
            k = self.rng.randint(2, 5)
            ans = format_number(va * k, unit)
            text = q_arithmetic("times", a, None, k, 0)
            ref = f"The {a[0]} for {ea} multiplied by {k} is {ans}."
            return QuestionTruth(type="arithmetic", text=text, answer=normalise_answer(ans), needed=self._needed([a]), reference=ref)
        b = self.rng.choice(partners)
        vb = parse_number(self.stated[b].value)[0]  # type: ignore[index]
        op = "plus" if va == vb or self.rng.random() < 0.5 else "minus"
        if op == "minus" and va < vb:
            a, b, va, vb = b, a, vb, va
            ea = entity_display(a[1])
        ans = format_number(va + vb if op == "plus" else va - vb, unit)
        text = q_arithmetic(op, a, b, None, self.rng.randrange(2))
        ref = f"The {a[0]} for {ea} {op} the {b[0]} for {entity_display(b[1])} is {ans}."
        return QuestionTruth(type="arithmetic", text=text, answer=normalise_answer(ans), needed=self._needed([a, b]), reference=ref)

    def _by_attr(self, minimum: int) -> dict[str, list[tuple[str, str]]]:
        groups: dict[str, list[tuple[str, str]]] = {}
        for k in self._numeric_stated():
            groups.setdefault(k[0], []).append(k)
        return {a: ks for a, ks in groups.items() if len(ks) >= minimum}

    def q_comparison(self) -> QuestionTruth | None:
        groups = self._by_attr(2)
        if not groups:
            return None
        first = self._pick([k for ks in groups.values() for k in ks])
        second = self.rng.choice([k for k in groups[first[0]] if k != first])
        pair = [first, second] if self.rng.random() < 0.5 else [second, first]
        op = self.rng.choice(("higher", "lower"))
        vals = [parse_number(self.stated[k].value)[0] for k in pair]  # type: ignore[index]
        win = pair[vals.index(max(vals) if op == "higher" else min(vals))]
        text = q_comparison(first[0], pair[0][1], pair[1][1], op, self.rng.randrange(2))
        win_d = entity_display(win[1])
        ref = f"{win_d[0].upper() + win_d[1:]} has the {op} {first[0]}."
        return QuestionTruth(type="comparison", text=text, answer=normalise_answer(win_d), needed=self._needed(pair), reference=ref)

    def q_aggregation(self) -> QuestionTruth | None:
        groups = self._by_attr(2)
        if not groups:
            return None
        first = self._pick([k for ks in groups.values() for k in ks])
        others = [k for k in groups[first[0]] if k != first]
        n = min(len(others), self.rng.choice((1, 2, 2, 3)))
        keys = [first] + self.rng.sample(others, n)
        self.rng.shuffle(keys)
        attr = first[0]
        unit = self._attr(attr).unit
        vals = [parse_number(self.stated[k].value)[0] for k in keys]  # type: ignore[index]
        op = self.rng.choice(("total", "largest", "smallest"))
        ents = [k[1] for k in keys]
        text = q_aggregation(attr, ents, op, self.rng.randrange(2))
        listing = ", ".join(entity_display(e) for e in ents[:-1]) + " and " + entity_display(ents[-1])
        if op == "total":
            ans = format_number(sum(vals), unit)
            ref = f"The total {attr} across {listing} is {ans}."
        else:
            ans = entity_display(ents[vals.index(max(vals) if op == "largest" else min(vals))])
            ref = f"{ans[0].upper() + ans[1:]} has the {op} {attr} among {listing}."
        return QuestionTruth(type="aggregation", text=text, answer=normalise_answer(ans), needed=self._needed(keys), reference=ref)

    def q_deduction(self) -> QuestionTruth | None:
        paths: list[list[tuple[str, str]]] = []
        for (a1, e1), st in self.stated.items():
            t1 = value_entity(a1, st.value)
            if t1 is None:
                continue
            for (a2, e2), st2 in self.stated.items():
                if e2 != t1:
                    continue
                paths.append([(a1, e1), (a2, e2)])
                t2 = value_entity(a2, st2.value)
                if t2 is None:
                    continue
                paths.extend([(a1, e1), (a2, e2), k] for k in self.stated if k[1] == t2)
        if not paths:
            return None
        starts = sorted({p[0] for p in paths})
        start = self._pick(starts)
        path = self.rng.choice([p for p in paths if p[0] == start])
        chain = [k[0] for k in path]
        value = self.stated[path[-1]].value
        text = q_deduction(chain, path[0][1])
        phrase = text[len("What is ") : -1]
        ref = f"{phrase[0].upper() + phrase[1:]} is {value}."
        return QuestionTruth(type="deduction", text=text, answer=normalise_answer(value), needed=self._needed(path), reference=ref)

    def question(self, anchor: bool) -> QuestionTruth:
        if anchor and self.protected in self.stated:
            builder = self.q_lookup if self.rng.random() < 0.6 else self.q_verification
            q = builder(self.protected)
            if q is not None:
                return q
        builders: dict[str, Callable[[], QuestionTruth | None]] = {
            "lookup": self.q_lookup,
            "arithmetic": self.q_arithmetic,
            "comparison": self.q_comparison,
            "aggregation": self.q_aggregation,
            "deduction": self.q_deduction,
            "verification": self.q_verification,
        }
        order = list(builders)
        weights = [_TYPE_WEIGHTS[t] for t in order]
        first = self.rng.choices(order, weights=weights)[0]
        for t in [first] + [t for t in order if t != first]:
            q = builders[t]()
            if q is not None:
                return q
        raise RapoError("no question can be asked: no fact was stated")  # pragma: no cover


def generate_conversation(index: int, seed: int, n_turns: int, scenario: Scenario,
                          language: str = "controlled") -> Conversation:
    """One conversation; its randomness depends only on (seed, index). The natural wording draws its
    choices from a stream of its own, so both languages write the same world and the same truth."""
    rng = random.Random(f"rapo-generator:{seed}:{index}")
    world = _World(scenario, rng, n_turns)
    if language == "natural":
        from rapo.bench.natural import NaturalWriter

        world.writer = NaturalWriter(random.Random(f"rapo-natural:{seed}:{index}"))
    turns: list[Turn] = []

    def ask(anchor: bool) -> QuestionTruth:
        q = world.question(anchor)
        return world.natural_question(q) if world.writer is not None else q

    for t in range(1, n_turns + 1):
        if t == 1:
            text = world.statements(1, rng.randint(2, 4), first=True)
            q = ask(anchor=False) if n_turns == 1 else None
            if q is not None:  # after a pasted report's last line, the question starts a line of its own
                sep = "\n" if text.rsplit("\n", 1)[-1].startswith("- ") else " "
                text = f"{text}{sep}{q.text}"
            turns.append(Turn(index=1, text=text, question=q))
        elif t == n_turns or rng.random() < QUESTION_PROBABILITY:
            q = ask(anchor=(t == n_turns and n_turns >= 10))
            turns.append(Turn(index=t, text=q.text, question=q))
        else:
            turns.append(Turn(index=t, text=world.statements(t, rng.choices((1, 2, 3), (0.45, 0.35, 0.2))[0], first=False)))
        world.texts.append(turns[-1].text)
    return Conversation(id=f"s{seed}-c{index:05d}", seed=seed, scenario=scenario.name, turns=turns)


def generate(
    n_conversations: int = 1000,
    seed: int = 0,
    transitions: tuple[int, int] = (1, 50),
    scenarios: Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    language: str = "controlled",
) -> list[Conversation]:
    """``n_conversations`` conversations; conversation i has ``lo + i % (hi - lo + 1)`` turns (an even
    spread of agent transitions) and scenario ``scenarios[i % len(scenarios)]``. Each depends only on
    its index, so ``indices`` picks some of them (a worker's shard) without writing the rest."""
    lo, hi = transitions
    if lo < 1 or hi < lo:
        raise RapoError(f"transitions must be (lo, hi) with 1 <= lo <= hi, got {transitions}")
    if n_conversations < 0:
        raise RapoError(f"n_conversations must be >= 0, got {n_conversations}")
    names = list(scenarios) if scenarios is not None else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise RapoError(f"unknown scenarios {unknown}; choose from {sorted(SCENARIOS)}")
    width = hi - lo + 1
    chosen = range(n_conversations) if indices is None else indices
    if any(not 0 <= i < n_conversations for i in chosen):
        raise RapoError(f"indices must lie in [0, {n_conversations})")
    if language not in LANGUAGES:
        raise RapoError(f"unknown language {language!r}; choose from {', '.join(LANGUAGES)}")
    return [generate_conversation(i, seed, lo + i % width, SCENARIOS[names[i % len(names)]], language)
            for i in chosen]
