"""One deterministic token counter, shared by every system so token and latency figures compare."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

_TOKEN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")


def _ascii_classes() -> dict[int, str]:
    """Each ASCII character as the class `_TOKEN` gives it: "a" letter, "0" digit, " " space, "." mark."""
    table = {}
    for code in range(128):
        char = chr(code)
        if re.fullmatch(r"[A-Za-z]", char):
            table[code] = "a"
        elif re.fullmatch(r"\d", char):
            table[code] = "0"
        elif re.fullmatch(r"\s", char):
            table[code] = " "
        else:
            table[code] = "."
    return table


_CLASSES = _ascii_classes()


@lru_cache(maxsize=262_144)  # full-history prompts resend the same messages on every turn
def count_tokens(text: str) -> int:
    """Words, digit runs and punctuation marks: close to a BPE count for English prose.

    The number of `_TOKEN` matches; for ASCII text counted on the text's character classes (one mark
    per "." plus the runs of letters and of digits), about 4x faster than matching."""
    if not text.isascii():
        return len(_TOKEN.findall(text))
    classes = text.translate(_CLASSES)
    runs = classes.replace(".", " ")
    return classes.count(".") + len(runs.replace("0", " ").split()) + len(runs.replace("a", " ").split())


def count_message_tokens(contents: Iterable[str]) -> int:
    """Tokens of a chat prompt: each message's text plus 4 tokens of role framing."""
    return sum(count_tokens(c) + 4 for c in contents)
