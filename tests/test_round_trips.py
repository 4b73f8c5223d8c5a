"""Round trips per operation stay within their bounds (issue 14, target 3).

On PostgreSQL and MariaDB the store reaches its server through the benchmarks' counting TCP
proxy (a round trip is a client burst answered by the server); on SQLite every statement the
``sqlite3`` connections run is counted (BEGIN and COMMIT included). Each op first runs a few
times untimed, so one-time costs (a driver preparing a statement) are out of the count; then
every counted call must stay within the bound of its backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from benchmarks.measure import SqliteStatementCounter
from benchmarks.proxy import CountingProxy

from sessiondb import AsyncSessionStore, SessionStore

#: op -> backend -> most round trips (SQLite: statements) per call
BOUNDS: dict[str, dict[str, int]] = {
    "create_session": {"postgresql": 1, "mysql": 1, "sqlite": 1},
    "get_session": {"postgresql": 1, "mysql": 1, "sqlite": 1},
    "list_sessions": {"postgresql": 1, "mysql": 1, "sqlite": 1},
    "patch_state": {"postgresql": 1, "mysql": 1, "sqlite": 1},
    "append_event": {"postgresql": 1, "mysql": 2, "sqlite": 5},
    "append_event with a shared key": {"postgresql": 1, "mysql": 2, "sqlite": 8},
    "append_events": {"postgresql": 1, "mysql": 2, "sqlite": 10},
    "append_event by id": {"postgresql": 1, "mysql": 2, "sqlite": 5},
    "update_session_state with shared keys": {"postgresql": 1, "mysql": 2, "sqlite": 10},
    "update_session_state with shared keys, by id": {"postgresql": 2, "mysql": 3, "sqlite": 11},
    "transform_state with a shared key": {"postgresql": 2, "mysql": 2, "sqlite": 8},
    "delete_session": {"postgresql": 1, "mysql": 1, "sqlite": 1},
}
#: SQLite, async store: a quick write runs on the event loop's thread inside one BEGIN IMMEDIATE
#: ... COMMIT (taken at once or not at all, see Runner.run_now): two more statements, in
#: process, for the writes that are one autocommit statement otherwise
LOOP_TX = {"create_session", "patch_state", "delete_session"}
WARM = 6  # psycopg prepares a statement on its 5th execution (one extra round trip, once)
COUNTED = 3


class Counter:
    """Round trips (servers) or statements (SQLite) seen so far."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count


@pytest.fixture
def counted_url(backend: str, db_url: str) -> Iterator[tuple[str, Counter]]:
    if backend == "sqlite":
        counter = SqliteStatementCounter()
        counter.install()
        try:
            yield db_url, Counter(counter.count)
        finally:
            counter.uninstall()
        return
    url = sa.make_url(db_url)
    with CountingProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        proxied = url.set(host=proxy.host, port=proxy.port)
        yield proxied.render_as_string(hide_password=False), Counter(lambda: proxy.round_trips)


def _ops(call: Callable[..., Any]) -> dict[str, Callable[[int], Any]]:
    """Each op as a function of the call's number (fresh values every time)."""
    owner = {"app_name": "app", "user_id": "u"}
    sid = "s1"

    def transform(i: int) -> Any:
        return call("transform_state", sid, lambda s: {**s, "app:n": i, "k": i}, **owner)

    return {
        "create_session": lambda i: call(
            "create_session", "app", "u", {"a": 1}, session_id=f"c{i}"
        ),
        "get_session": lambda i: call("get_session", "app", "u", sid),
        "list_sessions": lambda i: call("list_sessions", "app", "u"),
        "patch_state": lambda i: call("patch_state", sid, {"k": i}, **owner),
        "append_event": lambda i: call(
            "append_event", sid, "user", {"text": f"hi {i}"}, state_delta={"k": i}, **owner
        ),
        "append_event with a shared key": lambda i: call(
            "append_event",
            sid,
            "user",
            "x",
            state_delta={"k": i, "user:seen": i, "temp:t": 1},
            **owner,
        ),
        "append_events": lambda i: call(
            "append_events",
            sid,
            [
                {"author": "user", "content": i, "state_delta": {"k": i}, "event_id": f"e{i}"},
                {"author": "model", "content": -i, "state_delta": {"app:n": i}},
            ],
            **owner,
        ),
        "append_event by id": lambda i: call("append_event", sid, "user", "by id"),
        "transform_state with a shared key": transform,
        "delete_session": lambda i: call("delete_session", f"c{i}", **owner),
    }


def _scoped_writes(call: Callable[..., Any], counter: Counter, by_id: bool) -> list[int]:
    """update_session_state of a state just read, with its app: and user: keys changed: the
    read is not counted, the write is."""
    counts = []
    for i in range(WARM + COUNTED):
        state = call("get_session", "app", "u", "s1").state
        state = {**state, "app:n": -i, "user:m": i, "own": i}
        owner = {} if by_id else {"app_name": "app", "user_id": "u"}
        before = counter.count()
        call("update_session_state", "s1", state, **owner)
        counts.append(counter.count() - before)
        assert call("get_session", "app", "u", "s1").state == state
    return counts[WARM:]


def _check(call: Callable[..., Any], counter: Counter, backend: str, loop_tx: bool = False) -> None:
    call("create_session", "app", "u", {"k": 0, "app:n": 0}, session_id="s1")
    seen: dict[str, list[int]] = {}
    for name, op in _ops(call).items():
        counts = []
        for i in range(WARM + COUNTED):
            before = counter.count()
            op(i)
            counts.append(counter.count() - before)
        seen[name] = counts[WARM:]
    seen["update_session_state with shared keys"] = _scoped_writes(call, counter, False)
    seen["update_session_state with shared keys, by id"] = _scoped_writes(call, counter, True)
    bounds = {name: BOUNDS[name][backend] + 2 * (loop_tx and name in LOOP_TX) for name in seen}
    over = {name: counts for name, counts in seen.items() if max(counts) > bounds[name]}
    assert not over, f"more round trips than allowed on {backend}: {over}, all: {seen}"
    # the writes did what they say
    session = call("get_session", "app", "u", "s1", recent_events=3)
    assert session.state["app:n"] == -(WARM + COUNTED - 1)
    assert session.state["user:m"] == WARM + COUNTED - 1
    assert session.state["user:seen"] == WARM + COUNTED - 1
    assert [e.content for e in session.events][-2:] == ["by id", "by id"]


def test_round_trips_per_op(backend: str, counted_url: tuple[str, Counter]) -> None:
    url, counter = counted_url
    with SessionStore(url) as store:

        def call(name: str, *args: Any, **kwargs: Any) -> Any:
            return getattr(store, name)(*args, **kwargs)

        _check(call, counter, backend)


def test_round_trips_per_op_async(backend: str, counted_url: tuple[str, Counter]) -> None:
    url, counter = counted_url

    async def main() -> None:
        async with AsyncSessionStore(url) as store:
            loop = asyncio.get_running_loop()

            def call(name: str, *args: Any, **kwargs: Any) -> Any:
                coro = getattr(store, name)(*args, **kwargs)
                return asyncio.run_coroutine_threadsafe(coro, loop).result()

            await asyncio.to_thread(_check, call, counter, backend, backend == "sqlite")

    asyncio.run(main())


def test_appends_past_one_statement(backend: str, db_url: str) -> None:
    """Batches larger than PostgreSQL's one statement holds, stale versions and ids shared by
    several owners take the transactional path, with the same results and errors."""
    from sessiondb import AmbiguousSessionError, StaleSessionError
    from sessiondb._core import PG_EVENTS_PER_STATEMENT

    n = PG_EVENTS_PER_STATEMENT + 1
    with SessionStore(db_url) as store:
        s = store.create_session("app", "u", {"k": 0}, session_id="s")
        events = [{"author": "a", "content": i, "state_delta": {"k": i}} for i in range(n)]
        out = store.append_events("s", events, app_name="app", user_id="u")
        assert [e.seq for e in out] == list(range(1, n + 1))
        got = store.get_session("app", "u", "s")
        assert got is not None and (got.state, got.event_count, got.version) == ({"k": n - 1}, n, 2)
        with pytest.raises(StaleSessionError):
            store.append_event("s", "a", "late", expected_version=s.version)
        store.create_session("app", "v", session_id="s")
        with pytest.raises(AmbiguousSessionError):
            store.append_event("s", "a", "whose?")
        mine = store.append_event("s", "a", "mine", expected_version=2, app_name="app", user_id="u")
        assert mine.seq == n + 1
