"""The benchmark's everyday language (`--language natural`): the same world and truth as the
controlled language, in the wording people use (docs/conversation-language.md, "Natural").

Verbs instead of "is" ("ships in", "costs", "belongs to"), "went up to" and "moved from X to Y" for
changes, pronouns ("It ships in five days.") and elided subjects ("... and costs $12 to ship"),
numbers in words and with symbols ("forty-five dollars", "$1,250", "12%"), pasted multi-line
reports, and corrections that never repeat the subject ("Scratch the 120 dollars I gave earlier:
make that 150 dollars."). The generator writes with `NaturalWriter`; the simulated model reads with
`read_facts` and `parse_natural_question`, as a real LLM reads English. rapo's library never imports
this module.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from rapo.bench.language import (
    ATTRIBUTES,
    KINDS,
    NAME_KIND,
    UNITS,
    ParsedQuestion,
    _entity_key_from_phrase,
    _parse_sentence,
    _sentences,
    entity_display,
    entity_short,
    last_question,
    normalise_answer,
    parse_number,
)

# --------------------------------------------------------------------------- numbers in words

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w != "_"}


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000: 245 -> 'two hundred and forty-five'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def words_number(text: str) -> int | None:
    """The inverse of `number_words` (and of plain digits with thousands separators)."""
    t = text.strip().lower()
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+|\d+", t):
        return int(t.replace(",", ""))
    total, current = 0, 0
    words = [w for w in re.split(r"[\s-]+", t) if w and w != "and"]
    if not words:
        return None
    for w in words:
        if w in _WORD_VALUE:
            current += _WORD_VALUE[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            return None
    return total + current


_NUMBER_WORD = "|".join(sorted([*_WORD_VALUE, "hundred", "thousand"], key=len, reverse=True))
NUMBER = rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d+|(?:{_NUMBER_WORD})(?:(?:[\s-]|\sand\s)(?:{_NUMBER_WORD}))*)"
_UNIT = "|".join(re.escape(u) for u in UNITS)
VALUE_NUM = rf"(?:\$\s?{NUMBER}k?|{NUMBER}(?:\s?%| (?:{_UNIT})))"


_DOLLARS = re.compile(rf"\$\s?({NUMBER})(k?)")
_QUANTITY = re.compile(rf"({NUMBER})\s?(%|{_UNIT})")


def say_number(n: int, unit: str, rng: random.Random) -> str:
    """One of the ways people write a quantity; `read_value` turns each back into '<n> <unit>'."""
    r = rng.random()
    if unit == "dollars":
        if r < 0.35:
            return f"${n:,}"
        if r < 0.6 and n < 1000:
            return f"{number_words(n)} dollars"
        return f"{n:,} dollars"
    if unit == "percent":
        return f"{n}%" if r < 0.5 else (f"{number_words(n)} percent" if r < 0.8 else f"{n} percent")
    if unit == "thousand dollars":
        return f"${n}k" if r < 0.4 else f"{n} thousand dollars"
    if r < 0.45 and n < 1000:
        return f"{number_words(n)} {unit}"
    return f"{n:,} {unit}"


@lru_cache(maxsize=65_536)
def read_value(text: str, unit: str) -> str | None:
    """A quantity as written -> the canonical '<n> <unit>' of an attribute measured in `unit`."""
    t = text.strip()
    m = _DOLLARS.fullmatch(t)
    if m:
        n = words_number(m.group(1))
        if n is None:
            return None
        if m.group(2):  # $13k: thousand dollars
            return f"{n} thousand dollars" if unit == "thousand dollars" else f"{n * 1000} dollars"
        return f"{n} dollars" if unit == "dollars" else None
    m = _QUANTITY.fullmatch(t)
    if not m:
        return None
    n = words_number(m.group(1))
    u = "percent" if m.group(2) == "%" else m.group(2)
    return f"{n} {u}" if n is not None and u == unit else None


# --------------------------------------------------------------------------- verbs per attribute

# Subject-less verb phrases; {V} is the value. The attribute is told apart by the verb and by the
# kind of the subject ("costs" is a module's cost, "costs ... each" a component's unit cost).
VERBS: dict[str, tuple[str, ...]] = {
    "refund limit": ("can be refunded up to {V}", "has refunds capped at {V}"),
    "refund window": ("can be returned within {V}", "has a return window of {V}"),
    "shipping fee": ("costs {V} to ship", "ships for a fee of {V}"),
    "delivery time": ("ships in {V}", "takes {V} to arrive"),
    "item count": ("contains {V}", "holds {V}"),
    "customer": ("belongs to {V}", "was placed by {V}"),
    "tier": ("is on the {V} tier", "is a {V} member"),
    "loyalty balance": ("has collected {V}", "has {V} of loyalty balance"),
    "account credit": ("holds {V} in account credit", "has {V} of credit on the account"),
    "discount rate": ("gives a {V} discount", "comes with a discount of {V}"),
    "free shipping minimum": ("ships free above {V}", "gets free shipping from {V}"),
    "approval limit": ("is approved up to {V}", "can be approved for at most {V}"),
    "requested amount": ("asks for {V}", "requests {V}"),
    "loan term": ("runs for {V}", "is repaid over {V}"),
    "applicant": ("was filed by {V}", "was applied for by {V}"),
    "credit score": ("scores {V} on credit", "has a credit rating of {V}"),
    "annual income": ("earns {V} a year", "makes {V} a year"),
    "existing debt": ("owes {V}", "carries {V} of debt"),
    "risk band": ("falls in the {V} band", "is rated {V} for risk"),
    "interest rate": ("charges {V} interest", "carries interest of {V}"),
    "maximum term": ("allows terms up to {V}", "caps terms at {V}"),
    "weight": ("weighs {V}", "comes in at {V} on the scale"),
    "cost": ("costs {V}", "is priced at {V}"),
    "power draw": ("draws {V}", "uses {V} of power"),
    "heat output": ("gives off {V} of heat", "puts out {V} of heat"),
    "component": ("is built around {V}", "uses {V} inside"),
    "material grade": ("is made of {V}", "is cut from {V} stock"),
    "unit cost": ("costs {V} each", "sells for {V} a piece"),
    "lead time": ("takes {V} to source", "arrives {V} after ordering"),
    "tolerance": ("holds a tolerance of {V}", "is machined to within {V}"),
    "yield strength": ("yields at {V}", "withstands {V} before yielding"),
}
if set(VERBS) != set(ATTRIBUTES):  # pragma: no cover - a vocabulary edit must cover every attribute
    raise RuntimeError(f"natural verbs missing for {sorted(set(ATTRIBUTES) - set(VERBS))}")

_ANCHORED = ("Scratch the {OLD} I gave earlier: make that {V}.", "Sorry, where I said {OLD}, read {V}.",
             "My mistake, it's {V}, not {OLD}.")
_REPORT_HEADS = ("Pasting the note from the system:", "From the latest report:", "Copied from the ticket:")


# --------------------------------------------------------------------------- the writer


@dataclass
class Plan:
    """One statement to write: the generator's plan, with the previous value for an update."""

    attr: str
    entity: str
    value: str
    update: bool = False
    old: str = ""


@dataclass
class Written:
    sentence: str  # the sentence or line that states the fact, as written
    value: str  # the value as written in it


class NaturalWriter:
    """Writes the generator's plans and questions in everyday English, from its own random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- values and subjects -------------------------------------------------------------------

    def value(self, attr: str, value: str) -> str:
        spec = ATTRIBUTES[attr]
        if spec.kind == "number":
            n = parse_number(value)
            assert n is not None
            return say_number(n[0], n[1], self.rng)
        return value  # an entity ("customer C5") or a name ("Gold")

    def subject(self, entity: str, attr: str) -> str:
        """'order A17', or its bare id 'A17' (which the attribute's owner kind resolves)."""
        kind = entity.split(" ", 1)[0]
        if KINDS[kind].named if kind in KINDS else True:
            return entity_display(entity)
        return entity_display(entity) if self.rng.random() < 0.7 else entity_short(entity)

    # -- statements ----------------------------------------------------------------------------

    def statements(self, plans: Sequence[Plan], unique_old: Iterable[str]) -> tuple[str, list[Written]]:
        """A statement turn: sentences, pronouns for a repeated subject, elided subjects, or a pasted
        report; `unique_old` are values that name one fact of the conversation (for corrections that
        never repeat the subject). Returns the text and, per plan, its sentence and written value."""
        order = sorted(range(len(plans)), key=lambda i: (plans[i].entity, i))  # one subject's facts together
        unique = set(unique_old)
        same = len(plans) >= 2 and len({p.entity for p in plans}) == 1
        if same and not any(p.update for p in plans) and self.rng.random() < 0.5:
            return self._report([plans[i] for i in order], order)
        written: list[Written | None] = [None] * len(plans)
        parts: list[str] = []
        prev: str | None = None
        for i in order:
            p = plans[i]
            v = self.value(p.attr, p.value)
            if p.update and ATTRIBUTES[p.attr].kind == "number" and normalise_answer(p.old) in unique \
                    and self.rng.random() < 0.5:
                old = self.value(p.attr, p.old)
                s = self.rng.choice(_ANCHORED).format(OLD=old, V=v)
                parts.append(s)
                written[i] = Written(s.rstrip("."), v)
                prev = None
                continue
            pronoun = prev == p.entity
            s = self._sentence(p, v, pronoun)
            if pronoun and parts and not parts[-1].startswith(tuple(t.split("{")[0] for t in _ANCHORED)) \
                    and self.rng.random() < 0.4 and not p.update:
                phrase = self.rng.choice(VERBS[p.attr]).format(V=v)  # elided subject
                parts[-1] = parts[-1].rstrip(".") + f", and {phrase}."
                written[i] = Written(phrase, v)
            else:
                parts.append(s)
                written[i] = Written(s.rstrip("."), v)
            prev = p.entity
        return " ".join(parts), [w for w in written if w is not None]

    def _sentence(self, p: Plan, v: str, pronoun: bool) -> str:
        rng = self.rng
        subj = "It" if pronoun else _cap(self.subject(p.entity, p.attr))
        poss = "Its" if pronoun else _cap(_possessive(self.subject(p.entity, p.attr)))
        if p.update:
            spec = ATTRIBUTES[p.attr]
            old = self.value(p.attr, p.old)
            forms = [f"{subj} now {rng.choice(VERBS[p.attr]).format(V=v)}.",
                     f"{poss} {p.attr} moved from {old} to {v}."]
            if spec.kind == "number":
                up = (parse_number(p.value) or (0, ""))[0] > (parse_number(p.old) or (0, ""))[0]
                forms.append(f"{poss} {p.attr} went {'up' if up else 'down'} to {v}.")
            return rng.choice(forms)
        forms = [f"{subj} {rng.choice(VERBS[p.attr]).format(V=v)}.", f"{subj} {rng.choice(VERBS[p.attr]).format(V=v)}."]
        if ATTRIBUTES[p.attr].kind == "number":
            forms.append(f"{poss} {p.attr} comes to {v}.")
            if not pronoun:
                forms.append(f"The {p.attr} on {self.subject(p.entity, p.attr)} comes to {v}.")
        return rng.choice(forms)

    def _report(self, plans: Sequence[Plan], order: Sequence[int]) -> tuple[str, list[Written]]:
        head = entity_display(plans[0].entity)
        lines = [self.rng.choice(_REPORT_HEADS), _cap(head)]
        written: dict[int, Written] = {}
        for i, p in zip(order, plans):
            v = self.value(p.attr, p.value)
            line = f"- {p.attr}: {v}"
            lines.append(line)
            written[i] = Written(line, v)
        return "\n".join(lines), [written[i] for i in sorted(written)]

    # -- questions -----------------------------------------------------------------------------

    def question(self, q: ParsedQuestion) -> str:
        rng = self.rng
        subj = lambda a, e: _possessive(self.subject(e, a))  # noqa: E731
        if q.type == "lookup":
            (a, e), = q.subjects
            return rng.choice((f"What's the {a} on {self.subject(e, a)}?", f"Do you have {subj(a, e)} {a} handy?",
                               f"And {subj(a, e)} {a}, what is it now?"))
        if q.type == "arithmetic":
            (a, e), *rest = q.subjects
            if q.operator == "times":
                k = q.constant or 0
                kk = number_words(k) if rng.random() < 0.5 else str(k)
                return rng.choice((f"What would {kk} times {subj(a, e)} {a} be?", f"What's {subj(a, e)} {a} times {kk}?"))
            (b, f), = rest
            if q.operator == "plus":
                return rng.choice((f"What do {subj(a, e)} {a} and {subj(b, f)} {b} come to together?",
                                   f"If I add {subj(b, f)} {b} to {subj(a, e)} {a}, what do I get?"))
            return rng.choice((f"How much bigger is {subj(a, e)} {a} than {subj(b, f)} {b}?",
                               f"What's {subj(a, e)} {a} less {subj(b, f)} {b}?"))
        if q.type == "comparison":
            (a, e), (_, f) = q.subjects
            word = "higher" if q.operator == "higher" else "lower"
            d1, d2 = entity_display(e), entity_display(f)
            return rng.choice((f"Between {d1} and {d2}, which has the {word} {a}?",
                               f"Which one is {word} on {a}, {d1} or {d2}?"))
        if q.type == "aggregation":
            a = q.subjects[0][0]
            ds = [entity_display(e) for _, e in q.subjects]
            listing = ", ".join(ds[:-1]) + " and " + ds[-1]
            if q.operator == "total":
                return rng.choice((f"Add up the {a} for {listing}: what's the total?",
                                   f"What's the {a} of {listing} altogether?"))
            word = "biggest" if q.operator == "largest" else "smallest"
            return rng.choice((f"Of {listing}, which has the {word} {a}?", f"Out of {listing}, whose {a} is {word}?"))
        if q.type == "deduction":
            (a0, e), = q.subjects
            hops = list(q.chain)
            start = f"{subj(a0, e)} {hops[0]}"
            if len(hops) == 2:
                return rng.choice((f"Take {start}: what is its {hops[1]}?", f"What's the {hops[1]} of {start}?"))
            return f"Start from {start}, then its {hops[1]}: what's the {hops[2]} there?"
        (a, e), = q.subjects
        claimed = self.value(a, q.claimed or "")
        return rng.choice((f"{_cap(subj(a, e))} {a} is {claimed}, right?", f"Is {subj(a, e)} {a} still {claimed}?",
                           f"Am I right that {self.subject(e, a)} has a {a} of {claimed}?"))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _possessive(subject: str) -> str:
    return subject + "'s"


# --------------------------------------------------------------------------- the reader


@lru_cache(maxsize=1)
def _patterns() -> dict[str, re.Pattern[str]]:
    id_nouns = "|".join(k.noun for k in KINDS.values() if not k.named)
    named_nouns = "|".join(k.noun for k in KINDS.values() if k.named)
    names = "|".join(sorted(NAME_KIND, key=len, reverse=True))
    ent = rf"(?:(?i:{id_nouns}) [A-Z]\d{{1,3}}|(?i:the )?(?:{names}) (?:{named_nouns})|[A-Z]\d{{1,3}})"
    attr = "|".join(re.escape(a) for a in sorted(ATTRIBUTES, key=len, reverse=True))
    val = rf"(?:{VALUE_NUM}|(?i:{id_nouns}) [A-Z]\d{{1,3}}|(?:{names}))"
    return {"ent": re.compile(ent), "attr": re.compile(attr), "val": re.compile(val),
            "ENT": re.compile(ent).pattern, "ATTR": re.compile(attr).pattern, "VAL": re.compile(val).pattern}


@lru_cache(maxsize=1)
def _verb_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """(attribute, pattern of its subject-less verb phrase with a named group v)."""
    p = _patterns()
    out = []
    for attr, forms in VERBS.items():
        for form in forms:
            head, _, tail = form.partition("{V}")
            out.append((attr, re.compile(re.escape(head) + rf"(?P<v>{p['VAL']})" + re.escape(tail) + r"\.?$")))
    return out


@dataclass(frozen=True)
class _Raw:
    """A statement as read from one clause, before its subject is resolved: `subject` is an entity
    phrase, "it" (a pronoun or an elided subject), or None with `anchor` (a value the correction
    replaces)."""

    attr: str | None
    subject: str | None
    value: str
    start: int
    text: str
    anchor: str | None = None


def _subject_kind(phrase: str) -> str | None:
    first = phrase.split(" ")[0].lower()
    if first in KINDS:
        return first
    words = phrase.replace("the ", "").split()
    return words[1].lower() if len(words) > 1 and words[1].lower() in KINDS else None


@lru_cache(maxsize=1)
def _clause_patterns() -> dict[str, re.Pattern[str]]:
    p = _patterns()
    ENT, ATTR, VAL = p["ENT"], p["ATTR"], p["VAL"]
    return {
        "anchor": re.compile(rf"^(?:Scratch the|Sorry, where I said) (?P<old>{VAL})(?: I gave earlier)?[:,] "
                             rf"(?:make that|read) (?P<v>{VAL})$"),
        "anchor2": re.compile(rf"^My mistake, it's (?P<v>{VAL}), not (?P<old>{VAL})$"),
        "line": re.compile(rf"^- (?P<a>{ATTR}): (?P<v>{VAL})$"),
        "poss": re.compile(rf"^(?:(?P<e>{ENT})'s|(?P<its>Its|its)) (?P<a>{ATTR}) (?:comes to|moved from (?:{VAL}) to|"
                           rf"went (?:up|down) to) (?P<v>{VAL})$"),
        "on": re.compile(rf"^The (?P<a>{ATTR}) on (?P<e>{ENT}) comes to (?P<v>{VAL})$"),
        "subject": re.compile(rf"^(?:(?P<e>{ENT})|(?P<it>It|it))(?: now)? (?P<rest>.+)$"),
        "heading": re.compile(rf"\s*(?P<e>{ENT})\s*"),
    }


def _clause(clause: str, start: int) -> list[_Raw]:
    pats = _clause_patterns()
    c = clause.strip().rstrip(".")
    off = start + (len(clause) - len(clause.lstrip()))
    for name in ("anchor", "anchor2"):
        m = pats[name].match(c)
        if m:
            return [_Raw(None, None, m.group("v"), off, c, anchor=m.group("old"))]
    m = pats["line"].match(c)
    if m:  # a report line: the subject is the report's heading
        return [_Raw(m.group("a"), "it", m.group("v"), off, c)]
    for name in ("poss", "on"):
        m = pats[name].match(c)
        if m:
            return [_Raw(m.group("a"), m.group("e") or "it", m.group("v"), off, c)]
    m = pats["subject"].match(c)
    if m:
        got = _verb(m.group("rest"))
        if got:
            return [_Raw(got[0], m.group("e") or "it", got[1], off, c)]
    got = _verb(c)  # an elided subject: "... and ships in five days"
    if got:
        return [_Raw(got[0], "it", got[1], off, c)]
    return []


def _verb(phrase: str) -> tuple[str, str] | None:
    for attr, pat in _verb_patterns():
        m = pat.match(phrase)
        if m:
            return attr, m.group("v")
    return None


_SPLIT = re.compile(r", and (?=[a-z])|; ")
_BULLET = re.compile(r"\s*[-*\u2022]\s+")


@lru_cache(maxsize=65_536)
def _raw_sentence(sentence: str) -> tuple[_Raw, ...]:
    if sentence.rstrip().endswith("?"):
        return ()
    controlled = _parse_sentence(sentence)
    if controlled:  # the controlled forms read as before
        return tuple(_Raw(st.attr, st.entity, st.value, st.pos, st.text) for st in controlled)
    out: list[_Raw] = []
    pos = 0
    bullet = _BULLET.match(sentence)
    if bullet and not _clause_patterns()["line"].match(sentence.strip()):
        pos = bullet.end()  # "- Loan N89's amount comes to $52,905.": a list item reads as its sentence
    for clause in _SPLIT.split(sentence[pos:]):
        at = sentence.index(clause, pos)
        pos = at + len(clause)
        out += _clause(clause, at)
    if not out:  # a report's heading names the subject of its lines (also when quoted as a list item)
        m = _clause_patterns()["heading"].fullmatch((sentence[bullet.end():] if bullet else sentence).rstrip(" ."))
        if m:
            out.append(_Raw(None, m.group("e"), "", 0, sentence.strip()))
    return tuple(out)


@dataclass
class Fact:
    attr: str
    entity: str
    value: str  # canonical
    offset: int  # in the joined text
    text: str


def _canonical(attr: str, value: str) -> str | None:
    spec = ATTRIBUTES[attr]
    if spec.kind == "number":
        return read_value(value, spec.unit)
    if spec.kind == "name":
        return value if value in NAME_KIND else None
    return value if re.fullmatch(r"[a-z]+ [A-Z]\d{1,3}", value) else None


def read_facts(texts: Sequence[str], read: Sequence[bool] | None = None) -> list[Fact]:
    """Every fact stated in `texts` (one string per message, read in order as one text, joined by
    newlines; `read[i]` False skips message i but keeps its place), with its subject resolved: a
    pronoun or an elided subject is the last subject named, a correction that names only the old
    value replaces the latest fact holding that value."""
    out: list[Fact] = []
    last: str | None = None  # the last subject phrase named
    base = 0
    for i, text in enumerate(texts):
        if read is not None and not read[i]:
            base += len(text) + 1
            continue
        for start, sentence in _sentences(text):
            for raw in _raw_sentence(sentence):
                if raw.anchor is not None:
                    old = {normalise_answer(v) for v in _anchor_values(raw.anchor)}
                    hit = next((f for f in reversed(out) if f.value in old), None)
                    value = _canonical(hit.attr, raw.value) if hit else None
                    if hit and value:
                        out.append(Fact(hit.attr, hit.entity, value, base + start + raw.start, raw.text))
                    last = None
                    continue
                phrase = raw.subject if raw.subject != "it" else last
                if raw.attr is None:  # a heading
                    last = raw.subject
                    continue
                if phrase is None:
                    continue
                if raw.subject != "it":
                    last = raw.subject
                kind = _subject_kind(phrase)
                if kind is not None and kind != ATTRIBUTES[raw.attr].owner:
                    attr = _same_verb(raw, kind)
                    if attr is None:
                        continue
                else:
                    attr = raw.attr
                value = _canonical(attr, raw.value)
                if value is None:
                    continue
                entity = phrase if " " in phrase and phrase.islower() else _entity_key_from_phrase(phrase, attr)
                out.append(Fact(attr, entity, value, base + start + raw.start, raw.text))
        base += len(text) + 1
    return out


def _same_verb(raw: _Raw, kind: str) -> str | None:
    """Another attribute of `kind` the same words state ('costs $5 each' is not a module's cost)."""
    for attr, pat in _verb_patterns():
        if ATTRIBUTES[attr].owner == kind and pat.search(raw.text):
            return attr
    return None


def _anchor_values(text: str) -> list[str]:
    """Every canonical reading of a value a correction names (its unit is not said again)."""
    return [v for unit in {a.unit for a in ATTRIBUTES.values() if a.unit} if (v := read_value(text, unit))]


# --------------------------------------------------------------------------- questions


@lru_cache(maxsize=1)
def _question_patterns() -> list[tuple[str, re.Pattern[str]]]:
    p = _patterns()
    E, A, V = p["ENT"], p["ATTR"], p["VAL"]
    L = rf"(?P<l>{E}(?:, {E})*,? and {E})"
    pos = lambda n, a: rf"(?P<{n}>{E})'s (?P<{a}>{A})"  # noqa: E731
    forms = [
        ("lookup", rf"^What's the (?P<a>{A}) on (?P<e>{E})\?$"),
        ("lookup", rf"^Do you have {pos('e', 'a')} handy\?$"),
        ("lookup", rf"^And {pos('e', 'a')}, what is it now\?$"),
        ("times", rf"^What would (?P<k>{NUMBER}) times {pos('e', 'a')} be\?$"),
        ("times", rf"^What's {pos('e', 'a')} times (?P<k>{NUMBER})\?$"),
        ("plus", rf"^What do {pos('e', 'a')} and {pos('f', 'b')} come to together\?$"),
        ("plus", rf"^If I add {pos('f', 'b')} to {pos('e', 'a')}, what do I get\?$"),
        ("minus", rf"^How much bigger is {pos('e', 'a')} than {pos('f', 'b')}\?$"),
        ("minus", rf"^What's {pos('e', 'a')} less {pos('f', 'b')}\?$"),
        ("comparison", rf"^Between (?P<e>{E}) and (?P<f>{E}), which has the (?P<op>higher|lower) (?P<a>{A})\?$"),
        ("comparison", rf"^Which one is (?P<op>higher|lower) on (?P<a>{A}), (?P<e>{E}) or (?P<f>{E})\?$"),
        ("total", rf"^Add up the (?P<a>{A}) for {L}: what's the total\?$"),
        ("total", rf"^What's the (?P<a>{A}) of {L} altogether\?$"),
        ("extreme", rf"^Of {L}, which has the (?P<op>biggest|smallest) (?P<a>{A})\?$"),
        ("extreme", rf"^Out of {L}, whose (?P<a>{A}) is (?P<op>biggest|smallest)\?$"),
        ("chain2", rf"^Take {pos('e', 'a')}: what is its (?P<b>{A})\?$"),
        ("chain2", rf"^What's the (?P<b>{A}) of {pos('e', 'a')}\?$"),
        ("chain3", rf"^Start from {pos('e', 'a')}, then its (?P<b>{A}): what's the (?P<c>{A}) there\?$"),
        ("verify", rf"^{pos('e', 'a')} is (?P<v>{V}), right\?$"),
        ("verify", rf"^Is {pos('e', 'a')} still (?P<v>{V})\?$"),
        ("verify", rf"^Am I right that (?P<e>{E}) has an? (?P<a>{A}) of (?P<v>{V})\?$"),
    ]
    return [(kind, re.compile(pat, re.IGNORECASE if kind == "never" else 0)) for kind, pat in forms]


def _key(phrase: str, attr: str) -> str:
    return _entity_key_from_phrase(phrase[0].upper() + phrase[1:] if re.match(r"[a-z]\d", phrase) else phrase, attr)


_LABEL = re.compile(r"^(?:[-*>]\s*)?(?:[A-Z][a-z]+:\s+)?")  # "Task: ", "Question: ", "- "


def _one_question(s: str) -> ParsedQuestion | None:
    s = _LABEL.sub("", s.strip(), count=1)
    s = s[:1].upper() + s[1:]
    for kind, pat in _question_patterns():
        m = pat.match(s)
        if m is None:
            continue
        g = m.groupdict()
        a = g.get("a")
        if kind == "lookup":
            return ParsedQuestion(type="lookup", subjects=((a, _key(g["e"], a)),), chain=(a,), text=s)
        if kind == "times":
            k = words_number(g["k"])
            return ParsedQuestion(type="arithmetic", subjects=((a, _key(g["e"], a)),), operator="times", constant=k,
                                  text=s)
        if kind in ("plus", "minus"):
            b = g["b"]
            return ParsedQuestion(type="arithmetic", subjects=((a, _key(g["e"], a)), (b, _key(g["f"], b))),
                                  operator=kind, text=s)
        if kind == "comparison":
            return ParsedQuestion(type="comparison", subjects=((a, _key(g["e"], a)), (a, _key(g["f"], a))),
                                  operator=g["op"], text=s)
        if kind in ("total", "extreme"):
            ents = [_key(x.group(0), a) for x in _patterns()["ent"].finditer(g["l"])]
            op = "total" if kind == "total" else ("largest" if g["op"] == "biggest" else "smallest")
            return ParsedQuestion(type="aggregation", subjects=tuple((a, e) for e in ents), operator=op, text=s)
        if kind in ("chain2", "chain3"):
            chain = (a, g["b"]) + ((g["c"],) if kind == "chain3" else ())
            return ParsedQuestion(type="deduction", subjects=((a, _key(g["e"], a)),), chain=chain, text=s)
        spec = ATTRIBUTES[a]
        claimed = read_value(g["v"], spec.unit) if spec.kind == "number" else g["v"]
        if claimed is None:
            return None
        return ParsedQuestion(type="verification", subjects=((a, _key(g["e"], a)),), claimed=claimed, text=s)
    return None


@lru_cache(maxsize=65_536)
def parse_natural_question(text: str) -> ParsedQuestion | None:
    """The last question of `text` in the natural wording."""
    return last_question(text, _one_question)
