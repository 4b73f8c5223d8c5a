"""sessiondb's two front ends, used through their public API only.

Updates apply the 2-key delta with ``patch_state(session_id, set=delta)`` when the store has it;
otherwise they fall back to get + merge + ``update_session_state`` and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..targets import Target, drop_prefixed, scalar, text_bytes
from ..workload import APP_NAME, CONV_USER
from .base import AsyncContender, Handle, SyncContender

PREFIX = "bench_"  # ADK and the lead's tests also use a table called "sessions"
PATCH = "patch_state(session_id, set=delta)"
FALLBACK = "fallback: get_session + dict.update + update_session_state (no patch_state yet)"


def _settings(backend: str, durability: str | None, side: str, baseline: bool = False) -> str:
    if backend == "sqlite" and durability is None and baseline:
        return "the baseline's default sqlite_durability"
    if backend == "sqlite":
        if durability == "fast":
            return "WAL + synchronous=NORMAL, autocheckpoint 1000 (sqlite_durability='fast')"
        if durability == "full":
            return "WAL + synchronous=FULL + wal_autocheckpoint=1 (sqlite_durability='full')"
        return "WAL + synchronous=NORMAL, checkpoint once writes pause (default, 'normal')"
    drivers = {
        ("postgresql", "sync"): "psycopg 3",
        ("postgresql", "async"): "asyncpg",
        ("mysql", "sync"): "PyMySQL",
        ("mysql", "async"): "aiomysql",
    }
    return f"{drivers[backend, side]}, sessiondb's pool, autocommit"


def _origin() -> str:
    import sessiondb

    return str(Path(sessiondb.__file__ or "?").parent)


RECENT = 10  # events the bot reads as context in the sessiondb-events conversation


def _events(read: Any, pair: Any) -> list[dict[str, Any]]:
    count = int(read.state.get("message_count", 0)) + 2
    return [
        {"author": "user", "content": pair[0]},
        {"author": "assistant", "content": pair[1], "state_delta": {"message_count": count}},
    ]


class _Shared:
    """What both front ends share: options, table names, stored-bytes query."""

    durability: str | None = None  # None: sessiondb's default
    conversation_variants = ("naive", "sessiondb-events")
    prefix = PREFIX
    target: Target
    backend: str

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"table_prefix": self.prefix}
        if self.backend == "sqlite" and self.durability is not None:
            options["sqlite_durability"] = self.durability
        return options

    def _drop(self) -> None:
        if self.backend != "sqlite":  # SQLite: a fresh file per contender and run
            drop_prefixed(self.target.admin_url, self.prefix)  # every table sessiondb made

    def stored_bytes(self, handle: Handle) -> dict[str, int]:
        table = f"{self.prefix}sessions"
        sql = f"SELECT {text_bytes(self.backend, 'state')} FROM {table} WHERE id = ?"
        value = scalar(self.target.admin_url, sql, (handle.id,))
        events_sql = f"SELECT event_bytes FROM {table} WHERE id = ?"
        events = scalar(self.target.admin_url, events_sql, (handle.id,))
        return {"state": int(value or 0), "events": int(events or 0)}


class SessiondbSync(_Shared, SyncContender):
    name = "sessiondb-sync"
    is_sessiondb = True

    def setup(self) -> None:
        from sessiondb import SessionStore

        self._drop()
        self.store = SessionStore(self.target.url, **self._options())
        self.store.list_sessions(APP_NAME, "setup-probe")  # creates the schema, untimed
        self._patch = getattr(self.store, "patch_state", None)
        self.update_mode = PATCH if self._patch is not None else FALLBACK
        self.settings = _settings(self.backend, self.durability, "sync", self.baseline)
        self.notes.append(f"sessiondb imported from {_origin()}")

    def create(self, user_id: str, state: dict[str, Any]) -> Handle:
        return self.store.create_session(APP_NAME, user_id, state)

    def update(self, handle: Handle, delta: dict[str, Any]) -> None:
        if self._patch is not None:
            self._patch(handle.id, set=delta)
            return
        session = self.store.get_session(APP_NAME, handle.user_id, handle.id)
        if session is None:
            raise LookupError(f"session {handle.id} vanished")
        session.state.update(delta)
        self.store.update_session_state(handle.id, session.state)

    def get(self, handle: Handle) -> Any:
        return self.store.get_session(APP_NAME, handle.user_id, handle.id)

    def list(self, user_id: str) -> Any:
        return self.store.list_sessions(APP_NAME, user_id)

    def delete(self, handle: Handle) -> None:
        self.store.delete_session(handle.id, app_name=APP_NAME, user_id=handle.user_id)

    def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        session = self.store.get_session(APP_NAME, CONV_USER, handle.id)
        if session is None:
            raise LookupError("the conversation session vanished")
        return session, session.state

    def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None:
        state = read.state
        state.update(delta)  # the naive pattern: the whole state goes back
        self.store.update_session_state(handle.id, state)

    def conv_events_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        session = self.store.get_session(APP_NAME, CONV_USER, handle.id, recent_events=RECENT)
        if session is None:
            raise LookupError("the conversation session vanished")
        return session, session.state

    def conv_events_append(self, handle: Handle, read: Any, pair: Any) -> None:
        self.store.append_events(handle.id, _events(read, pair))

    def conv_events_history(self, handle: Handle) -> list[Any]:
        return [e.content for e in self.store.list_events(handle.id)]

    def teardown(self) -> None:
        self.store.close()
        self._drop()


class SessiondbSyncFast(SessiondbSync):
    name = "sessiondb-sync-fast"
    durability = "fast"


class SessiondbSyncFull(SessiondbSync):
    name = "sessiondb-sync-full"
    durability = "full"


class SessiondbAsync(_Shared, AsyncContender):
    name = "sessiondb-async"
    is_sessiondb = True

    async def setup(self) -> None:
        from sessiondb import AsyncSessionStore

        self._drop()
        self.store = AsyncSessionStore(self.target.url, **self._options())
        await self.store.list_sessions(APP_NAME, "setup-probe")
        self._patch = getattr(self.store, "patch_state", None)
        self.update_mode = PATCH if self._patch is not None else FALLBACK
        self.settings = _settings(self.backend, self.durability, "async", self.baseline)
        self.notes.append(f"sessiondb imported from {_origin()}")

    async def create(self, user_id: str, state: dict[str, Any]) -> Handle:
        return await self.store.create_session(APP_NAME, user_id, state)

    async def update(self, handle: Handle, delta: dict[str, Any]) -> None:
        if self._patch is not None:
            await self._patch(handle.id, set=delta)
            return
        session = await self.store.get_session(APP_NAME, handle.user_id, handle.id)
        if session is None:
            raise LookupError(f"session {handle.id} vanished")
        session.state.update(delta)
        await self.store.update_session_state(handle.id, session.state)

    async def get(self, handle: Handle) -> Any:
        return await self.store.get_session(APP_NAME, handle.user_id, handle.id)

    async def list(self, user_id: str) -> Any:
        return await self.store.list_sessions(APP_NAME, user_id)

    async def delete(self, handle: Handle) -> None:
        await self.store.delete_session(handle.id, app_name=APP_NAME, user_id=handle.user_id)

    async def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        session = await self.store.get_session(APP_NAME, CONV_USER, handle.id)
        if session is None:
            raise LookupError("the conversation session vanished")
        return session, session.state

    async def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None:
        state = read.state
        state.update(delta)
        await self.store.update_session_state(handle.id, state)

    async def conv_events_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        session = await self.store.get_session(APP_NAME, CONV_USER, handle.id, recent_events=RECENT)
        if session is None:
            raise LookupError("the conversation session vanished")
        return session, session.state

    async def conv_events_append(self, handle: Handle, read: Any, pair: Any) -> None:
        await self.store.append_events(handle.id, _events(read, pair))

    async def conv_events_history(self, handle: Handle) -> list[Any]:
        return [e.content for e in await self.store.list_events(handle.id)]

    async def teardown(self) -> None:
        await self.store.close()
        self._drop()
