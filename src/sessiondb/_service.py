"""``DatabaseSessionService``: the guide's API, as a thin façade over ``SessionStore``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._store import SessionStore

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from .models import Session

__all__ = ["DatabaseSessionService"]

T = TypeVar("T")


class DatabaseSessionService:
    """The session service of the beginner's guide, backed by a real database.

    ``create_session`` and ``update_session_state`` are coroutines and the other methods are
    plain calls, exactly as in the guide. The coroutines run the synchronous core in the event
    loop's executor, so one service made at module level works across any number of
    ``asyncio.run()`` calls. For an all-async or all-sync API use
    :class:`~sessiondb.AsyncSessionStore` or :class:`~sessiondb.SessionStore`.

    Args:
        db_url: a database URL, for example ``"sqlite:///./my_agent_data.db"``,
            ``"postgresql://user:password@localhost:5432/db"``, ``"mysql://..."``, or a
            SQLAlchemy ``Engine``.
        **options: the options of :class:`~sessiondb.SessionStore` (``tz_aware``,
            ``table_prefix``, ``sqlite_durability``, ...).

    On SQLite the database file and its tables are made here, at construction, as the guide
    says; PostgreSQL and MySQL are first contacted by the first call.
    """

    def __init__(self, db_url: str | URL | Engine, **options: Any) -> None:
        self.store = SessionStore(db_url, **options)
        """The synchronous store underneath, for everything beyond the guide."""
        if self.store.backend == "sqlite":
            # the guide: "The database file will be created automatically" by this line; a
            # server is not contacted before the first call
            self.store._backend.ensure_schema()

    async def _off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        # the caller's context (its current span) goes along to the executor's thread
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(None, call)

    async def create_session(
        self,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session and store it at once; returns it with its new id."""
        return await self._off_loop(
            self.store.create_session, app_name, user_id, state, session_id=session_id
        )

    def list_sessions(self, app_name: str, user_id: str | None = None) -> list[Session]:
        """A user's sessions (every user's if ``user_id`` is None), most recently updated first."""
        return self.store.list_sessions(app_name, user_id)

    def get_session(self, app_name: str, user_id: str, session_id: str) -> Session | None:
        """The session, or None if there is none with that id for this app and user."""
        return self.store.get_session(app_name, user_id, session_id)

    async def update_session_state(
        self,
        session_id: str,
        state: dict[str, Any],
        *,
        expected_version: int | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """Replace the session's whole state; returns its new version.

        Session ids are per app and user: when several users have a session with this id,
        pass ``app_name`` and ``user_id`` (else :class:`~sessiondb.AmbiguousSessionError`).
        """
        return await self._off_loop(
            self.store.update_session_state, session_id, state,
            expected_version=expected_version, app_name=app_name, user_id=user_id,
        )  # fmt: skip

    def delete_session(
        self, session_id: str, app_name: str | None = None, user_id: str | None = None
    ) -> bool:
        """Delete one session; True if it existed (give app and user when several users have
        a session with this id)."""
        return self.store.delete_session(session_id, app_name=app_name, user_id=user_id)

    def clear_sessions(self, app_name: str, user_id: str | None = None) -> int:
        """Delete every session of a user in an app (of all users if None); returns the count."""
        return self.store.clear_sessions(app_name, user_id)

    def close(self) -> None:
        """Release pooled connections and files."""
        self.store.close()

    def __enter__(self) -> DatabaseSessionService:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
