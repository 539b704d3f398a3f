"""Durable checkpoints behind one small protocol; SQLite is the default, any SQLAlchemy database the option
(`rapo.store.sql` imports SQLAlchemy only when such a store is opened)."""

from rapo.store.base import Store
from rapo.store.sql import SQLAlchemyStore
from rapo.store.sqlite import SQLiteStore, open_store

__all__ = ["SQLAlchemyStore", "SQLiteStore", "Store", "open_store"]
