"""The public surface: exports, sync/async parity, import cost, generated code up to date."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import sessiondb
from sessiondb import AsyncSessionStore, DatabaseSessionService, SessionStore, errors


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(cls).items()
        if callable(fn) and not name.startswith("_")
    }


ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    assert sessiondb.__all__ == sorted(sessiondb.__all__)
    for name in sessiondb.__all__:
        assert hasattr(sessiondb, name)
    public = {n for n in vars(sessiondb) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(sessiondb.__all__)


def test_sync_and_async_stores_have_the_same_signatures() -> None:
    sync = public_methods(SessionStore)
    async_ = public_methods(AsyncSessionStore)
    assert set(sync) == set(async_)
    for name, sig in sync.items():
        # identical but for the Async prefix of types (AsyncEngine, AsyncIterator, ...)
        assert str(async_[name]).replace("Async", "") == str(sig), name
        method = getattr(AsyncSessionStore, name)
        assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name
        assert not inspect.iscoroutinefunction(getattr(SessionStore, name)), name


def test_service_covers_the_guide_methods() -> None:
    for name in (
        "create_session",
        "list_sessions",
        "get_session",
        "update_session_state",
        "delete_session",
        "clear_sessions",
    ):
        assert callable(getattr(DatabaseSessionService, name))
    assert inspect.iscoroutinefunction(DatabaseSessionService.create_session)
    assert inspect.iscoroutinefunction(DatabaseSessionService.update_session_state)
    assert not inspect.iscoroutinefunction(DatabaseSessionService.list_sessions)


def test_every_error_derives_from_the_base() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SessionDBError)
    assert issubclass(errors.SessionNotFoundError, LookupError)
    assert issubclass(errors.InvalidIdError, ValueError)
    assert issubclass(errors.StateTypeError, TypeError)
    for name in errors.__all__:  # the tree in the module docstring lists every class
        assert name in (errors.__doc__ or ""), name


def test_sync_store_is_generated_from_the_async_one() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_import_loads_no_driver_and_no_sqlalchemy() -> None:
    # the import *time* is measured by the benchmark (python -m benchmarks.startup)
    code = (
        "import sys; import sessiondb; from sessiondb import DatabaseSessionService; "
        "print(','.join(m for m in ('sqlalchemy', 'psycopg', 'asyncpg', 'pymysql', 'aiomysql', "
        "'sqlite3', 'alembic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_creating_a_store_loads_only_its_driver(tmp_path: Path) -> None:
    code = (
        "import sys; from sessiondb import SessionStore; "
        f"SessionStore('sqlite:///{tmp_path}/x.db').list_sessions('a', 'u'); "
        "print(','.join(m for m in ('psycopg', 'asyncpg', 'pymysql', 'aiomysql') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_service_makes_the_sqlite_file_at_construction_and_no_server_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import sqlite3

    from sessiondb.errors import DatabaseUnavailableError

    monkeypatch.chdir(tmp_path)
    service = DatabaseSessionService(db_url="sqlite:///./x.db")
    try:  # before any call: the file, with sessiondb's tables
        with contextlib.closing(sqlite3.connect(tmp_path / "x.db")) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"sessions", "events", "app_states", "user_states", "session_labels"} <= names
    finally:
        service.close()
    # a server is not contacted at construction: nothing listens on port 1
    unreachable = DatabaseSessionService(
        db_url="postgresql://nobody@127.0.0.1:1/none", connect_timeout=2
    )
    try:
        with pytest.raises(DatabaseUnavailableError):
            unreachable.list_sessions("app")
    finally:
        unreachable.close()
