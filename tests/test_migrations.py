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

from sessiondb import SCHEMA_HEAD, AmbiguousSessionError, SchemaError, SessionStore
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


# -- revision 0005: keys led by the owner, from a database populated at 0003 or 0004 --------------


def _rows_at(conn: sa.Connection, revision: str) -> None:
    """Sessions with events and labels, written with the SQL of ``revision`` (0003 or 0004)."""

    def table(name: str, *columns: str) -> Any:
        return sa.table(f"{PREFIX}{name}", *(sa.column(c) for c in columns))

    sessions = table(
        "sessions", "id", "app_name", "user_id", "state", "created_at", "updated_at", "version",
        "last_seq", "event_count", "event_bytes", "title", "labels",
    )  # fmt: skip
    event_columns = ["session_id", "seq", "author", "content", "created_at", "size"]
    if revision >= "0004":
        event_columns.append("event_id")
    events = table("events", *event_columns)
    labels = table("session_labels", "session_id", "label")
    for i in range(6):
        sid = f"s{i}"
        conn.execute(
            sessions.insert().values(
                id=sid, app_name="app", user_id=f"u{i % 2}", state=json.dumps({"i": i}),
                created_at=datetime(2025, 1, 1, 0, 0, i), updated_at=datetime(2025, 1, 2, 0, 0, i),
                version=3, last_seq=2, event_count=2, event_bytes=20, title=f"t{i}",
                labels=json.dumps(["red"] if i % 2 else ["red", "blue"]),
            )
        )  # fmt: skip
        for seq in (1, 2):
            values = {
                "session_id": sid, "seq": seq, "author": "user",
                "content": json.dumps(f"{sid} says {seq}"),
                "created_at": datetime(2025, 1, 1, 0, 1, seq), "size": 10,
            }  # fmt: skip
            if revision >= "0004":
                values["event_id"] = f"e-{sid}-{seq}"
            conn.execute(events.insert().values(**values))
        conn.execute(labels.insert().values(session_id=sid, label="red"))
        if i % 2 == 0:
            conn.execute(labels.insert().values(session_id=sid, label="blue"))


@pytest.mark.parametrize("revision", ["0003", "0004"])
def test_owner_keys_migrate_in_place(backend: str, make_db_url: Any, revision: str) -> None:
    url = make_db_url()
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            upgrade(conn, PREFIX, revision)
            conn.commit()
        with engine.begin() as conn:
            _rows_at(conn, revision)
    finally:
        engine.dispose()
    with SessionStore(url, table_prefix=PREFIX) as store:
        assert store.migrate() == SCHEMA_HEAD
        for i in range(6):
            got = store.get_session("app", f"u{i % 2}", f"s{i}", recent_events=5)
            assert got is not None and got.state == {"i": i} and got.version == 3
            assert [e.content for e in got.events or []] == [f"s{i} says 1", f"s{i} says 2"]
            if revision >= "0004":
                assert [e.event_id for e in got.events or []] == [f"e-s{i}-1", f"e-s{i}-2"]
        assert store.count_sessions("app", label="blue") == 3
        assert store.count_sessions("app", "u1", label="red") == 3
        # the next event continues the history; an event id given at 0004 still counts
        assert store.append_event("s0", "user", "after", event_id="e-s0-3").seq == 3
        if revision >= "0004":
            again = store.append_event("s0", "user", "ignored", event_id="e-s0-1")
            assert (again.seq, again.content) == (1, "s0 says 1")
        # ids are per owner now: u1 may have an s0 too, and then s0 alone is ambiguous
        store.create_session("app", "u1", {"mine": True}, session_id="s0")
        with pytest.raises(AmbiguousSessionError):
            store.append_event("s0", "user", "whose?")
        assert store.append_event("s0", "user", "u1's", app_name="app", user_id="u1").seq == 1
        store.set_metadata("s2", labels=["green"])
        assert store.count_sessions("app", label="blue") == 2
        # deleting cascades to the events and labels of that session only
        assert store.delete_session("s0", app_name="app", user_id="u0")
        assert store.list_events("s0", app_name="app", user_id="u0") == []
        assert [e.content for e in store.list_events("s0")] == ["u1's"]
        assert store.count_sessions("app", label="red") == 4  # s1, s3, s4, s5
        assert store.checksum() == store.checksum()
    # the migrated tables are exactly the head schema's (keys, foreign keys, indexes)
    _compare(url, PREFIX)


def _compare(url: str, prefix: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    version_table = version_table_name(prefix)
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": lambda name, kind, _: (
                        not (kind == "table" and name == version_table)
                    ),
                },
            )
            assert compare_metadata(context, tables(prefix).metadata) == []
            inspector = sa.inspect(conn)
            assert set(inspector.get_table_names()) == {
                *tables(prefix).metadata.tables,
                version_table,
            }
            for table in tables(prefix).metadata.sorted_tables:
                pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
                assert pk == [c.name for c in table.primary_key.columns], table.name
                reflected = {c["name"] for c in inspector.get_columns(table.name)}
                assert reflected == {c.name for c in table.columns}, table.name
                keys = {
                    (tuple(fk["constrained_columns"]), tuple(fk["referred_columns"]))
                    for fk in inspector.get_foreign_keys(table.name)
                }
                declared = {
                    (tuple(c.parent.name for c in fk.elements),
                     tuple(c.column.name for c in fk.elements))
                    for fk in table.foreign_key_constraints
                }  # fmt: skip
                assert keys == declared, table.name
    finally:
        engine.dispose()


def test_hot_update_revision_keeps_data_and_order(backend: str, make_db_url: Any) -> None:
    """0006 -> 0007 drops the indexes on updated_at: sessions, events and the listing order
    are kept, and on PostgreSQL the sessions table keeps room for HOT updates."""
    url = make_db_url()
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    # plain columns: the JSON goes in as text, as sessiondb writes it
    sessions = sa.table(
        f"{PREFIX}sessions",
        *map(sa.column, ("id", "app_name", "user_id", "state", "created_at", "updated_at",
                         "version")),
    )  # fmt: skip
    rows = [
        {"id": f"s{i}", "app_name": "app", "user_id": f"u{i % 2}", "state": json.dumps({"i": i}),
         "created_at": datetime(2025, 1, 1, 0, 0, i),
         "updated_at": datetime(2025, 1, 2, 0, 0, 9 - i, 500), "version": 1}
        for i in range(10)
    ]  # fmt: skip
    try:
        with engine.connect() as conn:
            upgrade(conn, PREFIX, "0006")
            conn.commit()
        with engine.begin() as conn:
            conn.execute(sessions.insert(), rows)
    finally:
        engine.dispose()
    with SessionStore(url, table_prefix=PREFIX, auto_migrate=False) as store:
        assert store.migrate() == SCHEMA_HEAD == "0007"
        # newest update first, as before
        assert [s.id for s in store.list_sessions("app", "u0")] == ["s0", "s2", "s4", "s6", "s8"]
        assert [s.id for s in store.list_sessions("app")][:3] == ["s0", "s1", "s2"]
        page = store.list_sessions("app", "u1", limit=2)
        assert [s.id for s in page] == ["s1", "s3"]
        rest = store.list_sessions("app", "u1", limit=10, cursor=page.next_cursor)
        assert [s.id for s in rest] == ["s5", "s7", "s9"]
        assert store.patch_state("s8", {"k": 1}, app_name="app", user_id="u0") == 2
        assert store.append_event("s6", "user", "hi", app_name="app", user_id="u0").seq == 1
        assert [s.id for s in store.list_sessions("app", "u0")][:2] == ["s6", "s8"]
        assert store.get_session("app", "u0", "s6").state == {"i": 6}  # type: ignore[union-attr]
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            names = {ix["name"] for ix in sa.inspect(conn).get_indexes(f"{PREFIX}sessions")}
            assert not any("updated" in str(name) for name in names), names
            if backend == "postgresql":
                options = conn.exec_driver_sql(
                    f"SELECT reloptions FROM pg_class WHERE relname = '{PREFIX}sessions'"
                ).scalar()
                assert options == ["fillfactor=80"]
    finally:
        engine.dispose()
    _compare(url, PREFIX)
