"""Runs the benchmark: every system on the same conversations and the same model, scored the same way.

A job is one system under one profile; where jobs run is the executor's business (`rapo.executor`:
forked processes on this machine by default, or shards on a Ray cluster).
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from pydantic import BaseModel, Field

from rapo.bench.metrics import FIELDS, TurnScore, as_rows, bootstrap_index, ratios, score_turn, summarise
from rapo.bench.systems import ABLATIONS, Handoff, Oracle, Rapo, RoundRobin, TimedBackend
from rapo.checkpoint import counts_snapshot
from rapo.executor import Executor, Job, make_executor
from rapo.team import TeamSpec, bench_team, load_team
from rapo.types import RapoError

BASELINES = ["round-robin", "round-robin-vote", "handoff", "handoff-vote"]
ORACLES = ["oracle", "oracle-vote"]
ALL_SYSTEMS = [*BASELINES, *ABLATIONS, *ORACLES]
SENSITIVITY_SYSTEMS = ["round-robin", "handoff", "handoff-vote", "rapo", "oracle", "oracle-vote"]
PAPER = {"latency_reduction": 0.42, "rouge_l_gain": 0.23, "success_rate": 0.89}


class BenchConfig(BaseModel):
    conversations: int = Field(1000, ge=1)
    seed: int = 0
    transitions: tuple[int, int] = (1, 50)
    systems: list[str] = Field(default_factory=lambda: list(ALL_SYSTEMS))
    profile: str = "default"
    language: Literal["controlled", "natural"] = "controlled"  # the conversations' wording (same truth)
    sensitivity: list[str] = Field(default_factory=lambda: ["no-penalty", "small-model", "correlated"])
    sensitivity_conversations: int | None = 60  # None: same as conversations
    clock: Literal["virtual", "real"] = "virtual"
    time_scale: float = Field(0.001, gt=0)
    concurrency: int = Field(64, ge=1)  # conversations in flight at once on the real clock
    # --backend openai: requests in flight at once (default: `concurrency`; a llama.cpp server runs 1),
    # seconds per request once sent (default 60), and a cap on replies (default: none)
    max_concurrency: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, ge=1)
    backend: Literal["sim", "openai"] = "sim"
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    team: str | None = None  # path; default: the packaged benchmark team
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    n_boot: int = Field(1000, ge=10)
    store: str | None = None  # checkpoint every transition here (sqlite:///path.db), to resume after a crash
    run_id: str | None = None
    executor: Literal["local", "ray"] = "local"  # where jobs run: forked processes here, or a Ray cluster
    address: str | None = None  # Ray: "auto", "ray://host:10001" or host:port; None starts a local Ray
    learning: bool = True  # rapo's capability matrix learns across conversations (off: each is independent)
    faults: float = Field(0.0, ge=0.0, lt=1.0)  # share of model calls failed on purpose (rapo.bench.faults)
    fault_seed: int = 0

    def validate_systems(self) -> None:
        from rapo.bench.peers.common import PEER_NAMES, peer_available

        unknown = [s for s in self.systems if s not in ALL_SYSTEMS and s not in PEER_NAMES]
        if unknown:
            raise RapoError(f"unknown systems {unknown}; choose from: {', '.join([*ALL_SYSTEMS, *PEER_NAMES])}")
        missing = [why for s in self.systems if s in PEER_NAMES and (why := peer_available(s))]
        if missing:
            raise RapoError("; ".join(missing))
        lo, hi = self.transitions
        if not 1 <= lo <= hi:
            raise RapoError(f"--transitions {lo}-{hi}: need 1 <= A <= B, e.g. 1-50")
        if self.backend == "openai" and not self.base_url and not os.environ.get("OPENAI_BASE_URL"):
            if not (self.api_key or os.environ.get("OPENAI_API_KEY")):
                raise RapoError("--backend openai needs --base-url URL (or OPENAI_BASE_URL) or an API key")


def load_bench_team(cfg: BenchConfig) -> TeamSpec:
    team = load_team(cfg.team) if cfg.team else bench_team()
    if cfg.model and cfg.model != "sim":  # "sim" keeps the per-agent sim-* names, so skills match in-process
        team = team.model_copy(update={"agents": [a.model_copy(update={"model": cfg.model}) for a in team.agents]})
    if not cfg.learning:
        team = team.model_copy(update={"routing": team.routing.model_copy(update={"learn": False})})
    return team


def _make_backend(cfg: BenchConfig, profile: str) -> Any:
    """The model every system of a job calls; with --faults, behind the same fault injection and retries."""
    backend: Any
    if cfg.backend == "sim":
        from rapo.backends.sim import SimBackend

        backend = SimBackend(profile=profile, seed=cfg.seed, clock=cfg.clock, time_scale=cfg.time_scale)
    else:
        from rapo.backends.openai_compat import OpenAIBackend

        backend = OpenAIBackend(base_url=cfg.base_url, api_key=cfg.api_key,
                                max_concurrency=cfg.max_concurrency or cfg.concurrency,
                                max_tokens=cfg.max_tokens, **({"timeout_s": cfg.timeout_s} if cfg.timeout_s else {}))
    if cfg.faults <= 0:
        return backend
    from rapo.bench.faults import FaultInjected

    scale = 1.0 if cfg.backend != "sim" else (0.0 if cfg.clock == "virtual" else cfg.time_scale)
    return FaultInjected(backend, cfg.faults, cfg.fault_seed, sleep_scale=scale)


class JobRecords(list):  # type: ignore[type-arg]  # list[TurnScore]
    """A job's per-turn records, carrying its fault counts (None without --faults): still a list, so
    every executor hands a job's result back as before."""

    faults: dict[str, Any] | None = None


def _skill_table(profile: str, seed: int) -> Callable[[str, str], float]:
    from rapo.backends.sim import SimBackend

    sim = SimBackend(profile=profile, seed=seed)
    return sim.skill


def make_system(name: str, team: TeamSpec, backend: TimedBackend, cfg: BenchConfig, profile: str) -> Any:
    if name in ("round-robin", "round-robin-vote"):
        return RoundRobin(team, backend, vote=name.endswith("-vote"))
    if name in ("handoff", "handoff-vote"):
        return Handoff(team, backend, vote=name.endswith("-vote"))
    if name in ORACLES:
        return Oracle(team, backend, _skill_table(profile, cfg.seed), vote=name.endswith("-vote"))
    from rapo.bench.peers.common import PEER_NAMES, FakeModel, FakeModelConfig, make_peer

    if name in PEER_NAMES:  # the framework's own runner, its chat model wrapping the same simulated model
        model = FakeModel(FakeModelConfig(mode="sim"), sim=backend, agent_names=[a.name for a in team.agents])
        return make_peer(name, team, model)
    return Rapo(name, team, backend)


class _JobCheckpoints:
    """One job's checkpoints: finished conversations' scores, each running conversation's session
    after its last transition, and the system's team state, written together after every transition."""

    def __init__(self, store: Any, run_id: str, system: str, profile: str) -> None:
        self.store, self.run_id, self.prefix = store, run_id, f"job/{system}/{profile}"

    def finished(self) -> dict[str, list[TurnScore]]:
        out = {}
        for key in self.store.keys(self.run_id, f"{self.prefix}/done/"):
            doc = self.store.get(self.run_id, key) or {}
            out[key.rsplit("/", 1)[1]] = [TurnScore(*row) for row in doc.get("rows", [])]
        return out

    def team(self) -> dict[str, Any] | None:
        return self.store.get(self.run_id, f"{self.prefix}/team")

    def running(self, conv_id: str) -> dict[str, Any] | None:
        doc = self.store.get(self.run_id, f"{self.prefix}/running/{conv_id}")
        return doc if doc and "session" in doc else None

    def save(self, conv_id: str, rows: list[TurnScore], session: Any, team: dict[str, Any] | None,
             done: bool, extra: dict[str, Any] | None = None) -> None:
        """`extra` goes with a finished conversation (a distributed shard's learned delta)."""
        docs = {f"{self.prefix}/running/{conv_id}":
                {"done": True} if done else {"session": session.snapshot(), "rows": as_rows(rows)}}
        if done:
            docs[f"{self.prefix}/done/{conv_id}"] = {"rows": as_rows(rows), **(extra or {})}
        if team is not None:
            docs[f"{self.prefix}/team"] = team
        self.store.put_many(self.run_id, docs)


async def _run_job(cfg: BenchConfig, system_name: str, profile: str, conversations: list[Any],
                   tick: Callable[[], None], link: Callable[[Any], Any] | None = None) -> list[TurnScore]:
    """`link(system)`, when given, connects the job's shard to the merged learned counts of a
    distributed run (`rapo.executor.ray_cluster`): then the team state is the hub's, not this job's."""
    team = load_bench_team(cfg)
    backend = TimedBackend(_make_backend(cfg, profile))
    system = make_system(system_name, team, backend, cfg, profile)
    shard = link(system) if link is not None else None
    records = JobRecords()
    store = None
    ckpt: _JobCheckpoints | None = None
    finished: dict[str, list[TurnScore]] = {}
    if cfg.store:
        from rapo.store import open_store

        store = open_store(cfg.store)
        ckpt = _JobCheckpoints(store, cfg.run_id or "run", system_name, profile)
        finished = ckpt.finished()
        saved_team = ckpt.team() if shard is None else None
        if saved_team is not None and hasattr(system, "load_team_state"):
            system.load_team_state(saved_team)
    team_state = getattr(system, "team_state", lambda: None) if shard is None else lambda: None

    async def one(conv: Any) -> list[TurnScore]:
        if conv.id in finished:  # done before the interruption: neither redone nor lost
            tick()
            if shard is not None:
                shard.done(conv.id, None)
            return finished[conv.id]
        if shard is not None:
            shard.begin()
        session = system.session(conv.id, truth=conv if system_name in ORACLES else None)
        out: list[TurnScore] = []
        running = ckpt.running(conv.id) if ckpt else None
        if running is not None:
            session.restore(running["session"])
            out = [TurnScore(*row) for row in running["rows"]]
        texts = conv.user_texts()
        learned = None  # what a shard's conversation taught the team, once it is finished
        for i in range(len(out), len(texts)):
            outcome = await session.step(texts[i])
            out.append(score_turn(system_name, conv, i, outcome))
            last = i == len(texts) - 1
            if shard is not None and last:
                learned = shard.delta()
            if ckpt is not None:  # a finished conversation keeps its delta, from which the hub is rebuilt
                extra = None if learned is None else {"delta": counts_snapshot(*learned)}
                ckpt.save(conv.id, out, session, team_state(), done=last, extra=extra)
        tick()
        if shard is not None:
            shard.done(conv.id, learned)
        return out

    try:
        if cfg.clock == "virtual" and cfg.backend == "sim":
            for conv in conversations:
                records.extend(await one(conv))
        else:
            sem = asyncio.Semaphore(cfg.concurrency)

            async def guarded(conv: Any) -> list[TurnScore]:
                async with sem:
                    return await one(conv)

            for chunk in await asyncio.gather(*(guarded(c) for c in conversations)):
                records.extend(chunk)
    finally:
        await backend.aclose()
        if store is not None:
            store.close()
    stats = getattr(backend.inner, "stats", None)
    records.faults = stats() if stats is not None else None
    return records


class BenchWork:
    """The benchmark as executor work: a job is one system under one profile over the first
    `job.conversations` conversations (`rapo.executor` runs it, here or sharded on Ray)."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg

    def prepare(self) -> None:
        conversations(self.cfg)  # generated once; forked workers inherit it

    def run(self, job: Job, tick: Callable[[], None]) -> list[TurnScore]:
        return asyncio.run(_run_job(self.cfg, job.system, job.profile, conversations(self.cfg)[:job.conversations],
                                    tick))

    def run_shard(self, job: Job, indices: list[int], link: Callable[[Any], Any]) -> list[TurnScore]:
        from rapo.bench.generator import generate

        cfg = self.cfg
        chosen = generate(cfg.conversations, seed=cfg.seed, transitions=cfg.transitions, indices=indices,
                          language=cfg.language)
        return asyncio.run(_run_job(cfg, job.system, job.profile, chosen, lambda: None, link=link))

    def learned(self, job: Job) -> tuple[list[str], list[Any]] | None:
        """What the job's finished conversations taught, from the store (a resumed run)."""
        if not self.cfg.store:
            return None
        from rapo.executor.learning import saved_deltas
        from rapo.store import open_store

        store = open_store(self.cfg.store)
        run_id = self.cfg.run_id or "run"
        try:
            prefix = f"job/{job.system}/{job.profile}/done/"
            docs = {k.rsplit("/", 1)[1]: store.get(run_id, k) or {} for k in store.keys(run_id, prefix)}
        finally:
            store.close()
        return saved_deltas(docs) if docs else None

    def combine(self, layout: list[list[int]], parts: dict[int, list[TurnScore]]) -> list[TurnScore]:
        """A job's turns in conversation order, as the local executor gives them (each shard's records
        come conversation by conversation, in its indices' order), with the shards' fault counts summed."""
        import itertools

        from rapo.bench.faults import total

        by_index: dict[int, list[TurnScore]] = {}
        for k, indices in enumerate(layout):
            groups = [list(g) for _, g in itertools.groupby(parts[k], key=lambda r: r.conv)]
            if len(groups) != len(indices):
                raise RapoError(f"shard {k} returned {len(groups)} conversations for {len(indices)}")
            by_index.update(zip(indices, groups))
        out = JobRecords()
        for i in sorted(by_index):
            out.extend(by_index[i])
        stats = [st for st in (getattr(p, "faults", None) for p in parts.values()) if st]
        if stats:
            out.faults = total(stats)
        return out


@lru_cache(maxsize=4)
def _generated(n: int, seed: int, transitions: tuple[int, int], language: str) -> list[Any]:
    from rapo.bench.generator import generate

    return generate(n, seed=seed, transitions=transitions, language=language)


def conversations(cfg: BenchConfig) -> list[Any]:
    """Generated once per process and shared by every job it runs (each takes a prefix)."""
    return _generated(cfg.conversations, cfg.seed, cfg.transitions, cfg.language)


# Rough relative CPU per conversation, measured on the default profile (rapo's first job also fills
# the process's caches): longest jobs first, so the workers finish together.
_COST = {"round-robin": 1.0, "round-robin-vote": 1.6, "handoff": 1.5, "handoff-vote": 2.2, "oracle": 0.5,
         "oracle-vote": 0.8, "rapo": 4.4, "rapo-no-context-vectors": 4.0, "rapo-no-consensus": 3.0}


def plan_jobs(cfg: BenchConfig) -> list[Job]:
    n_sens = min(cfg.sensitivity_conversations or cfg.conversations, cfg.conversations)
    jobs = [Job(s, cfg.profile, cfg.conversations) for s in cfg.systems]
    for prof in cfg.sensitivity:
        if prof != cfg.profile:
            jobs += [Job(s, prof, n_sens) for s in SENSITIVITY_SYSTEMS if s in cfg.systems]
    jobs.sort(key=lambda j: -j.conversations * _COST.get(j.system, 3.0))
    return jobs


def check_sim_server(cfg: BenchConfig) -> None:
    """A `rapo sim-server` behind --base-url must simulate this run's seed and profile, or its replies
    differ from the in-process run's for reasons that have nothing to do with HTTP. (The server's
    seed is its own, fixed when it starts; a request's `seed` field is only the sample index.)"""
    if cfg.backend != "openai" or not cfg.base_url:
        return
    root = cfg.base_url.rstrip("/").removesuffix("/v1")
    try:
        import httpx  # comes with the openai client

        info = httpx.get(f"{root}/health", timeout=2.0).json()
    except Exception:  # noqa: BLE001 - not a sim-server (or not up yet): nothing to check
        return
    if not isinstance(info, dict) or info.get("simulator") != "rapo-sim":
        return
    if info.get("seed") != cfg.seed or info.get("profile") != cfg.profile:
        raise RapoError(f"the sim-server at {cfg.base_url} simulates seed {info.get('seed')} and profile "
                        f"{info.get('profile')!r}, this run seed {cfg.seed} and profile {cfg.profile!r}: start it "
                        f"with `rapo sim-server --seed {cfg.seed} --profile {cfg.profile}`, or run with "
                        f"--seed {info.get('seed')} --profile {info.get('profile')}")


def run_benchmark(cfg: BenchConfig, *, progress: bool = True, executor: Executor | None = None) -> dict[str, Any]:
    """Run every job on the configured executor, then summarise. Returns the results.json object."""
    cfg.validate_systems()
    check_sim_server(cfg)
    if cfg.store:
        from rapo.store import open_store

        store = open_store(cfg.store)  # refuses a foreign or corrupt file before any work
        if store.get(cfg.run_id or "run", "config") is None:
            store.put(cfg.run_id or "run", "config", cfg.model_dump(exclude={"api_key", "store", "run_id"}))
        store.close()
    t0 = time.perf_counter()
    jobs = plan_jobs(cfg)
    total = sum(j.conversations for j in jobs)

    @contextmanager
    def bar() -> Iterator[Callable[[int], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("[bold]benchmark[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("conversations x systems"), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, refresh_per_second=2) as shown:
            task = shown.add_task("run", total=total)
            yield lambda n: shown.advance(task, n)

    own = executor is None
    executor = executor or make_executor(cfg.executor, workers=cfg.workers, address=cfg.address)
    try:
        results = executor.run(BenchWork(cfg), jobs, bar)
    finally:
        if own:
            executor.close()
    return assemble(cfg, results, time.perf_counter() - t0)


def assemble(cfg: BenchConfig, results: dict[tuple[str, str], list[TurnScore]], elapsed: float) -> dict[str, Any]:
    main = {s: results[(s, cfg.profile)] for s in cfg.systems}
    n = len({r.conv for r in next(iter(main.values()))}) if main else 0
    boot = bootstrap_index(n, cfg.n_boot, cfg.seed)
    systems = {s: summarise(recs, boot) for s, recs in main.items()}
    sensitivity: dict[str, dict[str, Any]] = {}
    profiles = [cfg.profile] + [p for p in cfg.sensitivity if p != cfg.profile]
    for prof in profiles:
        per = {s: results[(s, prof)] for s in SENSITIVITY_SYSTEMS if (s, prof) in results}
        if not per:
            continue
        nb = len({r.conv for r in next(iter(per.values()))})
        b = bootstrap_index(nb, cfg.n_boot, cfg.seed)
        sensitivity[prof] = {
            "systems": {s: {k: v for k, v in summarise(recs, b).items()
                            if k in ("success_rate", "context_loss_rate", "accuracy", "rouge_l", "latency_mean_s",
                                     "latency_question_turns_mean_s", "prompt_tokens_per_turn", "calls_per_turn",
                                     "calls_per_question")}
                        for s, recs in per.items()},
            "ratios": ratios(per, b),
        }
    config = cfg.model_dump(exclude={"api_key", "store"})
    config["elapsed_s"] = round(elapsed, 2)
    from importlib.metadata import version

    config["rapo_version"] = version("rapo")
    out = {
        "config": config,
        "systems": systems,
        "ratios": ratios(main, boot),
        "paper": PAPER,
        "sensitivity": sensitivity,
        "records": {"fields": FIELDS, "rows": [row for recs in main.values() for row in as_rows(recs)]},
    }
    if cfg.faults > 0:
        out["faults"] = _fault_summary(cfg, results)
    return out


def _fault_summary(cfg: BenchConfig, results: dict[tuple[str, str], list[TurnScore]]) -> dict[str, Any]:
    """Injected faults by kind and their cost, per system (main profile) and over every job. A resumed
    run counts the calls made since it resumed."""
    from rapo.bench.faults import total

    per = {(s, p): f for (s, p), recs in results.items() if (f := getattr(recs, "faults", None))}
    return {"rate": cfg.faults, "seed": cfg.fault_seed,
            "systems": {s: f for (s, p), f in per.items() if p == cfg.profile},
            "total": total(list(per.values()))}


def resume_config(store_url: str, run_id: str, **overrides: Any) -> BenchConfig:
    """The configuration a stored run was started with, to finish it."""
    from rapo.store import open_store

    store = open_store(store_url)
    try:
        saved = store.get(run_id, "config")
        if saved is None:
            runs = store.runs()
            raise RapoError(f"no run {run_id!r} in {store_url}; runs there: {', '.join(runs) or 'none'}")
    finally:
        store.close()
    return BenchConfig(**{**saved, **overrides, "store": store_url, "run_id": run_id})


def write_results(results: dict[str, Any], out: Path) -> Path:
    import json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, separators=(",", ":")))
    return path
