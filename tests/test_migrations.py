"""Upgrading a database made by the first released schema keeps every session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa

from sessiondb import SCHEMA_HEAD, SchemaError, SessionStore
from sessiondb._migrations import REVISIONS, upgrade
from sessiondb._urls import resolve_url

PREFIX = "mig_"


@pytest.fixture
def old_db(db_url: str) -> Iterator[str]:
    """The test's private database, with ``PREFIX`` tables at the first revision, and rows."""
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            upgrade(conn, PREFIX, REVISIONS[0])
            conn.commit()
        with engine.begin() as conn:
            sessions = sa.table(
                f"{PREFIX}sessions",
                *(
                    sa.column(n)
                    for n in (
                        "id",
                        "app_name",
                        "user_id",
                        "state",
                        "created_at",
                        "updated_at",
                        "version",
                    )
                ),
            )
            for i in range(20):
                conn.execute(
                    sessions.insert().values(
                        id=f"s{i}", app_name="app", user_id=f"u{i % 4}",
                        state=json.dumps({"i": i, "text": "héllo"}),
                        created_at=datetime(2025, 1, 1, 0, 0, i),
                        updated_at=datetime(2025, 1, 2, 0, 0, i), version=i + 1,
                    )
                )  # fmt: skip
        yield db_url
    finally:
        engine.dispose()


def test_upgrade_from_the_first_revision_keeps_data(old_db: str) -> None:
    with SessionStore(old_db, table_prefix=PREFIX, auto_migrate=False) as store:
        assert store.current_revision() == REVISIONS[0]
        with pytest.raises(SchemaError) as info:
            store.get_session("app", "u1", "s1")
        assert "sessiondb migrate" in str(info.value)
    with SessionStore(old_db, table_prefix=PREFIX) as store:
        got = store.get_session("app", "u1", "s1")
        assert got is not None
        assert got.state == {"i": 1, "text": "héllo"} and got.version == 2
        assert got.event_count == 0 and got.labels == [] and got.expires_at is None
        assert len(store.list_sessions("app")) == 20
        assert store.current_revision() == SCHEMA_HEAD
        assert store.append_event("s1", "user", "after the upgrade").seq == 1
        assert store.patch_state("s1", {"new": True}) == 4
        report = store.doctor()
        assert report["revision"] == SCHEMA_HEAD
        assert not any("migrate" in advice for advice in report["advice"]), report["advice"]
        assert f"ix_{PREFIX}sessions_expires" in report["indexes"]


def test_explicit_migrate(old_db: str) -> None:
    with SessionStore(old_db, table_prefix=PREFIX, auto_migrate=False) as store:
        assert store.migrate() == SCHEMA_HEAD
        assert store.current_revision() == SCHEMA_HEAD
        assert store.get_session("app", "u2", "s2") is not None
