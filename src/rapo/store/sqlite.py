"""SQLite checkpoint store: one file, WAL journal, a versioned schema, atomic multi-document writes.

A file that is not SQLite, or a SQLite database that is not a rapo store, or a store written by a
newer rapo, is refused with a message: a checkpoint is never reused silently.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from rapo.store.base import Store
from rapo.store.base import APP, SCHEMA_VERSION, check_meta
from rapo.types import RapoError



class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
            self._wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.OperationalError as err:
            raise RapoError(f"cannot open the checkpoint store {self.path}: {err}") from None
        except sqlite3.DatabaseError as err:
            raise RapoError(f"{self.path} is not a rapo checkpoint store (not an SQLite database: {err}); "
                            "pass another --store path") from None
        if tables and "rapo_meta" not in tables:
            raise RapoError(f"{self.path} is an SQLite database but not a rapo checkpoint store "
                            f"(tables: {', '.join(sorted(tables)) or 'none'}); pass another --store path")
        if "rapo_meta" not in tables:
            self._create()
        self._check_version()

    def _wal(self) -> None:
        """Switching to WAL takes the file exclusively for a moment, and SQLite does not wait for it:
        with several processes opening one store at once (a distributed run's shards), try again."""
        for attempt in range(200):
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 199:
                    raise
                time.sleep(0.05)

    def _create(self) -> None:
        """Idempotent and in one immediate transaction: several processes (shards of a distributed
        run) may open a new store at the same moment."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("CREATE TABLE IF NOT EXISTS rapo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db.execute("CREATE TABLE IF NOT EXISTS docs (run_id TEXT NOT NULL, key TEXT NOT NULL, "
                                 "doc TEXT NOT NULL, PRIMARY KEY (run_id, key))")
                self._db.executemany("INSERT OR IGNORE INTO rapo_meta VALUES (?, ?)",
                                     [("app", APP), ("schema_version", str(SCHEMA_VERSION))])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _check_version(self) -> None:
        check_meta(dict(self._db.execute("SELECT key, value FROM rapo_meta").fetchall()), str(self.path))

    # -- documents ---------------------------------------------------------------------------------

    def put(self, run_id: str, key: str, doc: dict[str, Any]) -> None:
        self.put_many(run_id, {key: doc})

    def put_many(self, run_id: str, docs: dict[str, dict[str, Any]]) -> None:
        """All documents land together or none does (one transaction): a transition's checkpoint is
        its conversation and the team's learned counts at once."""
        rows = [(run_id, k, json.dumps(d, separators=(",", ":"))) for k, d in docs.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, run_id: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM docs WHERE run_id=? AND key=?", (run_id, key)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError as err:
            raise RapoError(f"{self.path}: the checkpoint {run_id}/{key} is corrupt ({err})") from None

    def keys(self, run_id: str, prefix: str = "") -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM docs WHERE run_id=? AND key LIKE ? ESCAPE '\\' ORDER BY key",
                                    (run_id, prefix.replace("%", "\\%").replace("_", "\\_") + "%")).fetchall()
        return [r[0] for r in rows]

    def runs(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT run_id FROM docs ORDER BY run_id")]

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM docs WHERE run_id=?", (run_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(url: str | Path) -> Store:
    """`sqlite:///path.db` or a plain path: this native store (no SQLAlchemy needed). Any other URL
    (postgresql+psycopg://, mysql://, sqlite+pysqlite:///...) goes to SQLAlchemy (the `sql` extra)."""
    text = str(url)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text[len("sqlite:///"):])
    if "://" in text:
        from rapo.store.sql import SQLAlchemyStore

        return SQLAlchemyStore(text)
    return SQLiteStore(text)
