"""The plain data objects sessiondb returns. No I/O, no SQLAlchemy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AppStats", "Event", "ImportResult", "Session", "SessionList"]


@dataclass(slots=True, eq=True)
class Session:
    """A snapshot of one stored session.

    It is detached: changing ``state`` (or any field) never changes what is stored. Write with
    ``update_session_state`` (or the partial-update methods) instead.
    """

    id: str
    app_name: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    state: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    event_count: int = 0
    """How many events the session's history holds (read without loading them)."""
    event_bytes: int = 0
    """The total size of those events' JSON payloads, in bytes."""
    title: str | None = None
    labels: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    """When the session stops being visible (None: never). Sliding expiry moves it on writes."""
    events: list[Event] | None = None
    """The last events, oldest first, when asked for with ``recent_events=N``; else None."""

    def to_dict(self) -> dict[str, Any]:
        """The session as a dict of plain values (datetimes stay datetimes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Rebuild a session from :meth:`to_dict` output."""
        data = dict(data)
        if data.get("events") is not None:
            data["events"] = [Event(**e) if isinstance(e, dict) else e for e in data["events"]]
        return cls(**data)


@dataclass(slots=True, eq=True)
class Event:
    """One entry of a session's history (appended; ``pop_events`` removes the newest)."""

    session_id: str
    seq: int
    """Position in the session's history: strictly increasing, from 1 (a popped event's seq is
    not given again)."""
    author: str
    """Who wrote it: "user", "assistant", "tool", an agent's name..."""
    content: Any
    """Any JSON value."""
    created_at: datetime
    state_delta: dict[str, Any] | None = None
    """State keys this event set, applied atomically with the append."""
    invocation_id: str | None = None
    metadata: dict[str, Any] | None = None
    event_id: str | None = None
    """The caller's idempotency key (e.g. ADK's event id), unique within the session."""

    def to_dict(self) -> dict[str, Any]:
        """The event as a dict of plain values."""
        return asdict(self)


class SessionList(list[Session]):
    """A page of sessions: a plain list, plus the cursor of the next page (None at the end)."""

    next_cursor: str | None = None

    def __init__(self, sessions: list[Session] = (), next_cursor: str | None = None) -> None:  # type: ignore[assignment]
        super().__init__(sessions)
        self.next_cursor = next_cursor


@dataclass(slots=True, frozen=True)
class AppStats:
    """Totals for one app, from ``stats()``."""

    app_name: str
    sessions: int
    users: int
    events: int
    state_bytes: int
    event_bytes: int
    oldest_created_at: datetime | None
    newest_updated_at: datetime | None
    #: expired sessions not deleted yet (the purge backlog: ``purge_expired`` deletes them);
    #: the other counts are of live sessions only
    expired: int = 0


@dataclass(slots=True)
class ImportResult:
    """What ``import_records`` did: rows written, and records skipped as already present."""

    sessions: int = 0
    events: int = 0
    app_states: int = 0
    user_states: int = 0
    skipped: int = 0
    #: LangGraph threads and checkpoints written (see :mod:`sessiondb.langgraph`)
    threads: int = 0
    checkpoints: int = 0

    def __add__(self, other: ImportResult) -> ImportResult:
        """The totals of two imports (or of two batches of one)."""
        if not isinstance(other, ImportResult):
            return NotImplemented
        return ImportResult(
            sessions=self.sessions + other.sessions,
            events=self.events + other.events,
            app_states=self.app_states + other.app_states,
            user_states=self.user_states + other.user_states,
            skipped=self.skipped + other.skipped,
            threads=self.threads + other.threads,
            checkpoints=self.checkpoints + other.checkpoints,
        )
