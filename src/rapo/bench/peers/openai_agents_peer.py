"""OpenAI Agents SDK peer: four `Agent`s with handoffs to each other, `Runner.run`, tracing off.

Every agent's `model` is a custom `Model` answering through rapo's `FakeModel`. Each turn starts
at the agent that answered last (the SDK's advice); that agent's model first decides whom the
message is for (the supervisor prompt, as the handoff tool choice of a real model) and either
answers or calls the `transfer_to_<agent>` handoff tool, after which the target agent answers.
With `persist=True` each conversation has a `SQLiteSession` in a temp file; without it the caller
passes `result.to_input_list()` plus the new message, as the SDK's docs show.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from typing import Any, AsyncIterator

from agents import Agent, Handoff, Model, ModelResponse, ModelSettings, ModelTracing, RunConfig, Runner, Usage
from agents import set_tracing_disabled
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from rapo.bench.peers.common import FakeModel, Recorder, agent_prompt, choose, outcome, supervisor_prompt
from rapo.bench.systems import TurnOutcome
from rapo.team import TeamSpec
from rapo.types import Message


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(getattr(p, "text", "")) for p in content)


def _to_rapo(system: str | None, items: Any) -> tuple[list[Message], bool]:
    """Responses-format input items to chat messages; also: did the run just hand off to this agent?"""
    out = [Message.model_construct(role="system", content=system, name=None)] if system else []
    if isinstance(items, str):
        return out + [Message.model_construct(role="user", content=items, name=None)], False
    handed = False
    for item in items:
        kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", "message")
        if kind == "message":
            role = item.get("role") if isinstance(item, dict) else item.role
            content = item.get("content") if isinstance(item, dict) else item.content
            out.append(Message.model_construct(role="assistant" if role == "assistant" else "user",
                                               content=_content_text(content), name=None))
            handed = False
        elif kind == "function_call_output":
            handed = True
    return out, handed


class FakeAgentsModel(Model):
    """An Agents SDK `Model` whose every answer comes from rapo's `FakeModel`."""

    def __init__(self, fake: FakeModel, model: str, team: TeamSpec, agent_name: str) -> None:
        self.fake, self.model, self.team, self.agent_name = fake, model, team, agent_name
        self.route_prompt = supervisor_prompt(team)

    async def get_response(self, system_instructions: str | None, input: Any, model_settings: ModelSettings,
                           tools: list[Any], output_schema: Any, handoffs: list[Handoff], tracing: ModelTracing,
                           *, previous_response_id: str | None = None, conversation_id: str | None = None,
                           prompt: Any = None, **kwargs: Any) -> ModelResponse:
        messages, handed = _to_rapo(system_instructions, input)
        usage = Usage()
        if handoffs and not handed:  # decide whom this message is for: answer, or hand off
            route = await self.fake.complete([Message(role="system", content=self.route_prompt),
                                              *messages[1:]], model=self.model)
            usage.add(Usage(requests=1, input_tokens=route.prompt_tokens, output_tokens=route.output_tokens,
                            total_tokens=route.prompt_tokens + route.output_tokens))
            target = choose(route.text, self.team)
            tool = next((h for h in handoffs if h.agent_name == target), None)
            if target != self.agent_name and tool is not None:
                call = ResponseFunctionToolCall(type="function_call", name=tool.tool_name, arguments="{}",
                                                call_id=f"call_{uuid.uuid4().hex[:12]}", id=f"fc_{uuid.uuid4().hex[:12]}")
                return ModelResponse(output=[call], usage=usage, response_id=None)
        c = await self.fake.complete(messages, model=self.model)
        usage.add(Usage(requests=1, input_tokens=c.prompt_tokens, output_tokens=c.output_tokens,
                        total_tokens=c.prompt_tokens + c.output_tokens))
        msg = ResponseOutputMessage(id=f"msg_{uuid.uuid4().hex[:12]}", type="message", role="assistant",
                                    status="completed",
                                    content=[ResponseOutputText(type="output_text", text=c.text, annotations=[])])
        return ModelResponse(output=[msg], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the benchmark runs the SDK without streaming (Runner.run)")


def build_agents(team: TeamSpec, model: FakeModel) -> dict[str, Agent]:
    agents = {a.name: Agent(name=a.name, instructions=agent_prompt(team, a.name),
                            handoff_description=a.description or None,
                            model=FakeAgentsModel(model, a.model, team, a.name))
              for a in team.agents}
    for name, agent in agents.items():
        agent.handoffs = [other for other_name, other in agents.items() if other_name != name]
    return agents


class OpenAIAgentsPeer:
    """The handoff team; `persist` gives each conversation a `SQLiteSession` in a temp file."""

    def __init__(self, team: TeamSpec, model: FakeModel, *, persist: bool = False, db_path: str | None = None) -> None:
        set_tracing_disabled(True)
        self.team, self.model, self.persist = team, model, persist
        self.name = "openai-agents+session" if persist else "openai-agents"
        self.agents = build_agents(team, model)
        self.run_config = RunConfig(tracing_disabled=True)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.db_path = db_path
        if persist and db_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rapo-peer-")
            self.db_path = os.path.join(self._tmp.name, "sessions.sqlite")

    def session(self, conversation_id: str, truth: Any = None) -> "OpenAIAgentsSession":
        store = None
        if self.persist:
            from agents import SQLiteSession

            store = SQLiteSession(conversation_id, self.db_path)
        return OpenAIAgentsSession(self, store)

    async def aclose(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class OpenAIAgentsSession:
    def __init__(self, peer: OpenAIAgentsPeer, store: Any) -> None:
        self.peer, self.store = peer, store
        self.current: Agent = peer.agents[peer.team.agents[0].name]
        self.items: list[Any] = []  # caller-kept history when there is no session

    async def step(self, text: str) -> TurnOutcome:
        t0 = time.perf_counter()
        with Recorder() as rec:
            if self.store is not None:
                result = await Runner.run(self.current, text, session=self.store, run_config=self.peer.run_config)
            else:
                result = await Runner.run(self.current, [*self.items, {"role": "user", "content": text}],
                                          run_config=self.peer.run_config)
                self.items = result.to_input_list()
        self.current = result.last_agent
        return outcome(result.last_agent.name, str(result.final_output), rec.calls, time.perf_counter() - t0)
