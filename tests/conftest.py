"""Fixtures: one contract suite x every backend x both front ends.

Backends come from ``SESSIONDB_TEST_BACKENDS`` (default ``sqlite,postgresql,mysql``); server URLs
from ``SESSIONDB_TEST_POSTGRESQL_URL`` and ``SESSIONDB_TEST_MYSQL_URL``. A server that cannot be
reached skips its tests, unless ``SESSIONDB_REQUIRE_SERVERS=1`` (set by ``.ci/run``): then the
tests fail. ``-m "not mysql"`` drops a backend.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, SessionStore

SERVER_URLS = {
    "postgresql": os.environ.get(
        "SESSIONDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("SESSIONDB_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
BACKENDS = [
    b.strip()
    for b in os.environ.get("SESSIONDB_TEST_BACKENDS", "sqlite,postgresql,mysql").split(",")
    if b.strip()
]
REQUIRE_SERVERS = os.environ.get("SESSIONDB_REQUIRE_SERVERS") == "1"

_reachable: dict[str, str | None] = {}


def _check_server(backend: str) -> None:
    """Skip (or, with SESSIONDB_REQUIRE_SERVERS=1, fail) when the server is unreachable."""
    if backend not in _reachable:
        try:
            with SessionStore(SERVER_URLS[backend], connect_timeout=5) as store:
                store.list_sessions("probe", "probe")
            _reachable[backend] = None
        except Exception as exc:
            _reachable[backend] = f"{type(exc).__name__}: {exc}"
    problem = _reachable[backend]
    if problem:
        message = f"{backend} server unreachable at {SERVER_URLS[backend]}: {problem}"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)


def backend_params() -> list[Any]:
    return [pytest.param(b, marks=getattr(pytest.mark, b), id=b) for b in BACKENDS]


def wipe(url: str, prefix: str = "") -> None:
    """Delete every row of sessiondb's tables (servers are shared between tests)."""
    from sessiondb._urls import resolve_url

    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            names = set(sa.inspect(conn).get_table_names())
            for table in reversed(sessiondb_tables(prefix).metadata.sorted_tables):
                if table.name in names:
                    conn.execute(table.delete())
    finally:
        engine.dispose()


def drop_tables(url: str, prefix: str) -> None:
    """Drop every table sessiondb made with ``prefix`` (its version table included)."""
    from sessiondb._schema import drop_all

    drop_all(url, prefix)


def sessiondb_tables(prefix: str = "") -> Any:
    from sessiondb._schema import tables

    return tables(prefix)


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name: sqlite, postgresql or mysql."""
    name: str = request.param
    if name != "sqlite":
        _check_server(name)
    return name


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty sessiondb database on ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
        return
    url = SERVER_URLS[backend]
    wipe(url)
    yield url


class SyncAsAsync:
    """A SessionStore whose methods can be awaited, so each contract test is written once."""

    def __init__(self, store: SessionStore) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if not callable(attr):
            return attr
        if inspect.isgeneratorfunction(attr):

            async def agen(*args: Any, **kwargs: Any) -> Any:
                for item in attr(*args, **kwargs):
                    yield item

            return agen

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
async def store(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Any]:
    """The store under test, through the sync or the async front end; every method awaitable."""
    if request.param == "sync":
        sync = SessionStore(db_url)
        yield SyncAsAsync(sync)
        sync.close()
    else:
        async with AsyncSessionStore(db_url) as astore:
            yield astore


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., SessionStore]]:
    """Open extra sync stores on the test database; all are closed afterwards."""
    opened: list[SessionStore] = []

    def make(**options: Any) -> SessionStore:
        s = SessionStore(db_url, **options)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
