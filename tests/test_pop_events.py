"""pop_events under concurrency, through a transaction-mode pooler's settings, and on the MySQL
path without DELETE ... RETURNING (the contract itself: tests/test_contract.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, SessionStore

from ._tables import stored_events

THREADS, ROUNDS = 6, 10


def test_threads_popping_and_appending_lose_nothing(db_url: str) -> None:
    with SessionStore(db_url) as store:
        sid = store.create_session("app", "u").id
        seeds = [{"author": "seed", "content": f"seed {i}"} for i in range(THREADS * ROUNDS)]
        store.append_events(sid, seeds)
        popped: list[list[Any]] = [[] for _ in range(THREADS)]
        pops = [0] * THREADS  # the calls that removed something
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def worker(n: int) -> None:
            try:
                start.wait()
                for i in range(ROUNDS):
                    if n % 2:
                        store.append_event(sid, "writer", f"t{n}-{i}")
                    events = store.pop_events(sid, count=1 + i % 2)
                    popped[n] += [e.content for e in events]
                    pops[n] += bool(events)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(t.is_alive() for t in threads), "a thread hangs"
        assert errors == []
        got = [c for mine in popped for c in mine]
        left = [e.content for e in store.list_events(sid)]
        added = [s["content"] for s in seeds]
        added += [f"t{n}-{i}" for n in range(1, THREADS, 2) for i in range(ROUNDS)]
        assert len(got) == len(set(got))  # no event popped twice
        assert Counter(got + left) == Counter(added)  # none lost, none made up
        session = store.get_session("app", "u", sid)
        assert session is not None
        assert (session.event_count, session.event_bytes) == stored_events(db_url, sid)
        assert session.event_count == len(left)
        # created, seeded, then one version per append and per pop that removed something
        assert session.version == 2 + len(added) - len(seeds) + sum(pops)


async def test_tasks_popping_and_appending_lose_nothing(db_url: str) -> None:
    async with AsyncSessionStore(db_url) as store, AsyncSessionStore(db_url) as other:
        sid = (await store.create_session("app", "u")).id
        await store.append_events(sid, [{"author": "seed", "content": i} for i in range(40)])

        async def popper(n: int) -> list[Any]:
            mine = store if n % 2 else other
            got: list[Any] = []
            for _ in range(6):
                got += [e.content for e in await mine.pop_events(sid, count=2)]
            return got

        async def appender(n: int) -> None:
            for i in range(6):
                await (store if n % 2 else other).append_event(sid, "w", 100 * (n + 1) + i)

        results = await asyncio.gather(
            *(popper(n) for n in range(4)), *(appender(n) for n in range(3))
        )
        got = [c for r in results[:4] for c in r]
        left = [e.content for e in await store.list_events(sid)]
        assert len(got) == len(set(got))  # no event popped twice
        expected = list(range(40)) + [100 * (n + 1) + i for n in range(3) for i in range(6)]
        assert Counter(got + left) == Counter(expected)
        session = await store.get_session("app", "u", sid)
        assert session is not None and session.event_count == len(left)


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_pop_events_with_pooler_transaction(db_url: str) -> None:
    # the statements a transaction-mode pooler allows: no named prepared statements, no
    # connection settings (through PgBouncer itself: tests/scale/test_pgbouncer.py)
    with SessionStore(db_url, pooler="transaction") as store:
        sid = store.create_session("app", "u").id
        for round_ in range(7):  # past psycopg's prepare threshold
            store.append_events(sid, [{"author": "a", "content": round_}] * 2)
            assert [e.content for e in store.pop_events(sid)] == [round_]
        assert [e.content for e in store.list_events(sid)] == list(range(7))

    async def main() -> list[Any]:
        async with AsyncSessionStore(db_url, pooler="transaction") as astore:
            return [[e.content for e in await astore.pop_events(sid, count=2)] for _ in range(4)]

    assert asyncio.run(main()) == [[6, 5], [4, 3], [2, 1], [0]]


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
@pytest.mark.parametrize("front", ["sync", "async"])
def test_without_delete_returning(db_url: str, front: str) -> None:
    """MySQL has no DELETE ... RETURNING: the events are read under the lock, then deleted.
    MariaDB has it, so its store is told otherwise here to run that path on a real server."""

    def without(store: Any) -> None:
        queries = store._backend.core.q
        assert queries.delete_returns  # MariaDB: the one-statement path by default
        queries.delete_returns = False
        queries.popped = queries.newest_locked

    async def run(call: Any) -> None:
        sid = (await call("create_session", "app", "u")).id
        await call("append_events", sid, [{"author": "a", "content": i} for i in range(5)])
        assert [e.seq for e in await call("pop_events", sid, count=2)] == [5, 4]
        assert [e.seq for e in await call("pop_events", sid, until=lambda p: p[-1].seq <= 2)] == [
            3,
            2,
        ]
        assert [e.seq for e in await call("pop_events", sid, count=9)] == [1]
        assert await call("pop_events", sid) == []
        session = await call("get_session", "app", "u", sid)
        assert (session.event_count, session.event_bytes, session.version) == (0, 0, 5)
        assert stored_events(db_url, sid) == (0, 0)

    if front == "sync":
        with SessionStore(db_url) as store:
            store.count_sessions()  # binds the queries
            without(store)

            async def call(name: str, *args: Any, **kwargs: Any) -> Any:
                return getattr(store, name)(*args, **kwargs)

            asyncio.run(run(call))
        return

    async def main() -> None:
        async with AsyncSessionStore(db_url) as store:
            await store.count_sessions()
            without(store)

            async def call(name: str, *args: Any, **kwargs: Any) -> Any:
                return await getattr(store, name)(*args, **kwargs)

            await run(call)

    asyncio.run(main())


def test_until_reads_ahead_in_doubling_pages(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with SessionStore(db_url) as store:
        sid = store.create_session("app", "u").id
        store.append_events(sid, [{"author": "a", "content": i} for i in range(1, 1001)])
        with caplog.at_level(logging.DEBUG, logger="sessiondb.sql"):
            caplog.clear()  # only the pop's statements (a test before may have left DEBUG on)
            popped = store.pop_events(sid, until=lambda p: p[-1].seq == 1)
        statements = [r.getMessage() for r in caplog.records if r.name == "sessiondb.sql"]
        assert len(popped) == 1000
        # BEGIN, the lock, the newest's DELETE, pages of 8, 16, ... 512 (7 reads: 1,016 rows
        # at most, for the 999 left), one DELETE of them all, the session's UPDATE, COMMIT
        reads = [m for m in statements if "SELECT" in m and "seq <" in m]
        assert len(reads) == 7
        assert len(statements) <= 2 + 1 + 7 + 1 + 1 + 1 + 1  # (+1: MySQL reads, then deletes)
        assert store.list_events(sid) == []
