"""A real loopback HTTP server speaking /v1/chat/completions, scripted per request.

Tests push behaviours onto a queue; each request pops one (an empty queue answers "ok"), so a
test controls exactly which failures a client meets and can count the requests it made.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal[
    "ok", "rate_limit", "server_error", "drop", "malformed_json", "no_choices", "empty_content",
    "unauthorized", "not_found",
]


@dataclass(frozen=True)
class Behaviour:
    kind: Kind = "ok"
    text: str = "Answer: 42"
    usage: tuple[int, int] | None = (11, 3)  # (prompt_tokens, completion_tokens) or no usage
    retry_after: str | None = "0"
    delay_s: float = 0.0  # before answering, to test timeouts and concurrency


@dataclass
class ServerState:
    queue: deque[Behaviour] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    default_delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: "FakeOpenAIServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence per-request logging in test output."""

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(raw or b"{}")
        with state.lock:
            state.requests.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            b = state.queue.popleft() if state.queue else Behaviour()
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            time.sleep(b.delay_s or state.default_delay_s)
            self._respond(b, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer
        finally:
            with state.lock:
                state.in_flight -= 1

    def _respond(self, b: Behaviour, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if b.kind == "ok" or b.kind == "empty_content":
            reply: dict[str, Any] = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": b.text if b.kind == "ok" else ""},
                }],
            }
            if b.usage is not None:
                p, c = b.usage
                reply["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            self._send_json(200, reply)
        elif b.kind == "no_choices":
            self._send_json(200, {"id": "x", "object": "chat.completion", "created": 0,
                                  "model": model, "choices": []})
        elif b.kind == "malformed_json":
            self._send_json(200, b'{"id": "x", "choices": [ {"message": ')
        elif b.kind == "rate_limit":
            extra = {"Retry-After": b.retry_after} if b.retry_after is not None else {}
            self._send_json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                            extra)
        elif b.kind == "server_error":
            self._send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
        elif b.kind == "unauthorized":
            self._send_json(401, {"error": {"message": "Incorrect API key provided",
                                            "type": "invalid_request_error"}})
        elif b.kind == "not_found":
            self._send_json(404, {"error": {"message": f"The model `{model}` does not exist",
                                            "type": "invalid_request_error"}})
        elif b.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = ServerState()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )  # short poll: stop() returns fast

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *behaviours: Behaviour | Kind) -> None:
        with self.state.lock:
            self.state.queue.extend(b if isinstance(b, Behaviour) else Behaviour(kind=b)
                                    for b in behaviours)

    @property
    def request_count(self) -> int:
        with self.state.lock:
            return len(self.state.requests)

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
