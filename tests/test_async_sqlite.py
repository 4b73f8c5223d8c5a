"""The async store on SQLite: quick calls on the event loop's thread, never waiting for a lock.

A point read (``get_session``, ``list_sessions``...) runs on the loop's own thread, on an idle
connection whose busy timeout is zero; so does a quick write (``create_session``,
``patch_state``, ``delete_session``...) at a durability without fsync per commit, inside
``BEGIN IMMEDIATE`` taken at once or not at all. Everything else, and any call that would have
to wait, runs in a worker thread. These tests hold SQLite's write lock from another connection
and check that reads still answer, that writes wait for the lock (off the loop, with the
store's busy timeout: a zero timeout never reaches them) and land exactly once, and that errors
read the same either way.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, SessionStore, _json
from sessiondb._runner import LOOP_VALUE_MAX
from sessiondb.errors import (
    InvalidIdError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
)

from ._locks import holding_the_write_lock

pytestmark = pytest.mark.sqlite
BOUND = 60.0  # seconds; a hang fails the test instead of stalling the run


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


@pytest.fixture
async def astore(sqlite_url: str) -> AsyncIterator[AsyncSessionStore]:
    store = AsyncSessionStore(sqlite_url, busy_timeout=BOUND)
    try:
        yield store
    finally:
        await store.close()


def _path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def test_reads_answer_while_another_writer_holds_the_lock(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    made = await astore.create_session("app", "u", state={"n": 1})
    holder = sqlite3.connect(_path(sqlite_url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held until COMMIT
        holder.execute("UPDATE sessions SET title = 'held' WHERE id = ?", (made.id,))
        write = asyncio.create_task(astore.patch_state(made.id, set={"n": 2}))
        for _ in range(20):  # the write waits for the lock; reads do not, nor does the loop
            got = await astore.get_session("app", "u", made.id)
            assert got is not None and got.state == {"n": 1} and got.title is None
            listed = await astore.list_sessions("app", "u")
            assert [s.id for s in listed] == [made.id]
            await asyncio.sleep(0)
        assert not write.done()
        holder.execute("COMMIT")
    finally:
        holder.close()
    await asyncio.wait_for(write, BOUND)
    got = await astore.get_session("app", "u", made.id)
    assert got is not None and got.state == {"n": 2} and got.title == "held"


async def test_quick_reads_leave_writes_their_busy_timeout(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    """After many reads on the loop's thread, a write that meets a held lock still waits for
    it (it would fail at once with the zero busy timeout of the loop's connections)."""
    made = await astore.create_session("app", "u", state={"n": 0})
    for _ in range(50):
        await astore.get_session("app", "u", made.id)
    many = [astore.get_session("app", "u", made.id) for _ in range(10)]
    await asyncio.gather(*many)
    holder = sqlite3.connect(_path(sqlite_url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        writes = [asyncio.create_task(astore.patch_state(made.id, set={f"k{i}": i}))
                  for i in range(3)]  # fmt: skip
        await asyncio.sleep(0)
        assert (await astore.get_session("app", "u", made.id)) is not None
        assert not any(w.done() for w in writes)
        holder.execute("COMMIT")
    finally:
        holder.close()
    await asyncio.wait_for(asyncio.gather(*writes), BOUND)
    got = await astore.get_session("app", "u", made.id)
    assert got is not None and got.state == {"n": 0, "k0": 0, "k1": 1, "k2": 2}


async def test_a_failing_quick_read_raises_what_the_sync_store_raises(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    made = await astore.create_session("app", "u")
    await astore.get_session("app", "u", made.id)  # an idle connection for the loop's thread
    with sqlite3.connect(_path(sqlite_url), isolation_level=None) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("ALTER TABLE sessions RENAME TO sessions_gone")
    with SessionStore(sqlite_url) as sync, pytest.raises(SessionDBError) as sync_error:
        sync.get_session("app", "u", made.id)
    with pytest.raises(SessionDBError) as async_error:
        await astore.get_session("app", "u", made.id)
    assert type(async_error.value) is type(sync_error.value)
    assert str(async_error.value) == str(sync_error.value)
    with pytest.raises(InvalidIdError):  # bad arguments: raised at once, the connection kept
        await astore.get_session("app", "", made.id)


async def test_reads_from_many_tasks_and_loops_share_the_file(sqlite_url: str) -> None:
    store = AsyncSessionStore(sqlite_url)
    ids = [(await store.create_session("app", f"u{i}", state={"i": i})).id for i in range(8)]

    async def reads(i: int) -> None:
        for _ in range(10):
            got = await store.get_session("app", f"u{i}", ids[i])
            assert got is not None and got.state == {"i": i}
            await store.patch_state(ids[i], set={"i": i})

    await asyncio.wait_for(asyncio.gather(*(reads(i) for i in range(8))), BOUND)

    def other_loop() -> int:
        async def count() -> int:
            return len(await store.list_sessions("app"))

        return asyncio.run(count())

    assert await asyncio.wait_for(asyncio.to_thread(other_loop), BOUND) == 8
    await store.close()


def _lock_is_free(url: str, store: AsyncSessionStore | None = None) -> bool:
    """Whether SQLite's write lock can be taken at once (no transaction left open). An open
    ``store``'s checkpoint thread is let finish first: a checkpoint (TRUNCATE) holds the
    write lock for its moment, some time after the store's last write."""
    checkpointer = store._backend.runner.checkpointer if store is not None else None
    if checkpointer is not None:
        assert checkpointer.wait_idle(BOUND)
    conn = sqlite3.connect(_path(url), isolation_level=None, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def _ran_on_the_loop(store: AsyncSessionStore, call: Any) -> Any:
    """Await ``call``; (its result, whether it finished without the loop running anything
    else, i.e. on the loop's own thread with no hand-off). The store's checkpoint thread is
    let finish first: a checkpoint holds the write lock, and a write meeting it goes to a
    worker thread."""
    checkpointer = store._backend.runner.checkpointer
    if checkpointer is not None:
        assert checkpointer.wait_idle(BOUND)
    others: list[int] = []
    asyncio.get_running_loop().call_soon(others.append, 1)
    result = await call
    return result, not others


@pytest.mark.parametrize("durability", ["normal", "fast"])
async def test_quick_writes_run_on_the_loop_when_the_lock_is_free(
    sqlite_url: str, durability: str
) -> None:
    async with AsyncSessionStore(sqlite_url, sqlite_durability=durability) as store:  # type: ignore[arg-type]
        await store.list_sessions("app")  # the schema, and an idle connection
        made, here = await _ran_on_the_loop(store, store.create_session("app", "u", {"n": 1}))
        assert here
        version, here = await _ran_on_the_loop(store, store.patch_state(made.id, set={"n": 2}))
        assert here and version == 2
        event, here = await _ran_on_the_loop(store, store.append_event(made.id, "user", "hi"))
        assert here and event.seq == 1
        version, here = await _ran_on_the_loop(store, store.update_session_state(made.id, {"n": 3}))
        assert here and version == 4
        gone, here = await _ran_on_the_loop(store, store.delete_session(made.id))
        assert here and gone
        assert _lock_is_free(sqlite_url, store)
    with SessionStore(sqlite_url) as sync:
        assert sync.list_sessions("app") == []


async def test_full_durability_writes_stay_off_the_loop(sqlite_url: str) -> None:
    """An fsync per commit would stall every task: those writes go to a worker thread."""
    async with AsyncSessionStore(sqlite_url, sqlite_durability="full") as store:
        await store.list_sessions("app")
        made, here = await _ran_on_the_loop(store, store.create_session("app", "u", {"n": 1}))
        assert not here
        got, here = await _ran_on_the_loop(store, store.get_session("app", "u", made.id))
        assert here and got is not None  # reads still run on the loop


async def test_a_write_meeting_a_held_lock_lands_once_it_is_released(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    """Each quick write finds the lock taken (BEGIN IMMEDIATE fails at once, nothing done),
    goes to a worker thread, waits there, and is written exactly once."""
    made = await astore.create_session("app", "u", state={"n": 0})
    doomed = await astore.create_session("app", "u")
    holder = sqlite3.connect(_path(sqlite_url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        writes = [
            asyncio.create_task(astore.create_session("app", "u", {"new": 1}, session_id="s2")),
            asyncio.create_task(astore.patch_state(made.id, set={"n": 1})),
            asyncio.create_task(astore.append_event(made.id, "user", "once")),
            asyncio.create_task(astore.delete_session(doomed.id)),
        ]
        for _ in range(20):  # the writes wait, the loop and the reads do not
            assert (await astore.get_session("app", "u", made.id)) is not None
            await asyncio.sleep(0)
        assert not any(w.done() for w in writes)
        holder.execute("COMMIT")
    finally:
        holder.close()
    created, _, event, deleted = await asyncio.wait_for(asyncio.gather(*writes), BOUND)
    assert created.id == "s2" and deleted is True and event.seq == 1
    got = await astore.get_session("app", "u", made.id, recent_events=10)
    assert got is not None and got.state == {"n": 1}
    assert got.version == 3  # patched once, one event appended once: never doubled
    assert [e.content for e in got.events] == ["once"]
    assert {s.id for s in await astore.list_sessions("app", "u")} == {made.id, "s2"}
    assert _lock_is_free(sqlite_url, astore)


async def test_errors_of_loop_writes_roll_back_and_read_as_the_sync_store_says(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    made = await astore.create_session("app", "u", {"n": 0}, session_id="s1")
    with SessionStore(sqlite_url) as sync:
        for call in (
            lambda s: s.create_session("app", "u", session_id="s1"),
            lambda s: s.patch_state("nope", set={"n": 1}),
            lambda s: s.update_session_state("s1", {"n": 9}, expected_version=7),
        ):
            with pytest.raises(SessionDBError) as sync_error:
                call(sync)
            with pytest.raises(SessionDBError) as async_error:
                await call(astore)
            assert type(async_error.value) is type(sync_error.value)
            assert str(async_error.value) == str(sync_error.value)
            assert type(async_error.value) in (
                SessionExistsError,
                SessionNotFoundError,
                StaleSessionError,
            )
            assert _lock_is_free(sqlite_url, astore)  # rolled back, no transaction left open
    got = await astore.get_session("app", "u", made.id)
    assert got is not None and (got.state, got.version) == ({"n": 0}, 1)
    assert await astore.patch_state(made.id, set={"n": 1}) == 2  # the connection is clean


async def test_a_cancelled_write_leaves_no_transaction_open(sqlite_url: str) -> None:
    """A write waiting in a worker thread for a held lock, its task cancelled: the write
    lands once or not at all, and the store's connection is left clean."""
    store = AsyncSessionStore(sqlite_url, busy_timeout=BOUND)
    made = await store.create_session("app", "u", state={"n": 0})
    holder = sqlite3.connect(_path(sqlite_url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.patch_state(made.id, set={"n": 1}))
        await asyncio.sleep(0)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        holder.execute("COMMIT")
    finally:
        holder.close()
    await store.close()  # waits for the worker thread's call to end
    assert _lock_is_free(sqlite_url)
    async with AsyncSessionStore(sqlite_url) as again:
        got = await again.get_session("app", "u", made.id)
        assert got is not None and (got.state, got.version) in (({"n": 0}, 1), ({"n": 1}, 2))
        assert await again.patch_state(made.id, set={"n": 5}) == got.version + 1


async def test_a_call_after_a_cancelled_write_queues_behind_its_thread(sqlite_url: str) -> None:
    """A write cancelled while its worker thread waits for the lock: the thread finishes it,
    and the next call (a read, which would otherwise answer on the loop at once) queues for
    the worker thread behind it, so with one thread it sees the write done."""
    store = AsyncSessionStore(sqlite_url, pool_size=1, busy_timeout=BOUND)
    loop_thread, waiting = threading.get_ident(), threading.Event()

    def trace(sql: str) -> None:  # a worker thread's write began: it waits for the lock
        if sql.startswith("UPDATE") and threading.get_ident() != loop_thread:
            waiting.set()

    sa.event.listen(store._backend.engine, "connect", lambda raw, _: raw.set_trace_callback(trace))
    made = await store.create_session("app", "u", state={"n": 0})
    holder = sqlite3.connect(_path(sqlite_url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.patch_state(made.id, set={"n": 1}))
        assert await asyncio.to_thread(waiting.wait, BOUND)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        read = asyncio.create_task(store.get_session("app", "u", made.id))
        await asyncio.sleep(0)  # the read has started: on the loop it would be done already
        holder.execute("COMMIT")
        got = await asyncio.wait_for(read, BOUND)
        assert got is not None and (got.state, got.version) == ({"n": 1}, 2)
        assert await store.patch_state(made.id, set={"n": 2}) == 3  # and calls go on
    finally:
        holder.close()
        await store.close()


async def test_sync_and_async_stores_and_another_process_write_one_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Every write from a second process, a sync store in a thread and many tasks of an
    async store (several of them waiting for the lock in worker threads) lands once."""
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys\nfrom sessiondb import SessionStore\n"
        "with SessionStore(sys.argv[1]) as s:\n"
        "    for i in range(100):\n"
        "        m = s.create_session('app', 'proc', {'i': i})\n"
        "        s.patch_state(m.id, set={'done': True})\n",
        encoding="utf-8",
    )
    async with AsyncSessionStore(sqlite_url, busy_timeout=BOUND) as astore:
        await astore.list_sessions("app")  # the schema, made once
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script), sqlite_url)

        def sync_writes() -> None:
            with SessionStore(sqlite_url, busy_timeout=BOUND) as sync:
                for i in range(100):
                    m = sync.create_session("app", "thread", {"i": i})
                    sync.patch_state(m.id, set={"done": True})

        async def task(n: int) -> None:
            for i in range(10):
                m = await astore.create_session("app", f"task{n}", {"i": i})
                await astore.patch_state(m.id, set={"done": True})

        await asyncio.wait_for(
            asyncio.gather(asyncio.to_thread(sync_writes), *(task(n) for n in range(10))), BOUND
        )
        assert await asyncio.wait_for(proc.wait(), BOUND) == 0
        listed = await astore.list_sessions("app")
    assert len(listed) == 300
    assert all(s.version == 2 and s.state["done"] is True for s in listed)
    assert _lock_is_free(sqlite_url)


async def test_large_states_send_their_sessions_off_the_loop(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value over LOOP_VALUE_MAX is written on the loop, checked and encoded once (not
    again in a worker thread); the session's next writes go to a worker thread."""
    big = {"blob": "x" * (LOOP_VALUE_MAX + 1)}
    encoded: list[int] = []
    dumps = _json.dumps

    def counting(value: Any, **kwargs: Any) -> str:
        text = dumps(value, **kwargs)
        encoded.append(len(text))
        return text

    monkeypatch.setattr(_json, "dumps", counting)
    async with AsyncSessionStore(sqlite_url, sqlite_durability="fast") as store:
        await store.list_sessions("app")
        made, here = await _ran_on_the_loop(
            store, store.create_session("app", "u", big, session_id="big")
        )
        assert here and sum(n > LOOP_VALUE_MAX for n in encoded) == 1
        version, here = await _ran_on_the_loop(store, store.patch_state(made.id, set={"n": 1}))
        assert not here and version == 2
        small, here = await _ran_on_the_loop(store, store.create_session("app", "u", {"n": 0}))
        assert here
        encoded.clear()
        version, here = await _ran_on_the_loop(store, store.update_session_state(small.id, big))
        assert here and version == 2 and sum(n > LOOP_VALUE_MAX for n in encoded) == 1
        version, here = await _ran_on_the_loop(store, store.patch_state(small.id, set={"n": 1}))
        assert not here and version == 3
        got = await store.get_session("app", "u", made.id)
        assert got is not None and (got.state, got.version) == ({**big, "n": 1}, 2)
        assert len(await store.list_sessions("app", "u")) == 2
        assert _lock_is_free(sqlite_url, store)


async def test_a_bad_session_id_is_refused_as_the_sync_store_does(
    astore: AsyncSessionStore, sqlite_url: str
) -> None:
    """The loop's write path looks the id up (sessions sent to the worker thread): an id that
    is no str, even an unhashable one, is still the operation's to refuse."""
    await astore.list_sessions("app")
    for bad in (["x"], {"x": 1}, 5):
        with SessionStore(sqlite_url) as sync, pytest.raises(SessionDBError) as sync_error:
            sync.patch_state(bad, set={"n": 1})
        with pytest.raises(SessionDBError) as async_error:
            await astore.patch_state(bad, set={"n": 1})
        assert type(async_error.value) is type(sync_error.value) is InvalidIdError
        with pytest.raises(InvalidIdError):
            await astore.delete_session(bad)


async def test_a_loop_write_never_waits_for_the_stores_own_writer(
    astore: AsyncSessionStore,
) -> None:
    """A worker thread of the store holds the write lock (and the store's write gate): a
    quick write does not wait for the gate on the loop's thread, it goes to a worker thread
    and lands once the holder commits; the loop and its reads run on meanwhile."""
    made = await astore.create_session("app", "u", state={"n": 0})
    holder, go = await asyncio.to_thread(holding_the_write_lock, astore._backend.runner)
    try:
        write = asyncio.create_task(astore.patch_state(made.id, set={"n": 1}))
        for _ in range(20):  # the write waits off the loop; the loop and the reads do not
            got = await astore.get_session("app", "u", made.id)
            assert got is not None and got.state == {"n": 0}
            await asyncio.sleep(0)
        assert not write.done()
    finally:
        go.set()
        await asyncio.to_thread(holder.join, BOUND)
    assert await asyncio.wait_for(write, BOUND) == 2
    got = await astore.get_session("app", "u", made.id)
    assert got is not None and got.state == {"n": 1}
