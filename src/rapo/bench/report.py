"""Turns a results dict (runner.assemble) into a terminal summary, a Markdown report and PNG plots.

Everything here reads the results dict only, so a saved results.json can be re-reported, and every
part copes with missing systems, ratios or sensitivity profiles (a run may pick any subset).
matplotlib is imported inside the plotting functions so that `import rapo` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from rich.console import Console

# Display order; systems not listed here follow in the order the results give them.
ORDER = ["round-robin", "round-robin-vote", "handoff", "handoff-vote", "rapo", "rapo-vote-always",
         "rapo-no-consensus", "rapo-static-prompts", "rapo-no-context-vectors", "rapo-no-learning",
         "rapo-random-routing", "oracle", "oracle-vote"]
BASELINES = ("round-robin", "round-robin-vote", "handoff", "handoff-vote")
ORACLES = ("oracle", "oracle-vote")
# (ratio key stem, label) of the systems rapo is compared with, in the order the report lists them
VERSUS = (("handoff_vote", "handoff-vote"), ("handoff", "handoff"), ("round_robin_vote", "round-robin-vote"),
          ("round_robin", "round-robin"), ("oracle_vote", "oracle-vote"), ("oracle", "oracle"))
PAPER_DEFAULT = {"latency_reduction": 0.42, "rouge_l_gain": 0.23, "success_rate": 0.89}
BIN = 5  # transitions per bin in the curves: 20 conversations per T at 1,000 conversations is noisy
PAPER_KNEE = 10  # the paper's system degrades past this many transitions
FIGSIZE = (9.0, 5.0)
DPI = 120


# -- formatting ----------------------------------------------------------------------------------


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pct(v: Any, digits: int = 1, sign: bool = False) -> str:
    if not _finite(v):
        return "n/a"
    return f"{v * 100:{'+' if sign else ''}.{digits}f}%"


def _num(v: Any, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "n/a"  # no thousands commas: they read as CI separators


def _ci_text(ci: Any, fmt: Callable[[Any], str]) -> str:
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(c) for c in ci)):
        return ""
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _bare_pct(v: float) -> str:
    return f"{v * 100:.1f}"


def _lower_ci(ci: Any, v: float) -> Any:
    """A reduction's interval as the sentence states it: of the increase, where the value is negative."""
    if v >= 0 or not ci:
        return ci
    return [-ci[1], -ci[0]]


def _signed_pct(v: float) -> str:
    return f"{v * 100:+.1f}"


def fmt_rate(stats: dict[str, Any], key: str) -> tuple[str, str]:
    """(value, CI) of a rate as percentages, e.g. ('97.3%', '[96.1, 98.2]')."""
    v = stats.get(key)
    return _pct(v), _ci_text(stats.get(f"{key}_ci"), _bare_pct) if _finite(v) else ""


def fmt_value(stats: dict[str, Any], key: str, digits: int) -> tuple[str, str]:
    v = stats.get(key)
    return _num(v, digits), _ci_text(stats.get(f"{key}_ci"), lambda x: _num(x, digits)) if _finite(v) else ""


def _digits(v: Any) -> int:
    """Fewer decimals for big numbers: latencies run from milliseconds to minutes."""
    if not _finite(v):
        return 2
    a = abs(v)
    return 0 if a >= 1000 else 1 if a >= 10 else 2 if a >= 1 else 3


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    known = [n for n in ORDER if n in names]
    return known + [n for n in names if n not in ORDER]


def _paper(results: dict[str, Any]) -> dict[str, float]:
    return {**PAPER_DEFAULT, **(results.get("paper") or {})}


# -- targets -------------------------------------------------------------------------------------


class Target(BaseModel):
    """One line of the targets check: what rapo must reach, what it reached, and whether that is enough."""

    name: str
    target: str
    value: float | None  # None when the run lacks the systems needed to compute it
    shown: str  # the value as a reader should see it, with the comparison it was judged on
    met: bool


def _largest_bin(by_t: dict[str, Any], want: int = 50) -> tuple[int, dict[str, Any]] | None:
    if not by_t:
        return None
    if str(want) in by_t:
        return want, by_t[str(want)]
    t = max(int(k) for k in by_t)
    return t, by_t[str(t)]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """rapo's targets (above the paper, near the oracle), judged on the point estimates, honestly."""
    systems = results.get("systems") or {}
    ratios = results.get("ratios") or {}
    rapo = systems.get("rapo")
    oracle = systems.get("oracle")
    out: list[Target] = []

    def add(name: str, target: str, value: float | None, shown: str, ok: Callable[[float], bool]) -> None:
        met = value is not None and _finite(value) and bool(ok(value))
        out.append(Target(name=name, target=target, value=value if _finite(value) else None,
                          shown=shown if value is not None else "n/a (not in this run)", met=met))

    sr = rapo.get("success_rate") if rapo else None
    add("rapo success rate", ">= 97%", sr, _pct(sr), lambda v: v >= 0.97)

    ev = rapo.get("context_loss_events") if rapo else None
    add("rapo context-loss events", "== 0", float(ev) if ev is not None else None,
        f"{ev} of {rapo.get('questions', '?')} questions" if rapo and ev is not None else "", lambda v: v == 0)

    hit = _largest_bin(rapo.get("by_transitions") or {}) if rapo else None
    if hit is not None:
        t, row = hit
        v = row.get("success_rate")
        add(f"rapo success at {t} transitions", ">= 95%", v,
            f"{_pct(v)} (n={row.get('conversations', '?')} conversations at T={t})", lambda x: x >= 0.95)
    else:
        add("rapo success at 50 transitions", ">= 95%", None, "", lambda x: x >= 0.95)

    for key, label in (("handoff", "handoff"), ("round_robin", "round-robin")):
        v = ratios.get(f"latency_reduction_vs_{key}")
        add(f"rapo latency reduction vs {label}", ">= 60%", v,
            f"{_pct(v)} {_ci_text(ratios.get(f'latency_reduction_vs_{key}_ci'), _bare_pct)}".strip(),
            lambda x: x >= 0.60)

    v = ratios.get("rouge_l_gain_vs_handoff")
    add("rapo ROUGE-L gain vs handoff", ">= +30%", v,
        f"{_pct(v, sign=True)} {_ci_text(ratios.get('rouge_l_gain_vs_handoff_ci'), _signed_pct)}".strip(),
        lambda x: x >= 0.30)

    gap = None
    if rapo and oracle and _finite(rapo.get("success_rate")) and _finite(oracle.get("success_rate")):
        gap = oracle["success_rate"] - rapo["success_rate"]
    add("rapo success within 2 points of the oracle", "oracle - rapo <= 2.0 pts", gap,
        f"{gap * 100:.1f} pts (rapo {_pct(sr)}, oracle {_pct(oracle.get('success_rate'))})" if gap is not None
        else "", lambda x: x <= 0.02 + 1e-12)

    hv = systems.get("handoff-vote")
    g = ratios.get("success_gain_vs_handoff_vote")
    add("rapo success vs handoff-vote (equal budget)", ">= handoff-vote", g,
        f"{g * 100:+.1f} pts (rapo {_pct(sr)}, handoff-vote {_pct(hv.get('success_rate'))})" if g is not None and hv
        else "", lambda x: x >= 0)
    c = ratios.get("calls_per_question_vs_handoff_vote")
    add("rapo calls per question vs handoff-vote", "<= 60%", c,
        f"{_pct(c)} ({_num(rapo.get('calls_per_question'))} vs {_num(hv.get('calls_per_question'))})"
        if c is not None and rapo and hv else "", lambda x: x <= 0.60)
    q = ratios.get("question_latency_reduction_vs_handoff_vote")
    add("rapo question-turn latency reduction vs handoff-vote", ">= 40%", q,
        f"{_pct(q)} {_ci_text(ratios.get('question_latency_reduction_vs_handoff_vote_ci'), _bare_pct)}".strip(),
        lambda x: x >= 0.40)
    ov = systems.get("oracle-vote")
    gv = -ratios["success_gain_vs_oracle_vote"] if _finite(ratios.get("success_gain_vs_oracle_vote")) else None
    add("rapo success within 2 points of oracle-vote (the ceiling)", "oracle-vote - rapo <= 2.0 pts", gv,
        f"{gv * 100:.1f} pts (rapo {_pct(sr)}, oracle-vote {_pct(ov.get('success_rate'))})" if gv is not None and ov
        else "", lambda x: x <= 0.02 + 1e-12)

    lvo = ratios.get("latency_vs_oracle")
    if not _finite(lvo) and rapo and oracle and _finite(rapo.get("latency_mean_s")) \
            and _finite(oracle.get("latency_mean_s")) and oracle["latency_mean_s"] > 0:
        lvo = rapo["latency_mean_s"] / oracle["latency_mean_s"]
    add("rapo mean latency vs the oracle's", "<= 1.25x", lvo if _finite(lvo) else None,
        f"{lvo:.2f}x" if _finite(lvo) else "", lambda x: x <= 1.25)
    return [t.model_dump() for t in out]


# -- terminal ------------------------------------------------------------------------------------


def _cell(value: str, ci: str) -> str:
    return f"{value}\n[dim]{ci.replace(', ', ',')}[/]" if ci else value


# (header, cell) per column of the terminal table; "quality" and "cost" split it on narrow consoles.
_QUALITY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("success", lambda s: _cell(*fmt_rate(s, "success_rate"))),
    ("ctx loss", lambda s: _cell(*fmt_rate(s, "context_loss_rate"))),
    ("ROUGE-L", lambda s: _cell(*fmt_value(s, "rouge_l", 3))),
]
_COST: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("lat/conv s", lambda s: _cell(*fmt_value(s, "latency_mean_s", _digits(s.get("latency_mean_s"))))),
    ("p95 s", lambda s: _num(s.get("latency_p95_s"), _digits(s.get("latency_p95_s")))),
    ("tok/turn", lambda s: _cell(
        f"{_num(s.get('prompt_tokens_per_turn'), 0)}+{_num(s.get('output_tokens_per_turn'), 0)}",
        fmt_value(s, "prompt_tokens_per_turn", 0)[1] if _finite(s.get("prompt_tokens_per_turn")) else "")),
    ("calls/turn", lambda s: _cell(*fmt_value(s, "calls_per_turn", 2))),
]
# Question turns alone: the like-for-like latency (rapo's statement turns cost no call by default).
_QUESTIONS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("success", lambda s: _pct(s.get("success_rate"))),
    ("q-lat/conv s", lambda s: _cell(*fmt_value(s, "latency_question_turns_mean_s",
                                                     _digits(s.get("latency_question_turns_mean_s"))))),
    ("lat/q s", lambda s: _num(s.get("latency_per_question_s"), _digits(s.get("latency_per_question_s")))),
    ("calls/q", lambda s: _cell(*fmt_value(s, "calls_per_question", 2))),
]


def _system_table(title: str, caption: str, systems: dict[str, Any],
                  columns: list[tuple[str, Callable[[dict[str, Any]], str]]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("system", style="bold", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for name in _ordered(systems):
        table.add_row(name, *(cell(systems[name]) for _, cell in columns), end_section=True)
    return table


def print_summary(results: dict[str, Any], console: "Console") -> None:
    """The main table, the paper's headline ratios and a sensitivity line, fitted to 80-120 columns."""
    from rich import box
    from rich.table import Table

    systems = results.get("systems") or {}
    cfg = results.get("config") or {}
    tr = cfg.get("transitions")
    head = f"{cfg.get('conversations', '?')} conversations, seed {cfg.get('seed', '?')}"
    if isinstance(tr, (list, tuple)) and len(tr) == 2:
        head += f", transitions {tr[0]}-{tr[1]}"
    title = f"Benchmark: {head}; profile {cfg.get('profile', '?')}, {cfg.get('clock', '?')} clock"
    caption = "value over [95% CI], bootstrap over conversations"
    cost_caption = "latency per conversation; tok/turn: prompt+output, CI of prompt"
    if not systems:
        console.print("[yellow]no systems in these results[/]")
    elif console.measure(full := _system_table(title, f"{caption}; {cost_caption}", systems, _QUALITY + _COST),
                         options=console.options.update_width(10_000)).maximum <= console.width:
        console.print(full)
    else:  # a narrow console: two tables rather than wrapped cells
        console.print(_system_table(title, caption, systems, _QUALITY))
        console.print(_system_table("Cost", cost_caption, systems, _COST))
    if systems:
        console.print(_system_table("Question turns only (statement turns cost rapo no call by default)",
                                    "latency summed over a conversation's question turns", systems, _QUESTIONS))

    ratios = results.get("ratios") or {}
    paper = _paper(results)
    rt = Table(title="Headline ratios vs the paper", box=box.SIMPLE_HEAD, pad_edge=False)
    rt.add_column("measure", style="bold")
    rt.add_column("rapo [95% CI]", justify="right")
    rt.add_column("paper", justify="right")
    for key, label in VERSUS[:4]:
        k = f"question_latency_reduction_vs_{key}"
        if k in ratios:
            rt.add_row(f"question-turn latency reduction vs {label}",
                       f"{_pct(ratios.get(k))} {_ci_text(ratios.get(k + '_ci'), _bare_pct)}".strip(), "")
    for key, label in (("handoff_vote", "handoff-vote"), ("oracle_vote", "oracle-vote")):
        k = f"success_gain_vs_{key}"
        if k in ratios:
            rt.add_row(f"success vs {label} (pts)", f"{ratios[k] * 100:+.1f} {_ci_text(ratios.get(k + '_ci'), _signed_pct)}",
                       "")
    for key, label in (("handoff", "handoff"), ("round_robin", "round-robin")):
        k = f"latency_reduction_vs_{key}"
        rt.add_row(f"latency reduction vs {label} (per conversation)",
                   f"{_pct(ratios.get(k))} {_ci_text(ratios.get(k + '_ci'), _bare_pct)}".strip(),
                   _pct(paper["latency_reduction"], 0))
    for key, label in (("handoff", "handoff"), ("round_robin", "round-robin")):
        k = f"rouge_l_gain_vs_{key}"
        rt.add_row(f"ROUGE-L gain vs {label}",
                   f"{_pct(ratios.get(k), sign=True)} {_ci_text(ratios.get(k + '_ci'), _signed_pct)}".strip(),
                   _pct(paper["rouge_l_gain"], 0, sign=True))
    rapo = systems.get("rapo") or {}
    v, ci = fmt_rate(rapo, "success_rate")
    rt.add_row("success rate (no context loss)", f"{v} {ci}".strip(), _pct(paper["success_rate"], 0))
    console.print(rt)

    checks = targets(results)
    met = sum(t["met"] for t in checks)
    missed = [t["name"] for t in checks if not t["met"]]
    console.print(f"targets met: [bold]{met}/{len(checks)}[/]" + (f"; not met: {', '.join(missed)}" if missed else ""))

    for prof, block in (results.get("sensitivity") or {}).items():
        console.print(_sensitivity_line(prof, block))


def _sensitivity_line(prof: str, block: dict[str, Any]) -> str:
    systems = block.get("systems") or {}
    parts = [f"{n} {_pct(s.get('success_rate'))}/{_num(s.get('latency_mean_s'), _digits(s.get('latency_mean_s')))}s"
             for n, s in ((n, systems[n]) for n in _ordered(systems))]
    r = block.get("ratios") or {}
    tail = ""
    if _finite(r.get("latency_reduction_vs_handoff")):
        tail = (f"; rapo latency {_pct(-r['latency_reduction_vs_handoff'], sign=True)} vs handoff, "
                f"ROUGE-L {_pct(r.get('rouge_l_gain_vs_handoff'), sign=True)}")
    return f"[bold]sensitivity {prof}[/]: success/latency per conv: " + ", ".join(parts) + tail


# -- Markdown ------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _vc(pair: tuple[str, str]) -> str:
    return f"{pair[0]} {pair[1]}".strip()


def _md_config(cfg: dict[str, Any]) -> str:
    keys = ["conversations", "seed", "transitions", "systems", "profile", "sensitivity",
            "sensitivity_conversations", "clock", "time_scale", "backend", "base_url", "model", "team",
            "n_boot", "workers", "elapsed_s", "rapo_version"]
    rows = []
    for k in [*keys, *(k for k in cfg if k not in keys)]:
        if k not in cfg or cfg[k] is None:
            continue
        v = cfg[k]
        if k == "transitions" and isinstance(v, (list, tuple)) and len(v) == 2:
            v = f"{v[0]}-{v[1]}"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) or "(none)"
        rows.append([k, f"`{v}`"])
    return _md_table(["setting", "value"], rows, "ll")


def _md_main(systems: dict[str, Any]) -> str:
    header = ["system", "success", "context loss", "accuracy", "ROUGE-L", "latency/conv (s)", "p95/conv (s)",
              "latency/turn (s)", "p95/turn (s)", "question turns' latency/conv (s)", "prompt tok/turn",
              "output tok/turn", "calls/turn", "calls/question", "conversations", "questions", "loss events"]
    rows = []
    for n in _ordered(systems):
        s = systems[n]
        rows.append([
            f"**{n}**", _vc(fmt_rate(s, "success_rate")), _vc(fmt_rate(s, "context_loss_rate")),
            _vc(fmt_rate(s, "accuracy")), _vc(fmt_value(s, "rouge_l", 3)),
            _vc(fmt_value(s, "latency_mean_s", _digits(s.get("latency_mean_s")))),
            _num(s.get("latency_p95_s"), _digits(s.get("latency_p95_s"))),
            _vc(fmt_value(s, "latency_turn_mean_s", _digits(s.get("latency_turn_mean_s")))),
            _num(s.get("latency_turn_p95_s"), _digits(s.get("latency_turn_p95_s"))),
            _vc(fmt_value(s, "latency_question_turns_mean_s", _digits(s.get("latency_question_turns_mean_s")))),
            _vc(fmt_value(s, "prompt_tokens_per_turn", 0)), _vc(fmt_value(s, "output_tokens_per_turn", 0)),
            _vc(fmt_value(s, "calls_per_turn", 2)), _vc(fmt_value(s, "calls_per_question", 2)),
            str(s.get("conversations", "n/a")),
            str(s.get("questions", "n/a")), str(s.get("context_loss_events", "n/a")),
        ])
    return _md_table(header, rows)


def _md_ratios(ratios: dict[str, Any], systems: dict[str, Any], paper: dict[str, float]) -> str:
    rows = []
    for key, label in VERSUS:
        for stem, what, paper_v, f, cf in (
            ("question_latency_reduction", "question-turn latency reduction", "", _pct, _bare_pct),
            ("calls_per_question", "calls per question, as a share of", "", _pct, _bare_pct),
            ("latency_reduction", "latency reduction per conversation", _pct(paper["latency_reduction"], 0), _pct,
             _bare_pct),
            ("rouge_l_gain", "ROUGE-L gain", _pct(paper["rouge_l_gain"], 0, sign=True),
             lambda x: _pct(x, sign=True), _signed_pct),
            ("success_gain", "success-rate difference (pts)", "",
             lambda x: f"{x * 100:+.1f}" if _finite(x) else "n/a", _signed_pct),
        ):
            k = f"{stem}_vs_{key}"
            if k not in ratios:
                continue
            rows.append([f"{what} vs {label}", f"{f(ratios[k])} {_ci_text(ratios.get(k + '_ci'), cf)}".strip(),
                         paper_v if not key.startswith("oracle") else ""])
    if "latency_vs_oracle" in ratios:
        rows.append(["latency / oracle latency", f"{_num(ratios['latency_vs_oracle'])}x", ""])
    sr = systems.get("rapo")
    if sr:
        rows.append(["success rate (no context loss)", _vc(fmt_rate(sr, "success_rate")),
                     _pct(paper["success_rate"], 0)])
    if not rows:
        return "_No ratios: the run lacks rapo or both baselines._"
    return _md_table(["measure (rapo)", "value [95% paired-bootstrap CI]", "paper"], rows, "lrr")


def strongest_baseline(systems: dict[str, Any]) -> str | None:
    """The baseline with the highest success rate in this run (rapo is judged against it)."""
    present = [b for b in BASELINES if b in systems and _finite(systems[b].get("success_rate"))]
    return max(present, key=lambda b: systems[b]["success_rate"]) if present else None


def _md_fair(results: dict[str, Any]) -> str:
    """rapo at the team's settings beside the strongest baseline and the ceiling, question turns first."""
    systems = results.get("systems") or {}
    ratios = results.get("ratios") or {}
    best = strongest_baseline(systems)
    names = [n for n in dict.fromkeys(["rapo", best, "handoff-vote", "handoff", "oracle-vote"]) if n in systems]
    if "rapo" not in systems or len(names) < 2:
        return "_The run lacks rapo or every baseline._"
    rows = []
    for n in names:
        s = systems[n]
        rows.append([n + (" (strongest baseline)" if n == best else ""), _vc(fmt_rate(s, "success_rate")),
                     _vc(fmt_rate(s, "context_loss_rate")),
                     _vc(fmt_value(s, "latency_question_turns_mean_s", _digits(s.get("latency_question_turns_mean_s")))),
                     _vc(fmt_value(s, "calls_per_question", 2)),
                     _vc(fmt_value(s, "latency_mean_s", _digits(s.get("latency_mean_s"))))])
    text = [_md_table(["system", "success", "context loss", "question turns' latency/conv (s)", "calls/question",
                       "latency/conv, all turns (s)"], rows)]
    if best:
        key = best.replace("-", "_")
        pts = ratios.get(f"success_gain_vs_{key}")
        q = ratios.get(f"question_latency_reduction_vs_{key}")
        c = ratios.get(f"calls_per_question_vs_{key}")
        if _finite(pts) and _finite(q) and _finite(c):
            text.append(f"rapo against {best}: success {pts * 100:+.1f} points "
                        f"{_ci_text(ratios.get(f'success_gain_vs_{key}_ci'), _signed_pct)}, question-turn latency "
                        f"{_pct(abs(q))} {'lower' if q >= 0 else 'higher'} "
                        f"{_ci_text(_lower_ci(ratios.get(f'question_latency_reduction_vs_{key}_ci'), q), _bare_pct)}, "
                        f"{_pct(c)} of its calls per question.")
    text.append("Statement turns (turns that only state facts) cost rapo no model call by default "
                "(`prompts.statement_turns: ledger`), while the baselines send every turn to a model, as their "
                "frameworks do; the per-conversation latency includes that difference, the question-turn "
                "latency does not, and is the like-for-like figure.")
    return "\n\n".join(text)


def _md_targets(checks: list[dict[str, Any]]) -> str:
    rows = [[t["name"], t["target"], t["shown"], "met" if t["met"] else "**not met**"] for t in checks]
    return _md_table(["target", "needs", "measured", "verdict"], rows, "llrl")


def _md_breakdown(systems: dict[str, Any], field: str, cols: list[tuple[str, str, str]]) -> str:
    """One row per group (scenario or reasoning type), one column per system and metric."""
    names = [n for n in _ordered(systems) if systems[n].get(field)]
    groups = sorted({g for n in names for g in systems[n][field]})
    if not groups:
        return "_none in this run_"
    header = ["group"] + [f"{n} {label}" for n in names for _, label, _ in cols]
    rows = []
    for g in groups:
        row = [g]
        for n in names:
            cell = systems[n][field].get(g, {})
            for key, _, kind in cols:
                v = cell.get(key)
                row.append(_pct(v) if kind == "pct" else _num(v, _digits(v)) if kind == "num" else str(v or "n/a"))
        rows.append(row)
    return _md_table(header, rows)


def _md_sensitivity(sens: dict[str, Any]) -> str:
    if not sens:
        return "_No sensitivity profiles in this run._"
    rows = []
    for prof, block in sens.items():
        r = block.get("ratios") or {}
        for n in _ordered(block.get("systems") or {}):
            s = block["systems"][n]
            extra = ["", ""]
            if n == "rapo":
                pts = lambda k: f"{r[k] * 100:+.1f}" if _finite(r.get(k)) else "n/a"  # noqa: E731
                extra = [f"{pts('success_gain_vs_handoff')} / {pts('success_gain_vs_handoff_vote')}",
                         f"{_pct(r.get('question_latency_reduction_vs_handoff'))} / "
                         f"{_pct(r.get('question_latency_reduction_vs_handoff_vote'))}"]
            rows.append([prof, n, _pct(s.get("success_rate")), _pct(s.get("context_loss_rate")),
                         _pct(s.get("accuracy")), _num(s.get("rouge_l"), 3),
                         _num(s.get("latency_mean_s"), _digits(s.get("latency_mean_s"))),
                         _num(s.get("latency_question_turns_mean_s"), _digits(s.get("latency_question_turns_mean_s"))),
                         _num(s.get("prompt_tokens_per_turn"), 0), _num(s.get("calls_per_question"), 2), *extra])
    return _md_table(["profile", "system", "success", "context loss", "accuracy", "ROUGE-L", "latency/conv (s)",
                      "question turns' latency/conv (s)", "prompt tok/turn", "calls/question",
                      "rapo success vs handoff / handoff-vote (pts)",
                      "rapo question-turn latency reduction vs handoff / handoff-vote"], rows, "llrrrrrrrrrr")


# -- plots ---------------------------------------------------------------------------------------


def _figure(ncols: int = 1) -> tuple["Figure", list["Axes"]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")  # no pyplot: no global backend switch
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _style(i: int) -> dict[str, Any]:
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
               "#bcbd22"]
    dashes = ["-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1))]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
    return {"color": colours[i % len(colours)], "linestyle": dashes[i % len(dashes)], "marker": markers[i % len(markers)]}


def binned_curve(by_t: dict[str, Any], key: str, width: int = BIN) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): `key` averaged over bins of `width` transitions (1-5, 6-10, ...), weighted by conversations.

    x is each bin's conversation-weighted mean T, so a point sits where its data are.
    """
    items = [(int(t), row.get(key), row.get("conversations", 1)) for t, row in by_t.items() if _finite(row.get(key))]
    if not items:
        return np.zeros(0), np.zeros(0)
    t, v, n = (np.asarray(c, dtype=np.float64) for c in zip(*items))
    b = ((t - 1) // width).astype(np.int64)
    w = np.bincount(b, weights=n)
    keep = w > 0
    x = np.bincount(b, weights=t * n)[keep] / w[keep]
    y = np.bincount(b, weights=v * n)[keep] / w[keep]
    return x, y


def _plot_transitions(systems: dict[str, Any], key: str, ylabel: str, title: str, path: Path,
                      percent: bool) -> Path:
    fig, (ax,) = _figure()
    for i, n in enumerate(_ordered(systems)):
        x, y = binned_curve(systems[n].get("by_transitions") or {}, key)
        if x.size:
            ax.plot(x, y * 100 if percent else y, label=n, linewidth=1.6, markersize=5, **_style(i))
    ax.axvline(PAPER_KNEE, color="black", linestyle=":", linewidth=1.2,
               label=f"paper: degrades past {PAPER_KNEE} transitions")
    ax.set_xlabel(f"agent transitions per conversation (binned in groups of {BIN}; point at bin mean)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if percent:
        ax.set_ylim(-2, 102)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.savefig(path, dpi=DPI)
    return path


def _bars(ax: "Axes", names: list[str], systems: dict[str, Any], key: str, scale: float, ylabel: str) -> None:
    vals = np.array([systems[n].get(key) if _finite(systems[n].get(key)) else np.nan for n in names]) * scale
    cis = np.array([systems[n].get(f"{key}_ci") if _ci_text(systems[n].get(f"{key}_ci"), str) else [np.nan, np.nan]
                    for n in names], dtype=np.float64).reshape(-1, 2) * scale
    err = np.vstack([vals - cis[:, 0], cis[:, 1] - vals])
    err = np.where(np.isfinite(err), np.maximum(err, 0.0), 0.0)
    colours = ["#2ca02c" if n == "rapo" else "#7f7f7f" if n in BASELINES else "#1f77b4" if n in ORACLES
               else "#98df8a" for n in names]
    xs = np.arange(len(names))
    ax.bar(xs, np.nan_to_num(vals), yerr=err, color=colours, capsize=3, edgecolor="black", linewidth=0.5)
    ax.set_xticks(xs, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def _plot_ablations(systems: dict[str, Any], path: Path) -> Path:
    names = [n for n in _ordered(systems) if n == "rapo" or n.startswith("rapo-")]
    names += [n for n in _ordered(systems) if n not in names]  # baselines and oracle for reference
    fig, (a1, a2) = _figure(2)
    _bars(a1, names, systems, "success_rate", 100.0, "success rate (%)")
    a1.set_title("Success rate (95% CI)")
    a1.set_ylim(0, 105)
    _bars(a2, names, systems, "latency_mean_s", 1.0, "mean latency per conversation (s)")
    a2.set_title("Mean latency per conversation (95% CI)")
    fig.suptitle("rapo, its ablations, and the baselines and oracle for reference")
    fig.savefig(path, dpi=DPI)
    return path


def _plot_sensitivity(sens: dict[str, Any], path: Path) -> Path:
    profiles = list(sens)
    names = _ordered({n for p in profiles for n in (sens[p].get("systems") or {})})
    fig, (a1, a2) = _figure(2)
    width = 0.8 / max(len(names), 1)
    xs = np.arange(len(profiles))
    for ax, key, scale, ylabel, title in ((a1, "success_rate", 100.0, "success rate (%)", "Success rate"),
                                          (a2, "latency_mean_s", 1.0, "mean latency per conversation (s)",
                                           "Mean latency per conversation")):
        for i, n in enumerate(names):
            vals = np.array([(sens[p].get("systems") or {}).get(n, {}).get(key, np.nan) for p in profiles],
                            dtype=np.float64) * scale
            ax.bar(xs + (i - (len(names) - 1) / 2) * width, np.nan_to_num(vals), width, label=n,
                   color=_style(i)["color"], edgecolor="black", linewidth=0.5)
        ax.set_xticks(xs, profiles, rotation=20, ha="right", fontsize=8)
        ax.set_xlabel("simulated-model profile")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    a1.set_ylim(0, 105)
    fig.legend(*a1.get_legend_handles_labels(), loc="outside lower center", ncols=max(len(names), 1), fontsize=8,
               frameon=False)
    fig.suptitle("Sensitivity to the simulated model's assumptions")
    fig.savefig(path, dpi=DPI)
    return path


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """The PNGs the report embeds; a plot whose data the run lacks is skipped, not drawn empty."""
    out_dir.mkdir(parents=True, exist_ok=True)
    systems = results.get("systems") or {}
    sens = results.get("sensitivity") or {}
    written: list[Path] = []
    if any(s.get("by_transitions") for s in systems.values()):
        written.append(_plot_transitions(systems, "success_rate", "success rate (%)",
                                         "Success rate vs agent transitions", out_dir / "success_vs_transitions.png",
                                         percent=True))
        written.append(_plot_transitions(systems, "latency_mean_s", "mean latency per conversation (s)",
                                         "Latency vs agent transitions", out_dir / "latency_vs_transitions.png",
                                         percent=False))
    if systems:
        written.append(_plot_ablations(systems, out_dir / "ablations.png"))
    if any(b.get("systems") for b in sens.values()):
        written.append(_plot_sensitivity(sens, out_dir / "sensitivity.png"))
    return written


# -- report --------------------------------------------------------------------------------------


def render_markdown(results: dict[str, Any], images: Iterable[str] = ()) -> str:
    systems = results.get("systems") or {}
    ratios = results.get("ratios") or {}
    cfg = results.get("config") or {}
    images = set(images)
    captions = {
        "success_vs_transitions.png": "Success rate against the number of agent transitions",
        "latency_vs_transitions.png": "Mean latency per conversation against the number of agent transitions",
        "ablations.png": "Ablations: success rate and mean latency, with 95% CIs",
        "sensitivity.png": "Sensitivity to the simulated model's profile",
    }
    parts = [
        "# rapo benchmark report",
        "Every system met the same generated conversations and the same model; only the oracle was given the "
        "truth. Intervals are 95% bootstrap intervals over conversations; ratios use a paired bootstrap (the "
        "same resampled conversations for both systems). Latency is model time on each turn's critical path "
        "plus the system's own measured work, summed over a conversation's turns.",
        "## The fair comparison",
        "rapo at the team file's settings against the strongest baseline (the one with the highest success), "
        "the equal-budget `handoff-vote` (the supervisor's pick and the next agents by declared capability "
        "vote as rapo's consensus does) and the ceiling `oracle-vote` (exactly the facts needed, the truly best "
        "agents voting).",
        _md_fair(results),
        "## Configuration", _md_config(cfg),
        "## Systems", _md_main(systems) if systems else "_No systems in this run._",
        "## Headline ratios vs the paper",
        "The paper's figures come from its own setup and are shown for orientation, not as a like-for-like "
        "comparison.",
        _md_ratios(ratios, systems, _paper(results)),
        "## Targets check", _md_targets(targets(results)),
    ]
    for name in ("success_vs_transitions.png", "latency_vs_transitions.png", "ablations.png"):
        if name in images:
            parts.append(f"![{captions[name]}]({name})")
    parts += [
        "## By scenario",
        _md_breakdown(systems, "by_scenario", [("success_rate", "success", "pct"),
                                               ("latency_mean_s", "latency (s)", "num")]),
        "## By reasoning type",
        _md_breakdown(systems, "by_type", [("accuracy", "accuracy", "pct"),
                                           ("context_loss_rate", "context loss", "pct")]),
        "## Sensitivity to the simulated model",
        _md_sensitivity(results.get("sensitivity") or {}),
    ]
    if "sensitivity.png" in images:
        parts.append(f"![{captions['sensitivity.png']}](sensitivity.png)")
    return "\n\n".join(parts) + "\n"


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.md and its PNG plots into out_dir; returns the paths written (report.md first)."""
    out_dir = Path(out_dir)
    plots = write_plots(results, out_dir)
    md = out_dir / "report.md"
    md.write_text(render_markdown(results, [p.name for p in plots]))
    return [md, *plots]
