"""Alembic environment for sessiondb: online, on the connection sessiondb hands in; offline
(``sessiondb migrate --sql``), printing the SQL for a URL's dialect.

The upgrade runs under a lock, so that processes starting at once take turns and the later
ones find nothing left to do: a transaction-scoped advisory lock on PostgreSQL, ``GET_LOCK``
on MySQL/MariaDB, ``BEGIN EXCLUSIVE`` on SQLite, and on a MariaDB Galera cluster (where
``GET_LOCK`` is node-local) a row of a lock table, certified cluster-wide
(:mod:`sessiondb._migrations.lock`).
"""

from __future__ import annotations

import zlib
from typing import Any

from alembic import context
from sqlalchemy import text

from sessiondb._migrations import refuse_foreign_tables
from sessiondb._migrations.lock import cluster_lock, is_galera
from sessiondb._schema import lock_table_name, tables, version_table_name
from sessiondb.errors import SchemaError

config = context.config
prefix = str(config.attributes.get("table_prefix", ""))
lock_name = f"sessiondb_migrate_{prefix}"
connection = config.attributes.get("connection")
if context.is_offline_mode():
    # `sessiondb migrate --sql`: the SQL for a DBA to run, for the URL's dialect; no
    # connection, no lock (whoever runs the script takes care that it runs once)
    context.configure(
        url=config.attributes["offline_url"],
        target_metadata=tables(prefix).metadata,
        version_table=version_table_name(prefix),
        literal_binds=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection = None
elif connection is None:  # pragma: no cover - sessiondb always passes one
    raise RuntimeError("sessiondb migrations run through sessiondb (`sessiondb migrate`)")
backend = connection.dialect.name if connection is not None else "offline"


def refuse_strangers() -> None:
    """Under the lock: tables with sessiondb's names but no revision are not sessiondb's."""
    if config.attributes.get("refuse_foreign_tables") and connection is not None:
        refuse_foreign_tables(connection, prefix)


def configure(**extra: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=tables(prefix).metadata,
        version_table=version_table_name(prefix),
        render_as_batch=True,
        transaction_per_migration=False,
        # SQLite's DDL is transactional: run every revision inside the one BEGIN EXCLUSIVE, so
        # a process that waited for the lock re-reads the revision and finds nothing left to do
        transactional_ddl=True if backend == "sqlite" else None,
        **extra,
    )


if connection is None:
    pass  # offline: done above
elif backend in ("mysql", "mariadb") and is_galera(connection):
    # GET_LOCK is node-local on Galera: take a row lock that certifies cluster-wide, renewed
    # after each revision. Each revision's DDL runs in total order on every node, and
    # Alembic commits each revision's version row before the next, so the next holder reads
    # the revision the last one left.
    with cluster_lock(connection, lock_table_name(prefix), lock_name) as renew:
        # reads wait until this node has applied every write certified before them
        connection.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
        # DDL in total order on every node (the default), never a node-local rolling upgrade
        if connection.exec_driver_sql("SELECT @@session.wsrep_OSU_method").scalar() != "TOI":
            connection.exec_driver_sql("SET SESSION wsrep_OSU_method = 'TOI'")
        # end the transaction those statements began: Alembic would take it for the caller's
        # and commit the last revision's version row only after the lock is released, and
        # the next holder would run that revision again
        connection.commit()
        configure(on_version_apply=lambda **_: renew())
        with context.begin_transaction():
            refuse_strangers()
            context.run_migrations()
elif backend in ("mysql", "mariadb"):
    # is_galera()'s SHOW began a transaction: end it, or Alembic would take it for the caller's
    # and leave the last revision's version row uncommitted until after RELEASE_LOCK, and a
    # process waiting for the lock would read the old revision and run that revision again
    connection.commit()
    configure()
    # DDL is not transactional on MySQL: hold a named lock for the whole upgrade.
    got = connection.execute(text("SELECT GET_LOCK(:n, 600)"), {"n": lock_name}).scalar()
    if got != 1:
        raise SchemaError(
            f"another process has held the schema lock {lock_name!r} for 600 s (GET_LOCK): "
            "is an upgrade stuck? Try again once it has finished"
        )
    try:
        with context.begin_transaction():
            refuse_strangers()
            context.run_migrations()
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})
else:
    configure()
    with context.begin_transaction():
        if backend == "postgresql":
            key = zlib.crc32(lock_name.encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        # SQLite: the migration engine opens this transaction with BEGIN EXCLUSIVE.
        refuse_strangers()
        context.run_migrations()
