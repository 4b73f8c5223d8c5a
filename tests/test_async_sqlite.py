"""The async store on SQLite: quick reads on the event loop's thread, never waiting for a lock.

A point read (``get_session``, ``list_sessions``...) runs on the loop's own thread, on an idle
connection whose busy timeout is zero; everything else, and any read that would have to wait,
runs in a worker thread. These tests hold SQLite's write lock from another connection and
check that reads still answer, that writes wait for the lock (off the loop, with the store's
busy timeout: a zero timeout never reaches them), and that errors read the same either way.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessiondb import AsyncSessionStore, SessionStore
from sessiondb.errors import InvalidIdError, SessionDBError

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
