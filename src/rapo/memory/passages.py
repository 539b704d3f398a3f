"""What was said, kept verbatim: every turn cut into sentence-sized passages with where they came from.

Nothing said is dropped, whether or not a fact rule understood it: retrieval finds passages by what
they say, and the ledger (`rapo.memory.ledger`) decides which values among them are current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapo.tokens import count_tokens

__all__ = ["Passage", "split_passages", "split_speakers"]

_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9#])|\n+")
_WORD_BREAK = re.compile(r"\S+")
_CLAUSE_BREAK = re.compile(r"(?<=[;:])\s+|(?<=,)\s+(?=(?:and|but|so|while|which|because|please|then)\b)|\s+(?=(?:and|but)\s)")
# "Tom: text" at the start of a line: a pasted chat log's speaker label (a name of one to three
# capitalised words, or an e-mail style "From" line is left as text).
_SPEAKER_LINE = re.compile(r"^\s*(?P<name>[A-Z][\w.'-]{0,30}(?: [A-Z][\w.'-]{0,30}){0,2})\s*:\s+(?P<text>\S.*)$")
_NOT_SPEAKERS = frozenset(
    "note nb ps fyi update correction answer question summary subject re fwd date time from to cc bcc "
    "task step result reason warning error important reminder update total attention".split()
)


@dataclass(slots=True)
class Passage:
    """One sentence (or a slice of a long one) of one turn. `covered_by` lists the ledger facts read
    from it: a passage whose facts stand for it is shown as those facts, and never when they were
    superseded."""

    id: int
    turn: int
    part: int  # its position in the turn
    text: str
    speaker: str | None
    when: str | None
    origin: str  # user | agent | observed
    tokens: int
    covered_by: list[int] = field(default_factory=list)
    coverage: float = 0.0  # share of the passage's tokens that its facts quote


def split_speakers(text: str) -> list[tuple[str | None, str]]:
    """A pasted chat log ("Tom: ...\\nAna: ...") as (speaker, line) pieces; other text as one piece
    with no speaker. A line without a label continues the previous speaker's piece."""
    lines = text.splitlines()
    labelled = [_SPEAKER_LINE.match(line) for line in lines]
    names = [m.group("name") for m in labelled if m and m.group("name").lower() not in _NOT_SPEAKERS]
    if len(names) < 2:  # one "Note: ..." line is not a chat log
        return [(None, text)]
    pieces: list[tuple[str | None, str]] = []
    for line, m in zip(lines, labelled):
        if m and m.group("name").lower() not in _NOT_SPEAKERS:
            pieces.append((m.group("name"), m.group("text").strip()))
        elif line.strip():
            if pieces:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + "\n" + line.strip())
            else:
                pieces.append((None, line.strip()))
    return pieces


def _windows(text: str, max_tokens: int) -> list[str]:
    words = _WORD_BREAK.findall(text)
    out: list[str] = []
    chunk: list[str] = []
    used = 0
    for w in words:
        cost = count_tokens(w)
        if chunk and used + cost > max_tokens:
            out.append(" ".join(chunk))
            chunk, used = [], 0
        chunk.append(w)
        used += cost
    if chunk:
        out.append(" ".join(chunk))
    return out


def split_passages(text: str, max_tokens: int = 24) -> list[str]:
    """Sentences; a sentence longer than `max_tokens` is cut at its clauses (";", ", and", ...) and
    a clause still too long into word windows, so one long turn cannot fill a prompt's budget alone
    and each passage is scored on its own words."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if count_tokens(sentence) <= max_tokens:
            out.append(sentence)
            continue
        chunk = ""
        for clause in _CLAUSE_BREAK.split(sentence):
            if not clause.strip():
                continue
            joined = f"{chunk} {clause}".strip()
            if count_tokens(joined) <= max_tokens:
                chunk = joined
                continue
            if chunk:
                out.append(chunk)
            if count_tokens(clause) <= max_tokens:
                chunk = clause.strip()
            else:
                out += _windows(clause, max_tokens)
                chunk = ""
        if chunk:
            out.append(chunk)
    return out

