"""Expiry, titles and labels; indexes for created-order walks and purges.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import MYSQL_OPTIONS, JsonText, Key, Timestamp

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = table_prefix()
    t = f"{p}sessions"
    with op.batch_alter_table(t) as batch:
        batch.add_column(sa.Column("expires_at", Timestamp(), nullable=True))
        batch.add_column(sa.Column("ttl_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("title", sa.String(256), nullable=True))
        batch.add_column(sa.Column("labels", JsonText(), nullable=True))
    op.create_index(f"ix_{t}_created", t, ["created_at", "id"])
    op.create_index(
        f"ix_{t}_expires",
        t,
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_table(
        f"{p}session_labels",
        sa.Column("session_id", Key(), nullable=False),
        sa.Column("label", Key(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "label", name=f"pk_{p}session_labels"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{t}.id"],
            name=f"fk_{p}session_labels_session_id_{t}",
            ondelete="CASCADE",
        ),
        **MYSQL_OPTIONS,
    )
    op.create_index(f"ix_{p}session_labels_label", f"{p}session_labels", ["label", "session_id"])


def downgrade() -> None:
    p = table_prefix()
    t = f"{p}sessions"
    op.drop_table(f"{p}session_labels")
    op.drop_index(f"ix_{t}_expires", t)
    op.drop_index(f"ix_{t}_created", t)
    with op.batch_alter_table(t) as batch:
        for name in ("labels", "title", "ttl_seconds", "expires_at"):
            batch.drop_column(name)
