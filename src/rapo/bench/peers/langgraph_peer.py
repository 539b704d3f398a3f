"""LangGraph peer: the supervisor/handoff graph over `MessagesState`, as its users write it.

A supervisor node asks the chat model which agent should take the user's latest message and hands
off with `Command(goto=agent)`; the chosen agent's node calls the chat model with its system prompt
and the FULL message history, appends its reply and ends the turn. With `persist=True` the graph is
compiled with `InMemorySaver` and each conversation is a thread; without it the caller keeps the
messages and passes them back in, as users without a checkpointer do.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
from pydantic import ConfigDict

from rapo.bench.peers.common import FakeModel, Recorder, agent_prompt, choose, outcome, supervisor_prompt
from rapo.bench.systems import TurnOutcome
from rapo.team import TeamSpec
from rapo.types import Message


def _to_rapo(messages: Sequence[BaseMessage]) -> list[Message]:
    out = []
    for m in messages:
        role = {"system": "system", "human": "user", "ai": "assistant"}.get(m.type, "user")
        content = m.content if isinstance(m.content, str) else str(m.content)
        out.append(Message.model_construct(role=role, content=content, name=getattr(m, "name", None)))
    return out


class FakeChatModel(BaseChatModel):
    """A LangChain chat model whose every answer comes from rapo's `FakeModel`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    fake: Any
    model_name: str

    @property
    def _llm_type(self) -> str:
        return "rapo-fake"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        raise NotImplementedError("the benchmark drives LangGraph asynchronously (ainvoke)")

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        c = await self.fake.complete(_to_rapo(messages), model=self.model_name)
        usage = {"input_tokens": c.prompt_tokens, "output_tokens": c.output_tokens,
                 "total_tokens": c.prompt_tokens + c.output_tokens}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=c.text, usage_metadata=usage))])


def build_graph(team: TeamSpec, model: FakeModel, checkpointer: Any = None) -> Any:
    """The compiled supervisor graph for `team`, every node's model a `FakeChatModel` on `model`."""
    names = [a.name for a in team.agents]
    sup_prompt = supervisor_prompt(team)
    supervisor_llm = FakeChatModel(fake=model, model_name=team.agents[-1].model)

    async def supervisor(state: MessagesState) -> Command:
        reply = await supervisor_llm.ainvoke([SystemMessage(content=sup_prompt), *state["messages"]])
        return Command(goto=choose(str(reply.content), team))

    def agent_node(name: str) -> Any:
        llm = FakeChatModel(fake=model, model_name=team.agent(name).model)
        system = SystemMessage(content=agent_prompt(team, name))

        async def node(state: MessagesState) -> dict[str, list[BaseMessage]]:
            reply = await llm.ainvoke([system, *state["messages"]])
            return {"messages": [AIMessage(content=reply.content, name=name)]}

        return node

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor, destinations=tuple(names))
    for name in names:
        graph.add_node(name, agent_node(name))
        graph.add_edge(name, END)
    graph.add_edge(START, "supervisor")
    return graph.compile(checkpointer=checkpointer)


class LangGraphPeer:
    """The LangGraph supervisor team; `persist` compiles it with `InMemorySaver`."""

    def __init__(self, team: TeamSpec, model: FakeModel, *, persist: bool = False) -> None:
        self.team, self.model, self.persist = team, model, persist
        self.name = "langgraph+saver" if persist else "langgraph"
        checkpointer = None
        if persist:
            from langgraph.checkpoint.memory import InMemorySaver

            checkpointer = InMemorySaver()
        self.graph = build_graph(team, model, checkpointer)

    def session(self, conversation_id: str, truth: Any = None) -> "LangGraphSession":
        return LangGraphSession(self, conversation_id)

    async def aclose(self) -> None:
        return None


class LangGraphSession:
    def __init__(self, peer: LangGraphPeer, conversation_id: str) -> None:
        self.peer = peer
        self.config = {"configurable": {"thread_id": conversation_id}}
        self.messages: list[BaseMessage] = []  # the caller-kept history when there is no checkpointer

    async def step(self, text: str) -> TurnOutcome:
        t0 = time.perf_counter()
        with Recorder() as rec:
            if self.peer.persist:
                state = await self.peer.graph.ainvoke({"messages": [HumanMessage(content=text)]}, self.config)
            else:
                state = await self.peer.graph.ainvoke({"messages": [*self.messages, HumanMessage(content=text)]})
                self.messages = state["messages"]
        last = state["messages"][-1]
        return outcome(last.name, str(last.content), rec.calls, time.perf_counter() - t0)
