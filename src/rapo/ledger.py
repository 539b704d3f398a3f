"""The facts ledger moved to `rapo.memory.ledger`; this name keeps older imports working."""

from rapo.memory.ledger import Fact, Ledger, Selection, segment_query

__all__ = ["Fact", "Selection", "Ledger", "segment_query"]
