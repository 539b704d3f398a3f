"""SQLite checkpoint store: one file, WAL journal, a versioned schema, atomic multi-document writes.

A file that is not SQLite, or a SQLite database that is not a rapo store, or a store written by a
newer rapo, is refused with a message: a checkpoint is never reused silently.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from rapo.types import RapoError

SCHEMA_VERSION = 1
APP = "rapo-checkpoints"


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            raise RapoError(f"{self.path} is not a rapo checkpoint store (not an SQLite database: {err}); "
                            "pass another --store path") from None
        if existed and "rapo_meta" not in tables:
            raise RapoError(f"{self.path} is an SQLite database but not a rapo checkpoint store "
                            f"(tables: {', '.join(sorted(tables)) or 'none'}); pass another --store path")
        if "rapo_meta" not in tables:
            self._create()
        self._check_version()

    def _create(self) -> None:
        with self._lock:
            self._db.executescript(
                """
                BEGIN;
                CREATE TABLE rapo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE docs (run_id TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
                                   PRIMARY KEY (run_id, key));
                COMMIT;
                """
            )
            self._db.executemany("INSERT INTO rapo_meta VALUES (?, ?)",
                                 [("app", APP), ("schema_version", str(SCHEMA_VERSION))])

    def _check_version(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM rapo_meta").fetchall())
        if meta.get("app") != APP:
            raise RapoError(f"{self.path} is not a rapo checkpoint store (app {meta.get('app')!r})")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise RapoError(f"{self.path} was written by a newer rapo (schema {version}, this one reads "
                            f"{SCHEMA_VERSION}); upgrade rapo to resume it")
        if version < 1:
            raise RapoError(f"{self.path} has no usable schema version ({version})")

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


def open_store(url: str | Path) -> SQLiteStore:
    """`sqlite:///path.db` or a plain path. Other SQLAlchemy URLs come with the durable-runs work."""
    text = str(url)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text[len("sqlite:///"):])
    if "://" in text:
        raise RapoError(f"store URL {text!r}: only sqlite:///path.db (or a file path) is supported so far")
    return SQLiteStore(text)
