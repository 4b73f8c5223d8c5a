"""The export/import record format: the one module that knows its field names.

An export is a stream of records, one JSON object each (one line of a JSON Lines file):

- ``{"type": "session", "id", "app_name", "user_id", "state", "created_at", "updated_at",
  "version", "expires_at", "ttl_seconds", "title", "labels", "events": [...]}``, each event
  ``{"seq", "author", "content", "created_at", "state_delta", "invocation_id", "metadata"}``
  and ``"event_id"`` when the event has one;
- ``{"type": "app_state", "app_name", "state"}`` and
  ``{"type": "user_state", "app_name", "user_id", "state"}``.

Timestamps are ISO 8601 strings in UTC. The builders (:func:`session_record`,
:func:`event_record`, :func:`scope_record`) write records; :func:`check` reads one back into a
typed, validated form; :func:`kind` and :func:`event_count` tell what a record is without
checking it (for tallies and progress); :func:`copy_view` is what a copy must preserve (for
checksums).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ._checks import is_int_at_least
from ._ids import check_id
from .errors import InvalidRecordError

__all__ = [
    "APP_STATE",
    "SESSION",
    "USER_STATE",
    "EventRecord",
    "Lifecycle",
    "ScopeRecord",
    "SessionRecord",
    "check",
    "copy_view",
    "event_count",
    "event_record",
    "kind",
    "scope_record",
    "session_record",
]

UTC = timezone.utc

#: The record types (the value of a record's ``"type"`` key).
SESSION = "session"
APP_STATE = "app_state"
USER_STATE = "user_state"

Scope = Literal["app", "user"]
_SCOPE_KINDS: dict[Scope, str] = {"app": APP_STATE, "user": USER_STATE}
_REQUIRED = ("id", "app_name", "user_id", "state", "created_at", "updated_at")


# -- reading: what kind of record ----------------------------------------------------------------


def kind(value: Any) -> str | None:
    """The type of a record (``"session"``, ...), or None if ``value`` is not shaped like one
    (a dict with a str ``"type"``). Does not check the rest of the record."""
    if isinstance(value, dict):
        found = value.get("type")
        if isinstance(found, str):
            return found
    return None


def event_count(record: dict[str, Any]) -> int:
    """How many events a session record holds (0 for other records)."""
    if record.get("type") != SESSION:
        return 0
    return len(record.get("events") or ())


# -- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The expiry and metadata fields of a session record (``expires_at``: ISO 8601)."""

    expires_at: str | None
    ttl_seconds: float | None
    title: str | None
    labels: list[str]


def event_record(
    *,
    seq: int,
    author: str,
    content: Any,
    created_at: str,
    state_delta: dict[str, Any] | None,
    invocation_id: str | None,
    metadata: dict[str, Any] | None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One event of a session record (``created_at``: ISO 8601; ``event_id`` only if set)."""
    record = {
        "seq": seq, "author": author, "content": content, "created_at": created_at,
        "state_delta": state_delta, "invocation_id": invocation_id, "metadata": metadata,
    }  # fmt: skip
    if event_id is not None:
        record["event_id"] = event_id
    return record


def session_record(
    *,
    id: str,
    app_name: str,
    user_id: str,
    state: dict[str, Any],
    created_at: str,
    updated_at: str,
    version: int,
    events: list[dict[str, Any]],
    lifecycle: Lifecycle | None = None,
) -> dict[str, Any]:
    """A session record. Without ``lifecycle`` its fields are left out (an importer reads them
    as absent: never expires, no title, no labels)."""
    record: dict[str, Any] = {
        "type": SESSION, "id": id, "app_name": app_name, "user_id": user_id, "state": state,
        "created_at": created_at, "updated_at": updated_at, "version": version,
    }  # fmt: skip
    if lifecycle is not None:
        record["expires_at"] = lifecycle.expires_at
        record["ttl_seconds"] = lifecycle.ttl_seconds
        record["title"] = lifecycle.title
        record["labels"] = lifecycle.labels
    record["events"] = events
    return record


def scope_record(
    scope: Scope, app_name: str, user_id: str | None, state: dict[str, Any]
) -> dict[str, Any]:
    """An ``app_state`` record (``user_id`` None) or a ``user_state`` record."""
    record: dict[str, Any] = {"type": _SCOPE_KINDS[scope], "app_name": app_name}
    if scope == "user":
        record["user_id"] = user_id
    record["state"] = state
    return record


def copy_view(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a record that a copy to another database must preserve.

    Expiry times and event times are left out: a copy keeps them, but a backend may round
    them differently.
    """
    kept = dict(record)
    if kept.get("type") == SESSION:
        kept.pop("expires_at", None)
        kept["events"] = [
            {k: v for k, v in e.items() if k != "created_at"} for e in kept.get("events", [])
        ]
    return kept


# -- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One checked event of a session record."""

    seq: int
    author: str
    content: Any
    state_delta: Any
    invocation_id: Any
    metadata: Any
    created_at: datetime  # naive UTC
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A checked session record; timestamps are naive UTC datetimes."""

    id: str
    app_name: str
    user_id: str
    state: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int
    expires_at: datetime | None
    ttl_seconds: Any
    title: Any
    labels: list[Any]
    events: list[EventRecord]


@dataclass(frozen=True, slots=True)
class ScopeRecord:
    """A checked ``app_state`` (``user_id`` None) or ``user_state`` record."""

    scope: Scope
    app_name: str
    user_id: str | None
    state: dict[str, Any]


def _when(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidRecordError(f"{where} must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRecordError(f"{where} is not an ISO 8601 timestamp: {value!r}") from exc
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


def check(index: int, record: Any) -> SessionRecord | ScopeRecord:
    """Validate record number ``index`` (from 0) of an import; raise InvalidRecordError."""
    where = f"record {index + 1}"
    if not isinstance(record, dict) or "type" not in record:
        raise InvalidRecordError(f"{where} is not a sessiondb record (a JSON object with 'type')")
    found = record["type"]
    try:
        if found in (APP_STATE, USER_STATE):
            app_name = check_id(record["app_name"], "app_name")
            user_id = None if found == APP_STATE else check_id(record["user_id"], "user_id")
            state = record["state"]
            if not isinstance(state, dict):
                raise InvalidRecordError(f"{where}: state must be an object")
            return ScopeRecord("app" if found == APP_STATE else "user", app_name, user_id, state)
        if found != SESSION:
            raise InvalidRecordError(f"{where} has the unknown type {found!r}")
        missing = set(_REQUIRED) - set(record)
        if missing:
            raise InvalidRecordError(f"{where} lacks {sorted(missing)}")
        sid = check_id(record["id"], "id")
        app_name = check_id(record["app_name"], "app_name")
        user_id = check_id(record["user_id"], "user_id")
        state = record["state"]
        if not isinstance(state, dict):
            raise InvalidRecordError(f"{where}: state must be an object")
        created_at = _when(record["created_at"], f"{where}: created_at")
        updated_at = _when(record["updated_at"], f"{where}: updated_at")
        expires_at = record.get("expires_at")
        if expires_at is not None:
            expires_at = _when(expires_at, f"{where}: expires_at")
        version = record.get("version")
        if version is None:
            version = 1
        if not is_int_at_least(version, 1):
            raise InvalidRecordError(f"{where}: version must be a positive int")
        labels = list(record.get("labels") or [])
        events = record.get("events") or []
        if not isinstance(events, list):
            raise InvalidRecordError(f"{where}: events must be a list")
        checked = []
        for j, e in enumerate(events):
            if not isinstance(e, dict) or not isinstance(e.get("seq"), int) or "author" not in e:
                raise InvalidRecordError(f"{where}: events[{j}] needs seq (int) and author")
            checked.append(
                EventRecord(
                    seq=e["seq"], author=check_id(e["author"], "author"),
                    content=e.get("content"), state_delta=e.get("state_delta"),
                    invocation_id=e.get("invocation_id"), metadata=e.get("metadata"),
                    created_at=_when(e.get("created_at"), f"{where}: events[{j}].created_at"),
                    event_id=None if e.get("event_id") is None
                    else check_id(e["event_id"], "event_id"),
                )
            )  # fmt: skip
        return SessionRecord(
            id=sid, app_name=app_name, user_id=user_id, state=state, created_at=created_at,
            updated_at=updated_at, version=version, expires_at=expires_at,
            ttl_seconds=record.get("ttl_seconds"), title=record.get("title"),
            labels=labels, events=checked,
        )  # fmt: skip
    except KeyError as exc:
        raise InvalidRecordError(f"{where} lacks {exc.args[0]!r}") from exc
