"""Opaque keyset cursors for ``list_sessions(limit=..., cursor=...)``."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from .errors import InvalidCursorError

__all__ = ["decode", "encode"]


def encode(order: str, at: object, session_id: str, owner: tuple[str, str] | None = None) -> str:
    """A cursor pointing after the row with sort key ``at`` (naive UTC) and ``session_id``,
    and ``owner`` (app, user) in listings of several users, where ids repeat."""
    text = at if isinstance(at, str) else at.isoformat(" ", "microseconds")  # type: ignore[attr-defined]
    fields: list[str] = [order, text, session_id]
    if owner is not None:
        fields += owner
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, order: str) -> tuple[datetime, str, tuple[str, str] | None]:
    """The (sort key, id, owner or None) in ``cursor``; raise :class:`InvalidCursorError` if
    it is not ours."""
    if not isinstance(cursor, str):
        raise InvalidCursorError(
            f"a cursor is the str a listing returned as next_cursor, not {type(cursor).__name__}"
        )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, at, session_id, *owner = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCursorError(f"not a sessiondb cursor: {cursor[:40]!r}") from exc
    if not isinstance(kind, str) or not isinstance(session_id, str) or kind != order:
        raise InvalidCursorError(
            f"this cursor belongs to a listing in {kind!r} order, not {order!r}"
        )
    if not session_id.isprintable() or when.tzinfo is not None:
        raise InvalidCursorError(f"not a sessiondb cursor: {cursor[:40]!r}")
    if not owner:
        return when, session_id, None
    if len(owner) != 2 or not all(isinstance(v, str) and v.isprintable() for v in owner):
        raise InvalidCursorError(f"not a sessiondb cursor: {cursor[:40]!r}")
    return when, session_id, (owner[0], owner[1])
