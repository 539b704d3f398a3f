"""Team specification: agents, their declared capabilities and backends, and the orchestration knobs.

Loaded from YAML (or built in Python); validated by pydantic so that a bad file names the field at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rapo.types import DEFAULT_REASONING_TYPES, RapoError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    role: str = Field(min_length=1, description="One line: what this agent is for; opens its prompt.")
    description: str = Field("", description="What the agent does well, as a supervisor would read it.")
    template: str | None = Field(None, description="Jinja2 prompt template text; default built in.")
    template_file: str | None = Field(None, description="Path to a Jinja2 template, relative to the team file.")
    capabilities: dict[str, float] = Field(default_factory=dict)
    backend: str | None = Field(None, description="Backend name (sim, openai, scripted); default: the team's.")
    model: str = Field("default", min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _in_unit_interval(cls, caps: dict[str, float]) -> dict[str, float]:
        for k, v in caps.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"capability {k!r} = {v} must be a probability in [0, 1]")
        return caps


class RoutingConfig(_Strict):
    beta: float = Field(0.3, ge=0, description="Weight of context similarity cos(C_i, e(s)).")
    gamma: float = Field(0.05, ge=0, description="Penalty per call the agent has in flight.")
    delta: float = Field(0.02, ge=0, description="Penalty for switching away from the previous agent.")
    exploration: Literal["thompson", "ucb", "none", "random"] = "thompson"
    ucb_c: float = Field(1.0, ge=0)
    prior_strength: float = Field(10.0, gt=0, description="Pseudo-counts behind the declared capabilities.")
    learn: bool = True
    seed: int = 0
    trace_scores: int | None = Field(
        16, ge=1, description="Agents whose score terms each turn's trace keeps, the best by score (None: every "
        "agent). Teams up to this size keep all; a team of 1,000 would otherwise store 1,000 rows a turn.")


class ConsensusConfig(_Strict):
    mode: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: every answer step asks `start` agents and adds one while they disagree; "
        "always: all m at once; never: one call.")
    m: int = Field(3, ge=2, le=16, description="Agents a vote may ask (always: all at once).")
    start: int = Field(2, ge=1, le=16, description="auto: agents asked first; more only on disagreement.")
    solo_confidence: float | None = Field(
        0.99, gt=0, le=1, description="auto: one agent alone answers when its learned capability for the "
        "step, minus two posterior standard deviations, reaches this (None: never alone).")
    prefetch: float | None = Field(
        0.2, ge=0, le=1, description="auto: ask all m agents at once when the chance that the first `start` "
        "do not all answer right (1 - the product of their learned capabilities for the step) exceeds this; a "
        "third call they would likely need anyway then costs no extra round of waiting (None: never).")
    threshold: float = Field(0.6, gt=0, le=1, description="Capability-weighted agreement that ends a round.")
    max_rounds: int = Field(2, ge=1, le=5)
    lam: float = Field(1.0, ge=0, description="Anchor weight lambda of the disagreement energy.")
    alpha: float | None = Field(None, gt=0, description="Step size; default 0.9/(2L).")
    queued: Literal["wait", "degrade"] = Field(
        "wait", description="When a backend sends fewer requests at once (max_concurrency) than the agents "
        "asked: wait for the calls in turn, or degrade to as many agents as it has slots. Both warn once.")


class PromptConfig(_Strict):
    context_budget_tokens: int = Field(
        1000, ge=0, description="Tokens of context beyond the facts a step names (those always go in).")
    k_relevant: int = Field(64, ge=0, description="Retrieved facts and passages at most, beyond the named ones.")
    recent_turns: int = Field(1, ge=0, description="Turns before this one shown verbatim (as their facts where read).")
    min_relevance: float = Field(
        0.0, ge=0, le=1, description="A passage's lexical score as a share of the best below which it is left out.")
    neighbour_weight: float = Field(
        0.5, ge=0, description="How much a passage's score borrows from the turns beside it.")
    exchange_weight: float = Field(
        0.5, ge=0, description="How much a passage's score adds of the BM25 score of its turn with the one before.")
    embedding_weight: float = Field(
        0.25, ge=0, description="Weight of embedding retrieval in the fused ranking (lexical: 1); raise it for a "
        "semantic embedder.")
    passages_per_turn: int = Field(
        1, ge=1, description="Verbatim passages of one turn at most: 1 spreads the budget over more turns, 2 "
        "more often brings the sentence that holds the answer.")
    history: Literal["none", "last-k", "full"] = "none"
    history_k: int = Field(4, ge=0)
    adaptive: bool = Field(True, description="Reasoning-aware strategy section; off = one static template.")
    relevance: bool = Field(True, description="Select context by relevance; off = facts of the last k turns.")
    statement_turns: Literal["ledger", "model"] = Field(
        "ledger", description="Turns that only state facts: acknowledge from the ledger, or call a model."
    )


class TeamSpec(_Strict):
    name: str = "team"
    description: str = ""
    reasoning_types: list[str] = Field(default_factory=lambda: list(DEFAULT_REASONING_TYPES), min_length=1)
    backend: str = Field("scripted", description="Default backend for agents that name none.")
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Constructor options per backend name. For openai: base_url, api_key, timeout_s (seconds "
        "per request, default 60), max_concurrency (requests in flight at once, default 16; set it to the "
        "server's parallel slots, 1 for llama-cpp-python) and max_tokens (reply cap for calls that set none).")
    agents: list[AgentSpec] = Field(min_length=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    embedder: str = "hashing"
    extraction: Literal["rules", "model", "both"] = Field(
        "rules", description="How facts are read from turns: rules (no model call), a model, or both."
    )
    extraction_model: str | None = Field(None, description="Model for extraction; default: the first agent's.")

    @model_validator(mode="after")
    def _consistent(self) -> "TeamSpec":
        names = [a.name for a in self.agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(dupes)}")
        known = set(self.reasoning_types)
        for agent in self.agents:
            unknown = sorted(set(agent.capabilities) - known)
            if unknown:
                raise ValueError(
                    f"agent {agent.name!r} declares capabilities for unknown reasoning types {unknown}; "
                    f"known types: {', '.join(self.reasoning_types)}"
                )
            if agent.template and agent.template_file:
                raise ValueError(f"agent {agent.name!r}: give template or template_file, not both")
        return self

    def agent(self, name: str) -> AgentSpec:
        for a in self.agents:
            if a.name == name:
                return a
        raise RapoError(f"unknown agent {name!r}; this team has: {', '.join(a.name for a in self.agents)}")

    def with_backend(self, backend: str, **options: Any) -> "TeamSpec":
        """The same team with every agent on one backend (what `--backend` does)."""
        agents = [a.model_copy(update={"backend": backend}) for a in self.agents]
        opts = {**self.backend_options, backend: {**self.backend_options.get(backend, {}), **options}}
        return self.model_copy(update={"agents": agents, "backend": backend, "backend_options": opts})


    def with_backend_options(self, **options: Any) -> "TeamSpec":
        """The same team with `options` (timeout_s, max_concurrency...) set on every backend its agents
        use: what the `--timeout` and `--max-concurrency` flags do."""
        if not options:
            return self
        opts = dict(self.backend_options)
        for name in {a.backend or self.backend for a in self.agents}:
            opts[name] = {**opts.get(name, {}), **options}
        return self.model_copy(update={"backend_options": opts})


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid team file {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def team_from_dict(data: Any, source: str = "<dict>", base_dir: Path | None = None) -> TeamSpec:
    if not isinstance(data, dict):
        raise RapoError(f"invalid team file {source}: the top level must be a mapping with an 'agents' list")
    try:
        team = TeamSpec.model_validate(data)
    except ValidationError as err:
        raise RapoError(_describe(err, source)) from None
    if base_dir is not None:
        agents = []
        for a in team.agents:
            if a.template_file:
                path = (base_dir / a.template_file).resolve()
                if not path.is_file():
                    raise RapoError(f"invalid team file {source}: agents.{a.name}.template_file: {path} not found")
                a = a.model_copy(update={"template": _read_text(path, f"template file of agent {a.name!r}"),
                                         "template_file": None})
            agents.append(a)
        team = team.model_copy(update={"agents": agents})
    _check_templates(team, source)
    return team


def _check_templates(team: TeamSpec, source: str) -> None:
    from rapo.prompts import check_template

    for a in team.agents:
        if a.template:
            try:
                check_template(a.template)
            except RapoError as err:
                raise RapoError(f"invalid team file {source}: agents.{a.name}.template: {err}") from None


def _read_text(path: Path, what: str) -> str:
    """A text file as UTF-8, or a message saying it is not one (a binary file, another encoding)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RapoError(f"the {what} {path} is not UTF-8 text (byte {err.start}: {err.reason}); "
                        "save it as UTF-8 text") from None


def bench_team() -> TeamSpec:
    """The team shipped with rapo for the benchmark (src/rapo/data/bench-team.yaml)."""
    from importlib import resources

    text = resources.files("rapo").joinpath("data/bench-team.yaml").read_text()
    return team_from_dict(yaml.safe_load(text), "rapo/data/bench-team.yaml")


def load_team(path: str | Path) -> TeamSpec:
    p = Path(path)
    if not p.is_file():
        raise RapoError(f"team file {p} not found; see examples/ for a team to start from")
    try:
        data = yaml.safe_load(_read_text(p, "team file"))
    except yaml.YAMLError as err:
        raise RapoError(f"team file {p} is not valid YAML: {err}") from None
    return team_from_dict(data, str(p), p.parent)
