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
import contextlib
from collections.abc import Callable, Coroutine, Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._async_store import AsyncSessionStore
from ._ids import check_id
from ._store import SessionStore
from .errors import SessionExistsError, SessionNotFoundError

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings
    from agents.run_context import RunContextWrapper
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .models import Event

__all__ = ["SessiondbSession"]

T = TypeVar("T")

Owner = tuple[str, str]
"""An (app_name, user_id) pair: whose sessiondb session an operation reads or writes."""

INSTALL_HINT = "pip install 'sessiondb[openai-agents]'"

POP_MARKER = "openai_agents.popped_seq"
"""Metadata key of a (legacy) tombstone event: its value is the seq of the item it hides."""

TOMBSTONE_AUTHOR = "openai-agents"
"""Author of (legacy) tombstone events (items are authored by their ``role`` or ``type``)."""


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
    """The seq a (legacy) tombstone event hides, or None if ``event`` is an item."""
    meta = event.metadata
    if meta is not None and event.author == TOMBSTONE_AUTHOR:
        seq = meta.get(POP_MARKER)
        if type(seq) is int:
            return seq
    return None


def _is_visible(event: Event, hidden: set[int]) -> bool:
    """One step of a walk newest first: True for an item no tombstone hides. A tombstone adds
    the seq it removes to ``hidden``; a hidden item is taken out of it."""
    target = _popped_seq(event)
    if target is not None:
        hidden.add(target)
        return False
    if event.seq in hidden:
        hidden.discard(event.seq)
        return False
    return True


def _newest_item(events: Sequence[Event]) -> Event | None:
    """The newest visible item of ``events`` (the newest events of a history, newest first):
    tombstones and the items they hide are skipped. None if there is none."""
    hidden: set[int] = set()
    return next((event for event in events if _is_visible(event, hidden)), None)


class _ReachesAnItem:
    """``pop_item``'s ``until``: true once the events popped (newest first) hold an item that
    no tombstone among them hides; without legacy tombstones the first event is one.

    It walks only the events it has not seen yet (O(n) in all, for n popped events); a call
    with no more events than it has seen means the store ran the operation again, from the
    start, so it starts over too."""

    __slots__ = ("hidden", "seen")

    def __init__(self) -> None:
        self.hidden: set[int] = set()
        self.seen = 0

    def __call__(self, popped: list[Event]) -> bool:
        if len(popped) <= self.seen:
            self.hidden.clear()
            self.seen = 0
        for event in popped[self.seen :]:
            self.seen += 1
            if _is_visible(event, self.hidden):
                return True
        return False


class Closing(Coroutine[Any, Any, None]):
    """What :meth:`SessiondbSession.close` returns: awaiting it waits for the close to finish.

    Not awaiting it is fine too (it is no native coroutine, so nothing warns): without a running
    event loop the close has finished already; inside one it finishes as soon as the loop runs
    on. It is a :class:`collections.abc.Coroutine`, so ``asyncio.run(session.close())`` works.
    """

    __slots__ = ("_steps", "_task")

    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self._task = task
        self._steps: Generator[Any, None, None] | None = None

    def __await__(self) -> Generator[Any, None, None]:
        if self._task is not None:
            yield from self._task.__await__()

    def _driven(self) -> Generator[Any, None, None]:
        if self._steps is None:
            self._steps = self.__await__()
        return self._steps

    def send(self, value: Any) -> Any:
        """Coroutine protocol: run the wait one step."""
        return self._driven().send(value)

    def throw(self, *args: Any) -> Any:
        """Coroutine protocol: raise inside the wait."""
        return self._driven().throw(*args)

    def close(self) -> None:
        """Coroutine protocol: stop waiting (the close itself goes on)."""
        if self._steps is not None:
            self._steps.close()

    def done(self) -> bool:
        """True once the close has finished."""
        return self._task is None or self._task.done()


async def _to_the_end(write: Coroutine[Any, Any, T]) -> T:
    """Run ``write`` (a change to the history) to its end even if the caller is cancelled
    meanwhile; a cancellation is raised only once the write has ended, so when the caller sees
    it the database holds the write's outcome (as the SDK's own sessions do).

    ``write`` runs as a task of its own behind :func:`asyncio.shield` (the loop shutting down
    still cancels it: then it is all or nothing). The cancellation wins over the write's own
    error, which becomes its ``__context__``.
    """
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        while not task.done():  # the caller was cancelled, not the write: let it end
            with contextlib.suppress(asyncio.CancelledError):  # each further cancel() too
                await asyncio.wait((task,))
        if not task.cancelled() and cancelled.__context__ is None:
            cancelled.__context__ = task.exception()
        raise


def _retrieve(task: asyncio.Task[None]) -> None:
    """A close nobody awaits must not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


class SessiondbSession:
    """The OpenAI Agents SDK's ``Session`` protocol over one sessiondb session.

    The history is the session's event log: ``add_items`` appends one event per item (its
    ``content`` is the item dict, its ``author`` the item's ``role`` or ``type``), and
    ``get_items`` reads them back oldest first. The sessiondb session is owned by ``app_name``
    and ``user_id``; session ids are per app and user, so another user's session with the same
    id is another session, never read or written here.

    **Popping.** ``pop_item`` deletes the newest item's event with
    :meth:`~sessiondb.AsyncSessionStore.pop_events`: one transaction under the session's row
    lock, so two concurrent pops never return the same item and an ``add_items`` is never
    lost; the event count and bytes drop, and the history does not grow with add/pop cycles.

    **Legacy tombstones.** Earlier sessiondb releases popped by appending a *tombstone* event
    (author ``"openai-agents"``, metadata ``{"openai_agents.popped_seq": seq}``) that hid the
    item with that seq. Sessions written then still hold them: ``get_items`` skips them and
    the items they hide, and a ``pop_item`` that reaches them deletes them with those items,
    in the same transaction (``pop_events``' ``until``), so an old session shrinks back.

    **Cost.** ``get_items(limit)`` reads the newest ``limit`` events (plus, in a legacy
    session, the tombstones and hidden items among them), never O(history). ``get_items()``
    with no limit reads the whole history in one query.

    **Clearing.** ``clear_session`` deletes the sessiondb session (its events, state, title and
    labels) like the SDK's ``SQLiteSession`` deletes its rows: the data really goes. The next
    ``add_items`` creates the session again if ``create`` is True (with ``create=False`` it
    raises :class:`~sessiondb.SessionNotFoundError` until you create the session again).

    **Run context.** The four protocol methods take the SDK's optional ``wrapper`` keyword (the
    run's ``RunContextWrapper``), so the SDK passes it. With ``user_id_from``, a call that gets a
    run context works on the session of the user ``user_id_from(wrapper)`` names: one session
    object serves every user of an app. A call without one (your own code, or a wrapping session
    that does not forward it) uses ``user_id``.

    **Loops, threads, cancellation.** One object may be used from any event loop and thread
    at once (``Runner.run_sync`` from several threads included): it holds no loop-bound state,
    and the store keeps one connection pool per loop. A cancelled ``add_items``, ``pop_item``
    or ``clear_session`` that has started runs to its end before the ``CancelledError`` is
    raised, as in the SDK's own sessions: the caller then sees its outcome in the database.

    Args:
        session_id: the sessiondb session id (also the SDK's ``session_id``).
        store_or_url: an :class:`~sessiondb.AsyncSessionStore` to share (recommended: one per
            app, opened in its lifespan), or a database URL (or SQLAlchemy ``AsyncEngine``); a
            store made here belongs to this object and is closed by :meth:`close`,
            :meth:`aclose` or ``async with``.
        app_name: the sessiondb app that owns the session.
        user_id: the sessiondb user that owns the session (when ``user_id_from`` names none).
        create: if True, ``add_items`` creates the session when it does not exist yet; if
            False, it must have been created beforehand and ``add_items`` raises
            :class:`~sessiondb.SessionNotFoundError` otherwise.
        session_settings: the SDK's ``SessionSettings`` (or a dict of them); its ``limit`` is
            the default of ``get_items``.
        user_id_from: a function of the run context (``RunContextWrapper``) returning the user
            id to use for that run, e.g. ``lambda w: w.context.user_id``; it must return a
            valid id (else :class:`~sessiondb.InvalidIdError`, and nothing is read or written).
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
        user_id_from: Callable[[RunContextWrapper[Any]], str] | None = None,
    ) -> None:
        sdk = _load_sdk()
        self.session_id = check_id(session_id, "session_id")
        self.app_name = check_id(app_name, "app_name")
        self.user_id = check_id(user_id, "user_id")
        self.create = bool(create)
        if user_id_from is not None and not callable(user_id_from):
            raise TypeError("user_id_from must be a function of the run context, or None")
        self.user_id_from = user_id_from
        self.session_settings = (
            sdk.SessionSettings()
            if session_settings is None
            else sdk.coerce_session_settings(session_settings)
        )
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
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

    def owner(self, wrapper: RunContextWrapper[Any] | None = None) -> Owner:
        """The (app_name, user_id) whose session a call with this run context works on."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if wrapper is None or self.user_id_from is None:
            return self.app_name, self.user_id
        return self.app_name, check_id(self.user_id_from(wrapper), "user_id (user_id_from)")

    # -- the Session protocol ------------------------------------------------------------------

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The history, oldest first; with ``limit``, only its latest ``limit`` items.

        ``limit=None`` falls back to ``session_settings.limit`` (None there too: every item).
        A session that does not exist (or is another app's or user's) has no items.
        """
        owner = self.owner(wrapper)
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is None:
            app, user = owner
            if await self._store.get_session(app, user, self.session_id) is None:
                return []
            events = await self._store.list_events(
                self.session_id, newest_first=True, app_name=app, user_id=user
            )
            visible = await self._visible(owner, events, None, None)
        else:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
            if limit < 0:
                raise ValueError(f"limit must not be negative, not {limit}")
            if limit == 0:
                return []
            newest = await self._newest_events(owner, limit)
            if newest is None:
                return []
            visible = await self._visible(owner, newest[0], limit, limit)
        visible.reverse()
        return [event.content for event in visible]

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append ``items`` to the history, all in one transaction (creating the session if
        needed and ``create`` is True)."""
        owner = self.owner(wrapper)
        if not items:
            return
        events = [{"author": _author(item), "content": item} for item in items]
        await _to_the_end(self._append(owner, events))

    async def _append(self, owner: Owner, events: list[dict[str, Any]]) -> None:
        """``add_items``' write: append ``events``, creating the session when needed."""
        app, user = owner
        for _ in range(3):
            await self._ensure_session(owner)
            try:
                await self._store.append_events(self.session_id, events, app_name=app, user_id=user)
                return
            except SessionNotFoundError:
                continue  # deleted (cleared) since the check: make it again
        raise SessionNotFoundError(
            f"session {self.session_id!r} keeps disappearing while items are added"
        )

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item; None if there is none.

        One ``pop_events`` call: the item's event is deleted, in one transaction (see the
        class docstring on legacy tombstones).
        """
        app, user = self.owner(wrapper)
        try:
            popped = await _to_the_end(
                self._store.pop_events(
                    self.session_id, until=_ReachesAnItem(), app_name=app, user_id=user
                )
            )
        except SessionNotFoundError:
            return None  # never created, cleared, or another user's: nothing to pop
        item = _newest_item(popped)
        if item is None:
            return None
        result: TResponseInputItem = item.content
        return result

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete every item: the sessiondb session goes (events, state, title, labels)."""
        app, user = self.owner(wrapper)
        await _to_the_end(self._store.delete_session(self.session_id, app_name=app, user_id=user))

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> Closing:
        """Close the store if this object made it from a URL (a store passed in stays open).

        Then the session is closed: its methods raise :class:`RuntimeError` (so a forgotten
        session cannot open a new pool that nobody closes). Closing twice is fine.

        Works called plainly, as the SDK's ``SQLiteSession.close()`` is, and awaited. Without
        a running event loop in this thread the store is closed when ``close()`` returns.
        Inside a running loop, closing needs that loop: ``close()`` starts it, and awaiting its
        result waits for it (``await session.close()``, or use :meth:`aclose`); not awaited, it
        finishes as soon as the loop runs on (at the latest when the loop shuts down).
        """
        self._closed = True
        if not self._owns_store:
            return Closing(None)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            private = asyncio.new_event_loop()  # the thread's own loop (if any) is left alone
            try:
                private.run_until_complete(self._store.close())
            finally:
                try:
                    private.run_until_complete(private.shutdown_asyncgens())
                finally:
                    private.close()
            return Closing(None)
        task = loop.create_task(self._store.close())
        self._closing.add(task)  # a task nobody holds may be collected before it ends
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(_retrieve)
        return Closing(task)

    async def aclose(self) -> None:
        """Close the store if this object made it from a URL, and wait until it is closed."""
        self._closed = True
        if self._owns_store:
            await self._store.close()

    async def __aenter__(self) -> SessiondbSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- helpers -------------------------------------------------------------------------------

    async def _ensure_session(self, owner: Owner) -> None:
        """Make sure the owner's session exists (creating it if ``create`` is True)."""
        store, sid = self._store, self.session_id
        app, user = owner
        if await store.get_session(app, user, sid) is not None:
            return
        if not self.create:
            raise SessionNotFoundError(
                f"no session {sid!r} for app {app!r} and user {user!r} "
                "(create it first, or pass create=True)"
            )
        try:
            await store.create_session(app, user, session_id=sid)
        except SessionExistsError:
            # another writer created it first (ids are per app and user: it is ours)
            if await store.get_session(app, user, sid) is None:
                raise SessionNotFoundError(
                    f"no session {sid!r} for app {app!r} and user {user!r} (it expired)"
                ) from None

    async def _newest_events(self, owner: Owner, count: int) -> tuple[list[Event], int] | None:
        """The newest ``count`` events, newest first, and the session's version (read before
        them); None if the owner has no such session."""
        app, user = owner
        session = await self._store.get_session(app, user, self.session_id, recent_events=count)
        if session is None:
            return None
        return list(reversed(session.events or [])), session.version

    async def _visible(
        self, owner: Owner, events: Sequence[Event], want: int | None, fetched: int | None
    ) -> list[Event]:
        """Walk the history newest first from ``events`` (the newest ``fetched`` events, or all
        of them if None), skipping tombstones and the items they hide, until ``want`` items
        are found (all if None). Returns them newest first; reads older pages as needed."""
        app, user = owner
        hidden: set[int] = set()
        found: list[Event] = []
        batch = list(events)
        while True:
            for event in batch:
                if _is_visible(event, hidden):
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
                app_name=app, user_id=user,
            )  # fmt: skip
