"""Event history and scoped (app:/user:) state.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import MYSQL_OPTIONS, JsonText, Key, Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = table_prefix()
    with op.batch_alter_table(f"{p}sessions") as batch:
        for name in ("last_seq", "event_count", "event_bytes"):
            batch.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
            )
    op.create_table(
        f"{p}events",
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("author", Key(), nullable=False),
        sa.Column("content", JsonText(), nullable=False),
        sa.Column("state_delta", JsonText(), nullable=True),
        sa.Column("invocation_id", Key(), nullable=True),
        sa.Column("meta", JsonText(), nullable=True),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", name=f"pk_{p}events"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{p}sessions.id"],
            name=f"fk_{p}events_session_id_{p}sessions",
            ondelete="CASCADE",
        ),
        **MYSQL_OPTIONS,
    )
    op.create_table(
        f"{p}app_states",
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("app_name", name=f"pk_{p}app_states"),
        **MYSQL_OPTIONS,
    )
    op.create_table(
        f"{p}user_states",
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("app_name", "user_id", name=f"pk_{p}user_states"),
        **MYSQL_OPTIONS,
    )


def downgrade() -> None:
    p = table_prefix()
    op.drop_table(f"{p}user_states")
    op.drop_table(f"{p}app_states")
    op.drop_table(f"{p}events")
    with op.batch_alter_table(f"{p}sessions") as batch:
        for name in ("event_bytes", "event_count", "last_seq"):
            batch.drop_column(name)
