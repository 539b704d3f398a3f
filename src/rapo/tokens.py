"""One deterministic token counter, shared by every system so token and latency figures compare."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

_TOKEN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")


@lru_cache(maxsize=262_144)  # full-history prompts resend the same messages on every turn
def count_tokens(text: str) -> int:
    """Words, digit runs and punctuation marks: close to a BPE count for English prose."""
    return len(_TOKEN.findall(text))


def count_message_tokens(contents: Iterable[str]) -> int:
    """Tokens of a chat prompt: each message's text plus 4 tokens of role framing."""
    return sum(count_tokens(c) + 4 for c in contents)
