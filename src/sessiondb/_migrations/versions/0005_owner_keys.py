"""Keys led by the owner: session ids per (app, user), events and labels carry the owner.

``sessions`` is keyed by ``(app_name, user_id, id)`` (an id is the caller's within its app and
user, as in Google ADK) with a plain index on ``id`` for lookups by id alone. ``events`` and
``session_labels`` gain ``app_name`` and ``user_id``, filled from their session, and reference
the session by the whole key. Every table of a user's sessions is then keyed by the owner first,
so it can be hash-partitioned (or distributed) on it.

PostgreSQL and MySQL/MariaDB change the tables in place. SQLite cannot change a primary key,
so its three tables are rebuilt: the old ones are renamed, new ones made and filled, and the
old ones dropped children first (foreign keys stay on: dropping the old sessions table never
cascades into rows that are kept).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import MYSQL_OPTIONS, JsonText, Key, Timestamp

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OWNER = ["app_name", "user_id"]
SESSION_COLUMNS = (
    "id, app_name, user_id, state, created_at, updated_at, version, last_seq, event_count, "
    "event_bytes, expires_at, ttl_seconds, title, labels"
)
EVENT_COLUMNS = (
    "session_id, seq, author, content, state_delta, invocation_id, meta, created_at, size, event_id"
)


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild_sqlite(table_prefix())
    else:
        _alter_in_place(table_prefix())


def _alter_in_place(p: str) -> None:
    s, ev, lb = f"{p}sessions", f"{p}events", f"{p}session_labels"
    mysql = op.get_context().dialect.name in ("mysql", "mariadb")
    for table in (ev, lb):
        for name in OWNER:
            op.add_column(table, sa.Column(name, Key(), nullable=True))
        owner_of = ", ".join(
            f"{name} = (SELECT s.{name} FROM {s} AS s WHERE s.id = {table}.session_id)"
            for name in OWNER
        )
        op.execute(f"UPDATE {table} SET {owner_of}")
        for name in OWNER:
            op.alter_column(table, name, existing_type=Key(), nullable=False)
    op.drop_constraint(f"fk_{ev}_session_id_{s}", ev, type_="foreignkey")
    op.drop_constraint(f"fk_{lb}_session_id_{s}", lb, type_="foreignkey")
    op.drop_index(f"ix_{ev}_session_id_event_id", ev)
    op.drop_index(f"ix_{lb}_label", lb)
    op.drop_index(f"ix_{s}_app_updated", s)
    op.drop_index(f"ix_{s}_created", s)
    # one statement per table: it is never without a primary key (Galera needs one)
    for table, columns in (
        (s, "app_name, user_id, id"),
        (ev, "app_name, user_id, session_id, seq"),
        (lb, "app_name, user_id, session_id, label"),
    ):
        if mysql:
            op.execute(f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY ({columns})")
        else:
            op.execute(
                f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
                f"ADD CONSTRAINT pk_{table} PRIMARY KEY ({columns})"
            )
    _indexes_and_keys(p)


def _indexes_and_keys(p: str, *, foreign_keys: bool = True) -> None:
    s, ev, lb = f"{p}sessions", f"{p}events", f"{p}session_labels"
    op.create_index(f"ix_{s}_id", s, ["id"])
    # listings of several users page by (time, id, owner): ids repeat across owners
    op.create_index(f"ix_{s}_app_updated", s, ["app_name", "updated_at", "id", "user_id"])
    op.create_index(f"ix_{s}_created", s, ["created_at", "id", "app_name", "user_id"])
    op.create_index(f"ix_{ev}_event_id", ev, [*OWNER, "session_id", "event_id"], unique=True)
    op.create_index(f"ix_{lb}_label", lb, ["label", *OWNER, "session_id"])
    if foreign_keys:
        for table in (ev, lb):
            op.create_foreign_key(
                f"fk_{table}_app_name_{s}",
                table,
                s,
                [*OWNER, "session_id"],
                [*OWNER, "id"],
                ondelete="CASCADE",
            )


def _rebuild_sqlite(p: str) -> None:
    s, ev, lb = f"{p}sessions", f"{p}events", f"{p}session_labels"
    old_s, old_ev, old_lb = f"{p}_old_sessions", f"{p}_old_events", f"{p}_old_labels"
    for name in (
        f"ix_{s}_user_updated", f"ix_{s}_app_updated", f"ix_{s}_created", f"ix_{s}_expires",
        f"ix_{ev}_session_id_event_id", f"ix_{lb}_label",
    ):  # fmt: skip
        op.drop_index(name)
    op.rename_table(ev, old_ev)
    op.rename_table(lb, old_lb)
    op.rename_table(s, old_s)  # the old children now reference the old table

    def fk(table: str) -> sa.ForeignKeyConstraint:
        return sa.ForeignKeyConstraint(
            [*OWNER, "session_id"],
            [f"{s}.app_name", f"{s}.user_id", f"{s}.id"],
            name=f"fk_{table}_app_name_{s}",
            ondelete="CASCADE",
        )

    op.create_table(
        s,
        sa.Column("id", Key(), nullable=False),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("event_count", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("event_bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("expires_at", Timestamp(), nullable=True),
        sa.Column("ttl_seconds", sa.Float(), nullable=True),
        sa.Column("title", sa.String(256), nullable=True),
        sa.Column("labels", JsonText(), nullable=True),
        sa.PrimaryKeyConstraint(*OWNER, "id", name=f"pk_{s}"),
        **MYSQL_OPTIONS,
    )
    op.create_table(
        ev,
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("author", Key(), nullable=False),
        sa.Column("content", JsonText(), nullable=False),
        sa.Column("state_delta", JsonText(), nullable=True),
        sa.Column("invocation_id", Key(), nullable=True),
        sa.Column("meta", JsonText(), nullable=True),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("event_id", Key(), nullable=True),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.PrimaryKeyConstraint(*OWNER, "session_id", "seq", name=f"pk_{ev}"),
        fk(ev),
        **MYSQL_OPTIONS,
    )
    op.create_table(
        lb,
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("label", Key(), nullable=False),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.PrimaryKeyConstraint(*OWNER, "session_id", "label", name=f"pk_{lb}"),
        fk(lb),
        **MYSQL_OPTIONS,
    )
    op.create_index(f"ix_{s}_user_updated", s, ["app_name", "user_id", "updated_at", "id"])
    op.create_index(
        f"ix_{s}_expires", s, ["expires_at"], sqlite_where=sa.text("expires_at IS NOT NULL")
    )
    _indexes_and_keys(p, foreign_keys=False)
    op.execute(f"INSERT INTO {s} ({SESSION_COLUMNS}) SELECT {SESSION_COLUMNS} FROM {old_s}")
    old_events = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))
    op.execute(
        f"INSERT INTO {ev} ({EVENT_COLUMNS}, app_name, user_id) "
        f"SELECT {old_events}, s.app_name, s.user_id "
        f"FROM {old_ev} AS e JOIN {old_s} AS s ON s.id = e.session_id"
    )
    op.execute(
        f"INSERT INTO {lb} (session_id, label, app_name, user_id) "
        f"SELECT l.session_id, l.label, s.app_name, s.user_id "
        f"FROM {old_lb} AS l JOIN {old_s} AS s ON s.id = l.session_id"
    )
    op.drop_table(old_ev)
    op.drop_table(old_lb)
    op.drop_table(old_s)


def downgrade() -> None:  # pragma: no cover - sessiondb never downgrades
    raise NotImplementedError("revision 0005 (per-owner session ids) cannot be undone")
