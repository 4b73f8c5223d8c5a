"""Schema: created on first use, Alembic-managed with its own version table, prefixable."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sessiondb import AsyncSessionStore, SchemaError, SessionStore
from sessiondb._migrations import HEAD
from sessiondb._urls import resolve_url


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_file_and_tables_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = SessionStore(f"sqlite:///{path}")
    assert not path.exists()
    s = store.create_session("app", "u", {"a": 1})
    store.close()
    with sqlite3.connect(path) as conn:  # the guide's inspection snippet
        rows = conn.execute("SELECT * FROM sessions").fetchall()
        assert len(rows) == 1 and rows[0][0] == s.id
        version = conn.execute("SELECT version_num FROM sessiondb_alembic_version").fetchall()
        assert version == [(HEAD,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "alembic_version" not in tables  # the host application's table is left alone
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_table_prefix(db_url: str) -> None:
    with SessionStore(db_url, table_prefix="pfx_") as store:
        s = store.create_session("app", "u")
        assert store.get_session("app", "u", s.id) is not None
    names = _table_names(db_url)
    assert {"pfx_sessions", "pfx_sessiondb_alembic_version"} <= names
    with SessionStore(db_url) as plain:  # the unprefixed tables are another store
        assert plain.get_session("app", "u", s.id) is None


@pytest.mark.parametrize("prefix", ["bad-prefix", "x;drop", "p" * 25])
def test_bad_prefix_refused(prefix: str, tmp_path: Path) -> None:
    from sessiondb import ConfigurationError

    with pytest.raises(ConfigurationError):
        SessionStore(f"sqlite:///{tmp_path}/x.db", table_prefix=prefix)


def test_auto_migrate_off_names_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    with SessionStore(url, auto_migrate=False) as store, pytest.raises(SchemaError) as info:
        store.list_sessions("app", "u")
    assert "sessiondb migrate" in str(info.value)
    with SessionStore(url) as store:
        store.list_sessions("app", "u")
    with SessionStore(url, auto_migrate=False) as store:
        assert store.list_sessions("app", "u") == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    with SessionStore(url) as store:
        store.list_sessions("app", "u")
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("UPDATE sessiondb_alembic_version SET version_num = '9999'")
    with SessionStore(url) as store, pytest.raises(SchemaError) as info:
        store.list_sessions("app", "u")
    assert "newer" in str(info.value)


def test_caller_built_engine(db_url: str) -> None:
    engine = sa.create_engine(resolve_url(db_url).sync_url)
    try:
        with SessionStore(engine) as store:
            s = store.create_session("app", "u", {"x": 1})
            store.update_session_state(s.id, {"x": 2})
        # the engine is still usable by its owner, and the writes were committed
        with SessionStore(db_url) as other:
            got = other.get_session("app", "u", s.id)
            assert got is not None and got.state == {"x": 2}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


async def test_caller_built_async_engine(db_url: str, backend: str) -> None:
    target = resolve_url(db_url)
    if backend == "sqlite":
        engine: Any = sa.create_engine(target.sync_url)
    else:
        engine = create_async_engine(target.async_url)
    async with AsyncSessionStore(engine) as store:
        s = await store.create_session("app", "u", {"x": 1})
        assert (await store.get_session("app", "u", s.id)) == s
    with SessionStore(db_url) as other:
        assert other.get_session("app", "u", s.id) is not None
    if backend == "sqlite":
        engine.dispose()
    else:
        await engine.dispose()


def test_list_uses_an_index(db_url: str, backend: str) -> None:
    with SessionStore(db_url) as store:
        store.create_session("app", "u")
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    query = (
        "SELECT id FROM sessions WHERE app_name = 'app' AND user_id = 'u' "
        "ORDER BY updated_at DESC, id DESC"
    )
    try:
        with engine.connect() as conn:
            if backend == "sqlite":
                plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
                # the primary key (app_name, user_id, id): no index holds updated_at
                assert "sqlite_autoindex_sessions" in plan, plan
            else:  # tiny tables: any of our indexes will do, as long as it is not a scan
                if backend == "postgresql":
                    conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
                # the primary key (app_name, user_id, id) serves this filter as well
                assert any(ix in plan for ix in ("ix_sessions_", "pk_sessions", "PRIMARY")), plan
    finally:
        engine.dispose()


async def test_stores_in_one_process_first_used_at_once(db_url: str) -> None:
    """Alembic's context is process-wide: concurrent first uses must take turns."""
    import asyncio
    import threading
    import uuid

    from sessiondb import AsyncSessionStore

    prefix = f"p{uuid.uuid4().hex[:6]}_"  # tables no store has used yet
    stores = [AsyncSessionStore(db_url, table_prefix=prefix) for _ in range(3)]
    await asyncio.gather(*(s.list_sessions("a", "u") for s in stores))
    for s in stores:
        await s.close()
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            with SessionStore(db_url, table_prefix=prefix + "t") as s:
                s.create_session("a", "u")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with SessionStore(db_url, table_prefix=prefix + "t") as s:
        assert s.count_sessions() == 4
