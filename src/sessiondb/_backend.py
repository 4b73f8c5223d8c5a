"""What a store is built on: URL or engine, runner, core, and the schema check on first use.

:class:`Backend` serves :class:`~sessiondb.SessionStore`; :class:`AsyncBackend` serves
:class:`~sessiondb.AsyncSessionStore`. They share construction and the schema decision, and
differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeGuard, TypeVar, Union

from sqlalchemy.engine import URL, Engine
from sqlalchemy.util import greenlet_spawn

from . import _doctor, _migrations
from ._backup import backup
from ._checkpoints import Checkpoints
from ._checks import _option_number, seconds, store_options
from ._core import Core
from ._engine import DURABILITIES, Durability, make_engine, migration_engine
from ._queries import Queries
from ._replicas import Consistency, ReplicaBehindError, Router, is_read
from ._rows import Rows
from ._runner import CONFLICT_BACKOFF, CONFLICT_RETRIES, AsyncRunner, Cx, Runner, translate
from ._schema import tables
from ._telemetry import telemetry_for
from ._transfer import Transfer
from ._urls import Target, check_pooler, resolve_url
from .errors import ConfigurationError, SchemaError, SessionDBError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AsyncBackend", "Backend", "Options"]

P = ParamSpec("P")
T = TypeVar("T")
Source = Union[str, URL, Engine, "AsyncEngine"]


def is_async_engine(obj: object) -> TypeGuard[AsyncEngine]:
    """True for a SQLAlchemy AsyncEngine, without importing the asyncio extension (an
    AsyncEngine cannot exist unless its module was imported)."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(obj, module.AsyncEngine)


@dataclass(frozen=True, kw_only=True)
class Options:
    """Store options, shared by every front end (see ``SessionStore`` for their meaning)."""

    table_prefix: str = ""
    tz_aware: bool = False
    auto_migrate: bool = True
    connect_timeout: float = 10.0
    busy_timeout: float = 30.0
    pool_size: int = 5
    sqlite_durability: Durability = "normal"
    engine_options: dict[str, Any] | None = None
    statement_timeout: float | None = None
    ttl: timedelta | float | None = None
    sliding_ttl: bool = False
    conflict_retries: int = CONFLICT_RETRIES
    conflict_backoff: float = CONFLICT_BACKOFF
    pooler: str | None = None
    read_urls: tuple[str | URL, ...] = ()
    read_consistency: Consistency = "read_your_writes"
    telemetry: Any = None  # True, False, None (on when OpenTelemetry is set up) or Telemetry
    log_parameters: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.table_prefix, str) or not all(
            ch.isalnum() or ch == "_" for ch in self.table_prefix
        ):
            raise ConfigurationError(
                f"table_prefix {self.table_prefix!r} may hold only letters, digits and '_'"
            )
        if len(self.table_prefix) > 24:
            raise ConfigurationError("table_prefix is limited to 24 characters")
        if self.sqlite_durability not in DURABILITIES:
            raise ConfigurationError("sqlite_durability must be 'normal', 'full' or 'fast'")
        store_options(
            connect_timeout=self.connect_timeout, busy_timeout=self.busy_timeout,
            pool_size=self.pool_size, engine_options=self.engine_options,
            flags={"tz_aware": self.tz_aware, "auto_migrate": self.auto_migrate,
                   "sliding_ttl": self.sliding_ttl, "log_parameters": self.log_parameters},
        )  # fmt: skip
        if self.statement_timeout is not None:
            _option_number("statement_timeout", self.statement_timeout, 86400)
        retries = self.conflict_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 1000:
            raise ConfigurationError(
                f"conflict_retries must be an int from 0 to 1000, not {retries!r}"
            )
        _option_number("conflict_backoff", self.conflict_backoff, 60)
        if self.ttl is not None:
            try:
                seconds(self.ttl, "ttl")
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc
        if not isinstance(self.read_urls, tuple) or not all(
            isinstance(u, (str, URL)) for u in self.read_urls
        ):
            raise ConfigurationError("read_urls must be a list of database URLs")


def read_urls_option(urls: Any) -> tuple[str | URL, ...]:
    """The ``read_urls`` store option as a tuple (None: none); a lone URL is refused."""
    if urls is None:
        return ()
    if isinstance(urls, (str, URL)) or not isinstance(urls, (list, tuple)):
        raise ConfigurationError(
            f"read_urls must be a list of database URLs, not {type(urls).__name__}"
        )
    return tuple(urls)


def _router(target: Target, options: Options) -> tuple[Router | None, list[Target]]:
    """The read router of a store with ``read_urls`` (PostgreSQL only), and their targets."""
    if not options.read_urls:
        Router([], options.read_consistency)  # checks read_consistency
        return None, []
    if target.backend != "postgresql":
        raise ConfigurationError(
            f"read_urls are PostgreSQL hot standbys; this store is on {target.backend}"
        )
    targets = [_with_pooler(resolve_url(u), options) for u in options.read_urls]
    for replica in targets:
        if replica.backend != "postgresql":
            raise ConfigurationError(
                f"read_urls must be PostgreSQL URLs, like the store's: {replica.safe_url}"
            )
    return Router(targets, options.read_consistency), targets


def _target_of(source: Source) -> tuple[Target, Engine | AsyncEngine | None]:
    if isinstance(source, Engine) or is_async_engine(source):
        return resolve_url(source.url), source
    if isinstance(source, (str, URL)):
        return resolve_url(source), None
    raise ConfigurationError(
        f"expected a database URL or a SQLAlchemy Engine, not {type(source).__name__}"
    )


def _with_pooler(target: Target, options: Options) -> Target:
    """The target with the ``pooler`` option (given to the store, or in the URL) applied."""
    if options.pooler is None:
        pooler = target.pooler
    else:
        pooler = check_pooler(options.pooler, target.backend)
        if target.pooler is not None and target.pooler != pooler:
            raise ConfigurationError(
                f"pooler={pooler!r} contradicts the URL's ?pooler={target.pooler}: give it once"
            )
    if pooler is not None and options.statement_timeout is not None:
        raise ConfigurationError(
            "statement_timeout is sent as a connection setting, which a transaction-mode "
            "pooler does not pass on: with pooler='transaction', set it on the server "
            "(ALTER ROLE ... SET statement_timeout = '30s') or in the pooler (PgBouncer's "
            "query_timeout)"
        )
    return dataclasses.replace(target, pooler=pooler)


def _decide(revision: str | None, options: Options, target: Target) -> bool:
    """Whether the schema must be upgraded; raise :class:`SchemaError` when it must not be."""
    if revision == _migrations.HEAD:
        return False
    if revision is not None and revision not in _migrations.REVISIONS:
        raise SchemaError(
            f"the database at {target.safe_url} is at sessiondb schema revision {revision!r}, "
            "newer than this version of sessiondb knows: upgrade sessiondb"
        )
    if not options.auto_migrate:
        at = (
            "has no sessiondb schema (its tables are not there)"
            if revision is None
            else f"is at sessiondb schema revision {revision!r}"
        )
        raise SchemaError(
            f"the database at {target.safe_url} {at}, "
            f"this library needs {_migrations.HEAD!r}: run `sessiondb migrate --url URL"
            + (f" --table-prefix {options.table_prefix}" if options.table_prefix else "")
            + "` (or open the store with auto_migrate=True)"
        )
    return True


class _BaseBackend:
    def __init__(self, source: Source, options: Options, side: Literal["sync", "async"]) -> None:
        self.options = options
        target, engine = _target_of(source)
        self.target = _with_pooler(target, options)
        self.router, self.read_targets = _router(self.target, options)
        self.telemetry = telemetry_for(options.telemetry, self.target)
        if self.router is not None:
            self.router.telemetry = self.telemetry
        self.owns_engine = engine is None
        if engine is None:
            engine = self._new_engine(side)
        elif options.engine_options:
            raise ConfigurationError(
                "engine_options apply to engines sessiondb creates: set them on your own engine"
            )
        self.engine = engine
        sync_engine: Engine = engine.sync_engine if is_async_engine(engine) else engine  # type: ignore[assignment]
        self.runner = self._new_runner(sync_engine, foreign=not self.owns_engine)
        if self.runner.checkpointer is not None:
            self.runner.checkpointer.attach(self)  # never outlives the store
        self.tables = tables(options.table_prefix)
        self.dialect = sync_engine.dialect
        self.rows = Rows(tz_aware=options.tz_aware)
        self.core = Core(
            self.rows,
            ttl=None if options.ttl is None else seconds(options.ttl, "ttl"),
            sliding=options.sliding_ttl,
        )
        self.transfer = Transfer(self.rows)
        self.checkpoints = Checkpoints(self.rows)
        self.ready = False

    def _new_engine(
        self, side: Literal["sync", "async"], target: Target | None = None
    ) -> Engine | AsyncEngine:
        """An engine of sessiondb's own for this store's target (or a replica's) and options."""
        options = self.options
        return make_engine(
            target or self.target,
            side,
            connect_timeout=options.connect_timeout,
            busy_timeout=options.busy_timeout,
            pool_size=options.pool_size,
            durability=options.sqlite_durability,
            options=options.engine_options,
            statement_timeout=options.statement_timeout,
        )

    def _new_runner(
        self,
        engine: Engine,
        *,
        foreign: bool = False,
        target: Target | None = None,
        conflict_retries: int | None = None,
    ) -> Runner:
        """A runner over ``engine`` with this store's options."""
        options = self.options
        runner = Runner(
            engine,
            target or self.target,
            foreign=foreign,
            durability=options.sqlite_durability,
            busy_timeout=options.busy_timeout,
            keep=options.pool_size,
            conflict_retries=(
                options.conflict_retries if conflict_retries is None else conflict_retries
            ),
            conflict_backoff=options.conflict_backoff,
            **self._timeouts(),
        )
        runner.log_parameters = options.log_parameters
        if runner.write_gate is not None and options.statement_timeout is not None:
            # the wait for a lock is bounded by statement_timeout on SQLite (see make_engine)
            runner.write_gate.timeout = min(options.busy_timeout, options.statement_timeout)
        if self.telemetry is not None:
            self.telemetry.watch(runner)
        return runner

    def _timeouts(self) -> dict[str, Any]:
        """A runner's timeouts: a backstop read timeout (the server's statement limit, then
        the connect timeout) and the connect timeout."""
        options = self.options
        read_timeout = None
        if options.statement_timeout is not None and self.target.backend != "sqlite":
            read_timeout = options.statement_timeout + options.connect_timeout
        return {"read_timeout": read_timeout, "connect_timeout": options.connect_timeout}

    def _replica_pools(self, side: Literal["sync", "async"]) -> list[tuple[Any, Runner]]:
        """An engine and a runner per read URL, made the way the primary's are."""
        pools = []
        for target in self.read_targets:
            engine: Any = self._new_engine(side, target)
            sync_engine = engine.sync_engine if side == "async" else engine
            # a read a replica cancels (a recovery conflict) goes elsewhere at once
            runner = self._new_runner(sync_engine, target=target, conflict_retries=0)
            pools.append((engine, runner))
        return pools

    def _bind(self) -> None:
        # after the first connection, so the dialect knows its server (MySQL or MariaDB)
        queries = Queries(self.dialect, self.tables)
        if self.telemetry is not None:
            self.telemetry.bind(self.dialect)
        self.rows.bind(queries)
        self.core.bind(queries)
        self.transfer.bind(queries)
        self.checkpoints.bind(queries)

    def require_sqlite(self, what: str) -> None:
        if self.target.backend != "sqlite":
            raise ConfigurationError(
                f"{what} is SQLite's online backup; for {self.target.backend} use "
                + ("pg_dump" if self.target.backend == "postgresql" else "mysqldump")
            )

    def _diagnose(self, conn: Any, revision: str | None) -> dict[str, Any]:
        return _doctor.report(conn, self.target, self.tables, revision)

    def _migration_engine(self, side: Literal["sync", "async"]) -> Any:
        options = self.options
        return migration_engine(
            self.target,
            side,
            durability=options.sqlite_durability,
            busy_timeout=options.busy_timeout,
            connect_timeout=options.connect_timeout,
        )

    def _upgrade_sync(self) -> None:
        with _migrations.UPGRADE_LOCK:
            engine = self._migration_engine("sync")
            try:
                with engine.connect() as conn:
                    _migrations.upgrade(conn, self.options.table_prefix)
                    conn.commit()
            finally:
                engine.dispose()
                if self.runner.checkpointer is not None:
                    self.runner.checkpointer.wrote()  # the new schema, into the main file


class Backend(_BaseBackend):
    """The synchronous backend: calls run on the caller's thread."""

    def __init__(self, source: Source, options: Options) -> None:
        if is_async_engine(source):
            raise ConfigurationError("SessionStore needs a sync Engine; use AsyncSessionStore")
        super().__init__(source, options, "sync")
        self._lock = threading.Lock()
        self.replicas = [runner for _, runner in self._replica_pools("sync")]
        if self.telemetry is not None:  # a span per operation; nothing at all when off
            self.call = self.telemetry.traced(self.call)  # type: ignore[method-assign]

    def ensure_schema(self) -> None:
        """Check the schema once, upgrading it (under a lock) when it is missing or old."""
        with self._lock:
            if self.ready:
                return
            revision = self.runner.call(_migrations.read_revision, prefix=self.options.table_prefix)
            if _decide(revision, self.options, self.target):
                self.runner.translating(self._upgrade_sync)
            self._bind()
            self.ready = True

    def current_revision(self) -> str | None:
        return self.runner.call(_migrations.read_revision, prefix=self.options.table_prefix)

    def migrate(self) -> str:
        with self._lock:
            self.runner.translating(self._upgrade_sync)
            self._bind()
            self.ready = True
        return _migrations.HEAD

    def doctor(self) -> dict[str, Any]:
        revision = self.current_revision()
        sync_engine: Any = self.engine

        def gather() -> dict[str, Any]:
            with sync_engine.connect() as conn:
                return self._diagnose(conn, revision)

        return self.runner.translating(gather)

    def call(self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a core operation (checking the schema on first use); with ``read_urls``, a
        read on a replica when one holds this store's writes."""
        if not self.ready:
            self.ensure_schema()
        router = self.router
        if router is None:
            return self.runner.call(fn, *args, **kwargs)
        if not is_read(fn):
            return self.runner.call(router.write, fn, *args, **kwargs)
        for replica in router.candidates():
            try:
                return self.replicas[replica.index].call(
                    router.on_replica, replica, fn, *args, **kwargs
                )
            except ReplicaBehindError:
                break  # one replica asked per read: the primary has the writes
            except SessionDBError as exc:
                if not router.failed(replica, exc):
                    raise
        return self.runner.call(fn, *args, **kwargs)

    def backup(self, path: str) -> None:
        """SQLite's online backup of the database into ``path``."""
        self.require_sqlite("backup")
        self.call(backup, path=path)

    def close(self) -> None:
        self.runner.close()
        if self.owns_engine:
            self.engine.dispose()
        for replica in self.replicas:
            replica.drain()
            replica.engine.dispose()


class _Claim:
    """A wait for a ``threading.Lock`` in a worker thread, for a task that may be cancelled.

    The worker keeps waiting after the task is gone; the lock must not stay taken then. Both
    sides agree under ``mutex``: whoever comes second releases the lock.
    """

    __slots__ = ("lock", "mutex", "state")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.mutex = threading.Lock()
        self.state: Literal["waiting", "held", "abandoned"] = "waiting"

    def wait(self) -> None:
        """In a worker thread: take the lock (and give it back if the task gave up)."""
        self.lock.acquire()
        with self.mutex:
            if self.state == "abandoned":
                self.lock.release()
            else:
                self.state = "held"

    def abandon(self) -> None:
        """The task gave up (cancelled): release the lock now, or when the worker gets it."""
        with self.mutex:
            if self.state == "held":
                self.lock.release()
            self.state = "abandoned"


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@asynccontextmanager
async def holding(lock: threading.Lock) -> AsyncIterator[None]:
    """Hold a ``threading.Lock`` from a coroutine: waiting never blocks the event loop, and
    a task cancelled while waiting never leaves the lock taken."""
    if not lock.acquire(blocking=False):
        claim = _Claim(lock)
        loop = asyncio.get_running_loop()
        taken: asyncio.Future[None] = loop.create_future()

        def wait() -> None:
            # a thread of its own: a pool's threads may all be busy with work that needs
            # the lock's holder to go on (the default executor runs the SQLite upgrade)
            claim.wait()
            try:
                loop.call_soon_threadsafe(_settle, taken)
            except RuntimeError:  # the loop is closed: nobody will take the lock over
                claim.abandon()

        threading.Thread(target=wait, name="sessiondb-lock", daemon=True).start()
        try:
            await taken
        except BaseException:
            claim.abandon()
            raise
    try:
        yield
    finally:
        lock.release()


class _LoopPool:
    """One event loop's engine and runners (PostgreSQL, MySQL).

    An asyncio connection belongs to the loop that opened it, so each loop that uses an async
    store gets a pool of its own, and a connection never serves two loops. The pool is closed
    on its loop when the loop shuts down: ``asyncio.run``, ``asyncio.Runner`` and the SDKs'
    sync runners finalize every async generator before closing their loop, and a generator
    suspended inside ``try/finally`` is how the pool learns that its loop ends.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        runner: Runner,
        *,
        owns_engine: bool,
        replicas: list[tuple[AsyncEngine, Runner]] | None = None,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.arunner = AsyncRunner(runner, threads=1)  # greenlets: no thread is ever started
        self.owns_engine = owns_engine
        #: an engine and a runner per read URL, in the order of read_urls
        self.replica_engines = [engine for engine, _ in replicas or ()]
        self.replicas = [AsyncRunner(runner, threads=1) for _, runner in replicas or ()]
        self.closed = False
        self._guard: AsyncGenerator[None, None] | None = None

    def watch(self, forget: Callable[[_LoopPool], None]) -> None:
        """Close this pool when the running loop shuts down (``forget`` drops it first).

        A loop that has already finalized its async generators (``Runner.run_sync`` does so
        after each run, and runs again) cannot watch a new one: the pool then lives until
        the store is closed.
        """
        if getattr(asyncio.get_running_loop(), "_asyncgens_shutdown_called", False):
            return
        guard = self._guard = self._until_loop_ends(forget)
        step: Any = guard.__anext__()  # runs to the yield: the loop now knows the generator
        with contextlib.suppress(StopIteration):
            step.send(None)

    async def _until_loop_ends(
        self, forget: Callable[[_LoopPool], None]
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._guard = None
            forget(self)
            await self.aclose()

    def _finish_guard(self) -> None:
        """End the guard at once (the pool is closed: its ``finally`` has nothing to await)."""
        guard, self._guard = self._guard, None
        if guard is not None:
            step: Any = guard.aclose()
            with contextlib.suppress(StopIteration, RuntimeError):
                step.send(None)

    async def aclose(self) -> None:
        """Close the pool's connections, on its own loop."""
        if self.closed:
            return
        self.closed = True
        self._finish_guard()
        await greenlet_spawn(self.runner.drain)
        if self.owns_engine:
            await self.engine.dispose()
        for replica, engine in zip(self.replicas, self.replica_engines, strict=True):
            await greenlet_spawn(replica.runner.drain)
            await engine.dispose()

    def abandon(self) -> None:
        """Forget a pool whose loop has stopped: nothing can be awaited on it any more."""
        if self.closed:
            return
        self.closed = True
        self._finish_guard()
        _abandon_connections(self.runner, self.engine)
        for replica, engine in zip(self.replicas, self.replica_engines, strict=True):
            _abandon_connections(replica.runner, engine)


def _abandon_connections(runner: Runner, engine: AsyncEngine) -> None:
    """Close the idle connections of a pool whose event loop has stopped, without that loop:
    each transport's socket is closed directly (the driver's own close would schedule work
    on the dead loop), then SQLAlchemy is told the connection is gone. Connections still
    checked out are left to their holders."""
    fairies: list[Any] = []
    while runner._idle:
        try:
            raw, _cur, _since = runner._idle.pop()
        except IndexError:
            break
        fairies.append(raw)
    queue: Any = getattr(engine.sync_engine.pool, "_pool", None)
    records: list[Any] = []
    while queue is not None:
        try:
            records.append(queue.get(False))
        except Exception:  # empty
            break
    for conn in fairies + records:
        _close_sockets(getattr(conn.dbapi_connection, "driver_connection", None))
        with contextlib.suppress(Exception):
            conn.invalidate()  # the driver's terminate now finds nothing left to do


def _close_sockets(driver_conn: Any) -> None:
    """Close the socket under an asyncpg or aiomysql connection, and mark it closed."""
    if driver_conn is None:
        return
    transports = [getattr(driver_conn, "_transport", None)]  # asyncpg
    writer = getattr(driver_conn, "_writer", None)  # aiomysql
    transports.append(getattr(writer, "transport", None))
    for transport in transports:
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            transport._sock = None  # type: ignore[union-attr]
            transport._closing = True  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                sock.close()
    with contextlib.suppress(Exception):
        if hasattr(driver_conn, "_aborted"):  # asyncpg: closed, its __del__ has nothing to do
            driver_conn._aborted = True
        if writer is not None:  # aiomysql: likewise
            driver_conn._writer = None
            driver_conn._reader = None


class AsyncBackend(_BaseBackend):
    """The asynchronous backend: greenlets over an async driver, or worker threads on SQLite.

    On PostgreSQL and MySQL every event loop that uses the store gets an engine (a pool) of
    its own, made on its first call there; on SQLite the worker threads serve every loop.
    The schema is checked once per store, under a ``threading.Lock`` waited for off the loop.
    """

    def __init__(self, source: Source, options: Options) -> None:
        if isinstance(source, Engine) and resolve_url(source.url).backend != "sqlite":
            raise ConfigurationError(
                "AsyncSessionStore needs an AsyncEngine (or a URL); use SessionStore for an Engine"
            )
        super().__init__(source, options, "async")
        self.arunner = AsyncRunner(self.runner, threads=options.pool_size)
        self._lock = threading.Lock()  # the schema check, once per store, whatever the loop
        self._in_thread = not is_async_engine(self.engine)
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool]
        self._pools = weakref.WeakKeyDictionary()
        self._pools_lock = threading.Lock()
        self._spare: _LoopPool | None = None
        if not self._in_thread:
            self._spare = _LoopPool(
                self.engine, self.runner, owns_engine=self.owns_engine,  # type: ignore[arg-type]
                replicas=self._replica_pools("async"),
            )  # fmt: skip
        if self.telemetry is not None:  # a span per operation; nothing at all when off
            self.call = self.telemetry.traced_async(self.call)  # type: ignore[method-assign]

    # -- one pool per event loop -------------------------------------------------------------

    def _pool(self) -> _LoopPool:
        """The running loop's pool, made on its first use there."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._new_pool(loop)
        return pool

    def _new_pool(self, loop: asyncio.AbstractEventLoop) -> _LoopPool:
        with self._pools_lock:
            pool = self._pools.get(loop)
            if pool is not None:
                return pool
            if self._spare is not None:
                pool, self._spare = self._spare, None
            elif self.owns_engine:
                pool = self._make_pool()
            else:
                raise ConfigurationError(
                    "this AsyncSessionStore runs on an AsyncEngine you passed in, and its "
                    "connections belong to the event loop that used it first: asyncio "
                    "connections cannot move to another loop. Open the store from a URL "
                    "(sessiondb then keeps one pool per event loop), or make one store per loop"
                )
            self._pools[loop] = pool
        pool.watch(self._forget)
        return pool

    def _make_pool(self) -> _LoopPool:
        engine: Any = self._new_engine("async")
        return _LoopPool(
            engine, self._new_runner(engine.sync_engine), owns_engine=True,
            replicas=self._replica_pools("async"),
        )  # fmt: skip

    def _forget(self, pool: _LoopPool) -> None:
        """Drop ``pool`` (its loop is shutting down); the loop's next call makes a new one."""
        with self._pools_lock:
            for loop, mine in list(self._pools.items()):
                if mine is pool:
                    del self._pools[loop]

    def _arunner(self) -> AsyncRunner:
        return self.arunner if self._in_thread else self._pool().arunner

    # -- the schema --------------------------------------------------------------------------

    async def ensure_schema(self) -> None:
        """Check the schema once, upgrading it (under a lock) when it is missing or old."""
        async with holding(self._lock):
            if self.ready:
                return
            revision = await self._arunner().call(
                _migrations.read_revision, prefix=self.options.table_prefix
            )
            if _decide(revision, self.options, self.target):
                try:
                    await self._upgrade()
                except self.runner.driver_errors as exc:
                    raise translate(exc, self.target) from exc
            self._bind_dialect()
            self.ready = True

    def _bind_dialect(self) -> None:
        if not self._in_thread:
            # the dialect of a pool that has connected (so it knows MySQL from MariaDB)
            self.dialect = self._pool().runner.dialect
        self._bind()

    async def _upgrade(self) -> None:
        if self.target.backend == "sqlite":
            # the worker thread takes UPGRADE_LOCK and releases it, whatever happens here
            await asyncio.get_running_loop().run_in_executor(None, self._upgrade_sync)
            return
        # Alembic's context is process-wide: one upgrade at a time in this process. The lock
        # is waited for off the loop, and never left taken by a cancelled task.
        async with holding(_migrations.UPGRADE_LOCK):
            engine = self._migration_engine("async")
            try:
                async with engine.connect() as conn:
                    await conn.run_sync(_migrations.upgrade, self.options.table_prefix)
                    await conn.commit()
            finally:
                await engine.dispose()

    async def current_revision(self) -> str | None:
        return await self._arunner().call(
            _migrations.read_revision, prefix=self.options.table_prefix
        )

    async def migrate(self) -> str:
        async with holding(self._lock):
            try:
                await self._upgrade()
            except self.runner.driver_errors as exc:
                raise translate(exc, self.target) from exc
            if not self._in_thread:
                # connect once, so the dialect knows its server before the queries compile
                await self._arunner().call(
                    _migrations.read_revision, prefix=self.options.table_prefix
                )
            self._bind_dialect()
            self.ready = True
        return _migrations.HEAD

    async def doctor(self) -> dict[str, Any]:
        revision = await self.current_revision()
        if not self._in_thread:
            async with self._pool().engine.connect() as conn:
                return await conn.run_sync(self._diagnose, revision)
        sync_engine: Engine = self.engine  # type: ignore[assignment]

        def gather() -> dict[str, Any]:
            with sync_engine.connect() as conn:
                return self._diagnose(conn, revision)

        return await asyncio.get_running_loop().run_in_executor(None, gather)

    def call(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]:
        """Run a core operation (checking the schema on first use) without blocking the
        event loop: await what it returns, at once (a running loop is needed)."""
        if self.ready and not self._in_thread and self.router is None:
            # the hot path on PostgreSQL and MySQL: the greenlet's own coroutine is awaited
            # straight by the caller (no coroutine frames of this method or the runner's
            # between them, which every resumption of the operation would pass through)
            return self._pool().arunner.in_greenlet(fn, *args, **kwargs)
        return self._call(fn, *args, **kwargs)

    async def _call(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if not self.ready:
            await self.ensure_schema()
        if self._in_thread:
            return await self.arunner.call(fn, *args, **kwargs)
        pool = self._pool()
        router = self.router
        if router is None:
            return await pool.arunner.call(fn, *args, **kwargs)
        if not is_read(fn):
            return await pool.arunner.call(router.write, fn, *args, **kwargs)
        for replica in router.candidates():
            try:
                return await pool.replicas[replica.index].call(
                    router.on_replica, replica, fn, *args, **kwargs
                )
            except ReplicaBehindError:
                break  # one replica asked per read: the primary has the writes
            except SessionDBError as exc:
                if not router.failed(replica, exc):
                    raise
        return await pool.arunner.call(fn, *args, **kwargs)

    async def backup(self, path: str) -> None:
        """SQLite's online backup of the database into ``path``."""
        self.require_sqlite("backup")
        await self.call(backup, path=path)

    async def close(self) -> None:
        """Close every loop's pool: this loop's here, a running loop's on that loop (waited
        for up to ``connect_timeout``), and a stopped loop's without awaiting anything."""
        if self._in_thread:
            self.arunner.shutdown()
            if self.runner.checkpointer is not None:  # its last checkpoint, off the loop
                await asyncio.get_running_loop().run_in_executor(None, self.runner.close)
            self.runner.drain()
            if self.owns_engine:
                self.engine.dispose()
            return
        current = asyncio.get_running_loop()
        with self._pools_lock:
            pools = list(self._pools.items())
            self._pools.clear()
            spare, self._spare = self._spare, None
        for loop, pool in pools:
            if loop is current:
                await pool.aclose()
            elif loop.is_running() and not loop.is_closed():
                try:
                    done = asyncio.run_coroutine_threadsafe(pool.aclose(), loop)
                    await asyncio.wait_for(asyncio.wrap_future(done), self.options.connect_timeout)
                except (RuntimeError, asyncio.TimeoutError):
                    pass  # that loop is stopping, or busy: its own shutdown closes the pool
            else:
                pool.abandon()
        if spare is not None:
            await spare.aclose()  # never connected: nothing to wait for
        if not self.owns_engine:
            first = pools[0][1] if pools else spare
            if first is not None:  # the caller's engine may serve the next loop
                self._spare = _LoopPool(
                    first.engine, first.runner, owns_engine=False,
                    replicas=self._replica_pools("async"),
                )  # fmt: skip
