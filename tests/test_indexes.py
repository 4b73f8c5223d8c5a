"""The hot queries use indexes (checked with EXPLAIN on the statements sessiondb runs)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import SessionStore
from sessiondb._urls import resolve_url

SESSIONS = 3000


@pytest.fixture
def seeded(db_url: str, backend: str) -> Any:
    if backend == "mysql":
        pytest.skip("EXPLAIN is checked on SQLite and PostgreSQL (as the issue asks)")
    store = SessionStore(db_url)
    store.list_sessions("warm", "up")  # schema
    t = store._backend.tables.sessions
    start = datetime(2025, 1, 1)
    rows = [
        {"id": f"s{i:05}", "app_name": f"app{i % 3}", "user_id": f"user{i % 500}",
         "state": "{}", "created_at": start + timedelta(seconds=i),
         "updated_at": start + timedelta(seconds=i), "version": 1}
        for i in range(SESSIONS)
    ]  # fmt: skip
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(t.insert(), rows)
        conn.exec_driver_sql("ANALYZE")
    yield store, engine
    store.close()
    engine.dispose()


def plan(engine: sa.Engine, backend: str, sql: str, params: Any) -> str:
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        cur = raw.cursor()
        if backend == "sqlite":
            cur.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        else:
            cur.execute(f"EXPLAIN {sql}", params)
        return "\n".join(" ".join(str(c) for c in row) for row in cur.fetchall())


def test_hot_queries_use_indexes(seeded: Any, backend: str) -> None:
    store, engine = seeded
    q = store._backend.core.q
    now = q.ts_in(datetime(2030, 1, 1))
    cases = {
        "get": (q.get_session, {"sid": "s00042", "app": "app0", "user": "user42", "now": now}),
        "update": (
            q.update_state,
            {"sid": "s00042", "app": "app0", "user": "user42", "state": "{}", "now": now},
        ),
        # a call that names a session by id alone finds its owner through ix_sessions_id
        "owner": (q.owners_live, {"sid": "s00042", "now": now}),
        "list": (q.list_user, {"app": "app0", "user": "user42", "now": now}),
    }
    for name, (stmt, params) in cases.items():
        text = plan(engine, backend, stmt.sql, stmt.bind(params))
        if backend == "sqlite":
            assert "SCAN sessions" not in text, (name, text)
            assert "USING" in text and "INDEX" in text, (name, text)
        else:
            assert "Seq Scan on sessions" not in text, (name, text)
            assert "Index" in text, (name, text)
