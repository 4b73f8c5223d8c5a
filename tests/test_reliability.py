"""Issue 10 §1 and §2 on the shared servers: dead connections, unknown outcomes, typed errors,
timeouts, honoured engine options, event ids, user code's exceptions.

Connections are killed from an admin connection (``pg_terminate_backend`` / ``KILL``) on the
test's private database; restarts, kills and freezes of whole servers are in ``tests/faults``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    InvalidArgumentError,
    InvalidStateError,
    OutcomeUnknownError,
    SessionDBError,
    SessionStore,
)
from sessiondb._urls import resolve_url

# -- an admin connection to the test's own database ----------------------------------------------


class Admin:
    """Autocommit DBAPI access to ``db_url``'s database, beside the store under test."""

    def __init__(self, db_url: str, backend: str) -> None:
        self.backend = backend
        url = resolve_url(db_url).sync_url
        self.engine = sa.create_engine(url, poolclass=sa.NullPool)
        self.auto = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
        self.raw: Any = self.auto.raw_connection()
        self.lock: Any = None  # the connection holding a row lock

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = self.raw.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def others(self) -> set[int]:
        """Ids of the other connections to this database."""
        if self.backend == "postgresql":
            sql = (
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            sql = (
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
        return {int(r[0]) for r in self.rows(sql)}

    def kill(self, ids: set[int]) -> None:
        for i in ids:
            if self.backend == "postgresql":
                self.rows("SELECT pg_terminate_backend(%s)", i)
            else:
                self.rows(f"KILL {int(i)}")

    def waiting_for_lock(self, ids: set[int], statement: str | None = None) -> set[int]:
        """Those of ``ids`` whose statement waits for a row lock (``statement``: one that
        begins with that text), so that a kill of one lands at that statement, not at another
        the call runs before it (its read, or the first request of a write that waits in its
        second)."""
        if self.backend == "postgresql":
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if statement is not None:
                sql += " AND query LIKE %s"
        else:
            # MariaDB tells no lock wait live: the processlist's State is the statement's
            # ('Updating', 'Sending data'...) whether it waits or runs, and InnoDB's
            # information_schema.innodb_trx (trx_state 'LOCK WAIT') is a cache refreshed only
            # once nobody read it for 100 ms, so it stays stale under polling (here, or by
            # another test on the server). So: a statement in flight that can wait for a row
            # lock (the lock is held until the kill: it cannot have passed it), whose text the
            # processlist shows (of a multi-statement request, the one running now)
            sql = (
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND command = 'Query' AND id <> CONNECTION_ID() "
            )
            if statement is not None:
                sql += "AND info LIKE %s"
            else:
                sql += (
                    "AND (info LIKE 'UPDATE %%' OR info LIKE 'INSERT %%' "
                    "OR info LIKE 'DELETE %%' OR info LIKE '%%FOR UPDATE')"
                )
        params = () if statement is None else (statement + "%",)
        return {int(r[0]) for r in self.rows(sql, *params)} & ids

    def lock_row(self, session_id: str) -> None:
        """Hold the session's row lock (until :meth:`unlock`) on a connection of its own."""
        self.lock = self.engine.raw_connection()
        cur = self.lock.cursor()
        cur.execute("SELECT version FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
        cur.fetchall()
        cur.close()

    def lock_events(self, session_id: str) -> None:
        """Hold a gap lock where the session's next event goes (MySQL/MariaDB, repeatable
        read): an INSERT of one waits for it."""
        self.lock = self.engine.raw_connection()
        cur = self.lock.cursor()
        cur.execute(
            "SELECT seq FROM events WHERE app_name = 'app' AND user_id = 'u' "
            "AND session_id = %s FOR UPDATE",
            (session_id,),
        )
        cur.fetchall()
        cur.close()

    def unlock(self) -> None:
        if self.lock is not None:
            self.lock.rollback()
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.unlock()
        self.raw.close()
        self.auto.dispose()
        self.engine.dispose()


@pytest.fixture
def admin(backend: str, db_url: str) -> Iterator[Admin]:
    if backend == "sqlite":
        pytest.skip("SQLite has no server connections to kill")
    a = Admin(db_url, backend)
    yield a
    a.close()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll until ``predicate()`` is truthy (a condition, not a sleep hiding a race)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def in_background(fn: Callable[[], None]) -> Callable[[], None]:
    """Run ``fn`` in a thread (the sync store blocks the test's loop); join() re-raises."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(30)
        assert not thread.is_alive(), "the background step hung"
        if box:
            raise box[0]

    return join


# -- §1: a connection the server dropped -----------------------------------------------------------


async def test_connections_killed_while_idle_are_replaced(store: Any, admin: Admin) -> None:
    """Every connection of the store killed by the server while idle: no call fails, and no
    write is applied twice."""
    before = admin.others()
    s = await store.create_session("app", "u", {"n": 0})
    await asyncio.gather(*(store.get_session("app", "u", s.id) for _ in range(3)))
    mine = admin.others() - before
    assert mine
    admin.kill(mine)
    wait_for(lambda: not (admin.others() & mine), "the killed connections to go")
    assert (await store.get_session("app", "u", s.id)).state == {"n": 0}
    await store.patch_state(s.id, increment={"n": 1})
    await store.append_event(s.id, "user", {"text": "hi"})
    assert len(await store.list_sessions("app", "u")) == 1
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 1}
    assert got.event_count == 1


async def kill_its_next_call_at_the_lock(
    store: Any, admin: Admin, events: bool = False
) -> tuple[Any, Callable[[], None]]:
    """A new session whose row the admin locks (``events``: where its next event goes); the
    store's next call on it waits for that lock, and a background thread then kills that
    call's connection and frees the row. Returns the session and the thread's join."""
    before = admin.others()
    s = await store.create_session("app", "u", {"n": 0})
    mine = admin.others() - before
    if events:
        admin.lock_events(s.id)
    else:
        admin.lock_row(s.id)

    # with ``events``, the INSERT of the event waits: the second request on MySQL/MariaDB
    at = "INSERT INTO events" if events else None

    def kill_when_waiting() -> None:
        waiting = wait_for(
            lambda: admin.waiting_for_lock(mine, at), "the call to wait for the lock"
        )
        admin.kill(waiting)
        admin.unlock()

    return s, in_background(kill_when_waiting)


async def test_write_sent_then_connection_lost_is_outcome_unknown(store: Any, admin: Admin) -> None:
    """A one-statement write whose connection dies after it was sent is never repeated: the
    call raises OutcomeUnknownError (a DatabaseUnavailableError), and the store goes on."""
    s, join = await kill_its_next_call_at_the_lock(store, admin)
    with pytest.raises(OutcomeUnknownError) as info:
        await store.update_session_state(s.id, {"n": 5})
    join()
    assert isinstance(info.value, DatabaseUnavailableError)
    assert "may or may not have been applied" in str(info.value)
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 0} and got.version == 1  # killed before it applied; not repeated


async def test_transaction_cut_before_commit_is_run_again(store: Any, admin: Admin) -> None:
    """A transaction whose connection dies before COMMIT was sent cannot have been applied: it
    is run again, invisibly, and stored once."""
    s, join = await kill_its_next_call_at_the_lock(store, admin)
    assert await store.patch_state(s.id, increment={"n": 1}, remove=["gone"]) == 2
    join()
    got = await store.get_session("app", "u", s.id)
    assert (got.state, got.version) == ({"n": 1}, 2)


async def test_append_without_ids_cut_in_flight(store: Any, admin: Admin, backend: str) -> None:
    """On PostgreSQL an append is one statement: cut in flight, it may or may not have been
    applied, so without event ids it is never repeated. Elsewhere it is a transaction, cut
    before COMMIT: run again, invisibly, and stored once."""
    s, join = await kill_its_next_call_at_the_lock(store, admin)
    if backend != "postgresql":
        event = await store.append_event(s.id, "user", {"text": "once"}, state_delta={"n": 1})
        join()
        assert event.seq == 1
        assert (await store.get_session("app", "u", s.id)).state == {"n": 1}
        return
    with pytest.raises(OutcomeUnknownError):
        await store.append_event(s.id, "user", {"text": "once?"}, state_delta={"n": 1})
    join()
    got = await store.get_session("app", "u", s.id)
    assert (got.state, got.version, got.event_count) == ({"n": 0}, 1, 0)  # killed waiting


async def test_append_with_ids_cut_in_flight_is_run_again(store: Any, admin: Admin) -> None:
    """With an id on every event, an append cut in flight is run again, invisibly, and stored
    once."""
    s, join = await kill_its_next_call_at_the_lock(store, admin)
    event = await store.append_event(
        s.id, "user", {"text": "once"}, state_delta={"n": 1}, event_id="e1"
    )
    join()
    assert event.seq == 1
    events = await store.list_events(s.id)
    assert [e.content for e in events] == [{"text": "once"}]
    assert (await store.get_session("app", "u", s.id)).state == {"n": 1}


async def test_append_without_ids_cut_in_its_writes(store: Any, admin: Admin, backend: str) -> None:
    """On MySQL/MariaDB an append is two requests: the row lock, then its writes and COMMIT
    sent together. Cut in the second one, it may or may not have been applied: without event
    ids OutcomeUnknownError, never repeated."""
    if backend != "mysql":
        pytest.skip("MySQL/MariaDB's append in two requests")
    s, join = await kill_its_next_call_at_the_lock(store, admin, events=True)
    with pytest.raises(OutcomeUnknownError):
        await store.append_event(s.id, "user", {"text": "once?"}, state_delta={"n": 1})
    join()
    got = await store.get_session("app", "u", s.id)
    assert (got.state, got.version, got.event_count) == ({"n": 0}, 1, 0)  # killed waiting


async def test_append_with_ids_cut_in_its_writes(store: Any, admin: Admin, backend: str) -> None:
    """The same with an id on every event: run again, and stored once."""
    if backend != "mysql":
        pytest.skip("MySQL/MariaDB's append in two requests")
    s, join = await kill_its_next_call_at_the_lock(store, admin, events=True)
    event = await store.append_event(
        s.id, "user", {"text": "once"}, state_delta={"n": 1}, event_id="e1"
    )
    join()
    assert event.seq == 1
    assert [e.content for e in await store.list_events(s.id)] == [{"text": "once"}]
    assert (await store.get_session("app", "u", s.id)).state == {"n": 1}


async def test_a_failed_multi_statement_request_drops_its_connection(
    store: Any, admin: Admin, backend: str
) -> None:
    """On MySQL/MariaDB an append's writes and COMMIT go in one request. When a statement in
    it fails, nothing is applied and the connection is closed, never reused (a server that
    went on with the later statements would answer the next operation with their results)."""
    if backend != "mysql":
        pytest.skip("MySQL/MariaDB's multi-statement requests")
    s = await store.create_session("app", "u", {"n": 0})
    await store.append_event(s.id, "user", {"text": "before"})
    pooled = admin.others()
    assert pooled  # the store's idle connections
    admin.rows(
        "CREATE TRIGGER sdbt_boom BEFORE INSERT ON events FOR EACH ROW "
        "IF NEW.author = 'boom' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; END IF"
    )
    try:
        with pytest.raises(SessionDBError):
            await store.append_event(s.id, "boom", {"text": "never"}, state_delta={"n": 1})
    finally:
        admin.rows("DROP TRIGGER sdbt_boom")
    # the one it ran on is closed (COM_QUIT is sent before the call returns); others stay
    assert len(pooled - admin.others()) == 1
    got = await store.get_session("app", "u", s.id)
    assert (got.state, got.version, got.event_count) == ({"n": 0}, 2, 1)
    event = await store.append_event(s.id, "user", {"text": "after"}, state_delta={"n": 2})
    assert event.seq == 2
    assert [e.content for e in await store.list_events(s.id)] == [
        {"text": "before"},
        {"text": "after"},
    ]


# -- §1: idempotency keys ----------------------------------------------------------------------


async def test_append_event_with_event_id_is_idempotent(store: Any) -> None:
    s = await store.create_session("app", "u", {"n": 0})
    first = await store.append_event(s.id, "user", {"t": 1}, state_delta={"n": 1}, event_id="e1")
    assert first.event_id == "e1"
    again = await store.append_event(s.id, "user", {"t": 1}, state_delta={"n": 1}, event_id="e1")
    assert again == first  # the stored event, as stored
    got = await store.get_session("app", "u", s.id)
    assert (got.version, got.event_count, got.state) == (2, 1, {"n": 1})
    # a retry of a call that succeeded passes even with the expected_version it had then
    same = await store.append_event(s.id, "user", {"t": 1}, event_id="e1", expected_version=1)
    assert same == first
    # some stored, some new: only the new ones are written (and only their deltas applied)
    out = await store.append_events(
        s.id,
        [
            {"author": "user", "content": {"t": 1}, "state_delta": {"n": 9}, "event_id": "e1"},
            {"author": "bot", "content": {"t": 2}, "state_delta": {"m": 2}, "event_id": "e2"},
            {"author": "bot", "content": {"t": 3}},
        ],
    )
    assert [e.seq for e in out] == [1, 2, 3]
    assert [e.event_id for e in out] == ["e1", "e2", None]
    assert out[0] == first
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 1, "m": 2} and got.event_count == 3
    assert [e.event_id for e in await store.list_events(s.id)] == ["e1", "e2", None]
    # ids are per session
    other = await store.create_session("app", "u")
    assert (await store.append_event(other.id, "user", "x", event_id="e1")).seq == 1
    with pytest.raises(InvalidArgumentError):
        await store.append_events(
            s.id, [{"author": "a", "event_id": "x"}, {"author": "b", "event_id": "x"}]
        )
    with pytest.raises(InvalidArgumentError):
        await store.append_event(s.id, "user", "x", event_id="")


def test_event_ids_survive_export_and_import(
    sync_store: SessionStore, make_db_url: Callable[..., str]
) -> None:
    s = sync_store.create_session("app", "u")
    sync_store.append_event(s.id, "user", "a", event_id="adk-1")
    sync_store.append_event(s.id, "user", "b")
    records = list(sync_store.export_records())
    events = next(r for r in records if r.get("type") == "session")["events"]
    assert [e.get("event_id") for e in events] == ["adk-1", None]
    with SessionStore(make_db_url()) as copy:
        copy.import_records(records)
        assert [e.event_id for e in copy.list_events(s.id)] == ["adk-1", None]
        # the key holds in the copy too
        assert copy.append_event(s.id, "user", "a", event_id="adk-1").seq == 1
        assert copy.checksum() == sync_store.checksum()


# -- §2: user code, engine options, timeouts, sizes, classification ------------------------------


async def test_user_code_errors_pass_through_untouched(store: Any, backend: str) -> None:
    s = await store.create_session("app", "u", {"n": 0})
    runner = (store.sync if hasattr(store, "sync") else store)._backend.runner
    generation = runner._generation
    boom = OSError("the callback's own I/O error")

    def fn(state: dict[str, Any]) -> dict[str, Any]:
        raise boom

    with pytest.raises(OSError) as info:
        await store.transform_state(s.id, fn)
    assert info.value is boom
    assert not isinstance(info.value, SessionDBError)
    assert runner._generation == generation  # the pool was not invalidated
    assert await store.transform_state(s.id, lambda st: {"n": st["n"] + 1}) == 2


@pytest.mark.parametrize(
    "option", ["echo", "isolation_level", "poolclass", "pool_size", "no_such_option"]
)
def test_engine_options_refused(db_url: str, option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        SessionStore(db_url, engine_options={option: True})
    with pytest.raises(ConfigurationError, match=option):
        AsyncSessionStore(db_url, engine_options={option: True})


def test_engine_options_honoured(db_url: str) -> None:
    # pool_pre_ping: a real ping on every lease; pool_recycle=0: a new connection every call
    for options in ({"pool_pre_ping": True}, {"pool_recycle": 0}, {"pool_timeout": 5}):
        with SessionStore(db_url, engine_options=options) as store:
            s = store.create_session("app", "u", {"n": 0})
            store.patch_state(s.id, increment={"n": 1})
            assert store.get_session("app", "u", s.id).state == {"n": 1}


def test_timeouts_are_checked(db_url: str) -> None:
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigurationError):
            SessionStore(db_url, statement_timeout=bad)
        with pytest.raises(ConfigurationError):
            SessionStore(db_url, connect_timeout=bad)


async def test_statement_timeout(backend: str, db_url: str) -> None:
    """A statement that waits longer than statement_timeout (here: for a lock) is stopped by
    the database with a typed error (nothing was written), and the store goes on."""
    with SessionStore(db_url) as setup:
        sid = setup.create_session("app", "u", {"n": 0}).id
    blocker: Any = None
    admin: Admin | None = None
    if backend == "sqlite":
        blocker = sqlite3.connect(sa.make_url(db_url).database or "", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        admin = Admin(db_url, backend)
        admin.lock_row(sid)
    try:
        with SessionStore(db_url, statement_timeout=0.5, busy_timeout=30) as store:
            t0 = time.monotonic()
            with pytest.raises(DatabaseError) as info:
                store.update_session_state(sid, {"n": 1})
            assert time.monotonic() - t0 < 5, "statement_timeout was not applied"
            assert not isinstance(info.value, OutcomeUnknownError), info.value
            if blocker is not None:
                blocker.execute("ROLLBACK")
            if admin is not None:
                admin.unlock()
            assert store.update_session_state(sid, {"n": 2}) == 2
    finally:
        if blocker is not None:
            blocker.close()
        if admin is not None:
            admin.close()


@pytest.mark.mysql
async def test_state_over_max_allowed_packet(store: Any, backend: str) -> None:
    """MySQL/MariaDB: data over max_allowed_packet is refused before it is sent (a typed
    InvalidStateError, nothing written), and the pool is not poisoned."""
    if backend != "mysql":
        pytest.skip("max_allowed_packet is MySQL's")
    s = await store.create_session("app", "u", {"n": 0})
    runner = (store.sync if hasattr(store, "sync") else store)._backend.runner
    limit = runner.max_packet
    assert limit > 0
    if limit > 64 * 1024 * 1024:
        pytest.skip(f"max_allowed_packet is {limit} bytes")
    big = "x" * limit
    with pytest.raises(InvalidStateError, match="max_allowed_packet"):
        await store.update_session_state(s.id, {"big": big})
    with pytest.raises(InvalidStateError, match="max_allowed_packet"):
        await store.append_event(s.id, "user", {"big": big})
    # escaping counts: quotes double in the statement
    with pytest.raises(InvalidStateError, match="max_allowed_packet"):
        await store.patch_state(s.id, {"q": '"' * (limit // 2 + 1)})
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 0} and got.version == 1 and got.event_count == 0
    assert await store.patch_state(s.id, {"n": 1}) == 2


def test_missing_database_is_a_configuration_error(backend: str, db_url: str) -> None:
    if backend == "sqlite":
        pytest.skip("a SQLite file is created on first use")
    url = resolve_url(db_url).sync_url.set(database="sdbt_no_such_database")
    with (
        SessionStore(url.render_as_string(hide_password=False), connect_timeout=5) as store,
        pytest.raises(ConfigurationError) as info,
    ):
        store.get_session("app", "u", "s")
    assert not isinstance(info.value, DatabaseUnavailableError)
    assert "database 'sdbt_no_such_database' does not exist" in str(info.value)
