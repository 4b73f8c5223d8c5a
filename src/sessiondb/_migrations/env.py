"""Alembic environment for sessiondb: online only, on the connection sessiondb hands in."""

from __future__ import annotations

import zlib

from alembic import context
from sqlalchemy import text

from sessiondb._schema import tables, version_table_name

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - sessiondb always passes one
    raise RuntimeError("sessiondb migrations run through sessiondb (`sessiondb migrate`)")
prefix = str(config.attributes.get("table_prefix", ""))
lock_name = f"sessiondb_migrate_{prefix}"
backend = connection.dialect.name

context.configure(
    connection=connection,
    target_metadata=tables(prefix).metadata,
    version_table=version_table_name(prefix),
    render_as_batch=True,
    transaction_per_migration=False,
    # SQLite's DDL is transactional: run every revision inside the one BEGIN EXCLUSIVE, so a
    # process that waited for the lock re-reads the revision and finds nothing left to do
    transactional_ddl=True if backend == "sqlite" else None,
)

if backend in ("mysql", "mariadb"):
    # DDL is not transactional on MySQL: hold a named lock for the whole upgrade.
    connection.execute(text("SELECT GET_LOCK(:n, 600)"), {"n": lock_name})
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})
else:
    with context.begin_transaction():
        if backend == "postgresql":
            key = zlib.crc32(lock_name.encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        # SQLite: the migration engine opens this transaction with BEGIN EXCLUSIVE.
        context.run_migrations()
