"""No index on ``updated_at``: a session's writes can be PostgreSQL HOT updates.

Every write of a session sets ``updated_at``. While an index held that column, every write was
a non-HOT update on PostgreSQL: a new entry in each of the sessions table's indexes, the new row
version on another page, and listings wading through the dead entries left behind (issue 14).
This revision drops ``ix_sessions_user_updated`` and ``ix_sessions_app_updated``. A write then
changes no indexed column, and PostgreSQL keeps the new row version on the same page, found
through the same index entries; ``fillfactor=80`` leaves each page the room for it (it applies
to pages written from now on: ``VACUUM FULL`` repacks old ones, when convenient).

A user's listing is served by the primary key ``(app_name, user_id, id)`` and sorted by
``updated_at`` afterwards (a user has few sessions); an app's listing reads the app's sessions
through the primary key too. On SQLite and MySQL/MariaDB the writes maintain two indexes fewer.
Plain ``DROP INDEX`` and ``ALTER TABLE``: nothing that cannot run in a transaction.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

from sessiondb._migrations import table_prefix

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: room kept free in each page of the sessions table for HOT updates (PostgreSQL)
FILLFACTOR = 80


def upgrade() -> None:
    p = table_prefix()
    s = f"{p}sessions"
    op.drop_index(f"ix_{s}_user_updated", s)
    op.drop_index(f"ix_{s}_app_updated", s)
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {s} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:  # pragma: no cover - sessiondb never downgrades
    raise NotImplementedError("revision 0007 cannot be undone")
