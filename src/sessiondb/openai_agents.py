"""A sessiondb-backed ``Session`` for the OpenAI Agents SDK.

:class:`SessiondbSession` keeps an agent's conversation history in sessiondb's event log: every
history item is one event whose ``content`` is the item dict, so one database holds the sessions
of ADK apps, OpenAI Agents apps and your own code, on SQLite, PostgreSQL or MySQL/MariaDB::

    from agents import Agent, Runner
    from sessiondb import AsyncSessionStore
    from sessiondb.openai_agents import SessiondbSession

    async with AsyncSessionStore("sqlite:///./agents.db") as store:
        session = SessiondbSession("conversation-1", store, user_id="alice")
        result = await Runner.run(agent, "Hello", session=session)

Importing this module does not import the SDK; creating a session does, and raises
:class:`ImportError` naming the extra to install when the SDK is missing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._async_store import AsyncSessionStore
from ._ids import check_id
from ._store import SessionStore
from .errors import SessionExistsError, SessionNotFoundError, StaleSessionError

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .models import Event

__all__ = ["SessiondbSession"]

INSTALL_HINT = "pip install 'sessiondb[openai-agents]'"

POP_MARKER = "openai_agents.popped_seq"
"""Metadata key of a tombstone event: its value is the seq of the item event it removes."""

TOMBSTONE_AUTHOR = "openai-agents"
"""Author of tombstone events (items are authored by their ``role`` or ``type``)."""

POP_ATTEMPTS = 64
"""How many times ``pop_item`` retries when other writers keep changing the session."""


def _load_sdk() -> Any:
    """The SDK's session-settings module, or an ImportError that says what to install."""
    try:
        from agents.memory import session_settings
    except ImportError as exc:
        raise ImportError(f"SessiondbSession needs the OpenAI Agents SDK: {INSTALL_HINT}") from exc
    return session_settings


def _author(item: Any) -> str:
    """A readable event author for an item: its ``role``, else its ``type``, else "item"."""
    if isinstance(item, dict):
        for key in ("role", "type"):
            value = item.get(key)
            if type(value) is str and 0 < len(value) <= 128 and value.isprintable():
                return value
    return "item"


def _popped_seq(event: Event) -> int | None:
    """The seq a tombstone event removes, or None if ``event`` is an item."""
    meta = event.metadata
    if meta is not None and event.author == TOMBSTONE_AUTHOR:
        seq = meta.get(POP_MARKER)
        if type(seq) is int:
            return seq
    return None


class SessiondbSession:
    """The OpenAI Agents SDK's ``Session`` protocol over one sessiondb session.

    The history is the session's event log: ``add_items`` appends one event per item (its
    ``content`` is the item dict, its ``author`` the item's ``role`` or ``type``), and
    ``get_items`` reads them back oldest first. The sessiondb session is owned by ``app_name``
    and ``user_id``; a session id that belongs to another app or user is never read or written.

    **Why tombstones.** sessiondb's event log is append-only, so ``pop_item`` cannot delete the
    newest item. It appends a *tombstone* event instead (author ``"openai-agents"``, metadata
    ``{"openai_agents.popped_seq": seq}``) that hides the item with that seq. To be atomic it
    is an optimistic compare-and-swap: it reads the session's version, finds the newest visible
    item, and appends the tombstone with ``expected_version`` set to that version. Every write
    to a session (an ``add_items``, another ``pop_item``) bumps its version, so if anything was
    written in between the append raises :class:`~sessiondb.StaleSessionError`, writes nothing,
    and the pop starts again. Two concurrent pops therefore never return (or hide) the same
    item, and a pop never hides an item it did not return. A "popped up to" marker in the
    state could not do this: after a pop, new items are appended behind the hidden one, so the
    hidden seqs are not a suffix.

    **Cost.** ``get_items(limit)`` reads the newest events with
    ``list_events(newest_first=True, limit=...)`` and skips tombstones and the items they hide,
    so it costs O(limit + pops among those items), never O(history). ``get_items()`` with no
    limit reads the whole history in one query.

    **Clearing.** ``clear_session`` deletes the sessiondb session (its events, state, title and
    labels) like the SDK's ``SQLiteSession`` deletes its rows: the data really goes. The next
    ``add_items`` creates the session again if ``create`` is True (with ``create=False`` it
    raises :class:`~sessiondb.SessionNotFoundError` until you create the session again).

    Args:
        session_id: the sessiondb session id (also the SDK's ``session_id``).
        store_or_url: an :class:`~sessiondb.AsyncSessionStore` to share (recommended: one per
            app, opened in its lifespan), or a database URL (or SQLAlchemy ``AsyncEngine``); a
            store made here belongs to this object and is closed by :meth:`close` (or
            ``async with``).
        app_name: the sessiondb app that owns the session.
        user_id: the sessiondb user that owns the session.
        create: if True, ``add_items`` creates the session when it does not exist yet; if
            False, it must have been created beforehand and ``add_items`` raises
            :class:`~sessiondb.SessionNotFoundError` otherwise.
        session_settings: the SDK's ``SessionSettings`` (or a dict of them); its ``limit`` is
            the default of ``get_items``.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store_or_url: AsyncSessionStore | str | URL | AsyncEngine,
        *,
        app_name: str = "openai-agents",
        user_id: str = "default",
        create: bool = True,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        sdk = _load_sdk()
        self.session_id = check_id(session_id, "session_id")
        self.app_name = check_id(app_name, "app_name")
        self.user_id = check_id(user_id, "user_id")
        self.create = bool(create)
        self.session_settings = (
            sdk.SessionSettings()
            if session_settings is None
            else sdk.coerce_session_settings(session_settings)
        )
        if isinstance(store_or_url, AsyncSessionStore):
            self._store = store_or_url
            self._owns_store = False
        elif isinstance(store_or_url, SessionStore):
            raise TypeError(
                "SessiondbSession is async: pass an AsyncSessionStore (or a URL), "
                "not a SessionStore"
            )
        else:
            self._store = AsyncSessionStore(store_or_url)  # checks the URL
            self._owns_store = True

    def __repr__(self) -> str:
        return (
            f"SessiondbSession({self.session_id!r}, app_name={self.app_name!r}, "
            f"user_id={self.user_id!r})"
        )

    @property
    def store(self) -> AsyncSessionStore:
        """The store this session reads and writes."""
        return self._store

    # -- the Session protocol ------------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with ``limit``, only its latest ``limit`` items.

        ``limit=None`` falls back to ``session_settings.limit`` (None there too: every item).
        A session that does not exist (or is not this app's and user's) has no items.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is None:
            if await self._store.get_session(self.app_name, self.user_id, self.session_id) is None:
                return []
            events = await self._store.list_events(
                self.session_id, newest_first=True, app_name=self.app_name, user_id=self.user_id
            )
            visible = await self._visible(events, None, None)
        else:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
            if limit < 0:
                raise ValueError(f"limit must not be negative, not {limit}")
            if limit == 0:
                return []
            newest = await self._newest_events(limit)
            if newest is None:
                return []
            visible = await self._visible(newest[0], limit, limit)
        visible.reverse()
        return [event.content for event in visible]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` to the history, all in one transaction (creating the session if
        needed and ``create`` is True)."""
        if not items:
            return
        events = [{"author": _author(item), "content": item} for item in items]
        for _ in range(3):
            await self._ensure_session()
            try:
                await self._store.append_events(
                    self.session_id, events, app_name=self.app_name, user_id=self.user_id
                )
                return
            except SessionNotFoundError:
                continue  # deleted (cleared) since the check: make it again
        raise SessionNotFoundError(
            f"session {self.session_id!r} keeps disappearing while items are added"
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item; None if there is none.

        Atomic: see the class docstring. Raises :class:`~sessiondb.StaleSessionError` only if
        other writers changed the session on each of many attempts.
        """
        for attempt in range(POP_ATTEMPTS):
            newest = await self._newest_events(8)
            if newest is None:
                return None
            events, version = newest
            found = await self._visible(events, 1, 8)
            if not found:
                return None
            item = found[0]
            try:
                await self._store.append_event(
                    self.session_id,
                    TOMBSTONE_AUTHOR,
                    None,
                    metadata={POP_MARKER: item.seq},
                    expected_version=version,
                    app_name=self.app_name,
                    user_id=self.user_id,
                )
            except SessionNotFoundError:
                return None  # cleared meanwhile: nothing left to pop
            except StaleSessionError:
                if attempt >= 2:  # spread out writers that keep colliding
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
                continue
            result: TResponseInputItem = item.content
            return result
        raise StaleSessionError(
            f"pop_item on session {self.session_id!r} lost {POP_ATTEMPTS} races with other writers"
        )

    async def clear_session(self) -> None:
        """Delete every item: the sessiondb session goes (events, state, title, labels)."""
        await self._store.delete_session(
            self.session_id, app_name=self.app_name, user_id=self.user_id
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the store if this object made it from a URL (a store passed in stays open)."""
        if self._owns_store:
            await self._store.close()

    async def __aenter__(self) -> SessiondbSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- helpers -------------------------------------------------------------------------------

    async def _ensure_session(self) -> None:
        """Make sure the session exists and is this app's and user's."""
        store, sid = self._store, self.session_id
        if await store.get_session(self.app_name, self.user_id, sid) is not None:
            return
        if not self.create:
            raise SessionNotFoundError(
                f"no session {sid!r} for app {self.app_name!r} and user {self.user_id!r} "
                "(create it first, or pass create=True)"
            )
        try:
            await store.create_session(self.app_name, self.user_id, session_id=sid)
        except SessionExistsError:
            # another writer created it first (ids are per app and user: it is ours)
            if await store.get_session(self.app_name, self.user_id, sid) is None:
                raise SessionNotFoundError(
                    f"no session {sid!r} for app {self.app_name!r} and user {self.user_id!r} "
                    "(it expired)"
                ) from None

    async def _newest_events(self, count: int) -> tuple[list[Event], int] | None:
        """The newest ``count`` events, newest first, and the session's version (read before
        them); None if the session does not exist or is not this app's and user's."""
        session = await self._store.get_session(
            self.app_name, self.user_id, self.session_id, recent_events=count
        )
        if session is None:
            return None
        return list(reversed(session.events or [])), session.version

    async def _visible(
        self, events: Sequence[Event], want: int | None, fetched: int | None
    ) -> list[Event]:
        """Walk the history newest first from ``events`` (the newest ``fetched`` events, or all
        of them if None), skipping tombstones and the items they hide, until ``want`` items
        are found (all if None). Returns them newest first; reads older pages as needed."""
        hidden: set[int] = set()
        found: list[Event] = []
        batch = list(events)
        while True:
            for event in batch:
                target = _popped_seq(event)
                if target is not None:
                    hidden.add(target)
                elif event.seq in hidden:
                    hidden.discard(event.seq)
                else:
                    found.append(event)
                    if want is not None and len(found) >= want:
                        return found
            if fetched is None or len(batch) < fetched or not batch:
                return found  # the whole history has been walked
            # want is not None here: fetch what is missing plus the hidden items still ahead
            assert want is not None
            fetched = want - len(found) + len(hidden)
            batch = await self._store.list_events(
                self.session_id, before_seq=batch[-1].seq, limit=fetched, newest_first=True,
                app_name=self.app_name, user_id=self.user_id,
            )  # fmt: skip
