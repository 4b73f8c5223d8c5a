"""Issue 10 §5: a task cancelled in the middle of a write.

Either the write completed or nothing of it was written; the store keeps working (no
connection leaked, none left inside a transaction or in the middle of a statement); and the
process-wide ``sessiondb._migrations.UPGRADE_LOCK`` is released when a task waiting for it is
cancelled.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, SessionStore
from sessiondb._migrations import UPGRADE_LOCK

from ._harness import (
    APP,
    CONNECT_TIMEOUT,
    OP_BOUND,
    attempt,
    describe,
    in_thread,
    new_user,
    run_bounded,
    wait_until,
)

#: When each cancellation strikes, after the write starts: a sweep over one round trip or so.
DELAYS = [0, 0, 0.0002, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.008, 0.013, 0.02]


def url_of(dbms: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """(url, server database or None): servers get a database of the test's own."""
    if dbms == "sqlite":
        return f"sqlite:///{tmp_path / 'cancel.db'}", None
    db = request.getfixturevalue("own_db")
    return str(db.url()), db


def transactions_left(db: Any) -> list[tuple[str, str]]:
    """Connections to the test's database that sit inside a transaction."""
    if db.backend == "postgresql":
        return [c for c in db.server.connections(db.name) if c[0].startswith("idle in")]
    return [c for c in db.server.connections(db.name) if c[1]]


async def cancel_writes(url: str, db: Any) -> list[str]:
    """Cancel writes at different moments; return the problems found."""
    problems: list[str] = []
    user = new_user()
    # pool_size=1: three connections at most, so a leaked one soon shows as calls that wait
    store = AsyncSessionStore(url, pool_size=1, connect_timeout=CONNECT_TIMEOUT)
    try:
        sid = (await store.create_session(APP, user, {"n": 0})).id
        incs_done = incs_tried = 0
        events_done: set[int] = set()
        for k, delay in enumerate(DELAYS * 2):
            if k % 2 == 0:
                aw: Any = store.append_event(sid, "user", {"k": k}, state_delta={f"k{k}": k})
            else:
                aw = store.patch_state(sid, increment={"n": 1})
                incs_tried += 1
            task = asyncio.ensure_future(aw)
            await asyncio.sleep(delay)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=OP_BOUND)
            if not done:
                problems.append(f"write {k} still running {OP_BOUND} s after its cancellation")
            elif task.cancelled():
                pass
            elif task.exception() is not None:
                problems.append(f"write {k} cancelled: {describe(task.exception())}")  # type: ignore[arg-type]
            elif k % 2 == 0:
                events_done.add(k)
            else:
                incs_done += 1
        after = list(
            await asyncio.gather(
                *(attempt(store.get_session(APP, user, sid), OP_BOUND) for _ in range(4))
            )
        )
        after.append(await attempt(store.patch_state(sid, {"after": True}), OP_BOUND))
        after.append(await attempt(store.append_event(sid, "user", {"k": "after"}), OP_BOUND))
        problems += [f"call after the cancellations: {o}" for o in after if not o.ok]
        if db is not None:
            left = await in_thread(transactions_left, db)
            if left:
                problems.append(f"connections left inside a transaction: {left}")
    finally:
        closed = await attempt(store.close(), OP_BOUND)
        if not closed.ok:
            problems.append(f"close: {closed}")

    if db is not None:  # every connection of the store is gone once it is closed
        try:
            await wait_until(lambda: not db.server.connections(db.name), 5, "no connection left")
        except AssertionError:
            problems.append(f"connections left after close: {db.server.connections(db.name)}")

    check = await in_thread(SessionStore, url, connect_timeout=CONNECT_TIMEOUT, busy_timeout=2)
    try:
        session = await in_thread(check.get_session, APP, user, sid)
        events = await in_thread(check.list_events, sid)
        await in_thread(check.patch_state, sid, {"checked": True})  # nothing holds a lock
    finally:
        await in_thread(check.close)
    state = session.state
    seen = [e.content["k"] for e in events if e.content["k"] != "after"]
    for k in range(0, 2 * len(DELAYS), 2):
        if (k in seen) != (f"k{k}" in state):
            problems.append(f"write {k} half done: event {k in seen}, state {f'k{k}' in state}")
        if k in events_done and k not in seen:
            problems.append(f"write {k} completed, but its event is missing")
    if len(seen) != len(set(seen)):
        problems.append(f"events written twice: {sorted(seen)}")
    if not incs_done <= state["n"] <= incs_tried:
        problems.append(f"n={state['n']}: {incs_done} increments done of {incs_tried} tried")
    return problems


CANCEL = [
    pytest.param("sqlite"),
    pytest.param("postgresql"),
    pytest.param("mysql"),
]


@pytest.mark.parametrize("dbms", CANCEL)
def test_cancelled_write_is_all_or_nothing(
    dbms: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, db = url_of(dbms, request, tmp_path)
    problems = run_bounded(lambda: cancel_writes(url, db), 90)
    assert not problems, "\n".join(problems)


# -- UPGRADE_LOCK -------------------------------------------------------------------------------


def waiting_for_upgrade_lock() -> bool:
    """Some thread is blocked on UPGRADE_LOCK: a worker thread waiting for it on behalf of a
    task (``sessiondb._backend._Claim.wait``), or ``_upgrade_sync`` at its ``with``."""
    for frame in sys._current_frames().values():
        f: Any = frame
        while f is not None:
            waiter = f.f_locals.get("self")
            if f.f_code.co_name == "_upgrade_sync" or (
                f.f_code.co_name == "wait" and getattr(waiter, "lock", None) is UPGRADE_LOCK
            ):
                return True
            f = f.f_back
    return False


async def cancel_while_waiting(url: str) -> list[str]:
    problems = []
    store = AsyncSessionStore(url, connect_timeout=CONNECT_TIMEOUT)
    held = UPGRADE_LOCK.acquire(timeout=OP_BOUND)
    assert held, "UPGRADE_LOCK is taken before the test began"
    try:
        task = asyncio.ensure_future(store.migrate())
        # best effort: wait until the store is blocked on the lock (a future fix may wait in a
        # way this cannot see: then it goes on after the deadline)
        deadline = time.monotonic() + 2
        while not waiting_for_upgrade_lock() and not task.done():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        assert not task.done(), f"migrate() finished while the lock was held: {task}"
        task.cancel()
        outcome = await attempt(asyncio.wait({task}), OP_BOUND)
        assert outcome.ok, f"the cancelled migrate(): {outcome}"
    finally:
        UPGRADE_LOCK.release()
    # today's waiter is a default-executor thread: let it finish before looking at the lock
    await attempt(asyncio.get_running_loop().shutdown_default_executor(), OP_BOUND)
    released: Callable[[], bool] = lambda: not UPGRADE_LOCK.locked()  # noqa: E731
    try:
        await wait_until(released, 5, "UPGRADE_LOCK to be free")
    except AssertionError:
        problems.append("UPGRADE_LOCK is still held after the task waiting for it was cancelled")
        UPGRADE_LOCK.release()  # repair it for the rest of the test run
    await attempt(store.close(), OP_BOUND)

    async def migrate_again() -> None:  # in a new loop: this one's executor is shut down
        async with AsyncSessionStore(url, connect_timeout=CONNECT_TIMEOUT) as other:
            await other.migrate()

    again = await attempt(in_thread(asyncio.run, migrate_again()), OP_BOUND)
    if not again.ok:
        problems.append(f"migrate() after the cancellation: {again}")
    return problems


LOCK = ["sqlite", "postgresql", "mysql"]


@pytest.mark.parametrize("dbms", LOCK)
def test_upgrade_lock_released_when_a_waiting_task_is_cancelled(
    dbms: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'lock.db'}"
        if dbms == "sqlite"
        else request.getfixturevalue("db").url()
    )
    problems = run_bounded(lambda: cancel_while_waiting(url), 60)
    assert not problems, "\n".join(problems)
