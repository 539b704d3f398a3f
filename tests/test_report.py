"""The report reads a results dict: a synthetic one here, with values chosen so the output can be checked."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from rapo.bench.report import binned_curve, print_summary, render_markdown, targets, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ["success_vs_transitions.png", "latency_vs_transitions.png", "ablations.png", "sensitivity.png"]


def _system(sr: float, loss: float, rouge: float, lat: float, events: int, by_t: dict[int, float]) -> dict[str, Any]:
    return {
        "success_rate": sr, "success_rate_ci": [sr - 0.015, min(sr + 0.014, 1.0)],
        "context_loss_rate": loss, "context_loss_rate_ci": [max(loss - 0.01, 0.0), loss + 0.01],
        "accuracy": sr + 0.01, "accuracy_ci": [sr, sr + 0.02],
        "rouge_l": rouge, "rouge_l_ci": [rouge - 0.02, rouge + 0.02],
        "latency_mean_s": lat, "latency_mean_s_ci": [lat * 0.9, lat * 1.1],
        "latency_turn_mean_s": lat / 10, "latency_turn_mean_s_ci": [lat / 11, lat / 9],
        "latency_p95_s": lat * 2.5, "latency_turn_p95_s": lat / 4,
        "prompt_tokens_per_turn": 812.0, "prompt_tokens_per_turn_ci": [790.0, 830.0],
        "output_tokens_per_turn": 41.0, "output_tokens_per_turn_ci": [40.0, 42.0],
        "calls_per_turn": 1.25, "calls_per_turn_ci": [1.2, 1.3],
        "latency_question_turns_mean_s": lat / 2, "latency_question_turns_mean_s_ci": [lat / 2.2, lat / 1.8],
        "latency_per_question_s": lat / 20, "calls_per_question": 2.1, "calls_per_question_ci": [2.0, 2.2],
        "conversations": 200, "questions": 900, "context_loss_events": events,
        "by_transitions": {str(t): {"success_rate": v, "latency_mean_s": lat * t / 10, "conversations": 4}
                           for t, v in by_t.items()},
        "by_scenario": {"customer-service": {"success_rate": sr, "accuracy": sr, "context_loss_rate": loss,
                                             "latency_mean_s": lat},
                        "design": {"success_rate": sr - 0.02, "accuracy": sr, "context_loss_rate": loss,
                                   "latency_mean_s": lat}},
        "by_type": {"arithmetic": {"accuracy": 0.93, "context_loss_rate": loss, "questions": 300},
                    "lookup": {"accuracy": 0.99, "context_loss_rate": loss, "questions": 600}},
    }


def make_results() -> dict[str, Any]:
    ts = [1, 3, 7, 10, 12, 25, 48, 50]
    systems = {
        "round-robin": _system(0.612, 0.21, 0.40, 90.0, 180, {t: 0.9 if t <= 10 else 0.5 for t in ts}),
        "handoff": _system(0.705, 0.15, 0.45, 80.0, 120, {t: 0.95 if t <= 10 else 0.6 for t in ts}),
        "rapo": _system(0.975, 0.0, 0.61, 30.4, 0, {t: 0.98 if t < 50 else 0.96 for t in ts}),
        "rapo-no-consensus": _system(0.931, 0.0, 0.58, 27.0, 0, {t: 0.93 for t in ts}),
        "oracle": _system(0.985, 0.0, 0.63, 26.0, 0, {t: 0.99 for t in ts}),
        "handoff-vote": {**_system(0.97, 0.0, 0.60, 82.0, 0, {t: 0.97 for t in ts}), "calls_per_question": 4.0},
        "oracle-vote": _system(0.985, 0.0, 0.63, 26.5, 0, {t: 0.99 for t in ts}),
    }
    ratios = {
        "latency_reduction_vs_handoff": 0.62, "latency_reduction_vs_handoff_ci": [0.60, 0.64],
        "rouge_l_gain_vs_handoff": 0.3556, "rouge_l_gain_vs_handoff_ci": [0.31, 0.40],
        "success_gain_vs_handoff": 0.27, "success_gain_vs_handoff_ci": [0.24, 0.30],
        "latency_reduction_vs_round_robin": 0.6622, "latency_reduction_vs_round_robin_ci": [0.64, 0.68],
        "rouge_l_gain_vs_round_robin": 0.525, "rouge_l_gain_vs_round_robin_ci": [0.48, 0.57],
        "success_gain_vs_round_robin": 0.363, "success_gain_vs_round_robin_ci": [0.33, 0.39],
        "latency_reduction_vs_oracle": -0.169, "latency_reduction_vs_oracle_ci": [-0.2, -0.14],
        "rouge_l_gain_vs_oracle": -0.0317, "rouge_l_gain_vs_oracle_ci": [-0.05, -0.01],
        "success_gain_vs_oracle": -0.01, "success_gain_vs_oracle_ci": [-0.02, 0.0],
        "latency_vs_oracle": 30.4 / 26.0,
        "success_gain_vs_handoff_vote": 0.005, "success_gain_vs_handoff_vote_ci": [-0.01, 0.02],
        "calls_per_question_vs_handoff_vote": 0.525, "calls_per_question_vs_handoff_vote_ci": [0.5, 0.55],
        "question_latency_reduction_vs_handoff_vote": 0.63,
        "question_latency_reduction_vs_handoff_vote_ci": [0.61, 0.65],
        "success_gain_vs_oracle_vote": -0.01, "success_gain_vs_oracle_vote_ci": [-0.02, 0.0],
    }
    small = {k: v for k, v in systems["rapo"].items() if k in ("success_rate", "context_loss_rate", "accuracy",
                                                              "rouge_l", "latency_mean_s", "prompt_tokens_per_turn",
                                                              "calls_per_turn")}
    sens = {
        "default": {"systems": {"rapo": small, "handoff": {**small, "success_rate": 0.705, "latency_mean_s": 80.0}},
                    "ratios": {"latency_reduction_vs_handoff": 0.62, "rouge_l_gain_vs_handoff": 0.3556}},
        "no-penalty": {"systems": {"rapo": {**small, "success_rate": 0.981},
                                   "handoff": {**small, "success_rate": 0.934, "latency_mean_s": 70.0}},
                       "ratios": {"latency_reduction_vs_handoff": 0.566, "rouge_l_gain_vs_handoff": 0.04}},
    }
    return {
        "config": {"conversations": 200, "seed": 7, "transitions": [1, 50], "systems": list(systems),
                   "profile": "default", "sensitivity": ["no-penalty"], "clock": "virtual", "backend": "sim",
                   "elapsed_s": 3.2, "rapo_version": "0.1.0"},
        "systems": systems, "ratios": ratios,
        "paper": {"latency_reduction": 0.42, "rouge_l_gain": 0.23, "success_rate": 0.89},
        "sensitivity": sens, "records": [],
    }


def _summary_text(results: dict[str, Any], width: int = 120) -> str:
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    print_summary(results, console)
    return console.export_text()


def _by_name(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in checks}


# -- terminal ------------------------------------------------------------------------------------


def test_print_summary_shows_systems_numbers_and_paper() -> None:
    text = _summary_text(make_results())
    for name in ("round-robin", "handoff", "rapo", "rapo-no-consensus", "oracle"):
        assert name in text
    assert "97.5%" in text and "[96.0,98.9]" in text  # rapo success with its CI
    assert "61.2%" in text  # round-robin success
    assert "21.0%" in text  # round-robin context loss
    assert "30.4" in text and "[27.4,33.4]" in text  # rapo latency per conversation
    assert "812+41" in text and "[790,830]" in text  # prompt+output tokens, CI of prompt tokens
    assert "Cost" not in text  # one table at 120 columns
    assert "62.0% [60.0, 64.0]" in text and "42%" in text  # latency reduction vs handoff, paper
    assert "+35.6% [+31.0, +40.0]" in text and "+23%" in text
    assert "89%" in text
    assert "targets met: 12/12" in text  # the four equal-budget targets need handoff-vote and oracle-vote
    assert "sensitivity no-penalty" in text and "98.1%" in text
    assert max(len(line) for line in text.splitlines()) <= 120


def test_print_summary_fits_80_columns() -> None:
    text = _summary_text(make_results(), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # split into two tables rather than truncated
    assert "Cost" in text and "[96.0,98.9]" in text and "[27.4,33.4]" in text and "[1.20,1.30]" in text


def test_print_summary_reports_unmet_targets_by_name() -> None:
    res = make_results()
    res["systems"]["rapo"]["context_loss_events"] = 3
    text = _summary_text(res)
    assert "targets met: 11/12" in text
    assert "rapo context-loss events" in text.split("not met:")[1]


# -- targets -------------------------------------------------------------------------------------


def test_targets_all_met_on_constructed_values() -> None:
    checks = targets(make_results())
    assert len(checks) == 12
    assert all(c["met"] for c in checks), [c for c in checks if not c["met"]]
    by = _by_name(checks)
    assert by["rapo success at 50 transitions"]["value"] == pytest.approx(0.96)
    assert by["rapo success within 2 points of the oracle"]["value"] == pytest.approx(0.01)
    assert by["rapo mean latency vs the oracle's"]["value"] == pytest.approx(30.4 / 26.0)


def test_targets_flag_each_unmet_value() -> None:
    res = make_results()
    rapo = res["systems"]["rapo"]
    rapo["success_rate"] = 0.969  # under 97%, and 1.6 points under the oracle's 98.5%: still within 2
    rapo["context_loss_events"] = 1
    rapo["by_transitions"]["50"]["success_rate"] = 0.949
    res["ratios"]["latency_reduction_vs_handoff"] = 0.599
    res["ratios"]["rouge_l_gain_vs_handoff"] = 0.29
    res["ratios"]["latency_vs_oracle"] = 1.26
    by = _by_name(targets(res))
    assert not by["rapo success rate"]["met"]
    assert not by["rapo context-loss events"]["met"]
    assert not by["rapo success at 50 transitions"]["met"]
    assert not by["rapo latency reduction vs handoff"]["met"]
    assert by["rapo latency reduction vs round-robin"]["met"]  # untouched: 66.2%
    assert not by["rapo ROUGE-L gain vs handoff"]["met"]
    assert by["rapo success within 2 points of the oracle"]["met"]
    assert not by["rapo mean latency vs the oracle's"]["met"]
    res["systems"]["oracle"]["success_rate"] = 0.990  # 2.1 points above rapo
    assert not _by_name(targets(res))["rapo success within 2 points of the oracle"]["met"]


def test_targets_use_largest_transition_bin_without_50() -> None:
    res = make_results()
    bt = res["systems"]["rapo"]["by_transitions"]
    del bt["50"]
    bt["48"]["success_rate"] = 0.90
    by = _by_name(targets(res))
    assert "rapo success at 48 transitions" in by
    assert by["rapo success at 48 transitions"]["value"] == pytest.approx(0.90)
    assert not by["rapo success at 48 transitions"]["met"]


def test_targets_compute_latency_vs_oracle_when_ratio_missing() -> None:
    res = make_results()
    del res["ratios"]["latency_vs_oracle"]
    res["systems"]["rapo"]["latency_mean_s"] = 30.0
    res["systems"]["oracle"]["latency_mean_s"] = 25.0
    c = _by_name(targets(res))["rapo mean latency vs the oracle's"]
    assert c["value"] == pytest.approx(1.2) and c["met"]


def test_targets_without_rapo_are_unmet_not_crashing() -> None:
    res = make_results()
    del res["systems"]["rapo"]
    res["ratios"] = {}
    checks = targets(res)
    assert len(checks) == 12
    assert not any(c["met"] for c in checks)
    assert all(c["value"] is None for c in checks)


def test_targets_nan_ratio_is_unmet() -> None:
    res = make_results()
    res["ratios"]["latency_reduction_vs_handoff"] = float("nan")
    c = _by_name(targets(res))["rapo latency reduction vs handoff"]
    assert c["met"] is False and c["value"] is None


# -- files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    return out, write_report(make_results(), out)


def test_write_report_writes_markdown_and_four_pngs(full_report: tuple[Path, list[Path]]) -> None:
    out, written = full_report
    assert [p.name for p in written] == ["report.md", *PLOTS]
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert 700 <= width <= 1300 and 400 <= height <= 800  # ~9x5 in at 120 dpi (tight-cropped)


def test_report_markdown_has_tables_targets_breakdowns_and_images(full_report: tuple[Path, list[Path]]) -> None:
    out, _ = full_report
    md = (out / "report.md").read_text()
    for heading in ("## Configuration", "## Systems", "## Headline ratios vs the paper", "## Targets check",
                    "## By scenario", "## By reasoning type", "## Sensitivity to the simulated model"):
        assert heading in md
    assert "| **rapo** | 97.5% [96.0, 98.9] | 0.0% [0.0, 1.0] |" in md
    assert "| latency reduction per conversation vs handoff | 62.0% [60.0, 64.0] | 42% |" in md
    assert "## The fair comparison" in md and "| handoff-vote (strongest baseline) |" in md
    assert "rapo against handoff-vote: success +0.5 points [-1.0, +2.0], question-turn latency 63.0% lower" in md
    assert "| rapo calls per question vs handoff-vote | <= 60% | 52.5% (2.10 vs 4.00) | met |" in md
    assert "| rapo success rate | >= 97% | 97.5% | met |" in md
    assert "customer-service" in md and "arithmetic" in md
    assert "| no-penalty | handoff | 93.4% |" in md
    for name in PLOTS:
        assert f"]({name})" in md
    assert "`1-50`" in md  # transitions shown as a range


def test_missing_systems_ratios_and_sensitivity_do_not_crash(tmp_path: Path) -> None:
    res = make_results()
    res["systems"] = {"handoff": res["systems"]["handoff"]}
    res["ratios"] = {}
    res["sensitivity"] = {}
    text = _summary_text(res)
    assert "handoff" in text and "70.5%" in text and "targets met: 0/12" in text
    written = write_report(res, tmp_path)
    names = [p.name for p in written]
    assert names == ["report.md", "success_vs_transitions.png", "latency_vs_transitions.png", "ablations.png"]
    md = (tmp_path / "report.md").read_text()
    assert "sensitivity.png" not in md and "No sensitivity profiles" in md
    assert "n/a (not in this run)" in md


def test_empty_results_still_report(tmp_path: Path) -> None:
    text = _summary_text({})
    assert "no systems" in text
    written = write_report({}, tmp_path)
    assert [p.name for p in written] == ["report.md"]
    assert "_No systems in this run._" in (tmp_path / "report.md").read_text()


def test_nan_and_missing_cis_render_as_na() -> None:
    res = make_results()
    res["systems"]["handoff"]["rouge_l"] = float("nan")
    del res["systems"]["handoff"]["latency_mean_s_ci"]
    md = render_markdown(res)
    row = next(line for line in md.splitlines() if line.startswith("| **handoff**"))
    assert "| n/a |" in row
    assert "| 80.0 |" in row  # latency without its CI
    text = _summary_text(copy.deepcopy(res))
    assert "n/a" in text


# -- binning -------------------------------------------------------------------------------------


def test_binned_curve_weights_by_conversations() -> None:
    by_t = {"1": {"success_rate": 1.0, "conversations": 3}, "5": {"success_rate": 0.0, "conversations": 1},
            "6": {"success_rate": 0.5, "conversations": 2}, "12": {"success_rate": 0.25, "conversations": 2}}
    x, y = binned_curve(by_t, "success_rate")
    np.testing.assert_allclose(x, [(1 * 3 + 5) / 4, 6.0, 12.0])
    np.testing.assert_allclose(y, [0.75, 0.5, 0.25])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 60), st.tuples(st.floats(0, 1), st.integers(1, 30)), min_size=1))
def test_binned_curve_stays_within_each_bins_range(data: dict[int, tuple[float, int]]) -> None:
    by_t = {str(t): {"success_rate": v, "conversations": n} for t, (v, n) in data.items()}
    x, y = binned_curve(by_t, "success_rate")
    bins = sorted({(t - 1) // 5 for t in data})
    assert len(x) == len(bins)
    for xi, yi, b in zip(x, y, bins):
        members = [(t, v) for t, (v, _) in data.items() if (t - 1) // 5 == b]
        assert min(t for t, _ in members) - 1e-9 <= xi <= max(t for t, _ in members) + 1e-9
        assert min(v for _, v in members) - 1e-9 <= yi <= max(v for _, v in members) + 1e-9
        assert not math.isnan(yi)


def test_a_slower_rapo_reads_as_higher_latency_not_a_negative_reduction() -> None:
    res = make_results()
    res["ratios"]["question_latency_reduction_vs_handoff_vote"] = -1.924
    res["ratios"]["question_latency_reduction_vs_handoff_vote_ci"] = [-2.1, -1.8]
    md = render_markdown(res)
    line = next(line for line in md.splitlines() if line.startswith("rapo against handoff-vote"))
    assert "question-turn latency 192.4% higher [180.0, 210.0]" in line
    assert "--" not in line and "-192" not in line
