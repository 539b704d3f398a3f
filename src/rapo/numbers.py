"""Quantities in English text: "$250k", "237 thousand dollars", "two hundred and thirty-six
dollars", "12%", "3 days".

A correction often names a value without its subject ("the 120 dollars should have been 150"),
and people write one number in several forms, so the ledger compares quantities, not strings.
Only English cardinal number words are read: they are the language's, not any data set's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Quantity", "find_quantities", "may_hold_two", "same_quantity", "words_to_number"]

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_SUFFIX = {"k": 1_000, "m": 1_000_000, "bn": 1_000_000_000}
_CURRENCY = {"$": "dollar", "€": "euro", "£": "pound"}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))
# A word that cannot be a unit: it starts the next phrase ("3 days I gave", "150 for order B").
_NOT_UNIT = frozenset(
    "a an the and or but of to in on at for with by from is are was were be been it its this that these "
    "those i we you he she they me us them my our your his her their not no so as than then if per each "
    "every all any some more less".split())

_QUANTITY = re.compile(
    rf"(?P<cur>[$€£])?\s?"
    rf"(?:(?<![\w.])(?P<num>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?)(?P<suf>k|m|bn)?\b"
    rf"|\b(?P<words>(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*)\b)"
    rf"(?:\s+(?P<scale>thousand|million|billion)\b)?"
    rf"(?P<pct>\s?%|\s+percent\b)?"
    rf"(?:\s+(?P<unit>[A-Za-z][a-z]+)\b)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number as written, its value, and its unit where one is said (singular, lowercase)."""

    start: int
    end: int
    text: str
    value: float
    unit: str | None
    number: str = ""  # the number alone, as written ("$250k", "two hundred", "12%")


def words_to_number(words: str) -> float | None:
    """ "two hundred and thirty-six" -> 236; None when the words are not one English cardinal."""
    parts = [w for w in re.split(r"[\s-]+", words.lower().strip()) if w and w != "and"]
    if not parts:
        return None
    total = current = 0
    last: str | None = None  # the kind of the previous word, to refuse "five six" or "twenty thirty"
    for w in parts:
        if w in _UNITS:
            if last in ("unit", "teen") or (last == "ten" and _UNITS[w] >= 10) or (last == "ten" and _UNITS[w] == 0):
                return None
            current += _UNITS[w]
            last = "teen" if _UNITS[w] >= 10 else "unit"
        elif w in _TENS:
            if last in ("unit", "teen", "ten"):
                return None
            current += _TENS[w]
            last = "ten"
        elif w in _SCALES:
            scale = _SCALES[w]
            if scale == 100:
                if last == "scale100" or current % 100 == 0 and current:
                    return None
                current = (current or 1) * 100
                last = "scale100"
            else:
                total += (current or 1) * scale
                current = 0
                last = "scale"
        else:
            return None
    return float(total + current)


def _singular(word: str) -> str:
    w = word.lower()
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def find_quantities(text: str) -> list[Quantity]:
    """Every quantity in `text`, in order. A currency sign is the unit ("$250k" is 250,000 dollars);
    the word after a number is its unit unless it begins the next phrase."""
    out: list[Quantity] = []
    for m in _QUANTITY.finditer(text):
        if m.group("num") is not None:
            value = float(m.group("num").replace(",", ""))
            if m.group("suf"):
                value *= _SUFFIX[m.group("suf").lower()]
        else:
            got = words_to_number(m.group("words"))
            if got is None:
                continue
            value = got
        if m.group("scale"):
            value *= _SCALES[m.group("scale").lower()]
        unit = _CURRENCY.get(m.group("cur") or "")
        end = max(m.end(g) for g in ("num", "suf", "words", "scale") if m.group(g))
        if m.group("pct"):
            unit, end = unit or "percent", m.end("pct")
        elif m.group("unit") and not unit and m.group("unit").lower() not in _NOT_UNIT:
            unit, end = _singular(m.group("unit")), m.end("unit")
        start = m.start("cur") if m.group("cur") else m.start("num" if m.group("num") is not None else "words")
        number_end = m.end("pct") if m.group("pct") else max(m.end(g) for g in ("num", "suf", "words", "scale") if m.group(g))
        out.append(Quantity(start=start, end=end, text=text[start:end].strip(), value=value, unit=unit,
                            number=text[start:number_end].strip()))
    return out


_NUMERAL = re.compile(rf"(?<![\w.])\d|\b(?:{_NUMBER_WORD})\b", re.IGNORECASE)


def may_hold_two(text: str) -> bool:
    """A cheap test before `find_quantities`: does the text have two numerals at all?"""
    it = _NUMERAL.finditer(text)
    return next(it, None) is not None and next(it, None) is not None


def same_quantity(a: Quantity, b: Quantity) -> bool:
    """The same number, in the same unit where both say one ("150" may be "150 dollars")."""
    return a.value == b.value and (a.unit is None or b.unit is None or a.unit == b.unit)
