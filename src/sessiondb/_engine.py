"""Engine settings, all in one place: pool, timeouts, autocommit and SQLite's pragmas.

:func:`make_engine` builds the engine a store runs on: no pre-ping, no reset on return,
autocommit on servers, the connect timeout spelled the way each driver wants it, and SQLite's
WAL, durability and busy timeout on every new connection. :func:`migration_engine` builds the
short-lived, transactional engine schema upgrades run on.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._urls import Target

__all__ = ["Durability", "make_engine", "migration_engine", "sqlite_setup"]

Durability = Literal["full", "fast"]
Side = Literal["sync", "async"]

_SQLITE_PRAGMAS: dict[str, tuple[str, ...]] = {
    # every committed write is on disk *in the main file*: a plain copy of an idle database
    # holds every session (wal_autocheckpoint=1 checkpoints after each commit).
    "full": ("journal_mode=WAL", "synchronous=FULL", "wal_autocheckpoint=1"),
    # WAL's usual trade: a power cut may lose the last commits; back up with `sessiondb backup`.
    "fast": ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=1000"),
}


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
    target: Target, driver: str, *, connect_timeout: float, busy_timeout: float
) -> dict[str, Any]:
    """Driver connect arguments: the timeout, spelled the way each driver wants it."""
    if target.backend == "sqlite":
        return {"timeout": busy_timeout, "check_same_thread": False, "isolation_level": None}
    if driver == "asyncpg":
        return {"timeout": connect_timeout}
    return {"connect_timeout": max(1, int(connect_timeout))}


def make_engine(
    target: Target,
    side: Side,
    *,
    connect_timeout: float,
    busy_timeout: float,
    pool_size: int,
    durability: Durability,
    options: dict[str, Any] | None = None,
) -> Engine | AsyncEngine:
    """Create our own engine for ``target``: hot-path pool options, timeouts, SQLite pragmas."""
    target.require_driver(side)
    url = target.sync_url if side == "sync" else target.async_url
    kw = _pool_options(target, pool_size)
    kw["connect_args"] = _connect_args(
        target, url.get_driver_name(), connect_timeout=connect_timeout, busy_timeout=busy_timeout
    )
    kw.update(options or {})
    if side == "async" and target.backend != "sqlite":
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(url, **kw)
    engine = create_engine(url, **kw)
    if target.backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            sqlite_setup(dbapi_conn, durability, busy_timeout)

    return engine


def migration_engine(
    target: Target, side: Side, *, durability: Durability, busy_timeout: float
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
    if side == "sync":
        return create_engine(target.sync_url, poolclass=NullPool)
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(target.async_url, poolclass=NullPool)
