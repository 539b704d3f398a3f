"""Requirement classifier: what kind of reasoning a step needs, as a distribution over types.

Routing scores agents by `M[i] . r(s)`, so `r(s)` must be a real distribution, not a hard label:
a question that is half comparison, half arithmetic should lean on agents good at both. Two kinds
of evidence are combined in logit space: cosine of the text's embedding to per-type prototype
centroids (works with any embedder, improves with a real sentence model), and cue patterns (the
words people use for each kind of reasoning, which carry most of the signal for a hashing
embedder). A softmax with a temperature turns the sum into probabilities.
"""

from __future__ import annotations

import re
from re import _parser as _sre  # the stdlib's own pattern parser: prefilters below read its tree
from typing import Sequence

import numpy as np

from rapo.types import DEFAULT_REASONING_TYPES, Embedder, RapoError

__all__ = ["RequirementClassifier", "DEFAULT_PROTOTYPES", "DEFAULT_CUES"]

DEFAULT_PROTOTYPES: dict[str, list[str]] = {
    "lookup": [
        "What is the refund limit for order A17?",
        "Can you tell me the shipping fee of order B22?",
        "Remind me: what is C5's tier?",
        "What's the current status of the ticket?",
        "Look up the delivery date for this shipment.",
        "Who is the account manager for this client?",
        "What was the agreed price for the component?",
    ],
    "arithmetic": [
        "What is the refund limit for order A17 plus the shipping fee for order B22?",
        "What is the weight of module M3 minus the weight of module M4?",
        "What is the cost of component K4 multiplied by 3?",
        "Add the two fees together and give me the result.",
        "How much is 15 percent of 240 dollars?",
        "Subtract the discount from the price and tell me what remains.",
        "What do I get if I divide the budget by four?",
    ],
    "deduction": [
        "What is the discount rate for the tier of the customer for order A17?",
        "Given that the applicant is in the Amber band, what interest rate applies?",
        "Since the module uses the Steel grade, what tolerance follows from that?",
        "Based on the rules above, which approval limit must apply to this loan?",
        "If every Gold customer gets free shipping, what does the customer of order A17 pay?",
        "What can we infer about the risk band of the applicant for loan L40?",
        "Work out the material grade of the component used in module M3 and its tolerance.",
    ],
    "comparison": [
        "Which is higher: the refund limit for order A17 or the refund limit for order B22?",
        "Which is lower, the cost of K4 or the cost of K5?",
        "Is the shipping fee for A17 more than the fee for B22?",
        "Compare the credit scores of applicant P12 and applicant P13.",
        "Which of the two modules is heavier?",
        "Does the Gold tier get a bigger discount than the Silver tier?",
        "Which option is cheaper, plan A or plan B?",
    ],
    "aggregation": [
        "What is the total refund limit across order A17, order B22 and order C30?",
        "What is the largest refund limit among order A17, order B22 and order C30?",
        "What is the smallest weight among all the modules?",
        "What is the average delivery time over all orders?",
        "How many orders are there in total?",
        "Sum the costs of every component in the design.",
        "Which applicant has the highest credit score of them all?",
    ],
    "planning": [
        "Plan the steps to process the refund for order A17.",
        "What steps should we take to approve this loan?",
        "Draft a schedule for the design review next week.",
        "How should we sequence the tasks to finish the module on time?",
        "Lay out a roadmap for migrating the customers to the new tier.",
        "What is the best order to do these jobs in?",
        "Propose a plan for reducing the power draw of module M3.",
    ],
    "verification": [
        "Is it true that the refund limit for order A17 is 120 dollars?",
        "Can you verify that the customer for order A17 is customer C5?",
        "Check whether the credit score of applicant P12 is 700 points.",
        "Confirm that the tolerance of the Steel grade is 20 micrometres.",
        "Am I right that the shipping fee is 5 dollars?",
        "Is it correct that the loan was approved?",
        "Double-check the weight of module M3 for me, is it 40 grams?",
    ],
    "summarisation": [
        "Summarise the conversation so far.",
        "Give me a short overview of all the facts about order A17.",
        "Can you recap what we agreed on?",
        "Write a brief summary of the applicant's situation.",
        "What are the key points of this discussion?",
        "Sum up the design constraints in a few lines.",
        "TL;DR of everything we know about module M3, please.",
    ],
}

# (pattern, weight) per type: the words people use for each kind of reasoning.
DEFAULT_CUES: dict[str, list[tuple[str, float]]] = {
    "lookup": [
        (r"^\W*(?:so\s+)?(?:what|what's|whats)\s+(?:is|are|was|were)\b", 0.9),
        (r"\b(?:tell me|remind me|look up|lookup|do you know|give me|find)\b", 0.9),
        (r"^\W*(?:who|where|when)\b", 0.7),
        (r"^\W*(?:which|what) \w+ \w+ (?:to |by |for |on )?(?:the |this |that )?(?:\w+ )?[A-Za-z]*\d\w*\W*$", 0.9),
        (r"\bhow (?:much|many|long|big|heavy)\b\s+(?:is|are|was|does|do|did)\b", 0.5),
        (r"\b(?:currently|current|right now|on file|recorded|stored)\b", 0.4),
    ],
    "arithmetic": [
        (r"\b(?:plus|minus|multiplied by|divided by|subtract\w*|add(?:ed|ing)? (?:up|together|to)|difference between)\b", 2.4),
        (r"\b(?:sum of|product of|half of|double|doubled|triple|tripled|percent of|% of)\b", 2.0),
        (r"\b(?:calculate|compute|work out how much|how much (?:more|less|would|will|do|does|is left|remains|in all))\b", 1.4),
        (r"\b(?:combined|together|altogether|in all|left over|remain\w*|net|after (?:a|the)\b.*\b(?:discount|fee|tax|deduct\w*))\b", 1.0),
        (r"\d\s*[-+*/x\u00d7]\s*\d|\b\d+(?:\.\d+)?\s*(?:percent|%)\b", 1.2),
        (r"\b(?:increase|decrease|raise|reduce|cut|lower)\w*\b.{0,40}\bby\s+\$?\d", 1.6),
        (r"\btimes\s+(?:\d|two|three|four|five|six|ten|as)\b|\d\s+times\b", 2.4),
        (r"\b(?:\d+|two|three|four|five|six|seven|eight|nine|ten|a dozen)\s+of (?:them|those|these|component|module|item|order|unit)s?\b", 1.4),
        (r"\badd\b", 1.0),
        (r"\bif\b.*\b(?:each|per)\b", 1.0),
    ],
    "deduction": [
        (r"\b(?:because|therefore|thus|hence|consequently|so it follows|it follows|which means|implies|imply|infer\w*|deduce\w*|conclude\w*|conclusion)\b", 2.2),
        (r"\b(?:given that|given the|given|since|based on|according to|in light of|under the rules?|by the rule)\b", 1.3),
        (r"\bif\b.+\b(?:then|what|which|would|does|do|must)\b", 1.2),
        (r"\b(?:must|should) (?:apply|be|follow|get|pay)\b", 0.8),
        (r"\bthe \w+(?: \w+)? (?:of|for) the \w+(?: \w+)? (?:of|for|who|that)\b", 2.0),
        (r"\b(?:whose|of whoever|of the one who)\b", 1.2),
        (r"\b(?:by|of|for|from|in|on) the \w+ (?:of|for|on|in) (?:the )?(?:\w+ )?[A-Za-z]*\d", 1.4),
        (r"\bso (?:what|which|how|who)\b", 1.5),
        (r"\b(?:follows from|works out to|what does that mean for|what does this mean for|logically)\b", 1.5),
    ],
    "comparison": [
        (r"\bwhich (?:one |of (?:the|these|those) (?:two|\w+) )?(?:is|was|has|are|costs?|weighs?|gets?|pays?|takes?)\s+(?:the\s+)?(?:higher|lower|larger|bigger|smaller|greater|cheaper|more|less|heavier|lighter|faster|slower|longer|shorter|better|worse|older|newer)\b", 2.6),
        (r"\b(?:higher|lower|larger|bigger|smaller|greater|cheaper|costlier|heavier|lighter|faster|slower|longer|shorter|better|worse|more expensive|less expensive|more|less|fewer)\s+than\b", 2.2),
        (r"\b(?:compare\w*|comparison|versus|vs\.?|relative to|against|outrank\w*|exceed\w*|beat\w*|rank \w+ (?:above|below|against))\b", 2.0),
        (r"\bwhich (?:one|of the two|of these two|of them)\b", 1.0),
        (r"\b(?:who|which)\b.{0,30}\b(?:more|less|higher|lower|larger|bigger|smaller|greater|cheaper|heavier|lighter|longer|shorter|better|worse)\b.*\bor\b", 2.0),
        (r"\b(?:higher|lower|larger|bigger|smaller|greater|cheaper|heavier|lighter)\b\s*[:?,]", 1.2),
        (r"\bor\b.*\?", 0.5),
        (r"\b(?:the same as|equal to|as (?:high|low|much|big|large) as|differ(?:ent)? from)\b", 1.2),
    ],
    "aggregation": [
        (r"\b(?:across|among|amongst|of all|over all|in total|overall|altogether|all (?:of )?(?:the|our|my|these|those)|every|each of)\b", 1.8),
        (r"\b(?:largest|smallest|highest|lowest|biggest|greatest|maximum|minimum|max|min|most|least|fewest|top|bottom|cheapest|heaviest|lightest|longest|shortest|fastest|slowest|priciest)\b", 1.6),
        (r"\b(?:total|sum|average|mean|median|count|tally|aggregate|cumulative|grand total)\b", 1.6),
        (r"\bhow many\b", 1.2),
        (r"\b\w+,\s+\w+(?:\s+\w+)?,?\s+and\s+\w+", 0.8),
    ],
    "planning": [
        (r"\b(?:plan|plans|planning|schedule|scheduling|roadmap|timeline|itinerary|agenda|checklist|milestones?)\b", 2.6),
        (r"\b(?:steps?|step-by-step|sequence|order of operations|prioriti[sz]e|priorities|next actions?|action items?|phases?|stages?)\b", 1.8),
        (r"\bhow (?:should|can|could|do|would) (?:we|i)\b", 1.6),
        (r"\b(?:strategy|strategies|approach)\b", 2.2),
        (r"\b(?:what should (?:we|i) do|where do (?:we|i) start|organi[sz]e|arrange|prepare|lay out|map out|set up|go about)\b", 1.6),
        (r"\b(?:first|then|after that|before|by (?:monday|tuesday|wednesday|thursday|friday|next week|the end))\b", 0.6),
    ],
    "verification": [
        (r"\b(?:is it true|is that true|is this true|true or false|is it correct|is that correct|is this correct|is it right|is that right|am i right|am i correct|correct me if)\b", 3.0),
        (r"\b(?:verify|verified|verification|confirm\w*|double[- ]check|check (?:whether|if|that)|validate|make sure|fact[- ]check|sanity[- ]check)\b", 2.6),
        (r"^\W*(?:is|are|was|were|does|do|did|has|have)\b(?!.*\b(?:than|or)\b)", 0.9),
        (r"\b(?:really|actually|still)\b.*\?", 0.5),
        (r"\b(?:right|correct|true)\s*\?\s*$", 1.4),
    ],
    "summarisation": [
        (r"\b(?:summari[sz]\w*|summary|overview|recap\w*|tl;?dr|sum (?:it |this |things |everything )?up|sum-up|digest|synopsis|rundown|run-down|wrap[- ]up|outline of)\b", 3.0),
        (r"\b(?:key points|main points|highlights|gist|in a nutshell|in short|in brief|brief(?:ly)?|short version|bullet points|condense|boil\b.{0,30}\bdown|nutshell)\b", 2.0),
        (r"\b(?:so far|up to now|everything (?:we|you) know|all (?:the )?facts|what (?:we|you) (?:have|'ve)? ?(?:discussed|covered|agreed|said|established|decided)|where (?:do )?(?:we|things) stand)\b", 1.6),
    ],
}


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


_MEMO: dict[tuple[str, str], np.ndarray] = {}


def _required(items: object) -> frozenset[str] | None:
    """Strings of which every match of a parsed (case-sensitive) pattern contains at least one, or
    None where the pattern has no such set: literal runs, alternations of them, groups, repeats of
    at least one. Anything else (classes, anchors, lookarounds, flags) only ends a literal run."""
    found: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:  # type: ignore[attr-defined]
        if op == _sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            found.append(frozenset(["".join(run)]))
            run = []
        req: frozenset[str] | None = None
        if op == _sre.SUBPATTERN:
            _, add_flags, _, sub = av
            req = None if add_flags & re.IGNORECASE else _required(sub)
        elif op == _sre.BRANCH:
            parts = [_required(branch) for branch in av[1]]
            req = None if any(part is None for part in parts) else frozenset().union(*parts)  # type: ignore[arg-type]
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[0] >= 1:
            req = _required(av[2])
        if req is not None:
            found.append(req)
    if run:
        found.append(frozenset(["".join(run)]))
    if not found:
        return None
    # The most selective: shortest string 3+ characters if any, then the fewest strings to look for.
    return min(found, key=lambda alts: (-min(3, min(map(len, alts))), len(alts)))


def _prefilter(rx: re.Pattern[str]) -> tuple[str, ...] | None:
    """`_required` of a compiled pattern, or None (case-insensitive patterns are not filtered)."""
    if rx.flags & re.IGNORECASE:
        return None
    try:
        parsed = _sre.parse(rx.pattern, rx.flags)
    except Exception:  # pragma: no cover - it compiled, so it parses
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None
    req = _required(parsed)
    return None if req is None or "" in req else tuple(sorted(req, key=len))


class RequirementClassifier:
    """`r(s)`: prototype similarity plus cue patterns, softmaxed. Unknown types need prototypes."""

    def __init__(
        self,
        embedder: Embedder,
        types: Sequence[str] = DEFAULT_REASONING_TYPES,
        prototypes: dict[str, list[str]] | None = None,
        *,
        cues: dict[str, list[tuple[str, float]]] | None = None,
        temperature: float = 0.6,
        proto_weight: float = 4.0,
        lookup_prior: float = 0.3,
    ) -> None:
        if not types:
            raise RapoError("RequirementClassifier needs at least one reasoning type")
        if len(set(types)) != len(types):
            raise RapoError(f"reasoning types must be distinct, got {list(types)}")
        if temperature <= 0:
            raise RapoError(f"temperature must be > 0, got {temperature}")
        self.embedder = embedder
        self.types: tuple[str, ...] = tuple(types)
        self.temperature = temperature
        self.proto_weight = proto_weight
        merged: dict[str, list[str]] = {t: list(DEFAULT_PROTOTYPES.get(t, [])) for t in self.types}
        for t, examples in (prototypes or {}).items():
            if t not in merged:
                raise RapoError(f"prototypes given for {t!r}, which is not one of the types {self.types}")
            merged[t].extend(examples)
        missing = [t for t, ex in merged.items() if not ex]
        if missing:
            raise RapoError(
                f"no prototype sentences for type(s) {missing}: pass prototypes={{type: [examples]}}"
            )
        self.prototypes = merged
        self._centroids = self._build_centroids(merged)
        all_cues = {t: list(DEFAULT_CUES.get(t, [])) for t in self.types}
        for t, extra in (cues or {}).items():
            if t not in all_cues:
                raise RapoError(f"cues given for {t!r}, which is not one of the types {self.types}")
            all_cues[t].extend(extra)
        self._cues = [
            [(re.compile(p, re.IGNORECASE), w) for p, w in all_cues[t]] for t in self.types
        ]
        # For ASCII text: the same cues run on the lowercased text, about twice as fast. The built-in
        # cues match lowercase text alike without the flag (tests check it); a caller's keep the flag,
        # which on lowercased ASCII text matches exactly what it matches on the text.
        builtin = {p for cues in DEFAULT_CUES.values() for p, _ in cues}
        self._lower_cues = [
            [(re.compile(p) if p in builtin else re.compile(p, re.IGNORECASE), w) for p, w in all_cues[t]]
            for t in self.types
        ]
        # For each lowercase cue, strings one of which any match contains: a cue whose strings are
        # all absent from the text cannot match, and is skipped without running the regex.
        self._lower_filtered = [[(rx, w, _prefilter(rx)) for rx, w in cues] for cues in self._lower_cues]
        self._signature = repr((self.types, temperature, proto_weight, lookup_prior, getattr(embedder, "signature", id(embedder)), sorted(merged.items()), sorted(all_cues.items())))
        self._prior = np.array(
            [lookup_prior if t == "lookup" else 0.0 for t in self.types], dtype=np.float64
        )

    def _build_centroids(self, protos: dict[str, list[str]]) -> np.ndarray:
        rows = []
        for t in self.types:
            c = self.embedder.embed(protos[t]).astype(np.float64).mean(axis=0)
            norm = np.linalg.norm(c)
            rows.append(c / norm if norm > 0 else c)
        return np.stack(rows)

    def _cue_scores(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.types)))
        for n, text in enumerate(texts):
            if text.isascii():
                text = text.lower()
                for k, filtered in enumerate(self._lower_filtered):
                    out[n, k] = sum(w for rx, w, req in filtered
                                    if (req is None or any(s in text for s in req)) and rx.search(text))
                continue
            for k, cues in enumerate(self._cues):
                out[n, k] = sum(w for rx, w in cues if rx.search(text))
        return out

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.embedder.embed(list(texts)).astype(np.float64)
        sims = emb @ self._centroids.T
        sims = sims - sims.mean(axis=1, keepdims=True)  # only the contrast between types matters
        return self.proto_weight * sims + self._cue_scores(texts) + self._prior

    def classify_many(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.types)))
        return _softmax(self.logits(texts), self.temperature)

    def classify(self, text: str) -> np.ndarray:
        # A pure function of (configuration, text): memoised process-wide, since several teams
        # in one process (benchmark ablations, server tenants) classify the same turns.
        key = (self._signature, text)
        hit = _MEMO.get(key)
        if hit is None:
            hit = self.classify_many([text])[0]
            hit.setflags(write=False)
            if len(_MEMO) >= 100_000:
                _MEMO.clear()
            _MEMO[key] = hit
        return hit

    def label(self, text: str) -> str:
        return self.types[int(np.argmax(self.classify(text)))]
