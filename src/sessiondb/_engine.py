"""Engine settings, all in one place: pool, timeouts, autocommit and SQLite's pragmas.

:func:`make_engine` builds the engine a store runs on: no pre-ping, no reset on return,
autocommit on servers, the connect timeout spelled the way each driver wants it, and SQLite's
WAL, durability and busy timeout on every new connection. :func:`migration_engine` builds the
short-lived, transactional engine schema upgrades run on. :class:`Checkpointer` folds a SQLite
store's WAL into the main file once its writes pause (the default durability, ``"normal"``).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._urls import Target

__all__ = [
    "CHECKPOINT_DELAY",
    "DURABILITIES",
    "HONOURED",
    "Checkpointer",
    "Durability",
    "check_engine_options",
    "make_engine",
    "migration_engine",
    "sqlite_setup",
]

Durability = Literal["normal", "full", "fast"]
#: the values of ``sqlite_durability``, the default first
DURABILITIES: tuple[Durability, ...] = ("normal", "full", "fast")
Side = Literal["sync", "async"]

_SQLITE_PRAGMAS: dict[str, tuple[str, ...]] = {
    # the default: WAL's synchronous=NORMAL (a commit is in the WAL when the call returns, so
    # it survives the process being killed; a power cut may lose the last ones) and the WAL
    # folded into the main file once writes pause (Checkpointer), so a copy of the idle file
    # holds every session.
    "normal": ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=1000"),
    # every committed write is fsynced *in the main file* before the call returns
    # (wal_autocheckpoint=1 checkpoints after each commit): survives a power cut too.
    "full": ("journal_mode=WAL", "synchronous=FULL", "wal_autocheckpoint=1"),
    # WAL's usual trade without the checkpoint on pauses: the idle file may miss the last
    # commits (they are in the -wal file); back up with `sessiondb backup`.
    "fast": ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=1000"),
}

#: seconds without a write after which a ``"normal"`` store checkpoints its SQLite file
CHECKPOINT_DELAY = 0.05
_RETRY_MAX = 2.0  # the longest pause between checkpoints a reader keeps from completing


class Checkpointer:
    """Folds a SQLite file's WAL into the main file once the store's writes pause.

    A write only records its time (:meth:`wrote`, no lock once a checkpoint is pending); one
    daemon thread per store, started by the first write, waits until no write came for
    :data:`CHECKPOINT_DELAY` seconds, then runs ``PRAGMA wal_checkpoint(TRUNCATE)`` on a
    connection of its own without a busy timeout: it never waits for a lock (a writer or a
    reader in the way makes it a passive checkpoint), so it never holds up the store's
    readers and writers; it runs again later if a reader kept it from copying every frame.
    The WAL is left empty when it could be.
    :meth:`stop` (the store's close, or the store being garbage collected) ends the thread
    after a last checkpoint, so it never outlives the store; it never touches an event loop.
    """

    def __init__(self, path: str, delay: float = CHECKPOINT_DELAY) -> None:
        self._uri = f"file:{quote(os.path.abspath(path))}?mode=rw"
        self._delay = delay
        self._cond = threading.Condition()
        self._wake = threading.Event()  # cuts the pauses short at stop
        self._thread: threading.Thread | None = None
        self._last = 0.0  # monotonic time of the latest write
        self._pending = False  # a write not yet checkpointed (set under _cond)
        self._stopped = False
        #: checkpoints run, and how many left frames behind (for tests and the curious)
        self.runs = 0
        self.incomplete = 0

    def wrote(self) -> None:
        """A write was committed (or may have been): checkpoint once writes pause."""
        self._last = time.monotonic()
        if not self._pending:
            self._kick()

    def _kick(self) -> None:
        with self._cond:
            if self._stopped:
                return
            self._pending = True
            thread = self._thread
            if thread is None or not thread.is_alive():  # the first write, or after a fork
                thread = threading.Thread(
                    target=self._run, name="sessiondb-checkpoint", daemon=True
                )
                self._thread = thread
                thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every write so far is checkpointed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def stop(self) -> None:
        """End the thread after a last checkpoint of pending writes, and wait for it."""
        with self._cond:
            self._stopped = True
            thread = self._thread
            self._cond.notify_all()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        elif self._pending:  # no thread (a fork's child): checkpoint here
            self._checkpoint()

    def _run(self) -> None:
        cond = self._cond
        retry = 0.0  # the pause after a checkpoint a reader kept from completing
        not_before = 0.0
        while True:
            with cond:
                while not self._pending and not self._stopped:
                    cond.wait()
                if self._stopped:
                    break
            now = time.monotonic()
            due = max(self._last + self._delay, not_before)
            if now < due:  # writes go on (or a reader held frames back): wait for a pause
                self._wake.wait(due - now)
                continue
            mark = self._last
            complete = self._checkpoint()
            with cond:
                if complete:
                    retry = 0.0
                    # cleared first, then the time read again: a write that saw _pending
                    # still set is seen here, and one that comes after kicks anew
                    self._pending = False
                    if self._last != mark:  # a write came meanwhile: go again
                        self._pending = True
                    cond.notify_all()
                else:
                    retry = min(max(retry * 2, self._delay), _RETRY_MAX)
                    not_before = time.monotonic() + retry
        if self._pending:
            self._checkpoint()
            with cond:
                self._pending = False
                cond.notify_all()

    def _checkpoint(self) -> bool:
        """One checkpoint; True when the main file holds every committed frame."""
        self.runs += 1
        try:
            conn = sqlite3.connect(self._uri, uri=True, timeout=0, isolation_level=None)
        except sqlite3.Error:  # the file is gone: nothing left to fold in
            return True
        try:
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:  # locked (another checkpoint), or the file is not readable
            row = None
        finally:
            conn.close()
        # (busy, frames in the WAL, frames checkpointed): busy is 1 when a writer kept the WAL
        # from being emptied, which the frames tell apart; -1, -1 outside WAL mode
        complete = row is not None and row[1] == row[2]
        if not complete:
            self.incomplete += 1
        return complete

    def attach(self, owner: object) -> None:
        """Stop the thread when ``owner`` (the store's backend) is garbage collected."""
        weakref.finalize(owner, self.stop)


def sqlite_setup(dbapi_conn: Any, durability: Durability, busy_timeout: float) -> None:
    """Per-connection SQLite settings: WAL, durability, foreign keys, busy timeout."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        for pragma in _SQLITE_PRAGMAS[durability]:
            if pragma.startswith("journal_mode="):
                _set_journal_mode(cur, pragma, busy_timeout)
            else:
                cur.execute(f"PRAGMA {pragma}")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _set_journal_mode(cur: Any, pragma: str, busy_timeout: float) -> None:
    """``PRAGMA journal_mode=WAL``, waiting for the lock as long as the busy timeout allows.

    Turning a new file to WAL takes its write lock from inside a read transaction, where
    SQLite never calls the busy handler: while another process reads the file (the first use
    of one database by several processes at once) the pragma fails at once with "database is
    locked". Once the file is in WAL mode the pragma needs no lock, so this retries until
    one process has converted the file, within ``busy_timeout``, as the busy handler would.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            cur.execute(f"PRAGMA {pragma}")
            cur.fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)  # the busy handler's wait, for the one case it does not cover
        pause = min(pause * 2, 0.05)


#: engine_options sessiondb honours (on its free list of connections too); every other
#: option is refused with ConfigurationError rather than silently ignored.
HONOURED = frozenset({
    "pool_pre_ping",   # a real ping each time a pooled connection is leased (a round trip)
    "pool_recycle",    # connections older than this are replaced when leased
    "pool_timeout",    # seconds to wait for a connection when all are busy
    "max_overflow",    # connections opened beyond pool_size under load
    "pool_use_lifo",
    "connect_args",    # merged into sessiondb's own (its timeouts win unless given here)
    "echo_pool", "logging_name", "pool_logging_name", "hide_parameters",
})  # fmt: skip
_REFUSED_HINTS = {
    "pool_size": "use the store's pool_size option",
    "isolation_level": "sessiondb runs in autocommit and opens its own transactions",
    "pool_reset_on_return": "sessiondb resets connections itself (no reset round trip)",
    "poolclass": "sessiondb keeps a pool of its own in front of SQLAlchemy's QueuePool",
    "echo": "sessiondb runs raw DBAPI cursors, which SQLAlchemy's echo does not log; "
    "set the 'sessiondb.sql' logger to DEBUG instead (docs/observability.md)",
    "execution_options": "sessiondb runs raw DBAPI cursors, without execution options",
}


def check_engine_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The engine options sessiondb honours; any other raises :class:`ConfigurationError`."""
    from .errors import ConfigurationError

    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigurationError(f"engine_options must be a dict, not {type(options).__name__}")
    for key in options:
        if key not in HONOURED:
            hint = _REFUSED_HINTS.get(key, f"sessiondb honours only {sorted(HONOURED)}")
            raise ConfigurationError(f"engine option {key!r} is not supported: {hint}")
    if "connect_args" in options and not isinstance(options["connect_args"], dict):
        raise ConfigurationError("engine_options['connect_args'] must be a dict")
    return dict(options)


def _pool_options(target: Target, pool_size: int) -> dict[str, Any]:
    """Pool options for the hot path: no pre-ping, no reset round trip, autocommit."""
    kw: dict[str, Any] = {
        "pool_pre_ping": False,
        "pool_reset_on_return": None,
        "pool_size": pool_size,
        "max_overflow": 2 * pool_size,
    }
    if target.backend == "sqlite":
        return kw
    kw["isolation_level"] = "AUTOCOMMIT"
    kw["pool_timeout"] = 30
    if target.backend == "mysql":
        kw["pool_recycle"] = 3600
    return kw


def _connect_args(
    target: Target,
    driver: str,
    *,
    connect_timeout: float,
    busy_timeout: float,
    statement_timeout: float | None = None,
) -> dict[str, Any]:
    """Driver connect arguments: the timeouts, spelled the way each driver wants them.

    Every driver bounds the whole connection set-up (TCP, greeting, authentication) by
    ``connect_timeout``; ``statement_timeout`` is the server's own limit on each statement.
    """
    if target.backend == "sqlite":
        # no server to limit statements: statement_timeout bounds the wait for a lock
        if statement_timeout is not None:
            busy_timeout = min(busy_timeout, statement_timeout)
        return {"timeout": busy_timeout, "check_same_thread": False, "isolation_level": None}
    ms = None if statement_timeout is None else max(1, int(statement_timeout * 1000))
    if driver == "asyncpg":
        args: dict[str, Any] = {"timeout": connect_timeout}
        if ms is not None:
            args["server_settings"] = {"statement_timeout": str(ms)}
        args.update(_asyncpg_statements(target.pooler))
        return args
    if driver in ("psycopg", "psycopg_async"):
        args = {"connect_timeout": max(1, round(connect_timeout))}
        if ms is not None:
            args["options"] = f"-c statement_timeout={ms}"
        if target.pooler is not None:
            args["prepare_threshold"] = None  # never a named prepared statement
        return args
    args = {"connect_timeout": connect_timeout}
    if driver == "pymysql":
        # PyMySQL's connect_timeout covers TCP only: the greeting and authentication wait
        # under read_timeout, which _on_mysql_connect sets back to the statement bound
        args["read_timeout"] = connect_timeout
    elif driver == "aiomysql":
        args["async_creator_fn"] = _bounded_connect(driver, connect_timeout)
        _aiomysql_bytes()
    return args


def _pymysql_flags(url: Any) -> int:
    """PyMySQL's client flags for the store's connections: SQLAlchemy's (``FOUND_ROWS``, and
    any ``client_flag`` of the URL) and ``MULTI_STATEMENTS``, so that a write's statements
    go in one request (:meth:`Cx.batch <sessiondb._runner.Cx.batch>`; aiomysql always sets
    it). Every value in them is escaped by the driver."""
    from pymysql.constants import CLIENT

    flags: int = CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS
    return int(url.query.get("client_flag", 0)) | flags


def _aiomysql_bytes() -> None:
    """aiomysql (0.3) escapes ``bytes`` with PyMySQL's ``escape_bytes_prefixed``, which
    PyMySQL 1.2 replaced by a string ("DO NOT IMPORT THIS"): every bytes parameter then fails
    with "'str' object is not callable". PyMySQL's own ``escape_bytes`` (``_binary X'..'``)
    takes its place; a fixed aiomysql is left alone."""
    import aiomysql.connection
    from pymysql.converters import escape_bytes

    if not callable(getattr(aiomysql.connection, "escape_bytes_prefixed", None)):
        aiomysql.connection.escape_bytes_prefixed = escape_bytes


def _asyncpg_statements(pooler: str | None) -> dict[str, Any]:
    """How asyncpg (under SQLAlchemy's adapter) names its prepared statements.

    Behind a transaction-mode pooler: none at all. Without a cache asyncpg prepares each
    statement unnamed, to learn its types, and sends it again (Parse, Bind, Execute, Sync) in
    the very message that runs it, so the pooler cannot move it half-way.
    Otherwise the statements are cached per connection under names unique in the world (a
    uuid), never asyncpg's ``__asyncpg_stmt_N__``: a pooler nobody told sessiondb of can then
    make a statement missing (:class:`~sessiondb.errors.PoolerError`), never run another
    client's statement of the same name in its place.
    """
    if pooler is not None:
        return {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return {"prepared_statement_name_func": _unique_statement_name}


def _unique_statement_name() -> str:
    return f"__sessiondb_{uuid.uuid4().hex}__"


def _listen_psycopg(engine: Engine) -> None:
    """psycopg names the statements it prepares ``_pg3_0``, ``_pg3_1``... on every connection
    alike: behind a pooler nobody told sessiondb of, one client's ``_pg3_3`` could run another
    client's statement. Each new connection numbers its statements from a random start
    instead (psycopg's counter is private: left alone if it is not there), so a statement can
    only be missing there (:class:`~sessiondb.errors.PoolerError`), never another one."""

    @event.listens_for(engine, "connect")
    def _on_psycopg_connect(dbapi_conn: Any, _record: Any) -> None:
        conn = getattr(dbapi_conn, "_connection", dbapi_conn)  # the async adapter's psycopg
        manager = getattr(conn, "_prepared", None)
        if isinstance(getattr(manager, "_prepared_idx", None), int):
            manager._prepared_idx = secrets.randbits(60)  # type: ignore[union-attr]


def _bounded_connect(driver: str, timeout: float) -> Any:
    """aiomysql's connect, greeting and authentication included, bounded by ``timeout``; a
    connection that fails or is cancelled half-way is closed, never left to the GC."""
    import asyncio
    import importlib

    module = importlib.import_module(f"{driver}.connection")

    async def bounded(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("async_creator_fn", None)
        conn = module.Connection(*args, **kwargs)
        try:
            await asyncio.wait_for(conn._connect(), timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    return bounded


def _mysql_session(dbapi_conn: Any, statement_timeout: float | None, read_timeout: Any) -> None:
    """Per-connection MySQL/MariaDB settings: the statement limit, PyMySQL's read timeout."""
    if type(dbapi_conn).__module__ == "pymysql.connections":
        dbapi_conn._read_timeout = read_timeout
    if statement_timeout is None:
        return
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SELECT VERSION()")
        version = str(cur.fetchone()[0])
        if "mariadb" in version.lower():
            cur.execute(f"SET SESSION max_statement_time={float(statement_timeout)}")
        else:
            cur.execute(f"SET SESSION max_execution_time={max(1, int(statement_timeout * 1000))}")
    finally:
        cur.close()


def make_engine(
    target: Target,
    side: Side,
    *,
    connect_timeout: float,
    busy_timeout: float,
    pool_size: int,
    durability: Durability,
    options: dict[str, Any] | None = None,
    statement_timeout: float | None = None,
) -> Engine | AsyncEngine:
    """Create our own engine for ``target``: hot-path pool options, timeouts, SQLite pragmas."""
    target.require_driver(side)
    options = check_engine_options(options)
    if target.backend == "sqlite" and statement_timeout is not None:
        busy_timeout = min(busy_timeout, statement_timeout)
    url = target.sync_url if side == "sync" else target.async_url
    kw = _pool_options(target, pool_size)
    connect_args = _connect_args(
        target, url.get_driver_name(), connect_timeout=connect_timeout,
        busy_timeout=busy_timeout, statement_timeout=statement_timeout,
    )  # fmt: skip
    if url.get_driver_name() == "pymysql":
        connect_args["client_flag"] = _pymysql_flags(url)
    connect_args.update(options.pop("connect_args", {}))
    kw["connect_args"] = connect_args
    kw.update(options)
    if side == "async" and target.backend != "sqlite":
        from sqlalchemy.ext.asyncio import create_async_engine

        async_engine = create_async_engine(url, **kw)
        if target.backend == "mysql":
            _listen_mysql(async_engine.sync_engine, statement_timeout, connect_args)
        elif target.pooler is None and url.get_driver_name() == "psycopg_async":
            _listen_psycopg(async_engine.sync_engine)
        return async_engine
    engine = create_engine(url, **kw)
    if target.pooler is None and url.get_driver_name() == "psycopg":
        _listen_psycopg(engine)
    if target.backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            sqlite_setup(dbapi_conn, durability, busy_timeout)

    elif target.backend == "mysql":
        _listen_mysql(engine, statement_timeout, connect_args)
    return engine


def _listen_mysql(engine: Engine, statement_timeout: float | None, args: dict[str, Any]) -> None:
    read_timeout = None
    if statement_timeout is not None:  # the server's limit first, the socket's as a backstop
        read_timeout = statement_timeout + args.get("connect_timeout", 10)

    @event.listens_for(engine, "connect")
    def _on_mysql_connect(dbapi_conn: Any, _record: Any) -> None:
        _mysql_session(dbapi_conn, statement_timeout, read_timeout)


def migration_engine(
    target: Target,
    side: Side,
    *,
    durability: Durability,
    busy_timeout: float,
    connect_timeout: float = 10.0,
) -> Any:
    """A short-lived engine for schema upgrades: transactional, unpooled, locked on SQLite."""
    if target.backend == "sqlite":
        engine = create_engine(
            target.sync_url,
            poolclass=NullPool,
            connect_args={"timeout": busy_timeout, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            sqlite_setup(dbapi_conn, durability, busy_timeout)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")

        return engine
    url = target.sync_url if side == "sync" else target.async_url
    args = _connect_args(
        target, url.get_driver_name(), connect_timeout=connect_timeout, busy_timeout=busy_timeout
    )
    if side == "sync":
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
        if target.backend == "mysql":
            _listen_mysql(engine, None, args)
        elif target.pooler is None and url.get_driver_name() == "psycopg":
            _listen_psycopg(engine)
        return engine
    from sqlalchemy.ext.asyncio import create_async_engine

    async_engine = create_async_engine(url, poolclass=NullPool, connect_args=args)
    if target.pooler is None and url.get_driver_name() == "psycopg_async":
        _listen_psycopg(async_engine.sync_engine)
    return async_engine
