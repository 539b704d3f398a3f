"""Optional fact extraction through a model, for text the rule-based extractor cannot read.

The model lists what a message states as `subject: value` lines; each line becomes a Statement
keyed exactly as rule-based extraction keys it, so supersession works across both extractors.
"""

from __future__ import annotations

import re
from typing import Sequence

from rapo.extract import Statement, find_value_ids, make_key, parse_subject
from rapo.types import Backend, Completion, Message

EXTRACTION_PROMPT = (
    "You extract facts. List every fact the user's message states, one per line, as\n"
    "subject: value\n"
    "The subject names what the fact is about, with its identifiers as written (for example "
    "'refund limit for order A17'); the value is the current value with its unit. A correction "
    "gives only the new value. Questions and requests state no facts. If the message states none, "
    "reply NONE."
)

_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])?\s*(?P<subject>[^:\n]{2,120}?)\s*:\s*(?P<value>\S[^\n]{0,200}?)\s*\.?\s*$")


def parse_fact_lines(reply: str) -> list[Statement]:
    """`subject: value` lines of a model's reply as Statements (anything else is ignored)."""
    out: list[Statement] = []
    for line in reply.splitlines():
        m = _LINE.match(line)
        if not m or m.group("subject").strip().lower() in {"answer", "none", "note", "subject"}:
            continue
        subject, value = m.group("subject").strip(), m.group("value").strip()
        attribute, ids = parse_subject(subject)
        if not attribute and not ids:
            continue
        out.append(Statement(subject=subject, key=make_key(attribute, ids), entity_ids=ids, attribute=attribute,
                             value=value, value_ids=find_value_ids(value), text=f"The {subject} is {value}.",
                             is_update=False))
    return out


async def extract_with_model(text: str, backend: Backend, model: str) -> tuple[list[Statement], Completion]:
    messages: Sequence[Message] = [Message(role="system", content=EXTRACTION_PROMPT),
                                   Message(role="user", content=text)]
    completion = await backend.complete(messages, model=model)
    return parse_fact_lines(completion.text), completion
