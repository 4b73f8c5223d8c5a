"""``SessionStore``: the synchronous front end.

Generated from ``_async_store.py`` by ``tools/unasync.py``: DO NOT EDIT."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from ._engine import Durability
    from .models import Session

__all__ = ["SessionStore"]


class SessionStore:
    """Sessions in a database, with blocking calls. Safe to share between threads.

    Args:
        url: a database URL (``sqlite:///./sessions.db``, ``postgresql://...``,
            ``mysql://...``) or a SQLAlchemy ``Engine`` you built.
        table_prefix: prepended to every table name sessiondb creates.
        tz_aware: return timezone-aware UTC datetimes instead of naive local time.
        auto_migrate: create or upgrade the schema on first use; if False, a missing or old
            schema raises :class:`~sessiondb.errors.SchemaError`.
        connect_timeout: seconds to wait for a database server before giving up.
        busy_timeout: seconds SQLite waits for a lock held by another connection.
        pool_size: connections kept open (more are opened under load, up to three times this).
        sqlite_durability: ``"full"`` (default: every commit is on disk in the main file, so a
            plain file copy is a backup) or ``"fast"`` (WAL's ``synchronous=NORMAL``).
        engine_options: extra keyword arguments for SQLAlchemy's ``create_engine``.
    """

    def __init__(
        self,
        url: str | URL | Engine,
        *,
        table_prefix: str = "",
        tz_aware: bool = False,
        auto_migrate: bool = True,
        connect_timeout: float = 10.0,
        busy_timeout: float = 30.0,
        pool_size: int = 5,
        sqlite_durability: Durability = "full",
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        from ._backend import Backend, Options

        options = Options(
            table_prefix, tz_aware, auto_migrate, connect_timeout, busy_timeout, pool_size,
            sqlite_durability, engine_options,
        )  # fmt: skip
        self._backend = Backend(url, options)
        self._core = self._backend.core
        self._call = self._backend.call

    @property
    def backend(self) -> str:
        """``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB included)."""
        return self._backend.target.backend

    def create_session(
        self,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        """Create and store a session; its id is random unless ``session_id`` is given.

        Raises :class:`~sessiondb.errors.SessionExistsError` if ``session_id`` is taken.
        """
        return self._call(self._core.create_session, app_name, user_id, state, session_id)

    def get_session(self, app_name: str, user_id: str, session_id: str) -> Session | None:
        """The session, or None if it does not exist or belongs to another app or user."""
        return self._call(self._core.get_session, app_name, user_id, session_id)

    def list_sessions(self, app_name: str, user_id: str | None = None) -> list[Session]:
        """One user's sessions (every user's if ``user_id`` is None), newest update first."""
        return self._call(self._core.list_sessions, app_name, user_id)

    def update_session_state(
        self, session_id: str, state: dict[str, Any], *, expected_version: int | None = None
    ) -> int:
        """Replace the whole state and return the session's new version.

        Raises :class:`~sessiondb.errors.SessionNotFoundError` for an unknown id, and
        :class:`~sessiondb.errors.StaleSessionError` (writing nothing) if ``expected_version``
        is given and the stored version differs.
        """
        return self._call(self._core.update_session_state, session_id, state, expected_version)

    def delete_session(
        self, session_id: str, *, app_name: str | None = None, user_id: str | None = None
    ) -> bool:
        """Delete a session; True if it existed. Give app and user to delete only if they own it."""
        return self._call(self._core.delete_session, session_id, app_name, user_id)

    def clear_sessions(self, app_name: str, user_id: str | None = None) -> int:
        """Delete every session of one user (of every user if None) in an app; return the count."""
        return self._call(self._core.clear_sessions, app_name, user_id)

    def close(self) -> None:
        """Close pooled connections (an engine you passed in is left open)."""
        self._backend.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
