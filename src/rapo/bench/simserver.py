"""The simulated model served as an OpenAI-compatible endpoint (`rapo sim-server`).

Same replies as the in-process backend for the same seed and profile: a real client, the network
path and the answer parsing can then be checked against the in-process run, answer for answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from rapo.types import Message


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | None = ""
    name: str | None = None


class ChatRequest(BaseModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    temperature: float | None = None


def create_app(profile: str = "default", seed: int = 0) -> Any:
    from fastapi import FastAPI, HTTPException

    from rapo.backends.sim import SimBackend

    sim = SimBackend(profile=profile, seed=seed, clock="virtual")
    app = FastAPI(title="rapo simulated model", version="1")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "simulator": "rapo-sim", "profile": profile, "seed": seed}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        from rapo.backends.sim import DEFAULT_SKILLS

        names = sorted(DEFAULT_SKILLS)
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "rapo-sim"} for n in names]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> dict[str, Any]:
        if req.stream:
            raise HTTPException(400, "stream=true is not supported by the simulated model; send stream=false")
        role_map = {"developer": "system", "tool": "user"}
        messages = [Message(role=role_map.get(m.role, m.role), content=m.content or "", name=m.name)  # type: ignore[arg-type]
                    for m in req.messages]
        c = await sim.complete(messages, model=req.model, max_tokens=req.max_tokens, sample=req.seed or 0)
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:16],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": c.text}}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.output_tokens,
                      "total_tokens": c.prompt_tokens + c.output_tokens},
            "rapo_sim": {"latency_s": c.latency_s},
        }

    return app
