"""The schema lock on a MariaDB Galera cluster, where ``GET_LOCK`` is node-local.

Galera replicates row changes, not ``GET_LOCK``: three processes starting on three nodes would
each get "the" lock and run the same DDL at once (``Table 'sessions' already exists``,
``Duplicate column name``). So on Galera the lock is a row: committing it certifies it
cluster-wide, in the one total order of the cluster's commits, and a second node's insert of
the same key loses (a duplicate key, or a certification conflict, 1213) whichever node it ran
on. The row names its holder and carries a lease: a holder renews it after each revision, and
a waiter deletes a lease that ran out (a holder that crashed) and takes the lock. The lock
knows nothing of the revisions: the waiter that gets it lets Alembic read the revision again,
and usually finds nothing left to do.

The lock table has a primary key (Galera replicates no table without one). The DDL itself runs
in Galera's total order isolation (TOI, ``wsrep_OSU_method``'s default): each statement is
ordered with the cluster's commits and run on every node at the same point.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["LEASE", "WAIT", "cluster_lock", "create_table", "is_galera"]

#: Seconds the lock stays valid without being renewed (it is renewed after every revision).
LEASE = 300
#: Seconds a process waits for the lock before giving up (as ``GET_LOCK(name, 600)``).
WAIT = 600.0


def is_galera(connection: Connection) -> bool:
    """Whether ``connection`` is to a node of a Galera cluster (``wsrep_on`` is ON)."""
    row = connection.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").first()
    return row is not None and str(row[1]).upper() == "ON"


def create_table(connection: Connection, table: str) -> None:
    """Make the lock table unless it exists (under TOI: a second node's is a no-op)."""
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "name VARCHAR(64) NOT NULL PRIMARY KEY, "
        "holder VARCHAR(255) NOT NULL, "
        "expires_at DATETIME(6) NOT NULL"
        ") ENGINE=InnoDB"
    )


def _pause(seconds: float) -> None:
    """Sleep; inside the async store's greenlet, await, so the event loop runs on."""
    if in_greenlet():
        await_only(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


def _kind(exc: DBAPIError) -> str:
    from .._runner import classify

    return classify(exc, "mysql")


@contextmanager
def cluster_lock(connection: Connection, table: str, name: str) -> Iterator[Any]:
    """Hold the cluster-wide lock ``name`` (a row of ``table``, made if missing) meanwhile.

    ``connection`` is the migration's; the lock uses a connection of its own in autocommit,
    so each of its statements commits (certifies) at once. Yields a ``renew()`` callable that
    extends the lease; it raises :class:`SchemaError` if the lock was lost meanwhile.
    """
    from ..errors import SchemaError

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    lock = connection.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        create_table(lock, table)
        params = {"n": name, "h": holder, "lease": LEASE}
        wait = WAIT
        deadline = time.monotonic() + wait
        pause = 0.02
        while True:
            try:
                # a lease that ran out belongs to a holder that died: free it
                lock.execute(
                    text(f"DELETE FROM {table} WHERE name = :n AND expires_at < UTC_TIMESTAMP(6)"),
                    params,
                )
                lock.execute(
                    text(
                        f"INSERT INTO {table} (name, holder, expires_at) VALUES "
                        "(:n, :h, UTC_TIMESTAMP(6) + INTERVAL :lease SECOND)"
                    ),
                    params,
                )
                break
            except DBAPIError as exc:
                # held by another process (a duplicate key here, or a certification conflict
                # with the node that took it at the same moment)
                if _kind(exc) not in ("duplicate", "conflict"):
                    raise
            if time.monotonic() > deadline:
                row = lock.execute(
                    text(f"SELECT holder, expires_at FROM {table} WHERE name = :n"), params
                ).first()
                raise SchemaError(
                    f"the schema lock {name!r} (table {table}) is still held after {wait:g} s"
                    + (f", by {row[0]} until {row[1]} UTC" if row else "")
                    + ": a schema upgrade runs elsewhere; try again later"
                )
            _pause(pause)
            pause = min(pause * 2, 0.5)

        def renew() -> None:
            done = lock.execute(
                text(
                    f"UPDATE {table} SET expires_at = UTC_TIMESTAMP(6) + INTERVAL :lease SECOND "
                    "WHERE name = :n AND holder = :h"
                ),
                params,
            )
            if done.rowcount != 1:
                raise SchemaError(
                    f"the schema lock {name!r} (table {table}) was lost: its lease of "
                    f"{LEASE} s ran out during the upgrade and another process took it"
                )

        try:
            yield renew
        finally:
            for _ in range(10):  # a conflict on our own row is unlikely; the lease ends anyway
                try:
                    lock.execute(
                        text(f"DELETE FROM {table} WHERE name = :n AND holder = :h"), params
                    )
                    break
                except DBAPIError as exc:
                    if _kind(exc) != "conflict":
                        raise
                    _pause(0.05)
    finally:
        lock.close()
