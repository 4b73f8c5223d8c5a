"""Move sessions out of the tables of Google ADK's own session services into sessiondb.

ADK's ``DatabaseSessionService`` keeps ``sessions``, ``events``, ``app_states`` and
``user_states`` tables (its ``SqliteSessionService`` the same four, with epoch-second times).
:func:`import_adk` reads them, in the current schema (each event as JSON in ``event_data``)
or in the legacy one (event fields in columns, ``actions`` a pickle), and writes everything into
a sessiondb store: each session with its state, each event whole (as
:class:`~sessiondb.adk.SessiondbSessionService` stores events, so they come back equal), and
the ``app:`` and ``user:`` states. Running it twice changes nothing the second time.

Legacy pickles are untrusted input: they are read with an unpickler that resolves only the
data classes an ADK ``EventActions`` can hold, and refuses everything else (such as
``os.system``) with :class:`UnsafePickleError`, without running it.

Needs google-adk (``pip install 'sessiondb[adk]'``). The command line form is
``sessiondb import-adk --from URL --to URL``.
"""

from __future__ import annotations

import asyncio
import io
import json
import pickle
import typing
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from google.adk.events.event import Event as AdkEvent
from google.adk.events.event_actions import EventActions
from pydantic import BaseModel

from . import _records
from .adk import event_record
from .errors import ConfigurationError, InvalidRecordError
from .models import ImportResult

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ._async_store import AsyncSessionStore
    from ._store import SessionStore

__all__ = ["UnsafePickleError", "aimport_adk", "import_adk", "read_adk", "safe_unpickle"]

UTC = timezone.utc
_BATCH = 200


class UnsafePickleError(InvalidRecordError, pickle.UnpicklingError):
    """A legacy ``actions`` pickle names something that is not ADK event data."""


# -- the restricted unpickler ------------------------------------------------------------------

# Plain data types: each is rebuilt by calling the type on plain values, which runs no code
# chosen by whoever wrote the pickle.
_PLAIN: frozenset[tuple[str, str]] = frozenset(
    {("builtins", n) for n in ("dict", "list", "set", "frozenset", "tuple", "str", "bytes",
                               "bytearray", "int", "float", "bool", "complex", "object")}
    | {("datetime", c.__name__) for c in (date, datetime, time, timedelta, timezone)}
    | {("decimal", "Decimal"), ("uuid", "UUID"), ("collections", "OrderedDict"),
       # protocols 0-2: objects are rebuilt through copyreg's helper, which only instantiates
       # a class that must itself pass find_class, and bytes through codecs' str -> bytes
       ("copyreg", "_reconstructor"), ("_codecs", "encode")}
)  # fmt: skip


def _models_reachable(roots: list[Any]) -> set[tuple[str, str]]:
    """(module, qualname) of every pydantic model and enum a field of ``roots`` can hold."""
    found: set[tuple[str, str]] = set()
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        kind = todo.pop()
        if id(kind) in seen:
            continue
        seen.add(id(kind))
        todo.extend(typing.get_args(kind))
        if not isinstance(kind, type) or typing.get_args(kind):
            continue
        try:
            if issubclass(kind, BaseModel):
                found.add((kind.__module__, kind.__qualname__))
                todo.extend(f.annotation for f in kind.model_fields.values())
            elif issubclass(kind, Enum):
                found.add((kind.__module__, kind.__qualname__))
        except TypeError:  # a generic alias posing as a class
            continue
    return found


@lru_cache(maxsize=1)
def _allowed() -> frozenset[tuple[str, str]]:
    """The globals a legacy ``actions`` pickle may name."""
    roots: list[Any] = [EventActions]
    try:  # EventActions types its auth configs as Any at runtime: walk AuthConfig too
        from google.adk.auth.auth_tool import AuthConfig

        roots.append(AuthConfig)
    except ImportError:  # pragma: no cover - older ADK
        pass
    return _PLAIN | frozenset(_models_reachable(roots))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ADK event data classes and plain data types; refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        # protocols 0-2 spell two of the plain modules the Python 2 way
        plain = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (plain, name) in _allowed():
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refused to unpickle {module}.{name}: a legacy ADK 'actions' value may only hold "
            "ADK event data, and this one names something else (it was not written by ADK, "
            "or it holds objects that are not plain data). Nothing of it was loaded."
        )


def safe_unpickle(data: bytes) -> Any:
    """Load a legacy ADK ``actions`` pickle, refusing anything but ADK event data."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


# -- reading ADK's tables ----------------------------------------------------------------------


def _json(value: Any) -> Any:
    """A JSON column's value: drivers give dicts (PostgreSQL) or text (the others)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode()
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


def _epoch(value: Any) -> float:
    """A stored time as epoch seconds: ADK stores naive UTC datetimes, or epoch floats."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    raise InvalidRecordError(f"not a time: {value!r}")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


_LEGACY_JSON = (
    "content", "grounding_metadata", "custom_metadata", "usage_metadata", "citation_metadata",
    "input_transcription", "output_transcription",
)  # fmt: skip
_LEGACY_PLAIN = (
    "author", "branch", "partial", "turn_complete", "error_code", "error_message", "interrupted",
)  # fmt: skip


def _legacy_actions(raw: Any) -> EventActions:
    if raw is None:
        return EventActions()
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = safe_unpickle(bytes(raw))
    if isinstance(raw, BaseModel):
        return EventActions.model_validate(raw.model_dump())
    if isinstance(raw, dict):
        return EventActions.model_validate(raw)
    raise InvalidRecordError(f"legacy actions hold a {type(raw).__name__}, not EventActions")


def _event_of(row: Mapping[str, Any], legacy: bool) -> AdkEvent:
    """Rebuild the ADK event of one ``events`` row."""
    if not legacy:
        data = dict(_json(row["event_data"]) or {})
        data["id"] = row["id"]
        data["invocation_id"] = row["invocation_id"] or ""
        data.setdefault("timestamp", _epoch(row["timestamp"]))
        return AdkEvent.model_validate(data)
    fields: dict[str, Any] = {
        "id": row["id"],
        "invocation_id": row.get("invocation_id") or "",
        "timestamp": _epoch(row["timestamp"]),
        "actions": _legacy_actions(row.get("actions")),
    }
    for name in _LEGACY_PLAIN:
        if row.get(name) is not None:
            fields[name] = row[name]
    for name in _LEGACY_JSON:
        value = _json(row.get(name))
        if isinstance(value, dict):
            fields[name] = value
    # as ADK reads this schema: no ids is an empty set
    fields["long_running_tool_ids"] = set(_json(row.get("long_running_tool_ids_json")) or ())
    return AdkEvent.model_validate(fields)


class _Reader:
    """Reads an ADK database in batches of sessionDB import records (sync SQLAlchemy)."""

    def __init__(self, from_url: str, *, skip_unreadable: bool) -> None:
        import sqlalchemy as sa

        from ._urls import resolve_url

        target = resolve_url(from_url)
        args = {"check_same_thread": False} if target.backend == "sqlite" else {}
        self.engine = sa.create_engine(
            target.sync_url, poolclass=sa.pool.NullPool, connect_args=args
        )
        self.url = target.safe_url
        self.skip_unreadable = skip_unreadable
        self.unreadable: list[str] = []
        self.read_sessions = 0
        self.read_events = 0

    def _tables(self, conn: sa.Connection) -> dict[str, sa.Table]:
        import sqlalchemy as sa

        names = set(sa.inspect(conn).get_table_names())
        if "sessions" not in names or "events" not in names:
            raise ConfigurationError(f"no ADK session tables (sessions, events) at {self.url}")
        meta = sa.MetaData()
        found: dict[str, sa.Table] = {
            n: sa.Table(n, meta, autoload_with=conn)
            for n in ("sessions", "events", "app_states", "user_states")
            if n in names
        }
        for table, needed in (("sessions", "create_time"), ("events", "invocation_id")):
            if needed not in found[table].c:
                raise ConfigurationError(
                    f"the {table} table at {self.url} is not ADK's (it has no {needed} column): "
                    "is this a sessiondb database? (`sessiondb copy` moves those)"
                )
        return found

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            t = self._tables(conn)
            sessions, events = t["sessions"], t["events"]
            legacy = "event_data" not in events.c
            order = (sessions.c.app_name, sessions.c.user_id, sessions.c.id)
            rows = conn.execute(sa.select(sessions).order_by(*order)).mappings()
            page: list[Any] = []
            for row in rows:
                page.append(dict(row))
                if len(page) >= _BATCH:
                    yield self._sessions(conn, events, legacy, page)
                    page = []
            if page:
                yield self._sessions(conn, events, legacy, page)
            scoped: list[dict[str, Any]] = []
            if "app_states" in t:
                for row in conn.execute(sa.select(t["app_states"])).mappings():
                    state = _json(row["state"]) or {}
                    scoped.append(_records.scope_record("app", row["app_name"], None, state))
            if "user_states" in t:
                for row in conn.execute(sa.select(t["user_states"])).mappings():
                    state = _json(row["state"]) or {}
                    scoped.append(
                        _records.scope_record("user", row["app_name"], row["user_id"], state)
                    )
            for start in range(0, len(scoped), _BATCH):
                yield scoped[start : start + _BATCH]

    def _sessions(
        self, conn: sa.Connection, events: sa.Table, legacy: bool, page: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        # ids are per (app, user) in ADK as in sessiondb: events are matched by the whole key
        ids = list({s["id"] for s in page})
        stmt = (
            sa.select(events)
            .where(events.c.session_id.in_(ids))
            .order_by(events.c.timestamp, events.c.id)
        )
        history: dict[tuple[str, str, str], list[AdkEvent]] = {}
        for row in conn.execute(stmt).mappings():
            key = (row["app_name"], row["user_id"], row["session_id"])
            try:
                event = _event_of(dict(row), legacy)
            except Exception as exc:
                where = f"event {row['id']!r} of session {row['session_id']!r}"
                if not self.skip_unreadable:
                    if isinstance(exc, UnsafePickleError):
                        raise UnsafePickleError(f"{where}: {exc}") from exc
                    raise InvalidRecordError(f"{where} cannot be read: {exc}") from exc
                self.unreadable.append(f"{where}: {exc}")
                continue
            history.setdefault(key, []).append(event)
        out = []
        for s in page:
            adk_events = history.get((s["app_name"], s["user_id"], s["id"]), [])
            evs = [
                _records.event_record(
                    seq=seq, created_at=_iso(event.timestamp), **event_record(event)
                )
                for seq, event in enumerate(adk_events, 1)
            ]
            self.read_sessions += 1
            self.read_events += len(evs)
            out.append(
                _records.session_record(
                    id=s["id"], app_name=s["app_name"], user_id=s["user_id"],
                    state=_json(s["state"]) or {}, created_at=_iso(_epoch(s["create_time"])),
                    updated_at=_iso(_epoch(s["update_time"])),
                    # a sessiondb session is at version 1 + its appends: a later import of the
                    # same ADK session with more events replaces the state and adds the events
                    version=1 + len(evs), events=evs,
                )
            )  # fmt: skip
        return out

    def close(self) -> None:
        self.engine.dispose()


def read_adk(from_url: str, *, skip_unreadable: bool = False) -> Iterator[dict[str, Any]]:
    """The sessiondb import records of an ADK database, one at a time (for ``import_records``
    or an export file). Raises :class:`UnsafePickleError` on a refused legacy pickle unless
    ``skip_unreadable``, which leaves such events out."""
    reader = _Reader(from_url, skip_unreadable=skip_unreadable)
    try:
        for batch in reader.batches():
            yield from batch
    finally:
        reader.close()


# -- writing -----------------------------------------------------------------------------------


def _counts(result: ImportResult, reader: _Reader) -> dict[str, int]:
    return {
        "sessions": result.sessions,
        "events": result.events,
        "app_states": result.app_states,
        "user_states": result.user_states,
        "skipped_sessions": result.skipped,
        "unreadable_events": len(reader.unreadable),
        "read_sessions": reader.read_sessions,
        "read_events": reader.read_events,
    }


def _check_target(from_url: str, to: AsyncSessionStore | SessionStore | str, prefix: str) -> None:
    """Refuse to write sessiondb's unprefixed tables into the ADK database itself."""
    from ._urls import resolve_url

    if isinstance(to, str):
        target = resolve_url(to).sync_url
    else:  # a store: its own URL and prefix
        backend = to._backend
        target, prefix = backend.target.sync_url, backend.options.table_prefix
    if not prefix and resolve_url(from_url).sync_url == target:
        raise ConfigurationError(
            "ADK and sessiondb both name a table 'sessions': to import into the same database, "
            "give sessiondb a table_prefix (--table-prefix)"
        )


async def aimport_adk(
    from_url: str,
    to: AsyncSessionStore | SessionStore | str,
    *,
    table_prefix: str = "",
    skip_unreadable: bool = False,
) -> dict[str, int]:
    """:func:`import_adk` for async code: writes through an ``AsyncSessionStore`` (or a
    ``SessionStore``, in a worker thread) without blocking the event loop."""
    from ._async_store import AsyncSessionStore
    from ._store import SessionStore

    _check_target(from_url, to, table_prefix)
    reader = _Reader(from_url, skip_unreadable=skip_unreadable)
    own: AsyncSessionStore | None = None
    if isinstance(to, str):
        own = AsyncSessionStore(to, table_prefix=table_prefix)
    store = own if own is not None else to
    assert not isinstance(store, str)
    loop = asyncio.get_running_loop()
    total = ImportResult()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="sessiondb-adk-import") as pool:
            batches = reader.batches()
            sentinel: list[dict[str, Any]] = []
            while True:
                batch = await loop.run_in_executor(pool, next, batches, sentinel)
                if batch is sentinel:
                    break
                if isinstance(store, SessionStore):
                    done = await loop.run_in_executor(pool, store.import_records, batch)
                else:
                    done = await store.import_records(batch)
                total += done
    finally:
        reader.close()
        if own is not None:
            await own.close()
    return _counts(total, reader)


def import_adk(
    from_url: str,
    to: AsyncSessionStore | SessionStore | str,
    *,
    table_prefix: str = "",
    skip_unreadable: bool = False,
) -> dict[str, int]:
    """Copy every session, event and scoped state of an ADK database into sessiondb.

    Args:
        from_url: the URL ADK's ``DatabaseSessionService`` (or ``SqliteSessionService``) was
            given; async driver forms (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``)
            are read with the matching sync driver.
        to: a sessiondb URL, or a ``SessionStore`` / ``AsyncSessionStore`` (an async store
            is driven with ``asyncio.run``, so call :func:`aimport_adk` from async code).
        table_prefix: the sessiondb table prefix when ``to`` is a URL (needed when it is the
            same database, since both name a table ``sessions``).
        skip_unreadable: leave out events that cannot be read safely (a refused pickle, data
            ADK itself cannot parse) instead of stopping at the first; they are counted.

    Returns:
        Counts: ``sessions``, ``events``, ``app_states``, ``user_states`` written,
        ``skipped_sessions`` (already imported at that version), ``unreadable_events``,
        and ``read_sessions``/``read_events`` found in the ADK database.

    Idempotent: a second run writes no session or event again.
    """
    from ._async_store import AsyncSessionStore
    from ._store import SessionStore

    if isinstance(to, AsyncSessionStore):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(
                aimport_adk(from_url, to, table_prefix=table_prefix,
                            skip_unreadable=skip_unreadable)
            )  # fmt: skip
        raise TypeError("import_adk was called inside an event loop: use await aimport_adk(...)")
    _check_target(from_url, to, table_prefix)
    reader = _Reader(from_url, skip_unreadable=skip_unreadable)
    own: SessionStore | None = None
    if isinstance(to, str):
        own = SessionStore(to, table_prefix=table_prefix)
    store = own if own is not None else to
    assert isinstance(store, SessionStore)
    total = ImportResult()
    try:
        for batch in reader.batches():
            total += store.import_records(batch)
    finally:
        reader.close()
        if own is not None:
            own.close()
    return _counts(total, reader)
