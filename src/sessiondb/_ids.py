"""Checks for the names that key a session: app_name, user_id and session_id."""

from __future__ import annotations

import uuid
from typing import Any

from .errors import InvalidIdError

__all__ = ["MAX_ID_LENGTH", "check_id", "new_session_id"]

MAX_ID_LENGTH = 128


def check_id(value: Any, what: str) -> str:
    """Return ``value`` if it is a usable id, else raise :class:`InvalidIdError`.

    An id is a str of 1 to 128 printable characters (no control characters, no NUL).
    """
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable():
        return value
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidIdError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdError(
            f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if not value.isprintable():
        raise InvalidIdError(f"{what} {value!r} holds control or unprintable characters")
    return str(value)


def new_session_id() -> str:
    """A fresh random session id: a UUID4 string (122 random bits)."""
    return str(uuid.uuid4())
