"""``python -m benchmarks.pop``: the OpenAI Agents ``pop_item``, before and now.

Contenders, on one session each, measured in ``--rounds`` interleaved rounds (the order
rotating), each round ``--cycles`` add/pop cycles per contender (one item added, then popped;
only the pop is timed):

- ``pop_item``: :class:`~sessiondb.openai_agents.SessiondbSession` today, one ``pop_events``
  transaction that deletes the item's event;
- ``tombstone (before)``: what ``pop_item`` did before, replayed through the store: read the
  newest events and the version, then append a tombstone event with ``expected_version``;
- on SQLite, the SDK's own ``SQLiteSession.pop_item`` (its ``DELETE ... RETURNING``), as the
  reference.

Printed per contender: the median pop in microseconds, its ratio to ``pop_item``, and the
events each session holds at the end (the tombstone one grows by two per cycle). Then the
cost of the first ``pop_item`` on a session the tombstone version left behind after
``--legacy-pairs`` add/pop cycles (it deletes every tombstone and hidden item at once).

    python -m benchmarks.pop                           # sqlite,postgresql
    python -m benchmarks.pop --db sqlite,postgresql,mysql --rounds 7 --cycles 100

Each backend gets a new database (PostgreSQL/MariaDB: created and dropped; SQLite: a file in
a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .targets import scratch_database

ITEM = {"role": "user", "content": "What is the weather like in Paris today?"}
APP, USER = "bench", "u"

Pop = Callable[[], Awaitable[Any]]
Add = Callable[[], Awaitable[Any]]
Count = Callable[[], Awaitable[int]]


@asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A new database on ``backend`` (a SQLite file in ``workdir``), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'pop_{secrets.token_hex(4)}.db'}"
        return
    with scratch_database(backend, "sdb_bench_pop") as url:
        yield url


async def contenders(
    backend: str, store: Any, workdir: Path
) -> dict[str, tuple[Add, Pop, Count, Callable[[], None]]]:
    """Each contender's (add one item, pop, events stored, close)."""
    from sessiondb.openai_agents import POP_MARKER, TOMBSTONE_AUTHOR, SessiondbSession

    out: dict[str, tuple[Add, Pop, Count, Callable[[], None]]] = {}

    async def count_of(sid: str) -> int:
        session = await store.get_session(APP, USER, sid)
        return 0 if session is None else int(session.event_count)

    now = SessiondbSession("now", store, app_name=APP, user_id=USER)
    out["pop_item"] = (
        lambda: now.add_items([ITEM]), now.pop_item, lambda: count_of("now"), lambda: None
    )  # fmt: skip

    await store.create_session(APP, USER, session_id="before")

    async def add_before() -> None:
        await store.append_events("before", [{"author": "user", "content": ITEM}],
                                  app_name=APP, user_id=USER)  # fmt: skip

    async def pop_before() -> Any:
        # the tombstone pop: newest events and version, then a version-checked append
        read = await store.get_session(APP, USER, "before", recent_events=8)
        top = read.events[-1]
        await store.append_event(
            "before", TOMBSTONE_AUTHOR, None, metadata={POP_MARKER: top.seq},
            expected_version=read.version, app_name=APP, user_id=USER,
        )  # fmt: skip
        return top.content

    out["tombstone (before)"] = (add_before, pop_before, lambda: count_of("before"), lambda: None)

    if backend == "sqlite":
        from agents.memory import SQLiteSession

        sdk = SQLiteSession("sdk", str(workdir / f"sdk_{secrets.token_hex(4)}.db"))

        async def count_sdk() -> int:
            return len(await sdk.get_items())

        out["SDK SQLiteSession"] = (lambda: sdk.add_items([ITEM]), sdk.pop_item, count_sdk,
                                    sdk.close)  # fmt: skip
    return out


async def legacy_first_pop(store: Any, pairs: int) -> float:
    """Seconds of the first ``pop_item`` on a session holding ``pairs`` tombstoned items."""
    from sessiondb.openai_agents import POP_MARKER, TOMBSTONE_AUTHOR, SessiondbSession

    await store.create_session(APP, USER, session_id="legacy")
    events: list[dict[str, Any]] = [{"author": "user", "content": ITEM}]
    for i in range(pairs):
        events += [{"author": "user", "content": ITEM},
                   {"author": TOMBSTONE_AUTHOR, "metadata": {POP_MARKER: 2 + 2 * i}}]  # fmt: skip
    for start in range(0, len(events), 1000):
        await store.append_events("legacy", events[start : start + 1000],
                                  app_name=APP, user_id=USER)  # fmt: skip
    session = SessiondbSession("legacy", store, app_name=APP, user_id=USER)
    began = time.perf_counter()
    assert await session.pop_item() == ITEM
    took = time.perf_counter() - began
    left = await store.get_session(APP, USER, "legacy")
    assert left is not None and left.event_count == 0
    return took


async def measure(
    backend: str, workdir: Path, rounds: int, cycles: int, pairs: int
) -> tuple[dict[str, tuple[float, int]], float]:
    from sessiondb import AsyncSessionStore

    async with database(backend, workdir) as url, AsyncSessionStore(url) as store:
        entries = await contenders(backend, store, workdir)
        names = list(entries)
        times: dict[str, list[float]] = {name: [] for name in names}
        try:
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    add, pop, _, _ = entries[name]
                    for _ in range(cycles):
                        await add()
                        began = time.perf_counter()
                        assert await pop() == ITEM
                        times[name].append(time.perf_counter() - began)
            found = {
                name: (statistics.median(times[name]), await entries[name][2]()) for name in names
            }
        finally:
            for _, _, _, close in entries.values():
                close()
        return found, await legacy_first_pop(store, pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pop")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--cycles", type=int, default=60, help="add/pop cycles per round")
    parser.add_argument("--legacy-pairs", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"pop latency (median of {args.rounds} x {args.cycles} pops, interleaved rounds)")
    print(f"{'backend':<11} {'contender':<20} {'us/pop':>8} {'vs pop_item':>12} {'events':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.db.split(","):
            found, legacy = asyncio.run(
                measure(backend, Path(tmp), args.rounds, args.cycles, args.legacy_pairs)
            )
            base = found["pop_item"][0]
            for name, (median, events) in found.items():
                print(f"{backend:<11} {name:<20} {median * 1e6:>8.0f} {median / base:>11.2f}x "
                      f"{events:>7}")  # fmt: skip
            print(f"{backend:<11} first pop_item past {args.legacy_pairs} legacy add/pop pairs: "
                  f"{legacy * 1e3:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
