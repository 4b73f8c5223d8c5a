"""The export/import record format (one JSON object per line) and its checks."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ._ids import check_id
from .errors import InvalidRecordError

__all__ = ["check"]

UTC = timezone.utc
_SESSION_KEYS = {
    "type", "id", "app_name", "user_id", "state", "created_at", "updated_at", "version",
    "expires_at", "ttl_seconds", "title", "labels", "events",
}  # fmt: skip


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


def check(index: int, record: Any) -> dict[str, Any]:
    """Validate one record and return it with timestamps as naive UTC datetimes."""
    where = f"record {index + 1}"
    if not isinstance(record, dict) or "type" not in record:
        raise InvalidRecordError(f"{where} is not a sessiondb record (a JSON object with 'type')")
    kind = record["type"]
    try:
        if kind == "app_state":
            check_id(record["app_name"], "app_name")
            if not isinstance(record["state"], dict):
                raise InvalidRecordError(f"{where}: state must be an object")
            return record
        if kind == "user_state":
            check_id(record["app_name"], "app_name")
            check_id(record["user_id"], "user_id")
            if not isinstance(record["state"], dict):
                raise InvalidRecordError(f"{where}: state must be an object")
            return record
        if kind != "session":
            raise InvalidRecordError(f"{where} has the unknown type {kind!r}")
        missing = {"id", "app_name", "user_id", "state", "created_at", "updated_at"} - set(record)
        if missing:
            raise InvalidRecordError(f"{where} lacks {sorted(missing)}")
        out = {k: record.get(k) for k in _SESSION_KEYS}
        check_id(out["id"], "id")
        check_id(out["app_name"], "app_name")
        check_id(out["user_id"], "user_id")
        if not isinstance(out["state"], dict):
            raise InvalidRecordError(f"{where}: state must be an object")
        out["created_at"] = _when(out["created_at"], f"{where}: created_at")
        out["updated_at"] = _when(out["updated_at"], f"{where}: updated_at")
        if out["expires_at"] is not None:
            out["expires_at"] = _when(out["expires_at"], f"{where}: expires_at")
        version = out["version"] if out["version"] is not None else 1
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidRecordError(f"{where}: version must be a positive int")
        out["version"] = version
        out["labels"] = list(out["labels"] or [])
        events = out["events"] or []
        if not isinstance(events, list):
            raise InvalidRecordError(f"{where}: events must be a list")
        checked = []
        for j, e in enumerate(events):
            if not isinstance(e, dict) or not isinstance(e.get("seq"), int) or "author" not in e:
                raise InvalidRecordError(f"{where}: events[{j}] needs seq (int) and author")
            checked.append(
                {"seq": e["seq"], "author": check_id(e["author"], "author"),
                 "content": e.get("content"), "state_delta": e.get("state_delta"),
                 "invocation_id": e.get("invocation_id"), "metadata": e.get("metadata"),
                 "created_at": _when(e.get("created_at"), f"{where}: events[{j}].created_at")}
            )  # fmt: skip
        out["events"] = checked
        return out
    except KeyError as exc:
        raise InvalidRecordError(f"{where} lacks {exc.args[0]!r}") from exc
