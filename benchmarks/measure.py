"""Measuring: per-op timing loops, CPU, memory, and counting statements or round trips.

The timing loops do nothing per op but call, read the clock twice and store one float (plus
keeping the result of ``create``). Counting happens in separate loops of a separate pass, so a
counter never sits inside a timed loop.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Args = tuple[Any, ...]


# -- statistics ---------------------------------------------------------------------------------


def nearest_rank(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of sorted values, nearest-rank method."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Phase:
    """One timed phase: every op's latency, the phase's wall time and CPU time (seconds)."""

    latencies: list[float]
    wall: float
    cpu: float
    kept: list[Any] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        n = len(self.latencies)
        ordered = sorted(self.latencies)
        return {
            "count": n,
            "wall_s": self.wall,
            "ops_s": n / self.wall if self.wall > 0 else math.nan,
            "p50_ms": nearest_rank(ordered, 50) * 1e3,
            "p99_ms": nearest_rank(ordered, 99) * 1e3,
            "mean_ms": (sum(ordered) / n * 1e3) if n else math.nan,
            "max_ms": (ordered[-1] * 1e3) if n else math.nan,
            "cpu_ms_per_op": (self.cpu / n * 1e3) if n else math.nan,
        }


# -- timing loops -------------------------------------------------------------------------------


def time_sync(fn: Callable[..., Any], calls: Sequence[Args], keep: bool = False) -> Phase:
    """Run ``fn(*args)`` for each args, timing each call and the whole phase."""
    latencies = [0.0] * len(calls)
    kept: list[Any] = []
    clock = time.perf_counter
    cpu0 = time.process_time()
    start = clock()
    for i, args in enumerate(calls):
        t0 = clock()
        result = fn(*args)
        latencies[i] = clock() - t0
        if keep:
            kept.append(result)
    wall = clock() - start
    return Phase(latencies, wall, time.process_time() - cpu0, kept)


async def time_async(
    fn: Callable[..., Awaitable[Any]], calls: Sequence[Args], keep: bool = False
) -> Phase:
    """:func:`time_sync` for coroutine functions."""
    latencies = [0.0] * len(calls)
    kept: list[Any] = []
    clock = time.perf_counter
    cpu0 = time.process_time()
    start = clock()
    for i, args in enumerate(calls):
        t0 = clock()
        result = await fn(*args)
        latencies[i] = clock() - t0
        if keep:
            kept.append(result)
    wall = clock() - start
    return Phase(latencies, wall, time.process_time() - cpu0, kept)


# -- counting loops -----------------------------------------------------------------------------


def count_sync(
    fn: Callable[..., Any], calls: Sequence[Args], counter: Callable[[], int], keep: bool = False
) -> tuple[list[int], list[Any]]:
    """Run ``fn(*args)`` for each args; what ``counter`` advanced by during each call."""
    counts: list[int] = []
    kept: list[Any] = []
    for args in calls:
        before = counter()
        result = fn(*args)
        counts.append(counter() - before)
        if keep:
            kept.append(result)
    return counts, kept


async def count_async(
    fn: Callable[..., Awaitable[Any]],
    calls: Sequence[Args],
    counter: Callable[[], int],
    keep: bool = False,
) -> tuple[list[int], list[Any]]:
    """:func:`count_sync` for coroutine functions."""
    counts: list[int] = []
    kept: list[Any] = []
    for args in calls:
        before = counter()
        result = await fn(*args)
        counts.append(counter() - before)
        if keep:
            kept.append(result)
    return counts, kept


def count_stats(counts: Sequence[int]) -> dict[str, Any]:
    """Mean, min, max and the distribution of per-op counts."""
    if not counts:
        return {"mean": math.nan, "min": None, "max": None, "histogram": {}}
    histogram = Counter(counts)
    return {
        "mean": sum(counts) / len(counts),
        "min": min(counts),
        "max": max(counts),
        "histogram": {str(k): histogram[k] for k in sorted(histogram)},
    }


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


class SqliteStatementCounter:
    """Counts the SQL statements SQLite runs, on every ``sqlite3`` connection opened from now.

    It wraps ``sqlite3.connect`` and ``sqlite3.dbapi2.connect`` (what aiosqlite, the floor and
    SQLAlchemy's pysqlite dialect call) and installs ``set_trace_callback`` on each new
    connection, in the thread that opened it. Only for the counting pass.

    CPython reports a trigger or foreign-key action (``ON DELETE CASCADE``) run by a statement
    with the text of that statement again, so a write (INSERT/UPDATE/DELETE) identical to the
    previous line on the same connection is counted in ``triggered``, not as a statement.
    """

    def __init__(self) -> None:
        self.statements = 0
        self.triggered = 0
        self._lock = threading.Lock()
        self._real_connect: Callable[..., sqlite3.Connection] | None = None

    def _tracer(self) -> Callable[[str], None]:
        last: list[str | None] = [None]
        lock = self._lock

        def trace(sql: str) -> None:
            with lock:
                if sql == last[0] and sql.lstrip()[:6].upper() in _WRITES:
                    self.triggered += 1
                else:
                    self.statements += 1
                    last[0] = sql

        return trace

    def install(self) -> None:
        real = sqlite3.connect
        self._real_connect = real
        tracer = self._tracer

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = real(*args, **kwargs)
            conn.set_trace_callback(tracer())
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]
        sqlite3.dbapi2.connect = connect  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._real_connect is not None:
            sqlite3.connect = self._real_connect  # type: ignore[assignment]
            sqlite3.dbapi2.connect = self._real_connect  # type: ignore[assignment]
            self._real_connect = None

    def count(self) -> int:
        return self.statements


# -- memory -------------------------------------------------------------------------------------


def proc_status_kib(field_name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
