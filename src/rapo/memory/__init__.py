"""A conversation's memory: what was said (passages, retrieved lexically and by embedding) and what
is current (the facts ledger), and the one question a step asks of it: what goes into my prompt?"""

from rapo.memory.index import EmbeddingIndex, LexicalIndex, Retriever, fuse
from rapo.memory.ledger import Fact, Ledger, Selection
from rapo.memory.memory import Memory
from rapo.memory.passages import Passage, split_passages, split_speakers
from rapo.memory.selection import ContextItem, SelectionConfig, select_context

__all__ = [
    "ContextItem", "EmbeddingIndex", "Fact", "Ledger", "LexicalIndex", "Memory", "Passage", "Retriever",
    "Selection", "SelectionConfig", "fuse", "select_context", "split_passages", "split_speakers",
]
