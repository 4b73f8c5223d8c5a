"""Event ids: an optional idempotency key per event, unique within its session.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sessiondb._migrations import table_prefix
from sessiondb._schema import Key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = table_prefix()
    t = f"{p}events"
    with op.batch_alter_table(t) as batch:
        batch.add_column(sa.Column("event_id", Key(), nullable=True))
    # NULLs never collide: events appended without an id are not constrained
    op.create_index(f"ix_{t}_session_id_event_id", t, ["session_id", "event_id"], unique=True)


def downgrade() -> None:
    p = table_prefix()
    t = f"{p}events"
    op.drop_index(f"ix_{t}_session_id_event_id", t)
    with op.batch_alter_table(t) as batch:
        batch.drop_column("event_id")
