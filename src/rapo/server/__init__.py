"""rapo as an HTTP service (needs the `serve` extras: fastapi, uvicorn)."""

from rapo.server.app import create_app, turn_stages
from rapo.server.serve import check_bind, is_loopback, serve
from rapo.server.store import ConversationStore, InMemoryStore, StoredConversation

__all__ = ["create_app", "serve", "check_bind", "is_loopback", "turn_stages", "ConversationStore",
           "InMemoryStore", "StoredConversation"]
