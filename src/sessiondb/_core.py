"""The operations, written once.

Each method takes a :class:`~sessiondb._engine.Cx` first and runs sync-style: the sync front end
calls it directly, the async front end through :class:`~sessiondb._engine.AsyncRunner`. Arguments
are checked before the first statement, so bad input never reaches the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _json
from ._ids import check_id, new_session_id
from .errors import SessionExistsError, SessionNotFoundError, StaleSessionError, StateTypeError
from .models import Session

if TYPE_CHECKING:
    from ._engine import Cx
    from ._queries import Queries

__all__ = ["Core"]

UTC = timezone.utc
_TICK = timedelta(microseconds=1)


class Core:
    """Operation logic and row mapping for one store (one dialect, prefix and options)."""

    def __init__(self, queries: Queries, *, tz_aware: bool = False) -> None:
        self.q = queries
        self.pg = queries.pg
        self.sqlite = queries.backend == "sqlite"
        self.tz_aware = tz_aware
        self._last = datetime.min

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

    def encode(self, state: Any, root: str = "state") -> str:
        """Check and encode a whole state (a dict)."""
        if not isinstance(state, dict):
            raise StateTypeError(f"{root} must be a dict, not {type(state).__name__}")
        return _json.dumps(state, pg=self.pg, root=root)

    def session(self, row: Any) -> Session:
        """Map a row of ``(id, app_name, user_id, state, created_at, updated_at, version)``."""
        present = self.present
        return Session(
            row[0],
            row[1],
            row[2],
            present(row[4]),
            present(row[5]),
            _json.loads(row[3], pg=self.pg),
            row[6],
        )

    # -- operations ----------------------------------------------------------------------------

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
        text = self.encode({} if state is None else state)
        now = self.now()
        try:
            cx.run(
                self.q.insert_session,
                {
                    "sid": sid,
                    "app": app_name,
                    "user": user_id,
                    "state": text,
                    "now": self.q.ts_in(now),
                },
            )
        except cx.dbapi.IntegrityError as exc:
            raise SessionExistsError(f"a session with id {sid!r} already exists") from exc
        shown = self.present(now)
        return Session(sid, app_name, user_id, shown, shown, _json.loads(text, pg=self.pg), 1)

    def get_session(self, cx: Cx, app_name: str, user_id: str, session_id: str) -> Session | None:
        check_id(app_name, "app_name")
        check_id(user_id, "user_id")
        check_id(session_id, "session_id")
        row = cx.one(self.q.get_session, {"sid": session_id, "app": app_name, "user": user_id})
        return None if row is None else self.session(row)

    def list_sessions(self, cx: Cx, app_name: str, user_id: str | None) -> list[Session]:
        check_id(app_name, "app_name")
        if user_id is None:
            rows = cx.all(self.q.list_app, {"app": app_name})
        else:
            check_id(user_id, "user_id")
            rows = cx.all(self.q.list_user, {"app": app_name, "user": user_id})
        session = self.session
        return [session(r) for r in rows]

    def update_session_state(
        self, cx: Cx, session_id: str, state: dict[str, Any], expected_version: int | None
    ) -> int:
        check_id(session_id, "session_id")
        text = self.encode(state)
        params: dict[str, Any] = {"sid": session_id, "state": text, "now": self.q.ts_in(self.now())}
        if expected_version is None:
            stmt = self.q.update_state
        else:
            stmt = self.q.update_state_expected
            params["expected"] = int(expected_version)
        version = self._bump(cx, stmt, params)
        if version is None:
            self._missing_or_stale(cx, session_id, expected_version)
        return version  # type: ignore[return-value]

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

    # -- shared steps --------------------------------------------------------------------------

    def _bump(self, cx: Cx, stmt: Any, params: dict[str, Any]) -> int | None:
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
