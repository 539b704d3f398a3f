"""Statements from plain conversation text: the facts ledger's only input.

Users never hand rapo structured facts, so every sentence a user (or agent) writes is split into
clauses, and each clause of the form "<subject> is <value>" becomes a `Statement` keyed by what it
is about. The key must not depend on phrasing ("A17's refund limit", "the refund limit for order
A17", "For order A17, the refund limit ...") or a later correction would not supersede the earlier
value; and it must keep near-duplicates apart ("A17" vs "A71", "refund limit" vs "refund window"),
or a distractor would overwrite the real fact. Pure regex and word lists: no model call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from pydantic import BaseModel, ConfigDict

from .numbers import find_quantities

__all__ = [
    "Statement",
    "extract_statements",
    "parse_subject",
    "find_value_ids",
    "normalise_word",
    "normalise_value",
    "split_sentences",
    "is_question_or_request",
    "make_key",
]


class Statement(BaseModel):
    """One "<subject> is <value>" clause, with the subject normalised to a key."""

    model_config = ConfigDict(frozen=True)

    subject: str
    key: str
    entity_ids: tuple[str, ...]
    attribute: str
    value: str
    value_ids: tuple[str, ...]
    text: str
    is_update: bool = False


# --- word lists -----------------------------------------------------------------------------

DETERMINERS = frozenset(
    "the a an this that these those its their our my your his her each every any some".split()
)
PREPOSITIONS = frozenset(
    "for of on in at to with about regarding concerning from by under per within into onto".split()
)
# Words that qualify a value in time rather than name a different attribute: "the new limit" and
# "the limit" are the same subject, so an update phrased either way supersedes.
QUALIFIERS = frozenset("new current latest updated revised old actual present final".split())
PRONOUNS = frozenset(
    "it there here he she they we i you who which what everything nothing something "
    "anything someone everyone one me us them him".split()
)
STOP_ATTRIBUTE = DETERMINERS | PREPOSITIONS | QUALIFIERS | PRONOUNS | frozenset({"and", "or", "s"})

# Nouns that name the kind of an identified thing ("order A17", "the Gold tier"). Dropped from the
# key so "order A17's limit" and "A17's limit" match; the generic rule in `_type_noun_positions`
# covers nouns missing here.
TYPE_NOUNS = frozenset(
    """order customer client account user ticket invoice item product sku applicant loan module
    component tier band grade plan project case employee member patient vendor supplier store shop
    branch region contract policy claim request job task part unit batch lot shipment package
    parcel team device machine server site building room flight booking reservation subscription
    model version release feature issue bug id number no""".split()
)
# Capitalised words that are not names even mid-sentence.
NOT_NAMES = frozenset(
    """i i'm i've i'd i'll ok okay monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december usd eur gbp""".split()
)

# Openers that frame a statement without being part of it. Update markers set `is_update`.
_UPDATE_PREFIX = (
    r"correction|corrections|correcting|update|updated|updates|actually|in fact|wait|sorry|oops|"
    r"scratch that|change of plans?|change|changes|revision|revised|amendment|edit|new info(?:rmation)?|"
    r"as of now|as of today|from now on|going forward|effective (?:now|immediately|today)"
)
_PLAIN_PREFIX = (
    r"please note(?: that)?|note(?: that)?|nb|n\.b\.|fyi|for your information|ps|p\.s\.|btw|by the way|"
    r"just so you know|for the record|heads up|important|reminder|remember(?: that)?|"
    r"keep in mind(?: that)?|bear in mind(?: that)?|be aware(?: that)?|please be aware(?: that)?|"
    r"i (?:should|must|want to|wanted to|'d like to|would like to|need to) (?:mention|note|add|say|point out|tell you|let you know)(?: that)?|"
    r"let me (?:add|mention|note|clarify|remind you)(?: that)?|i can confirm(?: that)?|we(?:'ve| have) confirmed(?: that)?|"
    r"(?:just )?to (?:confirm|clarify|be clear|recap|remind you|summari[sz]e)(?: that)?|"
    r"since|because|as|given(?: that)?|so|therefore|thus|hence|which means(?: that)?|this means(?: that)?|"
    r"(?:it )?turns out(?: that)?|i think(?: that)?|i believe(?: that)?|i guess|apparently|also|and|so|oh|well|ok|okay|"
    r"one more thing|another thing|in addition|additionally|furthermore|moreover|besides|finally|lastly|"
    r"first|firstly|second|secondly|third|thirdly|next|then|here is an update|here's an update|"
    r"hi|hello|hey|thanks|thank you|great|good|alright|all right|right|yes|no|sure|got it|understood"
)
_PREFIX_RE = re.compile(
    rf"^\s*(?:(?P<upd>{_UPDATE_PREFIX})|(?:{_PLAIN_PREFIX}))\b\s*(?:[:,\-\u2013\u2014!.]+\s*|\s+)",
    re.IGNORECASE,
)
# A bare "Correction" sentence also flags the next clause; handled by `_strip_prefixes`.

_QUESTION_START = frozenset(
    """what which who whom whose when where why how is are was were does do did can could would will
    should shall may might has have had isn't aren't doesn't don't didn't won't wouldn't couldn't""".split()
)
_REQUEST_RE = re.compile(
    r"^\s*(?:please\s+(?!note\b|be aware\b)\w+|tell me|remind me|give me|show me|let me know|"
    r"(?:list|calculate|compute|work out|figure out|summari[sz]e|find|check|verify|confirm|compare|plan|"
    r"draft|write|explain|describe|estimate|add up|sum|total|schedule|outline|review|recap|determine|"
    r"look up|double-check)\s+(?:the|a|an|me|us|all|whether|if|that|how|what|which|who|my|our|your|out|"
    r"it|this|these|those|each|every|both|for|up|when|where)\b|"
    r"i need|i want|i'd like|i would like|i wonder|we need|help me|could we|can we|let's|lets|"
    r"if|unless|whether|once)\b",
    re.IGNORECASE,
)

# Copula and assignment forms, longest first so "has changed to" wins over "has".
_VERB_FORMS: tuple[tuple[str, bool], ...] = (
    ("has been changed to", True),
    ("has been updated to", True),
    ("has been set to", True),
    ("has been raised to", True),
    ("has been lowered to", True),
    ("has been increased to", True),
    ("has been reduced to", True),
    ("has changed to", True),
    ("have changed to", True),
    ("was changed to", True),
    ("were changed to", True),
    ("was updated to", True),
    ("is updated to", True),
    ("was raised to", True),
    ("was lowered to", True),
    ("was increased to", True),
    ("was reduced to", True),
    ("was set to", False),
    ("is set to", False),
    ("are set to", False),
    ("changed to", True),
    ("has gone up to", True),
    ("has gone down to", True),
    ("went up to", True),
    ("went down to", True),
    ("has risen to", True),
    ("has dropped to", True),
    ("has fallen to", True),
    ("has increased to", True),
    ("has decreased to", True),
    ("rose to", True),
    ("fell to", True),
    ("dropped to", True),
    ("increased to", True),
    ("decreased to", True),
    ("was moved to", True),
    ("was adjusted to", True),
    ("was bumped to", True),
    ("is now", True),
    ("are now", True),
    ("is still", False),
    ("should be", False),
    ("will be", False),
    ("becomes", True),
    ("comes to", False),
    ("come to", False),
    ("amounts to", False),
    ("stands at", False),
    ("equals", False),
    ("is", False),
    ("are", False),
    ("was", False),
    ("were", False),
    ("=", False),
)
_VERB_RE = re.compile(
    r"(?:(?<=\s)|^)(?P<verb>"
    + "|".join(re.escape(v) for v, _ in _VERB_FORMS)
    + r")(?=\s)",
    re.IGNORECASE,
)
_VERB_UPDATE = {v: u for v, u in _VERB_FORMS}

# Tails that name the old value or restate the time: removed from the value.
_VALUE_TAIL_RE = re.compile(
    r"(?:,?\s+(?:not|instead of|rather than|no longer)\s+.*"
    r"|,\s*(?:down|up)\s+from\s+.*"
    r"|\s*\((?:was|previously|formerly|not)\b[^)]*\)"
    r"|,?\s+(?:previously|formerly)\s+.*"
    r"|\s+(?:now|from now on|going forward|as of (?:now|today)|effective immediately|instead|anymore)"
    r"|,?\s+(?:yesterday|today|tonight|this (?:morning|afternoon|evening|week|month|quarter|year)|"
    r"last (?:night|week|month|quarter|year)|earlier(?: today)?|just now|recently))\s*$",
    re.IGNORECASE,
)
_UPDATE_WORDS_RE = re.compile(
    r"\b(?:now|changed|updated|update|correction|corrected|actually|instead|no longer|revised|"
    r"anymore|new|raised|lowered|increased|reduced|from now on)\b|,\s*not\s",
    re.IGNORECASE,
)

_TOKEN_RE = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9_\-./]*[A-Za-z0-9]|#?[A-Za-z0-9]|'s\b|\u2019s\b")
_HAS_DIGIT = re.compile(r"\d")
_HAS_ALPHA = re.compile(r"[A-Za-z]")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9#])|\n+")
_CLAUSE_SEP_RE = re.compile(
    r"\s*;\s*|,\s+(?:and|but|while|whereas|so|plus)\s+|,\s+|\s+(?:and|but|while|whereas)\s+",
    re.IGNORECASE,
)
_FRAME_RE = re.compile(
    r"^(?:for|regarding|concerning|about|as for|as to|on|with regard to|with respect to|in the case of)\s+(?P<frame>[^,]{1,80}),\s+",
    re.IGNORECASE,
)
_FRAME_ONLY_RE = re.compile(
    r"^(?:for|regarding|concerning|about|as for|as to|with regard to|with respect to|in the case of)\s+[^,]{1,80}$",
    re.IGNORECASE,
)
_MAX_SUBJECT_TOKENS = 16
_SPEAKER_LABEL = re.compile(r"^(?P<name>[A-Z][a-z][\w'-]*(?: [A-Z][a-z][\w'-]*){0,2})\s*:\s+(?P<rest>\S.*)$")
# "Answer: 150 dollars" and chat role labels are framing, not facts about an "answer".
_NOT_SUBJECT_HEADS = (
    r"(?:final |short |my |the )?(?:answer|result|reasoning|rationale|explanation|thoughts?|note|"
    r"question|q|a|user|assistant|system|agent|step \d+|summary|conclusion|output|response|reply)"
)


# --- normalisation helpers ------------------------------------------------------------------


@lru_cache(maxsize=65_536)  # a pure function of a word, called for every word of every query and statement
def normalise_word(word: str) -> str:
    """Lowercase with light plural stripping, so "limits" and "limit" key the same."""
    w = word.lower().strip("'\u2019")
    if len(w) <= 3 or _HAS_DIGIT.search(w):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("sses"):
        return w[:-2]
    if w.endswith(("ches", "shes", "xes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is", "ys")):
        return w[:-1]
    return w


def normalise_value(value: str) -> str:
    """Compare values, not their punctuation: "$1,200." and "1200" differ only in form."""
    v = value.lower().strip()
    v = re.sub(r"(?<=\d),(?=\d{3}\b)", "", v)
    v = re.sub(r"^(?:the|a|an)\s+", "", v)
    v = re.sub(r"[^\w.%\s-]", " ", v)
    v = v.strip(" .")
    return re.sub(r"\s+", " ", v)


def make_key(attribute: str, entity_ids: Iterable[str]) -> str:
    ids = " ".join(sorted(set(entity_ids)))
    return f"{attribute}|{ids}" if ids else attribute


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _is_possessive(tok: str) -> bool:
    return tok in ("'s", "\u2019s")


def _is_code(tok: str) -> bool:
    """A17, C5, P12, #552: a token with a digit and a letter (or a hash)."""
    return bool(_HAS_DIGIT.search(tok)) and (bool(_HAS_ALPHA.search(tok)) or tok.startswith("#"))


def _is_name(tok: str, initial: bool) -> bool:
    """Capitalised word used as a name (Gold, Amber); sentence-initial capitals are not names."""
    if initial or not tok[:1].isupper() or _HAS_DIGIT.search(tok):
        return False
    return tok.lower() not in NOT_NAMES


def _id_positions(toks: list[str], *, in_value: bool) -> set[int]:
    """Indices of identifier tokens. In a subject every digit run is an id ("order 1234"); in a
    value a bare number is a quantity unless a type noun or '#' precedes it."""
    out: set[int] = set()
    words = [i for i, t in enumerate(toks) if not _is_possessive(t)]
    first = words[0] if words else -1
    for i in words:
        t = toks[i]
        if _is_code(t):
            out.add(i)
        elif t.isdigit():
            prev = toks[i - 1].lower() if i > 0 else ""
            if not in_value or prev in TYPE_NOUNS:
                out.add(i)
        elif _is_name(t, initial=(i == first and not in_value)):
            out.add(i)
    # A sentence-initial capital is a name when it is possessive ("Alice's") or typed ("Gold tier").
    if first >= 0 and not in_value and first not in out and toks[first][:1].isupper():
        nxt = toks[first + 1] if first + 1 < len(toks) else ""
        word = toks[first].lower()
        if word not in NOT_NAMES and word not in STOP_ATTRIBUTE and word not in TYPE_NOUNS and (
            _is_possessive(nxt) or nxt.lower() in TYPE_NOUNS
        ):
            out.add(first)
    return out


def _id_form(tok: str) -> str:
    return tok.lower().lstrip("#")


def _type_noun_positions(toks: list[str], ids: set[int]) -> set[int]:
    """Words naming an identified thing's kind: "order A17", "the Gold tier", "tier Gold"."""
    out: set[int] = set()
    for i in sorted(ids):
        j = i - 1
        if j >= 0 and j not in ids and not _is_possessive(toks[j]):
            w = toks[j].lower()
            before = toks[j - 1].lower() if j >= 1 else ""
            if w in TYPE_NOUNS or (
                w not in STOP_ATTRIBUTE
                and (j == 0 or before in DETERMINERS or before in PREPOSITIONS or before == "and")
                and (i + 1 >= len(toks) or _is_possessive(toks[i + 1]) or toks[i + 1].lower() in PREPOSITIONS
                     or toks[i + 1].lower() in ("and", "or"))
            ):
                out.add(j)
        k = i + 1
        if k < len(toks) and k not in ids and not _HAS_DIGIT.search(toks[i]):
            w = toks[k].lower()
            after = toks[k + 1].lower() if k + 1 < len(toks) else ""
            before = toks[i - 1].lower() if i >= 1 else ""
            ends = k + 1 >= len(toks) or _is_possessive(toks[k + 1]) or after in PREPOSITIONS
            if normalise_word(w) in TYPE_NOUNS or (
                w not in STOP_ATTRIBUTE and ends and (i == 0 or before in DETERMINERS)
            ):
                out.add(k)
    return out


@lru_cache(maxsize=65_536)  # pure; a conversation names the same subjects in statements and answers
def parse_subject(subject: str) -> tuple[str, tuple[str, ...]]:
    """A subject phrase to (attribute, sorted entity ids): the two halves of the key."""
    toks = _tokens(subject)
    ids = _id_positions(toks, in_value=False)
    types = _type_noun_positions(toks, ids)
    attr = [
        normalise_word(t)
        for i, t in enumerate(toks)
        if i not in ids and i not in types and not _is_possessive(t) and t.lower() not in STOP_ATTRIBUTE
    ]
    attr = [w for w in attr if w and w not in STOP_ATTRIBUTE]
    if not attr and types:
        attr = [normalise_word(toks[i]) for i in sorted(types)]
    entity_ids = tuple(sorted({_id_form(toks[i]) for i in ids}))
    return " ".join(attr), entity_ids


@lru_cache(maxsize=65_536)  # pure, and values repeat as answers restate facts
def find_value_ids(value: str) -> tuple[str, ...]:
    toks = _tokens(value)
    return tuple(sorted({_id_form(toks[i]) for i in _id_positions(toks, in_value=True)}))


# --- sentence and clause splitting ----------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    parts = _SENTENCE_SPLIT_RE.split(text)
    return [p.strip() for p in parts if p and p.strip()]


def _strip_prefixes(clause: str) -> tuple[str, bool]:
    """Remove discourse openers, repeatedly ("Update: actually, ..."); report update markers."""
    update = False
    for _ in range(6):
        m = _PREFIX_RE.match(clause)
        if not m or m.end() >= len(clause):
            break
        update = update or m.group("upd") is not None
        clause = clause[m.end():]
    return clause.strip(), update


def is_question_or_request(clause: str) -> bool:
    c = clause.strip()
    if not c:
        return True
    if c.endswith("?"):
        return True
    first = c.split(None, 1)[0].lower().rstrip(",:")
    if first in _QUESTION_START:
        return True
    return bool(_REQUEST_RE.match(c))


def _has_verb(piece: str) -> bool:
    return _find_verb(piece) is not None or _colon_split(piece) is not None


def _split_clauses(sentence: str) -> list[str]:
    """Split on '; ', ', and ', ' and ', ', ' only where both sides hold a statement, so
    "For order A17, the limit is 5" and "A is 1, not 2" stay whole."""
    pieces: list[str] = []
    seps: list[str] = []
    pos = 0
    for m in _CLAUSE_SEP_RE.finditer(sentence):
        pieces.append(sentence[pos:m.start()])
        seps.append(m.group(0))
        pos = m.end()
    pieces.append(sentence[pos:])
    out: list[str] = []
    cur = pieces[0]
    for sep, piece in zip(seps, pieces[1:]):
        starts_frame = bool(_FRAME_ONLY_RE.match(piece))
        whole = _has_verb(cur) or _any_verb(cur) is not None
        if whole and (_has_verb(piece) or starts_frame or _starts_predicate(piece)) \
                and not _FRAME_ONLY_RE.match(cur.strip()):
            out.append(cur)
            cur = piece
        else:
            cur = cur + sep + piece
    out.append(cur)
    return [c.strip() for c in out if c.strip()]


def _find_verb(clause: str) -> re.Match[str] | None:
    for m in _VERB_RE.finditer(clause):
        if m.start() == 0:
            continue
        return m
    return None


def _colon_split(clause: str) -> tuple[str, str] | None:
    head, sep, tail = clause.partition(":")
    if not sep or not tail.strip() or not head.strip():
        return None
    if len(_tokens(head)) > 8 or _VERB_RE.search(head):
        return None
    if re.fullmatch(_NOT_SUBJECT_HEADS, head.strip().lower()):
        return None
    return head.strip(), tail.strip()


def _clean_value(value: str) -> tuple[str, bool]:
    v = value.strip().strip("\"'\u201c\u201d").rstrip(" .!;:,").strip()
    update = False
    for _ in range(3):
        new = _VALUE_TAIL_RE.sub("", v).rstrip(" .!;:,").strip()
        if new == v:
            break
        update = True
        v = new
    return v.strip("\"'\u201c\u201d").strip(), update


# --- the public entry point -----------------------------------------------------------------


# "<subject> moved from June 1 to June 15": the value is the second; the first is the old one.
_FROM_TO_RE = re.compile(
    r"^(?P<subject>.+?)\s+(?:has\s+|have\s+|had\s+|was\s+|were\s+|is\s+|got\s+)?(?:been\s+|now\s+|just\s+)?"
    r"(?P<verb>[a-z]+(?:ed|ved)|went|rose|fell|grew|shifted|slipped|jumped|climbed|dropped|changed|moved)"
    r"(?:\s+(?:up|down|back|forward))?\s+from\s+(?P<old>.+?)\s+to\s+(?P<value>.+)$",
    re.IGNORECASE,
)
# A finite verb after a named subject, for facts stated with any verb ("Acme's contract renews on March 3",
# "Ana now manages site 9"): a lowercase word in -s or -ed, or a common irregular form, after at
# most one adverb. Only where no copula or assignment form matched.
_ADVERBS = frozenset("now still also already just only usually currently officially finally always "
                     "no longer".split())
_IRREGULAR = frozenset("has have had gets got gives gave takes took makes made holds held runs ran "
                       "leaves left pays paid sells sold buys bought owes owned keeps kept sends sent "
                       "goes went comes came starts started ends ended costs cost".split())
_OBJECT_PREPS = frozenset("in on at by to for from within after before until around about of".split())
_PASSIVE = re.compile(r"(?P<verb>[a-z]{3,}ed|[a-z]*(?:paid|held|sold|made|given|kept|sent|built|taken|run|set))"
                      r"(?:\s+(?:in|on|at|by|to|for|from|within|after|before|until|over|under|with|of))*\s+(?P<value>\S.*)$")
# English adverbs that sit between a subject and its verb ("X now is", "X currently has").
_SUBJECT_ADVERB = re.compile(r"(?i)\s+(now|currently|still|also|already|actually|presently|no longer|just)\s*$")
_PRONOUN_SUBJECT = re.compile(r"(?i)^(?:it|this|that|they|these|those|the same|same)$")

_ACTIVE_RE = re.compile(
    r"^(?:we|i|they|you|someone|the team|management)\s+(?:have\s+|'ve\s+|just\s+)?"
    r"(?:changed|updated|set|raised|lowered|increased|reduced|decreased|moved|bumped|adjusted|cut)\s+"
    r"(?P<subject>.+?)\s+to\s+(?P<value>.+)$",
    re.IGNORECASE,
)


def _is_finite(word: str) -> bool:
    """A lowercase word that can be a finite verb: a common irregular form, or one in -s or -ed."""
    if not word.isalpha() or not word.islower():
        return False
    return word in _IRREGULAR or (len(word) > 3 and (word.endswith("ed") or (word.endswith("s") and not word.endswith(("ss", "us", "is")))))


def _named_part(subject: str, ids: tuple[str, ...]) -> str:
    """ "Flight F12" of "flight F12's gate": what a shared-subject verb is about."""
    toks = [re.sub(r"'s$", "", t.strip(",")) for t in subject.replace("\u2019", "'").split()]
    for i, named in enumerate(toks):
        if named.lower() in ids:
            after = toks[i + 1] if i + 1 < len(toks) else ""
            if i and toks[i - 1].lower() in TYPE_NOUNS:
                named = f"{toks[i - 1]} {named}"
            elif after.lower() in TYPE_NOUNS:  # "the Gold tier's fee"
                named = f"the {named} {after}"
            return named[:1].upper() + named[1:]
    return subject


def _display_ids(ids: tuple[str, ...]) -> str:
    """Identifiers as a sentence writes them: "C94", "Gold"."""
    return " ".join(i.upper() if _HAS_DIGIT.search(i) else i.capitalize() for i in ids)


def _starts_predicate(piece: str) -> bool:
    """ "lands at noon" after "Flight F12 leaves at 9, and": a verb whose subject is the clause
    before."""
    toks = piece.split(None, 2)
    if len(toks) > 1 and toks[0].lower() in _ADVERBS:
        toks = toks[1:]
    return len(toks) > 1 and toks[0] not in STOP_ATTRIBUTE and _is_finite(toks[0])


def _any_verb(clause: str) -> tuple[str, str, str] | None:
    """(subject, verb, value) for "<named subject> [adverb] <verb> [preposition] <value>"."""
    toks = clause.split()
    if not toks or _is_finite(toks[0]):
        return None  # "lands at noon" has no subject of its own
    for i in range(1, min(len(toks) - 1, _MAX_SUBJECT_TOKENS)):
        word = toks[i]
        j = i
        if word.lower() in _ADVERBS and i + 1 < len(toks) - 1:
            j = i + 1
            word = toks[j]
        w = word.lower()
        if not _is_finite(word):
            continue
        subject = " ".join(toks[:i])
        attribute, ids = parse_subject(subject)
        if not ids and i == 1 and toks[0][:1].isupper() and toks[0].isalpha() and toks[0].lower() not in STOP_ATTRIBUTE \
                and toks[0].lower() not in NOT_NAMES:
            ids = (toks[0].lower(),)  # "Ana manages site 9": a lone capitalised subject is a name
        if w in STOP_ATTRIBUTE:
            return None
        if not ids and (i == 1 and toks[0].lower() in ("it", "they") or toks[0].lower() in ("its", "their")):
            return " ".join(toks[:i]), w, " ".join(toks[j + 1:])  # "It costs 27 dollars": the caller resolves "it"
        if not ids:
            if w.endswith("ed") and toks[i - 1].lower() in DETERMINERS:
                continue  # "The requested amount on N93 comes to ...": "requested" describes, the verb is later
            return None  # only a named subject ("order B22", "Ana", "Acme's contract") makes a fact
        rest = toks[j + 1:]
        verb = w
        if rest and rest[0].lower() in _OBJECT_PREPS and len(rest) > 1:
            verb, rest = f"{w} {rest[0].lower()}", rest[1:]
        return subject, verb, " ".join(rest)
    return None


def _value_shape(value: str) -> list[str]:
    """The kind of thing a verb's object is: its unit and lowercase nouns, without the number, names
    or ids. "Unit U7 draws 358 watts" and "Unit U7 draws on supplier S2" state two attributes, while
    "B22 leaves in 3 days" and "B22 now leaves in 5 days" state one, so the kind joins the key."""
    value, _ = _clean_value(value)
    words: list[str] = []
    pos = 0
    for q in find_quantities(value):
        words += value[pos:q.start].split()
        if q.unit:
            words.append(q.unit)
        pos = q.end
    words += value[pos:].split()
    out: list[str] = []
    for w in words:
        w = w.strip(".,;:!?()\"'")
        if w.isalpha() and w.islower() and w not in STOP_ATTRIBUTE and w not in NOT_NAMES:
            out.append(normalise_word(w))
    return out[:3]


def _same_kind(old: str, new: str) -> bool:
    """Can `new` replace `old`: both amounts in one unit, or neither an amount. "It now is cut from
    steel" does not correct "runs for 13 months"."""
    a, b = find_quantities(old), find_quantities(new)
    if bool(a) != bool(b):
        return False
    return not (a and b and a[0].unit and b[0].unit and a[0].unit != b[0].unit)


def _verb_lemma(verb: str) -> str:
    head = verb.split()[0]
    return normalise_word(head[:-2] if head.endswith("ed") and len(head) > 4 else head)


def _statement(clause: str, frame: str, inherited_ids: tuple[str, ...], update: bool,
               written: str | None = None, antecedent: "Statement | None" = None) -> Statement | None:
    written = written or clause
    label = _SPEAKER_LABEL.match(clause)
    if label and _has_verb(label.group("rest")):  # "Tom: the budget is 5k": Tom said it, it is not about Tom
        clause = label.group("rest")
    active = _ACTIVE_RE.match(clause)
    if active:  # "We raised the limit for A17 to 150 dollars": the subject is the object
        clause = f"{active.group('subject')} was changed to {active.group('value')}"
    from_to = _FROM_TO_RE.match(clause)
    if from_to and not _find_verb(from_to.group("subject")):
        clause = f"{from_to.group('subject')} was changed to {from_to.group('value')}"
    verb_m = _find_verb(clause)
    colon = _colon_split(clause)
    extra_attr = ""
    shape: list[str] = []  # what kind of value: joins the attribute where that is only a verb, or none
    passive = None
    if colon is not None and (verb_m is None or clause.index(":") < verb_m.start()):
        subject, raw_value = colon
        verb_update = False
    elif verb_m is not None:
        subject = clause[: verb_m.start()].strip()
        raw_value = clause[verb_m.end():]
        verb_update = _VERB_UPDATE.get(verb_m.group("verb").lower(), False)
        passive = _PASSIVE.match(raw_value.strip())
        if passive and verb_m.group("verb").lower() in ("is", "are", "was", "were") \
                and parse_subject(_SUBJECT_ADVERB.sub("", subject))[1]:
            # "Loan L92 is repaid over 26 months", "... was applied for by applicant P86": the
            # participle names the attribute, or every predicate of L92 would share one key
            extra_attr = normalise_word(passive.group("verb"))
            raw_value = passive.group("value")
    else:
        found = _any_verb(clause)
        if found is None:
            return None
        subject, verb, raw_value = found
        extra_attr = _verb_lemma(verb)
        shape = _value_shape(raw_value)
        verb_update = False
    adverb = _SUBJECT_ADVERB.search(subject)
    if adverb:  # "Component J73 now is made of ...": the adverb qualifies the verb, not the subject
        subject = subject[: adverb.start()]
        verb_update = verb_update or adverb.group(1).lower() in ("now", "no longer")
    bare_subject = re.sub(r"(?i)^(?:the|its)\s+", "", subject.strip(" ,"))
    if inherited_ids and re.fullmatch(r"(?i)it|they", subject.strip(" ,")):
        # "Loan L196 asks for $9k. It was filed by applicant P28.": within one text, "it" is the
        # thing the sentence before named; read the clause with that thing as its subject
        named = _display_ids(inherited_ids)
        rest = clause[len(clause) - len(clause.lstrip()) + len(subject.strip()):]
        shown = re.sub(r"(?i)\b(?:it|they)\b", named, written, count=1)  # the line names its subject
        st = _statement(named + rest, frame, (), update, shown, None)
        if st is not None and st.key.split("|")[0]:
            return st
        if not (verb_update or active or from_to):
            return None  # "It is heavy" names no attribute to key
    if _PRONOUN_SUBJECT.match(bare_subject) and antecedent is not None and (verb_update or active or from_to):
        # "It was raised to 150 dollars": a correction that does not repeat its subject
        value, _ = _clean_value(raw_value)
        if not value or re.match(r"(?i)not\b|n't\b", value) or not _same_kind(antecedent.value, value):
            return None
        return Statement(subject=antecedent.subject, key=antecedent.key, entity_ids=antecedent.entity_ids,
                         attribute=antecedent.attribute, value=value, value_ids=find_value_ids(value),
                         text=written.strip().rstrip(" ,;"), is_update=True)
    value, tail_update = _clean_value(raw_value)
    if not value or re.match(r"(?i)not\b|n't\b", value):
        return None  # a negation states no value
    subject = subject.strip(" ,")
    full_subject = f"{frame}, {subject}" if frame else subject
    if not subject or len(_tokens(full_subject)) > _MAX_SUBJECT_TOKENS:
        return None
    if re.match(r"(?i)(?:i|we|you|he|she|they|i'm|we're|you're)\b", subject):
        return None  # "I went ... and it was great": about the speaker, no keyed value
    attribute, entity_ids = parse_subject(full_subject)
    if extra_attr:  # the verb names the attribute: "Order B22 leaves in 3 days" -> "order leave" of b22
        if not entity_ids and len(subject.split()) == 1 and subject[:1].isupper():
            entity_ids = (subject.lower(),)
        kept = [w for w in attribute.split() if w not in entity_ids]
        attribute = " ".join(kept + [extra_attr])
    if not entity_ids and inherited_ids and re.match(r"(?i)(?:its|their|it's)\b", subject):
        entity_ids = inherited_ids
        if re.match(r"(?i)(?:its|their)\b", subject):  # "Its credit is 7" is shown as "C94's credit is 7"
            named = _display_ids(inherited_ids)
            written = re.sub(r"(?i)\b(?:its|their)\b", f"{named}'s", written, count=1)
    if not attribute and not entity_ids:
        return None
    if entity_ids and (not attribute or (attribute in TYPE_NOUNS and re.search(
            rf"(?i)\b{re.escape(attribute)}s?\s+(?:{'|'.join(map(re.escape, entity_ids))})\b", full_subject))):
        # "Customer C94 is a Ruby member": no attribute named, so the kind of value stands for one
        attribute, shape = "", _value_shape(raw_value)
        if len(shape) == 1 and len(raw_value.split()) == 1:
            shape = []  # "Order A17 is shipped", later "... is delivered": one state, not two attributes
    attribute = " ".join([attribute, *shape]).strip()
    upd = update or verb_update or tail_update or bool(_UPDATE_WORDS_RE.search(subject))
    return Statement(
        subject=full_subject,
        key=make_key(attribute, entity_ids),
        entity_ids=entity_ids,
        attribute=attribute,
        value=value,
        value_ids=find_value_ids(value),
        text=written.strip().rstrip(" ,;"),
        is_update=upd,
    )


_BULLET_RE = re.compile(r"^\s*(?:[-*\u2022\u2013]|\d{1,2}[.)])\s+")


def _is_heading(line: str) -> bool:
    """A line that only names a thing ("Order D27", "Loan N918:"): the lines listed under it are about it."""
    bare = line.strip().rstrip(":.").strip()
    if not bare or _BULLET_RE.match(line) or ":" in bare or bare.endswith(("?", "!")) or len(bare.split()) > 4:
        return False
    return bool(parse_subject(bare)[1]) and _find_verb(bare) is None and _any_verb(bare) is None


def _names_its_own_entity(clause: str) -> bool:
    """"..., and the fee for order B2 is 3" has its own subject; "..., the fee is 3" inherits a frame."""
    verb = _find_verb(clause)
    subject = clause[: verb.start()] if verb else clause
    return bool(parse_subject(subject)[1])


def extract_statements(text: str, antecedent: Statement | None = None) -> list[Statement]:
    """Every statement clause in `text`, in order; questions and requests skipped. `antecedent` is
    what an earlier turn last named, so "It was raised to 150 dollars." corrects it.
    Never raises: odd text yields fewer statements, not an error."""
    if not isinstance(text, str):
        return []
    return list(_extract_cached(text, antecedent))


@lru_cache(maxsize=131_072)  # a pure function of the text (and antecedent); statements are frozen
def _extract_cached(text: str, antecedent: Statement | None) -> tuple[Statement, ...]:
    return tuple(_extract(text, antecedent))


def _extract(text: str, antecedent: Statement | None = None) -> list[Statement]:
    """Every "<subject> is <value>" clause in `text`, in order; questions and requests skipped.
    Never raises: odd text yields fewer statements, not an error."""
    out: list[Statement] = []
    if not isinstance(text, str) or not text.strip():
        return out
    pending_update = False
    last_ids: tuple[str, ...] = ()
    heading = heading_line = ""
    for sentence in split_sentences(text):
        if _is_heading(sentence):
            heading_line = sentence.strip()
            heading = heading_line.rstrip(":.")  # "Order D27" over "- delivery time: 19 days"
            first, _, rest = heading.partition(" ")
            if first.lower() in TYPE_NOUNS and rest:
                heading = f"{first.lower()} {rest}"
            continue
        bullet = _BULLET_RE.match(sentence)
        quoted = ""  # a line under a heading is quoted with its heading, as it was written
        if not bullet:
            heading = ""
        elif heading:
            quoted = f"{heading_line}\n{sentence.strip()}"
            sentence = f"For {heading}, {sentence[bullet.end():]}"
        body, upd = _strip_prefixes(sentence)
        opener = sentence[: len(sentence) - len(sentence.lstrip())] + sentence.strip()[: len(sentence.strip()) - len(body)]
        bare = body.strip(" .!:").lower()
        if re.fullmatch(_UPDATE_PREFIX, bare, re.IGNORECASE):
            pending_update = True  # "Correction." on its own marks what follows
            continue
        if is_question_or_request(body) or body.rstrip().endswith("?"):
            pending_update = False
            continue
        upd = upd or pending_update
        pending_update = False
        sentence_frame = ""
        subject = ""
        for n, raw in enumerate(_split_clauses(body)):
            clause, cupd = _strip_prefixes(raw)
            shared = n > 0 and bool(subject) and _starts_predicate(clause)  # "..., and has ...": not a question
            if not shared and is_question_or_request(clause):
                continue
            frame, inherited = "", False
            fm = _FRAME_RE.match(clause)
            if fm and _has_verb(clause[fm.end():]):
                frame = clause[: fm.end()].rstrip(" ,")
                clause = clause[fm.end():]
                if n == 0:
                    sentence_frame = frame
            elif sentence_frame and not _names_its_own_entity(clause):
                frame, inherited = sentence_frame, True
            # The fact's text is the clause as written, with the sentence's opener ("Correction: ")
            # on the first clause and an inherited "For X," frame: a self-contained, faithful quote.
            lead = opener.strip() + " " if n == 0 and opener.strip() else ""
            if inherited:
                lead += frame + ", "
            written = lead + raw.strip().rstrip(" ,;")
            written = written[0].upper() + written[1:] if written else written
            if quoted:
                written = quoted
            if shared:
                # "..., and lands at noon": the verb shares the subject of the clause before
                clause = written = f"{subject} {clause.rstrip(' .!')}"
            st = _statement(clause.rstrip(" .!"), frame, last_ids, upd or cupd,
                            written=written if quoted else written.rstrip(" .!") + ".", antecedent=antecedent)
            if st is not None:
                out.append(st)
                antecedent = st
                subject = _named_part(st.subject, st.entity_ids) if st.entity_ids else st.subject
                if st.entity_ids:
                    last_ids = st.entity_ids
    return out
