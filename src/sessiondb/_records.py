"""The export/import record format: the one module that knows its field names.

An export is a stream of records, one JSON object each (one line of a JSON Lines file):

- ``{"type": "session", "id", "app_name", "user_id", "state", "created_at", "updated_at",
  "version", "expires_at", "ttl_seconds", "title", "labels", "events": [...]}``, each event
  ``{"seq", "author", "content", "created_at", "state_delta", "invocation_id", "metadata"}``
  and ``"event_id"`` when the event has one;
- ``{"type": "app_state", "app_name", "state"}`` and
  ``{"type": "user_state", "app_name", "user_id", "state"}``;
- ``{"type": "lg_thread", "app_name", "user_id", "thread_id", "created_at", "updated_at",
  "expires_at", "checkpoints": [...], "blobs": [...], "writes": [...]}``: a LangGraph thread
  (``app_name`` and ``user_id`` empty for a thread bound to nobody) with every row it has:
  each checkpoint ``{"checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "run_id",
  "type", "checkpoint", "versions", "metadata", "created_at"}``, each blob
  ``{"checkpoint_ns", "channel", "version", "type", "blob"}``, each pending write
  ``{"checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel", "type", "blob",
  "task_path"}``. ``checkpoint`` and ``blob`` are the serializer's bytes in base64 (``blob``
  may be null), ``versions`` and ``metadata`` JSON objects. Exports made before sessiondb kept
  checkpoints simply have no such records.

Timestamps are ISO 8601 strings in UTC. The builders (:func:`session_record`,
:func:`event_record`, :func:`scope_record`) write records; :func:`check` reads one back into a
typed, validated form; :func:`kind` and :func:`event_count` tell what a record is without
checking it (for tallies and progress); :func:`copy_view` is what a copy must preserve (for
checksums).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ._checks import is_int_at_least
from ._ids import MAX_ID_LENGTH, check_id
from ._schema import CHECKPOINT_ID_LENGTH, NS_LENGTH, VERSION_LENGTH
from .errors import InvalidIdError, InvalidRecordError

__all__ = [
    "APP_STATE",
    "LG_THREAD",
    "SESSION",
    "USER_STATE",
    "EventRecord",
    "Lifecycle",
    "ScopeRecord",
    "SessionRecord",
    "ThreadRecord",
    "check",
    "copy_view",
    "event_count",
    "event_record",
    "kind",
    "scope_record",
    "session_record",
    "thread_record",
]

UTC = timezone.utc

#: The record types (the value of a record's ``"type"`` key).
SESSION = "session"
APP_STATE = "app_state"
USER_STATE = "user_state"
LG_THREAD = "lg_thread"

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


def checkpoint_count(record: dict[str, Any]) -> int:
    """How many checkpoints a thread record holds (0 for other records)."""
    if record.get("type") != LG_THREAD:
        return 0
    return len(record.get("checkpoints") or ())


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


#: the fields of a thread record's rows, in order (the columns of the lg_* tables)
CHECKPOINT_FIELDS = (
    "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "run_id", "type", "checkpoint",
    "versions", "metadata", "created_at",
)  # fmt: skip
BLOB_FIELDS = ("checkpoint_ns", "channel", "version", "type", "blob")
WRITE_FIELDS = (
    "checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel", "type", "blob", "task_path",
)  # fmt: skip
_BINARY = ("checkpoint", "blob")
#: the longest text each key field holds
_LIMITS = {
    "checkpoint_ns": NS_LENGTH, "checkpoint_id": CHECKPOINT_ID_LENGTH,
    "parent_checkpoint_id": CHECKPOINT_ID_LENGTH, "run_id": MAX_ID_LENGTH,
    "task_id": CHECKPOINT_ID_LENGTH, "channel": MAX_ID_LENGTH, "version": VERSION_LENGTH,
    "type": 32,
}  # fmt: skip
_NULLABLE = ("parent_checkpoint_id", "run_id")


def b64(value: bytes | None) -> str | None:
    """Bytes as base64 text (None stays None)."""
    return None if value is None else base64.b64encode(value).decode("ascii")


def thread_record(
    *,
    app_name: str,
    user_id: str,
    thread_id: str,
    created_at: str,
    updated_at: str,
    expires_at: str | None,
    checkpoints: list[dict[str, Any]],
    blobs: list[dict[str, Any]],
    writes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A LangGraph thread record; its rows are dicts of :data:`CHECKPOINT_FIELDS`,
    :data:`BLOB_FIELDS` and :data:`WRITE_FIELDS` (bytes already in base64). The rows are put in
    a canonical order, so one thread exports alike from every backend."""
    return {
        "type": LG_THREAD, "app_name": app_name, "user_id": user_id, "thread_id": thread_id,
        "created_at": created_at, "updated_at": updated_at, "expires_at": expires_at,
        "checkpoints": sorted(checkpoints, key=lambda r: (r["checkpoint_ns"], r["checkpoint_id"])),
        "blobs": sorted(blobs, key=lambda r: (r["checkpoint_ns"], r["channel"], r["version"])),
        "writes": sorted(
            writes,
            key=lambda r: (r["checkpoint_ns"], r["checkpoint_id"], r["task_id"], r["idx"]),
        ),
    }  # fmt: skip


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
    elif kept.get("type") == LG_THREAD:
        for name in ("created_at", "updated_at", "expires_at"):
            kept.pop(name, None)
        kept["checkpoints"] = [
            {k: v for k, v in c.items() if k != "created_at"} for c in kept.get("checkpoints", [])
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


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """A checked LangGraph thread record: each row a dict of its table's columns, bytes
    decoded, timestamps naive UTC datetimes, ``versions`` and ``metadata`` JSON text."""

    app_name: str
    user_id: str
    thread_id: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    checkpoints: list[dict[str, Any]]
    blobs: list[dict[str, Any]]
    writes: list[dict[str, Any]]


def _owner_key(value: Any, what: str) -> str:
    """An app name or user id of a thread: empty for a thread bound to nobody."""
    if value == "":
        return ""
    return check_id(value, what)


def _rows(record: dict[str, Any], name: str, fields: tuple[str, ...], where: str) -> list[Any]:
    """The rows of a thread record's list ``name``, each a dict with every field, bytes
    decoded and JSON objects as compact text."""
    found = record.get(name) or []
    if not isinstance(found, list):
        raise InvalidRecordError(f"{where}: {name} must be a list")
    out = []
    for j, row in enumerate(found):
        at = f"{where}: {name}[{j}]"
        if not isinstance(row, dict):
            raise InvalidRecordError(f"{at} must be an object")
        missing = [f for f in fields if f not in row and f not in ("run_id", "created_at")]
        if missing:
            raise InvalidRecordError(f"{at} lacks {missing}")
        checked: dict[str, Any] = {f: row.get(f) for f in fields}
        for f in _BINARY:
            text = checked.get(f)
            if text is not None:
                if not isinstance(text, str):
                    raise InvalidRecordError(f"{at}.{f} must be base64 text")
                try:
                    checked[f] = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidRecordError(f"{at}.{f} is not base64") from None
        if "checkpoint" in checked and checked["checkpoint"] is None:
            raise InvalidRecordError(f"{at}.checkpoint must not be null")
        for f in ("versions", "metadata"):
            if f in checked:
                if not isinstance(checked[f], dict):
                    raise InvalidRecordError(f"{at}.{f} must be an object")
                checked[f] = json.dumps(
                    checked[f], separators=(",", ":"), ensure_ascii=False, default=str
                )
        if "idx" in checked and not isinstance(checked["idx"], int):
            raise InvalidRecordError(f"{at}.idx must be an int")
        if "created_at" in checked:
            created = checked["created_at"]
            checked["created_at"] = None if created is None else _when(created, f"{at}.created_at")
        for f, value in checked.items():
            limit = _LIMITS.get(f)
            if limit is None or (value is None and f in _NULLABLE):
                continue
            if not isinstance(value, str):
                raise InvalidRecordError(f"{at}.{f} must be a str")
            if len(value) > limit or not value.isprintable():
                raise InvalidRecordError(f"{at}.{f} is longer than {limit} or unprintable")
        if "task_path" in checked and not isinstance(checked["task_path"], str):
            raise InvalidRecordError(f"{at}.task_path must be a str")
        out.append(checked)
    return out


def _check_thread(record: dict[str, Any], where: str) -> ThreadRecord:
    expires_at = record.get("expires_at")
    try:
        app_name = _owner_key(record["app_name"], "app_name")
        user_id = _owner_key(record["user_id"], "user_id")
        thread_id = check_id(record["thread_id"], "thread_id")
    except InvalidIdError as exc:
        raise InvalidRecordError(f"{where}: {exc}") from None
    return ThreadRecord(
        app_name=app_name,
        user_id=user_id,
        thread_id=thread_id,
        created_at=_when(record["created_at"], f"{where}: created_at"),
        updated_at=_when(record["updated_at"], f"{where}: updated_at"),
        expires_at=None if expires_at is None else _when(expires_at, f"{where}: expires_at"),
        checkpoints=_rows(record, "checkpoints", CHECKPOINT_FIELDS, where),
        blobs=_rows(record, "blobs", BLOB_FIELDS, where),
        writes=_rows(record, "writes", WRITE_FIELDS, where),
    )


def check(index: int, record: Any) -> SessionRecord | ScopeRecord | ThreadRecord:
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
        if found == LG_THREAD:
            return _check_thread(record, where)
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
