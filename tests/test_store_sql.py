"""The SQLAlchemy store keeps the store contract on SQLite and on a real PostgreSQL server, which the
session fixture starts from the system's binaries (the PostgreSQL tests skip, saying why, without them)."""

from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sa = pytest.importorskip("sqlalchemy")

from rapo.store import SQLAlchemyStore, SQLiteStore, open_store  # noqa: E402
from rapo.store.sql import mask_url  # noqa: E402
from rapo.types import RapoError  # noqa: E402
from test_crash_resume import _rapo  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


def _server_user() -> str | None:
    """initdb refuses root: as root, run the server as `postgres` (Debian's package makes it) or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 with trust auth; yields the admin URL without a database."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    user = _server_user()
    as_user = ["runuser", "-u", user, "--"] if user else []
    root = Path(tempfile.mkdtemp(prefix="rapo-pg-"))
    if user:
        shutil.chown(root, user)
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}{log}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "rapo", "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -F", "start")
    try:
        yield f"postgresql+psycopg://rapo@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_db_numbers = itertools.count()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's server for each test."""
    name = f"t{os.getpid()}_{next(_db_numbers)}"
    engine = sa.create_engine(f"{pg_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return f"{pg_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'x.db'}"
    return request.getfixturevalue("pg_url")


def _sql(url: str, statement: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


# -- the contract, on SQLite and PostgreSQL --------------------------------------------------------


def test_put_get_runs_delete_and_reopen(url):
    store = open_store(url)
    assert isinstance(store, SQLAlchemyStore)
    assert store.get("r1", "a") is None and store.runs() == [] and store.keys("r1") == []
    store.put("r1", "a", {"v": 1, "text": "naïve ✓"})
    store.put("r1", "a", {"v": 2})  # replaces
    store.put_many("r2", {"b": {"n": [1, 2.5, None]}, "c": {}})
    store.close()

    store = open_store(url)  # what was written is still there
    assert store.get("r1", "a") == {"v": 2}
    assert store.get("r2", "b") == {"n": [1, 2.5, None]} and store.get("r2", "c") == {}
    assert store.get("r1", "b") is None  # documents belong to their run
    assert store.runs() == ["r1", "r2"]
    store.delete_run("r1")
    assert store.runs() == ["r2"] and store.get("r1", "a") is None and store.keys("r2") == ["b", "c"]
    store.close()


def test_keys_prefix_is_literal(url):
    store = open_store(url)
    names = ["a%b/1", "axb/2", "a_b/3", "aXb/4", "A%b/5", "a!%b/6", "a\\b/7", "zz"]
    store.put_many("r", {k: {"k": k} for k in names})
    store.put("other", "a%b/9", {})
    assert store.keys("r", "a%b") == ["a%b/1"]  # % is not a wildcard, and case counts
    assert store.keys("r", "a_b") == ["a_b/3"]  # nor is _
    assert store.keys("r", "a!%") == ["a!%b/6"]  # nor does the escape character escape anything
    assert store.keys("r", "a\\") == ["a\\b/7"]
    assert store.keys("r", "A") == ["A%b/5"]
    assert store.keys("r") == sorted(names)
    assert store.keys("r", "nothing") == [] and store.keys("nobody") == []
    store.close()


def test_put_many_writes_all_or_nothing(url):
    store = open_store(url)
    store.put("r", "x", {"v": 1})
    with pytest.raises(TypeError):
        store.put_many("r", {"x": {"v": 2}, "y": {"v": object()}})  # the second cannot be serialised
    assert store.get("r", "x") == {"v": 1} and store.get("r", "y") is None
    store.close()


@pytest.mark.parametrize("kind", ["native", "generic"])
def test_a_failure_after_the_upsert_rolls_the_whole_batch_back(url, kind, monkeypatch):
    """The database transaction, not only serialising first, makes put_many atomic: here the rows were
    written inside it when the failure came. `generic` is the delete-then-insert fallback."""
    store = open_store(url)
    if kind == "generic":
        monkeypatch.setattr(store, "_kind", "generic")
    store.put_many("r", {"x": {"v": 1}, "z": {"v": 1}})
    store.put_many("r", {"x": {"v": 2}, "y": {"v": 2}})  # replace one, add one, through this path
    assert [store.get("r", k) for k in ("x", "y", "z")] == [{"v": 2}, {"v": 2}, {"v": 1}]
    real = store._upsert

    def then_fail(conn, rows):
        real(conn, rows)
        assert conn.execute(sa.text("SELECT COUNT(*) FROM docs WHERE run_id='r'")).scalar() == 4
        raise RuntimeError("the connection dropped")

    monkeypatch.setattr(store, "_upsert", then_fail)
    with pytest.raises(RuntimeError):
        store.put_many("r", {"x": {"v": 3}, "new": {"v": 3}})
    assert [store.get("r", k) for k in ("x", "y", "z", "new")] == [{"v": 2}, {"v": 2}, {"v": 1}, None]
    store.close()


def test_foreign_database_is_refused(url):
    _sql(url, "CREATE TABLE users (id INTEGER)")
    with pytest.raises(RapoError, match="not a rapo checkpoint store.*users"):
        open_store(url)


def test_newer_schema_is_refused(url):
    open_store(url).close()
    _sql(url, "UPDATE rapo_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(RapoError, match=r"newer rapo \(schema 99.*upgrade rapo"):
        open_store(url)


def test_other_app_is_refused(url):
    open_store(url).close()
    _sql(url, "UPDATE rapo_meta SET value='someone-else' WHERE key='app'")
    with pytest.raises(RapoError, match="not a rapo checkpoint store.*someone-else"):
        open_store(url)


def test_long_keys_are_refused_with_the_limit(url):
    store = open_store(url)
    with pytest.raises(RapoError, match="at most 512"):
        store.put("r", "k" * 600, {})
    assert store.keys("r") == []
    store.close()


# -- SQLite specifics and routing --------------------------------------------------------------------


def test_native_and_sqlalchemy_read_each_others_files(tmp_path):
    native = SQLiteStore(tmp_path / "n.db")
    native.put("r", "a", {"v": 1})
    native.close()
    via_sa = SQLAlchemyStore(f"sqlite+pysqlite:///{tmp_path / 'n.db'}")
    assert via_sa.get("r", "a") == {"v": 1}
    via_sa.put("r", "b", {"v": 2})
    via_sa.close()
    native = SQLiteStore(tmp_path / "n.db")
    assert native.get("r", "b") == {"v": 2}
    native.close()


def test_open_store_routes_by_url(tmp_path):
    for target in (f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "b.db"), tmp_path / "c.db"):
        store = open_store(target)
        assert isinstance(store, SQLiteStore), target
        store.close()
    store = open_store(f"sqlite+pysqlite:///{tmp_path / 'd.db'}")
    assert isinstance(store, SQLAlchemyStore)
    store.close()


def test_junk_file_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(RapoError, match="not a rapo checkpoint store"):
        open_store(f"sqlite+pysqlite:///{junk}")


# -- errors never show the password -----------------------------------------------------------------


def test_mask_url():
    assert mask_url("postgresql+psycopg://bob:s3cr:t@db:5432/x") == "postgresql+psycopg://bob:***@db:5432/x"
    assert mask_url("mysql://bob@h/x?password=pw&charset=utf8") == "mysql://bob@h/x?password=***&charset=utf8"
    assert mask_url("sqlite:///p.db") == "sqlite:///p.db"


def test_unreachable_server_says_so_without_the_password():
    port = _free_port()  # nobody listens there
    with pytest.raises(RapoError, match=f"cannot use the store postgresql\\+psycopg://rapo:\\*\\*\\*@127.0.0.1:{port}/x"
                       ".*check that the server runs") as err:
        open_store(f"postgresql+psycopg://rapo:hunter2@127.0.0.1:{port}/x")
    assert "hunter2" not in str(err.value)


def test_missing_drivers_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(RapoError, match=r"driver 'psycopg'.*pip install 'rapo\[sql\]'.*psycopg\[binary\]") as err:
        open_store("postgresql://rapo:hunter2@127.0.0.1:1/x")  # no driver named: psycopg 3 is chosen
    assert "hunter2" not in str(err.value)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(RapoError, match=r"needs SQLAlchemy: pip install 'rapo\[sql\]'"):
        open_store("postgresql+psycopg://rapo:hunter2@127.0.0.1:1/x")


def test_unknown_dialect_is_named():
    with pytest.raises(RapoError, match="no database dialect 'nosuchdb'"):
        open_store("nosuchdb://h/x")


# -- a benchmark run on PostgreSQL, resumed -----------------------------------------------------------


def test_bench_on_postgres_then_resume_reports_the_same_results(pg_url, tmp_path):
    args = ["--conversations", "3", "--transitions", "2-3", "--systems", "rapo", "--sensitivity", "",
            "--seed", "3", "--workers", "1"]
    run = _rapo("bench", *args, "--store", pg_url, "--run-id", "pg-1", "--out", str(tmp_path / "first"))
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    assert f"rapo resume pg-1 --store {pg_url}" in " ".join(out.split())

    store = open_store(pg_url)
    assert store.runs() == ["pg-1"]
    assert len(store.keys("pg-1", "job/rapo/default/done/")) == 3 and store.get("pg-1", "config") is not None
    store.close()

    resumed = _rapo("resume", "pg-1", "--store", pg_url, "--out", str(tmp_path / "resumed"))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    first = json.loads((tmp_path / "first" / "results.json").read_text())["records"]
    again = json.loads((tmp_path / "resumed" / "results.json").read_text())["records"]
    # every field equal, measured latency included: the finished conversations were read back, not rerun
    assert again["fields"] == first["fields"] and sorted(map(tuple, again["rows"])) == sorted(map(tuple, first["rows"]))
    assert len(first["rows"]) >= 3 * 2
