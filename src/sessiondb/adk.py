"""Google ADK integration: :class:`SessiondbSessionService`, an ADK session service on sessiondb.

Use it wherever ADK takes a ``BaseSessionService``::

    from google.adk.runners import Runner
    from sessiondb.adk import SessiondbSessionService

    runner = Runner(
        agent=agent,
        app_name="my_app",
        session_service=SessiondbSessionService("sqlite:///./sessions.db"),
    )

Every sessiondb URL works (SQLite, PostgreSQL, MySQL/MariaDB). ADK's semantics are kept:
``app:`` and ``user:`` keys are shared between sessions, ``temp:`` keys live only in the
in-memory session of the running invocation, partial events are not stored, and a writer
holding an out-of-date session gets ADK's ``StaleSessionError``.

This module needs google-adk (``pip install 'sessiondb[adk]'``); ``import sessiondb`` never
imports it.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

try:
    from google.adk.errors import StaleSessionError as AdkStaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.input_validation_error import InputValidationError
    from google.adk.errors.session_not_found_error import (
        SessionNotFoundError as AdkSessionNotFoundError,
    )
    from google.adk.events.event import Event as AdkEvent
    from google.adk.events.event_actions import EventActions
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session as AdkSession
    from google.genai import types as genai_types
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "sessiondb.adk needs Google's Agent Development Kit: pip install 'sessiondb[adk]'"
    ) from exc

from ._adk_events import Builder
from ._async_store import AsyncSessionStore
from ._ids import MAX_ID_LENGTH
from ._urls import in_memory_sqlite
from .errors import (
    InvalidArgumentError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
)
from .models import Event as StoredEvent
from .models import Session as StoredSession

__all__ = [
    "SCHEMES",
    "WRITTEN_BY",
    "SessiondbSessionService",
    "event_record",
    "register_adk_schemes",
    "to_adk_event",
]

logger = logging.getLogger(__name__)

STALE_MESSAGE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
"""The message of ADK's ``StaleSessionError`` (the same as ADK's DatabaseSessionService)."""

_MARKER = "sessiondb:"
"""A session's ``_storage_update_marker``: ``sessiondb:<version>:<last seq>``, the stored
version it reflects and the seq of the last event it knows ("" if unknown)."""

SCHEMES = ("sessiondb+sqlite", "sessiondb+postgresql", "sessiondb+mysql", "sessiondb+mariadb")
"""The URI schemes of ``adk web --session_service_uri``: ``sessiondb+`` and a sessiondb URL."""

_SCHEME_PREFIX = "sessiondb+"
#: ``recent_events`` asking for a whole history (a LIMIT every backend takes)
_ALL_EVENTS = 2**31 - 1


def database_url(uri: str) -> str:
    """The sessiondb URL of an ADK service URI: ``sessiondb+postgresql://h/db`` becomes
    ``postgresql://h/db`` (a URI without the prefix is returned as it is)."""
    return uri[len(_SCHEME_PREFIX) :] if uri.startswith(_SCHEME_PREFIX) else uri


def _store_parameters() -> frozenset[str]:
    """The keyword options :class:`AsyncSessionStore` takes."""
    params = inspect.signature(AsyncSessionStore.__init__).parameters
    return frozenset(name for name, p in params.items() if p.kind is p.KEYWORD_ONLY)


def _lookup_id(session_id: str) -> str:
    """A session id as ADK looks it up: surrounding whitespace removed (a non-str is left for
    the id check to refuse)."""
    return session_id.strip() if isinstance(session_id, str) else session_id


@contextmanager
def _adk_errors() -> Iterator[None]:
    """sessiondb's errors as ADK's own classes, where ADK has one (the cause is kept)."""
    try:
        yield
    except InvalidArgumentError as exc:  # a bad id or argument: ADK's ValueError
        raise InputValidationError(str(exc)) from exc
    except SessionExistsError as exc:
        raise AlreadyExistsError(str(exc)) from exc
    except StaleSessionError as exc:
        raise AdkStaleSessionError(STALE_MESSAGE) from exc
    except SessionNotFoundError as exc:
        raise AdkSessionNotFoundError(str(exc)) from exc


def _json_safe_state(state: dict[str, Any]) -> dict[str, Any]:
    """State as JSON values, the way ADK's database service stores it.

    Rich values (datetimes, pydantic models) are converted faithfully; a value JSON has no
    form for (a callable) is stored as its ``repr``, with a warning.
    """
    try:
        safe: dict[str, Any] = to_jsonable_python(state)
    except Exception:
        logger.warning(
            "session state holds values that are not JSON-serializable; they are stored as "
            "their string representation",
            exc_info=True,
        )
        safe = to_jsonable_python(state, serialize_unknown=True)
    return safe


def _column_id(value: str | None) -> str | None:
    """``value`` if sessiondb can store it in an id column (1-128 printable chars), else None.

    The event's full JSON keeps the exact value either way; the column is for queries.
    """
    if value and len(value) <= MAX_ID_LENGTH and value.isprintable():
        return value
    return None


def _epoch(when: datetime) -> float:
    """Seconds since the epoch; a naive datetime is local time (sessiondb's default)."""
    return when.timestamp()


def _versions_tag() -> str | None:
    """What wrote an event's JSON: the versions of the libraries whose models it dumps (None
    if one is not installed as a distribution: then every event is validated)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "/".join(version(d) for d in ("google-adk", "google-genai", "pydantic"))
    except PackageNotFoundError:
        return None


#: The ``metadata`` key tagging an event's content as ``Event.model_dump(mode="json")`` of the
#: library versions in its value (see :func:`to_adk_event`).
WRITTEN_BY = "sessiondb.adk"
_TAG = _versions_tag()
_BUILDER = Builder()


def event_record(event: AdkEvent) -> dict[str, Any]:
    """The sessiondb event fields (for ``append_events``/``import_records``) of an ADK event.

    ``content`` is the whole event as JSON, so :func:`to_adk_event` rebuilds an equal one;
    ``state_delta`` is the event's (JSON-safe) state delta, applied atomically with the append;
    ``metadata`` tags the content as dumped by this module, with the library versions.
    """
    content = event.model_dump(mode="json", exclude_none=True)
    actions = content.get("actions")
    delta = actions.get("state_delta") if isinstance(actions, dict) else None
    return {
        "author": _column_id(event.author) or "unknown",
        "content": content,
        "state_delta": delta or None,
        "invocation_id": _column_id(event.invocation_id),
        # the idempotency key: a retried append never stores the event twice
        "event_id": _column_id(event.id),
        "metadata": {WRITTEN_BY: _TAG} if _TAG is not None else None,
    }


def to_adk_event(stored: StoredEvent) -> AdkEvent:
    """Rebuild an ADK ``Event`` from a stored sessiondb event.

    Events written by this module (or imported from ADK) come back equal to the original.
    Those it wrote with the same versions of ADK, google-genai and pydantic (tagged in the
    event's ``metadata``) are rebuilt without validating them again, which costs a fraction;
    others are validated. An event another program wrote with the plain sessiondb API is
    shown as a text message.
    """
    content = stored.content
    if isinstance(content, dict) and "id" in content and "author" in content:
        meta = stored.metadata
        if meta is not None and _TAG is not None and meta.get(WRITTEN_BY) == _TAG:
            built: AdkEvent = _BUILDER.build(AdkEvent, content)
            return built
        return AdkEvent.model_validate(content)
    if content is None or isinstance(content, str):
        text = content or ""
    else:
        text = json.dumps(content, ensure_ascii=False, default=str)
    role = "user" if stored.author == "user" else "model"
    return AdkEvent(
        id=f"sessiondb-{stored.session_id}-{stored.seq}",
        author=stored.author,
        invocation_id=stored.invocation_id or "",
        timestamp=_epoch(stored.created_at),
        content=genai_types.Content(role=role, parts=[genai_types.Part(text=text)]),
        actions=EventActions(state_delta=dict(stored.state_delta or {})),
    )


class SessiondbSessionService(BaseSessionService):
    """An ADK session service that keeps sessions in a sessiondb database.

    Args:
        url: a sessiondb database URL: ``sqlite:///./sessions.db``,
            ``postgresql://user:password@host/db``, ``mysql://user:password@host/db`` (ADK's
            async forms such as ``sqlite+aiosqlite:///...`` and ``postgresql+asyncpg://...``
            work too). An in-memory SQLite URL (``sqlite+aiosqlite:///:memory:``) gives, as
            in ADK, a database private to this service and gone when it closes (a temporary
            file here).
        store: instead of ``url``, an :class:`~sessiondb.AsyncSessionStore` you opened (and
            close yourself).
        uri: instead of ``url``, the way ADK's service registry builds a service
            (``services.yaml``, ``adk web --session_service_uri``): a URL, optionally with the
            ``sessiondb+`` scheme prefix. Keyword arguments that are not store options (ADK
            passes ``agents_dir``) are then ignored.
        **store_options: options of :class:`~sessiondb.AsyncSessionStore` (``table_prefix``,
            ``pool_size``, ``ttl``, ...) when a URL is given.

    A service works across event loops (ADK's synchronous ``Runner.run`` starts a new loop
    for every call): its store keeps one connection pool per event loop on PostgreSQL and
    MySQL, as asyncio connections cannot move between loops, and closes each when its loop
    shuts down.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: AsyncSessionStore | None = None,
        uri: str | None = None,
        **store_options: Any,
    ) -> None:
        if uri is not None:
            if url is not None or store is not None:
                raise ValueError("SessiondbSessionService takes one of url, uri= or store=")
            url = database_url(uri)
            known = _store_parameters()
            ignored = sorted(k for k in store_options if k not in known and k != "agents_dir")
            if ignored:
                logger.warning("SessiondbSessionService ignores the options %s", ignored)
            store_options = {k: v for k, v in store_options.items() if k in known}
        if (url is None) == (store is None):
            raise ValueError("SessiondbSessionService needs a database URL or store=, not both")
        if store is not None and store_options:
            raise ValueError("store options go to the AsyncSessionStore you pass as store=")
        self._given = store
        #: for an in-memory SQLite URL: the directory of this service's private database file
        self._scratch: str | None = None
        if url is not None and in_memory_sqlite(url):
            # ADK keeps such a database in one connection, private to the service and gone
            # when it closes; sessiondb's SQLite needs a file: a private temporary one, emptied
            # by close() and removed with the service (or at exit)
            self._scratch = tempfile.mkdtemp(prefix="sessiondb-adk-")
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
            url = "sqlite:///" + os.path.join(self._scratch, "sessions.db")
        self._url = url
        self._options: dict[str, Any] = {"tz_aware": True, **store_options}
        self._single: AsyncSessionStore | None = None
        if url is not None:
            self._single = AsyncSessionStore(url, **self._options)  # checks the URL now

    # -- the store ---------------------------------------------------------------------------

    @property
    def store(self) -> AsyncSessionStore:
        """The sessiondb store underneath, for everything beyond ADK's API (any event loop
        may use it)."""
        if self._given is not None:
            return self._given
        if self._single is None:
            self._single = AsyncSessionStore(self._url or "", **self._options)
        return self._single

    # -- conversions ---------------------------------------------------------------------------

    @staticmethod
    def _to_adk(
        stored: StoredSession, events: list[AdkEvent], last_update: float, last_seq: int | None
    ) -> AdkSession:
        session = AdkSession(
            id=stored.id,
            app_name=stored.app_name,
            user_id=stored.user_id,
            state=stored.state,
            events=events,
            last_update_time=last_update,
        )
        session._storage_update_marker = _marker(stored.version, last_seq)
        return session

    @staticmethod
    def _last_update(stored: StoredSession, last: StoredEvent | AdkEvent | None) -> float:
        """ADK's ``last_update_time``: the timestamp of the last appended event, or the
        creation time of a session without events."""
        if last is None or not stored.event_count:
            return _epoch(stored.created_at)
        if isinstance(last, StoredEvent):
            last = to_adk_event(last)
        return last.timestamp

    @staticmethod
    def _marked(session: AdkSession) -> tuple[int | None, int | None]:
        """The stored version and last event seq ``session`` reflects (None: unknown)."""
        marker = session._storage_update_marker
        if marker is None or not marker.startswith(_MARKER):
            return None, None
        version, _, seq = marker[len(_MARKER) :].partition(":")
        try:
            return int(version), int(seq) if seq else None
        except ValueError:
            return None, None

    # -- BaseSessionService --------------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        """Create a session; ``app:``/``user:`` keys of ``state`` go to the shared scopes.

        Session ids are per app and user, as in ADK: another user may have the same id. An id
        this app and user already have raises ADK's ``AlreadyExistsError``. Surrounding
        whitespace is removed from ``session_id``, as ADK's in-memory service does (a blank id
        means "generate one"); an id sessiondb cannot store raises ADK's
        ``InputValidationError`` (a ``ValueError``).
        """
        if session_id is not None:
            session_id = _lookup_id(session_id) or None
        with _adk_errors():
            try:
                created = await self.store.create_session(
                    app_name, user_id, _json_safe_state(state or {}), session_id=session_id
                )
            except SessionExistsError as exc:
                raise AlreadyExistsError(f"Session with id {session_id} already exists.") from exc
        return self._to_adk(created, [], _epoch(created.created_at), 0)

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        """The session with its events (all, or as ``config`` limits them), or None.

        ``session_id`` is looked up without its surrounding whitespace, as in ADK.
        """
        session_id = _lookup_id(session_id)
        recent = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        # one read brings the session and its events (all of them, or the last ones): the
        # last event comes along even for recent == 0, as it is last_update_time
        wanted = max(recent, 1) if recent is not None and not after else _ALL_EVENTS
        with _adk_errors():
            stored = await self.store.get_session(
                app_name, user_id, session_id, recent_events=wanted
            )
        if stored is None:
            return None
        history = stored.events or []
        if wanted == _ALL_EVENTS and len(history) > stored.event_count:
            # another writer appended between the two reads of that call: ADK only appends to
            # a history, so its first event_count events are exactly the version read
            history = history[: stored.event_count]
        events = [to_adk_event(e) for e in history]
        last_update = self._last_update(stored, events[-1] if events else None)
        if after:
            events = [e for e in events if e.timestamp >= after]
        if recent is not None:
            events = events[-recent:] if recent else []
        last_seq = history[-1].seq if history else 0 if not stored.event_count else None
        return self._to_adk(stored, events, last_update, last_seq)

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The sessions of a user (of every user if None), least recently updated first.

        Each has its merged state and no events, as with ADK's database service; its
        ``last_update_time`` is its last event's timestamp, as ``get_session`` gives it (the
        listing reads each session's last event in the same statement).
        """
        store = self.store
        with _adk_errors():
            listed = await store._call(
                store._core.list_with_last_event, app_name=app_name, user_id=user_id
            )
        sessions = []
        for s in listed:
            last = s.events[-1] if s.events else None
            sessions.append(
                self._to_adk(s, [], self._last_update(s, last), last.seq if last else 0)
            )
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing happens if there is none)."""
        with _adk_errors():
            await self.store.delete_session(
                _lookup_id(session_id), app_name=app_name, user_id=user_id
            )

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of a user, keys without the prefix."""
        with _adk_errors():
            return await self.store.get_user_state(app_name, user_id)

    async def get_app_state(self, *, app_name: str) -> dict[str, Any]:
        """The ``app:`` state of an app, keys without the prefix (a sessiondb extra)."""
        with _adk_errors():
            return await self.store.get_app_state(app_name)

    async def append_event(self, session: AdkSession, event: AdkEvent) -> AdkEvent:
        """Store ``event`` and its state delta in one transaction, then update ``session``.

        Partial events are returned untouched. ``temp:`` keys go into the in-memory session
        only. Raises ADK's ``StaleSessionError`` if the stored session changed since
        ``session`` was read, ADK's ``SessionNotFoundError`` if it no longer exists, and ADK's
        ``AlreadyExistsError`` if the session holds a different event with this event's id
        (an equal event again is a re-delivery: nothing is written, nothing raised).
        ``session.last_update_time`` becomes the event's timestamp, as in ADK.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        with _adk_errors():
            expected, known_seq = self._marked(session)
            if expected is None:
                expected, known_seq = await self._check_unmarked(session), None
            record = event_record(event)
            stored = await self.store.append_events(
                session.id,
                [record],
                expected_version=expected,
                app_name=session.app_name,
                user_id=session.user_id,
            )
        if stored[0].content != record["content"]:
            # storage already held another event under this id: it was kept, this one was
            # not written (a re-delivery of the same event is equal and passes)
            raise AlreadyExistsError(
                f"Session {session.id} already holds a different event with id {event.id!r}; "
                "this event was not stored (event ids are unique within a session)"
            )
        seq = stored[0].seq
        if known_seq is None and any(e.id == event.id for e in session.events):
            known_seq = seq  # a session without a known seq that holds the event already
        if known_seq is not None and seq <= known_seq:
            # a re-delivered event (the same id again) that storage and this session already
            # hold: nothing was written, so the session still reflects the same version
            return event
        session.last_update_time = event.timestamp
        session._storage_update_marker = _marker(expected + 1, seq)
        return self._commit_event_to_session(session, event)

    async def _check_unmarked(self, session: AdkSession) -> int:
        """The version to expect for a session object this service did not load.

        Like ADK: it is stale only if storage was updated after its ``last_update_time`` and
        holds a last event it lacks.
        """
        stored = await self.store.get_session(
            session.app_name, session.user_id, session.id, recent_events=1
        )
        if stored is None:
            raise AdkSessionNotFoundError(f"Session {session.id} not found.")
        latest = to_adk_event(stored.events[-1]) if stored.events else None
        if self._last_update(stored, latest) > session.last_update_time:
            mine = session.events[-1].id if session.events else None
            if (latest.id if latest is not None else None) != mine:
                raise AdkStaleSessionError(STALE_MESSAGE)
        return stored.version

    # -- lifetime ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close what this service opened (a ``store=`` you passed stays open): the pool of
        every event loop that used it."""
        if self._given is not None:
            return
        single, self._single = self._single, None
        if single is not None:
            await single.close()
        if self._scratch is not None:  # an in-memory database is gone once closed, as in ADK
            for name in os.listdir(self._scratch):
                os.remove(os.path.join(self._scratch, name))

    async def __aenter__(self) -> SessiondbSessionService:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _marker(version: int, last_seq: int | None) -> str:
    return f"{_MARKER}{version}:{'' if last_seq is None else last_seq}"


def _service_factory(uri: str, **kwargs: Any) -> SessiondbSessionService:
    return SessiondbSessionService(uri=uri, **kwargs)


def register_adk_schemes() -> None:
    """Register the ``sessiondb+...`` schemes (:data:`SCHEMES`) with ADK's service registry,
    so that ``adk web --session_service_uri sessiondb+postgresql://...`` uses sessiondb.

    Call it from a ``services.py`` in the agents directory; a ``services.yaml`` can name
    :class:`SessiondbSessionService` instead (see docs/adk.md).
    """
    from google.adk.cli.service_registry import get_service_registry

    registry = get_service_registry()
    for scheme in SCHEMES:
        registry.register_session_service(scheme, _service_factory)
