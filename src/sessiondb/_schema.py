"""Every table sessiondb owns, in one MetaData. The only place table names appear.

Portable types are decided here once: JSONB on PostgreSQL, LONGTEXT on MySQL/MariaDB (no 64 KB
TEXT limit), TEXT on SQLite; timestamps with microseconds, stored as naive UTC; keys as bounded
VARCHARs with a binary, no-pad collation on MySQL/MariaDB so ``"abc"``, ``"ABC"`` and ``"abc "``
are three different ids, as they are on PostgreSQL and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles

from ._ids import MAX_ID_LENGTH

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["Tables", "drop_all", "lock_table_name", "tables", "version_table_name"]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class KeyString(sa.String):
    """A VARCHAR compared byte for byte, trailing spaces included, on every backend."""

    cache_ok = True


@compiles(KeyString, "mysql")
@compiles(KeyString, "mariadb")
def _key_string_mysql(type_: KeyString, compiler: Any, **kw: Any) -> str:
    # MariaDB's utf8mb4_bin pads with spaces ("a" = "a "); its nopad variant does not.
    # MySQL 8's utf8mb4_0900_bin is NO PAD already.
    collation = "utf8mb4_nopad_bin" if compiler.dialect.is_mariadb else "utf8mb4_0900_bin"
    return f"VARCHAR({type_.length}) CHARACTER SET utf8mb4 COLLATE {collation}"


def Key(length: int = MAX_ID_LENGTH) -> sa.types.TypeEngine[str]:  # noqa: N802
    """A bounded, exactly compared string key."""
    return KeyString(length)


def Blob() -> sa.types.TypeEngine[bytes]:  # noqa: N802
    """Serialized bytes of any size: BYTEA, LONGBLOB (MySQL's BLOB stops at 64 KB) or BLOB."""
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def LongText() -> sa.types.TypeEngine[str]:  # noqa: N802
    """Text of any size, never parsed by the database: TEXT, or LONGTEXT on MySQL/MariaDB."""
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


#: Lengths of the LangGraph checkpoint keys: within MySQL's 3072-byte index limit in utf8mb4
#: with the owner and thread (128 each) in front of them.
NS_LENGTH = 160
CHECKPOINT_ID_LENGTH = 64
VERSION_LENGTH = 64


def JsonText() -> sa.types.TypeEngine[str]:  # noqa: N802
    """A JSON document: JSONB, LONGTEXT or TEXT. sessiondb encodes and decodes it itself."""
    return (
        sa.Text()
        .with_variant(postgresql.JSONB(), "postgresql")
        .with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    )


def Timestamp() -> sa.types.TypeEngine[Any]:  # noqa: N802
    """A naive UTC timestamp with microseconds."""
    return (
        sa.DateTime()
        .with_variant(postgresql.TIMESTAMP(precision=6), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )


MYSQL_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


@dataclass(frozen=True)
class Tables:
    """The tables for one table-name prefix."""

    metadata: sa.MetaData
    sessions: sa.Table
    events: sa.Table
    app_states: sa.Table
    user_states: sa.Table
    labels: sa.Table
    lg_threads: sa.Table
    lg_checkpoints: sa.Table
    lg_blobs: sa.Table
    lg_writes: sa.Table


def version_table_name(prefix: str) -> str:
    """sessiondb's own Alembic version table, apart from the host application's."""
    return f"{prefix}sessiondb_alembic_version"


def lock_table_name(prefix: str) -> str:
    """The schema lock's table, made on a MariaDB Galera cluster only (``_migrations.lock``)."""
    return f"{prefix}sessiondb_lock"


@cache
def tables(prefix: str = "") -> Tables:
    """Build (once per prefix) the MetaData that Alembic migrates and the queries use."""
    md = sa.MetaData(naming_convention=NAMING)
    sessions = sa.Table(
        f"{prefix}sessions",
        md,
        # ids are the caller's per (app, user), like ADK's: the owner leads the key, so a
        # table hash-partitioned or distributed on it serves each user from one shard
        sa.Column("id", Key(), nullable=False),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
        # event bookkeeping, kept in step with the events table (revision 0002)
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("event_count", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("event_bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        # lifecycle and metadata (revision 0003)
        sa.Column("expires_at", Timestamp(), nullable=True),
        sa.Column("ttl_seconds", sa.Float(), nullable=True),  # set: sliding expiry
        sa.Column("title", sa.String(256), nullable=True),
        sa.Column("labels", JsonText(), nullable=True),
        sa.PrimaryKeyConstraint("app_name", "user_id", "id"),
        # lookups by id alone (administration, calls that omit the owner): not unique
        sa.Index(f"ix_{prefix}sessions_id", "id"),
        # no index holds updated_at, which every write sets: PostgreSQL's writes stay HOT
        # updates (revision 0007); listings by owner go through the primary key
        sa.Index(f"ix_{prefix}sessions_created", "created_at", "id", "app_name", "user_id"),
        # partial where the database can: sessions that never expire stay out of it
        sa.Index(
            f"ix_{prefix}sessions_expires",
            "expires_at",
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        ),
        **MYSQL_OPTIONS,
    )
    owner = ("app_name", "user_id")
    events = sa.Table(
        f"{prefix}events",
        md,
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("author", Key(), nullable=False),
        sa.Column("content", JsonText(), nullable=False),
        sa.Column("state_delta", JsonText(), nullable=True),
        sa.Column("invocation_id", Key(), nullable=True),
        sa.Column("meta", JsonText(), nullable=True),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        # the caller's idempotency key, unique per session (revision 0004)
        sa.Column("event_id", Key(), nullable=True),
        # the session's owner (revision 0005): events live with their session on a shard
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.PrimaryKeyConstraint(*owner, "session_id", "seq"),
        sa.ForeignKeyConstraint(
            [*owner, "session_id"],
            [sessions.c.app_name, sessions.c.user_id, sessions.c.id],
            ondelete="CASCADE",
        ),
        sa.Index(f"ix_{prefix}events_event_id", *owner, "session_id", "event_id", unique=True),
        **MYSQL_OPTIONS,
    )
    app_states = sa.Table(
        f"{prefix}app_states",
        md,
        sa.Column("app_name", Key(), primary_key=True),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        **MYSQL_OPTIONS,
    )
    user_states = sa.Table(
        f"{prefix}user_states",
        md,
        sa.Column("app_name", Key(), primary_key=True),
        sa.Column("user_id", Key(), primary_key=True),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        **MYSQL_OPTIONS,
    )
    labels = sa.Table(
        f"{prefix}session_labels",
        md,
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("label", Key(), nullable=False),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.PrimaryKeyConstraint(*owner, "session_id", "label"),
        sa.ForeignKeyConstraint(
            [*owner, "session_id"],
            [sessions.c.app_name, sessions.c.user_id, sessions.c.id],
            ondelete="CASCADE",
        ),
        sa.Index(f"ix_{prefix}session_labels_label", "label", *owner, "session_id"),
        **MYSQL_OPTIONS,
    )
    lg = _checkpoint_tables(md, prefix)
    return Tables(md, sessions, events, app_states, user_states, labels, *lg)


def _checkpoint_tables(md: sa.MetaData, prefix: str) -> tuple[sa.Table, ...]:
    """LangGraph's checkpoints (revision 0006): every key led by the thread's owner
    (``("", "")`` for a thread bound to nobody), then the thread, so they shard like sessions.
    No foreign keys: a thread's rows are deleted together by the core."""
    thread = ("app_name", "user_id", "thread_id")

    def head() -> list[sa.Column[Any]]:
        return [
            sa.Column("app_name", Key(), nullable=False),
            sa.Column("user_id", Key(), nullable=False),
            sa.Column("thread_id", Key(), nullable=False),
        ]

    threads = sa.Table(
        f"{prefix}lg_threads",
        md,
        *head(),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.Column("expires_at", Timestamp(), nullable=True),
        sa.PrimaryKeyConstraint(*thread),
        # delete_thread, copy_thread and prune name a thread by id alone
        sa.Index(f"ix_{prefix}lg_threads_thread_id", "thread_id"),
        sa.Index(
            f"ix_{prefix}lg_threads_expires",
            "expires_at",
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        ),
        **MYSQL_OPTIONS,
    )
    checkpoints = sa.Table(
        f"{prefix}lg_checkpoints",
        md,
        *head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("parent_checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=True),
        sa.Column("run_id", Key(), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("checkpoint", Blob(), nullable=False),
        # channel -> version (as text): which blobs make up the checkpoint's values
        sa.Column("versions", LongText(), nullable=False),
        sa.Column("metadata", LongText(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint(*thread, "checkpoint_ns", "checkpoint_id"),
        sa.Index(f"ix_{prefix}lg_checkpoints_run_id", "run_id"),
        **MYSQL_OPTIONS,
    )
    blobs = sa.Table(
        f"{prefix}lg_blobs",
        md,
        *head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("channel", Key(), nullable=False),
        sa.Column("version", Key(VERSION_LENGTH), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", Blob(), nullable=True),
        sa.PrimaryKeyConstraint(*thread, "checkpoint_ns", "channel", "version"),
        **MYSQL_OPTIONS,
    )
    writes = sa.Table(
        f"{prefix}lg_writes",
        md,
        *head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("task_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("channel", Key(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", Blob(), nullable=True),
        sa.Column("task_path", LongText(), nullable=False),
        sa.PrimaryKeyConstraint(*thread, "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
        **MYSQL_OPTIONS,
    )
    return threads, checkpoints, blobs, writes


def drop_all(url: str | URL, prefix: str = "") -> None:
    """Drop every table sessiondb made with ``prefix`` in the database at ``url``: sessions,
    events, labels, app and user states, LangGraph checkpoints, and sessiondb's own Alembic
    version table (and schema lock table, on Galera).

    ``prefix`` is the ``table_prefix`` the stores were opened with. Everything sessiondb stored
    under it is gone afterwards. Tables that do not exist are skipped; other tables (the host
    application's, its ``alembic_version``, sessiondb's under another prefix) are never
    touched. A SQLite file is left in place, without sessiondb's tables.

    The operator's ``sessiondb uninstall``; also used by the tests and the benchmarks. An
    application deletes data with the store's methods instead. Raises
    :class:`~sessiondb.errors.ConfigurationError` for a malformed URL and SQLAlchemy's errors
    when the database cannot be reached or a table cannot be dropped.
    """
    from ._urls import resolve_url

    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            tables(prefix).metadata.drop_all(conn)
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {version_table_name(prefix)}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {lock_table_name(prefix)}"))
    finally:
        engine.dispose()
