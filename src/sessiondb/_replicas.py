"""Read replicas: which operations are reads, where each read runs, and read-your-writes.

A core operation declares itself a read with :func:`reads`; everything else is a write. With
``read_urls`` (PostgreSQL hot standbys), a :class:`Router` sends reads to the replicas in turn
and every write (and every read inside a write) to the primary.

Read-your-writes (``read_consistency="read_your_writes"``, the default): after each write that
sent something, the store reads the primary's WAL insert position on the same connection
(``pg_current_wal_insert_lsn()``, one more round trip) and keeps the highest. That position is
past the end of the write's commit record, so a replica whose replay position
(``pg_last_wal_replay_lsn()``) has reached it holds the write. A read runs on a replica
connection known to have replayed that far; otherwise the connection's server is asked (one
round trip) and, if it is behind, the primary serves the read (one replica is asked per read,
so a read costs at most one extra round trip; the next read asks the next replica). The answer
is remembered per connection, not per URL: a connection stays on one server for life, while
one read URL may lead to several (a load balancer, a multi-host URL). Replay only moves
forward, so a connection once seen past the store's last write serves at once.

``"eventual"`` reads any healthy replica without asking; ``"primary"`` sends every read to the
primary (read_urls then only stand by). A replica that cannot be reached is left alone for a
while (1 s, doubling up to 30 s) and its reads go elsewhere; a read that a replica cancels (a
recovery conflict) is run on the next replica or the primary.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._queries import REPLAY_LSN, WAL_LSN
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    SessionDBError,
)

if TYPE_CHECKING:
    from ._runner import Cx
    from ._telemetry import StoreTelemetry
    from ._urls import Target

__all__ = [
    "Consistency",
    "Replica",
    "ReplicaBehindError",
    "Router",
    "is_quick",
    "is_read",
    "quick",
    "quick_write",
    "reads",
]

logger = logging.getLogger("sessiondb")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Consistency = Literal["read_your_writes", "eventual", "primary"]
CONSISTENCIES = ("read_your_writes", "eventual", "primary")
_READ = "__sessiondb_read__"
_QUICK = "__sessiondb_quick__"
#: seconds a replica that failed is left alone: the first time, then doubling up to the last
RETRY_FIRST, RETRY_MAX = 1.0, 30.0
#: the store's writes reached no known position (the position could not be read): every read
#: goes to the primary until a later write records one
_UNKNOWN = float("inf")
#: where a connection's info remembers how far its server had replayed (WAL bytes)
_REPLAYED = "sessiondb_replayed"


def reads(fn: F) -> F:
    """Declare a core operation (or a plan's step) a read: with ``read_urls`` it may run on a
    replica. It must not write."""
    setattr(fn, _READ, True)
    return fn


def quick(fn: F) -> F:
    """Declare a read (see :func:`reads`) that touches a few rows, found by key or as one
    bounded page: on SQLite the async store runs it on the event loop's own thread, on an idle
    connection that never waits for a lock (see :meth:`~sessiondb._runner.Runner.run_now`)."""
    setattr(fn, _READ, True)
    setattr(fn, _QUICK, True)
    return fn


def quick_write(fn: F) -> F:
    """Declare a write that touches a few rows, found by key, in at most one transaction and
    without user code: on SQLite, at a durability with no fsync per commit, the async store
    runs it on the event loop's own thread when the write lock is free at once (see
    :meth:`~sessiondb._runner.Runner.run_now`), else in a worker thread."""
    setattr(fn, _QUICK, True)
    return fn


def is_quick(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was declared with :func:`quick`."""
    return getattr(fn, _QUICK, False) is True


def is_read(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was declared with :func:`reads` (a bound method: its function was)."""
    return getattr(fn, _READ, False) is True


class ReplicaBehindError(Exception):
    """A replica has not replayed this store's last write yet (never leaves the router)."""


class Replica:
    """One read URL and what the store knows of it; shared by every event loop's pool."""

    __slots__ = ("down_until", "failures", "index", "target")

    def __init__(self, index: int, target: Target) -> None:
        self.index = index
        self.target = target
        #: monotonic time before which the replica is not tried (it failed)
        self.down_until = 0.0
        self.failures = 0


class Router:
    """Chooses where each read runs and keeps the read-your-writes position."""

    def __init__(self, targets: list[Target], consistency: Consistency) -> None:
        if consistency not in CONSISTENCIES:
            raise ConfigurationError(
                f"read_consistency must be one of {', '.join(CONSISTENCIES)}, not {consistency!r}"
            )
        self.replicas = [Replica(i, t) for i, t in enumerate(targets)]
        self.consistency = consistency
        #: the primary's WAL position after this store's last write (0: none yet)
        self.written: float = 0
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.track = consistency == "read_your_writes"
        #: the store's telemetry, told of reads that leave a replica (None: off)
        self.telemetry: StoreTelemetry | None = None

    # -- writes ----------------------------------------------------------------------------------

    def write(self, cx: Cx, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run the write ``fn`` on the primary, then note the WAL position it reached."""
        result = fn(cx, *args, **kwargs)
        if cx.sent and self.track:
            try:
                position = float(cx.one(WAL_LSN, {})[0])
            except Exception:
                # the write was done; where it ended is unknown: read from the primary
                # until a later write tells (a broken connection is dropped when leased)
                position = _UNKNOWN
            self._note(position)
        return result

    def _note(self, position: float) -> None:
        with self._lock:
            if position == _UNKNOWN or self.written == _UNKNOWN or position > self.written:
                self.written = position

    # -- reads -----------------------------------------------------------------------------------

    def candidates(self) -> list[Replica]:
        """The replicas to try for one read, in turn (round robin), leaving out those that
        failed lately; empty: read from the primary."""
        if self.consistency == "primary" or self.written == _UNKNOWN:
            return []
        replicas = self.replicas
        count = len(replicas)
        start = next(self._turn) % count
        now = time.monotonic()
        return [
            r for r in (replicas[(start + i) % count] for i in range(count)) if r.down_until <= now
        ]

    def on_replica(
        self, cx: Cx, replica: Replica, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """Run the read ``fn`` on ``replica`` if it holds this store's writes, else raise
        :class:`ReplicaBehindError`."""
        needed = self.written
        if self.track and needed > 0:
            info = cx.info()
            if needed > info.get(_REPLAYED, -1):
                replayed = info[_REPLAYED] = float(cx.one(REPLAY_LSN, {})[0])
                if replayed < needed:
                    logger.debug(
                        "replica %s has not replayed this store's last write yet: reading "
                        "from the primary", replica.target.location,
                    )  # fmt: skip
                    if self.telemetry is not None:
                        self.telemetry.fallback(replica.target, "behind")
                    raise ReplicaBehindError
        result = fn(cx, *args, **kwargs)
        replica.failures = 0
        return result

    def failed(self, replica: Replica, exc: SessionDBError) -> bool:
        """A read on ``replica`` raised ``exc``: True when the read may go elsewhere (the
        replica is then left alone for a while if it is unreachable or misconfigured)."""
        if isinstance(exc, (DatabaseUnavailableError, AuthenticationError, ConfigurationError)):
            replica.failures += 1
            pause = min(RETRY_FIRST * 2 ** (replica.failures - 1), RETRY_MAX)
            replica.down_until = time.monotonic() + pause
            logger.warning(
                "replica %s failed, reading elsewhere for %.0f s: %s",
                replica.target.location, pause, exc,
            )  # fmt: skip
            if self.telemetry is not None:
                self.telemetry.fallback(replica.target, "failed")
            return True
        # a query the replica cancelled (a recovery conflict), or another server error
        elsewhere = isinstance(exc, (ConflictError, DatabaseError))
        if elsewhere:
            logger.info(
                "a read on replica %s failed, reading elsewhere: %s", replica.target.location, exc
            )
            if self.telemetry is not None:
                self.telemetry.fallback(replica.target, "failed")
        return elsewhere
