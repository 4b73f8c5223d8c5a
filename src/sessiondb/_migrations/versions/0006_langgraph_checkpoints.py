"""LangGraph checkpoints: threads, checkpoints, channel blobs and pending writes.

Four new tables, each keyed by the thread's owner first (``("", "")`` for a thread bound to
nobody), then the thread, like the sessions since revision 0005: hash-partitionable on the
owner, and every table has a primary key (Galera requires one). Plain ``CREATE TABLE`` and
``CREATE INDEX``: nothing that cannot run in a transaction.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import (
    CHECKPOINT_ID_LENGTH,
    MYSQL_OPTIONS,
    NS_LENGTH,
    VERSION_LENGTH,
    Blob,
    Key,
    LongText,
    Timestamp,
)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

THREAD = ["app_name", "user_id", "thread_id"]


def _head() -> list[sa.Column[str]]:
    return [
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.Column("thread_id", Key(), nullable=False),
    ]


def upgrade() -> None:
    p = table_prefix()
    threads, checkpoints = f"{p}lg_threads", f"{p}lg_checkpoints"
    blobs, writes = f"{p}lg_blobs", f"{p}lg_writes"
    op.create_table(
        threads,
        *_head(),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.Column("expires_at", Timestamp(), nullable=True),
        sa.PrimaryKeyConstraint(*THREAD, name=f"pk_{threads}"),
        **MYSQL_OPTIONS,
    )
    op.create_index(f"ix_{threads}_thread_id", threads, ["thread_id"])
    op.create_index(
        f"ix_{threads}_expires",
        threads,
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_table(
        checkpoints,
        *_head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("parent_checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=True),
        sa.Column("run_id", Key(), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("checkpoint", Blob(), nullable=False),
        sa.Column("versions", LongText(), nullable=False),
        sa.Column("metadata", LongText(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint(
            *THREAD, "checkpoint_ns", "checkpoint_id", name=f"pk_{checkpoints}"
        ),
        **MYSQL_OPTIONS,
    )
    op.create_index(f"ix_{checkpoints}_run_id", checkpoints, ["run_id"])
    op.create_table(
        blobs,
        *_head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("channel", Key(), nullable=False),
        sa.Column("version", Key(VERSION_LENGTH), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", Blob(), nullable=True),
        sa.PrimaryKeyConstraint(*THREAD, "checkpoint_ns", "channel", "version", name=f"pk_{blobs}"),
        **MYSQL_OPTIONS,
    )
    op.create_table(
        writes,
        *_head(),
        sa.Column("checkpoint_ns", Key(NS_LENGTH), nullable=False),
        sa.Column("checkpoint_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("task_id", Key(CHECKPOINT_ID_LENGTH), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("channel", Key(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", Blob(), nullable=True),
        sa.Column("task_path", LongText(), nullable=False),
        sa.PrimaryKeyConstraint(
            *THREAD, "checkpoint_ns", "checkpoint_id", "task_id", "idx", name=f"pk_{writes}"
        ),
        **MYSQL_OPTIONS,
    )


def downgrade() -> None:
    p = table_prefix()
    for name in ("lg_writes", "lg_blobs", "lg_checkpoints", "lg_threads"):
        op.drop_table(f"{p}{name}")
