"""Diagnostics: the facts and advice of ``store.doctor()`` (and ``sessiondb doctor``)."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
from typing import TYPE_CHECKING, Any

from . import _migrations

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ._schema import Tables
    from ._urls import Target

__all__ = ["report"]

_SQLITE_PRAGMAS = (
    "journal_mode", "synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint",
    "page_size", "freelist_count",
)  # fmt: skip
_DISTRIBUTIONS = ("sqlalchemy", "alembic", "psycopg", "asyncpg", "pymysql", "aiomysql", "orjson")


def report(
    conn: Connection, target: Target, tables: Tables, revision: str | None
) -> dict[str, Any]:
    """Facts and advice about the database behind ``conn`` (a sync SQLAlchemy connection):
    schema revision, indexes, SQLite pragmas, server and driver versions."""
    from sqlalchemy import inspect, text

    inspector = inspect(conn)
    names = set(inspector.get_table_names())
    indexes = sorted(
        ix["name"]
        for table in tables.metadata.sorted_tables
        if table.name in names
        for ix in inspector.get_indexes(table.name)
        if ix["name"]
    )
    pragmas: dict[str, Any] = {}
    if target.backend == "sqlite":
        for name in _SQLITE_PRAGMAS:
            pragmas[name] = conn.exec_driver_sql(f"PRAGMA {name}").scalar()
    drivers = {}
    for dist in _DISTRIBUTIONS:
        with contextlib.suppress(md.PackageNotFoundError):
            drivers[dist] = md.version(dist)
    server = None
    if target.backend != "sqlite":
        server = conn.execute(text("SELECT VERSION()")).scalar()
    advice = []
    expected = {ix.name for t in tables.metadata.sorted_tables for ix in t.indexes if ix.name}
    missing = sorted(expected - set(indexes))
    if revision != _migrations.HEAD:
        advice.append(f"schema at {revision!r}, library needs {_migrations.HEAD!r}: run "
                      "`sessiondb migrate`")  # fmt: skip
    if missing:
        advice.append(f"missing indexes {missing}: run `sessiondb migrate`")
    if pragmas.get("journal_mode") not in (None, "wal"):
        advice.append("SQLite is not in WAL mode: readers will block writers")
    if "orjson" not in drivers:
        advice.append("pip install 'sessiondb[speed]' for faster JSON (orjson)")
    return {
        "backend": target.backend, "url": target.safe_url, "server": server,
        "revision": revision, "head": _migrations.HEAD, "indexes": indexes,
        "pragmas": pragmas, "drivers": drivers, "advice": advice,
    }  # fmt: skip
