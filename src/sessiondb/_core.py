"""The operations, written once.

Each method takes a :class:`~sessiondb._engine.Cx` first and runs sync-style: the sync front end
calls it directly, the async front end through :class:`~sessiondb._engine.AsyncRunner`. Arguments
are checked before the first statement, so bad input never reaches the database.

Writes take one of two paths. The *fast path* is one statement: a whole-state replace, or a
partial update the database can merge itself exactly like ``dict.update``. The *general path*
is one transaction holding the session's row lock: read, change in Python, write back, append
events, route ``app:``/``user:`` keys to their tables. Both are atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _cursors, _json, _records, _scopes
from ._ids import check_id, new_session_id
from ._scopes import Change
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
)
from .models import AppStats, Event, ImportResult, Session, SessionList

if TYPE_CHECKING:
    from ._engine import Cx
    from ._queries import Queries, Stmt

__all__ = ["Core"]

UTC = timezone.utc
_TICK = timedelta(microseconds=1)
# local time = UTC + this, when the process's time zone never changes its offset
_FIXED_OFFSET = None if time.daylight else timedelta(seconds=-time.timezone)
_EVENT_KEYS = frozenset({"author", "content", "state_delta", "invocation_id", "metadata"})


MAX_LABELS = 64
# default delete batches: a SQLite write locks the whole database, a server write only rows
SQLITE_BATCH = 200
SERVER_BATCH = 1000


def iso(value: Any) -> str:
    """A stored naive-UTC timestamp (datetime, or SQLite text) as ISO 8601 with +00:00."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.replace(tzinfo=UTC).isoformat())


def seconds(value: Any, what: str) -> float:
    """A duration (timedelta or seconds) as positive seconds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(
            f"{what} must be a positive timedelta or number of seconds, not {value!r}"
        )
    return float(value)


def check_title(title: Any) -> str | None:
    if title is None:
        return None
    if not isinstance(title, str) or len(title) > 256:
        raise InvalidArgumentError("title must be a str of at most 256 characters")
    return title


def check_labels(labels: Any) -> list[str]:
    if labels is None:
        return []
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise ArgumentTypeError("labels must be an iterable of str, not a single str")
    result = sorted({check_id(label, "label") for label in labels})
    if len(result) > MAX_LABELS:
        raise InvalidArgumentError(f"at most {MAX_LABELS} labels per session")
    return result


class Core:
    """Operation logic and row mapping for one store (one dialect, prefix and options)."""

    q: Queries

    def __init__(
        self, *, tz_aware: bool = False, ttl: float | None = None, sliding: bool = False
    ) -> None:
        self.tz_aware = tz_aware
        self.ttl = ttl
        self.sliding = sliding
        self._last = datetime.min

    def bind(self, queries: Queries) -> None:
        """Attach the compiled statements (once the dialect knows its server)."""
        self.q = queries
        self.pg = queries.pg

    # -- helpers -------------------------------------------------------------------------------

    def read_now(self) -> Any:
        """The driver value of "now" for expiry checks on reads."""
        return self.q.ts_in(datetime.now(UTC).replace(tzinfo=None))

    def now(self) -> datetime:
        """The current naive UTC time, strictly increasing within this process."""
        now = datetime.now(UTC).replace(tzinfo=None)
        if now <= self._last:
            now = self._last + _TICK
        self._last = now
        return now

    def present(self, value: Any) -> datetime:
        """A stored naive-UTC timestamp as the caller sees it: local naive, or aware UTC."""
        if type(value) is str:
            value = datetime.fromisoformat(value)
        if self.tz_aware:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        if _FIXED_OFFSET is not None:  # the local zone has no DST: a fixed shift is exact
            return value + _FIXED_OFFSET  # type: ignore[no-any-return]
        aware: datetime = value.replace(tzinfo=UTC)
        return aware.astimezone().replace(tzinfo=None)

    def dumps(self, value: Any, root: str) -> str:
        return _json.dumps(value, pg=self.pg, root=root)

    def loads(self, text: Any) -> Any:
        return None if text is None else _json.loads(text, pg=self.pg)

    def encode_state(self, state: Any, root: str = "state") -> str:
        """Check and encode a whole state (a dict)."""
        if not isinstance(state, dict):
            raise StateTypeError(f"{root} must be a dict, not {type(state).__name__}")
        return self.dumps(state, root)

    def session(self, row: Any) -> Session:
        """Map a row of ``Queries.cols``, scoped state merged in."""
        present = self.present
        state = _json.loads(row[3], pg=self.pg)
        if row[9] is not None or row[10] is not None:
            _scopes.merge_into(state, self.loads(row[9]), self.loads(row[10]))
        return Session(
            row[0], row[1], row[2], present(row[4]), present(row[5]), state, row[6], row[7],
            row[8], row[11], [] if row[12] is None else self.loads(row[12]),
            None if row[13] is None else present(row[13]),
        )  # fmt: skip

    def event(self, row: Any) -> Event:
        loads = self.loads
        return Event(
            row[0], row[1], row[2], loads(row[3]), self.present(row[4]),
            loads(row[5]), row[6], loads(row[7]),
        )  # fmt: skip

    # -- reads ---------------------------------------------------------------------------------

    def get_session(
        self, cx: Cx, app_name: str, user_id: str, session_id: str, recent_events: int
    ) -> Session | None:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        check_id(session_id, "session_id")
        params = {"sid": session_id, "app": app_name, "user": user_id, "now": self.read_now()}
        row = cx.one(self.q.get_session, params)
        if row is not None:
            row = (session_id, app_name, user_id, *row)
        return self._with_events(cx, row, recent_events)

    def get_session_by_id(self, cx: Cx, session_id: str, recent_events: int) -> Session | None:
        check_id(session_id, "session_id")
        params = {"sid": session_id, "now": self.read_now()}
        return self._with_events(cx, cx.one(self.q.get_by_id, params), recent_events)

    def _with_events(self, cx: Cx, row: Any, recent_events: int) -> Session | None:
        if row is None:
            return None
        session = self.session(row)
        session_id = session.id
        if recent_events:
            session.events = self.list_events(cx, session_id, None, None, recent_events, True)
            session.events.reverse()
        return session

    def list_sessions(self, cx: Cx, app_name: str, user_id: str | None) -> SessionList:
        check_id(app_name, "app_name")
        now = self.read_now()
        if user_id is None:
            rows = cx.all(self.q.list_app, {"app": app_name, "now": now})
        else:
            check_id(user_id, "user_id")
            rows = cx.all(self.q.list_user, {"app": app_name, "user": user_id, "now": now})
            rows = [(r[0], app_name, user_id, *r[1:]) for r in rows]
        session = self.session
        return SessionList([session(r) for r in rows])

    def list_events(
        self,
        cx: Cx,
        session_id: str,
        after_seq: int | None,
        before_seq: int | None,
        limit: int | None,
        newest_first: bool,
    ) -> list[Event]:
        check_id(session_id, "session_id")
        params: dict[str, Any] = {"sid": session_id}
        for name, value in (("after", after_seq), ("before", before_seq), ("limit", limit)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidArgumentError(f"{name} must be a non-negative int, not {value!r}")
                params[name] = value
        if limit == 0:
            return []
        stmt = self.q.list_events(
            after_seq is not None, before_seq is not None, limit is not None, newest_first
        )
        event = self.event
        return [event(r) for r in cx.all(stmt, params)]

    def get_scoped_state(
        self, cx: Cx, scope: str, app_name: str, user_id: str | None
    ) -> dict[str, Any]:
        params = self._scope_params(app_name, user_id)
        row = cx.one(self.q.scopes[scope]["get"], params)
        return {} if row is None else self.loads(row[0])

    def delete_scoped_state(self, cx: Cx, scope: str, app_name: str, user_id: str | None) -> bool:
        return cx.run(self.q.scopes[scope]["delete"], self._scope_params(app_name, user_id)) > 0

    def _scope_params(self, app_name: str, user_id: str | None) -> dict[str, Any]:
        params = {"app": check_id(app_name, "app_name")}
        if user_id is not None:
            params["user"] = check_id(user_id, "user_id")
        return params

    # -- create --------------------------------------------------------------------------------

    def create_session(
        self,
        cx: Cx,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None,
        session_id: str | None,
        ttl: float | None = None,
        sliding: bool | None = None,
        title: str | None = None,
        labels: Iterable[str] | None = None,
    ) -> Session:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        sid = new_session_id() if session_id is None else check_id(session_id, "session_id")
        ttl = self.ttl if ttl is None else seconds(ttl, "ttl")
        sliding = self.sliding if sliding is None else bool(sliding)
        title = check_title(title)
        label_list = check_labels(labels)
        state = {} if state is None else state
        text = self.encode_state(state)
        own, app, user = (Change(set=state), Change(), Change())
        if not _scopes.is_plain(state):
            own, app, user = _scopes.split(state)
            text = self.encode_state(own.set)
        now = self.now()
        expires = None if ttl is None else now + timedelta(seconds=ttl)
        params = {
            "sid": sid, "app": app_name, "user": user_id, "state": text, "now": self.q.ts_in(now),
            "expires": None if expires is None else self.q.ts_in(expires),
            "ttl": ttl if sliding else None, "title": title,
            "labels": self.dumps(label_list, "labels") if label_list else None,
        }  # fmt: skip
        in_tx = bool(app or user or label_list)
        try:
            if in_tx:
                cx.begin()
                self._scope_write(cx, "app", {"app": app_name}, app, now)
                self._scope_write(cx, "user", {"app": app_name, "user": user_id}, user, now)
            if self.q.insert_returns:
                scoped = cx.one(self.q.insert_session, params)
            else:
                cx.run(self.q.insert_plain, params)
                scoped = (
                    self.get_scoped_raw(cx, "app", {"app": app_name}),
                    self.get_scoped_raw(cx, "user", {"app": app_name, "user": user_id}),
                )
            cx.run_many(self.q.insert_label, [{"sid": sid, "label": lb} for lb in label_list])
            if in_tx:
                cx.commit()
        except cx.dbapi.IntegrityError as exc:
            raise SessionExistsError(f"a session with id {sid!r} already exists") from exc
        result = _scopes.merge_into(self.loads(text), self.loads(scoped[0]), self.loads(scoped[1]))
        shown = self.present(now)
        return Session(
            sid, app_name, user_id, shown, shown, result, 1, title=title, labels=label_list,
            expires_at=None if expires is None else self.present(expires),
        )  # fmt: skip

    def get_scoped_raw(self, cx: Cx, scope: str, params: dict[str, Any]) -> Any:
        row = cx.one(self.q.scopes[scope]["get"], params)
        return None if row is None else row[0]

    # -- writes --------------------------------------------------------------------------------

    def update_session_state(
        self, cx: Cx, session_id: str, state: dict[str, Any], expected_version: int | None
    ) -> int:
        check_id(session_id, "session_id")
        text = self.encode_state(state)
        if not _scopes.is_plain(state):
            own, app, user = _scopes.split(state)
            return self._general(cx, session_id, expected_version, own, app, user, replace=True)
        params: dict[str, Any] = {"sid": session_id, "state": text, "now": self.q.ts_in(self.now())}
        stmt = self._with_expected(self.q.update_state, self.q.update_state_expected, params,
                                   expected_version)  # fmt: skip
        version = self._bump(cx, stmt, params)
        if version is None:
            self._missing_or_stale(cx, session_id, expected_version)
        return version  # type: ignore[return-value]

    def patch_state(
        self,
        cx: Cx,
        session_id: str,
        set_: Mapping[str, Any] | None,
        remove: Iterable[str],
        increment: Mapping[str, int | float] | None,
        expected_version: int | None,
    ) -> int:
        check_id(session_id, "session_id")
        set_ = dict(set_ or {})
        remove = list(remove)
        increment = dict(increment or {})
        set_text = self.dumps(set_, "set")
        for key in remove:
            if not isinstance(key, str):
                raise StateTypeError(f"remove holds {key!r}: state keys are str")
        for key, by in increment.items():
            if not isinstance(key, str):
                raise StateTypeError(f"increment has the key {key!r}: state keys are str")
            if isinstance(by, bool) or not isinstance(by, (int, float)):
                raise StateTypeError(f"increment[{key!r}] must be a number, not {by!r}")
        _json.check(increment, "increment")
        if self._fast_patch_ok(set_, remove, increment):
            params: dict[str, Any] = {
                "sid": session_id,
                "set": set_text,
                "now": self.q.ts_in(self.now()),
            }
            stmt = self._with_expected(self.q.patch_fast, self.q.patch_fast_expected, params,
                                       expected_version)  # fmt: skip
            version = self._bump(cx, stmt, params)
            if version is not None:
                return version
            # not found, stale, or (MariaDB) too deep for its JSON functions: the general
            # path tells which, and copes with the last
        own, app, user = _scopes.split(set_, remove, increment)
        return self._general(cx, session_id, expected_version, own, app, user)

    def _fast_patch_ok(
        self, set_: dict[str, Any], remove: list[str], increment: dict[str, Any]
    ) -> bool:
        if remove or increment or not set_ or not _scopes.is_plain(set_):
            return False
        if self.pg:  # `||` is dict.update, whatever the values
            return True
        # RFC 7396 merge patch equals dict.update unless a value is an object or null
        return all(v is not None and not isinstance(v, dict) for v in set_.values())

    def append_events(
        self,
        cx: Cx,
        session_id: str,
        events: Sequence[Mapping[str, Any]],
        expected_version: int | None,
    ) -> list[Event]:
        check_id(session_id, "session_id")
        if isinstance(events, Mapping) or not isinstance(events, Sequence):
            raise ArgumentTypeError("events must be a sequence of mappings")
        prepared = [self._prepare_event(i, e) for i, e in enumerate(events)]
        if not prepared:
            return []
        delta: dict[str, Any] = {}
        for event in events:
            delta.update(event.get("state_delta") or {})
        own, app, user = _scopes.split(delta)
        appended: list[Event] = []
        self._general(
            cx, session_id, expected_version, own, app, user, events=prepared, out=appended
        )
        return appended

    def _prepare_event(self, index: int, event: Mapping[str, Any]) -> dict[str, Any]:
        root = f"events[{index}]"
        if not isinstance(event, Mapping):
            raise StateTypeError(f"{root} must be a mapping, not {type(event).__name__}")
        unknown = set(event) - _EVENT_KEYS
        if unknown:
            raise ArgumentTypeError(
                f"{root} has unknown keys {sorted(unknown)}; use {sorted(_EVENT_KEYS)}"
            )
        author = check_id(event.get("author"), f"{root}['author']")
        content = self.dumps(event.get("content"), f"{root}['content']")
        delta = event.get("state_delta")
        delta_text = None if delta is None else self.encode_state(delta, f"{root}['state_delta']")
        meta = event.get("metadata")
        meta_text = None if meta is None else self.encode_state(meta, f"{root}['metadata']")
        invocation = event.get("invocation_id")
        if invocation is not None:
            check_id(invocation, f"{root}['invocation_id']")
        size = sum(len(t.encode()) for t in (content, delta_text, meta_text) if t is not None)
        return {
            "author": author, "content": content, "delta": delta_text, "meta": meta_text,
            "invocation": invocation, "size": size,
        }  # fmt: skip

    def transform_state(
        self,
        cx: Cx,
        session_id: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        attempts: int,
    ) -> int:
        """Read, ``fn(state)``, write with ``expected_version``; retry when another writer won."""
        check_id(session_id, "session_id")
        for attempt in range(attempts):
            row = cx.one(self.q.get_by_id, {"sid": session_id, "now": self.read_now()})
            if row is None:
                raise SessionNotFoundError(f"no session with id {session_id!r}")
            session = self.session(row)
            result = fn(session.state)
            new_state = session.state if result is None else result
            try:
                return self.update_session_state(cx, session_id, new_state, session.version)
            except StaleSessionError:
                if attempt == attempts - 1:
                    raise
                # another writer won: re-read its result and apply fn to that
        raise InvalidArgumentError("attempts must be at least 1")

    # -- deletes -------------------------------------------------------------------------------

    def delete_session(
        self, cx: Cx, session_id: str, app_name: str | None, user_id: str | None
    ) -> bool:
        check_id(session_id, "session_id")
        if app_name is None and user_id is None:
            return cx.run(self.q.delete_session, {"sid": session_id}) > 0
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        return (
            cx.run(self.q.delete_owned, {"sid": session_id, "app": app_name, "user": user_id}) > 0
        )

    def clear_sessions(self, cx: Cx, app_name: str, user_id: str | None) -> int:
        check_id(app_name, "app_name")
        if user_id is None:
            return cx.run(self.q.clear_app, {"app": app_name})
        check_id(user_id, "user_id")
        return cx.run(self.q.clear_user, {"app": app_name, "user": user_id})

    def delete_user_data(self, cx: Cx, app_name: str, user_id: str) -> int:
        params = self._scope_params(app_name, check_id(user_id, "user_id"))
        cx.begin()
        count = cx.run(self.q.delete_user_sessions, params)
        cx.run(self.q.scopes["user"]["delete"], params)
        cx.commit()
        return count

    # -- listing at scale -----------------------------------------------------------------------

    def _filter_params(
        self, app_name: str | None, user_id: str | None, label: str | None, **bounds: Any
    ) -> tuple[set[str], dict[str, Any]]:
        names: set[str] = set()
        params: dict[str, Any] = {}
        if app_name is not None:
            names.add("app")
            params["app"] = check_id(app_name, "app_name")
        if user_id is not None:
            if app_name is None:
                raise InvalidArgumentError("user_id needs app_name: users belong to an app")
            names.add("user")
            params["user"] = check_id(user_id, "user_id")
        if label is not None:
            names.add("label")
            params["label"] = check_id(label, "label")
        for name, value in bounds.items():
            if value is not None:
                if not isinstance(value, datetime):
                    raise ArgumentTypeError(
                        f"{name} must be a datetime, not {type(value).__name__}"
                    )
                names.add(name)
                params[name] = self.q.ts_in(self.to_utc(value))
        return names, params

    def to_utc(self, value: datetime) -> datetime:
        """A caller's datetime (naive local, or aware) as naive UTC."""
        if value.tzinfo is None:
            value = value.astimezone()  # naive means local, as returned by default
        return value.astimezone(UTC).replace(tzinfo=None)

    def list_page(
        self,
        cx: Cx,
        app_name: str | None,
        user_id: str | None,
        limit: int | None,
        cursor: str | None,
        order: str,
        label: str | None,
        include_state: bool,
        bounds: dict[str, datetime | None],
    ) -> SessionList:
        if order not in ("updated", "created"):
            raise InvalidArgumentError("order must be 'updated' or 'created'")
        names, params = self._filter_params(app_name, user_id, label, **bounds)
        names.add("live")
        params["now"] = self.read_now()
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidArgumentError(f"limit must be a positive int, not {limit!r}")
            params["limit"] = limit + 1  # one more tells whether another page follows
        if cursor is not None:
            params["cursor_at"], params["cursor_id"] = self.q_cursor(cursor, order)
        stmt = self.q.list_page(
            frozenset(names), order, cursor is not None, limit is not None, not include_state
        )
        rows = cx.all(stmt, params)
        next_cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = _cursors.encode(
                order, last[5] if order == "updated" else last[4], last[0]
            )
        session = self.session
        return SessionList([session(r) for r in rows], next_cursor)

    def q_cursor(self, cursor: str, order: str) -> tuple[Any, str]:
        at, sid = _cursors.decode(cursor, order)
        return self.q.ts_in(at), sid

    def count_sessions(
        self, cx: Cx, app_name: str | None, user_id: str | None, label: str | None
    ) -> int:
        names, params = self._filter_params(app_name, user_id, label)
        names.add("live")
        params["now"] = self.read_now()
        return int(cx.one(self.q.count(frozenset(names)), params)[0])

    # -- expiry and cleanup --------------------------------------------------------------------

    def delete_matching(
        self,
        cx: Cx,
        names: set[str],
        params: dict[str, Any],
        batch_size: int | None,
        dry_run: bool,
    ) -> int:
        """Delete (or count) the sessions matching the filters, in bounded batches."""
        if batch_size is None:
            batch_size = SQLITE_BATCH if self.q.backend == "sqlite" else SERVER_BATCH
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive int, not {batch_size!r}")
        f = frozenset(names)
        if dry_run:
            return int(cx.one(self.q.count(f), params)[0])
        total = 0
        pick = self.q.pick_ids(f)
        while True:
            ids = [r[0] for r in cx.all(pick, {**params, "limit": batch_size})]
            if not ids:
                return total
            # each batch is its own short statement: concurrent readers and writers wait
            # at most one batch, never the whole purge
            total += cx.run(self.q.delete_ids(len(ids)), {f"id{i}": v for i, v in enumerate(ids)})
            if len(ids) < batch_size:
                return total

    def purge_expired(self, cx: Cx, batch_size: int | None, dry_run: bool) -> int:
        return self.delete_matching(cx, {"expired"}, {}, batch_size, dry_run)

    def delete_sessions(
        self,
        cx: Cx,
        app_name: str | None,
        user_id: str | None,
        older_than: Any,
        created_before: datetime | None,
        updated_before: datetime | None,
        batch_size: int | None,
        dry_run: bool,
    ) -> int:
        if older_than is not None:
            cutoff = datetime.now(UTC) - timedelta(seconds=seconds(older_than, "older_than"))
            if created_before is None or cutoff < created_before.astimezone(UTC):
                created_before = cutoff
        if created_before is None and updated_before is None and app_name is None:
            raise InvalidArgumentError(
                "delete_sessions needs app_name, older_than, created_before or updated_before "
                "(to delete everything, say so with app_name)"
            )
        names, params = self._filter_params(
            app_name, user_id, None, created_before=created_before, updated_before=updated_before
        )
        return self.delete_matching(cx, names, params, batch_size, dry_run)

    # -- metadata ------------------------------------------------------------------------------

    def set_metadata(self, cx: Cx, session_id: str, changes: dict[str, Any]) -> int:
        check_id(session_id, "session_id")
        unknown = set(changes) - {"title", "labels", "ttl", "sliding"}
        if unknown:
            raise ArgumentTypeError(f"unknown metadata {sorted(unknown)}")
        title = check_title(changes.get("title")) if "title" in changes else None
        labels = check_labels(changes.get("labels")) if "labels" in changes else None
        now, stamp, row = self._lock(cx, self.q.lock_info, session_id)
        version, old_title, old_labels, expires, ttl = row
        if "title" in changes:
            old_title = title
        if labels is not None:
            old_labels = self.dumps(labels, "labels") if labels else None
            cx.run(self.q.delete_labels, {"sid": session_id})
            cx.run_many(self.q.insert_label, [{"sid": session_id, "label": lb} for lb in labels])
        if "ttl" in changes:
            if changes["ttl"] is None:
                expires, ttl = None, None
            else:
                ttl = seconds(changes["ttl"], "ttl")
                expires = self.q.ts_in(now + timedelta(seconds=ttl))
                if not changes.get("sliding", self.sliding):
                    ttl = None
        elif expires is not None and not isinstance(expires, str):
            expires = self.q.ts_in(expires)
        cx.run(
            self.q.write_info,
            {"sid": session_id, "title": old_title, "labels": old_labels, "expires": expires,
             "ttl": ttl, "now": stamp, "version": version + 1},
        )  # fmt: skip
        cx.commit()
        return int(version) + 1

    # -- administration ------------------------------------------------------------------------

    def stats(self, cx: Cx) -> list[AppStats]:
        rows = cx.all(self.q.stats, {"now": self.read_now()})
        present = self.present
        return [
            AppStats(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                     None if r[6] is None else present(r[6]),
                     None if r[7] is None else present(r[7]))
            for r in rows
        ]  # fmt: skip

    def export_page(
        self, cx: Cx, app_name: str | None, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """One page of session records (with their events) in creation order."""
        params: dict[str, Any] = {"limit": limit}
        if app_name is not None:
            params["app"] = check_id(app_name, "app_name")
        if after is not None:
            at = datetime.fromisoformat(after[0]).astimezone(UTC).replace(tzinfo=None)
            params["cursor_at"] = self.q.ts_in(at)
            params["cursor_id"] = after[1]
        rows = cx.all(self.q.export_page(app_name is not None, after is not None), params)
        if not rows:
            return [], None
        ids = [r[0] for r in rows]
        events: dict[str, list[dict[str, Any]]] = {sid: [] for sid in ids}
        for e in cx.all(self.q.events_of(len(ids)), {f"id{i}": v for i, v in enumerate(ids)}):
            events[e[0]].append(
                {"seq": e[1], "author": e[2], "content": self.loads(e[3]),
                 "created_at": iso(e[4]), "state_delta": self.loads(e[5]),
                 "invocation_id": e[6], "metadata": self.loads(e[7])}
            )  # fmt: skip
        records = [
            {"type": "session", "id": r[0], "app_name": r[1], "user_id": r[2],
             "state": self.loads(r[3]), "created_at": iso(r[4]), "updated_at": iso(r[5]),
             "version": r[6], "expires_at": None if r[7] is None else iso(r[7]),
             "ttl_seconds": r[8], "title": r[9],
             "labels": [] if r[10] is None else self.loads(r[10]), "events": events[r[0]]}
            for r in rows
        ]  # fmt: skip
        last = rows[-1]
        return records, (iso(last[4]), last[0])

    def export_scopes(self, cx: Cx, app_name: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in cx.all(self.q.all_app_states, {}):
            if app_name is None or r[0] == app_name:
                out.append({"type": "app_state", "app_name": r[0], "state": self.loads(r[1])})
        for r in cx.all(self.q.all_user_states, {}):
            if app_name is None or r[0] == app_name:
                out.append(
                    {"type": "user_state", "app_name": r[0], "user_id": r[1],
                     "state": self.loads(r[2])}
                )  # fmt: skip
        return out

    def import_batch(self, cx: Cx, records: list[Any]) -> ImportResult:
        """Write exported records; sessions already at that version or newer are skipped."""
        result = ImportResult()
        prepared = [_records.check(i, r) for i, r in enumerate(records)]
        ts = self.q.ts_in
        cx.begin()
        for rec in prepared:
            kind = rec["type"]
            if kind in ("app_state", "user_state"):
                scope = kind.split("_")[0]
                params = {"app": rec["app_name"], "now": ts(self.now())}
                if scope == "user":
                    params["user"] = rec["user_id"]
                stmts = self.q.scopes[scope]
                cx.run(stmts["ensure"], {**params, "state": "{}"})
                cx.run(stmts["write"], {**params, "state": self.encode_state(rec["state"])})
                if scope == "app":
                    result.app_states += 1
                else:
                    result.user_states += 1
                continue
            sid = rec["id"]
            existing = cx.one(self.q.get_any_version, {"sid": sid})
            params = {
                "sid": sid, "app": rec["app_name"], "user": rec["user_id"],
                "state": self.encode_state(rec["state"]), "created": ts(rec["created_at"]),
                "updated": ts(rec["updated_at"]), "version": rec["version"],
                "expires": None if rec["expires_at"] is None else ts(rec["expires_at"]),
                "ttl": rec["ttl_seconds"], "title": rec["title"],
                "labels": self.dumps(rec["labels"], "labels") if rec["labels"] else None,
            }  # fmt: skip
            if existing is None:
                cx.run(self.q.import_session, params)
            elif int(existing[0]) < rec["version"]:
                cx.run(self.q.import_update, params)
            else:
                result.skipped += 1
            if existing is None or int(existing[0]) < rec["version"]:
                result.sessions += 1
                cx.run(self.q.delete_labels, {"sid": sid})
                cx.run_many(
                    self.q.insert_label, [{"sid": sid, "label": lb} for lb in rec["labels"]]
                )
            new_events = 0
            for e in rec["events"]:
                content = self.dumps(e["content"], "content")
                delta = None if e["state_delta"] is None else self.encode_state(e["state_delta"])
                meta = None if e["metadata"] is None else self.encode_state(e["metadata"])
                size = sum(len(t.encode()) for t in (content, delta, meta) if t is not None)
                new_events += cx.run(
                    self.q.import_event,
                    {"sid": sid, "seq": e["seq"], "author": e["author"], "content": content,
                     "delta": delta, "invocation": e["invocation_id"], "meta": meta,
                     "now": ts(e["created_at"]), "size": size},
                )  # fmt: skip
            if new_events > 0:
                result.events += new_events
            cx.run(self.q.recount, {"sid": sid})
        cx.commit()
        return result

    def backup(self, cx: Cx, path: str) -> None:
        """SQLite's online backup of the whole database into ``path``."""
        import sqlite3

        cx.connect()
        try:
            target = sqlite3.connect(path)
        except sqlite3.Error as exc:
            raise InvalidArgumentError(f"cannot write a backup to {path!r}: {exc}") from exc
        try:
            cx.driver_connection().backup(target)
        except sqlite3.OperationalError as exc:
            if "backup" in str(exc) or not str(exc):
                raise
            raise InvalidArgumentError(f"cannot write a backup to {path!r}: {exc}") from exc
        finally:
            target.close()

    # -- shared steps --------------------------------------------------------------------------

    @staticmethod
    def _with_expected(
        plain: Stmt, guarded: Stmt, params: dict[str, Any], expected: int | None
    ) -> Stmt:
        if expected is None:
            return plain
        params["expected"] = int(expected)
        return guarded

    def _bump(self, cx: Cx, stmt: Stmt, params: dict[str, Any]) -> int | None:
        """Run a version-advancing UPDATE; the new version, or None if no row matched."""
        if self.q.returning:
            row = cx.one(stmt, params)
            return None if row is None else int(row[0])
        if cx.run(stmt, params) == 0:
            return None
        return cx.lastrowid

    def _missing_or_stale(self, cx: Cx, session_id: str, expected: int | None) -> None:
        row = cx.one(self.q.get_version, {"sid": session_id, "now": self.read_now()})
        if row is None:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        raise StaleSessionError(
            f"session {session_id!r} is at version {row[0]}, not the expected {expected}",
            expected=expected,
            actual=int(row[0]),
        )

    def _general(
        self,
        cx: Cx,
        session_id: str,
        expected: int | None,
        own: Change,
        app: Change,
        user: Change,
        *,
        replace: bool = False,
        events: list[dict[str, Any]] | None = None,
        out: list[Event] | None = None,
    ) -> int:
        """The general write path: one transaction under the session's row lock."""
        now, stamp, row = self._lock(cx, self.q.lock_session, session_id)
        app_name, user_id, text, version, last_seq = row
        if expected is not None and int(expected) != version:
            raise StaleSessionError(
                f"session {session_id!r} is at version {version}, not the expected {expected}",
                expected=int(expected),
                actual=int(version),
            )
        state = own.set if replace else own.apply(self.loads(text))
        new_text = self.encode_state(state)
        self._scope_write(cx, "app", {"app": app_name}, app, now)
        self._scope_write(cx, "user", {"app": app_name, "user": user_id}, user, now)
        events = events or []
        rows = [
            {**e, "sid": session_id, "seq": last_seq + i, "now": stamp}
            for i, e in enumerate(events, 1)
        ]
        cx.run(
            self.q.write_session,
            {
                "sid": session_id,
                "state": new_text,
                "now": stamp,
                "version": version + 1,
                "last_seq": last_seq + len(rows),
                "n_events": len(rows),
                "n_bytes": sum(e["size"] for e in events),
            },
        )
        cx.run_many(self.q.insert_event, rows)
        cx.commit()
        if out is not None:
            shown = self.present(now)
            loads = self.loads
            out.extend(
                Event(session_id, r["seq"], r["author"], loads(r["content"]), shown,
                      loads(r["delta"]), r["invocation"], loads(r["meta"]))
                for r in rows
            )  # fmt: skip
        return int(version) + 1

    def _lock(self, cx: Cx, stmt: Stmt, session_id: str) -> tuple[datetime, Any, Any]:
        """Open a transaction and lock the (live) session's row: (now, its driver form, row)."""
        now = self.now()
        stamp = self.q.ts_in(now)
        cx.begin()
        row = cx.one(stmt, {"sid": session_id, "now": stamp})
        if row is None:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        return now, stamp, row

    def _scope_write(
        self, cx: Cx, scope: str, params: dict[str, Any], change: Change, now: datetime
    ) -> None:
        """Apply ``change`` to a scoped state: make sure its row exists, lock it, rewrite it."""
        if not change:
            return
        stmts = self.q.scopes[scope]
        stamp = self.q.ts_in(now)
        cx.run(stmts["ensure"], {**params, "state": "{}", "now": stamp})
        row = cx.one(stmts["lock"], params)
        prefix = _scopes.APP if scope == "app" else _scopes.USER
        state = change.apply(self.loads(row[0]), prefix)
        cx.run(
            stmts["write"],
            {**params, "state": self.encode_state(state, f"{scope} state"), "now": stamp},
        )
