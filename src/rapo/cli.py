"""The `rapo` command: run a team on a conversation, run the benchmark, serve the simulated model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from rapo.types import RapoError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _read_turns(turns: list[str], turns_file: Path | None) -> tuple[list[str], list[bool]]:
    texts, critical = list(turns), [False] * len(turns)
    if turns_file is not None:
        if not turns_file.is_file():
            fail(f"turns file {turns_file} not found")
        for n, line in enumerate(turns_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                    texts.append(str(obj["text"]))
                    critical.append(bool(obj.get("critical", False)))
                except (json.JSONDecodeError, KeyError, TypeError):
                    fail(f"{turns_file}:{n}: a JSON line needs a 'text' field, e.g. {{\"text\": \"...\"}}")
            else:
                texts.append(line.strip())
                critical.append(False)
    if not texts:
        fail("no turns given: pass the text as an argument or --turns FILE (one turn per line)")
    return texts, critical


@app.command()
def run(
    turns: list[str] = typer.Argument(None, help="The user's turns, in order."),
    team: Path = typer.Option(..., "--team", "-t", help="Team YAML file (see examples/)."),
    turns_file: Optional[Path] = typer.Option(None, "--turns", help="File of turns: one per line, or JSON lines."),
    backend: Optional[str] = typer.Option(None, help="Backend for every agent: sim, openai, scripted."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint (openai backend)."),
    api_key: Optional[str] = typer.Option(None, help="API key (else OPENAI_API_KEY)."),
    model: Optional[str] = typer.Option(None, help="Model name for every agent."),
    trace: Optional[Path] = typer.Option(None, help="Write one JSON record per turn to this file."),
    critical: bool = typer.Option(False, help="Mark every turn critical (consensus on each)."),
) -> None:
    """Run a conversation through a team and print the answers."""
    from rapo.orchestrator import Orchestrator
    from rapo.team import load_team

    texts, crit = _read_turns(turns or [], turns_file)
    try:
        spec = load_team(team)
        if backend:
            options: dict[str, Any] = {}
            if base_url:
                options["base_url"] = base_url
            if api_key:
                options["api_key"] = api_key
            spec = spec.with_backend(backend, **options)
        if model:
            spec = spec.model_copy(update={"agents": [a.model_copy(update={"model": model}) for a in spec.agents]})
        orch = Orchestrator(spec)
        result = orch.run(texts, critical=[c or critical for c in crit])
    except RapoError as err:
        fail(str(err))
        return
    for rec in result.records:
        who = rec.agent or "rapo"
        console.print(f"[bold cyan]user[/] {rec.text}")
        console.print(f"[bold green]{who}[/] {rec.answer}\n")
    if trace is not None:
        with trace.open("w") as fh:
            for rec in result.records:
                fh.write(rec.model_dump_json(exclude_none=False) + "\n")
        console.print(f"[dim]trace: {len(result.records)} records -> {trace}[/]")
    if result.error:
        fail(f"{result.error}\n(the {len(result.records)} turns done are above"
             f"{' and in the trace' if trace else ''})", code=1)


def _parse_range(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        fail(f"--transitions {text!r}: write A-B with whole numbers, e.g. 1-50 or 10-10")
    return a, b


@app.command()
def bench(
    conversations: int = typer.Option(1000, min=1, help="Conversations to generate (the paper: 1,000)."),
    seed: int = typer.Option(0, help="Seed of the generator and the simulated model."),
    transitions: str = typer.Option("1-50", help="Agent transitions per conversation, A-B, spread evenly."),
    systems: Optional[str] = typer.Option(None, help="Comma-separated systems (default: all but the peers; add langgraph, autogen, openai-agents)."),
    profile: str = typer.Option("default", help="Simulated-model profile for the main table."),
    sensitivity: str = typer.Option("no-penalty,small-model", help="Extra profiles for the sensitivity table ('' for none; also: api)."),
    sensitivity_conversations: int = typer.Option(60, min=1, help="Conversations per sensitivity profile (first N of the same set)."),
    clock: str = typer.Option("virtual", help="virtual (computed latency) or real (awaits it, scaled)."),
    time_scale: float = typer.Option(0.001, min=1e-6, help="Real clock: seconds slept per simulated second."),
    backend: str = typer.Option("sim", help="sim (in process) or openai (any OpenAI-compatible endpoint)."),
    base_url: Optional[str] = typer.Option(None, help="Endpoint for --backend openai."),
    api_key: Optional[str] = typer.Option(None, help="API key for --backend openai (else OPENAI_API_KEY)."),
    model: Optional[str] = typer.Option(None, help="Model for every agent; 'sim' keeps the team's sim-* names."),
    team: Optional[Path] = typer.Option(None, help="Team file (default: the packaged benchmark team)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: CPU count)."),
    concurrency: int = typer.Option(64, min=1, help="Conversations in flight at once against a real endpoint or the real clock (1: in order, as the in-process run)."),
    out: Optional[Path] = typer.Option(None, help="Write results.json, report.md and PNG plots here."),
    store: Optional[str] = typer.Option(None, help="Checkpoint every transition to this store (sqlite:///path.db or a path)."),
    run_id: Optional[str] = typer.Option(None, help="Name of the run in the store (default: generated)."),
) -> None:
    """Run the paper's experiment: every system on the same generated conversations and model."""
    from rapo.bench.runner import ALL_SYSTEMS, BenchConfig, run_benchmark

    if clock not in ("virtual", "real"):
        fail(f"--clock {clock!r}: use virtual or real")
    if backend not in ("sim", "openai"):
        fail(f"--backend {backend!r}: use sim or openai")
    chosen = [s.strip() for s in systems.split(",") if s.strip()] if systems else list(ALL_SYSTEMS)
    try:
        cfg = BenchConfig(
            conversations=conversations, seed=seed, transitions=_parse_range(transitions), systems=chosen,
            profile=profile, sensitivity=[p.strip() for p in sensitivity.split(",") if p.strip()],
            sensitivity_conversations=sensitivity_conversations, clock=clock, time_scale=time_scale,
            backend=backend, base_url=base_url, api_key=api_key, model=model, concurrency=concurrency,
            team=str(team) if team else None, **({"workers": workers} if workers else {}),
            store=store, run_id=(run_id or _new_run_id()) if store else None,
        )
        if cfg.store:
            console.print(f"[dim]run id {cfg.run_id}: after an interruption, finish it with "
                          f"`rapo resume {cfg.run_id} --store {cfg.store}`[/]")
        if backend == "openai":
            cfg.sensitivity = []  # profiles are the simulator's; a real endpoint has one behaviour
        from rapo.backends.sim import PROFILES

        for p in [cfg.profile, *cfg.sensitivity]:
            if p not in PROFILES:
                fail(f"unknown profile {p!r}; profiles: {', '.join(PROFILES)}")
        results = run_benchmark(cfg)
    except RapoError as err:
        fail(str(err))
        return
    _show(results, out)


def _new_run_id() -> str:
    import time
    import uuid

    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _show(results: dict[str, Any], out: Path | None) -> None:
    from rapo.bench.report import print_summary, write_report
    from rapo.bench.runner import write_results

    print_summary(results, console)
    if out is not None:
        path = write_results(results, out)
        written = write_report(results, out)
        console.print(f"[dim]wrote {path} and {', '.join(p.name for p in written)} in {out}[/]")


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to finish (printed when it started)."),
    store: str = typer.Option(..., help="The store it was checkpointed to (sqlite:///path.db or a path)."),
    out: Optional[Path] = typer.Option(None, help="Write results.json, report.md and PNG plots here."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: CPU count)."),
) -> None:
    """Finish an interrupted `rapo bench --store` run: done conversations are kept, the rest continue."""
    from rapo.bench.runner import resume_config, run_benchmark

    try:
        cfg = resume_config(store, run_id, **({"workers": workers} if workers else {}))
        results = run_benchmark(cfg)
    except RapoError as err:
        fail(str(err))
        return
    _show(results, out)


@app.command("sim-server")
def sim_server(
    port: int = typer.Option(8100, min=1, max=65535),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; loopback by default."),
    profile: str = typer.Option("default"),
    seed: int = typer.Option(0),
) -> None:
    """Serve the simulated model as an OpenAI-compatible endpoint (/v1/chat/completions)."""
    try:
        import uvicorn

        from rapo.bench.simserver import create_app
    except ImportError:
        fail("the simulated-model server needs the serve extra: pip install 'rapo[serve]'")
        return
    uvicorn.run(create_app(profile=profile, seed=seed), host=host, port=port, log_level="warning")


@app.command("serve")
def serve_cmd(
    team: Path = typer.Option(..., "--team", "-t", help="Team YAML file."),
    backend: Optional[str] = typer.Option(None, help="Backend for every agent: sim, openai, scripted."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs --token."),
    port: int = typer.Option(8000, min=1, max=65535),
    token: Optional[str] = typer.Option(None, envvar="RAPO_TOKEN", help="Bearer token (or RAPO_TOKEN)."),
) -> None:
    """Serve a team over HTTP: REST, server-sent events, /v1/chat/completions and the trace viewer."""
    try:
        from rapo.server.serve import serve
    except ImportError:
        fail("the HTTP service needs the serve extra: pip install 'rapo[serve]'")
        return
    try:
        serve(team, backend, host, port, token)
    except RapoError as err:
        fail(str(err))


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as v

    console.print(v("rapo"))


def main() -> None:  # pragma: no cover
    try:
        app()
    except RapoError as err:
        err_console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
