"""Direct reads of sessiondb's tables, past the store (a helper module: it holds no tests)."""

from __future__ import annotations

import sqlalchemy as sa

from sessiondb._urls import resolve_url

_EVENTS = sa.text("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE session_id = :s")


def stored_events(url: str, session_id: str) -> tuple[int, int]:
    """(rows, total size) of the events of every session with this id, as the events table
    (unprefixed) holds them."""
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            count, size = conn.execute(
                sa.text(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE session_id = :s"
                ),
                {"s": session_id},
            ).one()
    finally:
        engine.dispose()
    return int(count), int(size)
