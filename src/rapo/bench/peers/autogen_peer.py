"""AutoGen AgentChat peer: a `RoundRobinGroupChat` of four `AssistantAgent`s, as its users write it.

Every agent gets a custom `ChatCompletionClient` that answers through rapo's `FakeModel`. One team
per conversation (AgentChat teams are stateful); each user turn is `team.run(task=text)` ending
after one agent's reply (`MaxMessageTermination(2)`: the task and the reply), so the next turn goes
to the next agent in the round, and every agent's model context holds the whole conversation.
"""

from __future__ import annotations

import time
from typing import Any, AsyncGenerator, Literal, Mapping, Optional, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from rapo.bench.peers.common import FakeModel, Recorder, agent_prompt, outcome
from rapo.bench.systems import TurnOutcome
from rapo.team import TeamSpec
from rapo.types import Message


def _text(content: Any) -> str:
    return content if isinstance(content, str) else " ".join(str(c) for c in content)


def _to_rapo(messages: Sequence[LLMMessage]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append(Message.model_construct(role="system", content=m.content, name=None))
        elif isinstance(m, UserMessage):
            out.append(Message.model_construct(role="user", content=_text(m.content), name=m.source))
        elif isinstance(m, AssistantMessage):
            out.append(Message.model_construct(role="assistant", content=_text(m.content), name=m.source))
        elif isinstance(m, FunctionExecutionResultMessage):
            out.append(Message.model_construct(role="user", content=" ".join(r.content for r in m.content),
                                               name=None))
    return out


class FakeChatCompletionClient(ChatCompletionClient):
    """An AutoGen model client whose every answer comes from rapo's `FakeModel`."""

    def __init__(self, fake: FakeModel, model: str) -> None:
        self.fake, self.model = fake, model
        self._usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: Optional[bool | type[BaseModel]] = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: Optional[CancellationToken] = None,
    ) -> CreateResult:
        c = await self.fake.complete(_to_rapo(messages), model=self.model)
        self._usage = RequestUsage(prompt_tokens=c.prompt_tokens, completion_tokens=c.output_tokens)
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + c.prompt_tokens,
                                   completion_tokens=self._total.completion_tokens + c.output_tokens)
        return CreateResult(finish_reason="stop", content=c.text, usage=self._usage, cached=False)

    async def create_stream(  # type: ignore[override]
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, **kwargs)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._usage

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return sum(len(_text(getattr(m, "content", "")).split()) for m in messages)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return 1_000_000 - self.count_tokens(messages)

    @property
    def capabilities(self) -> Any:  # deprecated in AutoGen, still abstract
        return self.model_info

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=False, json_output=False, family="unknown",
                         structured_output=False)


class AutoGenPeer:
    """The round-robin group chat; one team (and runtime) per conversation, as AgentChat has it."""

    name = "autogen"

    def __init__(self, team: TeamSpec, model: FakeModel) -> None:
        self.team, self.model = team, model

    def make_team(self) -> RoundRobinGroupChat:
        agents = [
            AssistantAgent(a.name, model_client=FakeChatCompletionClient(self.model, a.model),
                           system_message=agent_prompt(self.team, a.name), description=a.description or a.name)
            for a in self.team.agents
        ]
        return RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(2))

    def session(self, conversation_id: str, truth: Any = None) -> "AutoGenSession":
        return AutoGenSession(self.make_team())

    async def aclose(self) -> None:
        return None


class AutoGenSession:
    def __init__(self, team: RoundRobinGroupChat) -> None:
        self.team = team

    async def step(self, text: str) -> TurnOutcome:
        t0 = time.perf_counter()
        with Recorder() as rec:
            result = await self.team.run(task=text)
        last = result.messages[-1]
        return outcome(last.source, _text(getattr(last, "content", "")), rec.calls, time.perf_counter() - t0)
