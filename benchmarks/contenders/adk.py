"""Google ADK's ``DatabaseSessionService`` with its defaults, used the ADK way.

Updates go through ``append_event`` with a ``state_delta`` on the ``Session`` returned by
``create_session`` (kept fresh by the previous append); the ``Event`` is built inside the timing.
ADK gets a database of its own on servers (it wants a table called ``sessions`` too).
"""

from __future__ import annotations

from typing import Any

from ..targets import (
    Target,
    drop_tables,
    scalar,
    sqlite_path,
    text_bytes,
    with_database,
    with_driver,
)
from ..workload import APP_NAME, CONV_USER
from .base import AsyncContender, Handle

TABLES = ["events", "sessions", "app_states", "user_states", "adk_internal_metadata"]
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql"}


def adk_version() -> str:
    from importlib.metadata import version

    return version("google-adk")


class Adk(AsyncContender):
    name = "adk"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        url, admin = target.url, target.admin_url
        if target.backend == "sqlite":
            self.url = f"sqlite+aiosqlite:///{sqlite_path(url)}"
        else:
            if target.adk_database:
                url = with_database(url, target.adk_database)
                admin = with_database(admin, target.adk_database)
            else:
                self.notes.append("ADK shares the main database (its tables are dropped)")
            driver = _ASYNC_DRIVERS[target.backend]
            self.url = with_driver(url, f"{target.backend}+{driver}")
        self.admin_url = admin
        self._serial = 0

    def _drop(self) -> None:
        if self.backend != "sqlite":
            drop_tables(self.admin_url, TABLES)

    async def setup(self) -> None:
        from google.adk.events import Event, EventActions
        from google.adk.sessions import DatabaseSessionService

        self._event = Event
        self._actions = EventActions
        self._drop()
        self.svc = DatabaseSessionService(self.url)
        await self.svc.prepare_tables()
        driver = self.url.split("://", 1)[0]
        self.settings = f"google-adk {adk_version()}, {driver}, ADK defaults"
        if self.backend == "sqlite":
            self.settings += " (journal_mode=DELETE, synchronous=FULL)"
        self.update_mode = "append_event(session, Event(actions=EventActions(state_delta)))"

    def _new_event(self, delta: dict[str, Any]) -> Any:
        self._serial += 1
        return self._event(
            invocation_id=f"bench-{self._serial}",
            author="bench",
            actions=self._actions(state_delta=delta),
        )

    async def create(self, user_id: str, state: dict[str, Any]) -> Handle:
        return await self.svc.create_session(app_name=APP_NAME, user_id=user_id, state=state)

    async def update(self, handle: Handle, delta: dict[str, Any]) -> None:
        await self.svc.append_event(handle, self._new_event(delta))

    async def get(self, handle: Handle) -> Any:
        return await self.svc.get_session(
            app_name=APP_NAME, user_id=handle.user_id, session_id=handle.id
        )

    async def list(self, user_id: str) -> Any:
        return await self.svc.list_sessions(app_name=APP_NAME, user_id=user_id)

    def count_of(self, listed: Any) -> int:
        return len(listed.sessions)

    async def delete(self, handle: Handle) -> None:
        await self.svc.delete_session(
            app_name=APP_NAME, user_id=handle.user_id, session_id=handle.id
        )

    async def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        session = await self.svc.get_session(
            app_name=APP_NAME, user_id=CONV_USER, session_id=handle.id
        )
        if session is None:
            raise LookupError("the conversation session vanished")
        return session, session.state

    async def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None:
        await self.svc.append_event(read, self._new_event(delta))

    def stored_bytes(self, handle: Handle) -> dict[str, int]:
        url = self.admin_url
        where = "app_name = ? AND user_id = ?"
        state = scalar(
            url,
            f"SELECT {text_bytes(self.backend, 'state')} FROM sessions WHERE id = ? AND {where}",
            (handle.id, APP_NAME, CONV_USER),
        )
        events = scalar(
            url,
            f"SELECT SUM({text_bytes(self.backend, 'event_data')}) FROM events "
            f"WHERE session_id = ? AND {where}",
            (handle.id, APP_NAME, CONV_USER),
        )
        return {"state": int(state or 0), "events": int(events or 0)}

    async def teardown(self) -> None:
        await self.svc.close()
        self._drop()
