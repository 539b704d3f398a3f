"""rapo as an HTTP service (needs the `serve` extras: fastapi, uvicorn)."""

from rapo.server.app import create_app, stage_event
from rapo.server.serve import check_bind, is_loopback, serve, serve_in_thread
from rapo.server.store import ConversationStore, InMemoryStore, StoredConversation

__all__ = ["create_app", "serve", "serve_in_thread", "check_bind", "is_loopback", "stage_event", "ConversationStore",
           "InMemoryStore", "StoredConversation"]
