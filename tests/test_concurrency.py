"""Concurrency: threads sharing a store, processes sharing a database, event loops, backups."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, DatabaseSessionService, SessionStore
from sessiondb._migrations import HEAD
from sessiondb._urls import resolve_url
from sessiondb.errors import DatabaseError

from ._locks import holding_the_write_lock
from ._procs import ProcessPool

THREADS, ROUNDS = 8, 10  # 10 rounds of 5 operations: 50 operations per thread
PROCESSES, PER_PROCESS = 4, 50
COLD_PROCESSES = 6
POOL = max(PROCESSES, COLD_PROCESSES)  # processes spawned once for the module (tests/_procs.py)
TIMEOUT = 120.0


@pytest.fixture
def target(backend: str, db_url: str, make_db_url: Any) -> Iterator[tuple[str, str]]:
    """(url, table_prefix) of a database with no sessiondb schema yet.

    SQLite: a new file. Servers: a fresh table prefix in the test's private database (whose
    unprefixed tables already exist); its tables are dropped afterwards.
    """
    if backend == "sqlite":
        url = make_db_url()
        assert not Path(resolve_url(url).sync_url.database or "").exists()
        yield url, ""
        return
    prefix = f"t{uuid4().hex[:8]}_"
    yield db_url, prefix
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    try:
        meta = sa.MetaData()
        meta.reflect(engine, only=lambda name, _: name.startswith(prefix))
        assert meta.tables, "the test created no tables"
        meta.drop_all(engine)
    finally:
        engine.dispose()


# -- (a) threads sharing one SessionStore ---------------------------------------------------------


def thread_worker(store: SessionStore, n: int, start: threading.Barrier) -> dict[str, Any]:
    """create, update, get, list, and (every other round) delete; return what must remain."""
    user = f"thread{n}"
    alive: dict[str, Any] = {}
    start.wait(TIMEOUT)
    for r in range(ROUNDS):
        made = store.create_session("threads", user, {"t": n, "r": r})
        assert (made.app_name, made.user_id, made.version) == ("threads", user, 1)
        state = {"t": n, "r": r, "updated": True, "items": list(range(r))}
        assert store.update_session_state(made.id, state) == 2
        got = store.get_session("threads", user, made.id)
        assert got is not None and (got.state, got.version) == (state, 2)
        alive[made.id] = state
        listed = store.list_sessions("threads", user)
        assert {s.id: s.state for s in listed} == alive
        if r % 2:
            assert store.delete_session(made.id) is True
            del alive[made.id]
        else:
            assert store.get_session("threads", "nobody", made.id) is None
    return alive


def test_threads_share_one_store(target: tuple[str, str]) -> None:
    with SessionStore(target[0], table_prefix=target[1]) as store:
        threads_share_one_store(store)


def threads_share_one_store(store: SessionStore) -> None:
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(thread_worker, store, n, start) for n in range(THREADS)]
        results = [f.result(timeout=TIMEOUT) for f in futures]
    expected = {sid: state for alive in results for sid, state in alive.items()}
    assert len(expected) == THREADS * ROUNDS // 2
    stored = store.list_sessions("threads")
    assert {s.id: s.state for s in stored} == expected
    assert all(s.version == 2 for s in stored)


# -- processes ------------------------------------------------------------------------------------


def process_worker(url: str, n: int, prefix: str, count: int) -> None:
    """Runs in a spawned process: open a store at once, create and update ``count`` sessions."""
    with SessionStore(url, table_prefix=prefix) as store:
        for i in range(count):
            sid = f"p{n}-{i}"
            store.create_session("procs", f"proc{n}", {"n": n, "i": i}, session_id=sid)
            assert store.update_session_state(sid, {"n": n, "i": i, "final": True}) == 2


def run_processes(
    pool: ProcessPool, url: str, count: int, processes: int, prefix: str = ""
) -> None:
    """``processes`` real processes of ``pool`` run ``process_worker`` at once (their exit codes
    are checked when the module's pool stops)."""
    reports = pool.run(process_worker, [(url, n, prefix, count) for n in range(processes)])
    assert sorted(reports) == list(range(processes)), "a process never reported"
    failures = {n: tb for n, tb in reports.items() if tb is not None}
    assert not failures, "\n".join(f"process {n}:\n{tb}" for n, tb in failures.items())


def check_processes(store: SessionStore, count: int, processes: int) -> None:
    stored = store.list_sessions("procs")
    assert len(stored) == count * processes
    assert {s.id: (s.user_id, s.state, s.version) for s in stored} == {
        f"p{n}-{i}": (f"proc{n}", {"n": n, "i": i, "final": True}, 2)
        for n in range(processes)
        for i in range(count)
    }


@pytest.mark.slow
def test_processes_share_one_database(target: tuple[str, str], process_pool: Any) -> None:
    url, prefix = target
    with SessionStore(url, table_prefix=prefix) as store:
        store.list_sessions("procs")  # the schema exists: this test is about concurrent writes
        run_processes(process_pool(POOL), url, PER_PROCESS, PROCESSES, prefix)
        check_processes(store, PER_PROCESS, PROCESSES)


def sessiondb_tables(url: str, prefix: str) -> tuple[set[str], list[Any]]:
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            names = {n for n in sa.inspect(conn).get_table_names() if n.startswith(prefix)}
            version = list(
                conn.execute(sa.text(f"SELECT version_num FROM {prefix}sessiondb_alembic_version"))
            )
    finally:
        engine.dispose()
    return names, version


@pytest.mark.slow
def test_processes_start_at_once_on_an_empty_database(
    target: tuple[str, str], tmp_path: Path, process_pool: Any
) -> None:
    url, prefix = target
    urls = [url]
    if prefix == "":  # SQLite files are cheap: three cold starts make a lost race likelier
        urls += [f"sqlite:///{tmp_path / f'cold{n}.db'}" for n in (1, 2)]
    for cold in urls:
        run_processes(process_pool(POOL), cold, 1, COLD_PROCESSES, prefix)
        names, version = sessiondb_tables(cold, prefix)
        assert {f"{prefix}sessions", f"{prefix}sessiondb_alembic_version"} <= names
        assert [tuple(row) for row in version] == [(HEAD,)]  # created once, stamped once
        with SessionStore(cold, table_prefix=prefix, auto_migrate=False) as store:
            check_processes(store, 1, COLD_PROCESSES)


FIRST_USE_PROCESSES, FIRST_USE_TRIALS, FIRST_USE_BOUND = 4, 25, 90.0


@pytest.mark.slow
@pytest.mark.sqlite
def test_sqlite_first_use_by_four_processes_never_finds_it_locked(
    tmp_path: Path, process_pool: Any
) -> None:
    """Four processes open one new SQLite file at once, again and again. Turning a new file to
    WAL takes its lock where SQLite never waits (no busy handler): before sessiondb waited for
    it itself, about one trial in 15 failed with "database is locked" on a loaded machine, so
    25 trials caught it more often than not. Bounded in time, and at least 5 trials."""
    pool = process_pool(POOL)
    deadline = time.monotonic() + FIRST_USE_BOUND
    trials = 0
    while trials < FIRST_USE_TRIALS and (trials < 5 or time.monotonic() < deadline):
        url = f"sqlite:///{tmp_path / f'first{trials}.db'}"
        run_processes(pool, url, 1, FIRST_USE_PROCESSES)
        with SessionStore(url, auto_migrate=False) as store:
            check_processes(store, 1, FIRST_USE_PROCESSES)
        trials += 1


# -- event loops ----------------------------------------------------------------------------------


def test_module_level_service_across_asyncio_runs(target: tuple[str, str]) -> None:
    service = DatabaseSessionService(db_url=target[0], table_prefix=target[1])  # outside a loop
    try:
        first = asyncio.run(service.create_session(app_name="loops", user_id="u", state={"n": 0}))
        for n in range(1, 4):  # each asyncio.run() has a new loop, and a new default executor
            assert asyncio.run(service.update_session_state(first.id, {"n": n})) == n + 1

        async def several() -> list[str]:
            made = await asyncio.gather(
                *(service.create_session("loops", "u", {"k": k}) for k in range(8))
            )
            await asyncio.gather(*(service.update_session_state(s.id, {"k": -1}) for s in made))
            return [s.id for s in made]

        ids = asyncio.run(several())
        got = service.get_session("loops", "u", first.id)
        assert got is not None and (got.state, got.version) == ({"n": 3}, 4)
        listed = {s.id: (s.state, s.version) for s in service.list_sessions("loops", "u")}
        assert listed == {first.id: ({"n": 3}, 4), **{i: ({"k": -1}, 2) for i in ids}}
    finally:
        service.close()


async def test_async_store_many_tasks(target: tuple[str, str]) -> None:
    async with AsyncSessionStore(target[0], table_prefix=target[1]) as store:

        async def task(n: int) -> str:
            made = await store.create_session("tasks", f"u{n % 4}", {"n": n})
            for step in (1, 2):
                state = {"n": n, "step": step}
                assert await store.update_session_state(made.id, state) == step + 1
            got = await store.get_session("tasks", f"u{n % 4}", made.id)
            assert got is not None and got.state == {"n": n, "step": 2}
            return made.id

        ids = await asyncio.gather(*(task(n) for n in range(32)))
        assert len(set(ids)) == 32
        stored = await store.list_sessions("tasks")
        assert {s.id: (s.state, s.version) for s in stored} == {
            sid: ({"n": n, "step": 2}, 3) for n, sid in enumerate(ids)
        }


# -- the SQLite backup promise --------------------------------------------------------------------


@pytest.mark.sqlite
def test_sqlite_file_copy_of_idle_open_service_holds_every_session(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    service = DatabaseSessionService(db_url=f"sqlite:///{path}")
    try:
        expected: dict[str, dict[str, Any]] = {}

        async def write() -> None:
            for n in range(20):
                made = await service.create_session("backup", f"u{n % 3}", {"n": n})
                expected[made.id] = {"n": n}
            for round_ in range(3):
                for sid in list(expected)[round_::2]:
                    expected[sid] = {"n": expected[sid]["n"], "round": round_, "text": "é" * 50}
                    await service.update_session_state(sid, expected[sid])

        asyncio.run(write())
        assert Path(f"{path}-wal").exists()  # WAL mode: a copy of only the main file is the test
        # idle: the store folds its WAL into the main file once writes pause (no call needed)
        assert service.store._backend.runner.checkpointer.wait_idle(30)
        copy = tmp_path / "copy.db"
        shutil.copy(path, copy)  # the service is still open, and idle
        assert not Path(f"{copy}-wal").exists()
        conn = sqlite3.connect(copy)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = conn.execute("SELECT id, state FROM sessions").fetchall()
        finally:
            conn.close()
        assert len(rows) == 20
        assert {sid: json.loads(state) for sid, state in rows} == expected
    finally:
        service.close()


def test_sqlite_writers_of_one_store_queue_in_the_process(tmp_path: Path) -> None:
    """A write that meets another of the same store's writes in progress waits for it in the
    process (the store's write gate), not in SQLite's busy handler, which sleeps 1, 2, 5 ms
    ... between tries however soon the lock is free: it is sent once the first commits."""
    store = SessionStore(f"sqlite:///{tmp_path / 'gate.db'}")
    try:
        store.create_session("app", "u", session_id="first")
        gate = store._backend.runner.write_gate
        assert gate is not None
        holder, go = holding_the_write_lock(store._backend.runner)
        done: list[str] = []
        writer = threading.Thread(
            target=lambda: done.append(store.create_session("app", "u", session_id="second").id)
        )
        writer.start()
        deadline = time.monotonic() + TIMEOUT
        while gate.waiting == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.001)  # until the writer is queued at the gate
        assert gate.waiting == 1 and not done  # queued, nothing sent
        go.set()
        holder.join(TIMEOUT)
        writer.join(TIMEOUT)
        assert done == ["second"] and gate.waiting == 0
        assert {s.id for s in store.list_sessions("app", "u")} == {"first", "second"}
    finally:
        store.close()


def test_sqlite_writer_past_the_busy_timeout_fails_as_before(tmp_path: Path) -> None:
    """A writer that waited at the gate longer than ``busy_timeout`` goes on to SQLite, whose
    lock is still held: the usual error, the gate left free for the next writer."""
    store = SessionStore(f"sqlite:///{tmp_path / 'gate.db'}", busy_timeout=0.05)
    try:
        store.create_session("app", "u", session_id="first")
        holder, go = holding_the_write_lock(store._backend.runner)
        try:
            with pytest.raises(Exception) as raised:
                store.create_session("app", "u", session_id="second")
            assert type(raised.value) is DatabaseError
            assert "locked" in str(raised.value)
        finally:
            go.set()
            holder.join(TIMEOUT)
        store.create_session("app", "u", session_id="third")  # the gate is free again
        assert {s.id for s in store.list_sessions("app", "u")} == {"first", "third"}
    finally:
        store.close()
