"""One store, many event loops and threads (issue 10 §3), on every backend.

Frameworks run each call in a new thread with a new loop (``asyncio.run`` per request, the
Agents SDK's ``Runner.run_sync`` from worker threads): one ``AsyncSessionStore``,
``SessiondbSession`` or ``DatabaseSessionService`` must serve them all, never hang, never let
two loops share a connection, and close without leaving a connection (or a warning) behind.
Every wait is bounded: a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, ConfigurationError, DatabaseSessionService

THREADS = 5
ROUNDS = 4  # asyncio.run() calls per thread
BOUND = 60.0  # seconds for a whole scenario; a hang fails the test


def in_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """``work(n)`` in ``count`` threads at once; their results (a thread's exception is
    re-raised), failing if any thread is still running after BOUND seconds."""
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(BOUND)
            results[n] = work(n)
        except BaseException as exc:
            errors[n] = exc

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running after {BOUND} s (a hang): {hung}"
    if errors:
        raise next(iter(errors.values()))
    return [results[n] for n in range(count)]


class Unraisable:
    """Records what ``__del__`` methods and finalizers raised or warned (ResourceWarning)."""

    def __enter__(self) -> Unraisable:
        self.seen: list[str] = []
        self._hook = sys.unraisablehook
        sys.unraisablehook = lambda u: self.seen.append(f"{u.exc_type.__name__}: {u.exc_value}")
        self._warnings = warnings.catch_warnings(record=True)
        self.caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc: Any) -> None:
        for _ in range(3):
            gc.collect()
        self._warnings.__exit__(*exc)
        sys.unraisablehook = self._hook
        self.seen += [f"{w.category.__name__}: {w.message}" for w in self.caught]


# -- AsyncSessionStore ----------------------------------------------------------------------------


def test_async_store_from_threads_each_with_its_own_loops(db_url: str) -> None:
    def scenario() -> Any:
        store = AsyncSessionStore(db_url)  # made outside any loop
        sid = asyncio.run(store.create_session("loops", "u", {"n": 0})).id

        async def work(n: int, r: int) -> None:
            await store.patch_state(sid, increment={"n": 1})
            await store.append_event(sid, f"t{n}", {"r": r}, state_delta={f"t{n}": r})
            got = await store.get_session("loops", "u", sid, recent_events=2)
            assert got is not None and got.state[f"t{n}"] >= r
            await asyncio.gather(*(store.list_events(sid, limit=3) for _ in range(3)))

        def thread(n: int) -> None:
            for r in range(ROUNDS):  # a new loop each time, as asyncio.run() per request
                asyncio.run(work(n, r))

        in_threads(thread)

        async def check_and_close() -> Any:
            try:
                return await store.get_session("loops", "u", sid)
            finally:
                await store.close()

        return asyncio.run(check_and_close())

    with Unraisable() as leaks:
        got = scenario()  # everything it made is garbage once it returns
    assert got.state["n"] == THREADS * ROUNDS
    assert got.event_count == THREADS * ROUNDS
    assert not leaks.seen


def test_async_store_loop_beside_threads_and_close_from_another_loop(db_url: str) -> None:
    """Threads run loops while the store's first loop keeps using it; a loop that was closed
    without finalizing its async generators leaves a pool that close() discards quietly."""

    def scenario() -> int:
        store = AsyncSessionStore(db_url)

        async def main() -> int:
            sid = (await store.create_session("loops", "v", {"n": 0})).id

            def thread(n: int) -> None:
                asyncio.run(store.patch_state(sid, increment={"n": 1}))

            beside = asyncio.get_running_loop().run_in_executor(None, in_threads, thread)
            for _ in range(10):
                await store.patch_state(sid, increment={"n": 1})
            await beside
            # a loop closed the blunt way: no shutdown_asyncgens, so no chance to close its pool
            bare = asyncio.new_event_loop()
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, bare.run_until_complete, store.patch_state(sid, increment={"n": 1})
                )
            finally:
                bare.close()
            got = await store.get_session("loops", "v", sid)
            assert got is not None
            await store.close()  # this loop's pool, and the bare loop's, discarded
            return int(got.state["n"])

        return asyncio.run(main())

    with Unraisable() as leaks:
        assert scenario() == 10 + THREADS + 1
    assert not leaks.seen


def test_close_reaches_a_loop_running_in_another_thread(db_url: str) -> None:
    """close() from one loop closes the pool of a loop that runs on in another thread, on
    that loop, and the store still works there afterwards (a new pool)."""

    def scenario() -> None:
        store = AsyncSessionStore(db_url)
        other = asyncio.new_event_loop()
        runner = threading.Thread(target=other.run_forever, daemon=True)
        runner.start()
        try:

            def on_other(aw: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(aw, other).result(BOUND)

            sid = on_other(store.create_session("loops", "x")).id
            asyncio.run(asyncio.wait_for(store.close(), BOUND))  # from a loop of its own
            assert on_other(store.get_session("loops", "x", sid)) is not None
            on_other(store.close())
        finally:
            other.call_soon_threadsafe(other.stop)
            runner.join(BOUND)
            other.run_until_complete(other.shutdown_asyncgens())
            other.close()

    with Unraisable() as leaks:
        scenario()
    assert not leaks.seen


def test_caller_engine_used_from_another_loop_fails_at_once(backend: str, db_url: str) -> None:
    """An AsyncEngine passed in belongs to the loop that used it first: another loop gets a
    typed error saying what to do, at once, and the first loop keeps working."""
    if backend == "sqlite":
        pytest.skip("SQLite's async store runs in threads: any loop may use its engine")
    from sqlalchemy.ext.asyncio import create_async_engine

    from sessiondb._urls import resolve_url

    async def main() -> None:
        engine = create_async_engine(resolve_url(db_url).async_url)
        try:
            store = AsyncSessionStore(engine)
            sid = (await store.create_session("loops", "w")).id

            def other_loop(n: int) -> str:
                try:
                    asyncio.run(asyncio.wait_for(store.get_session("loops", "w", sid), 10))
                except ConfigurationError as exc:
                    return str(exc)
                return "no error"

            messages = await asyncio.get_running_loop().run_in_executor(
                None, in_threads, other_loop, 2
            )
            assert all("pass" in m or "URL" in m for m in messages), messages
            assert await store.get_session("loops", "w", sid) is not None
            await store.close()
        finally:
            await engine.dispose()

    asyncio.run(main())


# -- DatabaseSessionService ------------------------------------------------------------------------


def test_session_service_from_threads_each_with_its_own_loops(db_url: str) -> None:
    service = DatabaseSessionService(db_url=db_url)  # at module level, as in the guide
    try:

        def thread(n: int) -> list[str]:
            made = []
            for r in range(ROUNDS):
                s = asyncio.run(service.create_session("svc", f"u{n}", {"r": r}))
                assert asyncio.run(service.update_session_state(s.id, {"r": r, "ok": 1})) == 2
                got = service.get_session("svc", f"u{n}", s.id)
                assert got is not None and got.state == {"r": r, "ok": 1}
                made.append(s.id)
            return made

        ids = in_threads(thread)
        for n, made in enumerate(ids):
            listed = service.list_sessions("svc", f"u{n}")
            assert sorted(s.id for s in listed) == sorted(made)
    finally:
        service.close()


# -- the OpenAI Agents SDK -------------------------------------------------------------------------


def test_openai_session_from_threads_each_with_its_own_loops(db_url: str) -> None:
    pytest.importorskip("agents", reason="the OpenAI Agents SDK is absent")
    from sessiondb.openai_agents import SessiondbSession

    def scenario() -> list[Any]:
        session = SessiondbSession("shared", db_url)  # owns a store made from the URL

        def thread(n: int) -> None:
            for r in range(ROUNDS):
                asyncio.run(session.add_items([{"role": "user", "content": f"{n}:{r}"}]))
                asyncio.run(session.get_items(limit=2))

        in_threads(thread)
        items = asyncio.run(session.get_items())
        asyncio.run(session.close())
        return items

    with Unraisable() as leaks:
        items = scenario()
    contents = sorted(item["content"] for item in items)
    assert contents == sorted(f"{n}:{r}" for n in range(THREADS) for r in range(ROUNDS))
    assert not leaks.seen


def test_runner_run_sync_from_worker_threads(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Runner.run_sync`` keeps one loop per worker thread and finalizes its async generators
    after each run; the session's store follows it there."""
    pytest.importorskip("agents", reason="the OpenAI Agents SDK is absent")
    from agents import Agent, RunConfig, Runner, set_tracing_disabled

    from sessiondb.openai_agents import SessiondbSession

    from .test_openai_agents import ScriptedModel, reply, texts

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    set_tracing_disabled(True)
    config = RunConfig(tracing_disabled=True)

    def thread(store: AsyncSessionStore, n: int) -> list[str]:
        model = ScriptedModel([reply(f"answer {n}.{r}") for r in range(ROUNDS)])
        agent = Agent(name="assistant", model=model)
        session = SessiondbSession(f"run-{n}", store, user_id=f"u{n}")
        for r in range(ROUNDS):
            result = Runner.run_sync(agent, f"question {n}.{r}", session=session, run_config=config)
            assert result.final_output == f"answer {n}.{r}"
        loop = asyncio.get_event_loop_policy().get_event_loop()  # the one run_sync keeps open
        try:
            return texts(loop.run_until_complete(session.get_items()))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def scenario() -> list[list[str]]:
        store = AsyncSessionStore(db_url)
        histories = in_threads(lambda n: thread(store, n), 4)
        asyncio.run(store.close())
        return histories

    with Unraisable() as leaks:
        histories = scenario()
    for n, history in enumerate(histories):
        expected = []
        for r in range(ROUNDS):
            expected += [f"question {n}.{r}", f"answer {n}.{r}"]
        assert history == expected
    assert not leaks.seen
