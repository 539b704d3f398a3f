"""`rapo bench memory`: does the context a question gets hold what it needs, on LoCoMo?

LoCoMo (Maharana et al., ACL 2024) annotates each question with the dialogue turns that hold its
answer. Every turn of a conversation is `observe`d into a fresh rapo conversation (no model call);
then each question of categories 1-4 gets `preview`'s context. A question counts as recalled only
when every evidence turn contributed at least one item. The baselines get the same budget and the
same way of counting tokens: BM25 over whole turns, embedding retrieval over whole turns (the same
embedder), the most recent turns that fit, and the full history (recall 1 by construction).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from pydantic import BaseModel

from rapo.memory.index import EmbeddingIndex, LexicalIndex
from rapo.memory.selection import ContextItem, item_tokens
from rapo.tokens import count_tokens
from rapo.types import Embedder, RapoError

__all__ = ["LocomoTurn", "LocomoQuestion", "LocomoConversation", "load_locomo", "run_memory_bench", "CATEGORIES"]

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
_SESSION = re.compile(r"^session_(\d+)$")


class LocomoTurn(BaseModel):
    dia_id: str
    speaker: str
    text: str
    when: str | None = None


class LocomoQuestion(BaseModel):
    question: str
    category: int
    evidence: list[str]
    answer: str | None = None


class LocomoConversation(BaseModel):
    name: str
    turns: list[LocomoTurn]
    questions: list[LocomoQuestion]


def _turn_text(t: dict[str, Any]) -> str:
    """The turn as its speaker sent it; a shared photo is part of what was said (LoCoMo gives its
    caption), for every system alike."""
    text = str(t.get("text", ""))
    caption = t.get("blip_caption")
    return f"{text} [shares a photo: {caption}]" if caption else text


def _conversation(name: str, doc: dict[str, Any]) -> LocomoConversation:
    conv = doc.get("conversation", doc)
    if not isinstance(conv, dict):
        raise RapoError(f"{name}: no 'conversation' object; is this a LoCoMo file?")
    sessions = sorted((int(m.group(1)), k) for k in conv if (m := _SESSION.match(k)))
    if not sessions:
        raise RapoError(f"{name}: no session_N lists of turns; is this a LoCoMo file?")
    turns = [
        LocomoTurn(dia_id=str(t["dia_id"]), speaker=str(t["speaker"]), text=_turn_text(t),
                   when=conv.get(f"{key}_date_time"))
        for _, key in sessions for t in conv[key] if isinstance(t, dict) and "dia_id" in t
    ]
    questions = [
        LocomoQuestion(question=str(q["question"]), category=int(q["category"]),
                       evidence=[e.strip() for ev in q.get("evidence", []) for e in str(ev).split(";") if e.strip()],
                       answer=str(q["answer"]) if q.get("answer") is not None else None)
        for q in doc.get("qa", []) if int(q.get("category", 0)) in CATEGORIES
    ]
    return LocomoConversation(name=name, turns=turns, questions=questions)


def _said(text: str | None) -> str:
    """Text compared as words: lowercase, punctuation as spaces ("7 May 2023" in "7 May, 2023.")."""
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))


def load_locomo(path: str | Path) -> list[LocomoConversation]:
    """A LoCoMo file (one conversation, or the list `locomo10.json` holds) or a folder of them."""
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise RapoError(f"no LoCoMo data at {p}: give a .json file or a folder of them")
    out: list[LocomoConversation] = []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RapoError(f"{f} is not a JSON file: {err}") from None
        docs = doc if isinstance(doc, list) else [doc]
        for i, d in enumerate(docs):
            out.append(_conversation(f.stem if len(docs) == 1 else f"{f.stem}#{i}", d))
    return out


# --- the same-budget baselines --------------------------------------------------------------


def _item(turn_no: int, t: LocomoTurn) -> ContextItem:
    return ContextItem(kind="passage", text=t.text, turn=turn_no, speaker=t.speaker, when=t.when, reason="retrieved")


def _fill(order: Iterable[int], items: Sequence[ContextItem], budget: int) -> list[ContextItem]:
    """Whole turns in ranked order while they fit (a date header counted once per date)."""
    chosen: list[ContextItem] = []
    used = 0
    whens: set[str] = set()
    for i in order:
        it = items[i]
        cost = item_tokens(it) + (count_tokens(it.when) + 2 if it.when and it.when not in whens else 0)
        if used + cost > budget:
            continue
        used += cost
        chosen.append(it)
        if it.when:
            whens.add(it.when)
    return chosen


def context_tokens(items: Sequence[ContextItem]) -> int:
    """What a context costs as the default template renders it: each line, and a date header per date."""
    whens = {i.when for i in items if i.when}
    return sum(item_tokens(i) for i in items) + sum(count_tokens(w) + 2 for w in whens)


class _Baselines:
    def __init__(self, conv: LocomoConversation, embedder: Embedder) -> None:
        self.items = [_item(n + 1, t) for n, t in enumerate(conv.turns)]
        labelled = [f"{t.speaker}: {t.text}" for t in conv.turns]
        self.bm25 = LexicalIndex()
        self.bm25.add(labelled)
        self.emb = EmbeddingIndex(embedder)
        self.emb.add(labelled)

    def bm25_ctx(self, q: str, budget: int) -> list[ContextItem]:
        ranked, _ = self.bm25.search(q, len(self.items))
        return _fill(ranked.tolist(), self.items, budget)

    def embedding_ctx(self, q: str, budget: int) -> list[ContextItem]:
        ranked, _ = self.emb.search(q, len(self.items))
        return _fill(ranked.tolist(), self.items, budget)

    def recent_ctx(self, q: str, budget: int) -> list[ContextItem]:
        chosen = []
        for it in reversed(_fill(range(len(self.items) - 1, -1, -1), self.items, budget)):
            chosen.append(it)
        return chosen

    def full_ctx(self, q: str, budget: int) -> list[ContextItem]:
        return list(self.items)


# --- the run ----------------------------------------------------------------------------------


def run_memory_bench(
    data: str | Path,
    *,
    budget: int | None = None,
    embedder: str = "hashing",
    team: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evidence recall of rapo's context and the baselines' on LoCoMo-format conversations."""
    from rapo.embed import make_embedder
    from rapo.orchestrator import Orchestrator
    from rapo.team import AgentSpec, TeamSpec

    convs = load_locomo(data)
    spec = team or TeamSpec(name="memory-bench", embedder=embedder,
                            agents=[AgentSpec(name="assistant", role="You answer from the conversation.")])
    if budget is not None:
        spec = spec.model_copy(update={"prompts": spec.prompts.model_copy(update={"context_budget_tokens": budget})})
    budget_used = spec.prompts.context_budget_tokens
    emb = make_embedder(spec.embedder)
    orch = Orchestrator(spec, embedder=emb)
    names = ["rapo", "bm25", "embedding", "recent", "full-history"]
    hits: dict[str, dict[int, list[bool]]] = {n: {c: [] for c in CATEGORIES} for n in names}
    answered: dict[str, list[bool]] = {n: [] for n in names}  # the answer's words reach the context
    tokens: dict[str, list[int]] = {n: [] for n in names}
    ingest_s = select_s = 0.0
    n_turns = n_questions = 0
    total_q = sum(len(c.questions) for c in convs)
    for conv in convs:
        state = orch.new_conversation(conv.name)
        turn_of: dict[str, int] = {}
        t0 = time.perf_counter()
        for t in conv.turns:
            rec = orch.observe(state, t.text, speaker=t.speaker, when=t.when)
            turn_of[t.dia_id] = rec.turn
        ingest_s += time.perf_counter() - t0
        n_turns += len(conv.turns)
        base = _Baselines(conv, emb)
        systems: dict[str, Callable[[str], list[ContextItem]]] = {
            "rapo": lambda q: orch.preview(state, q),
            "bm25": lambda q: base.bm25_ctx(q, budget_used),
            "embedding": lambda q: base.embedding_ctx(q, budget_used),
            "recent": lambda q: base.recent_ctx(q, budget_used),
            "full-history": lambda q: base.full_ctx(q, budget_used),
        }
        text_of = {turn_of[t.dia_id]: t.text for t in conv.turns}
        for q in conv.questions:
            needed = {turn_of[e] for e in q.evidence if e in turn_of}
            if not needed:
                continue  # an annotation naming no turn of the conversation cannot be scored
            answer = _said(q.answer)
            checkable = bool(answer) and any(answer in _said(text_of[n]) for n in needed)
            for name, fn in systems.items():
                t1 = time.perf_counter()
                items = fn(q.question)
                if name == "rapo":
                    select_s += time.perf_counter() - t1
                got = {i.turn for i in items}
                hits[name][q.category].append(needed <= got)
                if checkable:
                    answered[name].append(answer in _said(" ".join(i.text for i in items)))
                tokens[name].append(context_tokens(items))
            n_questions += 1
            if progress:
                progress(n_questions, total_q)

    def summary(name: str) -> dict[str, Any]:
        flat = [x for c in CATEGORIES for x in hits[name][c]]
        return {
            "evidence_recall": float(np.mean(flat)) if flat else 0.0,
            "tokens_per_question": float(np.mean(tokens[name])) if tokens[name] else 0.0,
            "by_category": {str(c): float(np.mean(hits[name][c])) if hits[name][c] else 0.0 for c in CATEGORIES},
            # of the questions whose answer an evidence turn says word for word: is it in the context?
            "answer_in_context": float(np.mean(answered[name])) if answered[name] else 0.0,
        }

    return {
        "systems": {n: summary(n) for n in names},
        "config": {
            "data": str(data), "conversations": len(convs), "turns": n_turns, "questions": n_questions,
            "budget_tokens": budget_used, "embedder": spec.embedder, "k_relevant": spec.prompts.k_relevant,
            "categories": {str(k): v for k, v in CATEGORIES.items()},
            "questions_by_category": {str(c): len(hits["rapo"][c]) for c in CATEGORIES},
            "answer_checkable_questions": len(answered["rapo"]),
        },
        "timing": {
            "ingest_ms_per_turn": 1000 * ingest_s / max(n_turns, 1),
            "select_ms_per_question": 1000 * select_s / max(n_questions, 1),
        },
    }


def write_memory_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """memory.json, a Markdown table and a bar chart of recall per category and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cats = results["config"]["categories"]
    paths = [out / "memory.json", out / "memory.md", out / "memory.png"]
    paths[0].write_text(json.dumps(results, indent=2))
    lines = ["| system | recall | " + " | ".join(f"{c} {n}" for c, n in cats.items())
             + " | answer in context | tokens / question |",
             "|---|---|" + "---|" * len(cats) + "---|---|"]
    for name, row in results["systems"].items():
        lines.append(f"| {name} | {row['evidence_recall']:.1%} | "
                     + " | ".join(f"{row['by_category'][c]:.1%}" for c in cats)
                     + f" | {row.get('answer_in_context', 0.0):.1%} | {row['tokens_per_question']:.0f} |")
    cfg = results["config"]
    paths[1].write_text(f"# LoCoMo evidence recall\n\n{cfg['questions']} questions of categories 1-4 in "
                        f"{cfg['conversations']} conversations; budget {cfg['budget_tokens']} tokens; embedder "
                        f"{cfg['embedder']}.\n\n" + "\n".join(lines) + "\n\n"
                        f"Answer in context: of the {cfg.get('answer_checkable_questions', 0)} questions whose "
                        "annotated answer an evidence turn says word for word, the share whose context holds "
                        "those words. Recall counts a turn that reached the context by any of its passages; "
                        "this says whether the passage that holds the answer did.\n")
    systems = [n for n in results["systems"] if n != "full-history"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(systems)
    for i, name in enumerate(systems):
        vals = [results["systems"][name]["by_category"][c] for c in cats]
        ax.bar(np.arange(len(cats)) + i * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(cats)) + width * (len(systems) - 1) / 2, [f"{c} {n}" for c, n in cats.items()])
    ax.set_ylabel("evidence recall")
    ax.set_ylim(0, 1)
    ax.set_title(f"Evidence recall at {cfg['budget_tokens']} context tokens per question")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)
    return paths
