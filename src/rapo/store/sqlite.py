"""SQLite checkpoint store: one file, WAL journal, a versioned schema, atomic multi-document writes.

A file that is not SQLite, or a SQLite database that is not a rapo store, or a store written by a
newer rapo, is refused with a message: a checkpoint is never reused silently. So is a damaged file
(failing SQLite's integrity check, or an empty main file beside a write-ahead log that holds data):
it is refused with the way to recover it, never opened as an empty store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from rapo.store.base import APP, SCHEMA_VERSION, Store, check_meta, quarantine_doc
from rapo.types import RapoError

T = TypeVar("T")
_HEADER = b"SQLite format 3\x00"


def _recovery(path: Path) -> str:
    return (f"keep {path} and any {path.name}-wal / {path.name}-shm beside it as they are (copy all of them "
            f"somewhere safe first); recover what SQLite can read with `sqlite3 {path} '.recover' | sqlite3 "
            f"{path.with_suffix('.recovered.db')}` and start with --store {path.with_suffix('.recovered.db')}, "
            "or restore the file from a backup")


def damaged_message(path: Path, err: Exception) -> str:
    return (f"the checkpoint store {path} is damaged ({err}); it was not opened and nothing in it "
            f"was changed. To recover: {_recovery(path)}")


def file_header(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_HEADER))
    except OSError:
        return b""


def refuse_lost_wal(path: Path) -> None:
    """SQLite opens an empty or missing main file as a new database and discards the WAL beside it:
    the committed data in that log would be lost without a word. Refuse instead."""
    wal = path.with_name(path.name + "-wal")
    try:
        wal_bytes = wal.stat().st_size
    except OSError:
        return
    main_bytes = path.stat().st_size if path.exists() else -1
    if wal_bytes > 0 and main_bytes < len(_HEADER):
        state = "is missing" if main_bytes < 0 else f"is {main_bytes} bytes long"
        raise RapoError(
            f"the checkpoint store {path} {state} but its write-ahead log {wal.name} holds "
            f"{wal_bytes} bytes: the file was truncated or copied without its log, and opening it would "
            f"discard that data, so it was not opened. Restore {path.name} from where it was copied "
            f"or from a backup and keep {wal.name} beside it; to start afresh instead, move both away")


def probe(path: Path) -> None:
    """Check an existing file through a read-only connection before anything opens it for writing:
    a writable connection would, on closing, fold the write-ahead log into a damaged file and delete
    the log, changing what a recovery needs. Refuses a damaged or foreign file with a message."""
    refuse_lost_wal(path)
    header = file_header(path)
    if not header:
        return
    try:
        ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return  # not readable this way (permissions, no -shm possible): the writable open decides
    try:
        tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "rapo_meta" in tables:
            rows = [r[0] for r in ro.execute("PRAGMA quick_check(5)").fetchall()]
            if rows != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(str(r) for r in rows))
    except sqlite3.OperationalError:
        return  # e.g. locked by a writer: the writable open waits and decides
    except sqlite3.DatabaseError as err:
        if header.startswith(_HEADER):
            raise RapoError(damaged_message(path, err)) from None
        raise RapoError(f"{path} is not a rapo checkpoint store (not an SQLite database: {err}); "
                        "pass another --store path") from None
    finally:
        ro.close()


class SQLiteStore:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        probe(self.path)
        if not create and not self.path.exists():
            raise RapoError(f"there is no checkpoint store at {self.path}; check the --store path "
                            "(nothing was created)")
        header = file_header(self.path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        except sqlite3.Error as err:
            raise RapoError(f"cannot open the checkpoint store {self.path}: {err}") from None
        try:
            self._wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "rapo_meta" in tables:
                self._check_integrity()
        except sqlite3.OperationalError as err:
            self._db.close()
            raise RapoError(f"cannot open the checkpoint store {self.path}: {err}") from None
        except sqlite3.DatabaseError as err:
            self._db.close()
            if header.startswith(_HEADER):
                raise RapoError(self._damaged_message(err)) from None
            raise RapoError(f"{self.path} is not a rapo checkpoint store (not an SQLite database: {err}); "
                            "pass another --store path") from None
        except RapoError:
            self._db.close()
            raise
        if tables and "rapo_meta" not in tables:
            self._db.close()
            raise RapoError(f"{self.path} is an SQLite database but not a rapo checkpoint store "
                            f"(tables: {', '.join(sorted(tables)) or 'none'}); pass another --store path")
        if "rapo_meta" not in tables:
            self._create()
        self._check_version()

    # -- opening -----------------------------------------------------------------------------------

    def _check_integrity(self) -> None:
        """A quick structural check (pages, b-trees; not index contents): a damaged file is refused on
        open rather than failing half-way through a run or a restore."""
        rows = [r[0] for r in self._db.execute("PRAGMA quick_check(5)").fetchall()]
        if rows != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(str(r) for r in rows))

    def _damaged_message(self, err: Exception) -> str:
        return damaged_message(self.path, err)

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
        def create() -> None:
            self._db.execute("CREATE TABLE IF NOT EXISTS rapo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS docs (run_id TEXT NOT NULL, key TEXT NOT NULL, "
                             "doc TEXT NOT NULL, PRIMARY KEY (run_id, key))")
            self._db.executemany("INSERT OR IGNORE INTO rapo_meta VALUES (?, ?)",
                                 [("app", APP), ("schema_version", str(SCHEMA_VERSION))])

        self._transaction(create)

    def _check_version(self) -> None:
        check_meta(dict(self._run(lambda: self._db.execute("SELECT key, value FROM rapo_meta").fetchall())),
                   str(self.path))

    # -- every statement goes through here, so a file damaged while open gives a message too ---------

    def _run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            try:
                return fn()
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as err:
                raise RapoError(self._damaged_message(err)) from None

    def _transaction(self, fn: Callable[[], T]) -> T:
        def txn() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self._db.execute("COMMIT")
                return out
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        return self._run(txn)

    # -- documents ---------------------------------------------------------------------------------

    def put(self, run_id: str, key: str, doc: dict[str, Any]) -> None:
        self.put_many(run_id, {key: doc})

    def put_many(self, run_id: str, docs: dict[str, dict[str, Any]], delete: Iterable[str] = ()) -> None:
        """All documents land together or none does (one transaction): a transition's checkpoint is
        its conversation and the team's learned counts at once. `delete` keys go in the same one."""
        rows = [(run_id, k, json.dumps(d, separators=(",", ":"))) for k, d in docs.items()]
        gone = [(run_id, k) for k in delete]

        def write() -> None:
            if gone:
                self._db.executemany("DELETE FROM docs WHERE run_id=? AND key=?", gone)
            self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", rows)

        self._transaction(write)

    def get_raw(self, run_id: str, key: str) -> str | None:
        row = self._run(lambda: self._db.execute("SELECT doc FROM docs WHERE run_id=? AND key=?",
                                                 (run_id, key)).fetchone())
        return None if row is None else str(row[0])

    def get(self, run_id: str, key: str) -> dict[str, Any] | None:
        text = self.get_raw(run_id, key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise RapoError(f"{self.path}: the checkpoint {run_id}/{key} is corrupt ({err})") from None

    def swap(self, run_id: str, key: str, expected: str | None, new: str | None) -> bool:
        """Compare-and-swap on a document's stored text (None: absent): the primitive a lease needs."""
        def cas() -> bool:
            row = self._db.execute("SELECT doc FROM docs WHERE run_id=? AND key=?", (run_id, key)).fetchone()
            if (None if row is None else str(row[0])) != expected:
                return False
            if new is None:
                self._db.execute("DELETE FROM docs WHERE run_id=? AND key=?", (run_id, key))
            else:
                self._db.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", (run_id, key, new))
            return True

        return self._transaction(cas)

    def quarantine(self, run_id: str, key: str, reason: str) -> str:
        """Move a damaged document to `quarantine/<key>` (its text kept as it was), so the rest loads."""
        raw = self.get_raw(run_id, key)
        target = f"quarantine/{key}"
        self.put_many(run_id, {target: quarantine_doc(key, raw, reason)}, delete=[key])
        return target

    def keys(self, run_id: str, prefix: str = "") -> list[str]:
        rows = self._run(lambda: self._db.execute(
            "SELECT key FROM docs WHERE run_id=? AND key LIKE ? ESCAPE '\\' ORDER BY key",
            (run_id, prefix.replace("%", "\\%").replace("_", "\\_") + "%")).fetchall())
        return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE ignores ASCII case

    def runs(self) -> list[str]:
        return self._run(lambda: [r[0] for r in self._db.execute("SELECT DISTINCT run_id FROM docs ORDER BY run_id")])

    def delete_run(self, run_id: str) -> None:
        self._run(lambda: self._db.execute("DELETE FROM docs WHERE run_id=?", (run_id,)))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(url: str | Path, *, create: bool = True) -> Store:
    """`sqlite:///path.db` or a plain path: this native store (no SQLAlchemy needed). Any other URL
    (postgresql+psycopg://, mysql://, sqlite+pysqlite:///...) goes to SQLAlchemy (the `sql` extra).
    With `create=False` a store that does not exist yet is refused instead of created empty."""
    text = str(url)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text[len("sqlite:///"):], create=create)
    if "://" in text:
        from rapo.store.sql import SQLAlchemyStore

        return SQLAlchemyStore(text, create=create)
    return SQLiteStore(text, create=create)
