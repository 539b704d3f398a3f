"""The benchmark's controlled language (docs/conversation-language.md): vocabulary, templates, parsers.

The generator writes with the templates; the simulated model reads with the parsers. Keeping both
here means the two sides cannot drift apart, and a real LLM reads the same sentences as plain English.
Entities are keyed canonically in lower case: ``"order a17"`` for identified entities and
``"gold tier"`` for named ones; a fact's key is ``"<attribute>|<entity key>"``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict

QuestionType = Literal["lookup", "arithmetic", "comparison", "aggregation", "deduction", "verification"]
QUESTION_TYPES: tuple[str, ...] = (
    "lookup",
    "arithmetic",
    "comparison",
    "aggregation",
    "deduction",
    "verification",
)


class EntityKind(BaseModel):
    """An entity type: identified (``order A17``, ids from ``letters``) or named (``the Gold tier``)."""

    model_config = ConfigDict(frozen=True)

    noun: str
    letters: str = ""
    names: tuple[str, ...] = ()

    @property
    def named(self) -> bool:
        return bool(self.names)


class Attribute(BaseModel):
    """An attribute of one entity kind. ``kind`` says whether values are numbers with ``unit`` in
    ``[lo, hi]``, entities of kind ``target`` (links) or names of the named kind ``target``."""

    model_config = ConfigDict(frozen=True)

    name: str
    owner: str
    kind: Literal["number", "entity", "name"] = "number"
    unit: str = ""
    lo: int = 0
    hi: int = 0
    target: str = ""


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kinds: tuple[EntityKind, ...]
    attributes: tuple[Attribute, ...]

    def kind(self, noun: str) -> EntityKind:
        return next(k for k in self.kinds if k.noun == noun)

    def attrs_of(self, noun: str) -> list[Attribute]:
        return [a for a in self.attributes if a.owner == noun]


def _num(name: str, owner: str, unit: str, lo: int, hi: int) -> Attribute:
    return Attribute(name=name, owner=owner, kind="number", unit=unit, lo=lo, hi=hi)


SCENARIOS: dict[str, Scenario] = {
    "customer-service": Scenario(
        name="customer-service",
        kinds=(
            EntityKind(noun="order", letters="ABDE"),
            EntityKind(noun="customer", letters="CG"),
            EntityKind(noun="tier", names=("Gold", "Silver", "Bronze", "Platinum", "Ruby")),
        ),
        attributes=(
            _num("refund limit", "order", "dollars", 40, 600),
            _num("refund window", "order", "days", 7, 90),
            _num("shipping fee", "order", "dollars", 3, 45),
            _num("delivery time", "order", "days", 2, 21),
            _num("item count", "order", "items", 2, 30),
            Attribute(name="customer", owner="order", kind="entity", target="customer"),
            Attribute(name="tier", owner="customer", kind="name", target="tier"),
            _num("loyalty balance", "customer", "points", 100, 5000),
            _num("account credit", "customer", "dollars", 5, 900),
            _num("discount rate", "tier", "percent", 5, 40),
            _num("free shipping minimum", "tier", "dollars", 20, 200),
        ),
    ),
    "automated-decisions": Scenario(
        name="automated-decisions",
        kinds=(
            EntityKind(noun="loan", letters="LN"),
            EntityKind(noun="applicant", letters="PR"),
            EntityKind(noun="band", names=("Amber", "Green", "Red", "Blue", "Violet")),
        ),
        attributes=(
            _num("approval limit", "loan", "dollars", 1000, 50000),
            _num("requested amount", "loan", "dollars", 500, 60000),
            _num("loan term", "loan", "months", 6, 120),
            Attribute(name="applicant", owner="loan", kind="entity", target="applicant"),
            _num("credit score", "applicant", "points", 300, 850),
            _num("annual income", "applicant", "thousand dollars", 15, 250),
            _num("existing debt", "applicant", "thousand dollars", 2, 120),
            Attribute(name="risk band", owner="applicant", kind="name", target="band"),
            _num("interest rate", "band", "percent", 2, 25),
            _num("maximum term", "band", "months", 12, 360),
        ),
    ),
    "collaborative-design": Scenario(
        name="collaborative-design",
        kinds=(
            EntityKind(noun="module", letters="MQ"),
            EntityKind(noun="component", letters="KJ"),
            EntityKind(noun="grade", names=("Steel", "Titanium", "Copper", "Carbon", "Nickel")),
        ),
        attributes=(
            _num("weight", "module", "grams", 50, 5000),
            _num("cost", "module", "dollars", 10, 3000),
            _num("power draw", "module", "watts", 2, 400),
            _num("heat output", "module", "watts", 2, 300),
            Attribute(name="component", owner="module", kind="entity", target="component"),
            Attribute(name="material grade", owner="component", kind="name", target="grade"),
            _num("unit cost", "component", "dollars", 2, 500),
            _num("lead time", "component", "days", 2, 60),
            _num("tolerance", "grade", "micrometres", 2, 200),
            _num("yield strength", "grade", "megapascals", 100, 1500),
        ),
    ),
}

ATTRIBUTES: dict[str, Attribute] = {a.name: a for s in SCENARIOS.values() for a in s.attributes}
KINDS: dict[str, EntityKind] = {k.noun: k for s in SCENARIOS.values() for k in s.kinds}
NAME_KIND: dict[str, str] = {n: k.noun for k in KINDS.values() for n in k.names}
UNITS: tuple[str, ...] = tuple(sorted({a.unit for a in ATTRIBUTES.values() if a.unit}, key=len, reverse=True))

if len(ATTRIBUTES) != sum(len(s.attributes) for s in SCENARIOS.values()):  # pragma: no cover
    raise RuntimeError("attribute names must be unique across scenarios: bare ids resolve through them")


# --------------------------------------------------------------------------- entities and values


def fact_key(attr: str, entity: str) -> str:
    """The canonical key of a fact: ``"refund limit|order a17"``."""
    return f"{attr}|{entity}"


def entity_display(key: str) -> str:
    """``"order a17"`` -> ``"order A17"``; ``"gold tier"`` -> ``"the Gold tier"``."""
    first, second = key.split(" ", 1)
    if first in KINDS and not KINDS[first].named:
        return f"{first} {second.upper()}"
    return f"the {first.title()} {second}"


def entity_short(key: str) -> str:
    """The possessive-ready short form: ``"A17"`` for identified entities, ``"the Gold tier"`` else."""
    first, second = key.split(" ", 1)
    if first in KINDS and not KINDS[first].named:
        return second.upper()
    return entity_display(key)


def named_entity(name: str, noun: str) -> str:
    return f"{name.lower()} {noun}"


def format_number(number: int, unit: str) -> str:
    return f"{number} {unit}"


def parse_number(value: str) -> tuple[int, str] | None:
    m = re.fullmatch(r"\s*(-?\d+) (.+?)\s*", value)
    return (int(m.group(1)), m.group(2)) if m else None


def normalise_answer(value: str) -> str:
    """The scoring form of a value: lower case, single spaces, no leading 'the', no final period."""
    v = " ".join(value.strip().lower().split()).rstrip(".").strip()
    return v[4:] if v.startswith("the ") else v


def value_entity(attr: str, value: str) -> str | None:
    """The entity a link value points at (``customer C5`` -> ``customer c5``, ``Gold`` -> ``gold tier``)."""
    spec = ATTRIBUTES.get(attr)
    if spec is None or spec.kind == "number":
        return None
    if spec.kind == "name":
        return named_entity(value.strip(), spec.target)
    return _entity_key_from_phrase(value, attr)


# --------------------------------------------------------------------------- templates

STATEMENT_TEMPLATES: tuple[str, ...] = (
    "The {attr} for {E} is {V}.",
    "{Ecap}'s {attr} is {V}.",
    "For {E}, the {attr} is {V}.",
    "Please note that the {attr} of {E} is {V}.",
)
UPDATE_TEMPLATES: tuple[str, ...] = (
    "Correction: the {attr} for {E} is now {V}.",
    "Update: {S}'s {attr} has changed to {V}.",
    "The {attr} for {E} was changed to {V}.",
    "Actually, {E}'s {attr} is {V}, not {OLD}.",
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def render_statement(attr: str, entity: str, value: str, template: int, *, update: bool = False, old: str = "") -> str:
    """One statement sentence (with its final period) from a template index."""
    table = UPDATE_TEMPLATES if update else STATEMENT_TEMPLATES
    e = entity_display(entity)
    return table[template].format(attr=attr, E=e, Ecap=_cap(e), S=entity_short(entity), V=value, OLD=old)


_LABELS = ("Correction:", "Update:", "Actually,")


def join_statements(sentences: list[str], joins: list[str]) -> str:
    """Join sentences: ``joins[i]`` in {" ", "; ", ", and "} goes between sentence i and i+1.

    A sentence joined to the previous one takes over its period and has its first word lowered
    (unless it is an identifier); a sentence that opens with a label
    ('Update:', 'Correction:', 'Actually,') always stands alone.
    """
    parts = [sentences[0]]
    for sep, s in zip(joins, sentences[1:]):
        if sep == " " or s.startswith(_LABELS):
            parts.append(" " + s)
        else:
            parts[-1] = parts[-1].rstrip(".")
            parts.append(sep + clause_form(s) + ".")
    return "".join(parts)


def clause_form(sentence: str) -> str:
    """A sentence as it appears after '; ' or ', and ': lower first word unless it is a name, no period."""
    s = sentence.rstrip(".")
    first = s.split(" ", 1)[0]
    if first in ("The", "For", "Order", "Customer", "Loan", "Applicant", "Module", "Component", "Please"):
        s = s[0].lower() + s[1:]
    return s


# question renderers (the generator picks the template index; parsers accept all of them)


def q_lookup(attr: str, entity: str, form: int) -> str:
    e = entity_display(entity)
    return (
        f"What is the {attr} for {e}?",
        f"Can you tell me the {attr} of {e}?",
        f"Remind me: what is {entity_short(entity)}'s {attr}?",
    )[form]


def q_arithmetic(op: str, a: tuple[str, str], b: tuple[str, str] | None, k: int | None, form: int) -> str:
    ea = entity_display(a[1])
    if op == "times":
        return f"What is the {a[0]} for {ea} multiplied by {k}?"
    assert b is not None
    eb = entity_display(b[1])
    if form == 0:
        return f"What is the {a[0]} for {ea} {op} the {b[0]} for {eb}?"
    if op == "plus":
        return f"What do you get if you add the {a[0]} for {ea} to the {b[0]} for {eb}?"
    return f"What do you get if you subtract the {b[0]} for {eb} from the {a[0]} for {ea}?"


def q_comparison(attr: str, e1: str, e2: str, op: str, form: int) -> str:
    d1, d2 = entity_display(e1), entity_display(e2)
    if form == 0:
        return f"Which is {op}: the {attr} for {d1} or the {attr} for {d2}?"
    return f"Which has the {op} {attr}, {d1} or {d2}?"


def _elist(entities: list[str]) -> str:
    ds = [entity_display(e) for e in entities]
    return ", ".join(ds[:-1]) + " and " + ds[-1]


def q_aggregation(attr: str, entities: list[str], op: str, form: int) -> str:
    lst = _elist(entities)
    if op == "total":
        return (f"What is the total {attr} across {lst}?", f"What is the combined {attr} of {lst}?")[form]
    return (f"What is the {op} {attr} among {lst}?", f"Which of {lst} has the {op} {attr}?")[form]


def q_deduction(chain: list[str], entity: str) -> str:
    """``chain`` in hop order (first hop first): 2 hops ``the b of the a for E``, 3 ``the c for the b of the a for E``."""
    inner = f"the {chain[0]} for {entity_display(entity)}"
    for i, attr in enumerate(chain[1:], start=1):
        joiner = "for" if (i == len(chain) - 1 and len(chain) > 2) else "of"
        inner = f"the {attr} {joiner} {inner}"
    return f"What is {inner}?"


def q_verification(attr: str, entity: str, claimed: str, form: int) -> str:
    if form == 0:
        return f"Is it true that the {attr} for {entity_display(entity)} is {claimed}?"
    return f"Can you confirm that {entity_short(entity)}'s {attr} is {claimed}?"


# --------------------------------------------------------------------------- parsers


class ParsedStatement(BaseModel):
    """One statement read from text. ``pos`` is the character offset of ``text`` in the source."""

    model_config = ConfigDict(frozen=True)

    attr: str
    entity: str
    value: str
    pos: int
    text: str
    update: bool = False

    @property
    def key(self) -> str:
        return fact_key(self.attr, self.entity)


class ParsedQuestion(BaseModel):
    """A question read from text.

    ``subjects`` are the (attribute, entity) facts it needs; for deduction only the first hop is
    known before reading values, the remaining hops are the attributes in ``chain``.
    ``operator``: plus/minus/times, higher/lower, total/largest/smallest; ``constant`` the multiplier;
    ``claimed`` the value a verification question asks about.
    """

    model_config = ConfigDict(frozen=True)

    type: QuestionType
    subjects: tuple[tuple[str, str], ...]
    chain: tuple[str, ...] = ()
    operator: str | None = None
    constant: int | None = None
    claimed: str | None = None
    text: str = ""


@lru_cache(maxsize=1)
def _patterns() -> dict[str, re.Pattern[str]]:
    attr = "|".join(re.escape(a) for a in sorted(ATTRIBUTES, key=len, reverse=True))
    id_nouns = "|".join(k.noun for k in KINDS.values() if not k.named)
    named_nouns = "|".join(k.noun for k in KINDS.values() if k.named)
    names = "|".join(sorted(NAME_KIND, key=len, reverse=True))
    ent = rf"(?:(?i:{id_nouns}) [A-Z]\d{{1,3}}|(?i:the) (?:{names}) (?:{named_nouns}))"
    ent_b = rf"(?:{ent}|[A-Z]\d{{1,3}})"
    units = "|".join(re.escape(u) for u in UNITS)
    val = rf"(?:\d+ (?:{units})|(?i:{id_nouns}) [A-Z]\d{{1,3}}|(?:{names}))(?![\w])"
    elist = rf"{ent}(?:, {ent})*,? and {ent}"
    chain = rf"(?:{attr})(?: (?:for|of) the (?:{attr}))*"

    def c(p: str) -> re.Pattern[str]:
        return re.compile(p)

    A, E, EB, V = rf"(?P<a>{attr})", rf"(?P<e>{ent})", rf"(?P<e>{ent_b})", rf"(?P<v>{val})"
    fo = "(?:for|of)"
    return {
        # statements, most specific first
        "s_correction": c(rf"(?i:correction):\s*(?i:the) {A} {fo} {E} is now {V}"),
        "s_update": c(rf"(?i:update):\s*{EB}'s {A} has changed to {V}"),
        "s_changed": c(rf"(?i:the) {A} {fo} {E} was changed to {V}"),
        "s_actually": c(rf"(?i:actually),\s*{EB}'s {A} is {V}, not (?P<old>{val})"),
        "s_for": c(rf"(?i:for) {E}, the {A} is {V}"),
        "s_the": c(rf"(?i:the) {A} {fo} {E} is {V}"),
        "s_poss": c(rf"{EB}'s {A} is {V}"),
        # questions
        "q_arith": c(
            rf"(?i:what is) the (?P<a>{attr}) {fo} (?P<e>{ent}) (?P<op>plus|minus) the (?P<b>{attr}) {fo} (?P<f>{ent})\?$"
        ),
        "q_add": c(rf"(?i:what do you get if you add) the (?P<a>{attr}) {fo} (?P<e>{ent}) to the (?P<b>{attr}) {fo} (?P<f>{ent})\?$"),
        "q_sub": c(
            rf"(?i:what do you get if you subtract) the (?P<b>{attr}) {fo} (?P<f>{ent}) from the (?P<a>{attr}) {fo} (?P<e>{ent})\?$"
        ),
        "q_times": c(rf"(?i:what is) the (?P<a>{attr}) {fo} (?P<e>{ent}) multiplied by (?P<k>\d+)\?$"),
        "q_cmp": c(rf"(?i:which is) (?P<op>higher|lower): the (?P<a>{attr}) {fo} (?P<e>{ent}) or the (?P<b>{attr}) {fo} (?P<f>{ent})\?$"),
        "q_cmp2": c(rf"(?i:which has the) (?P<op>higher|lower) (?P<a>{attr}), (?P<e>{ent}) or (?P<f>{ent})\?$"),
        "q_total": c(rf"(?i:what is the) (?:total|combined) (?P<a>{attr}) (?:across|of) (?P<l>{elist})\?$"),
        "q_extreme": c(rf"(?i:what is the) (?P<op>largest|smallest) (?P<a>{attr}) among (?P<l>{elist})\?$"),
        "q_extreme2": c(rf"(?i:which of) (?P<l>{elist}) has the (?P<op>largest|smallest) (?P<a>{attr})\?$"),
        "q_verify": c(rf"(?i:is it true that) the (?P<a>{attr}) {fo} (?P<e>{ent}) is (?P<v>{val})\?$"),
        "q_confirm": c(rf"(?i:can you confirm that) (?P<e>{ent_b})'s (?P<a>{attr}) is (?P<v>{val})\?$"),
        "q_chain": c(rf"(?i:what is) the (?P<c>{chain}) {fo} (?P<e>{ent})\?$"),
        "q_tell": c(rf"(?i:can you tell me) the (?P<a>{attr}) {fo} (?P<e>{ent})\?$"),
        "q_poss": c(rf"(?i:what is) (?P<e>{ent_b})'s (?P<a>{attr})\?$"),
        "ent": c(ent),
        "chain_split": c(r" (?:for|of) the "),
        "sentence": c(r"(?m)[^\n]*?(?:[.?!](?=\s|$)|$)"),
    }


def _entity_key_from_phrase(phrase: str, attr: str) -> str:
    """Canonical key of an entity phrase; a bare id resolves through the attribute's owner kind."""
    p = phrase.strip()
    if re.fullmatch(r"[A-Z]\d{1,3}", p):
        return f"{ATTRIBUTES[attr].owner} {p.lower()}"
    words = p.split()
    if words[0].lower() == "the":  # the Gold tier
        return f"{words[1].lower()} {words[2].lower()}"
    return f"{words[0].lower()} {words[1].lower()}"


_SENTENCE_END = re.compile(r"[.?!](?=\s|$)")


def _sentences(text: str) -> list[tuple[int, str]]:
    r"""Sentences with their offsets: split at . ? ! followed by space/end, and at newlines.

    The same spans as the regex `[^\n]*?(?:[.?!](?=\s|$)|$)` in multiline mode, found line by
    line (that regex's lazy scan dominated the simulated model's reading time)."""
    out: list[tuple[int, str]] = []
    base = 0
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            piece = line[start : m.end()]
            if piece.strip():
                out.append((base + start, piece))
            start = m.end()
        rest = line[start:]
        if rest.strip():
            out.append((base + start, rest))
        base += len(line) + 1
    return out


_STATEMENT_KEYS = ("s_correction", "s_update", "s_changed", "s_actually", "s_for", "s_the", "s_poss")
_CLAUSE_SPLIT = re.compile(r"; |, and ")


def parse_statements(text: str) -> list[ParsedStatement]:
    """Every statement in ``text``, in order. Sentences ending in '?' are questions and are skipped."""
    return list(_parse_statements_cached(text))


@lru_cache(maxsize=65536)
def _parse_statements_cached(text: str) -> tuple[ParsedStatement, ...]:
    """Cached per message and per sentence: full-history prompts and fact lists repeat sentences."""
    out: list[ParsedStatement] = []
    for start, st in statements_with_offsets(text):
        # model_construct: copying a validated statement with a shifted offset (hot path)
        out.append(st if start == 0 else ParsedStatement.model_construct(
            attr=st.attr, entity=st.entity, value=st.value, pos=start + st.pos, text=st.text, update=st.update))
    return tuple(out)


def statements_with_offsets(text: str) -> list[tuple[int, ParsedStatement]]:
    """(sentence offset, statement with `pos` relative to its sentence): the cheap form for readers
    that only need positions (the simulated model's recall)."""
    return [(start, st) for start, sentence in _sentences(text) for st in _parse_sentence(sentence)]


@lru_cache(maxsize=262_144)
def _parse_sentence(sentence: str) -> tuple[ParsedStatement, ...]:
    if sentence.rstrip().endswith("?"):
        return ()
    pats = _patterns()
    out: list[ParsedStatement] = []
    offset = 0
    for clause in _CLAUSE_SPLIT.split(sentence):
        cpos = sentence.index(clause, offset)
        offset = cpos + len(clause)
        for name in _STATEMENT_KEYS:
            m = pats[name].search(clause)
            if m is None:
                continue
            attr = m.group("a")
            end = m.end()
            if end < len(clause) and clause[end] == ".":
                end += 1
            out.append(
                ParsedStatement(
                    attr=attr,
                    entity=_entity_key_from_phrase(m.group("e"), attr),
                    value=m.group("v"),
                    pos=cpos + m.start(),
                    text=clause[m.start() : end],
                    update=name in ("s_correction", "s_update", "s_changed", "s_actually"),
                )
            )
            break
    return tuple(out)


def _entities_in(listing: str) -> list[str]:
    return [_entity_key_from_phrase(m.group(0), "") for m in _patterns()["ent"].finditer(listing)]


def _parse_one_question(s: str) -> ParsedQuestion | None:
    p = _patterns()
    s = s.strip()
    for name in ("q_arith", "q_add", "q_sub"):
        m = p[name].search(s)
        if m:
            a, b = m.group("a"), m.group("b")
            op = m.group("op") if name == "q_arith" else ("plus" if name == "q_add" else "minus")
            subj = ((a, _entity_key_from_phrase(m.group("e"), a)), (b, _entity_key_from_phrase(m.group("f"), b)))
            return ParsedQuestion(type="arithmetic", subjects=subj, operator=op, text=s)
    m = p["q_times"].search(s)
    if m:
        a = m.group("a")
        return ParsedQuestion(
            type="arithmetic",
            subjects=((a, _entity_key_from_phrase(m.group("e"), a)),),
            operator="times",
            constant=int(m.group("k")),
            text=s,
        )
    for name in ("q_cmp", "q_cmp2"):
        m = p[name].search(s)
        if m:
            a = m.group("a")
            b = m.group("b") if name == "q_cmp" else a
            subj = ((a, _entity_key_from_phrase(m.group("e"), a)), (b, _entity_key_from_phrase(m.group("f"), b)))
            return ParsedQuestion(type="comparison", subjects=subj, operator=m.group("op"), text=s)
    for name in ("q_total", "q_extreme", "q_extreme2"):
        m = p[name].search(s)
        if m:
            a = m.group("a")
            op = "total" if name == "q_total" else m.group("op")
            subj = tuple((a, e) for e in _entities_in(m.group("l")))
            return ParsedQuestion(type="aggregation", subjects=subj, operator=op, text=s)
    for name in ("q_verify", "q_confirm"):
        m = p[name].search(s)
        if m:
            a = m.group("a")
            return ParsedQuestion(
                type="verification",
                subjects=((a, _entity_key_from_phrase(m.group("e"), a)),),
                claimed=m.group("v"),
                text=s,
            )
    m = p["q_chain"].search(s)
    if m:
        hops = list(reversed(p["chain_split"].split(m.group("c"))))
        if all(h in ATTRIBUTES for h in hops):
            ent = _entity_key_from_phrase(m.group("e"), hops[0])
            qtype: QuestionType = "deduction" if len(hops) > 1 else "lookup"
            return ParsedQuestion(type=qtype, subjects=((hops[0], ent),), chain=tuple(hops), text=s)
    for name in ("q_tell", "q_poss"):
        m = p[name].search(s)
        if m:
            a = m.group("a")
            return ParsedQuestion(
                type="lookup", subjects=((a, _entity_key_from_phrase(m.group("e"), a)),), chain=(a,), text=s
            )
    return None


def last_question(text: str, parse_one: Callable[[str], ParsedQuestion | None]) -> ParsedQuestion | None:
    """The last sentence of ``text`` ending in '?' that `parse_one` reads (either language's reader)."""
    for _, sentence in reversed(_sentences(text)):
        if sentence.rstrip().endswith("?"):
            q = parse_one(sentence)
            if q is not None:
                return q
    return None


@lru_cache(maxsize=65536)
def parse_question(text: str) -> ParsedQuestion | None:
    """The last question in ``text`` (a sentence ending in '?' that matches a question form)."""
    return last_question(text, _parse_one_question)


# --------------------------------------------------------------------------- solving


class Solution(BaseModel):
    """The answer (display form) and the facts used, as (attr, entity, value) in use order."""

    answer: str
    used: list[tuple[str, str, str]]


def solve(q: ParsedQuestion, lookup: Callable[[str, str], str | None]) -> Solution | None:
    """Compute the answer from facts given by ``lookup(attr, entity)``; None if a fact is missing
    or a value does not fit the question (e.g. a non-number in arithmetic)."""
    used: list[tuple[str, str, str]] = []

    def get(attr: str, entity: str) -> str | None:
        v = lookup(attr, entity)
        if v is not None:
            used.append((attr, entity, v))
        return v

    if q.type == "deduction" or q.type == "lookup":
        chain = q.chain or (q.subjects[0][0],)
        entity: str | None = q.subjects[0][1]
        value = ""
        for i, attr in enumerate(chain):
            if i > 0:
                entity = value_entity(chain[i - 1], value)
            got = get(attr, entity) if entity is not None else None
            if got is None:
                return None
            value = got
        return Solution(answer=value, used=used)
    if q.type == "verification":
        attr, entity = q.subjects[0]
        value = get(attr, entity)
        if value is None:
            return None
        same = normalise_answer(value) == normalise_answer(q.claimed or "")
        return Solution(answer="yes" if same else "no", used=used)
    values = [get(a, e) for a, e in q.subjects]
    if any(v is None for v in values):
        return None
    nums = [parse_number(v or "") for v in values]
    if any(n is None for n in nums):
        return None
    numbers = [n[0] for n in nums if n is not None]
    unit = nums[0][1] if nums[0] is not None else ""
    if q.type == "arithmetic":
        if q.operator == "times":
            result = numbers[0] * int(q.constant or 0)
        elif q.operator == "minus":
            result = numbers[0] - numbers[1]
        else:
            result = numbers[0] + numbers[1]
        return Solution(answer=format_number(result, unit), used=used)
    if q.type == "aggregation" and q.operator == "total":
        return Solution(answer=format_number(sum(numbers), unit), used=used)
    pick_max = q.operator in ("higher", "largest")
    idx = max(range(len(numbers)), key=numbers.__getitem__) if pick_max else min(
        range(len(numbers)), key=numbers.__getitem__
    )
    return Solution(answer=entity_display(q.subjects[idx][1]), used=used)
