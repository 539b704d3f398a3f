"""Durable checkpoints behind one small protocol; SQLite is the default implementation."""

from rapo.store.base import Store
from rapo.store.sqlite import SQLiteStore, open_store

__all__ = ["SQLiteStore", "Store", "open_store"]
