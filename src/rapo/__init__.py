"""rapo: reasoning-aware prompt orchestration for teams of LLM agents."""

from rapo.team import AgentSpec, TeamSpec, load_team, team_from_dict
from rapo.types import Completion, Message, RapoError

__all__ = [
    "AgentSpec",
    "Completion",
    "Message",
    "Orchestrator",
    "RapoError",
    "TeamSpec",
    "load_team",
    "team_from_dict",
]


def __getattr__(name: str):  # lazy: `import rapo` stays fast
    if name == "Orchestrator":
        from rapo.orchestrator import Orchestrator

        return Orchestrator
    raise AttributeError(name)
