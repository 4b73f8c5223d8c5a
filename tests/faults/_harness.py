"""Running fault scenarios with a hard bound on time, through either front end.

Every scenario is an ``async def`` run by :func:`run_bounded` in a daemon thread with its own
event loop; the test's thread waits for it with a timeout, so a hang becomes a test failure
(with the hung thread's stack) instead of a stuck CI job. Inside a scenario, :func:`attempt`
bounds one call and records what it did; the sync store's calls run in daemon threads
(:func:`in_thread`) so that a blocked sync call can be abandoned too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from sessiondb import AsyncSessionStore, SessionStore
from sessiondb.errors import SessionDBError

__all__ = [
    "APP",
    "CONNECT_TIMEOUT",
    "OP_BOUND",
    "SLACK",
    "Outcome",
    "attempt",
    "describe",
    "in_thread",
    "new_user",
    "open_store",
    "run_bounded",
    "wait_until",
    "xfail",
]

T = TypeVar("T")

#: The stores' connect_timeout in these tests. libpq (psycopg) never waits less than 2 s.
CONNECT_TIMEOUT = 2
#: How much later than connect_timeout a typed error may arrive (scheduling on a busy machine).
SLACK = 1.5
#: The bound on one call while the server is up (a call that takes longer is a hang).
OP_BOUND = 10.0
APP = "faults"


def new_user() -> str:
    """A user id of the test's own (the tests share a database)."""
    return uuid4().hex


def xfail(reason: str) -> pytest.MarkDecorator:
    """Today's failure of a required behaviour: an assertion of the test (a fixture error, a
    harness crash or an API change fails the test instead of hiding behind the mark)."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"issue 10 §5: {reason}")


def run_bounded(scenario: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run ``scenario()`` in a fresh event loop on a daemon thread; fail if it outlives timeout."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(scenario())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=main, name="fault-scenario", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame else "?"
        raise AssertionError(
            f"the scenario was still running after {timeout:.0f} s (a hang):\n{stack}"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new daemon thread: awaitable, and abandoned if it blocks."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the scenario's loop may be gone
            loop.call_soon_threadsafe(_settle, fut, value, error)

    threading.Thread(target=run, name=f"sync-call-{fn.__name__}", daemon=True).start()
    return await fut


class SyncProxy:
    """A sync ``SessionStore`` whose methods are awaitable: each call runs in its own thread."""

    def __init__(self, store: SessionStore) -> None:
        self.sync_store = store

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.sync_store, name)
        if not callable(fn):
            return fn

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await in_thread(fn, *args, **kwargs)

        call.__name__ = name
        return call


async def make_store(front: str, url: str, **options: Any) -> Any:
    """A store on ``url`` through ``front`` ("sync" or "async"); every method is awaitable."""
    if front == "sync":
        return SyncProxy(await in_thread(SessionStore, url, **options))
    return AsyncSessionStore(url, **options)


@contextlib.asynccontextmanager
async def open_store(front: str, url: str, **options: Any) -> AsyncIterator[Any]:
    """:func:`make_store`, closed afterwards (the close is bounded; a stuck close is left)."""
    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    store = await make_store(front, url, **options)
    try:
        yield store
    finally:
        await attempt(store.close(), 10)


@dataclass
class Outcome:
    """What one bounded call did."""

    value: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0
    hung: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.hung

    @property
    def typed(self) -> bool:
        return self.error is None or isinstance(self.error, SessionDBError)

    def __str__(self) -> str:
        if self.hung:
            return f"no answer after {self.elapsed:.1f} s"
        if self.error is not None:
            return f"{describe(self.error)} after {self.elapsed:.2f} s"
        return f"ok after {self.elapsed:.2f} s"


def describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {text[:300]}"


async def attempt(aw: Awaitable[T], bound: float) -> Outcome:
    """Await ``aw`` for at most ``bound`` seconds; never raises (but for cancellation)."""
    t0 = time.monotonic()
    try:
        value = await asyncio.wait_for(aw, bound)
    except asyncio.TimeoutError:
        return Outcome(elapsed=time.monotonic() - t0, hung=True)
    except Exception as exc:
        return Outcome(error=exc, elapsed=time.monotonic() - t0)
    return Outcome(value=value, elapsed=time.monotonic() - t0)


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
