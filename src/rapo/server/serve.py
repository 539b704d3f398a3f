"""`rapo serve`: run the app with uvicorn, refusing to expose an unauthenticated team off loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rapo.types import RapoError


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_bind(host: str, token: str | None) -> None:
    """Binding beyond loopback without a token would hand the team (and its backend keys) to anyone."""
    if not is_loopback(host) and not (token and token.strip()):
        raise RapoError(
            f"refusing to listen on {host!r} without a token: anything but loopback (127.0.0.1, ::1, "
            "localhost) is reachable by other machines. Pass --token <secret> (clients then send "
            "'Authorization: Bearer <secret>') or bind to 127.0.0.1."
        )


def serve(team: Path, backend: str | None, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, *, store: str | None = None, max_conversations: int | None = None,
          force: bool = False) -> None:
    """Build the app for the team file and serve it until interrupted; with `store` (a `rapo.store`
    URL or path), conversations are written through to it and loaded from it on start.
    `max_conversations` bounds those in memory: without a store, new ones past it are refused; with
    one, idle ones are unloaded (never deleted) and loaded again when used."""
    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise RapoError(f"port {port} is out of range; use 1-65535 (0 picks a free one)")
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise RapoError("rapo serve needs the server extras: pip install 'rapo[serve]'") from None
    from rapo.server.app import create_app
    from rapo.server.durable import DurableConversationStore
    from rapo.server.store import DEFAULT_MAX_CONVERSATIONS
    from rapo.store.sql import mask_url

    limit = max_conversations or DEFAULT_MAX_CONVERSATIONS
    if limit < 1:
        raise RapoError(f"--max-conversations {limit}: allow at least 1")
    durable = DurableConversationStore.open(store, max_conversations=limit, force=force) if store else None
    try:
        app = create_app(team, backend=backend, token=token, store=durable, max_conversations=limit)
        shown = f"[{host}]" if ":" in host else host
        if durable is not None and store:
            kept = (f", {len(durable)} conversation(s) in {mask_url(store)}, up to {limit:,} loaded at once"
                    + (f"; {len(durable.quarantined)} damaged document(s) quarantined, see the warnings above"
                       if durable.quarantined else ""))
        else:
            kept = f", in memory only: at most {limit:,} conversations, then new ones are refused"
        print(f"rapo: serving team {app.state.service.team.name!r} on http://{shown}:{port} "
              f"(docs /docs, viewer /viewer, auth {'on' if token else 'off'}{kept})", flush=True)
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    finally:
        if durable is not None:
            durable.close()


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 15.0
                    ) -> Iterator[str]:
    """Run `app` with uvicorn in a daemon thread for as long as the block lasts; yields its base URL.
    For tests and notebooks: the port is picked free when 0, and the server is stopped on exit."""
    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name=f"rapo-server-{port}")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        thread.join(timeout=5)
        raise RapoError(f"the server did not start on {host}:{port} within {timeout_s:.0f} s")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
