"""Servers the tests start on 127.0.0.1 (and stop): one way to pick a port and wait for start-up."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(asgi: Any, port: int) -> tuple[Any, threading.Thread]:
    """An ASGI app under uvicorn in a thread; stop it with `server.should_exit = True; thread.join()`."""
    uvicorn = pytest.importorskip("uvicorn")
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the loopback server did not start"
    return server, thread
