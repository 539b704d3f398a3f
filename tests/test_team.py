from pathlib import Path

import pytest

from rapo.team import load_team, team_from_dict
from rapo.types import RapoError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _agent(**kw):
    base = {"name": "a", "role": "r", "capabilities": {"lookup": 0.9}}
    base.update(kw)
    return base


def test_example_team_loads():
    team = load_team(EXAMPLES / "support-team.yaml")
    assert [a.name for a in team.agents] == ["retriever", "calculator", "reasoner", "generalist"]
    assert team.agent("calculator").capabilities["arithmetic"] == 0.95
    assert "{{ role }}" in team.agent("generalist").template


def test_capability_out_of_range_names_the_field():
    with pytest.raises(RapoError) as err:
        team_from_dict({"agents": [_agent(capabilities={"lookup": 1.7})]}, "t.yaml")
    msg = str(err.value)
    assert "agents.0.capabilities" in msg and "[0, 1]" in msg and "t.yaml" in msg


def test_unknown_reasoning_type_lists_known_ones():
    with pytest.raises(RapoError) as err:
        team_from_dict({"agents": [_agent(capabilities={"arithmetik": 0.5})]})
    assert "arithmetik" in str(err.value) and "arithmetic" in str(err.value)


def test_duplicate_names_and_unknown_field():
    with pytest.raises(RapoError, match="repeated: a"):
        team_from_dict({"agents": [_agent(), _agent()]})
    with pytest.raises(RapoError, match="agents.0.rol"):
        team_from_dict({"agents": [_agent(rol="x")]})


def test_missing_agents_and_bad_yaml(tmp_path):
    with pytest.raises(RapoError, match="agents"):
        team_from_dict({"name": "x"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [\n")
    with pytest.raises(RapoError, match="not valid YAML"):
        load_team(bad)
    with pytest.raises(RapoError, match="not found"):
        load_team(tmp_path / "missing.yaml")


def test_unknown_agent_lookup():
    team = team_from_dict({"agents": [_agent()]})
    with pytest.raises(RapoError, match="unknown agent 'zz'.*a"):
        team.agent("zz")


def test_with_backend_overrides_every_agent():
    team = team_from_dict({"agents": [_agent(backend="openai"), _agent(name="b")]}).with_backend("scripted")
    assert {a.backend for a in team.agents} == {"scripted"}
