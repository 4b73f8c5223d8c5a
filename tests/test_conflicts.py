"""Transactions rolled back by a conflict are run again (issue 11 §4), on the single servers.

A real deadlock: an admin transaction locks the app's shared state, a store's ``patch_state``
locks the session and waits for the app state, and the admin then asks for the session's row.
The server rolls one of the two back: the store's (PostgreSQL: the first waiter's deadlock
check fires first, the admin's is put off; MariaDB: InnoDB picks the transaction that changed
fewer rows, and the admin's changed twenty). The store then runs its whole operation again,
and its effect appears exactly once; with ``conflict_retries=0`` it raises ``ConflictError``
and nothing of it is written. The Galera cluster's certification conflicts are in
``tests/scale/test_galera.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    ConflictError,
    SessionStore,
    StaleSessionError,
)
from sessiondb._urls import resolve_url

Call = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["sync", "async"])
async def opener(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Callable[..., Call]]:
    """``opener(**options)``: a store on ``db_url`` through the front end under test, as
    ``call(method, *args, **kwargs)``; a sync store's calls run in a thread, so the test's
    event loop stays free for the admin's steps."""
    closers: list[Callable[[], Awaitable[None]]] = []

    def open_store(**options: Any) -> Call:
        if request.param == "sync":
            sync = SessionStore(db_url, **options)

            async def close_sync() -> None:
                sync.close()

            closers.append(close_sync)

            async def call_sync(method: str, *args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(getattr(sync, method), *args, **kwargs)

            return call_sync
        astore = AsyncSessionStore(db_url, **options)
        closers.append(astore.close)

        async def call_async(method: str, *args: Any, **kwargs: Any) -> Any:
            return await getattr(astore, method)(*args, **kwargs)

        return call_async

    yield open_store
    for close in closers:
        await close()


class Admin:
    """A transaction of its own on the test's database (a plain DBAPI connection)."""

    def __init__(self, db_url: str, backend: str) -> None:
        self.backend = backend
        self.engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
        self.conn: Any = self.engine.raw_connection()
        self.watch: Any = self.engine.raw_connection()  # autocommit-free reads of the catalog
        if backend == "postgresql":
            # the store's deadlock check must fire first: the admin's waits a minute
            self.run("SET deadlock_timeout = '60s'")
            self.conn.commit()

    def run(self, sql: str, *params: Any, conn: Any = None) -> list[tuple[Any, ...]]:
        cur = (conn or self.conn).cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def store_waits_for_a_lock(self) -> bool:
        """Whether another connection to this database waits for a row lock."""
        if self.backend == "postgresql":
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        else:
            sql = (
                "SELECT count(*) FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                "WHERE p.db = DATABASE() AND t.trx_state = 'LOCK WAIT'"
            )
        rows = self.run(sql, conn=self.watch)
        self.watch.commit()  # a fresh snapshot for the next look
        return bool(rows[0][0])

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.watch.close()
        self.engine.dispose()


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll (in a thread) until ``predicate()`` holds: a condition, not a sleep hiding a race.

    Every 0.2 s: InnoDB refreshes ``information_schema.innodb_trx`` only when it has not been
    read for 0.1 s, so polling faster would read the same stale copy for ever.
    """
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def deadlock(
    call: Call, backend: str, db_url: str, session_id: str, others: list[str]
) -> Any:
    """Run ``patch_state`` on the session into a deadlock with an admin transaction that
    changed more rows; return what the call returned, or the exception it raised."""
    admin = Admin(db_url, backend)
    try:
        for other in others:  # one by one: by key, so that no other row is locked
            admin.run("UPDATE sessions SET title = 'admin' WHERE id = %s", other)
        admin.run("SELECT state FROM app_states WHERE app_name = 'app' FOR UPDATE")
        task = asyncio.ensure_future(
            call("patch_state", session_id, set={"app:x": 1}, increment={"n": 1})
        )
        await wait_for(admin.store_waits_for_a_lock, "the store's call to wait for the app state")
        # the cycle: this waits for the session the store holds; one of the two is rolled back
        await asyncio.to_thread(
            admin.run, "SELECT version FROM sessions WHERE id = %s FOR UPDATE", session_id
        )
        await asyncio.to_thread(admin.conn.commit)  # the admin's transaction won: it commits
        try:
            return await task
        except Exception as exc:
            return exc
    finally:
        admin.close()


async def setup(call: Call) -> tuple[str, list[str]]:
    s = await call("create_session", "app", "u", {"n": 0})
    await call("patch_state", s.id, set={"app:x": 0})
    others = [(await call("create_session", "app", "o")).id for _ in range(20)]
    return s.id, others


@pytest.mark.usefixtures("backend")
async def test_deadlock_victim_is_run_again_once(
    opener: Callable[..., Call], backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's transaction is the deadlock's victim: the call still succeeds, its
    increment and its shared-state change are applied exactly once, and the retry is logged."""
    if backend == "sqlite":
        pytest.skip("SQLite takes the write lock up front (BEGIN IMMEDIATE): no deadlock")
    call = opener()
    sid, others = await setup(call)
    with caplog.at_level(logging.DEBUG, logger="sessiondb"):
        result = await deadlock(call, backend, db_url, sid, others)
    assert result == 3  # created at 1, app:x set at 2, this patch: 3 (once)
    got = await call("get_session", "app", "u", sid)
    assert got.state == {"n": 1, "app:x": 1}
    assert got.version == 3
    retries = [r for r in caplog.records if "conflict 1 at" in r.getMessage()]
    assert len(retries) == 1, [r.getMessage() for r in caplog.records]
    assert "patch_state" in retries[0].getMessage()


@pytest.mark.usefixtures("backend")
async def test_deadlock_without_retries_is_a_conflict_error(
    opener: Callable[..., Call], backend: str, db_url: str
) -> None:
    """With ``conflict_retries=0`` the deadlock's victim raises ``ConflictError`` (a
    ``StaleSessionError``), and nothing of the call was written."""
    if backend == "sqlite":
        pytest.skip("SQLite takes the write lock up front (BEGIN IMMEDIATE): no deadlock")
    call = opener(conflict_retries=0)
    sid, others = await setup(call)
    result = await deadlock(call, backend, db_url, sid, others)
    assert isinstance(result, ConflictError), repr(result)
    assert isinstance(result, StaleSessionError)
    assert result.attempts == 1
    assert "nothing was written" in str(result)
    got = await call("get_session", "app", "u", sid)
    assert got.state == {"n": 0, "app:x": 0}
    assert got.version == 2


@pytest.mark.parametrize(
    "options",
    [
        {"conflict_retries": -1},
        {"conflict_retries": 1.5},
        {"conflict_retries": True},
        {"conflict_retries": 1001},
        {"conflict_backoff": 0},
        {"conflict_backoff": "0.1"},
        {"conflict_backoff": float("nan")},
    ],
)
def test_conflict_options_are_checked(tmp_path: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        SessionStore(f"sqlite:///{tmp_path / 's.db'}", **options)
