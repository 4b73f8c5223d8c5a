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

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _json, _scopes
from ._ids import check_id, new_session_id
from ._scopes import Change
from .errors import (
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
)
from .models import Event, Session

if TYPE_CHECKING:
    from ._engine import Cx
    from ._queries import Queries, Stmt

__all__ = ["Core"]

UTC = timezone.utc
_TICK = timedelta(microseconds=1)
_EVENT_KEYS = frozenset({"author", "content", "state_delta", "invocation_id", "metadata"})


class Core:
    """Operation logic and row mapping for one store (one dialect, prefix and options)."""

    q: Queries

    def __init__(self, *, tz_aware: bool = False) -> None:
        self.tz_aware = tz_aware
        self._last = datetime.min

    def bind(self, queries: Queries) -> None:
        """Attach the compiled statements (once the dialect knows its server)."""
        self.q = queries
        self.pg = queries.pg

    # -- helpers -------------------------------------------------------------------------------

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
        aware: datetime = value.replace(tzinfo=UTC)
        return aware if self.tz_aware else aware.astimezone().replace(tzinfo=None)

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
        """Map a row of the session columns (see ``Queries``), scoped state merged in."""
        present = self.present
        state = _json.loads(row[3], pg=self.pg)
        if row[9] is not None or row[10] is not None:
            _scopes.merge_into(state, self.loads(row[9]), self.loads(row[10]))
        return Session(
            row[0], row[1], row[2], present(row[4]), present(row[5]), state, row[6], row[7], row[8]
        )

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
        row = cx.one(self.q.get_session, {"sid": session_id, "app": app_name, "user": user_id})
        if row is None:
            return None
        session = self.session(row)
        if recent_events:
            session.events = self.list_events(cx, session_id, None, None, recent_events, True)
            session.events.reverse()
        return session

    def list_sessions(self, cx: Cx, app_name: str, user_id: str | None) -> list[Session]:
        check_id(app_name, "app_name")
        if user_id is None:
            rows = cx.all(self.q.list_app, {"app": app_name})
        else:
            check_id(user_id, "user_id")
            rows = cx.all(self.q.list_user, {"app": app_name, "user": user_id})
        session = self.session
        return [session(r) for r in rows]

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
                    raise ValueError(f"{name} must be a non-negative int, not {value!r}")
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
    ) -> Session:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        sid = new_session_id() if session_id is None else check_id(session_id, "session_id")
        state = {} if state is None else state
        text = self.encode_state(state)
        own, app, user = (Change(set=state), Change(), Change())
        if not _scopes.is_plain(state):
            own, app, user = _scopes.split(state)
            text = self.encode_state(own.set)
        now = self.now()
        params = {
            "sid": sid,
            "app": app_name,
            "user": user_id,
            "state": text,
            "now": self.q.ts_in(now),
        }
        try:
            if app or user:
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
            if app or user:
                cx.commit()
        except cx.dbapi.IntegrityError as exc:
            raise SessionExistsError(f"a session with id {sid!r} already exists") from exc
        result = _scopes.merge_into(self.loads(text), self.loads(scoped[0]), self.loads(scoped[1]))
        shown = self.present(now)
        return Session(sid, app_name, user_id, shown, shown, result, 1)

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
            raise TypeError("events must be a sequence of mappings")
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
            raise TypeError(f"{root} has unknown keys {sorted(unknown)}; use {sorted(_EVENT_KEYS)}")
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
            row = cx.one(self.q.get_by_id, {"sid": session_id})
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
        raise ValueError("attempts must be at least 1")

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
        row = cx.one(self.q.get_version, {"sid": session_id})
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
        cx.begin()
        row = cx.one(self.q.lock_session, {"sid": session_id})
        if row is None:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        app_name, user_id, text, version, last_seq = row
        if expected is not None and int(expected) != version:
            raise StaleSessionError(
                f"session {session_id!r} is at version {version}, not the expected {expected}",
                expected=int(expected),
                actual=int(version),
            )
        state = own.set if replace else own.apply(self.loads(text))
        new_text = self.encode_state(state)
        now = self.now()
        self._scope_write(cx, "app", {"app": app_name}, app, now)
        self._scope_write(cx, "user", {"app": app_name, "user": user_id}, user, now)
        events = events or []
        stamp = self.q.ts_in(now)
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
