"""Running operations: one leased DBAPI connection per operation, and error translation.

The hot path runs each operation's precompiled SQL straight on a pooled DBAPI connection (no
Connection/Result objects, no pool ping, no reset round trip). Our own engines are in autocommit
mode (see :mod:`sessiondb._engine`), so a one-statement operation is one round trip; operations
that need several statements open an explicit transaction with :meth:`Cx.begin`.

Async front ends call the very same sync-style operation: on PostgreSQL and MySQL inside
SQLAlchemy's ``greenlet_spawn`` over a true async driver, on SQLite in a worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from ._engine import Durability, sqlite_setup
from ._urls import Target
from .errors import DatabaseError, DatabaseUnavailableError, SessionDBError

if TYPE_CHECKING:
    from ._queries import Stmt

__all__ = ["AsyncRunner", "Cx", "Runner", "translate"]

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds a connection may sit in the free list before it goes back to SQLAlchemy's pool.
IDLE_RECYCLE = 300.0
_GENERATION = "sessiondb_generation"


def _message(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _is_unavailable(exc: BaseException, backend: str) -> bool:
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(orig, (OSError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(orig, sqlite3.OperationalError):
        return "unable to open" in str(orig) or "disk I/O" in str(orig)
    name = type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if backend == "postgresql":
        if sqlstate:
            return str(sqlstate).startswith(("08", "57P"))
        return name in ("OperationalError", "InterfaceError", "ConnectionDoesNotExistError")
    if backend == "mysql":
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        return code is not None and 2000 <= code < 3000
    return False


def translate(exc: BaseException, target: Target) -> SessionDBError:
    """Turn a driver or pool exception into a sessiondb error (the caller chains ``from exc``)."""
    message = _message(exc)
    password = target.sync_url.password
    if password:
        message = message.replace(str(password), "***")
    if _is_unavailable(exc, target.backend):
        what = "open the SQLite file" if target.backend == "sqlite" else "reach the database"
        return DatabaseUnavailableError(
            f"cannot {what} at {target.location} ({target.safe_url}): {message}"
        )
    return DatabaseError(f"{target.backend} error at {target.location}: {message}")


class Cx:
    """One operation's database access: a lazily leased DBAPI connection and its cursor.

    Nothing is leased until the first statement runs, so argument errors never touch the pool.
    """

    __slots__ = ("_cur", "_in_tx", "_raw", "_runner", "backend", "dbapi")

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._raw: PoolProxiedConnection | None = None
        self._cur: Any = None
        self._in_tx = False
        self.backend = runner.target.backend
        self.dbapi = runner.dbapi

    def _cursor(self) -> Any:
        cur = self._cur
        if cur is None:
            self._raw, cur = self._runner.lease()
            self._cur = cur
        return cur

    def connect(self) -> None:
        """Lease the connection now (so connection errors surface before a statement runs)."""
        self._cursor()

    def driver_connection(self) -> Any:
        """The driver's own connection object (for SQLite's backup API)."""
        self._cursor()
        return self._raw.driver_connection  # type: ignore[union-attr]

    def one(self, stmt: Stmt, params: dict[str, Any]) -> Any:
        """Run ``stmt`` and return its first row, or ``None``."""
        cur = self._cursor()
        cur.execute(stmt.sql, stmt.bind(params))
        rows = cur.fetchall()  # drained, so SQLite ends the statement (and its read snapshot)
        return rows[0] if rows else None

    def all(self, stmt: Stmt, params: dict[str, Any]) -> list[Any]:
        """Run ``stmt`` and return every row."""
        cur = self._cursor()
        cur.execute(stmt.sql, stmt.bind(params))
        return cur.fetchall()  # type: ignore[no-any-return]

    def run(self, stmt: Stmt, params: dict[str, Any]) -> int:
        """Run ``stmt`` and return the number of rows it changed."""
        cur = self._cursor()
        cur.execute(stmt.sql, stmt.bind(params))
        return cur.rowcount  # type: ignore[no-any-return]

    def run_many(self, stmt: Stmt, rows: list[dict[str, Any]]) -> None:
        """Run ``stmt`` once per parameter set, batched by the driver."""
        if rows:
            self._cursor().executemany(stmt.sql, [stmt.bind(p) for p in rows])

    @property
    def lastrowid(self) -> int:
        """The driver's ``lastrowid`` (on MySQL: the value set by ``LAST_INSERT_ID(expr)``)."""
        return int(self._cur.lastrowid)

    def begin(self) -> None:
        """Open a transaction; on SQLite it takes the write lock at once (BEGIN IMMEDIATE)."""
        self._cursor().execute("BEGIN IMMEDIATE" if self.backend == "sqlite" else "BEGIN")
        self._in_tx = True

    def commit(self) -> None:
        """Commit the transaction opened by :meth:`begin`."""
        self._in_tx = False
        self._cur.execute("COMMIT")

    def release(self, exc: BaseException | None) -> None:
        """Return the connection to the pool; roll back or discard it after a failure."""
        raw = self._raw
        if raw is None:
            return
        self._raw = None
        cur, self._cur = self._cur, None
        runner = self._runner
        if exc is not None and not isinstance(exc, Exception):
            # cancelled (or interrupted) while a statement may be half sent or its answer half
            # read: the connection's state is unknown, so it is closed, never reused. The
            # server then rolls back what was not committed: all or nothing.
            raw.invalidate(exc)
            return
        try:
            if exc is not None:
                if runner.is_disconnect(exc, raw, cur):
                    runner.invalidate(raw, exc)
                    return
                if self._in_tx:
                    cur.execute("ROLLBACK")
        except Exception as cleanup_exc:  # the connection is unusable: drop it
            raw.invalidate(cleanup_exc)
            return
        runner.give_back(raw, cur)


class Runner:
    """Runs core operations on leased connections of one engine, translating driver errors."""

    def __init__(
        self,
        engine: Engine,
        target: Target,
        *,
        foreign: bool = False,
        durability: Durability = "full",
        busy_timeout: float = 30.0,
        keep: int = 5,
    ) -> None:
        self.engine = engine
        self.target = target
        self.foreign = foreign
        self._idle: list[tuple[PoolProxiedConnection, Any, float]] = []
        self._keep = keep
        self._generation = 0
        self._durability = durability
        self._busy_timeout = busy_timeout
        self.dialect = engine.dialect
        self.dbapi = engine.dialect.loaded_dbapi
        self.driver_errors: tuple[type[BaseException], ...] = (
            self.dbapi.Error,
            DBAPIError,
            OSError,
            asyncio.TimeoutError,
        )

    # A small free list in front of SQLAlchemy's pool: an operation takes a connection (with
    # its cursor) from it and puts it back, with no pool checkout/checkin events, reset or
    # cursor creation on the hot path. SQLAlchemy still creates, recycles and disposes of the
    # connections: one idle too long goes back to it, and a disconnect empties the list.

    def lease(self) -> tuple[PoolProxiedConnection, Any]:
        """A connection and its cursor, from the free list or from SQLAlchemy's pool."""
        idle = self._idle
        while idle:
            try:
                raw, cur, since = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if time.monotonic() - since < IDLE_RECYCLE:
                return raw, cur
            self._return_to_pool(raw, cur)
        raw = self.engine.raw_connection()
        raw.info[_GENERATION] = self._generation
        if self.foreign:
            self.adopt(raw)
        return raw, raw.cursor()

    def give_back(self, raw: PoolProxiedConnection, cur: Any) -> None:
        """Keep a healthy connection for the next operation (or return it to the pool)."""
        if len(self._idle) < self._keep and self._generation == raw.info.get(_GENERATION, 0):
            self._idle.append((raw, cur, time.monotonic()))
        else:
            self._return_to_pool(raw, cur)

    def _return_to_pool(self, raw: PoolProxiedConnection, cur: Any) -> None:
        try:
            cur.close()
            if self.foreign:
                dbapi_conn: Any = raw.dbapi_connection
                self.dialect.reset_isolation_level(dbapi_conn)
            raw.close()
        except Exception as exc:  # an unusable connection is just dropped
            raw.invalidate(exc)

    def drain(self) -> None:
        """Return every idle connection to the pool (before dispose, or after a disconnect)."""
        while self._idle:
            try:
                raw, cur, _ = self._idle.pop()
            except IndexError:
                break
            self._return_to_pool(raw, cur)

    def adopt(self, raw: PoolProxiedConnection) -> None:
        """Make a connection of a caller-built engine fit the hot path: autocommit, pragmas."""
        dbapi_conn: Any = raw.dbapi_connection
        if self.target.backend == "sqlite" and "sessiondb" not in raw.info:
            sqlite_setup(dbapi_conn, self._durability, self._busy_timeout)
            raw.info["sessiondb"] = True
        self.dialect.set_isolation_level(dbapi_conn, "AUTOCOMMIT")

    def is_disconnect(self, exc: BaseException, raw: Any, cur: Any) -> bool:
        if isinstance(exc, DBAPIError):
            return bool(exc.connection_invalidated)
        if isinstance(exc, (OSError, InterfaceError)):
            return True
        if isinstance(exc, self.dbapi.Error):
            return bool(self.dialect.is_disconnect(exc, raw.dbapi_connection, cur))
        return False

    def invalidate(self, raw: PoolProxiedConnection, exc: BaseException) -> None:
        """Drop ``raw`` and every connection pooled before it (the server likely restarted)."""
        self._generation += 1
        try:
            raw.invalidate(exc)
        finally:
            self.engine.pool._invalidate(raw)
            self.drain()

    def translating(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` (no connection lease), translating driver errors."""
        try:
            return fn()
        except self.driver_errors as exc:
            raise translate(exc, self.target) from exc

    def call(self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(cx, ...)`` with a fresh :class:`Cx`; driver errors become sessiondb errors."""
        cx = Cx(self)
        try:
            result = fn(cx, *args, **kwargs)
        except self.driver_errors as exc:
            cx.release(exc)
            raise translate(exc, self.target) from exc
        except BaseException as exc:
            cx.release(exc)
            raise
        cx.release(None)
        return result


class AsyncRunner:
    """Awaitable :meth:`Runner.call`: greenlet over an async driver, or a worker thread (SQLite)."""

    def __init__(self, runner: Runner, *, threads: int) -> None:
        self.runner = runner
        self._executor: ThreadPoolExecutor | None = None
        self._threads = threads
        self._lock = threading.Lock()
        self._in_thread = runner.target.backend == "sqlite"

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="sessiondb")
            return self._executor

    async def call(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`Runner.call`, awaited: the event loop runs on while the operation does."""
        # both take positional arguments only (greenlet_spawn would take an operation's
        # keyword named "fn" for its own): bind them first
        op = partial(self.runner.call, fn, *args, **kwargs)
        if self._in_thread:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor or self._pool(), op)
        return await greenlet_spawn(op)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
