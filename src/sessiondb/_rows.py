"""From stored rows to what the caller sees, and the clock.

:class:`Rows` turns driver values into sessiondb's: JSON text into Python values (with the
PostgreSQL escapes undone), stored naive-UTC timestamps into the caller's datetimes, and rows
into :class:`~sessiondb.models.Session` / :class:`~sessiondb.models.Event` objects. Rows are read
by column *name*: a reader is built once per statement from the names the statement publishes
(:attr:`sessiondb._queries.Stmt.columns`), so each read is a plain index into the row and a
column added to a statement cannot shift another's value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _json, _scopes
from .errors import StateTypeError
from .models import AppStats, Event, Session

if TYPE_CHECKING:
    from ._queries import Queries

__all__ = ["UTC", "Rows", "iso", "positions"]

UTC = timezone.utc
_TICK = timedelta(microseconds=1)
# local time = UTC + this, when the process's time zone never changes its offset
_FIXED_OFFSET = None if time.daylight else timedelta(seconds=-time.timezone)

Row = Sequence[Any]


def positions(columns: Sequence[str], *names: str) -> tuple[int, ...]:
    """The index of each of ``names`` among ``columns`` (ValueError names a missing one)."""
    found = []
    for name in names:
        if name not in columns:
            raise ValueError(f"no column {name!r} among {list(columns)}")
        found.append(columns.index(name))
    return tuple(found)


def iso(value: Any) -> str:
    """A stored naive-UTC timestamp (datetime, or SQLite text) as ISO 8601 with +00:00."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.replace(tzinfo=UTC).isoformat())


class Rows:
    """Row mapping and the clock for one store (its dialect and ``tz_aware`` option)."""

    pg: bool
    q: Queries

    def __init__(self, *, tz_aware: bool) -> None:
        self.tz_aware = tz_aware
        self._last = datetime.min

    def bind(self, queries: Queries) -> None:
        """Attach the dialect's statements (once the dialect knows its server)."""
        self.q = queries
        self.pg = queries.pg

    # -- the clock -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The current naive UTC time, strictly increasing within this process."""
        now = datetime.now(UTC).replace(tzinfo=None)
        if now <= self._last:
            now = self._last + _TICK
        self._last = now
        return now

    def read_now(self) -> Any:
        """The driver value of "now" for expiry checks on reads."""
        return self.q.ts_in(datetime.now(UTC).replace(tzinfo=None))

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

    @staticmethod
    def to_utc(value: datetime) -> datetime:
        """A caller's datetime (naive local, or aware) as naive UTC."""
        if value.tzinfo is None:
            value = value.astimezone()  # naive means local, as returned by default
        return value.astimezone(UTC).replace(tzinfo=None)

    # -- JSON ------------------------------------------------------------------------------------

    def dumps(self, value: Any, root: str) -> str:
        """Check and encode any JSON value (``root`` names it in errors)."""
        return _json.dumps(value, pg=self.pg, root=root)

    def loads(self, text: Any) -> Any:
        """Decode stored JSON text (None stays None)."""
        return None if text is None else _json.loads(text, pg=self.pg)

    def encode_state(self, state: Any, root: str = "state") -> str:
        """Check and encode a whole state (a dict)."""
        if not isinstance(state, dict):
            raise StateTypeError(f"{root} must be a dict, not {type(state).__name__}")
        return self.dumps(state, root)

    # -- readers ---------------------------------------------------------------------------------

    def session_reader(
        self,
        columns: Sequence[str],
        given: Sequence[str] = (),
        remember: Callable[[tuple[str, str, str], _scopes.Seen], None] | None = None,
    ) -> Callable[[Row], Session]:
        """A function from a row of a statement with ``columns`` to a :class:`Session`.

        ``given`` names the fields a statement binds instead of selecting (its owner, say):
        the caller appends their values to the row, in that order. ``remember(key, seen)``,
        if given, is told what each session (its key: app, user, id) handed out of its
        ``app:``/``user:`` scopes.
        """
        build = self._session_builder(columns, given)
        if remember is None:

            def read_only(row: Row) -> Session:
                return build(row)[0]

            return read_only

        def read(row: Row) -> Session:
            session, seen = build(row)
            remember((session.app_name, session.user_id, session.id), seen)
            return session

        return read

    def sessions_reader(
        self,
        columns: Sequence[str],
        given: Sequence[str] = (),
        remember: Callable[[Iterable[tuple[tuple[str, str, str], _scopes.Seen]]], None]
        | None = None,
    ) -> Callable[[Iterable[Row], tuple[Any, ...]], list[Session]]:
        """:meth:`session_reader` for a whole listing: ``read(rows, values)`` appends
        ``values`` (those of ``given``) to each row and tells ``remember`` (like
        :meth:`sessiondb._scopes.Reads.add_many`) about every session at once."""
        build = self._session_builder(columns, given)

        def read(rows: Iterable[Row], values: tuple[Any, ...]) -> list[Session]:
            built = [build((*row, *values)) for row in rows] if values else list(map(build, rows))
            if remember is not None:
                remember([((s.app_name, s.user_id, s.id), seen) for s, seen in built])
            return [session for session, _ in built]

        return read

    def _session_builder(
        self, columns: Sequence[str], given: Sequence[str]
    ) -> Callable[[Row], tuple[Session, _scopes.Seen]]:
        """A function from a row to its :class:`Session` and what it handed out of its scopes."""
        (i_id, i_app, i_user, i_state, i_created, i_updated, i_version, i_count, i_bytes,
         i_app_state, i_user_state, i_title, i_labels, i_expires) = positions(
            [*columns, *given], "id", "app_name", "user_id", "state", "created_at", "updated_at",
            "version", "event_count", "event_bytes", "app_state", "user_state", "title",
            "labels", "expires_at",
        )  # fmt: skip
        present, loads, merge_into = self.present, _json.loader(self.pg), _scopes.merge_into
        seen_of, nothing_seen = _scopes.Seen, _scopes.NOTHING_SEEN

        def build(row: Row) -> tuple[Session, _scopes.Seen]:
            state = loads(row[i_state])
            app_state, user_state = row[i_app_state], row[i_user_state]
            if app_state is None and user_state is None:
                seen = nothing_seen
            else:
                app = None if app_state is None else loads(app_state)
                user = None if user_state is None else loads(user_state)
                merge_into(state, app, user)
                seen = seen_of(app_state, user_state, merge_into({}, app, user))
            labels, expires = row[i_labels], row[i_expires]
            return Session(
                row[i_id], row[i_app], row[i_user], present(row[i_created]),
                present(row[i_updated]), state, row[i_version], row[i_count], row[i_bytes],
                row[i_title], [] if labels is None else loads(labels),
                None if expires is None else present(expires),
            ), seen  # fmt: skip

        return build

    def event_reader(self, columns: Sequence[str]) -> Callable[[Row], Event]:
        """A function from a row of a statement with ``columns`` to an :class:`Event`."""
        (i_sid, i_seq, i_author, i_content, i_created, i_delta, i_invocation, i_meta,
         i_event_id) = positions(
            columns, "session_id", "seq", "author", "content", "created_at", "state_delta",
            "invocation_id", "meta", "event_id",
        )  # fmt: skip
        present, loads = self.present, self.loads

        def read(row: Row) -> Event:
            return Event(
                row[i_sid], row[i_seq], row[i_author], loads(row[i_content]),
                present(row[i_created]), loads(row[i_delta]), row[i_invocation],
                loads(row[i_meta]), row[i_event_id],
            )  # fmt: skip

        return read

    def stats_reader(self, columns: Sequence[str]) -> Callable[[Row], AppStats]:
        """A function from a row of the per-app totals to :class:`AppStats`."""
        i_app, i_sessions, i_users, i_events, i_state, i_event_bytes, i_oldest, i_newest = (
            positions(
                columns, "app_name", "sessions", "users", "events", "state_bytes",
                "event_bytes", "oldest_created_at", "newest_updated_at",
            )
        )  # fmt: skip
        present = self.present

        def read(row: Row) -> AppStats:
            oldest, newest = row[i_oldest], row[i_newest]
            return AppStats(
                app_name=row[i_app],
                sessions=int(row[i_sessions]),
                users=int(row[i_users]),
                events=int(row[i_events]),
                state_bytes=int(row[i_state]),
                event_bytes=int(row[i_event_bytes]),
                oldest_created_at=None if oldest is None else present(oldest),
                newest_updated_at=None if newest is None else present(newest),
            )

        return read
