"""Running operations: one leased DBAPI connection per operation, and error translation.

The hot path runs each operation's precompiled SQL straight on a pooled DBAPI connection (no
Connection/Result objects, no pool ping, no reset round trip). Our own engines are in autocommit
mode (see :mod:`sessiondb._engine`), so a one-statement operation is one round trip; operations
that need several statements open an explicit transaction with :meth:`Cx.begin`.

Async front ends call the very same sync-style operation: on PostgreSQL and MySQL inside
SQLAlchemy's ``greenlet_spawn`` over a true async driver, on SQLite in a worker thread, or on
the loop's own thread when it is quick and need not wait (:meth:`Runner.run_now`).

Reliability (docs/reliability.md):

- A connection taken from the free list is first checked *without a round trip*: a zero-timeout
  ``select()`` on its socket. A connection the server closed (restart, kill, idle timeout) is
  readable (EOF, or the server's farewell error): it is discarded and another one is taken.
- A disconnect that reaches a statement all the same is retried once, on a new connection,
  when nothing the operation sent can have been applied (only reads, or a transaction that had
  not reached COMMIT). Otherwise the outcome is unknown: :class:`OutcomeUnknownError`, never a
  silent repeat, unless the operation declared itself repeatable (event appends with ids).
- A write refused by a read-only server (a standby, a demoted primary: SQLSTATE 25006) was not
  applied: the connection is dropped with every pooled one, and the operation run once more on
  a new connection, which a multi-host URL with ``target_session_attrs=read-write`` opens on
  the primary. A second refusal is :class:`ReadOnlyDatabaseError`.
- A transaction the server rolled back because it lost to a concurrent one (a deadlock, a
  serialization failure, a Galera certification conflict) is run again from the start, up to
  ``conflict_retries`` times with jittered exponential backoff; then :class:`ConflictError`.
- Every driver error is classified here, once (:func:`classify`), by SQLSTATE, MySQL error
  number or SQLite result code, and translated (:func:`translate`). Exceptions raised by user
  code (:meth:`Cx.outside`) pass through untouched and leave the pool alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import random
import re
import select
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from greenlet import getcurrent, greenlet  # type: ignore[import-untyped]
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only

from ._engine import Checkpointer, Durability, sqlite_setup
from ._replicas import is_quick, is_read
from ._telemetry import log_statement, op_name, sql_log
from ._urls import Target
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    InvalidStateError,
    OutcomeUnknownError,
    PoolerError,
    ReadOnlyDatabaseError,
    SessionDBError,
    UnexpectedResultError,
)

if TYPE_CHECKING:
    from ._queries import Stmt

    #: one statement of :meth:`Cx.batch`: (stmt, params), (stmt, rows) or
    #: (stmt, params, rows it must change)
    Step = tuple[Stmt, Any] | tuple[Stmt, Any, int]
    from ._telemetry import StoreTelemetry

__all__ = [
    "AiomysqlCursor",
    "AsyncRunner",
    "AsyncpgCursor",
    "Cx",
    "Runner",
    "classify",
    "translate",
]

logger = logging.getLogger("sessiondb")
#: whether ``sessiondb.sql`` logs statements (asked once per operation)
_logs_statements = sql_log.isEnabledFor

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds a connection may sit in the free list before it goes back to SQLAlchemy's pool.
IDLE_RECYCLE = 300.0
#: Seconds the read-timeout watchdog thread stays with nothing to watch before it ends.
IDLE_WATCHDOG = 10.0
#: Default retries of an operation whose transaction lost to a concurrent one, and the first
#: pause (seconds; each further pause may be twice as long, up to 64 times this).
CONFLICT_RETRIES = 30
CONFLICT_BACKOFF = 0.01
_BACKOFF_DOUBLINGS = 6
#: Characters of one value above which a SQLite write on the event loop's thread sends the
#: next writes of its session to a worker thread (:meth:`Runner.run_now`): copying and parsing
#: a large document stalls the loop for milliseconds, while a worker thread does SQLite's part
#: with the GIL released. The write that met it ends on the loop: it was checked and encoded
#: there already, and running it again elsewhere would do that twice.
LOOP_VALUE_MAX = 64 * 1024
#: Seconds of CPU time a write on the event loop's thread may take before the writes to its
#: session go to a worker thread (a large stored state, patched by SQLite's JSON functions),
#: and how many such sessions are remembered.
LOOP_CPU_MAX = 0.002
_KEEP_HEAVY = 256
_GENERATION = "sessiondb_generation"
_BORN = "sessiondb_born"
_BUSY = "sessiondb_busy_ms"
#: raw.info key: the MySQL connection takes several statements in one request
#: (CLIENT_MULTI_STATEMENTS), so :meth:`Cx.batch` sends them in one round trip
_MULTI = "sessiondb_multi_statements"
_CLIENT_MULTI_STATEMENTS = 1 << 16


Kind = Literal[
    "disconnect",
    "auth",
    "no_database",
    "too_large",
    "no_table",
    "busy",
    "duplicate",
    "too_deep",
    "read_only",
    "conflict",
    "pooler",
    "other",
]

# -- classification: one place, by SQLSTATE / MySQL errno / SQLite result code ---------------------

#: MySQL/MariaDB server errors that mean the connection is gone or cannot be made.
#: 1047 (ER_UNKNOWN_COM_ERROR) is what a Galera node outside the primary component (cut off
#: in a minority, or not synced yet) answers to every query: "WSREP has not yet prepared node
#: for application use". Its connections are as good as gone: drop them, so that a proxy can
#: send new ones to a node that serves.
_MYSQL_GONE = frozenset({1040, 1047, 1053, 1077, 1152, 1158, 1159, 1160, 1161, 1927, 4031})
_MYSQL_AUTH = frozenset({1044, 1045, 1698, 1130, 1251})
_MYSQL_TOO_LARGE = frozenset({1153, 1301})
_SQLITE_CANTOPEN, _SQLITE_IOERR, _SQLITE_TOOBIG = 14, 10, 18
_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
#: SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE (extended result codes)
_SQLITE_DUPLICATE = (1555, 2067)
#: MariaDB (4040) and MySQL (3157): a JSON document nested too deep for their JSON functions
_MYSQL_TOO_DEEP = frozenset({4040, 3157})
#: a server started --read-only (1290: ER_OPTION_PREVENTS_STATEMENT), a read-only transaction
_MYSQL_READ_ONLY = frozenset({1290, 1792})
#: read_only_sql_transaction: a write on a hot standby, or with default_transaction_read_only
_PG_READ_ONLY = "25006"
#: ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's victim, or Galera aborted it
#: (a certification conflict at COMMIT, or a brute-force abort by a replicated write): either
#: way the whole transaction was rolled back
_MYSQL_DEADLOCK = 1213
#: serialization_failure (also a hot standby's recovery conflict), deadlock_detected: the
#: transaction was rolled back
_PG_CONFLICT = frozenset({"40001", "40P01"})
#: a prepared statement that does not exist (26000) or already does (42P05): what a
#: transaction-mode pooler does to named prepared statements, as does a protocol error about
#: one (08P01 "bind message supplies 9 parameters, but prepared statement ... requires 2")
_PG_POOLER = frozenset({"26000", "42P05"})
_PREPARED = "prepared statement"


def _orig(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def _sqlstate(orig: BaseException) -> str | None:
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def _pg_without_sqlstate(orig: BaseException) -> Kind:
    """libpq reports connection failures as text only (no SQLSTATE reaches the client)."""
    text = str(orig)
    if "FATAL:" in text or "connection failed" in text:
        if "password authentication failed" in text or "no pg_hba.conf entry" in text:
            return "auth"
        if " role " in text and "does not exist" in text:
            return "auth"
        if "database " in text and "does not exist" in text:
            return "no_database"
    return "disconnect"


def classify(exc: BaseException, backend: str) -> Kind:
    """What a driver (or pool) exception means, whatever the driver and front end."""
    orig = _orig(exc)
    if isinstance(orig, (OSError, TimeoutError, asyncio.TimeoutError, EOFError)):
        return "disconnect"
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        base = code & 0xFF if isinstance(code, int) else None
        if base in (_SQLITE_CANTOPEN, _SQLITE_IOERR):
            return "disconnect"
        if base == _SQLITE_TOOBIG:
            return "too_large"
        if base in _SQLITE_BUSY:
            return "busy"
        if code in _SQLITE_DUPLICATE:
            return "duplicate"
        if "no such table" in str(orig):
            return "no_table"
        return "other"
    if backend == "postgresql":
        state = _sqlstate(orig)
        if state is None:
            # client-side errors: a lost or unusable connection (psycopg's "connection timeout
            # expired", asyncpg's "cannot switch to state 12; another operation is in
            # progress" or "connection is closed"); a misuse is a ProgrammingError
            name = type(orig).__name__
            if "read-only transaction" in str(orig):
                return "read_only"
            if "Programming" in name or "Data" in name or "Integrity" in name:
                return "other"
            return _pg_without_sqlstate(orig)
        if state in _PG_POOLER or (state == "08P01" and _PREPARED in str(orig)):
            return "pooler"
        if state.startswith("28"):
            return "auth"
        if state == "3D000":
            return "no_database"
        if state.startswith(("08", "57P")) or state == "53300":
            return "disconnect"
        if state == "42P01":
            return "no_table"
        if state == "54000":
            return "too_large"
        if state == "23505":
            return "duplicate"
        if state == _PG_READ_ONLY:
            return "read_only"
        if state in _PG_CONFLICT:
            return "conflict"
        return "other"
    if backend == "mysql":
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code is None:
            # aiomysql/PyMySQL raise InterfaceError(0, '') on a closed connection
            return "disconnect" if "Interface" in type(orig).__name__ else "other"
        if 2000 <= code < 3000 or code in _MYSQL_GONE:
            return "disconnect"
        if code in _MYSQL_AUTH:
            return "auth"
        if code == 1049:
            return "no_database"
        if code in _MYSQL_TOO_LARGE:
            return "too_large"
        if code == 1146:
            return "no_table"
        if code == 1062:
            return "duplicate"
        if code in _MYSQL_TOO_DEEP:
            return "too_deep"
        if code in _MYSQL_READ_ONLY:
            return "read_only"
        if code == _MYSQL_DEADLOCK:
            return "conflict"
    return "other"


#: one attempt of psycopg's multi-host connect, in its summary of them all
_ATTEMPT = re.compile(r"^- host: '([^']*)', port: '([^']*)'.* failed: (.*)$", re.M)


def _message(exc: BaseException) -> str:
    orig = _orig(exc)
    whole = str(orig).strip()
    if "Multiple connection attempts failed" in whole:  # every host of a multi-host URL
        attempts = [f"{h}:{p}: {why}" for h, p, why in _ATTEMPT.findall(whole)]
        if attempts:
            return "every host failed: " + "; ".join(attempts)
    text = whole.splitlines()
    return text[0] if text else type(orig).__name__


def translate(
    exc: BaseException,
    target: Target,
    kind: Kind | None = None,
    *,
    sent: bool = False,
    attempts: int = 1,
    where: str | None = None,
) -> SessionDBError:
    """Turn a driver or pool exception into a sessiondb error (the caller chains ``from exc``).

    ``sent``: a write may have reached the server before the connection died (for a
    read-only refusal or a conflict: an earlier write of the operation was applied).
    ``attempts``: how many times the operation ran (for a conflict). ``where``: the
    ``host:port`` of the server the failed connection was talking to, when known (else the
    URL's hosts, :attr:`Target.location`).
    """
    if kind is None:
        kind = classify(exc, target.backend)
    message = _message(exc)
    url = target.sync_url
    password = url.password
    if password:
        message = message.replace(str(password), "***")
    where = where or target.location
    if kind == "pooler":
        return PoolerError(pooler_message(target, where, message))
    if kind == "conflict":
        what = "nothing was written"
        if sent:
            what = "its earlier steps were committed, the last was not"
        return ConflictError(
            f"the write lost to a concurrent transaction at {where} on each of its {attempts} "
            f"attempt{'s' if attempts > 1 else ''} ({message}): {what}; call again later, or "
            "raise the store's conflict_retries",
            attempts=attempts,
        )
    if kind == "auth":
        return AuthenticationError(
            f"authentication failed for user {url.username!r} at {where}: {message}"
        )
    if kind == "no_database":
        return ConfigurationError(f"database {url.database!r} does not exist at {where}")
    if kind == "too_large":
        return InvalidStateError(f"the data is too large for the {target.backend} server at "
                                 f"{where}: {message}")  # fmt: skip
    if kind == "read_only":
        what = (
            "its earlier writes were applied, the rest was refused"
            if sent
            else "nothing was written"
        )
        return ReadOnlyDatabaseError(
            f"the server at {where} accepts no writes (a hot standby or a demoted primary; "
            f"{what}): name the primary, or list every server in the URL with "
            f"target_session_attrs=read-write ({target.safe_url}): {message}"
        )
    if kind == "disconnect":
        if sent:
            return OutcomeUnknownError(
                f"the connection to {where} was lost after a write was sent: it may or may not "
                f"have been applied ({target.safe_url}): {message}"
            )
        what = "open the SQLite file" if target.backend == "sqlite" else "reach the database"
        return DatabaseUnavailableError(f"cannot {what} at {where} ({target.safe_url}): {message}")
    return DatabaseError(f"{target.backend} error at {where}: {message}")


def pooler_message(target: Target, where: str, message: str) -> str:
    """What a prepared-statement error from a transaction-mode pooler means, and the fix."""
    if target.pooler == "transaction":
        return (
            f"{message} (from {where}, opened with pooler='transaction'): a pooler in front of "
            "the server moves even single statements between server connections; sessiondb "
            "supports PgBouncer in transaction or session mode, not statement mode"
        )
    return (
        f"{message} (from {where}): this looks like a transaction-mode pooler (PgBouncer, "
        "Supavisor, RDS Proxy) in front of PostgreSQL, which moves each transaction to any "
        "server connection, where prepared statements do not follow. Open the store with "
        "pooler='transaction', or add ?pooler=transaction to the URL"
    )


def unexpected(target: Target, what: str) -> UnexpectedResultError:
    """The error for an answer that is not the statement's own result."""
    hint = "" if target.pooler else " (a transaction-mode pooler the store was not told of?)"
    return UnexpectedResultError(
        f"the {target.backend} server at {target.location} answered a statement with something "
        f"that is not its result: {what}{hint}. Nothing was acknowledged; the connection was "
        "discarded"
    )


# -- transaction status and server address, without a round trip ---------------------------------


def _tx_psycopg(conn: Any) -> bool:
    return int(conn.info.transaction_status) in (2, 3)  # INTRANS, INERROR


def _tx_asyncpg(conn: Any) -> bool:
    return bool(conn.is_in_transaction())


def _tx_mysql(conn: Any) -> bool:
    return bool(conn.server_status & 1)  # SERVER_STATUS_IN_TRANS


def _tx_sqlite(conn: Any) -> bool:
    return bool(conn.in_transaction)


#: Whether a driver connection is inside a transaction, as its last answer said.
_TX_OF: dict[str, Callable[[Any], bool]] = {
    "psycopg": _tx_psycopg,
    "psycopg_async": _tx_psycopg,
    "asyncpg": _tx_asyncpg,
    "pymysql": _tx_mysql,
    "aiomysql": _tx_mysql,
    "pysqlite": _tx_sqlite,
}


def _address_psycopg(conn: Any) -> str:
    return f"{conn.info.host}:{conn.info.port}"


def _address_asyncpg(conn: Any) -> str:
    host, port = conn._addr
    return f"{host}:{port}"


#: The ``host:port`` a PostgreSQL connection reached (one of a multi-host URL's).
_ADDRESS_OF: dict[str, Callable[[Any], str]] = {
    "psycopg": _address_psycopg,
    "psycopg_async": _address_psycopg,
    "asyncpg": _address_asyncpg,
}


# -- liveness without a round trip ---------------------------------------------------------------


def _fd_psycopg(conn: Any) -> int | None:
    if conn.closed:
        return None
    return int(conn.pgconn.socket)


def _fd_pymysql(conn: Any) -> int | None:
    sock = conn._sock
    return None if sock is None else int(sock.fileno())


def _fd_asyncpg(conn: Any) -> int | None:
    if conn.is_closed():
        return None
    sock = conn._transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def _fd_aiomysql(conn: Any) -> int | None:
    writer, reader = conn._writer, conn._reader
    if writer is None or reader is None or reader.at_eof() or len(reader._buffer):
        return None
    sock = writer.transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


_FD_OF: dict[str, Callable[[Any], int | None]] = {
    "psycopg": _fd_psycopg,
    "pymysql": _fd_pymysql,
    "asyncpg": _fd_asyncpg,
    "aiomysql": _fd_aiomysql,
}


def _closed_by_server(fd_of: Callable[[Any], int | None], conn: Any) -> bool:
    """True when the server closed this idle connection (or spoke unasked, e.g. its "terminating
    connection" notice): its socket is readable. One ``select()`` call, no round trip."""
    try:
        fd = fd_of(conn)
        if fd is None or fd < 0:
            return True
        readable, _, _ = select.select((fd,), (), (), 0)
    except (OSError, ValueError, AttributeError):
        return True
    return bool(readable)


class Watchdog:
    """A read timeout for drivers that have none: a statement still waiting for its answer
    after ``limit`` seconds has its socket shut down, so the driver raises a disconnect.

    One daemon thread per runner, started only with ``statement_timeout`` and ending after
    :data:`IDLE_WATCHDOG` seconds with nothing to watch; a statement costs a dict insert and a
    dict delete (and a heap push).
    """

    def __init__(self, limit: float, fd_of: Callable[[Any], int | None]) -> None:
        self.limit = limit
        self._fd_of = fd_of
        self._active: dict[int, tuple[float, Any]] = {}
        self._keys = itertools.count()
        self._heap: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, conn: Any) -> int:
        key = next(self._keys)
        deadline = time.monotonic() + self.limit
        self._active[key] = (deadline, conn)
        with self._cond:
            heap = self._heap
            if len(heap) > 2 * len(self._active) + 1000:  # drop finished statements' entries
                heap[:] = [(d, k) for d, k in heap if k in self._active]
                heapq.heapify(heap)
            heapq.heappush(heap, (deadline, key))
            if heap[0][1] == key:  # the earliest deadline now: wake the thread to wait less
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sessiondb-watchdog", daemon=True
                )
                self._thread.start()
        return key

    def stop(self, key: int) -> None:
        self._active.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    entry = self._active.pop(key, None)
                    if entry is not None:
                        self._cut(entry[1])
                if not self._heap:
                    # nothing to watch: wait a while, then end (the next statement restarts it)
                    self._cond.wait(IDLE_WATCHDOG)
                    if not self._heap:
                        break
                    continue
                self._cond.wait(self._heap[0][0] - now)
            self._thread = None

    def _cut(self, conn: Any) -> None:
        try:
            fd = self._fd_of(conn)
            if fd is not None and fd >= 0:
                sock = socket.socket(fileno=fd)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.detach()
        except (OSError, ValueError, AttributeError):
            pass


# -- cursors ---------------------------------------------------------------------------------------


def _dbapi_cursor(raw: PoolProxiedConnection) -> Any:
    return raw.cursor()


def _asyncpg_cursor(raw: PoolProxiedConnection) -> Any:
    adapted: Any = raw.dbapi_connection
    if getattr(adapted, "_prepared_statement_cache", None) is None:
        return raw.cursor()  # no statement cache (a caller's engine set it to 0)
    return AsyncpgCursor(adapted)


def _aiomysql_cursor(raw: PoolProxiedConnection) -> Any:
    return AiomysqlCursor(raw.dbapi_connection)


#: the row count in asyncpg's command status ("SELECT 3", "INSERT 0 1"), as SQLAlchemy reads it
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class AsyncpgCursor:
    """The async front end's cursor on PostgreSQL: statements run straight on asyncpg.

    SQLAlchemy's adapter cursor takes a lock, checks for a transaction to start and for stale
    types, and awaits three coroutines per statement; on the hot path (one leased connection,
    autocommit, statements from the query layer) none of that has work to do. This cursor
    awaits the prepared statement's ``fetch`` alone (one greenlet switch each way), with the
    adapter's own per-connection statement cache and statement names, and hands every asyncpg
    error to the adapter's translation, so the runner sees the very same exceptions.
    """

    __slots__ = ("_adapted", "_cache", "_count", "_rows", "_stmt")

    def __init__(self, adapted: Any) -> None:
        self._adapted = adapted
        self._cache = adapted._prepared_statement_cache
        self._rows: list[Any] = []
        self._stmt: Any = None  # the last statement run, whose status tells the row count
        self._count = -1  # the row count when no statement tells it (executemany's)

    def execute(self, sql: str, params: Any = ()) -> None:
        adapted = self._adapted
        try:
            hit = self._cache.get(sql)
            if hit is None:
                stmt, _ = await_only(adapted._prepare(sql, 0))
            else:
                stmt = hit[0]
            self._rows = await_only(stmt.fetch(*params))
        except Exception as error:
            self._stmt = None
            adapted._handle_exception(error)  # raises the adapter's DBAPI error
        self._stmt = stmt

    @property
    def rowcount(self) -> int:
        """The rows the last statement returned or changed (read from its status only when
        asked: most statements' callers want their rows)."""
        stmt = self._stmt
        if stmt is None:
            return self._count
        match = _STATUS_COUNT.match(stmt.get_statusmsg() or "")
        return int(match.group(1)) if match else -1

    def executemany(self, sql: str, seq: Any) -> None:
        cur = self._adapted.cursor()
        self._stmt = None
        try:
            cur.executemany(sql, seq)
            self._count = cur.rowcount
        finally:
            cur.close()

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def close(self) -> None:
        self._rows = []


#: a placeholder of psycopg's pyformat SQL (``%(name)s``), or an escaped ``%``
_PYFORMAT = re.compile(r"%(?:\((\w+)\)s|%)")
#: statement text -> (the text with $1, $2 ... as libpq takes it, the parameter names in order)
_NUMBERED: dict[str, tuple[bytes, tuple[str, ...]]] = {}
#: at most this many statements prepared directly on one connection (their shapes vary with
#: the parameters' types); past it, statements go through psycopg's cursor
PREPARED_MAX = 64


def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    found = _NUMBERED.get(sql)
    if found is None:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "%"
            return f"${names.setdefault(name, len(names) + 1)}"

        found = _NUMBERED[sql] = (_PYFORMAT.sub(number, sql).encode(), tuple(names))
    return found


#: raw.info key: the statements :class:`PsycopgCursor` prepared on this connection, and the
#: prefix of their names (kept with the connection: a new cursor on it, after the connection
#: went back to SQLAlchemy's pool and came out again, must not prepare them again)
_PREPARED_ON = "sessiondb_prepared"


def _psycopg_cursor(raw: PoolProxiedConnection) -> Any:
    conn: Any = raw.dbapi_connection
    if conn.prepare_threshold is None:  # a caller's engine that never prepares (a pooler)
        return raw.cursor()
    known = raw.info.get(_PREPARED_ON)
    if known is None:
        known = raw.info[_PREPARED_ON] = ({}, f"_sdb_{random.getrandbits(60):x}_")
    return PsycopgCursor(conn, raw.cursor(), *known)


class PsycopgCursor:
    """The sync front end's cursor on PostgreSQL (psycopg, statements cached).

    Every statement runs on psycopg's own cursor, except the hot ones (:attr:`Stmt.prepare
    <sessiondb._queries.Stmt.prepare>`, through :meth:`execute_prepared`): those are
    prepared on the connection's first use of them and run by libpq's ``PQexecPrepared``
    (which waits without the GIL), their parameters dumped and rows loaded by psycopg's own
    adapters (the same types and formats as its cursor). psycopg's cursor spends half of a
    statement's client CPU in its query conversion, prepare bookkeeping and generator-driven
    wait, which a leased autocommit connection needs none of: 96-115 us against 46-49 us
    per statement, measured. Statement names are unique per connection (a random prefix),
    so a transaction-mode pooler nobody told sessiondb of makes one missing
    (:class:`~sessiondb.errors.PoolerError`), never runs another's; errors are psycopg's
    own, built from the server's answer as its cursor builds them.
    """

    __slots__ = (
        "_auto", "_count", "_cur", "_direct", "_pgconn", "_pq", "_prefix", "_prepared", "_rows",
        "_tx",
    )  # fmt: skip

    def __init__(
        self, conn: Any, cur: Any, prepared: dict[tuple[str, Any], bytes], prefix: str
    ) -> None:
        from psycopg import pq
        from psycopg.adapt import PyFormat, Transformer

        self._pq = pq
        self._auto = PyFormat.AUTO
        self._cur = cur
        self._pgconn = conn.pgconn
        self._tx = Transformer(conn)
        self._prepared = prepared  # the connection's own (raw.info), shared by its cursors
        self._prefix = prefix
        self._direct = False  # the last statement ran through execute_prepared
        self._rows: list[Any] = []
        self._count = -1

    def execute(self, sql: str, params: Any = None) -> None:
        self._direct = False
        self._cur.execute(sql, params)

    def execute_prepared(self, sql: str, params: dict[str, Any]) -> None:
        """Run a hot statement (pyformat ``sql``, ``params`` by name), prepared on first use."""
        pq = self._pq
        query, names = _numbered(sql)
        tx = self._tx
        values = tx.dump_sequence([params[n] for n in names], [self._auto] * len(names))
        key = (sql, tx.types)
        name = self._prepared.get(key)
        pgconn = self._pgconn
        if name is None:
            if len(self._prepared) >= PREPARED_MAX:
                self.execute(sql, params)
                return
            name = f"{self._prefix}{len(self._prepared)}".encode()
            self._check(pgconn.prepare(name, query, param_types=tx.types), pq)
            self._prepared[key] = name
        self._direct = True
        self._rows = []
        result = pgconn.exec_prepared(name, values, param_formats=tx.formats)
        self._check(result, pq)
        if result.status == pq.ExecStatus.TUPLES_OK:
            tx.set_pgresult(result)
            self._rows = tx.load_rows(0, result.ntuples, tuple)
            self._count = result.ntuples
        else:
            count = result.command_tuples
            self._count = -1 if count is None else count

    def _check(self, result: Any, pq: Any) -> None:
        status = result.status
        if status == pq.ExecStatus.COMMAND_OK or status == pq.ExecStatus.TUPLES_OK:
            return
        from psycopg import errors

        self._direct = False
        if status != pq.ExecStatus.FATAL_ERROR:
            raise errors.InterfaceError(f"unexpected result status: {pq.ExecStatus(status).name}")
        pgconn = self._pgconn
        if pgconn.status != pq.ConnStatus.OK:
            # the connection was lost: as psycopg's cursor says it (no SQLSTATE)
            message = pgconn.get_error_message().decode(errors="replace").strip()
            raise errors.OperationalError(f"consuming input failed: {message}")
        raise errors.error_from_result(result, encoding=self._cur.connection.info.encoding)

    @property
    def rowcount(self) -> int:
        return self._count if self._direct else int(self._cur.rowcount)

    def executemany(self, sql: str, seq: Any) -> None:
        self._direct = False
        self._cur.executemany(sql, seq)

    def fetchall(self) -> list[Any]:
        if not self._direct:
            return self._cur.fetchall()  # type: ignore[no-any-return]
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> Any:
        if not self._direct:
            return self._cur.fetchone()
        return self._rows.pop(0) if self._rows else None

    def close(self) -> None:
        self._rows = []
        self._cur.close()


class AiomysqlCursor:
    """The async front end's cursor on MySQL/MariaDB: statements run straight on aiomysql.

    SQLAlchemy's adapter cursor takes a lock around each statement and awaits the rows a
    second time (aiomysql has them buffered already); this one awaits aiomysql's ``execute``
    alone, and hands every error to the adapter's translation, so the runner sees the very
    same exceptions.
    """

    __slots__ = ("_adapted", "_cur")

    def __init__(self, adapted: Any) -> None:
        self._adapted = adapted
        # aiomysql's Connection.cursor() checks the connection and wraps the cursor in an
        # already-done future: the cursor is that future's result
        self._cur = adapted._connection.cursor(adapted.dbapi.Cursor)._coro.result()

    def execute(self, sql: str, params: Any = None) -> None:
        try:
            await_only(self._cur.execute(sql, params))
        except Exception as error:
            self._adapted._handle_exception(error)  # raises the adapter's DBAPI error

    def executemany(self, sql: str, seq: Any) -> None:
        try:
            await_only(self._cur.executemany(sql, seq))
        except Exception as error:
            self._adapted._handle_exception(error)

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> Any:
        return self._cur.lastrowid

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall().result())  # buffered: a done future

    def fetchone(self) -> Any:
        return self._cur.fetchone().result()

    def nextset(self) -> Any:
        try:
            return await_only(self._cur.nextset())
        except Exception as error:
            self._adapted._handle_exception(error)

    def mogrify(self, sql: str, params: Any) -> str:
        return str(self._cur.mogrify(sql, params))

    def close(self) -> None:
        await_only(self._cur.close())


class WriteGate:
    """SQLite: the store's writers, one at a time, queued in the process.

    SQLite lets one connection write at a time; another that tries meets a busy lock, and its
    busy handler sleeps (1 ms, 2 ms, 5 ms ...) and tries again, however soon the lock is
    freed. Two writes of one store collide often: LangGraph runs a checkpoint's ``put`` and a
    task's ``put_writes`` on threads of their own. So a write first takes this gate (a
    re-entrant lock, as the thread may hold it already in a nested operation) and leaves
    it at its commit: the next writer starts as the lock is freed. A writer that waits
    longer than the busy timeout (lowered to ``statement_timeout``) goes on without it, to
    SQLite's busy handler, as before (a writer of this store held the lock that long: the
    rare case where the wait may reach twice the timeout). Other processes' writers are not
    queued here: SQLite's lock still serializes them; reads never take the gate.
    """

    __slots__ = ("_count", "_lock", "timeout", "waiting")

    def __init__(self, timeout: float) -> None:
        self._lock = threading.RLock()
        self._count = threading.Lock()  # `waiting += 1` from two threads may lose one
        self.timeout = timeout
        #: writers waiting for the gate (for tests and the curious)
        self.waiting = 0

    def enter(self) -> bool:
        """Take the gate; False when the busy timeout passed first (not taken)."""
        lock = self._lock
        if lock.acquire(blocking=False):
            return True
        with self._count:
            self.waiting += 1
        try:
            return lock.acquire(timeout=self.timeout)
        finally:
            with self._count:
                self.waiting -= 1

    def try_enter(self) -> bool:
        """Take the gate if it is free now (never waits: the event loop's own writes)."""
        return self._lock.acquire(blocking=False)

    def leave(self) -> None:
        self._lock.release()


# -- one operation's access ----------------------------------------------------------------------


def _too_big_for_loop(bound: Any) -> bool:
    # a plain loop: a generator in any() costs more than the check on a hot path
    for v in bound.values() if type(bound) is dict else bound:
        if type(v) is str and len(v) > LOOP_VALUE_MAX:
            return True
    return False


class Cx:
    """One operation's database access: a lazily leased DBAPI connection and its cursor.

    Nothing is leased until the first statement runs, so argument errors never touch the pool.
    """

    __slots__ = (
        "_batch_failed",
        "_cur",
        "_gated",
        "_in_tx",
        "_raw",
        "_runner",
        "applied",
        "backend",
        "big",
        "dbapi",
        "fresh",
        "log",
        "outer",
        "repeatable",
        "sent",
        "user_error",
    )

    def __init__(self, runner: Runner, log: str | None = None) -> None:
        self._runner = runner
        #: the operation's name while ``sessiondb.sql`` logs statements (else None)
        self.log = log
        self._raw: PoolProxiedConnection | None = None
        self._cur: Any = None
        self._in_tx = False
        #: a multi-statement request failed on this lease: its later answers may still come
        self._batch_failed = False
        #: this operation holds the runner's write gate (SQLite, in a transaction)
        self._gated = False
        self.backend = runner.target.backend
        self.dbapi = runner.dbapi
        #: a write may have been applied: sent outside a transaction, or a COMMIT was sent
        self.sent = False
        #: an earlier write of this operation was applied (it had been sent, and another came)
        self.applied = False
        #: the connection was opened by this operation (a failure on it is an outage)
        self.fresh = False
        #: the operation may be run again after a lost connection whatever it sent
        self.repeatable = False
        self.user_error: BaseException | None = None
        #: inside :meth:`Runner.run_now`'s own transaction: begin() and commit() do nothing
        self.outer = False
        #: a statement inside :meth:`Runner.run_now` carried a value over LOOP_VALUE_MAX
        self.big = False

    def _cursor(self) -> Any:
        cur = self._cur
        if cur is None:
            self._raw, cur, self.fresh = self._runner.lease()
            self._cur = cur
        return cur

    def connect(self) -> None:
        """Lease the connection now (so connection errors surface before a statement runs)."""
        self._cursor()

    def driver_connection(self) -> Any:
        """The driver's own connection object (for SQLite's backup API)."""
        self._cursor()
        return self._raw.driver_connection  # type: ignore[union-attr]

    def info(self) -> dict[Any, Any]:
        """The leased connection's own dict, kept as long as its DBAPI connection (what the
        store learnt about the server at its other end)."""
        self._cursor()
        return self._raw.info  # type: ignore[union-attr]

    def outside(self, fn: Callable[..., T], *args: Any) -> T:
        """Run user code (a callback): its exceptions pass through untouched."""
        try:
            return fn(*args)
        except BaseException as exc:
            self.user_error = exc
            raise

    def _execute(self, stmt: Stmt, params: dict[str, Any]) -> Any:
        cur = self._cursor()
        bound = stmt.bind(params)
        runner = self._runner
        if stmt.writes and not self._in_tx:
            self.applied = self.sent
            self.sent = True
        if runner.max_packet:
            runner.check_size(bound)
        if self.outer and _too_big_for_loop(bound):
            self.big = True
        if self.log is not None:
            log_statement(self.log, stmt.sql, bound, show=runner.log_parameters)
        watchdog = runner.watchdog
        gate = runner.write_gate
        execute = cur.execute
        if stmt.prepare and type(cur) is PsycopgCursor:
            execute = cur.execute_prepared
        if gate is not None and stmt.writes and not self._in_tx:
            entered = gate.enter()  # one statement, its own transaction
            try:
                execute(stmt.sql, bound)
            finally:
                if entered:
                    gate.leave()
        elif watchdog is None:
            execute(stmt.sql, bound)
        else:
            key = watchdog.start(self._raw.driver_connection)  # type: ignore[union-attr]
            try:
                execute(stmt.sql, bound)
            finally:
                watchdog.stop(key)
        return cur

    def one(self, stmt: Stmt, params: dict[str, Any]) -> Any:
        """Run ``stmt`` and return its first row, or ``None``."""
        rows = self._execute(stmt, params).fetchall()  # drained: SQLite ends the statement
        if rows and len(rows[0]) != len(stmt.columns):
            raise self.unexpected(f"a row of {len(rows[0])} columns, not {len(stmt.columns)}")
        return rows[0] if rows else None

    def all(self, stmt: Stmt, params: dict[str, Any]) -> list[Any]:
        """Run ``stmt`` and return every row."""
        rows = self._execute(stmt, params).fetchall()
        if rows and len(rows[0]) != len(stmt.columns):
            raise self.unexpected(f"rows of {len(rows[0])} columns, not {len(stmt.columns)}")
        return rows  # type: ignore[no-any-return]

    def run(
        self,
        stmt: Stmt,
        params: dict[str, Any],
        *,
        expect: int | None = None,
        most: int | None = None,
    ) -> int:
        """Run ``stmt`` and return the number of rows it changed, which must be ``expect``
        (or between 0 and ``most``) when given, else :class:`UnexpectedResultError`."""
        count: int = self._execute(stmt, params).rowcount
        if expect is not None and count != expect:
            raise self.unexpected(f"{count} rows changed where {expect} had to be")
        if most is not None and not 0 <= count <= most:
            raise self.unexpected(f"{count} rows changed where at most {most} could be")
        return count

    def run_many(self, stmt: Stmt, rows: list[dict[str, Any]]) -> None:
        """Run ``stmt`` (an INSERT) once per parameter set, batched by the driver; every
        row must be inserted."""
        if rows:
            cur = self._cursor()
            bound = [stmt.bind(p) for p in rows]
            if self._runner.max_packet:
                for b in bound:
                    self._runner.check_size(b)
            if self.outer and any(map(_too_big_for_loop, bound)):
                self.big = True
            if not self._in_tx:
                self.applied = self.sent
                self.sent = True
            if self.log is not None:
                log_statement(
                    self.log, stmt.sql, bound, show=self._runner.log_parameters, many=len(bound)
                )
            gate = self._runner.write_gate
            entered = gate is not None and not self._in_tx and gate.enter()
            try:
                cur.executemany(stmt.sql, bound)
            finally:
                if entered:
                    gate.leave()  # type: ignore[union-attr]
            # asyncpg's executemany reports no count (its cursor keeps the last statement's)
            if self._runner.counts_many and cur.rowcount != len(rows):
                raise self.unexpected(f"{cur.rowcount} rows inserted of {len(rows)}")

    def batch(self, steps: list[Step], *, begin: bool = False, commit: bool = False) -> list[Any]:
        """Run ``steps`` in order, after a ``BEGIN`` and before a ``COMMIT`` when asked: each
        step's rows (a statement with result columns) or its row count.

        A step is ``(stmt, params)``, or ``(stmt, rows)`` for an INSERT of several rows, or
        ``(stmt, params, expect)`` for a statement that must change ``expect`` rows (else
        :class:`UnexpectedResultError`). On MySQL/MariaDB, over a connection that takes several
        statements in one request (``CLIENT_MULTI_STATEMENTS``, set on the store's own
        engines), they go in one round trip, every value escaped by the driver; a statement
        that fails leaves the later ones unrun and the transaction open (rolled back on
        release). There the counts are checked once every answer is in, after the ``COMMIT``
        if one was sent. Elsewhere they run one by one, each checked as it comes.
        """
        if self._multi():
            return self._batch_multi(steps, begin, commit)
        if begin:
            self.begin()
        out: list[Any] = []
        for step in steps:
            stmt, params = step[0], step[1]
            if isinstance(params, list):
                self.run_many(stmt, params)
                out.append(len(params))
            elif stmt.columns:
                out.append(self.all(stmt, params))
            else:
                out.append(self.run(stmt, params, expect=step[2] if len(step) > 2 else None))
        if commit:
            self.commit()
        return out

    def multi(self) -> bool:
        """Whether :meth:`batch` sends its statements in one round trip (MySQL/MariaDB over a
        connection with ``CLIENT_MULTI_STATEMENTS``)."""
        return self._multi()

    def _multi(self) -> bool:
        """Whether the leased connection takes several statements in one request."""
        if self.backend != "mysql":
            return False
        self._cursor()
        info = self._raw.info  # type: ignore[union-attr]
        multi = info.get(_MULTI)
        if multi is None:
            flag = getattr(self._raw.driver_connection, "client_flag", 0)  # type: ignore[union-attr]
            multi = bool(int(flag) & _CLIENT_MULTI_STATEMENTS) and not self._runner.galera
            info[_MULTI] = multi
        return bool(multi)

    def _batch_multi(self, steps: list[Step], begin: bool, commit: bool) -> list[Any]:
        cur = self._cur
        runner = self._runner
        bounds: list[Any] = []
        for step in steps:
            stmt, params = step[0], step[1]
            if isinstance(params, list):
                bounds.append([stmt.bind(p) for p in params])
            else:
                bounds.append(stmt.bind(params))
        if runner.max_packet:
            # one request holds them all: too big together, they go one by one (each checked)
            flat = [b for bound in bounds for b in (bound if isinstance(bound, list) else [bound])]
            merged = [v for b in flat for v in (b.values() if isinstance(b, dict) else b)]
            try:
                runner.check_size(merged)
            except InvalidStateError:
                return self._batch_single(steps, begin, commit)
        parts: list[str] = []
        if begin:
            parts.append("BEGIN")
            if self.log is not None:
                log_statement(self.log, "BEGIN")
        writes = False
        for step, bound in zip(steps, bounds, strict=True):
            stmt = step[0]
            writes = writes or stmt.writes
            if isinstance(bound, list):
                head, _, row = stmt.sql.rpartition(" VALUES ")
                if not head or not row.startswith("("):
                    raise self.unexpected(f"not an INSERT ... VALUES: {stmt.sql[:60]!r}")
                parts.append(head + " VALUES " + ", ".join(cur.mogrify(row, b) for b in bound))
                if self.log is not None:
                    log_statement(
                        self.log, stmt.sql, bound, show=runner.log_parameters, many=len(bound)
                    )
            else:
                parts.append(cur.mogrify(stmt.sql, bound))
                if self.log is not None:
                    log_statement(self.log, stmt.sql, bound, show=runner.log_parameters)
        if commit:
            parts.append("COMMIT")
            if self.log is not None:
                log_statement(self.log, "COMMIT")
        if begin:
            self._in_tx = True
        if commit or (writes and not self._in_tx):
            self.applied = self.sent
            self.sent = True
        watchdog = runner.watchdog
        key = None
        if watchdog is not None:
            key = watchdog.start(self._raw.driver_connection)  # type: ignore[union-attr]
        try:
            out = self._answers(cur, steps, begin, commit, ";\n".join(parts))
        except BaseException:
            # never reuse the connection: if the server went on with the request's later
            # statements, their answers would be read as the next operation's
            self._batch_failed = True
            raise
        finally:
            if watchdog is not None and key is not None:
                watchdog.stop(key)
        if commit:
            self._in_tx = False
            if self.in_transaction():
                self._in_tx = True  # still open: released by discarding the connection
                raise self.unexpected("COMMIT left the connection inside a transaction")
        elif begin and self.in_transaction() is False:
            raise self.unexpected("BEGIN left the connection outside a transaction")
        for step, answer in zip(steps, out, strict=True):
            stmt, params = step[0], step[1]
            if isinstance(params, list):
                if answer != len(params):
                    raise self.unexpected(f"{answer} rows inserted of {len(params)}")
            elif stmt.columns:
                if answer and len(answer[0]) != len(stmt.columns):
                    raise self.unexpected(
                        f"rows of {len(answer[0])} columns, not {len(stmt.columns)}"
                    )
            elif len(step) > 2 and answer != step[2]:
                raise self.unexpected(f"{answer} rows changed where {step[2]} had to be")
        return out

    def _answers(
        self, cur: Any, steps: list[Step], begin: bool, commit: bool, sql: str
    ) -> list[Any]:
        """Send ``sql`` (several statements) and read every statement's answer."""
        cur.execute(sql)
        out: list[Any] = []
        first = True
        for part in ([None] if begin else []) + list(steps) + ([None] if commit else []):
            if not first and not cur.nextset():
                raise self.unexpected("fewer answers than statements sent")
            first = False
            if part is None:
                continue
            out.append(list(cur.fetchall()) if part[0].columns else int(cur.rowcount))
        if cur.nextset():
            raise self.unexpected("more answers than statements sent")
        return out

    def _batch_single(self, steps: list[Step], begin: bool, commit: bool) -> list[Any]:
        """:meth:`batch` one statement at a time."""
        multi = self._raw.info[_MULTI]  # type: ignore[union-attr]
        self._raw.info[_MULTI] = False  # type: ignore[union-attr]
        try:
            return self.batch(steps, begin=begin, commit=commit)
        finally:
            self._raw.info[_MULTI] = multi  # type: ignore[union-attr]

    def unexpected(self, what: str) -> UnexpectedResultError:
        """The error for an answer that is not the statement's result (the connection is
        then discarded, and an open transaction rolled back with it)."""
        return unexpected(self._runner.target, what)

    def in_transaction(self) -> bool | None:
        """Whether the connection is in a transaction, as the server's last answer said
        (None when the driver does not tell)."""
        tx_of = self._runner.tx_of
        if tx_of is None or self._raw is None:
            return None
        return tx_of(self._raw.driver_connection)

    def address(self) -> str | None:
        """The ``host:port`` this operation's connection reached, when the driver tells."""
        address_of = self._runner.address_of
        if address_of is None or self._raw is None:
            return None
        try:
            return address_of(self._raw.driver_connection)
        except Exception:  # a connection half made or closed: the URL's hosts will do
            return None

    def kind(self, exc: BaseException) -> Kind:
        """What a driver error raised by one of this operation's statements means
        (:func:`classify`), for the few a core operation answers itself."""
        return classify(exc, self.backend)

    @property
    def lastrowid(self) -> int:
        """The driver's ``lastrowid`` (on MySQL: the value set by ``LAST_INSERT_ID(expr)``)."""
        return int(self._cur.lastrowid)

    def begin(self) -> None:
        """Open a transaction; on SQLite it takes the write lock at once (BEGIN IMMEDIATE)."""
        if self.outer:
            return
        sql = "BEGIN IMMEDIATE" if self.backend == "sqlite" else "BEGIN"
        cur = self._cursor()
        gate = self._runner.write_gate
        if gate is not None and not self._gated:
            self._gated = gate.enter()
        if self.log is not None:
            log_statement(self.log, sql)
        try:
            cur.execute(sql)
        except BaseException:
            self._leave_gate()
            raise
        self._in_tx = True
        if self.in_transaction() is False:
            raise self.unexpected("BEGIN left the connection outside a transaction")

    def commit(self) -> None:
        """Commit the transaction opened by :meth:`begin`."""
        if self.outer:
            return
        self._in_tx = False
        self.applied = self.sent
        self.sent = True
        if self.log is not None:
            log_statement(self.log, "COMMIT")
        self._cur.execute("COMMIT")
        if self._gated and not self.in_transaction():
            self._leave_gate()
        if self.in_transaction():
            self._in_tx = True  # still open: released by discarding the connection
            raise self.unexpected("COMMIT left the connection inside a transaction")

    def rollback(self) -> None:
        """Roll back the transaction opened by :meth:`begin` (or a batch), if still open:
        before an error the operation itself may catch and go on from (a stale version that
        transform_state answers by reading again). Inside :meth:`Runner.run_now`'s own
        transaction it does nothing, as :meth:`begin` and :meth:`commit` do."""
        if self.outer or not self._in_tx:
            return
        self._in_tx = False
        if self.log is not None:
            log_statement(self.log, "ROLLBACK")
        try:
            self._cur.execute("ROLLBACK")
        finally:
            self._leave_gate()

    def _leave_gate(self) -> None:
        if self._gated:
            self._gated = False
            self._runner.write_gate.leave()  # type: ignore[union-attr]

    def release(self, exc: BaseException | None, kind: Kind | None = None) -> bool:
        """Return the connection to the pool; roll back or discard it after a failure.

        True when the connection was found dead or on a read-only server (and the pool
        invalidated: every pooled connection likely went to the same server).
        """
        try:
            return self._release(exc, kind)
        finally:
            self._leave_gate()  # after the rollback (or the connection's end)

    def _release(self, exc: BaseException | None, kind: Kind | None = None) -> bool:
        raw = self._raw
        if raw is None:
            return False
        self._raw = None
        cur, self._cur = self._cur, None
        runner = self._runner
        batch_failed, self._batch_failed = self._batch_failed, False
        if self.sent and runner.checkpointer is not None:
            runner.checkpointer.wrote()  # committed, or maybe: fold it in once writes pause
        if exc is not None and not isinstance(exc, Exception):
            # cancelled (or interrupted) while a statement may be half sent or its answer half
            # read: the connection's state is unknown, so it is closed, never reused. The
            # server then rolls back what was not committed: all or nothing.
            raw.invalidate(exc)
            return False
        try:
            if exc is not None:
                if kind == "disconnect" or kind == "read_only":
                    runner.invalidate(raw, exc, kind)
                    return True
                if (
                    batch_failed
                    or kind in ("too_large", "pooler")
                    or isinstance(exc, UnexpectedResultError)
                ):
                    # the server hangs up on an oversized packet; a pooler's or an
                    # unexpected answer, or a multi-statement request cut short, leaves the
                    # connection in a state nobody knows
                    raw.invalidate(exc)
                    return False
                if self._in_tx:
                    if self.log is not None:
                        log_statement(self.log, "ROLLBACK")
                    cur.execute("ROLLBACK")
        except Exception as cleanup_exc:  # the connection is unusable: drop it
            raw.invalidate(cleanup_exc)
            return False
        runner.give_back(raw, cur)
        return False


class Runner:
    """Runs core operations on leased connections of one engine, translating driver errors."""

    def __init__(
        self,
        engine: Engine,
        target: Target,
        *,
        foreign: bool = False,
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        keep: int = 5,
        read_timeout: float | None = None,
        connect_timeout: float = 10.0,
        conflict_retries: int = CONFLICT_RETRIES,
        conflict_backoff: float = CONFLICT_BACKOFF,
    ) -> None:
        self.engine = engine
        self.target = target
        self.foreign = foreign
        self._idle: list[tuple[PoolProxiedConnection, Any, float]] = []
        #: SQLite connections whose busy timeout is zero, for :meth:`run_now` alone
        self._idle_now: list[tuple[PoolProxiedConnection, Any, float]] = []
        self._keep = keep
        self._generation = 0
        self._durability = durability
        self._busy_timeout = busy_timeout
        #: SQLite quick writes may run on the event loop's thread (:meth:`run_now`): commits
        #: there cost no fsync (only ``"full"`` syncs each one)
        self.loop_writes = target.backend == "sqlite" and durability != "full"
        #: session ids whose writes leave the loop's thread (too big or too slow there)
        self._heavy: dict[Any, None] = {}
        #: SQLite: this store's writers queue here, not in SQLite's sleeping busy handler
        self.write_gate = WriteGate(busy_timeout) if target.backend == "sqlite" else None
        #: SQLite at the default durability: the WAL checkpointed once writes pause
        self.checkpointer: Checkpointer | None = None
        path = target.sync_url.database if target.backend == "sqlite" else None
        if durability == "normal" and path and path != ":memory:":
            self.checkpointer = Checkpointer(path)
        # the engine's own pool options, honoured on the free list too
        pool: Any = engine.pool
        self._pre_ping = bool(getattr(pool, "_pre_ping", False))
        # a call that failed after this long met a server that does not answer (a timeout),
        # not a stale connection: another attempt would only double the wait
        self._retry_within = connect_timeout
        self.conflict_retries = conflict_retries
        self.conflict_backoff = conflict_backoff
        self._recycle = float(getattr(pool, "_recycle", -1))
        self.dialect = engine.dialect
        self.dbapi = engine.dialect.loaded_dbapi
        self.driver_errors: tuple[type[BaseException], ...] = (
            self.dbapi.Error,
            DBAPIError,
            OSError,
            asyncio.TimeoutError,
        )
        self._fd_of = _FD_OF.get(self.dialect.driver)
        self.tx_of = _TX_OF.get(self.dialect.driver)
        self.address_of = _ADDRESS_OF.get(self.dialect.driver)
        #: executemany's rowcount is the rows inserted (asyncpg's adapter reports none)
        self.counts_many = self.dialect.driver != "asyncpg"
        #: a new cursor on a leased connection: straight over asyncpg when statements are
        #: cached (no pooler), else the driver's own (SQLAlchemy's adapter on async drivers)
        self._cursor_of: Callable[[PoolProxiedConnection], Any] = _dbapi_cursor
        if self.dialect.driver == "asyncpg" and target.pooler is None:
            self._cursor_of = _asyncpg_cursor
        elif self.dialect.driver == "psycopg" and target.pooler is None:
            self._cursor_of = _psycopg_cursor
        elif self.dialect.driver == "aiomysql":
            self._cursor_of = _aiomysql_cursor
        #: the store's telemetry (set by it when on), told of retries and reconnects
        self.telemetry: StoreTelemetry | None = None
        #: log statements' parameter values, not only their types (``log_parameters=True``)
        self.log_parameters = False
        self.watchdog: Watchdog | None = None
        if read_timeout is not None and self._fd_of is not None:
            self.watchdog = Watchdog(read_timeout, self._fd_of)
        #: MySQL's max_allowed_packet, read once per pool (0: no check)
        self.max_packet = 0
        #: the server is a Galera node (read with max_packet): :meth:`Cx.batch` goes one by one
        self.galera = False
        self._packet_known = target.backend != "mysql"

    # A small free list in front of SQLAlchemy's pool: an operation takes a connection (with
    # its cursor) from it and puts it back, with no pool checkout/checkin events, reset or
    # cursor creation on the hot path. SQLAlchemy still creates, recycles and disposes of the
    # connections: one idle too long goes back to it, and a disconnect empties the list.

    def lease(self) -> tuple[PoolProxiedConnection, Any, bool]:
        """A live connection, its cursor, and whether it was opened just now."""
        idle = self._idle
        while idle:
            try:
                raw, cur, since = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if time.monotonic() - since >= IDLE_RECYCLE:
                self._return_to_pool(raw, cur)
            elif self._usable(raw):
                return raw, cur, False
            # else _usable dropped it: take another
        for _ in range(self._keep + 2 * self._keep + 1):
            raw = self.engine.raw_connection()
            info = raw.info
            if _GENERATION not in info:  # a new DBAPI connection
                info[_GENERATION] = self._generation
                info[_BORN] = time.monotonic()
                if self.foreign:
                    self.adopt(raw)
                cur = self._cursor_of(raw)
                if not self._packet_known:
                    self._read_max_packet(cur)
                return raw, cur, True
            if self._usable(raw):  # else it was invalidated: take another
                return raw, self._cursor_of(raw), False
        raise DatabaseUnavailableError(f"no live connection to {self.target.location}")

    def _usable(self, raw: PoolProxiedConnection) -> bool:
        """Whether a pooled connection may serve: not closed by the server, young enough."""
        if self._recycle >= 0 and time.monotonic() - raw.info.get(_BORN, 0) > self._recycle:
            raw.invalidate()
            return False
        fd_of = self._fd_of
        if fd_of is not None and _closed_by_server(fd_of, raw.driver_connection):
            self._dead(raw, "closed_by_server")
            return False
        if self._pre_ping:
            try:
                dbapi_conn: Any = raw.dbapi_connection
                alive = bool(self.dialect.do_ping(dbapi_conn))
            except self.driver_errors:
                alive = False
            if not alive:
                self._dead(raw, "ping")
                return False
        return True

    def _dead(self, raw: PoolProxiedConnection, reason: str) -> None:
        """A connection the server closed (or left with an answer nobody read): drop it. Older
        ones are not dropped with it: each is checked in turn when it is leased."""
        logger.info(
            "a pooled connection to %s was found %s; replacing it", self.target.location,
            "closed by the server" if reason == "closed_by_server" else "dead by its ping",
        )  # fmt: skip
        if self.telemetry is not None:
            self.telemetry.reconnect(self.target, reason)
        raw.invalidate()

    def _read_max_packet(self, cur: Any) -> None:
        cur.execute("SELECT @@max_allowed_packet")
        row = cur.fetchone()
        self.max_packet = int(row[0]) if row and row[0] else 0
        # a Galera node (wsrep_on): no multi-statement batches there. Under certification
        # conflicts an append sent as one was acknowledged and not stored (1 in 800,
        # tests/scale/test_galera.py), not understood yet: statements go one by one.
        cur.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cur.fetchone()
        self.galera = bool(row and str(row[1]).upper() == "ON")
        self._packet_known = True

    def check_size(self, bound: Any) -> None:
        """Refuse, before sending, a statement over MySQL's ``max_allowed_packet``."""
        values = bound.values() if isinstance(bound, dict) else bound
        chars = 0
        for v in values:
            if type(v) is str:
                chars += len(v)
        limit = self.max_packet - 64 * 1024  # the statement's own text, and headroom
        if 4 * chars < limit:
            return
        size = 0
        for v in values:
            if type(v) is str:
                size += len(v.encode()) + sum(v.count(c) for c in "\\'\"\0\n\r\x1a")
        if size >= limit:
            raise InvalidStateError(
                f"the data to store is {size} bytes once escaped, over the limit of the "
                f"{self.target.backend} server at {self.target.location} (max_allowed_packet "
                f"= {self.max_packet} bytes): store less, or raise max_allowed_packet"
            )

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

    def close(self) -> None:
        """Checkpoint what is left and stop the checkpoints, then :meth:`drain` (at close)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.drain()

    def drain(self) -> None:
        """Return every idle connection to the pool (before dispose, or after a disconnect)."""
        while self._idle_now:
            try:
                raw, cur, _ = self._idle_now.pop()
            except IndexError:
                break
            try:
                cur.execute(f"PRAGMA busy_timeout={int(raw.info[_BUSY])}")
            except Exception as exc:
                raw.invalidate(exc)
                continue
            self._return_to_pool(raw, cur)
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

    def invalidate(
        self, raw: PoolProxiedConnection, exc: BaseException, reason: str = "disconnect"
    ) -> None:
        """Drop ``raw`` and every connection pooled before it (the server likely restarted)."""
        logger.info(
            "dropping the pool of connections to %s (%s: %s)", self.target.location,
            "the connection was lost" if reason == "disconnect" else "the server is read-only",
            _message(exc),
        )  # fmt: skip
        if self.telemetry is not None:
            self.telemetry.reconnect(self.target, reason)
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
        """Run ``fn(cx, ...)`` with a fresh :class:`Cx`; driver errors become sessiondb errors.

        A connection found dead is replaced and the operation run once more when nothing it
        sent can have been applied (or it is repeatable); else :class:`OutcomeUnknownError`.
        A write a read-only server refused was not applied: it runs once more on a new
        connection unless an earlier write of the operation was.
        A transaction rolled back by a conflict is run again, from the start, up to
        ``conflict_retries`` times; then :class:`ConflictError`.
        """
        return self.run(time.sleep, fn, *args, **kwargs)

    def backoff(self, attempt: int) -> float:
        """The pause before running an operation again after its ``attempt``-th conflict: a
        random time up to ``conflict_backoff * 2 ** (attempt - 1)`` (at most 64 times
        ``conflict_backoff``). The randomness ("full jitter") keeps the writers that collided
        from colliding again in step."""
        ceiling = self.conflict_backoff * 2 ** min(attempt - 1, _BACKOFF_DOUBLINGS)
        return random.uniform(0.0, ceiling)

    def run(
        self,
        pause: Callable[[float], object],
        fn: Callable[Concatenate[Cx, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`call`'s loop, for both front ends; ``pause(seconds)`` waits between attempts
        (``time.sleep``, or an await of ``asyncio.sleep`` inside the async front end's
        greenlet, so the event loop runs on)."""
        retried = False
        conflicts = 0
        start = time.monotonic()
        log = op_name(fn, args) if _logs_statements(logging.DEBUG) else None
        while True:
            cx = Cx(self, log)
            try:
                result = fn(cx, *args, **kwargs)
            except self.driver_errors as exc:
                if exc is cx.user_error:
                    cx.release(exc)
                    raise
                kind = classify(exc, self.target.backend)
                where = cx.address()
                dead = cx.release(exc, kind)
                # refused by a read-only server: that write was not applied, earlier ones were
                applied = cx.applied if kind == "read_only" else cx.sent
                if (
                    dead
                    and not retried
                    and not cx.fresh
                    and (cx.repeatable or not applied)
                    and time.monotonic() - start < self._retry_within
                ):
                    retried = True
                    self._retrying(fn, args, kind, 1, where, exc)
                    continue
                if kind == "conflict":
                    # the server rolled the transaction (or the one statement) back: nothing
                    # of this attempt was written, so running it again is safe, unless an
                    # earlier step of the operation had been committed
                    if conflicts < self.conflict_retries and not cx.applied:
                        conflicts += 1
                        delay = self.backoff(conflicts)
                        self._retrying(fn, args, kind, conflicts, where, exc, delay)
                        pause(delay)
                        continue
                    raise translate(
                        exc, self.target, kind, sent=cx.applied, attempts=conflicts + 1, where=where
                    ) from exc
                sent = kind in ("disconnect", "read_only") and applied and not cx.repeatable
                raise translate(exc, self.target, kind, sent=sent, where=where) from exc
            except BaseException as exc:
                cx.release(exc)
                raise
            cx.release(None)
            return result

    def run_now(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> tuple[bool, T | None]:
        """Run a quick SQLite operation on the caller's thread (the event loop's), at once or
        not at all: ``(True, result)``, or ``(False, None)`` with nothing done.

        It never waits: it runs on an idle connection (never opening one, never waiting for
        the pool) whose busy timeout is zero, so a lock held by another connection fails it at
        once instead of being waited for. Such connections are kept apart from the free list
        (``_idle_now``, one per thread running at the same moment): the others keep their busy
        timeout. No idle connection, a lock, or any driver error: ``(False, None)``, and the
        caller runs the operation the usual way (in a worker thread, where errors are
        classified and translated). Other exceptions (bad arguments, a missing session) are
        raised as :meth:`call` raises them.

        A read (:func:`~sessiondb._replicas.quick`) writes nothing, so running it again is
        safe. A write (:func:`~sessiondb._replicas.quick_write`, and only when
        :attr:`loop_writes`) runs whole inside ``BEGIN IMMEDIATE`` ... ``COMMIT``: a busy
        write lock fails the BEGIN, before anything was done; any failure before the COMMIT
        rolls everything back. Either way nothing was written, and the worker thread runs it
        again from the start. A session whose write carried a value over
        :data:`LOOP_VALUE_MAX` characters (a large state), or took more than
        :data:`LOOP_CPU_MAX` of CPU time, has its next writes sent to the worker thread
        straight away (the last :data:`_KEEP_HEAVY` such sessions are remembered); the write
        itself ends on the loop, its values checked and encoded once.
        """
        write = not is_read(fn)
        sid = kwargs.get("session_id") if write else None
        if type(sid) is not str:  # a bad id is the operation's to refuse
            sid = None
        if write and (not self.loop_writes or sid in self._heavy):
            return False, None
        try:
            raw, cur, since = self._idle_now.pop()
        except IndexError:
            try:
                raw, cur, since = self._idle.pop()
            except IndexError:
                return False, None
            info = raw.info
            try:
                if _BUSY not in info:  # the connection's own busy timeout, learnt once
                    cur.execute("PRAGMA busy_timeout")
                    info[_BUSY] = int(cur.fetchone()[0])
                cur.execute("PRAGMA busy_timeout=0")
            except self.driver_errors as exc:
                raw.invalidate(exc)
                return False, None
        stale = raw.info.get(_GENERATION) != self._generation
        if stale or time.monotonic() - since >= IDLE_RECYCLE:
            self._restore(raw, cur)
            return False, None
        cx = Cx(self, op_name(fn, args) if _logs_statements(logging.DEBUG) else None)
        cx._raw, cx._cur = raw, cur
        began = False
        start = time.thread_time() if write else 0.0
        try:
            if write:
                gate = self.write_gate
                if gate is not None:  # the store's own writers first: now or never, too
                    if not gate.try_enter():
                        self._keep_now(raw, cur, since)
                        return False, None
                    cx._gated = True
                cx.begin()  # the write lock, now or never (busy timeout 0)
                began = cx.outer = True  # the operation's own begin() and commit() do nothing
            result = fn(cx, *args, **kwargs)
            if write:
                cx.outer = False
                cx.commit()
        except self.driver_errors as exc:
            if exc is cx.user_error:
                self._settle(cx, exc)
                raise
            kind = classify(exc, "sqlite")
            in_tx = bool(cx.in_transaction())
            if write and not began and kind == "busy" and not in_tx:
                cx._leave_gate()
                self._keep_now(raw, cur, since)  # locked elsewhere; the connection is fine
                return False, None
            if write and began and not cx.outer and not in_tx:
                # the COMMIT failed and SQLite rolled the transaction back itself, unless an
                # I/O error struck while it wrote: what the worker thread would have said
                self._settle(cx, exc, kind)
                raise translate(exc, self.target, kind, sent=kind == "disconnect") from exc
            cx._in_tx = in_tx  # release() rolls back whatever is open: nothing was written
            self._settle(cx, exc, kind)
            return False, None
        except BaseException as exc:
            self._settle(cx, exc)
            raise
        if write:
            if self.checkpointer is not None:
                self.checkpointer.wrote()
            if cx.big or time.thread_time() - start > LOOP_CPU_MAX:
                self._heavy_session(sid)
        self._keep_now(raw, cur, since)
        return True, result

    def _heavy_session(self, sid: Any) -> None:
        """Send the next writes of session ``sid`` to a worker thread (if it has an id)."""
        if sid is not None:
            heavy = self._heavy
            heavy[sid] = None
            if len(heavy) > _KEEP_HEAVY:
                # the oldest; another loop's thread may be at it too
                with contextlib.suppress(RuntimeError, StopIteration):
                    heavy.pop(next(iter(heavy)), None)

    def _keep_now(self, raw: PoolProxiedConnection, cur: Any, since: float) -> None:
        """Keep a :meth:`run_now` connection (busy timeout zero) for the next one."""
        if len(self._idle_now) < 2:
            self._idle_now.append((raw, cur, since))
        else:
            self._restore(raw, cur)

    def _restore(self, raw: PoolProxiedConnection, cur: Any) -> None:
        """Give a :meth:`run_now` connection its busy timeout back, and release it."""
        try:
            cur.execute(f"PRAGMA busy_timeout={int(raw.info[_BUSY])}")
        except Exception as exc:  # unusable: dropped, never pooled half set
            raw.invalidate(exc)
            return
        self.give_back(raw, cur)

    def _settle(self, cx: Cx, exc: BaseException, kind: Kind | None = None) -> None:
        """Release a failed :meth:`run_now`'s connection, its busy timeout given back."""
        raw, cur = cx._raw, cx._cur
        if raw is not None and isinstance(exc, Exception):
            try:
                cur.execute(f"PRAGMA busy_timeout={int(raw.info[_BUSY])}")
            except Exception as cleanup_exc:  # unusable: dropped, never pooled half set
                cx._raw = cx._cur = None
                raw.invalidate(cleanup_exc)
                return
        cx.release(exc, kind)

    def _retrying(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kind: Kind,
        attempt: int,
        where: str | None,
        exc: BaseException,
        delay: float = 0.0,
    ) -> None:
        """Log (and count) that an operation runs again: a conflict at DEBUG (they come in
        numbers under contention), a lost connection or a read-only server at WARNING."""
        op = op_name(fn, args)
        where = where or self.target.location
        if kind == "conflict":
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s: conflict %d at %s, running it again in %.3f s: %s",
                    op, attempt, where, delay, _message(exc),
                )  # fmt: skip
        elif kind == "read_only":
            logger.warning(
                "%s: the server at %s refused a write (read-only: a failover?); running it "
                "again on a new connection: %s", op, where, _message(exc),
            )  # fmt: skip
        else:
            logger.warning(
                "%s: the connection to %s was lost; running it again on a new connection: %s",
                op, where, _message(exc),
            )  # fmt: skip
        if self.telemetry is not None:
            self.telemetry.retry(op, kind, attempt)


class _Done:
    """What a worker greenlet hands back once its operation has returned or raised."""

    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any) -> None:
        self.ok = ok
        self.value = value


def _attempt(box: list[Callable[[], Any]]) -> _Done:
    op = box.pop()  # the worker keeps no reference to it while idle
    try:
        return _Done(True, op())
    except BaseException as exc:
        return _Done(False, exc)


class _Worker(greenlet):  # type: ignore[misc]
    """A greenlet that runs one operation after another (SQLAlchemy's ``await_only`` inside
    it hands awaitables to its parent, as in ``greenlet_spawn``): making a greenlet per
    operation costs more than the rest of the hand-off."""

    __sqlalchemy_greenlet_provider__ = True

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(self, job: Callable[[], Any]) -> None:
        while True:
            box = [job]
            job = None  # type: ignore[assignment]
            job = self.parent.switch(_attempt(box))


#: idle worker greenlets, per thread (a greenlet only ever runs in the thread that made it)
_workers = threading.local()
_KEEP_WORKERS = 32


async def run_in_greenlet(op: Callable[[], T]) -> T:
    """``await greenlet_spawn(op)``, on a reused worker greenlet: ``op`` runs sync-style, each
    ``await_only`` inside it awaited here (an exception, a cancellation included, is thrown
    back into it), with the caller's context variables."""
    idle: list[_Worker] | None = getattr(_workers, "idle", None)
    if idle is None:
        idle = _workers.idle = []
    worker = idle.pop() if idle else _Worker()
    current = getcurrent()
    worker.parent = current
    worker.gr_context = current.gr_context
    value = worker.switch(op)
    while type(value) is not _Done:
        try:
            result = await value
        except BaseException:
            value = worker.throw(*sys.exc_info())
        else:
            value = worker.switch(result)
    if len(idle) < _KEEP_WORKERS:
        idle.append(worker)
    if value.ok:
        return value.value  # type: ignore[no-any-return]
    raise value.value


def _greenlet_sleep(seconds: float) -> None:
    """Sleep inside an operation's greenlet: the event loop runs other tasks meanwhile."""
    await_only(asyncio.sleep(seconds))


class AsyncRunner:
    """Awaitable :meth:`Runner.call`: greenlet over an async driver, or a worker thread (SQLite)."""

    def __init__(self, runner: Runner, *, threads: int) -> None:
        self.runner = runner
        self._executor: ThreadPoolExecutor | None = None
        self._threads = threads
        self._lock = threading.Lock()
        self._in_thread = runner.target.backend == "sqlite"
        #: cancelled calls whose worker thread is still at them: until they end, no call takes
        #: the loop's shortcut (run_now) ahead of them
        self._orphans: set[Future[Any]] = set()

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
        # keyword named "fn" for its own): bind them first. Between attempts after a conflict
        # a worker thread sleeps; a greenlet awaits, and the event loop runs on.
        if self._in_thread:
            if is_quick(fn) and not self._orphans:  # on the loop's thread, unless it would
                done, result = self.runner.run_now(fn, *args, **kwargs)  # wait (or fsync)
                if done:
                    return result  # type: ignore[return-value]
            op = partial(self.runner.run, time.sleep, fn, *args, **kwargs)
            if self.runner.telemetry is not None:  # the caller's span, in the worker thread
                op = partial(contextvars.copy_context().run, op)
            work = (self._executor or self._pool()).submit(op)
            try:
                return await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                # not started: never runs. Started: its thread finishes it, and calls queue
                # for the worker threads behind it meanwhile
                if not work.done():
                    self._orphans.add(work)
                    work.add_done_callback(self._orphans.discard)
                raise
        return await run_in_greenlet(partial(self.runner.run, _greenlet_sleep, fn, *args, **kwargs))

    def in_greenlet(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """:meth:`call` over an async driver (never SQLite), without a coroutine of its own:
        the one returned runs the operation in a worker greenlet once awaited."""
        return run_in_greenlet(partial(self.runner.run, _greenlet_sleep, fn, *args, **kwargs))

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
