"""Issue 10 §5: a server restarted, killed or down while a store is open.

After the server is back, the *same* store object must work again, without an app restart:
the connections it pooled before are dead, and a call must never be the one that finds out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessiondb.errors import ConfigurationError, DatabaseUnavailableError

from ._harness import (
    APP,
    CONNECT_TIMEOUT,
    OP_BOUND,
    SLACK,
    attempt,
    in_thread,
    new_user,
    open_store,
    run_bounded,
    wait_until,
)


async def warm(store: Any, user: str, sid: str, width: int = 3) -> None:
    """Run ``width`` calls at once, so the store keeps several connections."""
    outcomes = await asyncio.gather(
        *(attempt(store.get_session(APP, user, sid), OP_BOUND) for _ in range(width))
    )
    assert all(o.ok for o in outcomes), [str(o) for o in outcomes]


async def calls_after(store: Any, user: str, sid: str) -> list[str]:
    """Concurrent and sequential reads and writes; the failed ones, described."""
    outcomes = list(
        await asyncio.gather(
            attempt(store.get_session(APP, user, sid), OP_BOUND),
            attempt(store.patch_state(sid, increment={"n": 1}), OP_BOUND),
            attempt(store.list_sessions(APP, user), OP_BOUND),
        )
    )
    outcomes.append(await attempt(store.patch_state(sid, {"k": "v"}), OP_BOUND))
    outcomes.append(await attempt(store.append_event(sid, "user", {"text": "hi"}), OP_BOUND))
    outcomes.append(await attempt(store.get_session(APP, user, sid), OP_BOUND))
    return [str(o) for o in outcomes if not o.ok]


async def bounce(server: Any, mode: str) -> None:
    if mode == "restart":
        await in_thread(server.restart)
    else:
        await in_thread(server.kill)
        await in_thread(server.start)


@pytest.mark.parametrize("mode", ["restart", "kill"])
def test_restart_while_idle(db: Any, front: str, mode: str) -> None:
    """Server restarted (or SIGKILLed and started) while the store is idle: 0 failed calls."""

    async def scenario() -> None:
        async with open_store(front, db.url()) as store:
            user = new_user()
            session = await store.create_session(APP, user, {"n": 0})
            await warm(store, user, session.id)
            await bounce(db.server, mode)
            failed = await calls_after(store, user, session.id)
            assert not failed, f"calls failed after the {mode}: {failed}"

    run_bounded(scenario, 60)


def test_outage_then_recovery(db: Any, front: str) -> None:
    """Server down: typed DatabaseUnavailableError within connect_timeout, every time; once it
    is back, the same store works, with no failed call."""

    async def scenario() -> None:
        async with open_store(front, db.url()) as store:
            user = new_user()
            session = await store.create_session(APP, user, {"n": 0})
            await warm(store, user, session.id)
            await in_thread(db.server.stop)
            during = [
                await attempt(store.get_session(APP, user, session.id), CONNECT_TIMEOUT + 10),
                await attempt(store.patch_state(session.id, increment={"n": 1}), 12),
                await attempt(store.list_sessions(APP, user), CONNECT_TIMEOUT + 10),
            ]
            for outcome in during:
                assert isinstance(outcome.error, DatabaseUnavailableError), str(outcome)
                assert outcome.elapsed < CONNECT_TIMEOUT + SLACK, str(outcome)
            await in_thread(db.server.start)
            failed = await calls_after(store, user, session.id)
            assert not failed, f"calls failed after the outage: {failed}"

    run_bounded(scenario, 60)


def test_pool_pre_ping_is_honoured_or_refused(db: Any, front: str) -> None:
    """Every engine option is honoured or refused: with pool_pre_ping, a restart is invisible."""

    async def scenario() -> None:
        try:
            cm = open_store(front, db.url(), engine_options={"pool_pre_ping": True})
            store = await cm.__aenter__()
        except ConfigurationError:
            return  # refused: fine
        try:
            user = new_user()
            session = await store.create_session(APP, user, {"n": 0})
            await warm(store, user, session.id)
            await bounce(db.server, "restart")
            failed = await calls_after(store, user, session.id)
            assert not failed, f"calls failed after a restart with pool_pre_ping=True: {failed}"
        finally:
            await cm.__aexit__(None, None, None)

    run_bounded(scenario, 60)


# -- restart under load ----------------------------------------------------------------------------

WRITERS = 4
MAX_OPS = 3000  # per writer: the loop is bounded in count as well as in time
ACKS = 20  # acknowledged calls per writer before the restart, and after it
BACKOFF = 0.02  # a writer whose call failed waits this long before the next (the server is away)


class Writer:
    """One writer's session and the fate of each of its calls."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.acked_incs = 0
        self.unknown_incs = 0  # failed calls: applied once, or not at all
        self.acked_events: set[int] = set()
        self.unknown_events: set[int] = set()
        self.after_restart = 0  # acknowledged calls once the server was back
        self.errors: dict[str, int] = {}
        self.untyped: list[str] = []
        self.hung: list[str] = []

    @property
    def acked(self) -> int:
        return self.acked_incs + len(self.acked_events)


async def write_loop(store: Any, w: Writer, stop: asyncio.Event, back: asyncio.Event) -> None:
    for i in range(MAX_OPS):
        if stop.is_set():
            return
        if i % 2 == 0:
            outcome = await attempt(store.patch_state(w.sid, increment={"n": 1}), OP_BOUND)
        else:
            outcome = await attempt(store.append_event(w.sid, "load", {"i": i}), OP_BOUND)
        if outcome.ok:
            if i % 2 == 0:
                w.acked_incs += 1
            else:
                w.acked_events.add(i)
            w.after_restart += back.is_set()
            continue
        if i % 2 == 0:
            w.unknown_incs += 1
        else:
            w.unknown_events.add(i)
        if outcome.hung:
            w.hung.append(f"call {i}: {outcome}")
        else:
            assert outcome.error is not None
            name = type(outcome.error).__name__
            if name != "DatabaseUnavailableError":
                name = str(outcome)
            w.errors[name] = w.errors.get(name, 0) + 1
            if not outcome.typed:
                w.untyped.append(f"call {i}: {outcome}")
        await asyncio.sleep(BACKOFF)


@pytest.mark.parametrize("mode", ["restart", "kill"])
def test_restart_under_load(db: Any, front: str, mode: str) -> None:
    """Writers keep going through a restart (or a SIGKILL and start) of the server.

    Typed errors only, recovery with the same store object, no acknowledged write lost, and
    no increment applied twice (each failed call may have been applied once, or not at all).
    """

    async def scenario() -> None:
        user = new_user()
        async with open_store(front, db.url()) as store:
            writers = [
                Writer((await store.create_session(APP, user, {"n": 0})).id) for _ in range(WRITERS)
            ]
            stop, back = asyncio.Event(), asyncio.Event()
            tasks = [asyncio.create_task(write_loop(store, w, stop, back)) for w in writers]
            try:
                await wait_until(
                    lambda: all(w.acked >= ACKS for w in writers), 10, "every writer to start"
                )
                await bounce(db.server, mode)
                back.set()
                await wait_until(
                    lambda: (
                        all(w.after_restart >= ACKS for w in writers)
                        or any(t.done() for t in tasks)
                    ),
                    20,
                    f"every writer to succeed again with the same store after the {mode}",
                )
            finally:
                stop.set()
                await attempt(asyncio.gather(*tasks), OP_BOUND + 5)
            for task in tasks:
                task.result()  # a writer's own failure (an assertion) surfaces here
            untyped = [u for w in writers for u in w.untyped]
            hung = [h for w in writers for h in w.hung]
            assert not untyped, f"untyped errors: {untyped[:5]}"
            assert not hung, f"calls that never answered: {hung[:5]}"
            assert all(w.after_restart >= ACKS for w in writers), "a writer ran out of calls"
            print(
                f"{mode}: acknowledged",
                [w.acked for w in writers],
                "errors",
                [w.errors for w in writers],
            )

        async with open_store("sync", db.url()) as check:
            problems = []
            for w in writers:
                session = await check.get_session(APP, user, w.sid)
                n = session.state["n"]
                if not w.acked_incs <= n <= w.acked_incs + w.unknown_incs:
                    problems.append(
                        f"n={n}, but {w.acked_incs} increments acknowledged and "
                        f"{w.unknown_incs} failed"
                    )
                events = await check.list_events(w.sid)
                seen = [e.content["i"] for e in events]
                lost = w.acked_events - set(seen)
                if lost:
                    problems.append(f"acknowledged events lost: {sorted(lost)[:10]}")
                twice = {i for i in seen if seen.count(i) > 1}
                if twice:
                    problems.append(f"events stored twice: {sorted(twice)[:10]}")
                unknown = set(seen) - w.acked_events - w.unknown_events
                if unknown:
                    problems.append(f"events nobody wrote: {sorted(unknown)[:10]}")
            assert not problems, "\n".join(problems)

    run_bounded(scenario, 90)
