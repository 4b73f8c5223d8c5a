"""SQLite's online backup: a consistent copy of the whole database file while others write."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._runner import Cx

__all__ = ["backup"]


def backup(cx: Cx, *, path: str) -> None:
    """Copy the SQLite database of ``cx`` into the file ``path`` (replacing its content)."""
    cx.connect()
    try:
        target = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise InvalidArgumentError(f"cannot write a backup to {path!r}: {exc}") from exc
    try:
        cx.driver_connection().backup(target)
    except sqlite3.OperationalError as exc:
        if "backup" in str(exc) or not str(exc):
            raise
        raise InvalidArgumentError(f"cannot write a backup to {path!r}: {exc}") from exc
    finally:
        target.close()
