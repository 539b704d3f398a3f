"""rapo as a service: a FastAPI app around one Orchestrator (one team, one shared capability matrix).

REST for conversations and turns, server-sent events for a turn's stages, an OpenAI-compatible
chat endpoint where the model name is the team's name, and a static trace viewer at /viewer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rapo.orchestrator import Orchestrator, RoundRecord, StageHook, TurnRecord
from rapo.server.models import (
    ChatRequest,
    ConversationCreated,
    ConversationDetail,
    ConversationList,
    ConversationSummary,
    CreateConversation,
    Deleted,
    ErrorBody,
    FactView,
    Health,
    ModelCard,
    ModelList,
    TurnRequest,
    TurnResponse,
    MAX_CHAT_CHARS,
    MAX_TEXT_CHARS,
    openai_error,
)
from rapo.server.durable import DurableConversationStore
from rapo.server.store import (DEFAULT_MAX_CONVERSATIONS, ConversationInfo, ConversationStore, Damaged,
                               InMemoryStore, StoredConversation, StoreFull)
from rapo.team import TeamSpec, load_team
from rapo.types import RapoError

STATIC_DIR = Path(__file__).parent / "static"
_PREFIX_CACHE = 10_000  # OpenAI-endpoint conversations remembered by their message prefix


class ApiError(Exception):
    """A 4xx/5xx with a message for a person and, where one field is at fault, its name."""

    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# -- request body limit ------------------------------------------------------------------------


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413, whether Content-Length says so or the chunks add up.

    The body is buffered (it is small by construction) and replayed to the app, so routes never see
    a partial body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await self._refuse(send, 400, "the Content-Length header is not a non-negative integer")
                return
            if declared > self.max_bytes:
                await self._drain(receive, more=True)
                await self._refuse(send, 413, f"the request body ({declared} bytes) is over the limit of "
                                              f"{self.max_bytes} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._drain(receive, more=message.get("more_body", False))
                await self._refuse(send, 413, f"the request body is over the limit of {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive, more: bool, cap: int = 1 << 20) -> None:
        """Read (and drop) the rest of a refused body, up to `cap` bytes and 5 s a chunk, so the client gets to read the
        413 instead of a reset connection; past the cap the connection is closed on it."""
        seen = 0
        while more and seen < cap:
            try:
                message = await asyncio.wait_for(receive(), timeout=5.0)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        payload = json.dumps({"detail": detail, "errors": [{"field": "body", "message": detail}]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


# -- the app -----------------------------------------------------------------------------------


class _Service:
    """What the routes share: the team's orchestrator, the store, and the OpenAI prefix map."""

    def __init__(self, team: TeamSpec, store: ConversationStore) -> None:
        self.team = team
        self.orch = Orchestrator(team)
        self.store = store
        self.prefixes: OrderedDict[str, tuple[str, int]] = OrderedDict()
        if isinstance(store, DurableConversationStore):
            store.attach(self.orch)  # loads the conversations a previous server left

    def entry(self, conversation_id: str) -> StoredConversation:
        entry = self._get(conversation_id)
        if entry is None:
            raise ApiError(404, f"no conversation with id {_short(conversation_id)!r}; "
                                "GET /conversations lists the ones that exist", field="conversation_id")
        return entry

    def _get(self, conversation_id: str) -> StoredConversation | None:
        try:
            return self.store.get(conversation_id)
        except Damaged as err:
            raise ApiError(500, str(err), code="damaged_in_store") from None

    def new(self, origin: str, title: str | None = None) -> StoredConversation:
        try:
            return self.store.create(self.orch.new_conversation(), origin=origin, title=title)
        except StoreFull as err:
            raise ApiError(429, str(err), code="too_many_conversations") from None

    async def locked(self, entry: StoredConversation) -> StoredConversation:
        """Lock the conversation's live entry: the one in hand may have been unloaded from memory (and
        loaded again as a new object) while this request waited, and a turn must run on the live one.
        Returns it locked; the caller releases `entry.lock`."""
        while True:
            await entry.lock.acquire()
            live = self._get(entry.id)
            if live is entry:
                return entry
            entry.lock.release()
            if live is None:
                raise ApiError(404, f"conversation {_short(entry.id)!r} was deleted while this request waited",
                               field="conversation_id")
            entry = live

    async def turn(self, entry: StoredConversation, text: str, critical: bool,
                   on_stage: StageHook | None = None) -> TurnRecord:
        """One turn, serialised per conversation; shielded so a client that hangs up mid-turn does not
        leave the conversation half-updated."""

        async def run() -> TurnRecord:
            live = await self.locked(entry)
            try:
                record = await self.orch.astep(live.state, text, critical=critical, on_stage=on_stage)
                await self.saved(live)
                return record
            finally:
                live.lock.release()

        return await _shielded(run)

    async def saved(self, entry: StoredConversation, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """After each turn, with the entry locked: a durable store writes it (and `extra` documents, such
        as the chat map) through before the answer goes out."""
        if isinstance(self.store, DurableConversationStore):
            await self.store.saved(entry, extra)

    def chat_hit(self, key: str) -> tuple[str, int] | None:
        """Which conversation, at which turn, a chat's earlier messages belong to: remembered here, and
        in a durable store also on disk, so a restarted server continues the chat."""
        hit = self.prefixes.get(key)
        if hit is None and isinstance(self.store, DurableConversationStore):
            doc = self.store.lookup(f"chat/{key}")
            if doc and isinstance(doc.get("conversation"), str) and isinstance(doc.get("turn"), int):
                hit = (doc["conversation"], doc["turn"])
        return hit

    @staticmethod
    def summary(info: ConversationInfo) -> ConversationSummary:
        return ConversationSummary(id=info.id, created=info.created, title=info.title, origin=info.origin,
                                   turns=info.turns,
                                   last_text=_short(info.last_text, 120) if info.last_text else None)

    def capabilities(self) -> dict[str, dict[str, float]]:
        mean = self.orch.matrix.mean()
        types = self.team.reasoning_types
        return {name: {k: round(float(mean[i, j]), 4) for j, k in enumerate(types)}
                for i, name in enumerate(self.orch.names)}


async def _shielded(make: Callable[[], Awaitable[Any]]) -> Any:
    task = asyncio.ensure_future(make())
    return await asyncio.shield(task)


def _turn_response(record: TurnRecord) -> TurnResponse:
    return TurnResponse(conversation=record.conversation, turn=record.turn, answer=record.answer,
                        value=record.value, agent=record.agent, record=record)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stage_event(name: str, record: TurnRecord, rnd: RoundRecord | None = None) -> dict[str, Any]:
    """The payload of one stage, sent as the orchestrator reaches it (`Orchestrator.astep(on_stage=...)`)."""
    base = {"conversation": record.conversation, "turn": record.turn, "live": True}
    if name == "noted":
        return {**base, "answer": record.answer}
    if name == "routing":
        r = record.routing
        assert r is not None
        return {**base, "requirement": record.requirement, "requirement_source": record.requirement_source,
                "chosen": r.chosen, "confidence": r.confidence, "exploration": r.exploration,
                "scores": [s.model_dump() for s in r.scores]}
    if name == "prompt":
        return {**base, "agent": record.agent, "strategy": record.strategy, "difficulty": record.difficulty,
                "handoff": record.handoff, "context": [c.model_dump() for c in record.context],
                "messages": [m.model_dump() for m in record.prompt]}
    if name == "consensus_round" and rnd is not None:
        return {**base, **rnd.model_dump()}
    return {**base, "agent": record.agent, "answer": record.answer, "value": record.value,
            "prompt_tokens": record.prompt_tokens, "output_tokens": record.output_tokens,
            "calls": record.calls, "latency_s": record.latency_s, "overhead_s": record.overhead_s,
            "failovers": record.failovers}


def _prefix_key(model: str, turns: list[tuple[str, str]]) -> str:
    blob = json.dumps([model, [[role, text.strip()] for role, text in turns]], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _readable(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        field = ".".join(loc) or "body"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            msg = "the body is not valid JSON: " + str(e.get("ctx", {}).get("error", msg))
        elif e.get("type") == "missing":
            msg = "this field is required"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field; remove it"
        elif e.get("type") == "string_pattern_mismatch" and "\\x00" in str(e.get("ctx", {}).get("pattern", "")):
            msg = "must not contain NUL characters"
            field = ".".join(p for p in loc if p != "constrained-str")
        out.append({"field": field, "message": msg})
    return out


def create_app(
    team: TeamSpec | str | Path,
    *,
    backend: str | None = None,
    token: str | None = None,
    max_body_bytes: int = 65536,
    store: ConversationStore | None = None,
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
) -> FastAPI:
    """The app for one team. `backend` overrides the team file's (e.g. "sim"); with `token`, every
    route but /health (and the static docs/viewer shells, which hold no data) needs
    `Authorization: Bearer <token>`. Without `store`, conversations live in memory and a new one past
    `max_conversations` is refused (429); a durable store has its own limit, of what it keeps loaded."""
    spec = team if isinstance(team, TeamSpec) else load_team(team)
    if backend:
        spec = spec.with_backend(backend)
    if token is not None and not token.strip():
        raise RapoError("the token must not be empty; leave it out to serve without auth on loopback")
    if max_body_bytes < 1024:
        raise RapoError(f"max_body_bytes={max_body_bytes} is too small to carry a turn; use at least 1024")
    svc = _Service(spec, store if store is not None else InMemoryStore(max_conversations))  # empty is falsy
    expected = token.encode() if token else None
    bearer = HTTPBearer(auto_error=False, description="The token given to `rapo serve --token`.")

    def check_token(header: str | None) -> None:
        if expected is None:
            return
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'"
                                " with the token the server was started with", code="invalid_api_key")

    async def authorised(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        check_token(f"Bearer {creds.credentials}" if creds is not None else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await svc.orch.aclose()

    app = FastAPI(title=f"rapo: team {spec.name}", version="1", lifespan=lifespan,
                  description="A team of LLM agents behind one API: conversations, turns with their "
                              "traces, server-sent events, and an OpenAI-compatible chat endpoint.")
    app.state.service = svc
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    auth = [Depends(authorised)]
    errors = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 401: {"model": ErrorBody}}

    # -- errors: a readable JSON body; OpenAI's error shape under /v1 -------------------------

    def _error(request: Request, status: int, message: str, fields: list[dict[str, str]],
               code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
        if request.url.path.startswith("/v1/"):
            kind = "invalid_request_error" if status < 500 else "server_error"
            if status == 401:
                kind = "authentication_error"
            body = openai_error(message, type_=kind, param=fields[0]["field"] if fields else None, code=code)
        else:
            body = {"detail": message, "errors": fields}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else []
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(request, exc.status, exc.message, fields, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        try:  # a body is parsed before the route's dependencies run: say 401 before saying what is wrong with it
            check_token(request.headers.get("authorization"))
        except ApiError as denied:
            return await _api_error(request, denied)
        fields = _readable(list(exc.errors()))
        message = "invalid request: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return _error(request, 422, message, fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {_short(request.url.path)}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {_short(request.url.path)}; see /docs"
        return _error(request, exc.status_code, message, [], headers=getattr(exc, "headers", None))

    @app.exception_handler(RapoError)
    async def _rapo(request: Request, exc: RapoError) -> JSONResponse:
        return _error(request, 502, f"the team could not answer: {exc}", [], code="team_error")

    # -- REST ---------------------------------------------------------------------------------

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """Liveness; needs no token."""
        return Health(team=spec.name, agents=svc.orch.names)

    @app.post("/conversations", response_model=ConversationCreated, status_code=201, dependencies=auth,
              responses=errors, tags=["conversations"])
    async def create_conversation(body: CreateConversation | None = None) -> ConversationCreated:
        entry = svc.new("rest", body.title if body else None)
        return ConversationCreated(id=entry.id, created=entry.created, title=entry.title)

    @app.get("/conversations", response_model=ConversationList, dependencies=auth, responses=errors,
             tags=["conversations"])
    async def list_conversations(
        offset: int = Query(0, ge=0, description="Skip this many (oldest first)."),
        limit: int = Query(100, ge=1, le=1000, description="At most this many."),
    ) -> ConversationList:
        infos, total = svc.store.page(offset, limit)
        after = offset + len(infos)
        return ConversationList(conversations=[svc.summary(i) for i in infos], total=total, offset=offset,
                                next_offset=after if after < total else None)

    @app.get("/conversations/{conversation_id}", response_model=ConversationDetail, dependencies=auth,
             responses=errors, tags=["conversations"])
    async def get_conversation(
        conversation_id: str,
        offset: int = Query(0, ge=0, description="First turn record to include (0: the first turn)."),
        limit: int = Query(100, ge=1, le=1000, description="At most this many turn records."),
    ) -> ConversationDetail:
        entry = svc.entry(conversation_id)
        facts = [FactView(id=f.id, key=f.key, subject=f.subject, attribute=f.attribute, value=f.value,
                          text=f.text, turn=f.turn, source=f.source, origin=f.origin)
                 for f in entry.state.ledger.current()]
        records = list(entry.records)
        page = records[offset:offset + limit]
        after = offset + len(page)
        return ConversationDetail(**svc.summary(entry.info()).model_dump(), facts=facts,
                                  capabilities=svc.capabilities(), records=page, records_offset=offset,
                                  next_offset=after if after < len(records) else None)

    @app.delete("/conversations/{conversation_id}", response_model=Deleted, dependencies=auth, responses=errors,
                tags=["conversations"])
    async def delete_conversation(conversation_id: str) -> Deleted:
        svc.entry(conversation_id)
        svc.store.delete(conversation_id)
        return Deleted(id=conversation_id)

    @app.post("/conversations/{conversation_id}/turns", response_model=TurnResponse, dependencies=auth,
              responses={**errors, 200: {"content": {"text/event-stream": {}},
                                         "description": "The answer and its trace record; with stream=true, "
                                                        "server-sent events, one per stage."}},
              tags=["conversations"])
    async def post_turn(conversation_id: str, body: TurnRequest,
                        stream: bool = Query(False, description="Send the turn's stages as server-sent events.")
                        ) -> Any:
        entry = svc.entry(conversation_id)
        if not stream:
            return _turn_response(await svc.turn(entry, body.text, body.critical))

        async def events() -> AsyncIterator[str]:
            yield _sse("accepted", {"conversation": entry.id, "text": body.text, "waiting": entry.lock.locked(),
                                    "live": True})  # the turn number is known once it runs (turns queue)
            stages: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
            task = asyncio.ensure_future(svc.turn(
                entry, body.text, body.critical,
                on_stage=lambda name, rec, rnd: stages.put_nowait((name, stage_event(name, rec, rnd)))))
            while not (task.done() and stages.empty()):
                getter = asyncio.ensure_future(stages.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield _sse(*getter.result())
                else:
                    getter.cancel()
            try:
                record = task.result()
            except RapoError as exc:
                yield _sse("error", {"detail": f"the team could not answer: {exc}"})
                return
            yield _sse("final", _turn_response(record).model_dump(mode="json"))

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Rapo-Stages": "live"})

    # -- OpenAI-compatible --------------------------------------------------------------------

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, tags=["openai"])
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=spec.name, created=int(app.state.started))])

    def prepare(req: ChatRequest) -> tuple[list[tuple[str, str]], str]:
        """Check a chat request before anything runs (so a stream's errors keep their status codes)."""
        if req.model != spec.name:
            raise ApiError(404, f"model {_short(req.model)!r} not found: this server serves the team "
                                f"{spec.name!r} (GET /v1/models)", field="model", code="model_not_found")
        total = 0
        for i, m in enumerate(req.messages):
            if isinstance(m.content, list) and any(p.type != "text" for p in m.content):
                raise ApiError(422, f"messages.{i}.content: only text parts are supported", field=f"messages.{i}")
            said = m.text()
            if len(said) > MAX_TEXT_CHARS:  # text parts that add up to more than one message may hold
                raise ApiError(422, f"messages.{i}.content is {len(said):,} characters; a message may have at most "
                                    f"{MAX_TEXT_CHARS:,} (as a REST turn)", field=f"messages.{i}")
            total += len(said)
        if total > MAX_CHAT_CHARS:
            raise ApiError(422, f"messages hold {total:,} characters in all; a request may carry at most "
                                f"{MAX_CHAT_CHARS:,}: send the conversation's earlier turns once, then only the new "
                                "ones (a continued chat is matched by its earlier messages)", field="messages")
        turns = [(m.role, m.text()) for m in req.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
            raise ApiError(422, "messages: the last user or assistant message must be a user message with text",
                           field="messages")
        return turns[:-1], turns[-1][1]

    async def openai_turn(req: ChatRequest, history: list[tuple[str, str]], text: str
                          ) -> tuple[StoredConversation, TurnRecord, str]:
        """Continue the conversation the earlier messages belong to, or start one that takes them into
        memory as observed turns (no model call for any of them); only the last message is answered."""

        async def answer(entry: StoredConversation, how: str) -> tuple[StoredConversation, TurnRecord, str]:
            record = await svc.orch.astep(entry.state, text, critical=req.rapo_critical)
            key = _prefix_key(req.model, history + [("user", text), ("assistant", record.answer)])
            await svc.saved(entry, {f"chat/{key}": {"conversation": entry.id, "turn": record.turn}})
            svc.prefixes[key] = (entry.id, record.turn)
            while len(svc.prefixes) > _PREFIX_CACHE:
                svc.prefixes.popitem(last=False)
            return entry, record, how

        async def run() -> tuple[StoredConversation, TurnRecord, str]:
            hit = svc.chat_hit(_prefix_key(req.model, history)) if history else None
            entry = svc._get(hit[0]) if hit else None
            if entry is not None and hit is not None:
                live = await svc.locked(entry)
                try:
                    if live.state.turn == hit[1]:  # nobody continued it differently meanwhile
                        return await answer(live, "continued")
                finally:
                    live.lock.release()
            entry = svc.new("openai")
            async with entry.lock:
                for role, said in history:
                    if said.strip():
                        await svc.orch.aobserve(entry.state, said, speaker=role)
                return await answer(entry, "observed" if history else "new")

        return await _shielded(run)

    def usage(record: TurnRecord) -> dict[str, int]:
        return {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.output_tokens,
                "total_tokens": record.prompt_tokens + record.output_tokens}

    @app.post("/v1/chat/completions", dependencies=auth, tags=["openai"],
              responses={404: {"description": "unknown model (team) name"}, 422: {"description": "bad request"}})
    async def chat_completions(req: ChatRequest) -> Any:
        """The team as one model. User turns run through a stored conversation: a request whose earlier
        messages equal an earlier request plus its answer continues that conversation; anything else
        takes the earlier messages into a new one as observed turns, with no model call for them; only
        the last message is answered."""
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        history, text = prepare(req)
        if not req.stream:
            entry, record, how = await openai_turn(req, history, text)
            return {"id": cid, "object": "chat.completion", "created": created, "model": spec.name,
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": record.answer}}],
                    "usage": usage(record),
                    "rapo": {"conversation": entry.id, "turn": record.turn, "agent": record.agent,
                             "value": record.value, "history": how}}
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": spec.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            return f"data: {json.dumps(body)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                entry, record, how = await openai_turn(req, history, text)
            except (ApiError, RapoError) as exc:
                yield f"data: {json.dumps(openai_error(str(exc), type_='server_error'))}\n\n"
                return
            words = record.answer.split(" ")
            for i in range(0, len(words), 4):
                piece = " ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "")
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if req.stream_options and req.stream_options.include_usage:
                tail = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": spec.name,
                        "choices": [], "usage": usage(record)}
                yield f"data: {json.dumps(tail)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- the viewer (static; it holds no data, the API calls it makes carry the token) ---------

    @app.get("/viewer", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC_DIR / "viewer.html", media_type="text/html")

    app.mount("/viewer/static", StaticFiles(directory=STATIC_DIR), name="viewer-static")
    app.state.started = time.time()
    return app
