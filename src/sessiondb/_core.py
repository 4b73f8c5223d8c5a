"""The operations, written once.

Each method takes a :class:`~sessiondb._runner.Cx` first, then keyword arguments, and runs
sync-style: the sync front end calls it through :meth:`Backend.call
<sessiondb._backend.Backend.call>`, the async one through :class:`~sessiondb._runner.AsyncRunner`.
Arguments are checked (:mod:`sessiondb._checks`) before the first statement, so bad input never
reaches the database. Rows become sessions and events in :mod:`sessiondb._rows`; export and
import live in :mod:`sessiondb._transfer`.

Writes take one of two paths. The *fast path* is one statement: a whole-state replace, or a
partial update the database can merge itself exactly like ``dict.update``. The *general path*
is one transaction holding the session's row lock: read, change in Python, write back, append
events, route ``app:``/``user:`` keys to their tables. Both are atomic.

A whole-state write writes only the ``app:``/``user:`` keys the caller changed: every read
tells :attr:`Core.reads` what it handed out, and :func:`sessiondb._scopes.decide` compares
(docs/state.md, "Whole-state writes and shared keys").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from . import _checkpoints, _checks, _cursors, _json, _scopes
from ._ids import check_id, new_session_id
from ._replicas import quick, quick_write, reads
from ._rows import UTC, Row, Rows
from ._scopes import Change, Decision, Reads
from .errors import (
    AmbiguousSessionError,
    ArgumentTypeError,
    InvalidArgumentError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
)
from .models import AppStats, Event, Session, SessionList

if TYPE_CHECKING:
    from ._queries import Queries, Stmt
    from ._runner import Cx, Step

__all__ = ["Core"]

Scope = Literal["app", "user"]
#: A session's key as the statements bind it: {"app": app_name, "user": user_id, "sid": id}
Key = dict[str, Any]
_EVENT_KEYS = frozenset(
    {"author", "content", "state_delta", "invocation_id", "metadata", "event_id"}
)
_METADATA_KEYS = frozenset({"title", "labels", "ttl", "sliding"})
# default delete batches: a SQLite write locks the whole database, a server write only rows
SQLITE_BATCH = 200
SERVER_BATCH = 1000
#: events appended in PostgreSQL's one statement (12 parameters each; more take the general
#: path, whose executemany has no parameter limit, and the statements cached stay few)
PG_EVENTS_PER_STATEMENT = 64


class Core:
    """The operations of one store (one dialect, table prefix and set of options)."""

    q: Queries

    def __init__(self, rows: Rows, *, ttl: float | None = None, sliding: bool = False) -> None:
        self.rows = rows
        self.ttl = ttl
        self.sliding = sliding
        self.reads = Reads()
        """What this store's reads handed out of each session's scopes (bounded)."""

    def bind(self, queries: Queries) -> None:
        """Attach the compiled statements (once the dialect knows its server), and build the
        readers of their rows."""
        q = self.q = queries
        self.pg = queries.pg
        rows = self.rows
        # get_session and list_user bind the owner instead of selecting it: the caller appends
        # those values to each row, in the order named here
        seen = self.reads.add
        self._read_owned = rows.session_reader(
            q.get_session.columns, ("id", "app_name", "user_id"), seen
        )
        self._read_session = rows.session_reader(q.get_by_id.columns, remember=seen)
        # listings read their rows in one go, and tell self.reads about them under one lock
        seen_all = self.reads.add_many
        self._read_of_user = rows.sessions_reader(
            q.list_user.columns, ("app_name", "user_id"), seen_all
        )
        self._read_app = rows.sessions_reader(q.list_app.columns, remember=seen_all)
        # transform_state takes what it read from the row itself (its exact base)
        self._read_base = rows.session_reader(q.get_by_key.columns)
        self._base_at = q.get_by_key.positions("app_state", "user_state")
        self._read_base_by_id = rows.session_reader(q.get_by_id.columns)
        self._base_by_id_at = q.get_by_id.positions("app_state", "user_state")
        # readers of the statements built on demand (listings, event slices), by columns
        self._readers: dict[
            tuple[tuple[str, ...], bool], Callable[[Iterable[Row], tuple[Any, ...]], list[Session]]
        ] = {}
        self._event_readers: dict[tuple[str, ...], Callable[[Row], Event]] = {}
        self._last_readers: dict[tuple[str, ...], Callable[[Row], Session]] = {}
        self._read_stats = rows.stats_reader(q.stats.columns)
        self._version_at = q.get_version.at("version")
        self._locked_at = q.lock_session.positions("state", "version", "last_seq")
        self._locked_by_id_at = q.lock_session_by_id.positions(
            "app_name", "user_id", "state", "version", "last_seq"
        )
        self._lock_version_at = q.lock_version.at("version")
        if q.insert_returns:
            self._inserted_at = q.insert_session.positions("app_state", "user_state")

    def _reader(
        self, stmt: Stmt, light: bool
    ) -> Callable[[Iterable[Row], tuple[Any, ...]], list[Session]]:
        """The sessions reader of a statement built on demand (a listing's shape); a light
        listing hands out no state, so it tells :attr:`reads` nothing."""
        read = self._readers.get((stmt.columns, light))
        if read is None:
            read = self._readers[stmt.columns, light] = self.rows.sessions_reader(
                stmt.columns, remember=None if light else self.reads.add_many
            )
        return read

    def _event_reader(self, stmt: Stmt) -> Callable[[Row], Event]:
        """The event reader of a statement built on demand (an event slice)."""
        read = self._event_readers.get(stmt.columns)
        if read is None:
            read = self._event_readers[stmt.columns] = self.rows.event_reader(stmt.columns)
        return read

    # -- whose session ------------------------------------------------------------------------

    def _key(
        self,
        cx: Cx,
        session_id: str,
        app_name: str | None,
        user_id: str | None,
        *,
        live: bool = True,
    ) -> Key | None:
        """The key of a session: its owner as given, or else looked up by id (one indexed
        read of at most two rows). None when no (live, unless ``live`` is False) session has
        that id; :class:`AmbiguousSessionError` when several owners have one."""
        check_id(session_id, "session_id")
        if app_name is not None or user_id is not None:
            if app_name is None or user_id is None:
                raise InvalidArgumentError(
                    "pass both app_name and user_id (the session's owner), or neither"
                )
            return {
                "app": check_id(app_name, "app_name"),
                "user": check_id(user_id, "user_id"),
                "sid": session_id,
            }
        q = self.q
        if live:
            rows = cx.all(q.owners_live, {"sid": session_id, "now": self.rows.read_now()})
        else:
            rows = cx.all(q.owners, {"sid": session_id})
        if not rows:
            return None
        if len(rows) > 1:
            raise self._ambiguous(session_id)
        i_app, i_user = q.owners.positions("app_name", "user_id")
        return {"app": rows[0][i_app], "user": rows[0][i_user], "sid": session_id}

    @staticmethod
    def _ambiguous(session_id: str) -> AmbiguousSessionError:
        return AmbiguousSessionError(
            f"session id {session_id!r} is shared by several users (ids are per app and "
            "user): pass app_name and user_id to say whose session"
        )

    def _found(self, cx: Cx, session_id: str, app_name: str | None, user_id: str | None) -> Key:
        """The key of a live session, else :class:`SessionNotFoundError`."""
        key = self._key(cx, session_id, app_name, user_id)
        if key is None:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        return key

    # -- reads ---------------------------------------------------------------------------------

    @quick
    def get_session(
        self, cx: Cx, *, app_name: str, user_id: str, session_id: str, recent_events: int
    ) -> Session | None:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        check_id(session_id, "session_id")
        params = {"sid": session_id, "app": app_name, "user": user_id, "now": self.rows.read_now()}
        row = cx.one(self.q.get_session, params)
        if row is None:
            return None
        return self._with_events(
            cx, self._read_owned((*row, session_id, app_name, user_id)), recent_events
        )

    @quick
    def get_session_by_id(
        self,
        cx: Cx,
        *,
        session_id: str,
        recent_events: int,
        app_name: str | None = None,
        user_id: str | None = None,
        include_expired: bool = False,
    ) -> Session | None:
        if include_expired:
            key = self._key(cx, session_id, app_name, user_id, live=False)
            row = None if key is None else cx.one(self.q.get_any, key)
            if row is None:
                return None
            return self._with_events(cx, self._read_session(row), recent_events)
        if app_name is not None or user_id is not None:
            key = self._key(cx, session_id, app_name, user_id)
            assert key is not None
            return self.get_session(
                cx, app_name=key["app"], user_id=key["user"], session_id=session_id,
                recent_events=recent_events,
            )  # fmt: skip
        check_id(session_id, "session_id")
        rows = cx.all(self.q.get_by_id, {"sid": session_id, "now": self.rows.read_now()})
        if not rows:
            return None
        if len(rows) > 1:
            raise self._ambiguous(session_id)
        return self._with_events(cx, self._read_session(rows[0]), recent_events)

    def _with_events(self, cx: Cx, session: Session, recent_events: int) -> Session:
        if recent_events:
            session.events = self._events(
                cx, {"app": session.app_name, "user": session.user_id, "sid": session.id},
                None, None, recent_events, True,
            )  # fmt: skip
            session.events.reverse()
        return session

    @quick
    def list_sessions(
        self,
        cx: Cx,
        *,
        app_name: str | None,
        user_id: str | None,
        limit: int | None,
        cursor: str | None,
        order: str,
        label: str | None,
        include_state: bool,
        created_after: datetime | None,
        created_before: datetime | None,
        updated_after: datetime | None,
        updated_before: datetime | None,
        include_expired: bool = False,
    ) -> SessionList:
        """A listing: the guide's whole list of one app or user, or a filtered page."""
        bounds = {
            "created_after": created_after, "created_before": created_before,
            "updated_after": updated_after, "updated_before": updated_before,
        }  # fmt: skip
        if (
            app_name is not None and limit is None and cursor is None and order == "updated"
            and label is None and include_state and not any(bounds.values())
            and not include_expired
        ):  # fmt: skip
            return self._list_owned(cx, app_name, user_id)
        return self._list_page(
            cx, app_name, user_id, limit, cursor, order, label, include_state, bounds,
            include_expired,
        )  # fmt: skip

    def _list_owned(self, cx: Cx, app_name: str, user_id: str | None) -> SessionList:
        """Every live session of an app (or of one user), newest update first."""
        check_id(app_name, "app_name")
        now = self.rows.read_now()
        if user_id is None:
            return SessionList(
                self._read_app(cx.all(self.q.list_app, {"app": app_name, "now": now}), ())
            )
        check_id(user_id, "user_id")
        rows = cx.all(self.q.list_user, {"app": app_name, "user": user_id, "now": now})
        return SessionList(self._read_of_user(rows, (app_name, user_id)))

    @reads
    def list_with_last_event(self, cx: Cx, *, app_name: str, user_id: str | None) -> SessionList:
        """Every live session of an app (or of one user), newest update first, each with its
        last event in ``events`` (``[]`` if it has none): one statement."""
        check_id(app_name, "app_name")
        q, now = self.q, self.rows.read_now()
        given: tuple[str, ...]
        if user_id is None:
            stmt, params, given = q.list_app_last, {"app": app_name, "now": now}, ()
        else:
            check_id(user_id, "user_id")
            stmt = q.list_user_last
            params, given = {"app": app_name, "user": user_id, "now": now}, (app_name, user_id)
        read = self._last_readers.get(stmt.columns)
        if read is None:
            read = self._last_readers[stmt.columns] = self._last_reader(stmt, bool(given))
        return SessionList([read((*r, *given)) for r in cx.all(stmt, params)])

    def _last_reader(self, stmt: Stmt, owned: bool) -> Callable[[Row], Session]:
        """The reader of a listing row holding a session and its last event's columns."""
        from ._queries import LAST_EVENT

        read_session = self.rows.session_reader(
            stmt.columns, ("app_name", "user_id") if owned else (), self.reads.add
        )
        # the event reader finds its columns by their plain names; the session's are renamed
        names = [
            n[len(LAST_EVENT) :] if n.startswith(LAST_EVENT) else f"session.{n}"
            for n in stmt.columns
        ]
        read_event = self.rows.event_reader(names)
        i_seq = names.index("seq")

        def read(row: Row) -> Session:
            session = read_session(row)
            session.events = [] if row[i_seq] is None else [read_event(row)]
            return session

        return read

    @quick
    def list_events(
        self,
        cx: Cx,
        *,
        session_id: str,
        after_seq: int | None,
        before_seq: int | None,
        limit: int | None,
        newest_first: bool,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        check_id(session_id, "session_id")
        for arg, value in (("after_seq", after_seq), ("before_seq", before_seq),
                           ("limit", limit)):  # fmt: skip
            if value is not None:
                _checks.non_negative_int(value, arg)
        key = self._key(cx, session_id, app_name, user_id, live=False)
        if key is None:
            return []
        return self._events(cx, key, after_seq, before_seq, limit, newest_first)

    def _events(
        self,
        cx: Cx,
        key: Key,
        after_seq: int | None,
        before_seq: int | None,
        limit: int | None,
        newest_first: bool,
    ) -> list[Event]:
        params: dict[str, Any] = dict(key)
        for name, arg, value in (
            ("after", "after_seq", after_seq), ("before", "before_seq", before_seq),
            ("limit", "limit", limit),
        ):  # fmt: skip
            if value is not None:
                params[name] = _checks.non_negative_int(value, arg)
        if limit == 0:
            return []
        stmt = self.q.list_events(
            after_seq is not None, before_seq is not None, limit is not None, newest_first
        )
        event = self._event_reader(stmt)
        return [event(r) for r in cx.all(stmt, params)]

    @quick
    def get_scoped_state(
        self, cx: Cx, *, scope: Scope, app_name: str, user_id: str | None
    ) -> dict[str, Any]:
        stmt = self.q.scopes[scope]["get"]
        row = cx.one(stmt, self._scope_params(scope, app_name, user_id))
        return {} if row is None else self.rows.loads(row[stmt.at("state")])

    @quick_write
    def delete_scoped_state(
        self, cx: Cx, *, scope: Scope, app_name: str, user_id: str | None
    ) -> bool:
        params = self._scope_params(scope, app_name, user_id)
        return cx.run(self.q.scopes[scope]["delete"], params) > 0

    @staticmethod
    def _scope_params(scope: Scope, app_name: str, user_id: str | None) -> dict[str, Any]:
        params = {"app": check_id(app_name, "app_name")}
        if scope == "user":
            params["user"] = check_id(user_id, "user_id")
        return params

    # -- create --------------------------------------------------------------------------------

    @quick_write
    def create_session(
        self,
        cx: Cx,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None,
        session_id: str | None,
        ttl: timedelta | float | None = None,
        sliding: bool | None = None,
        title: str | None = None,
        labels: Iterable[str] | None = None,
    ) -> Session:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        sid = new_session_id() if session_id is None else check_id(session_id, "session_id")
        ttl_seconds = self.ttl if ttl is None else _checks.seconds(ttl, "ttl")
        sliding = self.sliding if sliding is None else bool(sliding)
        title = _checks.title(title)
        label_list = _checks.labels(labels)
        rows, q = self.rows, self.q
        state = {} if state is None else state
        text = rows.encode_state(state)
        own, app, user = (Change(set=state), Change(), Change())
        if not _scopes.is_plain(state):
            own, app, user = _scopes.split(state)
            text = rows.encode_state(own.set)
        now = rows.now()
        expires = None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds)
        params = {
            "sid": sid, "app": app_name, "user": user_id, "state": text, "now": q.ts_in(now),
            "expires": None if expires is None else q.ts_in(expires),
            "ttl": ttl_seconds if sliding else None, "title": title,
            "labels": rows.dumps(label_list, "labels") if label_list else None,
        }  # fmt: skip
        in_tx = bool(app or user or label_list)
        try:
            if in_tx:
                cx.begin()
                self._scope_write(cx, "app", {"app": app_name}, app, now)
                self._scope_write(cx, "user", {"app": app_name, "user": user_id}, user, now)
            if q.insert_returns:
                row = cx.one(q.insert_session, params)
                i_app, i_user = self._inserted_at
                if row is None:
                    raise cx.unexpected("an INSERT ... RETURNING returned no row")
                app_state, user_state = row[i_app], row[i_user]
            else:
                cx.run(q.insert_plain, params, expect=1)
                app_state = self._scoped_raw(cx, "app", {"app": app_name})
                user_state = self._scoped_raw(cx, "user", {"app": app_name, "user": user_id})
            cx.run_many(
                q.insert_label,
                [{"app": app_name, "user": user_id, "sid": sid, "label": lb} for lb in label_list],
            )
            if in_tx:
                cx.commit()
        except cx.dbapi.Error as exc:
            if cx.kind(exc) != "duplicate":
                raise
            raise SessionExistsError(
                f"app {app_name!r} and user {user_id!r} already have a session with id {sid!r}"
            ) from exc
        loads = rows.loads
        app_now, user_now = loads(app_state), loads(user_state)
        result = _scopes.merge_into(loads(text), app_now, user_now)
        self.reads.add(
            (app_name, user_id, sid),
            _scopes.Seen(app_state, user_state, _scopes.merge_into({}, app_now, user_now)),
        )
        shown = rows.present(now)
        return Session(
            sid, app_name, user_id, shown, shown, result, 1, title=title, labels=label_list,
            expires_at=None if expires is None else rows.present(expires),
        )  # fmt: skip

    def _scoped_raw(self, cx: Cx, scope: Scope, params: dict[str, Any]) -> Any:
        """A scoped state's stored JSON text, or None."""
        stmt = self.q.scopes[scope]["get"]
        row = cx.one(stmt, params)
        return None if row is None else row[stmt.at("state")]

    # -- writes --------------------------------------------------------------------------------

    @quick_write
    def update_session_state(
        self,
        cx: Cx,
        *,
        session_id: str,
        state: dict[str, Any],
        expected_version: int | None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        check_id(session_id, "session_id")
        expected_version = _checks.version(expected_version)
        text = self.rows.encode_state(state)
        key = self._found(cx, session_id, app_name, user_id)
        reads = self.reads.of((key["app"], key["user"], session_id))
        return self._replace(cx, key, state, text, expected_version, reads)

    def _replace(
        self,
        cx: Cx,
        key: Key,
        state: dict[str, Any],
        text: str,
        expected_version: int | None,
        reads: list[_scopes.Seen] | None,
        stored: tuple[Any, Any] | None = None,
    ) -> int:
        """Replace the session's own state; write the scoped keys changed since ``reads``.

        ``stored``: the (app, user) state texts as read with ``expected_version`` (by
        transform_state), for MySQL/MariaDB's one-request write.
        """
        session_id = key["sid"]
        if not _scopes.is_plain(state):
            decision = _scopes.decide(state, reads, self.rows.loads)
            if decision.ambiguous:
                name = decision.ambiguous[0]
                raise StaleSessionError(
                    f"state[{name!r}] = {state[name]!r} is what an older read of session "
                    f"{session_id!r} returned, not the latest: this store cannot tell a stale "
                    "copy from a change back, so nothing was written. Set shared keys with "
                    "patch_state, or change them in transform_state"
                )
            own, app, user = _scopes.split(state)
            if decision.write and not decision.unknown and self.pg:
                _, app, user = _scopes.split(decision.write)
                written = self._write_pg(cx, key, expected_version, own, app, user, [], True)
                if written is None:
                    self._missing_or_stale(cx, key, expected_version)
                self._held(key, decision)
                return written[0]
            if (
                decision.write and not decision.unknown and stored is not None
                and expected_version is not None and cx.multi()
            ):  # fmt: skip
                _, app, user = _scopes.split(decision.write)
                version = self._write_guarded(cx, key, expected_version, own, app, user, stored)
                if version is not None:
                    self._held(key, decision)
                    return version
                # a scoped state changed since the read: the general path merges into it
            if decision.write or decision.unknown:
                _, app, user = _scopes.split(decision.write)
                _, app_guard, user_guard = _scopes.split(decision.unknown)
                version = self._general(
                    cx, key, expected_version, own, app, user, replace=True,
                    guards=(app_guard.set, user_guard.set),
                )  # fmt: skip
                self._held(key, decision)
                return version
            # no shared key changed: the session's own keys, in one statement
            text = self.rows.encode_state(own.set)
            version = self._replace_own(cx, key, text, expected_version)
            self._held(key, decision)
            return version
        return self._replace_own(cx, key, text, expected_version)

    def _held(self, key: Key, decision: Decision) -> None:
        """After a whole-state write: the caller holds its state's scoped values (unchanged
        ones included), so writing that dict again must not write them either."""
        _, app, user = _scopes.split(decision.held)
        dumps = self.rows.dumps
        self.reads.add(
            (key["app"], key["user"], key["sid"]),
            _scopes.Seen(dumps(app.set, "app state"), dumps(user.set, "user state"),
                         decision.held),
        )  # fmt: skip

    def _replace_own(self, cx: Cx, key: Key, text: str, expected_version: int | None) -> int:
        q = self.q
        params: dict[str, Any] = {**key, "state": text, "now": q.ts_in(self.rows.now())}
        stmt = self._with_expected(q.update_state, q.update_state_expected, params,
                                   expected_version)  # fmt: skip
        version = self._bump(cx, stmt, params)
        if version is None:
            self._missing_or_stale(cx, key, expected_version)
        return version

    @quick_write
    def patch_state(
        self,
        cx: Cx,
        *,
        session_id: str,
        set_: Mapping[str, Any] | None,
        remove: Iterable[str],
        increment: Mapping[str, int | float] | None,
        expected_version: int | None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        check_id(session_id, "session_id")
        expected_version = _checks.version(expected_version)
        if set_ is not None and not isinstance(set_, Mapping):
            raise StateTypeError(f"set must be a mapping of keys to values, not {set_!r}")
        if increment is not None and not isinstance(increment, Mapping):
            raise StateTypeError(
                f"increment must be a mapping of keys to numbers, not {increment!r}"
            )
        if isinstance(remove, (str, bytes, Mapping)) or not isinstance(remove, Iterable):
            raise StateTypeError(f"remove must be a list of keys, not {remove!r}")
        set_ = dict(set_ or {})
        remove = list(remove)
        increment = dict(increment or {})
        set_text = self.rows.dumps(set_, "set")
        for key in remove:
            if not isinstance(key, str):
                raise StateTypeError(f"remove holds {key!r}: state keys are str")
        for key, by in increment.items():
            if not isinstance(key, str):
                raise StateTypeError(f"increment has the key {key!r}: state keys are str")
            if isinstance(by, bool) or not isinstance(by, (int, float)):
                raise StateTypeError(f"increment[{key!r}] must be a number, not {by!r}")
        _json.check(increment, "increment")
        where = self._found(cx, session_id, app_name, user_id)
        if self._fast_patch_ok(set_, remove, increment):
            q = self.q
            params: dict[str, Any] = {
                **where,
                "set": set_text,
                "now": q.ts_in(self.rows.now()),
            }
            stmt = self._with_expected(q.patch_fast, q.patch_fast_expected, params,
                                       expected_version)  # fmt: skip
            try:
                version = self._bump(cx, stmt, params)
            except cx.dbapi.Error as exc:
                # MariaDB's JSON functions refuse documents nested deeper than 32 levels,
                # MySQL's deeper than 100; sessiondb's limit is _json.MAX_DEPTH everywhere
                if cx.kind(exc) != "too_deep":
                    raise
                version = None  # nothing was written (autocommit): the general path copes
            if version is not None:
                return version
            # not found, stale, or (MariaDB) too deep for its JSON functions: the general
            # path tells which, and copes with the last
        own, app, user = _scopes.split(set_, remove, increment)
        return self._general(cx, where, expected_version, own, app, user)

    def _fast_patch_ok(
        self, set_: dict[str, Any], remove: list[str], increment: dict[str, Any]
    ) -> bool:
        if remove or increment or not set_ or not _scopes.is_plain(set_):
            return False
        if self.pg:  # `||` is dict.update, whatever the values
            return True
        # RFC 7396 merge patch equals dict.update unless a value is an object or null
        return all(v is not None and not isinstance(v, dict) for v in set_.values())

    @quick_write
    def append_event(
        self,
        cx: Cx,
        *,
        session_id: str,
        author: str,
        content: Any,
        state_delta: dict[str, Any] | None,
        invocation_id: str | None,
        metadata: dict[str, Any] | None,
        expected_version: int | None,
        event_id: str | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> Event:
        """Append one event (``append_events`` of a single one)."""
        event = {
            "author": author,
            "content": content,
            "state_delta": state_delta,
            "invocation_id": invocation_id,
            "metadata": metadata,
            "event_id": event_id,
        }
        appended = self.append_events(
            cx, session_id=session_id, events=[event], expected_version=expected_version,
            app_name=app_name, user_id=user_id,
        )  # fmt: skip
        return appended[0]

    @quick_write
    def append_events(
        self,
        cx: Cx,
        *,
        session_id: str,
        events: Sequence[Mapping[str, Any]],
        expected_version: int | None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        check_id(session_id, "session_id")
        expected_version = _checks.version(expected_version)
        if isinstance(events, Mapping) or not isinstance(events, Sequence):
            raise ArgumentTypeError("events must be a sequence of mappings")
        prepared = [self._prepare_event(i, e) for i, e in enumerate(events)]
        if not prepared:
            return []
        ids = [e["event_id"] for e in prepared if e["event_id"] is not None]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("events holds the same event_id twice")
        deltas = [event.get("state_delta") for event in events]
        delta: dict[str, Any] = {}
        for d in deltas:
            delta.update(d or {})
        own, app, user = _scopes.split(delta)
        # with an id on every event, a lost connection is no risk: the append is repeated
        # and finds what the first attempt stored
        cx.repeatable = len(ids) == len(prepared)
        if self.pg and len(prepared) <= PG_EVENTS_PER_STATEMENT:
            # one statement; by id alone, it finds the owner itself
            given: Key = {"sid": session_id}
            if app_name is not None or user_id is not None:
                given = self._found(cx, session_id, app_name, user_id)
            written = self._write_pg(cx, given, expected_version, own, app, user, prepared)
            if written is not None:
                return written[1]
            # missing, ambiguous, stale, or an event id stored already: the general path
            # tells which, and hands back the stored events
        if app_name is None and user_id is None and not self.pg and not (ids or app or user):
            key = {"sid": session_id}  # by id alone: the row lock finds the owner
        else:
            key = self._found(cx, session_id, app_name, user_id)
        appended: list[Event] = []
        self._general(
            cx, key, expected_version, own, app, user, events=prepared, out=appended,
            deltas=deltas,
        )  # fmt: skip
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
        rows = self.rows
        author = check_id(event.get("author"), f"{root}['author']")
        content = rows.dumps(event.get("content"), f"{root}['content']")
        delta = event.get("state_delta")
        delta_text = None if delta is None else rows.encode_state(delta, f"{root}['state_delta']")
        meta = event.get("metadata")
        meta_text = None if meta is None else rows.encode_state(meta, f"{root}['metadata']")
        invocation = event.get("invocation_id")
        if invocation is not None:
            check_id(invocation, f"{root}['invocation_id']")
        event_id = event.get("event_id")
        if event_id is not None:
            check_id(event_id, f"{root}['event_id']")
        size = sum(len(t.encode()) for t in (content, delta_text, meta_text) if t is not None)
        return {
            "author": author, "content": content, "delta": delta_text, "meta": meta_text,
            "invocation": invocation, "size": size, "event_id": event_id,
        }  # fmt: skip

    def pop_events(
        self,
        cx: Cx,
        *,
        session_id: str,
        count: int,
        until: Callable[[list[Event]], bool] | None,
        expected_version: int | None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        """Delete the newest events under the session's row lock; return them newest first.

        ``count`` at once, then (with ``until``) older ones until ``until(popped)`` holds.
        The counters drop by what went, the version advances (not when nothing went), and
        ``last_seq`` stays: a seq is never reused.
        """
        check_id(session_id, "session_id")
        count = _checks.positive_int(count, "count")
        expected_version = _checks.version(expected_version)
        if until is not None and not callable(until):
            raise ArgumentTypeError(f"until must be a function of the popped events, not {until!r}")
        key = self._found(cx, session_id, app_name, user_id)
        q = self.q
        _, stamp, row = self._lock(cx, q.lock_version, key)
        version = row[self._lock_version_at]
        if expected_version is not None and expected_version != version:
            raise StaleSessionError(
                f"session {session_id!r} is at version {version}, not the expected "
                f"{expected_version}",
                expected=expected_version,
                actual=int(version),
            )
        rows = self._pop_newest(cx, key, count)
        read = self._event_reader(q.popped)
        events = [read(r) for r in rows]
        if until is not None and rows:
            rows += self._pop_until(cx, key, until, events)  # appends to events too
        if not rows:
            cx.commit()  # nothing to pop: nothing written, the version stays
            return []
        i_size = q.popped.at("size")
        params = {
            **key, "now": stamp, "expected": version, "n_events": len(rows),
            "n_bytes": sum(int(r[i_size]) for r in rows),
        }  # fmt: skip
        if self._bump(cx, q.write_popped, params) is None:  # the row is locked: it is there
            raise cx.unexpected(f"an UPDATE of the locked session {session_id!r} changed no row")
        cx.commit()
        return events

    def _pop_until(
        self, cx: Cx, key: Key, until: Callable[[list[Event]], bool], popped: list[Event]
    ) -> list[Row]:
        """After ``popped`` (deleted, newest first), delete the older events up to the first
        for which ``until`` holds: append them to ``popped``, and return their rows. They are
        read ahead in pages that double (8, 16, 32...), then deleted by one statement, so
        reaching n events back costs O(log n) statements."""
        if cx.outside(until, list(popped)):
            return []
        q = self.q
        stmt = q.older_locked  # the columns of q.popped
        read = self._event_reader(stmt)
        i_seq = stmt.at("seq")
        taken: list[Row] = []
        before, page = popped[-1].seq, 8
        while True:
            ahead = cx.all(stmt, {**key, "before": before, "limit": page})
            for row in ahead:
                taken.append(row)
                popped.append(read(row))
                if cx.outside(until, list(popped)):
                    break
            else:
                if len(ahead) == page:  # more may follow
                    before, page = ahead[-1][i_seq], page * 2
                    continue
            break
        if taken:  # the newer ones went already: these are all that is left from there on
            cx.run(q.delete_from_seq, {**key, "from_seq": taken[-1][i_seq]}, expect=len(taken))
        return taken

    def _pop_newest(self, cx: Cx, key: Key, count: int) -> list[Row]:
        """Delete the session's newest ``count`` events (in the open transaction, under the
        session's row lock); their rows, newest first."""
        q = self.q
        stmt = q.popped
        if q.delete_returns:
            rows = cx.all(stmt, {**key, "skip": count - 1})
        else:
            rows = cx.all(stmt, {**key, "limit": count})
            if rows:
                first = min(r[stmt.at("seq")] for r in rows)
                cx.run(q.delete_from_seq, {**key, "from_seq": first}, expect=len(rows))
        if len(rows) > count:
            raise cx.unexpected(f"a DELETE of the newest {count} events returned {len(rows)}")
        i_seq = stmt.at("seq")
        return sorted(rows, key=lambda r: r[i_seq], reverse=True)

    def transform_state(
        self,
        cx: Cx,
        *,
        session_id: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        attempts: int,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """Read, ``fn(state)``, write with ``expected_version``; retry when another writer won.

        The scoped keys ``fn`` changed are those that differ from this very read.
        """
        check_id(session_id, "session_id")
        attempts = _checks.positive_int(attempts, "attempts")
        key = None if app_name is None and user_id is None else (
            self._key(cx, session_id, app_name, user_id)
        )  # fmt: skip
        for attempt in range(attempts):
            now = self.rows.read_now()
            if key is None:  # by id alone: the first read tells whose session it is
                rows = cx.all(self.q.get_by_id, {"sid": session_id, "now": now})
                if len(rows) > 1:
                    raise self._ambiguous(session_id)
                row = rows[0] if rows else None
                read, (i_app, i_user) = self._read_base_by_id, self._base_by_id_at
            else:
                row = cx.one(self.q.get_by_key, {**key, "now": now})
                read, (i_app, i_user) = self._read_base, self._base_at
            if row is None:
                raise SessionNotFoundError(f"no session with id {session_id!r}")
            session = read(row)
            key = {"app": session.app_name, "user": session.user_id, "sid": session_id}
            base = _scopes.seen_in(session.state, row[i_app], row[i_user])
            result = cx.outside(fn, session.state)  # user code: its errors pass through
            new_state = session.state if result is None else result
            text = self.rows.encode_state(new_state)
            stored = (row[i_app], row[i_user])
            try:
                return self._replace(cx, key, new_state, text, session.version, [base], stored)
            except StaleSessionError:
                if attempt == attempts - 1:
                    raise
                # another writer won: re-read its result and apply fn to that
        raise InvalidArgumentError("attempts must be at least 1")

    # -- deletes -------------------------------------------------------------------------------

    @quick_write
    def delete_session(
        self, cx: Cx, *, session_id: str, app_name: str | None, user_id: str | None
    ) -> bool:
        key = self._key(cx, session_id, app_name, user_id, live=False)  # expired ones too
        if key is None:
            return False
        return cx.run(self.q.delete_owned, key, most=1) > 0

    def clear_sessions(self, cx: Cx, *, app_name: str, user_id: str | None) -> int:
        check_id(app_name, "app_name")
        if user_id is None:
            return cx.run(self.q.clear_app, {"app": app_name})
        check_id(user_id, "user_id")
        return cx.run(self.q.clear_user, {"app": app_name, "user": user_id})

    def delete_user_data(self, cx: Cx, *, app_name: str, user_id: str) -> int:
        params = self._scope_params("user", app_name, user_id)
        cx.begin()
        count = cx.run(self.q.clear_user, params)
        cx.run(self.q.scopes["user"]["delete"], params)
        # the user's LangGraph threads go with their sessions
        _checkpoints.delete_owner(cx, self.q, app_name=app_name, user_id=user_id)
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
                params[name] = self.q.ts_in(self.rows.to_utc(value))
        return names, params

    def _list_page(
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
        include_expired: bool = False,
    ) -> SessionList:
        if order not in ("updated", "created"):
            raise InvalidArgumentError("order must be 'updated' or 'created'")
        names, params = self._filter_params(app_name, user_id, label, **bounds)
        if not include_expired:
            names.add("live")
            params["now"] = self.rows.read_now()
        if limit is not None:
            # one more tells whether another page follows (and still fits in 64 bits)
            params["limit"] = min(_checks.positive_int(limit, "limit"), _checks.MAX_COUNT - 1) + 1
        # ids repeat across owners: a listing of several users pages by owner too
        owners = "user" not in names
        shape = None
        if cursor is not None:
            at, params["cursor_id"], owner = _cursors.decode(cursor, order)
            params["cursor_at"] = self.q.ts_in(at)
            shape = "id"
            if owners and owner is not None:
                params["cursor_app"], params["cursor_user"] = owner
                shape = "owner"
        stmt = self.q.list_page(
            frozenset(names), order, shape, limit is not None, not include_state
        )
        rows = cx.all(stmt, params)
        next_cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            key = stmt.at("updated_at" if order == "updated" else "created_at")
            i_id, i_app, i_user = stmt.positions("id", "app_name", "user_id")
            next_cursor = _cursors.encode(
                order, last[key], last[i_id], (last[i_app], last[i_user]) if owners else None
            )
        return SessionList(self._reader(stmt, not include_state)(rows, ()), next_cursor)

    @reads
    def count_sessions(
        self, cx: Cx, *, app_name: str | None, user_id: str | None, label: str | None
    ) -> int:
        names, params = self._filter_params(app_name, user_id, label)
        names.add("live")
        params["now"] = self.rows.read_now()
        stmt = self.q.count(frozenset(names))
        return int(cx.one(stmt, params)[stmt.at("count")])

    # -- expiry and cleanup --------------------------------------------------------------------

    def _delete_matching(
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
        _checks.positive_int(batch_size, "batch_size")
        f = frozenset(names)
        if dry_run:
            stmt = self.q.count(f)
            return int(cx.one(stmt, params)[stmt.at("count")])
        total = 0
        pick = self.q.pick_ids(f)
        i_app, i_user, i_id = pick.positions("app_name", "user_id", "id")
        while True:
            keys = cx.all(pick, {**params, "limit": batch_size})
            if not keys:
                return total
            # each batch is its own short statement: concurrent readers and writers wait
            # at most one batch, never the whole purge
            for chunk in self.q.key_chunks(keys):
                total += cx.run(
                    self.q.delete_ids(len(chunk)),
                    self._keys_params(chunk, i_app, i_user, i_id),
                    most=len(chunk),
                )
            if len(keys) < batch_size:
                return total

    @staticmethod
    def _keys_params(keys: Sequence[Row], i_app: int, i_user: int, i_id: int) -> dict[str, Any]:
        """The parameters of a statement on several sessions' keys (:app0, :user0, :id0 ...)."""
        params: dict[str, Any] = {}
        for i, r in enumerate(keys):
            params[f"app{i}"], params[f"user{i}"], params[f"id{i}"] = r[i_app], r[i_user], r[i_id]
        return params

    def purge_expired(self, cx: Cx, *, batch_size: int | None, dry_run: bool) -> int:
        sessions = self._delete_matching(cx, {"expired"}, {}, batch_size, dry_run)
        if batch_size is None:
            batch_size = SQLITE_BATCH if self.q.backend == "sqlite" else SERVER_BATCH
        # expired LangGraph threads (a checkpointer's ttl) are purged with the sessions
        threads = _checkpoints.purge_threads(cx, self.q, batch_size=batch_size, dry_run=dry_run)
        return sessions + threads

    def delete_sessions(
        self,
        cx: Cx,
        *,
        app_name: str | None,
        user_id: str | None,
        older_than: timedelta | float | None,
        created_before: datetime | None,
        updated_before: datetime | None,
        batch_size: int | None,
        dry_run: bool,
    ) -> int:
        if older_than is not None:
            age = timedelta(seconds=_checks.seconds(older_than, "older_than"))
            cutoff = datetime.now(UTC) - age
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
        return self._delete_matching(cx, names, params, batch_size, dry_run)

    # -- metadata ------------------------------------------------------------------------------

    @quick_write
    def set_metadata(
        self,
        cx: Cx,
        *,
        session_id: str,
        changes: dict[str, Any],
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        check_id(session_id, "session_id")
        unknown = set(changes) - _METADATA_KEYS
        if unknown:
            raise ArgumentTypeError(f"unknown metadata {sorted(unknown)}")
        title = _checks.title(changes.get("title")) if "title" in changes else None
        labels = _checks.labels(changes.get("labels")) if "labels" in changes else None
        q, rows = self.q, self.rows
        stmt = q.lock_info
        key = self._found(cx, session_id, app_name, user_id)
        now, stamp, row = self._lock(cx, stmt, key)
        version, old_title, old_labels, expires, ttl = (
            row[i]
            for i in stmt.positions("version", "title", "labels", "expires_at", "ttl_seconds")
        )
        if "title" in changes:
            old_title = title
        if labels is not None:
            old_labels = rows.dumps(labels, "labels") if labels else None
            cx.run(q.delete_labels, key)
            cx.run_many(q.insert_label, [{**key, "label": lb} for lb in labels])
        if "ttl" in changes:
            if changes["ttl"] is None:
                expires, ttl = None, None
            else:
                ttl = _checks.seconds(changes["ttl"], "ttl")
                expires = q.ts_in(now + timedelta(seconds=ttl))
                if not changes.get("sliding", self.sliding):
                    ttl = None
        elif expires is not None and not isinstance(expires, str):
            expires = q.ts_in(expires)
        cx.run(
            q.write_info,
            {**key, "title": old_title, "labels": old_labels, "expires": expires,
             "ttl": ttl, "now": stamp, "version": version + 1}, expect=1,
        )  # fmt: skip
        cx.commit()
        return int(version) + 1

    # -- administration ------------------------------------------------------------------------

    @reads
    def stats(self, cx: Cx) -> list[AppStats]:
        read = self._read_stats
        live = cx.all(self.q.stats, {"now": self.rows.read_now()})
        apps = {row.app_name: row for row in map(read, live)}
        for app_name, expired in cx.all(self.q.expired_by_app, {}):
            row = apps.get(app_name) or AppStats(app_name, 0, 0, 0, 0, 0, None, None)
            apps[app_name] = dataclasses.replace(row, expired=int(expired))
        return [apps[name] for name in sorted(apps)]

    # -- shared steps --------------------------------------------------------------------------

    @staticmethod
    def _with_expected(
        plain: Stmt, guarded: Stmt, params: dict[str, Any], expected: int | None
    ) -> Stmt:
        if expected is None:
            return plain
        params["expected"] = expected
        return guarded

    def _bump(self, cx: Cx, stmt: Stmt, params: dict[str, Any]) -> int | None:
        """Run a version-advancing UPDATE; the new version, or None if no row matched.

        What came back must be this UPDATE's own result: one row changed, an integer version,
        the expected version plus one when one is expected (else UnexpectedResultError).
        """
        if self.q.returning:
            rows = cx.all(stmt, params)
            if not rows:
                return None
            version = rows[0][stmt.at("version")]
            count = len(rows)
        else:
            count = cx.run(stmt, params)
            if count == 0:
                return None
            version = cx.lastrowid
        expected = params.get("expected")
        if count != 1 or type(version) is not int or version < 2:
            raise cx.unexpected(f"an UPDATE of one session returned {count} rows, {version!r}")
        if expected is not None and version != expected + 1:
            raise cx.unexpected(f"version {version} after an UPDATE of version {expected}")
        return version

    def _missing_or_stale(self, cx: Cx, key: Key, expected: int | None) -> NoReturn:
        session_id = key["sid"]
        row = cx.one(self.q.get_version, {**key, "now": self.rows.read_now()})
        if row is None:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        actual = row[self._version_at]
        if expected is None or actual == expected:  # the UPDATE matched no row, yet it is there
            raise cx.unexpected(f"an UPDATE of session {session_id!r} changed no row")
        raise StaleSessionError(
            f"session {session_id!r} is at version {actual}, not the expected {expected}",
            expected=expected,
            actual=int(actual),
        )

    def _general(
        self,
        cx: Cx,
        key: Key,
        expected: int | None,
        own: Change,
        app: Change,
        user: Change,
        *,
        replace: bool = False,
        events: list[dict[str, Any]] | None = None,
        out: list[Event] | None = None,
        guards: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
        deltas: list[Any] | None = None,
    ) -> int:
        """The general write path: one transaction under the session's row lock.

        Two batches of statements (:meth:`Cx.batch`: one round trip each on MySQL/MariaDB):
        the first opens the transaction, locks the session's row (by id alone when ``key``
        has no owner: then no scoped key may change), reads the stored events of the given
        event ids and makes sure of, and locks, the scoped rows to change; the second writes
        them, the session and its events, and commits.

        ``guards`` hold (app, user) values the stored ones must equal, else
        :class:`StaleSessionError` and nothing is written.
        """
        q = self.q
        now = self.rows.now()
        stamp = q.ts_in(now)
        app_guard, user_guard = guards
        by_id = "app" not in key
        steps: list[Step] = [
            (q.lock_session_by_id if by_id else q.lock_session, {**key, "now": stamp})
        ]
        with_ids = bool(events) and any(e["event_id"] is not None for e in events or [])
        if with_ids and not by_id:
            steps.append(self._stored_step(key, events or []))
        scoped: list[tuple[Scope, dict[str, Any], int]] = []
        todo: tuple[tuple[Scope, Change, dict[str, Any]], ...] = (
            ("app", app, app_guard),
            ("user", user, user_guard),
        )
        for scope, change, guard in todo:
            if change or guard:
                if by_id:
                    raise InvalidArgumentError("a scoped write needs the session's owner")
                params = self._scope_params(scope, key["app"], key["user"])
                stmts = self.q.scopes[scope]
                steps.append((stmts["ensure"], {**params, "state": "{}", "now": stamp}))
                scoped.append((scope, params, len(steps)))
                steps.append((stmts["lock"], params))
        answers = cx.batch(steps, begin=True)
        try:
            return self._general_write(
                cx, key, answers, steps, scoped, expected, own, app, user, now, stamp,
                replace=replace, events=events, out=out, guards=guards, deltas=deltas,
            )  # fmt: skip
        except (SessionNotFoundError, StaleSessionError, AmbiguousSessionError):
            cx.rollback()  # the caller may go on (transform_state reads again)
            raise

    def _general_write(
        self,
        cx: Cx,
        key: Key,
        answers: list[Any],
        steps: list[Step],
        scoped: list[tuple[Scope, dict[str, Any], int]],
        expected: int | None,
        own: Change,
        app: Change,
        user: Change,
        now: datetime,
        stamp: Any,
        *,
        replace: bool,
        events: list[dict[str, Any]] | None,
        out: list[Event] | None,
        guards: tuple[dict[str, Any], dict[str, Any]],
        deltas: list[Any] | None,
    ) -> int:
        """:meth:`_general` once its first batch is answered: the checks, then the writes."""
        q, rows = self.q, self.rows
        session_id = key["sid"]
        app_guard, user_guard = guards
        by_id = "app" not in key
        with_ids = bool(events) and any(e["event_id"] is not None for e in events or [])
        found = answers[0]
        if len(found) > 1:
            if by_id:
                raise self._ambiguous(session_id)
            raise cx.unexpected(f"a lock of one session returned {len(found)} rows")
        if not found:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        row = found[0]
        if by_id:
            i_app, i_user, i_state, i_version, i_last_seq = self._locked_by_id_at
            key = {"app": row[i_app], "user": row[i_user], "sid": session_id}
        else:
            i_state, i_version, i_last_seq = self._locked_at
        text, version, last_seq = row[i_state], row[i_version], row[i_last_seq]
        stored: dict[str, Event] = {}
        if with_ids and not by_id:
            read = self._event_reader(steps[1][0])
            stored = {ev.event_id: ev for ev in map(read, answers[1]) if ev.event_id}
            if stored:
                kept = [i for i, e in enumerate(events or []) if e["event_id"] not in stored]
                if not kept:  # every event is stored already: write nothing
                    cx.commit()
                    if out is not None:
                        out.extend(stored[e["event_id"]] for e in events or [])
                    return int(version)
                delta: dict[str, Any] = {}
                for i in kept:
                    delta.update((deltas or [])[i] or {})
                own, app, user = _scopes.split(delta)
                all_events, events = events or [], [(events or [])[i] for i in kept]
        if expected is not None and expected != version:
            raise StaleSessionError(
                f"session {session_id!r} is at version {version}, not the expected {expected}",
                expected=expected,
                actual=int(version),
            )
        state = own.set if replace else own.apply(rows.loads(text))
        new_text = rows.encode_state(state)
        writes: list[Step] = []
        for scope, params, at in scoped:
            change = app if scope == "app" else user
            guard = app_guard if scope == "app" else user_guard
            locked = answers[at]
            if len(locked) != 1:
                raise cx.unexpected(f"a lock of one {scope} state returned {len(locked)} rows")
            write = self._scope_change(scope, params, locked[0], change, stamp, guard, session_id)
            if write is not None:
                writes.append(write)
        events = events or []
        new_rows = [
            {**e, **key, "seq": last_seq + i, "now": stamp} for i, e in enumerate(events, 1)
        ]
        writes.append(
            (
                q.write_session,
                {
                    **key,
                    "state": new_text,
                    "now": stamp,
                    "version": version + 1,
                    "last_seq": last_seq + len(new_rows),
                    "n_events": len(new_rows),
                    "n_bytes": sum(e["size"] for e in events),
                },
                1,  # the row is locked: exactly it
            )
        )
        if new_rows:
            writes.append((q.insert_event, new_rows))
        cx.batch(writes, commit=True)
        if out is not None:
            shown = rows.present(now)
            loads = rows.loads
            made = [
                Event(session_id, r["seq"], r["author"], loads(r["content"]), shown,
                      loads(r["delta"]), r["invocation"], loads(r["meta"]), r["event_id"])
                for r in new_rows
            ]  # fmt: skip
            if stored:  # in the order asked: stored ones where they were
                fresh = iter(made)
                made = [stored.get(e["event_id"]) or next(fresh) for e in all_events]
            out.extend(made)
        return int(version) + 1

    def _write_pg(
        self,
        cx: Cx,
        key: Key,
        expected: int | None,
        own: Change,
        app: Change,
        user: Change,
        events: list[dict[str, Any]],
        replace: bool = False,
    ) -> tuple[int, list[Event]] | None:
        """PostgreSQL's write of a session, its scoped keys and its events in one statement
        (:meth:`Queries.write_all <sessiondb._queries.Queries.write_all>`): the new version and
        the events made, or None when nothing was written (no live session at ``expected``, or
        an event id already stored).

        ``app``/``user`` changes are key sets (``dict.update``); ``own`` replaces the state when
        ``replace``, else its set keys are merged.
        """
        q, rows = self.q, self.rows
        now = rows.now()
        stamp = q.ts_in(now)
        params: dict[str, Any] = {**key, "now": stamp}
        mode: str | None = None
        if replace:
            mode, params["state"] = "replace", rows.encode_state(own.set)
        elif own.set:
            mode, params["set"] = "merge", rows.dumps(own.set, "state")
        if app.set:
            params["app_set"] = rows.dumps(app.set, "app state")
        if user.set:
            params["user_set"] = rows.dumps(user.set, "user state")
        if events:
            params["n_bytes"] = sum(e["size"] for e in events)
            for i, e in enumerate(events):
                params.update(
                    {f"author{i}": e["author"], f"content{i}": e["content"],
                     f"delta{i}": e["delta"], f"invocation{i}": e["invocation"],
                     f"meta{i}": e["meta"], f"size{i}": e["size"], f"event_id{i}": e["event_id"]}
                )  # fmt: skip
        if expected is not None:
            params["expected"] = expected
        stmt = q.write_all(
            len(events), mode, bool(app.set), bool(user.set), expected is not None,
            "app" not in key,
        )  # fmt: skip
        try:
            found = cx.all(stmt, params)
        except cx.dbapi.Error as exc:
            if events and cx.kind(exc) == "duplicate":
                return None  # nothing was written (one statement): the general path sorts it
            raise
        if not found:
            return None
        version, last_seq, n_app, n_user, n_events = found[0]
        if (
            len(found) != 1 or type(version) is not int or version < 2
            or (expected is not None and version != expected + 1) or type(last_seq) is not int
            or (n_app, n_user, n_events) != (int(bool(app.set)), int(bool(user.set)), len(events))
        ):  # fmt: skip
            raise cx.unexpected(
                f"a write of one session returned {len(found)} rows, the first {found[0]!r}"
            )
        shown = rows.present(now)
        loads = rows.loads
        first = last_seq - len(events) + 1
        made = [
            Event(key["sid"], first + i, e["author"], loads(e["content"]), shown,
                  loads(e["delta"]), e["invocation"], loads(e["meta"]), e["event_id"])
            for i, e in enumerate(events)
        ]  # fmt: skip
        return version, made

    def _write_guarded(
        self,
        cx: Cx,
        key: Key,
        expected: int,
        own: Change,
        app: Change,
        user: Change,
        stored: tuple[Any, Any],
    ) -> int | None:
        """MySQL/MariaDB's whole-state write at ``expected``, in one request
        (:meth:`Queries.guarded_write <sessiondb._queries.Queries.guarded_write>`): the new
        version, or None when nothing was written because a scoped state to change no longer
        holds ``stored`` (its text as read with ``expected``). A session that is missing or
        not at ``expected`` raises as :meth:`_replace_own` does."""
        q, rows = self.q, self.rows
        stamp = q.ts_in(rows.now())
        modes: list[str | None] = []
        for change, old in ((app, stored[0]), (user, stored[1])):
            modes.append(None if not change else "insert" if old is None else "update")
        stmts = q.guarded_write(modes[0], modes[1])
        steps: list[Step] = [(stmts["lock"], {**key, "now": stamp, "expected": expected})]
        scoped: list[int] = []
        todo: tuple[tuple[Scope, Change, Any, str | None], ...] = (
            ("app", app, stored[0], modes[0]),
            ("user", user, stored[1], modes[1]),
        )
        for scope, change, old, mode in todo:
            if mode is None:
                continue
            params = self._scope_params(scope, key["app"], key["user"])
            steps.append((stmts[f"check_{scope}"], {**params, "old": old}))
            base = {} if old is None else rows.loads(old)
            prefix = _scopes.APP if scope == "app" else _scopes.USER
            text = rows.encode_state(change.apply(base, prefix), f"{scope} state")
            scoped.append(len(steps))
            steps.append((stmts[f"write_{scope}"], {**params, "state": text, "now": stamp}))
        params = {**key, "state": rows.encode_state(own.set), "now": stamp, "expected": expected}
        steps.append((stmts["write"], params))
        steps.append((stmts["flags"], {}))
        answers = cx.batch(steps, begin=True, commit=True)
        written, flags = answers[-2], answers[-1]
        if len(flags) != 1:
            raise cx.unexpected(f"{len(flags)} rows of flags, not 1")
        notes = [int(v) if v is not None else None for v in flags[0]]
        if written == 1 and all(n == 1 for n in notes):
            if any(answers[i] != 1 for i in scoped):
                raise cx.unexpected(f"scoped writes changed {[answers[i] for i in scoped]} rows")
            return expected + 1
        if written != 0 or any(answers[i] != 0 for i in scoped):
            raise cx.unexpected(f"a guarded write changed {written} rows, flags {notes}")
        if notes[0] != 1:
            self._missing_or_stale(cx, key, expected)
        return None

    def _stored_step(self, key: Key, events: list[dict[str, Any]]) -> Step:
        """The read of the session's events stored under the ids of ``events``."""
        ids = [e["event_id"] for e in events if e["event_id"] is not None]
        params: dict[str, Any] = dict(key)
        params.update({f"e{i}": v for i, v in enumerate(ids)})
        return self.q.events_by_id(len(ids)), params

    def _scope_change(
        self,
        scope: Scope,
        params: dict[str, Any],
        row: Row,
        change: Change,
        stamp: Any,
        guard: dict[str, Any],
        session_id: str,
    ) -> Step | None:
        """The write of ``change`` to a scoped state whose locked row is ``row`` (None: no
        change); each ``guard`` key must hold its value already, else
        :class:`StaleSessionError`."""
        stmts = self.q.scopes[scope]
        prefix = _scopes.APP if scope == "app" else _scopes.USER
        stored = self.rows.loads(row[stmts["lock"].at("state")])
        _check_guard(stored, guard, prefix, session_id)
        if not change:
            return None
        state = change.apply(stored, prefix)
        text = self.rows.encode_state(state, f"{scope} state")
        return stmts["write"], {**params, "state": text, "now": stamp}, 1

    def _lock(self, cx: Cx, stmt: Stmt, key: Key) -> tuple[datetime, Any, Any]:
        """Open a transaction and lock the (live) session's row: (now, its driver form, row)."""
        now = self.rows.now()
        stamp = self.q.ts_in(now)
        cx.begin()
        row = cx.one(stmt, {**key, "now": stamp})
        if row is None:
            raise SessionNotFoundError(f"no session with id {key['sid']!r}")
        return now, stamp, row

    def _scope_write(
        self,
        cx: Cx,
        scope: Scope,
        params: dict[str, Any],
        change: Change,
        now: datetime,
        guard: dict[str, Any] | None = None,
        session_id: str = "",
    ) -> None:
        """Apply ``change`` to a scoped state: make sure its row exists, lock it, rewrite it.

        Each ``guard`` key must hold its value already, else :class:`StaleSessionError`.
        """
        if not change and not guard:
            return
        stmts = self.q.scopes[scope]
        stamp = self.q.ts_in(now)
        cx.run(stmts["ensure"], {**params, "state": "{}", "now": stamp})
        lock = stmts["lock"]
        row = cx.one(lock, params)
        prefix = _scopes.APP if scope == "app" else _scopes.USER
        stored = self.rows.loads(row[lock.at("state")])
        _check_guard(stored, guard or {}, prefix, session_id)
        if not change:
            return
        state = change.apply(stored, prefix)
        cx.run(
            stmts["write"],
            {**params, "state": self.rows.encode_state(state, f"{scope} state"), "now": stamp},
            expect=1,
        )


def _check_guard(
    stored: dict[str, Any], guard: dict[str, Any], prefix: str, session_id: str
) -> None:
    """Raise :class:`StaleSessionError` unless each ``guard`` key holds its value in ``stored``
    (a scoped state's row), i.e. the caller's copy of the shared keys is not stale."""
    for key, value in guard.items():
        if key not in stored or not _json.same(value, stored[key]):
            raise StaleSessionError(
                f"state[{prefix + key!r}] = {value!r} differs from the stored value, and "
                f"this store has not read session {session_id!r} lately, so it cannot tell a "
                "change from a stale copy: nothing was written. Read the session with this "
                "store first, or set shared keys with patch_state"
            )
