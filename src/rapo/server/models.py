"""Request and response bodies of the HTTP API: pydantic at the boundary, so bad input is refused
with the field named, and the OpenAPI spec (which the fuzz tests read) says exactly what is accepted."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rapo.orchestrator import TurnRecord

MAX_TEXT_CHARS = 16_000  # one turn, or one chat message
MAX_CHAT_CHARS = 200_000  # all of one chat request's messages together
MAX_CHAT_MESSAGES = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    team: str
    agents: list[str]


class ErrorBody(BaseModel):
    """Every 4xx of the REST API: a sentence for a person, and the fields at fault when there are any."""

    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)


class CreateConversation(_Strict):
    """Optional body of POST /conversations."""

    title: str | None = Field(None, max_length=200, description="A label shown in the viewer.")


class ConversationCreated(BaseModel):
    id: str
    created: float
    title: str | None = None


class TurnRequest(_Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="The user's turn.")
    critical: bool = Field(False, description="Critical: the top agents answer at once and must agree.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text must contain something besides whitespace")
        if "\x00" in text:
            raise ValueError("text must not contain NUL characters")
        return text


class TurnResponse(BaseModel):
    conversation: str
    turn: int
    answer: str
    value: str
    agent: str | None
    record: TurnRecord


class FactView(BaseModel):
    id: int
    key: str
    subject: str
    attribute: str
    value: str
    text: str
    turn: int
    source: str
    origin: str


class ConversationSummary(BaseModel):
    id: str
    created: float
    title: str | None = None
    origin: str
    turns: int
    last_text: str | None = None


class ConversationDetail(ConversationSummary):
    facts: list[FactView] = Field(description="The ledger's current facts (superseded ones are left out).")
    capabilities: dict[str, dict[str, float]] = Field(
        description="Posterior-mean capability per agent and reasoning type; the matrix is shared by "
        "every conversation of the team, so this is the team's state at the time of the request.")
    records: list[TurnRecord] = Field(description="One page of the turn records, from records_offset.")
    records_offset: int = 0
    next_offset: int | None = Field(None, description="Pass as offset for the next page; null on the last.")


class ConversationList(BaseModel):
    conversations: list[ConversationSummary] = Field(description="One page, oldest first.")
    total: int = 0
    offset: int = 0
    next_offset: int | None = Field(None, description="Pass as offset for the next page; null on the last.")


class Deleted(BaseModel):
    id: str
    deleted: bool = True


# -- OpenAI-compatible ------------------------------------------------------------------------


# a chat message's text is held to a REST turn's limits: no NUL, at most MAX_TEXT_CHARS
ChatText = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS, pattern=r"^[^\x00]*$")]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: ChatText | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: ChatText | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; non-text parts (images, audio) are refused by the route."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completions request a team can honour; other fields clients send
    (temperature, top_p, user, ...) are accepted and ignored, since the team's agents pick their own."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice: a team gives one answer.")
    rapo_critical: bool = Field(False, description="rapo extension: treat the last user turn as critical.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rapo"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def openai_error(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    """The error body OpenAI clients parse (`error.message` ends up in the SDK's exception)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
