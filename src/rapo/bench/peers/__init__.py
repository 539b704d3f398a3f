"""The peers rapo is measured against (LangGraph, AutoGen AgentChat, the OpenAI Agents SDK), each a
4-agent team written the way its users write it, driven by one fake chat model plugged in through
the framework's own model interface. Importing this package imports no framework; `make_peer` does."""

from rapo.bench.peers.common import (
    PEER_NAMES,
    FakeModel,
    FakeModelConfig,
    RapoPeer,
    bench_team,
    build_system,
    make_peer,
    peer_available,
)

__all__ = ["PEER_NAMES", "FakeModel", "FakeModelConfig", "RapoPeer", "bench_team", "build_system", "make_peer",
           "peer_available"]
