"""The everyday language: the same world and truth as the controlled one, written as people write,
read back by the simulated model from the text alone, and unknown to rapo's library code."""

from __future__ import annotations

import ast
import random
import re
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.backends.sim import SimBackend
from rapo.bench.generator import Conversation, generate
from rapo.bench.language import ATTRIBUTES, parse_question, parse_statements
from rapo.bench.natural import number_words, parse_natural_question, read_facts, read_value, say_number, words_number
from rapo.consensus import extract_answer, normalise_answer
from rapo.types import Message

SRC = Path(__file__).resolve().parents[1] / "src" / "rapo"
TYPES = ("lookup", "arithmetic", "comparison", "aggregation", "deduction", "verification")
PERFECT = {"sim-perfect": {t: 1.0 for t in TYPES}}


@lru_cache(maxsize=2)
def _pair(n: int = 90) -> tuple[tuple[Conversation, ...], tuple[Conversation, ...]]:
    return tuple(generate(n, seed=5)), tuple(generate(n, seed=5, language="natural"))


def test_same_world_and_truth_in_both_languages() -> None:
    controlled, natural = _pair()
    for a, b in zip(controlled, natural):
        assert len(a.turns) == len(b.turns) and a.scenario == b.scenario
        for ta, tb in zip(a.turns, b.turns):
            assert (ta.question is None) == (tb.question is None)
            if ta.question is not None:
                qa, qb = ta.question, tb.question
                assert (qa.type, qa.answer, qa.reference) == (qb.type, qb.answer, qb.reference)
                assert [(n.key, n.value, n.turn) for n in qa.needed] == [(n.key, n.value, n.turn) for n in qb.needed]
                assert qa.text != qb.text


def test_natural_text_is_not_the_controlled_language_and_has_every_feature() -> None:
    _, natural = _pair()
    texts = [t.text for c in natural for t in c.turns]
    joined = "\n".join(texts)
    assert sum(bool(parse_statements(t)) for t in texts) == 0  # no controlled statement form left
    assert not any(parse_question(t) for t in texts)
    for feature in (r"\bships in\b|\bcosts\b|\bbelongs to\b|\bwas placed by\b", r"went (?:up|down) to",
                    r"moved from .+ to ", r"(?m)^It |[.] It |[.] Its ", r", and [a-z]", r"\b(?:twenty|hundred)\b",
                    r"\$\d", r"(?m)^- [a-z ]+: ", r"Scratch the|Sorry, where I said|My mistake"):
        assert re.search(feature, joined), feature


def test_corrections_that_never_name_the_subject_point_back_through_the_value() -> None:
    _, natural = _pair()
    seen = 0
    for conv in natural:
        texts = [t.text for t in conv.turns]
        for i, text in enumerate(texts):
            m = re.search(r"(?:Scratch the|Sorry, where I said) [^:,]+[:,] (?:make that|read) ([^.]+)\.", text)
            if not m:
                continue
            seen += 1
            assert not re.search(r"\b[A-Z]\d{1,3}\b", m.group(0))  # no identifier in the correction
            base = sum(len(t) + 1 for t in texts[:i])
            new = [f for f in read_facts(texts[: i + 1]) if f.offset >= base]
            assert any(f.text.startswith(("Scratch", "Sorry")) for f in new)
    assert seen >= 5


@pytest.mark.parametrize("language", ["controlled", "natural"])
async def test_the_simulated_model_answers_from_the_text_alone(language: str) -> None:
    """A perfect agent handed the whole conversation as plain user messages answers every question."""
    sim = SimBackend(profile="no-penalty", seed=1, skills=PERFECT)
    convs = generate(24, seed=11, transitions=(2, 14), language=language)
    right = total = 0
    for conv in convs:
        history: list[Message] = []
        for t in conv.turns:
            history.append(Message(role="user", content=t.text))
            if t.question is None:
                continue
            reply = (await sim.complete(history, model="sim-perfect")).text
            total += 1
            right += normalise_answer(extract_answer(reply)) == normalise_answer(t.question.answer)
    assert total > 50 and right == total


def test_library_code_never_imports_the_benchmark_languages() -> None:
    """rapo reads its users' English with its own rules; only the benchmark and the simulator may
    share the generator's languages."""
    allowed = {SRC / "backends" / "sim.py"}
    for path in SRC.rglob("*.py"):
        if "bench" in path.relative_to(SRC).parts or path in allowed:
            continue
        tree = ast.parse(path.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.startswith(("rapo.bench.language", "rapo.bench.natural", "rapo.bench.generator"))
                       for m in mods), (path, mods)
        text = path.read_text()
        for phrase in ("ships in", "has refunds capped at", "Scratch the", "Sorry, where I said"):
            assert phrase not in text, (path, phrase)  # no word lists copied from the generator


async def test_natural_conversations_reach_systems_only_as_text() -> None:
    """Corrupt every truth field: what the systems do in the natural language does not change."""
    from rapo.bench.runner import BenchConfig, _run_job

    cfg = BenchConfig(conversations=4, transitions=(6, 10), workers=1, sensitivity=[], language="natural")
    convs = generate(4, seed=3, transitions=(6, 10), language="natural")
    clean = {n: await _run_job(cfg, n, "default", convs, lambda: None) for n in ("handoff", "rapo")}
    for c in convs:
        for t in c.turns:
            if t.question is not None:
                t.question.answer = "corrupted"
                for n in t.question.needed:
                    n.value, n.sentence, n.key, n.written = "0 nothing", "nothing", "nothing|x", "nothing"
    for name, before in clean.items():
        after = await _run_job(cfg, name, "default", convs, lambda: None)
        assert [(r.agent, r.value, r.ptok, r.calls) for r in after] == [(r.agent, r.value, r.ptok, r.calls) for r in before]


@given(st.integers(0, 999_999))
def test_number_words_round_trip(n: int) -> None:
    assert words_number(number_words(n)) == n
    assert words_number(f"{n:,}") == n


@settings(max_examples=300)
@given(st.sampled_from([a for a in ATTRIBUTES.values() if a.kind == "number"]), st.data())
def test_every_written_quantity_reads_back(attr, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(attr.lo, attr.hi))
    rng = random.Random(data.draw(st.integers(0, 10**6)))
    written = say_number(n, attr.unit, rng)
    assert read_value(written, attr.unit) == f"{n} {attr.unit}"


def test_natural_questions_read_back_to_the_controlled_question() -> None:
    controlled, natural = _pair()
    n = 0
    for a, b in zip(controlled, natural):
        for ta, tb in zip(a.turns, b.turns):
            if ta.question is None:
                continue
            pa, pb = parse_question(ta.question.text), parse_natural_question(tb.question.text)
            assert pb is not None and (pa.type, pa.subjects, pa.chain, pa.operator) == \
                (pb.type, pb.subjects, pb.chain, pb.operator)
            n += 1
    assert n > 200


def test_a_report_quoted_as_list_items_reads_as_the_report() -> None:
    """A context list quotes each line as "- <line>": the heading, as a list item, still names the
    subject of the report's lines, exactly as the unquoted report does."""
    report = "Loan N918\n- requested amount: $47,255\n- applicant: applicant P14"
    quoted = "\n".join(f"- {line}." for line in report.splitlines())
    plain = [(f.attr, f.entity, f.value) for f in read_facts([report])]
    assert plain == [("requested amount", "loan n918", "47255 dollars"), ("applicant", "loan n918", "applicant P14")]
    assert [(f.attr, f.entity, f.value) for f in read_facts([quoted])] == plain
