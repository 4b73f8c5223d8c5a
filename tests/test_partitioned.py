"""The schema works hash-partitioned on the owner: PostgreSQL ``PARTITION BY HASH (app_name,
user_id)`` on sessions, events, labels and user states (issue 11 §5).

PostgreSQL requires a partitioned table's key in its primary key and in every unique index;
sessiondb's keys lead with ``(app_name, user_id)`` so the schema is created unchanged but for
the partitioning, stamped at the head revision, and then the contract suite runs on it: every
test of ``test_contract``, ``test_owners``, ``test_events`` and ``test_lifecycle`` is collected
again here, on both front ends, with ``db_url`` a partitioned database. The statements that
serve one user are shown to touch one partition (partition pruning).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import SessionStore
from sessiondb._migrations import HEAD
from sessiondb._schema import NAMING, tables
from sessiondb._urls import resolve_url

# the contract suite, collected again in this module with the fixtures below
from .test_contract import *  # noqa: F403
from .test_events import *  # noqa: F403
from .test_lifecycle import *  # noqa: F403
from .test_owners import *  # noqa: F403

pytestmark = pytest.mark.postgresql

PARTITIONS = 4
PARTITIONED = ("sessions", "events", "session_labels", "user_states")


def partitioned_metadata() -> sa.MetaData:
    """sessiondb's tables, those keyed by the owner partitioned by HASH (app_name, user_id)."""
    md = sa.MetaData(naming_convention=NAMING)
    for table in tables("").metadata.sorted_tables:
        copy = table.to_metadata(md)
        if table.name in PARTITIONED:
            copy.dialect_kwargs["postgresql_partition_by"] = "HASH (app_name, user_id)"
    return md


def stamp(url: str) -> None:
    """Record the head revision, as ``alembic stamp head`` does, through sessiondb's env."""
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(files("sessiondb") / "_migrations"))
            cfg.attributes["connection"] = conn
            cfg.attributes["table_prefix"] = ""
            command.stamp(cfg, "head")
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture
def backend() -> str:
    """Every test of this module runs on PostgreSQL."""
    return "postgresql"


@pytest.fixture
def db_url(backend: str, make_db_url: Any) -> str:
    """A new PostgreSQL database with sessiondb's schema hash-partitioned, at the head revision."""
    url = make_db_url("postgresql")
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            partitioned_metadata().create_all(conn)
            for name in PARTITIONED:
                for r in range(PARTITIONS):
                    conn.exec_driver_sql(
                        f"CREATE TABLE {name}_p{r} PARTITION OF {name} "
                        f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {r})"
                    )
    finally:
        engine.dispose()
    stamp(url)
    return url


def test_the_tables_are_partitioned_and_one_user_touches_one_partition(db_url: str) -> None:
    with SessionStore(db_url) as store:
        assert store.current_revision() == HEAD
        for i in range(40):
            s = store.create_session("app", f"u{i}", session_id="s1", labels=["x"])
            store.append_event(s.id, "user", "hi", app_name="app", user_id=f"u{i}")
        q = store._backend.core.q
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT c.relname, count(i.inhrelid) FROM pg_partitioned_table p "
                "JOIN pg_class c ON c.oid = p.partrelid "
                "LEFT JOIN pg_inherits i ON i.inhparent = c.oid GROUP BY c.relname"
            ).all()
            assert dict(found) == dict.fromkeys(PARTITIONED, PARTITIONS)
            # the rows are spread over the partitions
            spread = conn.exec_driver_sql(
                "SELECT count(DISTINCT tableoid) FROM sessions"
            ).scalar_one()
            assert spread > 1
            raw: Any = conn.connection.driver_connection
            now = q.ts_in(datetime(2030, 1, 1))
            key = {"app": "app", "user": "u7", "sid": "s1", "now": now}
            for table, stmt, params in (
                ("sessions", q.get_session, key),
                ("sessions", q.list_user, key),
                ("sessions", q.update_state, {**key, "state": "{}"}),
                ("sessions", q.lock_session, key),
                ("events", q.list_events(False, False, True, True), {**key, "limit": 5}),
                ("session_labels", q.delete_labels, key),
            ):
                cur = raw.cursor()
                cur.execute(f"EXPLAIN {stmt.sql}", stmt.bind(params))
                plan = "\n".join(r[0] for r in cur.fetchall())
                cur.close()
                touched = [r for r in range(PARTITIONS) if f" on {table}_p{r}" in plan]
                assert len(touched) == 1, (stmt.sql, plan)
                others = [t for t in PARTITIONED if t != table and f" on {t}_p" in plan]
                assert all(
                    len([r for r in range(PARTITIONS) if f" on {t}_p{r}" in plan]) <= 1
                    for t in others
                ), plan
            raw.rollback()
    finally:
        engine.dispose()
