"""Opaque keyset cursors for ``list_sessions(limit=..., cursor=...)``."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from .errors import InvalidCursorError

__all__ = ["decode", "encode"]


def encode(order: str, at: object, session_id: str) -> str:
    """A cursor pointing after the row with sort key ``at`` (naive UTC) and ``session_id``."""
    text = at if isinstance(at, str) else at.isoformat(" ", "microseconds")  # type: ignore[attr-defined]
    raw = json.dumps([order, text, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, order: str) -> tuple[datetime, str]:
    """The (sort key, id) in ``cursor``; raise :class:`InvalidCursorError` if it is not ours."""
    if not isinstance(cursor, str):
        raise InvalidCursorError(
            f"a cursor is the str a listing returned as next_cursor, not {type(cursor).__name__}"
        )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, at, session_id = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCursorError(f"not a sessiondb cursor: {cursor[:40]!r}") from exc
    if not isinstance(kind, str) or not isinstance(session_id, str) or kind != order:
        raise InvalidCursorError(
            f"this cursor belongs to a listing in {kind!r} order, not {order!r}"
        )
    if not session_id.isprintable() or when.tzinfo is not None:
        raise InvalidCursorError(f"not a sessiondb cursor: {cursor[:40]!r}")
    return when, session_id
