"""The shipped Alembic revisions build exactly ``_schema.py``'s tables, and upgrading a database
made by the first released schema keeps every session."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import SCHEMA_HEAD, SchemaError, SessionStore
from sessiondb._migrations import HEAD, REVISIONS, upgrade
from sessiondb._schema import tables, version_table_name
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


# -- the revisions against _schema.py -------------------------------------------------------------


def ddl_type(type_: Any, dialect: sa.Dialect) -> str:
    """A column type as the database spells it, without what only differs in spelling."""
    text = str(type_.compile(dialect=dialect))
    if dialect.name in ("mysql", "mariadb"):  # MariaDB reports integer display widths
        text = re.sub(r"^(TINYINT|SMALLINT|MEDIUMINT|INTEGER|INT|BIGINT)\(\d+\)", r"\1", text)
    if dialect.name == "postgresql" and text == "FLOAT":  # FLOAT without precision is double
        text = "DOUBLE PRECISION"
    return text


def predicate(where: Any) -> str | None:
    """A partial index's WHERE clause, normalized (PostgreSQL adds parentheses)."""
    if where is None:
        return None
    return re.sub(r"[()\s]+", " ", str(where)).strip().lower()


@pytest.mark.parametrize("prefix", ["", "cmp_"], ids=["no-prefix", "prefix"])
def test_revisions_build_exactly_the_schema(backend: str, make_db_url: Any, prefix: str) -> None:
    """Upgrade an empty database to head, then compare it with ``_schema.tables(prefix)``."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = tables(prefix).metadata
    version_table = version_table_name(prefix)
    engine = sa.create_engine(resolve_url(make_db_url()).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            upgrade(conn, prefix)
            conn.commit()
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    # Alembic's own version table is not part of sessiondb's MetaData
                    "include_name": lambda name, kind, _: (
                        not (kind == "table" and name == version_table)
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []

            # What compare_metadata does not look at (found by altering a database by hand):
            # DATETIME(6) vs DATETIME and the partial index's predicate.
            inspector = sa.inspect(conn)
            assert set(inspector.get_table_names()) == {*metadata.tables, version_table}
            assert [r[0] for r in conn.execute(sa.select(sa.column("version_num")).select_from(
                sa.table(version_table)))] == [HEAD]  # fmt: skip
            for table in metadata.sorted_tables:
                reflected = {c["name"]: c for c in inspector.get_columns(table.name)}
                assert list(reflected) == [c.name for c in table.columns], table.name
                for column in table.columns:
                    got = ddl_type(reflected[column.name]["type"], conn.dialect)
                    assert got == ddl_type(column.type, conn.dialect), (table.name, column.name)
                indexes = {i["name"]: i for i in inspector.get_indexes(table.name)}
                for index in table.indexes:
                    options = indexes[index.name].get("dialect_options") or {}
                    name = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
                    declared = index.dialect_kwargs.get(f"{name}_where")
                    if conn.dialect.name in ("mysql", "mariadb"):
                        declared = None  # no partial indexes there: the index is whole
                    got_where = predicate(options.get(f"{name}_where"))
                    assert got_where == predicate(declared), (index.name, got_where)
    finally:
        engine.dispose()
