"""Checkpoints in any database SQLAlchemy speaks (PostgreSQL, MySQL, SQLite, ...), so workers on several
machines can share one store and any of them can resume any run.

Same schema, versioning and refusals as the native SQLite store: a database with other tables but no
`rapo_meta` is refused, and so is a store written by a newer rapo. Messages never show the password.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any, Iterable

from rapo.store.base import APP, SCHEMA_VERSION, check_meta, quarantine_doc
from rapo.types import RapoError

MAX_RUN_ID = 191  # MySQL keys are at most 3072 bytes: (191 + 512) utf8mb4 characters fit
MAX_KEY = 512
_ESCAPE = "!"  # LIKE escape character: not a backslash, whose meaning in literals differs by database

_INSTALL = {  # driver module -> what to install
    "psycopg": "pip install 'rapo[sql]' (or pip install 'psycopg[binary]')",
    "psycopg2": "pip install psycopg2-binary (or use postgresql+psycopg:// with pip install 'psycopg[binary]')",
    "MySQLdb": "pip install mysqlclient (or use mysql+pymysql:// with pip install pymysql)",
    "pymysql": "pip install pymysql",
}


def mask_url(url: str) -> str:
    """The URL with its password (userinfo or `password=` query parameter) replaced by ***."""
    text = re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", str(url))
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", text)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _driver_url(url: str) -> str:
    """Pick an installed driver for a URL that names none: `postgresql://` uses psycopg 3 unless psycopg2 is
    there, `mysql://` uses PyMySQL when mysqlclient is missing."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return ("postgresql" if _has("psycopg2") else "postgresql+psycopg") + sep + rest
    if scheme == "mysql" and not _has("MySQLdb") and _has("pymysql"):
        return "mysql+pymysql" + sep + rest
    return url


class SQLAlchemyStore:
    """The `Store` protocol on a SQLAlchemy engine: one row per document, upserts in one transaction."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = mask_url(url)
        self._may_create = create
        try:
            import sqlalchemy as sa
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError
        except ModuleNotFoundError:
            raise RapoError(f"the store {self.url} needs SQLAlchemy: pip install 'rapo[sql]'") from None
        self._sa = sa
        try:
            parsed = make_url(_driver_url(str(url)))
        except ArgumentError:
            raise RapoError(f"{self.url} is not a database URL; use e.g. postgresql+psycopg://user@host/db, "
                            "mysql+pymysql://user@host/db or sqlite:///path.db") from None
        self._password = parsed.password
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            from rapo.store.sqlite import probe

            probe(Path(parsed.database))  # a damaged file is refused before any writable connection
            if not create and not Path(parsed.database).exists():
                raise RapoError(f"there is no checkpoint store at {parsed.database}; check the --store URL "
                                "(nothing was created)")
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            connect_args["timeout"] = 60  # wait for another process's write, as the native store does
        elif "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = 10  # an unreachable server fails in seconds, not minutes
        try:
            self._engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
        except NoSuchModuleError:
            raise RapoError(f"{self.url}: SQLAlchemy has no database dialect {parsed.drivername!r}; use "
                            "postgresql+psycopg://, mysql+pymysql:// or sqlite:///") from None
        except ImportError as err:
            missing = err.name or str(err)
            hint = _INSTALL.get(missing.split(".")[0], f"pip install the {parsed.drivername} driver")
            raise RapoError(f"the store {self.url} needs the database driver {missing!r}, which is not "
                            f"installed: {hint}") from None
        self._kind = parsed.get_backend_name() if parsed.get_backend_name() in ("postgresql", "sqlite", "mysql",
                                                                                 "mariadb") else "generic"
        if self._kind == "sqlite":
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        self._meta, self._docs = _tables(sa)
        try:
            self._open()
        except sa.exc.SQLAlchemyError as err:
            self._engine.dispose()
            if self._kind == "sqlite":
                raise RapoError(f"{self.url} is not a rapo checkpoint store ({self._reason(err)}); "
                                "pass another --store path") from None
            raise RapoError(f"cannot use the store {self.url}: {self._reason(err)}; check that the server "
                            "runs and the URL (host, port, user, database) is right") from None
        except BaseException:
            self._engine.dispose()
            raise

    def _reason(self, err: Exception) -> str:
        """The driver's first line, without the password (some drivers echo the connection string)."""
        lines = str(getattr(err, "orig", None) or err).strip().splitlines()
        text = mask_url(lines[0] if lines else type(err).__name__)
        return text.replace(self._password, "***") if self._password else text

    # -- schema ------------------------------------------------------------------------------------

    def _open(self) -> None:
        sa = self._sa
        tables = set(sa.inspect(self._engine).get_table_names())
        if "rapo_meta" not in tables:
            if not self._may_create:
                raise RapoError(f"{self.url} holds no rapo checkpoint store; check the --store URL "
                                "(nothing was created)")
            if tables:
                raise RapoError(f"{self.url} is a database but not a rapo checkpoint store "
                                f"(tables: {', '.join(sorted(tables))}); pass another --store URL")
            try:
                with self._engine.begin() as conn:
                    self._meta.create(conn)
                    self._docs.create(conn)
                    conn.execute(self._meta.insert(), [{"key": "app", "value": APP},
                                                       {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            except sa.exc.SQLAlchemyError:
                # another process may have created it meanwhile; if not, the error stands
                if "rapo_meta" not in set(sa.inspect(self._engine).get_table_names()):
                    raise
        self._check_version()

    def _check_version(self) -> None:
        with self._engine.connect() as conn:
            meta = {k: v for k, v in conn.execute(self._sa.select(self._meta.c.key, self._meta.c.value))}
        check_meta(meta, str(self.url))

    # -- documents ---------------------------------------------------------------------------------

    def put(self, run_id: str, key: str, doc: dict[str, Any]) -> None:
        self.put_many(run_id, {key: doc})

    def put_many(self, run_id: str, docs: dict[str, dict[str, Any]], delete: Iterable[str] = ()) -> None:
        """All documents land together or none does (one transaction): a transition's checkpoint is
        its conversation and the team's learned counts at once. `delete` keys go in the same one."""
        if len(run_id) > MAX_RUN_ID:
            raise RapoError(f"run id {run_id[:40]!r}... is {len(run_id)} characters; use at most {MAX_RUN_ID}")
        for k in docs:
            if len(k) > MAX_KEY:
                raise RapoError(f"document key {k[:40]!r}... is {len(k)} characters; use at most {MAX_KEY}")
        rows = [{"run_id": run_id, "key": k, "doc": json.dumps(d, separators=(",", ":"))} for k, d in docs.items()]
        gone = list(delete)
        if not rows and not gone:
            return
        with self._engine.begin() as conn:
            if gone:
                conn.execute(self._sa.delete(self._docs).where(self._docs.c.run_id == run_id,
                                                               self._docs.c.key.in_(gone)))
            if rows:
                self._upsert(conn, rows)

    def _upsert(self, conn: Any, rows: list[dict[str, str]]) -> None:
        """Insert or replace, in the caller's transaction, with each dialect's own statement."""
        sa, docs = self._sa, self._docs
        if self._kind in ("postgresql", "sqlite"):
            if self._kind == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(docs)
            conn.execute(stmt.on_conflict_do_update(index_elements=[docs.c.run_id, docs.c.key],
                                                    set_={"doc": stmt.excluded.doc}), rows)
        elif self._kind in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            stmt = mysql_insert(docs)
            conn.execute(stmt.on_duplicate_key_update(doc=stmt.inserted.doc), rows)
        else:
            conn.execute(sa.delete(docs).where(docs.c.run_id == rows[0]["run_id"],
                                               docs.c.key.in_([r["key"] for r in rows])))
            conn.execute(sa.insert(docs), rows)

    def get_raw(self, run_id: str, key: str) -> str | None:
        docs = self._docs
        with self._engine.connect() as conn:
            return conn.execute(self._sa.select(docs.c.doc).where(docs.c.run_id == run_id, docs.c.key == key)
                                ).scalar_one_or_none()

    def swap(self, run_id: str, key: str, expected: str | None, new: str | None) -> bool:
        """Compare-and-swap on the stored text: an UPDATE/DELETE that matches the old text, or an
        INSERT that the primary key refuses when another process got there first."""
        sa, docs = self._sa, self._docs
        where = (docs.c.run_id == run_id, docs.c.key == key)
        try:
            with self._engine.begin() as conn:
                if expected is None:
                    if new is None:
                        return conn.execute(sa.select(docs.c.key).where(*where)).first() is None
                    conn.execute(sa.insert(docs), [{"run_id": run_id, "key": key, "doc": new}])
                    return True
                if new is None:
                    return conn.execute(sa.delete(docs).where(*where, docs.c.doc == expected)).rowcount == 1
                return conn.execute(sa.update(docs).where(*where, docs.c.doc == expected).values(doc=new)
                                    ).rowcount == 1
        except sa.exc.IntegrityError:
            return False

    def quarantine(self, run_id: str, key: str, reason: str) -> str:
        """Move a damaged document to `quarantine/<key>` (its text kept as it was), so the rest loads."""
        target = f"quarantine/{key}"
        self.put_many(run_id, {target: quarantine_doc(key, self.get_raw(run_id, key), reason)}, delete=[key])
        return target

    def get(self, run_id: str, key: str) -> dict[str, Any] | None:
        text = self.get_raw(run_id, key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise RapoError(f"{self.url}: the checkpoint {run_id}/{key} is corrupt ({err})") from None

    def keys(self, run_id: str, prefix: str = "") -> list[str]:
        docs = self._docs
        pattern = prefix.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_") + "%"
        with self._engine.connect() as conn:
            found = conn.execute(self._sa.select(docs.c.key).where(
                docs.c.run_id == run_id, docs.c.key.like(pattern, escape=_ESCAPE))).scalars().all()
        # LIKE ignores case on some databases (SQLite, MySQL's default collations): keep exact matches,
        # in code-point order whatever the database's collation
        return sorted(k for k in found if k.startswith(prefix))

    def runs(self) -> list[str]:
        with self._engine.connect() as conn:
            return sorted(conn.execute(self._sa.select(self._docs.c.run_id).distinct()).scalars().all())

    def delete_run(self, run_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(self._sa.delete(self._docs).where(self._docs.c.run_id == run_id))

    def close(self) -> None:
        self._engine.dispose()


def _tables(sa: Any) -> tuple[Any, Any]:
    """The schema of the native store, with lengths and a binary collation on MySQL (whose default
    collations would make 'A' and 'a' the same key)."""
    from sqlalchemy.dialects import mysql

    def name(length: int) -> Any:
        return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")

    md = sa.MetaData()
    meta = sa.Table("rapo_meta", md, sa.Column("key", name(64), primary_key=True),
                    sa.Column("value", sa.String(255), nullable=False))
    docs = sa.Table("docs", md, sa.Column("run_id", name(MAX_RUN_ID), primary_key=True),
                    sa.Column("key", name(MAX_KEY), primary_key=True),
                    sa.Column("doc", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False))
    return meta, docs


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL and NORMAL sync, as the native store: readers never block the writer."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
