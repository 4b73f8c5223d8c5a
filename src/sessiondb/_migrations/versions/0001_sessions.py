"""The sessions table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import MYSQL_OPTIONS, JsonText, Key, Timestamp

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    t = f"{table_prefix()}sessions"
    op.create_table(
        t,
        sa.Column("id", Key(), nullable=False),
        sa.Column("app_name", Key(), nullable=False),
        sa.Column("user_id", Key(), nullable=False),
        sa.Column("state", JsonText(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
        sa.PrimaryKeyConstraint("id", name=f"pk_{t}"),
        **MYSQL_OPTIONS,
    )
    op.create_index(f"ix_{t}_user_updated", t, ["app_name", "user_id", "updated_at", "id"])
    op.create_index(f"ix_{t}_app_updated", t, ["app_name", "updated_at", "id"])


def downgrade() -> None:
    op.drop_table(f"{table_prefix()}sessions")
