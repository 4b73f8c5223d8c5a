"""The SQL of every operation, written once with SQLAlchemy Core and compiled once per dialect.

:class:`Queries` holds each statement as a :class:`Stmt`: the SQL text in the driver's
paramstyle plus the order of its parameters, ready to run on a raw DBAPI cursor, and the names
of its result columns, by which every row is read. The few places
where dialects differ (JSON casts and merges, RETURNING versus MySQL's ``LAST_INSERT_ID``,
insert-if-absent) are decided here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from ._rows import positions
from ._schema import Tables, Timestamp

if TYPE_CHECKING:
    from ._checkpoint_queries import CheckpointQueries

__all__ = ["REPLAY_LSN", "SQLITE_KEYS_PER_STATEMENT", "WAL_LSN", "Queries", "Stmt"]

_T = TypeVar("_T")
#: sessions named by key in one statement on SQLite (its expression depth limit is 1000)
SQLITE_KEYS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class Stmt:
    """A compiled statement: SQL text, for positional paramstyles the parameter order, and the
    names of its result columns."""

    sql: str
    names: tuple[str, ...] | None
    fixed: dict[str, Any] | None = None  # values SQLAlchemy bound itself (e.g. SQLite's OFFSET 0)
    columns: tuple[str, ...] = ()  # the result columns, in order; empty if it returns no rows
    writes: bool = True  # it may change data (False only for plain SELECTs: safe to repeat)
    #: a hot statement: prepared on a connection's first use of it and run through the
    #: driver's protocol layer directly where the runner can (sync psycopg without a pooler)
    prepare: bool = False

    def at(self, name: str) -> int:
        """The index of result column ``name`` in this statement's rows."""
        return positions(self.columns, name)[0]

    def positions(self, *names: str) -> tuple[int, ...]:
        """The index of each of ``names`` in this statement's rows."""
        return positions(self.columns, *names)

    def bind(self, params: dict[str, Any]) -> Any:
        """The parameters in the form the driver wants (a tuple, or the dict itself)."""
        if self.fixed:
            params = self.fixed | params
        names = self.names
        if names is None:
            return params
        return tuple([params[n] for n in names])


#: PostgreSQL's WAL position after this connection's last commit, in bytes: the insert
#: position, which is past the end of every record inserted so far (the write position may
#: not be yet, with synchronous_commit=off). Read-your-writes keeps it (see _replicas).
WAL_LSN = Stmt(
    "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
    (),
    columns=("lsn",),
    writes=False,
)
#: How far a hot standby has replayed, in bytes (a server not in recovery: its own position).
REPLAY_LSN = Stmt(
    "SELECT (COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_insert_lsn()) - '0/0'::pg_lsn)"
    "::bigint",
    (),
    columns=("lsn",),
    writes=False,
)


def p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    """A named bind parameter."""
    return sa.bindparam(name, type_=type_)


ONE: sa.ColumnElement[Any] = sa.literal_column("1")
#: The columns an event is read from, in the order of :meth:`Queries.event_cols`.
EVENT_COLUMNS = (
    "session_id", "seq", "author", "content", "created_at", "state_delta", "invocation_id",
    "meta", "event_id",
)  # fmt: skip
#: The prefix of a listing's columns that hold each session's last event.
LAST_EVENT = "last_event_"
ZERO: sa.ColumnElement[Any] = sa.literal_column("0")
#: The key of a session: statements that bind these need not select them.
OWNER = ("id", "app_name", "user_id")


class Queries:
    """Every statement for one dialect and table prefix, compiled at construction."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        self.dialect = dialect
        self.backend = "mysql" if dialect.name == "mariadb" else dialect.name
        self.pg = self.backend == "postgresql"
        self.returning = self.backend != "mysql"
        self.tables = tables
        self._cache: dict[Any, Stmt] = {}
        self._guarded: dict[tuple[str | None, str | None], dict[str, Stmt]] = {}
        s, ev, apps, users = tables.sessions, tables.events, tables.app_states, tables.user_states
        c = s.c
        now = p("now", Timestamp())

        # -- sessions: read ----------------------------------------------------------------
        app_state = sa.select(self.json_out(apps.c.state, label=False)).where(
            apps.c.app_name == c.app_name
        )
        user_state = sa.select(self.json_out(users.c.state, label=False)).where(
            users.c.app_name == c.app_name, users.c.user_id == c.user_id
        )
        # A session is read from these columns, by name (see _rows.Rows.session_reader); the
        # variants below replace some of them and keep the rest.
        full: dict[str, sa.ColumnElement[Any]] = {
            "id": c.id, "app_name": c.app_name, "user_id": c.user_id,
            "state": self.json_out(c.state), "created_at": c.created_at,
            "updated_at": c.updated_at, "version": c.version, "event_count": c.event_count,
            "event_bytes": c.event_bytes,
            "app_state": app_state.scalar_subquery().label("app_state"),
            "user_state": user_state.scalar_subquery().label("user_state"),
            "title": c.title, "labels": self.json_out(c.labels), "expires_at": c.expires_at,
        }  # fmt: skip
        self.cols = list(full.values())
        self.light_cols = list(
            {**full, "state": sa.literal_column("'{}'").label("state"),
             "app_state": sa.null().label("app_state"),
             "user_state": sa.null().label("user_state")}.values()
        )  # fmt: skip
        # Where the owner is a parameter, the scoped states are read with uncorrelated
        # subqueries: the database evaluates each once per statement, not once per row.
        app_by_param = sa.select(self.json_out(apps.c.state, label=False)).where(
            apps.c.app_name == p("app")
        )
        user_by_param = sa.select(self.json_out(users.c.state, label=False)).where(
            users.c.app_name == p("app"), users.c.user_id == p("user")
        )
        owner = {
            **full,
            "app_state": app_by_param.scalar_subquery().label("app_state"),
            "user_state": user_by_param.scalar_subquery().label("user_state"),
        }
        self.owner_cols = list(owner.values())
        self.app_cols = list(
            {**full, "app_state": app_by_param.scalar_subquery().label("app_state")}.values()
        )
        # an expired session is invisible to every read and write, purged or not
        self.live = sa.or_(c.expires_at.is_(None), c.expires_at > now)
        live = self.live
        # Every statement on one session names its whole key, owner first: a table
        # partitioned or distributed on (app_name, user_id) serves it from one shard.
        owned = self.owned = sa.and_(
            c.app_name == p("app"), c.user_id == p("user"), c.id == p("sid")
        )
        # id, app_name and user_id are parameters here: not selecting them saves a column
        # descriptor each, which pure-Python drivers (PyMySQL) parse on every query
        self.get_session = self.compile(sa.select(*self.without(owner, *OWNER)).where(owned, live))
        # by id alone: two rows tell that the id is ambiguous (ids are per app and user)
        self.get_by_id = self.compile(sa.select(*self.cols).where(c.id == p("sid"), live).limit(2))
        self.get_by_key = self.compile(sa.select(*self.cols).where(owned, live))
        # expired but not yet purged included (the CLI's --include-expired)
        self.get_any = self.compile(sa.select(*self.cols).where(owned))
        # the owners of an id (ids are per app and user): two rows are enough to tell that
        # an id alone is ambiguous
        self.owners_live = self.compile(
            sa.select(c.app_name, c.user_id).where(c.id == p("sid"), live).limit(2)
        )
        self.owners = self.compile(
            sa.select(c.app_name, c.user_id).where(c.id == p("sid")).limit(2)
        )
        order = (c.updated_at.desc(), c.id.desc())
        self.list_user = self.compile(
            sa.select(*self.without(owner, *OWNER[1:]))
            .where(c.app_name == p("app"), c.user_id == p("user"), live)
            .order_by(*order)
        )
        self.list_app = self.compile(
            sa.select(*self.app_cols).where(c.app_name == p("app"), live).order_by(*order)
        )
        # the same listings, each session with its last event (None: it has none), joined on
        # the newest seq (an index probe of the events' key per session)
        last = ev.alias("last_event")
        newest = (
            sa.select(sa.func.max(ev.c.seq))
            .where(ev.c.app_name == c.app_name, ev.c.user_id == c.user_id, ev.c.session_id == c.id)
            .correlate(s)
            .scalar_subquery()
        )
        with_last = s.outerjoin(
            last,
            sa.and_(
                last.c.app_name == c.app_name, last.c.user_id == c.user_id,
                last.c.session_id == c.id, last.c.seq == newest,
            ),
        )  # fmt: skip
        last_cols = [
            col.label(f"{LAST_EVENT}{name}")
            for name, col in zip(EVENT_COLUMNS, self.event_cols(last), strict=True)
        ]
        self.list_user_last = self.compile(
            sa.select(*self.without(owner, *OWNER[1:]), *last_cols)
            .select_from(with_last)
            .where(c.app_name == p("app"), c.user_id == p("user"), live)
            .order_by(*order)
        )
        self.list_app_last = self.compile(
            sa.select(*self.app_cols, *last_cols)
            .select_from(with_last)
            .where(c.app_name == p("app"), live)
            .order_by(*order)
        )

        # -- sessions: create, one round trip with the scoped state read back ----------------
        insert = sa.insert(s).values(
            id=p("sid"),
            app_name=p("app"),
            user_id=p("user"),
            state=self.json_in("state"),
            created_at=now,
            updated_at=now,
            version=ONE,
            expires_at=p("expires", Timestamp()),
            ttl_seconds=p("ttl", sa.Float()),
            title=p("title"),
            labels=self.json_in("labels"),
        )
        app_sub = sa.select(self.json_out(apps.c.state, label=False)).where(
            apps.c.app_name == p("app")
        )
        user_sub = sa.select(self.json_out(users.c.state, label=False)).where(
            users.c.app_name == p("app"), users.c.user_id == p("user")
        )
        # MariaDB has INSERT ... RETURNING (MySQL has not)
        self.insert_returns = self.returning or bool(getattr(dialect, "is_mariadb", False))
        self.insert_session = self.compile(
            insert.returning(
                app_sub.scalar_subquery().label("app_state"),
                user_sub.scalar_subquery().label("user_state"),
            )
            if self.insert_returns
            else insert
        )
        self.insert_plain = self.compile(insert)

        # -- sessions: write -----------------------------------------------------------------
        # a sliding expiry moves on with every write
        renew = self.renew = sa.case(
            (c.ttl_seconds.is_(None), c.expires_at), else_=self.plus_seconds(now, c.ttl_seconds)
        )
        set_state = {"state": self.json_in("state"), "updated_at": now, "expires_at": renew}
        self.update_state = self.compile(self.bump(sa.update(s).where(owned, live), set_state))
        self.update_state_expected = self.compile(
            self.bump(sa.update(s).where(owned, live, c.version == p("expected")), set_state)
        )
        # the general write path: under the row lock taken by lock_session
        self.lock_session = self.compile(
            sa.select(self.json_out(c.state), c.version, c.last_seq)
            .where(owned, live)
            .with_for_update()
        )
        # the same by id alone: two rows tell that the id is ambiguous (both then unlocked
        # by the rollback)
        self.lock_session_by_id = self.compile(
            sa.select(c.app_name, c.user_id, self.json_out(c.state), c.version, c.last_seq)
            .where(c.id == p("sid"), live)
            .limit(2)
            .with_for_update()
        )
        self.write_session = self.compile(
            sa.update(s)
            .where(owned)
            .values(
                state=self.json_in("state"),
                updated_at=now,
                version=p("version"),
                last_seq=p("last_seq"),
                event_count=c.event_count + p("n_events"),
                event_bytes=c.event_bytes + p("n_bytes"),
                expires_at=renew,
            )
        )
        self.write_info = self.compile(
            sa.update(s)
            .where(owned)
            .values(title=p("title"), labels=self.json_in("labels"),
                    expires_at=p("expires", Timestamp()), ttl_seconds=p("ttl", sa.Float()),
                    updated_at=now, version=p("version"))
        )  # fmt: skip
        self.lock_info = self.compile(
            sa.select(c.version, c.title, self.json_out(c.labels), c.expires_at, c.ttl_seconds)
            .where(owned, live)
            .with_for_update()
        )
        self.get_version = self.compile(sa.select(c.version).where(owned, live))
        # partial update in one statement where the database's merge equals dict.update
        merged: sa.ColumnElement[Any]
        if self.pg:
            merged = sa.type_coerce(c.state, postgresql.JSONB()).op("||")(
                sa.cast(p("set", sa.Text()), postgresql.JSONB())
            )
        elif self.backend == "mysql":
            merged = sa.func.json_merge_patch(c.state, p("set", sa.Text()))
        else:
            merged = sa.func.json_patch(c.state, p("set", sa.Text()))
        patch_where = [owned, live]
        if self.backend == "mysql":  # MariaDB's JSON functions give NULL past 32 levels
            patch_where.append(merged.is_not(None))
        self.patch_fast = self.compile(
            self.bump(
                sa.update(s).where(*patch_where),
                {"state": merged, "updated_at": now, "expires_at": renew},
            )
        )
        self.patch_fast_expected = self.compile(
            self.bump(
                sa.update(s).where(*patch_where, c.version == p("expected")),
                {"state": merged, "updated_at": now, "expires_at": renew},
            )
        )

        # -- sessions: delete ----------------------------------------------------------------
        self.delete_owned = self.compile(sa.delete(s).where(owned))
        self.clear_user = self.compile(
            sa.delete(s).where(c.app_name == p("app"), c.user_id == p("user"))
        )
        self.clear_app = self.compile(sa.delete(s).where(c.app_name == p("app")))

        # -- events --------------------------------------------------------------------------
        self.insert_event = self.compile(
            sa.insert(ev).values(
                app_name=p("app"),
                user_id=p("user"),
                session_id=p("sid"),
                seq=p("seq"),
                author=p("author"),
                content=self.json_in("content"),
                state_delta=self.json_in("delta"),
                invocation_id=p("invocation"),
                meta=self.json_in("meta"),
                created_at=now,
                size=p("size"),
                event_id=p("event_id"),
            )
        )

        # -- events: pop the newest (pop_events) -----------------------------------------------
        # Seqs are never reused: last_seq stays, so a reader that saw seq n never mistakes a
        # later event for it. Under the session's row lock (lock_version), so no event can be
        # appended or popped meanwhile.
        self.lock_version = self.compile(sa.select(c.version).where(owned, live).with_for_update())
        self.write_popped = self.compile(
            self.bump(
                sa.update(s).where(owned, c.version == p("expected")),
                {"updated_at": now, "expires_at": renew,
                 "event_count": c.event_count - p("n_events"),
                 "event_bytes": c.event_bytes - p("n_bytes")},
            )
        )  # fmt: skip
        e = ev.c
        popped_cols = [*self.event_cols(), e.size]
        # PostgreSQL, SQLite >= 3.35 and MariaDB delete and return the rows in one statement
        self.delete_returns = bool(getattr(dialect, "delete_returning", False))
        # elsewhere (MySQL) they are read under a lock, then deleted
        self.newest_locked = self.compile(
            sa.select(*popped_cols)
            .where(*self.of_session(ev))
            .order_by(e.seq.desc())
            .limit(p("limit", sa.BigInteger()))
            .with_for_update()
        )
        self.delete_from_seq = self.compile(
            sa.delete(ev).where(*self.of_session(ev), e.seq >= p("from_seq"))
        )
        # pop_events' until: the events below :before, read ahead under the lock (same columns)
        self.older_locked = self.compile(
            sa.select(*popped_cols)
            .where(*self.of_session(ev), e.seq < p("before"))
            .order_by(e.seq.desc())
            .limit(p("limit", sa.BigInteger()))
            .with_for_update()
        )
        if self.delete_returns:
            newer = ev.alias("newer")
            nth_newest = (
                sa.select(newer.c.seq)
                .where(*self.of_session(newer))
                .order_by(newer.c.seq.desc())
                .limit(ONE)
                .offset(p("skip", sa.BigInteger()))
                .scalar_subquery()
            )
            # the newest :skip + 1 events (every one, if the session has fewer)
            self.pop_newest = self.compile(
                sa.delete(ev)
                .where(*self.of_session(ev), e.seq >= sa.func.coalesce(nth_newest, ZERO))
                .returning(*popped_cols)
            )
        #: the statement whose rows are the popped events (they carry ``size`` too)
        self.popped = self.pop_newest if self.delete_returns else self.newest_locked

        # -- scoped state --------------------------------------------------------------------
        self.scopes: dict[str, dict[str, Stmt]] = {}
        for scope, table, keys in (
            ("app", apps, {"app_name": "app"}),
            ("user", users, {"app_name": "app", "user_id": "user"}),
        ):
            where = [table.c[col] == p(name) for col, name in keys.items()]
            self.scopes[scope] = {
                "get": self.compile(sa.select(self.json_out(table.c.state)).where(*where)),
                "ensure": self.compile(
                    self.insert_if_absent(
                        table,
                        {
                            **{col: p(name) for col, name in keys.items()},
                            "state": self.json_in("state"),
                            "updated_at": now,
                        },
                    )
                ),
                "lock": self.compile(
                    sa.select(self.json_out(table.c.state)).where(*where).with_for_update()
                ),
                "write": self.compile(
                    sa.update(table)
                    .where(*where)
                    .values(state=self.json_in("state"), updated_at=now)
                ),
                "delete": self.compile(sa.delete(table).where(*where)),
            }

        # -- labels ----------------------------------------------------------------------------
        lb = tables.labels
        self.insert_label = self.compile(
            sa.insert(lb).values(
                app_name=p("app"), user_id=p("user"), session_id=p("sid"), label=p("label")
            )
        )
        self.delete_labels = self.compile(
            sa.delete(lb).where(
                lb.c.app_name == p("app"), lb.c.user_id == p("user"), lb.c.session_id == p("sid")
            )
        )

        # -- administration --------------------------------------------------------------------
        self.stats = self.compile(
            sa.select(
                c.app_name, sa.func.count().label("sessions"),
                sa.func.count(sa.distinct(c.user_id)).label("users"),
                sa.func.coalesce(sa.func.sum(c.event_count), 0).label("events"),
                sa.func.coalesce(sa.func.sum(self.byte_length(c.state)), 0).label("state_bytes"),
                sa.func.coalesce(sa.func.sum(c.event_bytes), 0).label("event_bytes"),
                sa.func.min(c.created_at).label("oldest_created_at"),
                sa.func.max(c.updated_at).label("newest_updated_at"),
            ).where(live).group_by(c.app_name).order_by(c.app_name)
        )  # fmt: skip
        # the purge backlog per app: expired sessions that purge_expired has not deleted yet
        self.expired_by_app = self.compile(
            sa.select(c.app_name, sa.func.count().label("expired"))
            .where(*self.filters(frozenset({"expired"})))
            .group_by(c.app_name)
        )
        self.export_cols = [
            c.id, c.app_name, c.user_id, self.json_out(c.state), c.created_at, c.updated_at,
            c.version, c.expires_at, c.ttl_seconds, c.title, self.json_out(c.labels),
        ]  # fmt: skip
        full = {
            "app_name": p("app"), "user_id": p("user"), "state": self.json_in("state"),
            "created_at": p("created", Timestamp()), "updated_at": p("updated", Timestamp()),
            "version": p("version"), "expires_at": p("expires", Timestamp()),
            "ttl_seconds": p("ttl", sa.Float()), "title": p("title"),
            "labels": self.json_in("labels"),
        }  # fmt: skip
        self.get_any_version = self.compile(sa.select(c.version).where(owned))
        self.import_session = self.compile(sa.insert(s).values(id=p("sid"), **full))
        self.import_update = self.compile(sa.update(s).where(owned).values(**full))
        self.import_event = self.compile(
            self.insert_if_absent(
                ev,
                {"app_name": p("app"), "user_id": p("user"), "session_id": p("sid"),
                 "seq": p("seq"), "author": p("author"),
                 "content": self.json_in("content"), "state_delta": self.json_in("delta"),
                 "invocation_id": p("invocation"), "meta": self.json_in("meta"),
                 "created_at": now, "size": p("size"), "event_id": p("event_id")},
            )
        )  # fmt: skip
        e = ev.c
        of_session = sa.and_(e.app_name == c.app_name, e.user_id == c.user_id, e.session_id == c.id)
        self.recount = self.compile(
            sa.update(s).where(owned).values(
                last_seq=sa.select(sa.func.coalesce(sa.func.max(e.seq), 0)).where(of_session)
                .scalar_subquery(),
                event_count=sa.select(sa.func.count()).where(of_session).scalar_subquery(),
                event_bytes=sa.select(sa.func.coalesce(sa.func.sum(e.size), 0)).where(of_session)
                .scalar_subquery(),
            )
        )  # fmt: skip
        self.all_app_states = self.compile(
            sa.select(apps.c.app_name, self.json_out(apps.c.state)).order_by(apps.c.app_name)
        )
        self.all_user_states = self.compile(
            sa.select(users.c.app_name, users.c.user_id, self.json_out(users.c.state)).order_by(
                users.c.app_name, users.c.user_id
            )
        )

    def write_all(
        self, events: int, own: str | None, app: bool, user: bool, expected: bool, by_id: bool
    ) -> Stmt:
        """PostgreSQL: a whole session write in one statement (one round trip).

        A data-modifying CTE updates the session row (state, counters, version, expiry) where
        it is live (and at :expected when ``expected``), then, only if it did, merges the
        ``app:``/``user:`` keys into their rows (:app_set, :user_set, ``||`` is ``dict.update``)
        and inserts ``events`` events (:author0, :content0 ... numbered from the new last_seq).
        ``own`` is ``"merge"`` (:set), ``"replace"`` (:state) or None (the state is kept).
        ``by_id``: the session is named by :sid alone, and written only if it is the one live
        session with that id (the owner's keys are taken from the row).

        The one row returned holds the new version and last_seq and how many rows each part
        wrote, so the caller checks it is this statement's own result; no row when no session
        matched (missing, expired or stale).
        """

        def build() -> ClauseElement:
            t = self.tables
            s, ev = t.sessions, t.events
            c = s.c
            now = p("now", Timestamp())
            jsonb = postgresql.JSONB()
            values: dict[str, Any] = {"updated_at": now, "expires_at": self.renew,
                                      "version": c.version + ONE}  # fmt: skip
            if own == "merge":
                values["state"] = sa.type_coerce(c.state, jsonb).op("||")(
                    sa.cast(p("set", sa.Text()), jsonb)
                )
            elif own == "replace":
                values["state"] = self.json_in("state")
            if events:
                n: sa.ColumnElement[Any] = sa.literal_column(str(events))
                values.update(
                    last_seq=c.last_seq + n, event_count=c.event_count + n,
                    event_bytes=c.event_bytes + p("n_bytes", sa.BigInteger()),
                )  # fmt: skip
            where = [self.owned, self.live]
            if by_id:  # the one live session with this id, else none
                o = s.alias("o")
                same_id = sa.select(sa.func.count()).where(
                    o.c.id == p("sid"),
                    sa.or_(o.c.expires_at.is_(None), o.c.expires_at > now),
                )
                where = [c.id == p("sid"), self.live, same_id.scalar_subquery() == ONE]
            if expected:
                where.append(c.version == p("expected", sa.BigInteger()))
            session = (
                sa.update(s)
                .where(*where)
                .values(**values)
                .returning(c.version, c.last_seq, c.app_name, c.user_id)
            ).cte("s")
            counts: list[sa.ColumnElement[Any]] = [session.c.version, session.c.last_seq]
            key = {"app_name": session.c.app_name, "user_id": session.c.user_id}
            for name, table, on in (
                ("app", t.app_states, ["app_name"]),
                ("user", t.user_states, ["app_name", "user_id"]),
            ):
                if not (app if name == "app" else user):
                    counts.append(sa.literal_column("0").label(f"n_{name}"))
                    continue
                cols = {col: key[col] for col in on}
                rows = sa.select(
                    *cols.values(), sa.cast(p(f"{name}_set", sa.Text()), jsonb), now
                ).select_from(session)
                upsert = postgresql.insert(table).from_select([*cols, "state", "updated_at"], rows)
                upsert = upsert.on_conflict_do_update(
                    index_elements=on,
                    set_={
                        "state": sa.type_coerce(table.c.state, jsonb).op("||")(
                            upsert.excluded.state
                        ),
                        "updated_at": upsert.excluded.updated_at,
                    },
                )
                part = upsert.returning(ONE).cte(f"w_{name}")
                counts.append(
                    sa.select(sa.func.count())
                    .select_from(part)
                    .scalar_subquery()
                    .label(f"n_{name}")
                )
            if events:
                e = ev.c
                per_event = [
                    sa.select(
                        key["app_name"], key["user_id"], p("sid", sa.String()),
                        session.c.last_seq - sa.literal_column(str(events - 1 - i)),
                        p(f"author{i}", sa.String()), self.json_in(f"content{i}"),
                        self.json_in(f"delta{i}"), p(f"invocation{i}", sa.String()),
                        self.json_in(f"meta{i}"), now, p(f"size{i}", sa.BigInteger()),
                        p(f"event_id{i}", sa.String()),
                    ).select_from(session)
                    for i in range(events)
                ]  # fmt: skip
                rows_in = per_event[0] if events == 1 else sa.union_all(*per_event)
                insert = sa.insert(ev).from_select(
                    [e.app_name, e.user_id, e.session_id, e.seq, e.author, e.content,
                     e.state_delta, e.invocation_id, e.meta, e.created_at, e.size, e.event_id],
                    rows_in,
                )  # fmt: skip
                part = insert.returning(ONE).cte("w_events")
                counts.append(
                    sa.select(sa.func.count()).select_from(part).scalar_subquery().label("n_events")
                )
            else:
                counts.append(sa.literal_column("0").label("n_events"))
            return sa.select(*counts).select_from(session)

        key = ("write_all", events, own, app, user, expected, by_id)
        stmt = self._cache.get(key)
        if stmt is None:  # a SELECT on top, yet it writes: never repeated as a read
            stmt = self._cache[key] = dataclasses.replace(self.compile(build()), writes=True)
        return stmt

    @cached_property
    def lg(self) -> CheckpointQueries:
        """The LangGraph checkpoint statements (compiled on first use)."""
        from ._checkpoint_queries import CheckpointQueries

        return CheckpointQueries(self)

    @staticmethod
    def without(
        columns: dict[str, sa.ColumnElement[Any]], *names: str
    ) -> list[sa.ColumnElement[Any]]:
        """The ``columns`` except ``names``, in order."""
        return [col for name, col in columns.items() if name not in names]

    # -- dialect differences ------------------------------------------------------------------

    def json_in(self, name: str) -> sa.ColumnElement[Any]:
        """A JSON text parameter, cast to JSONB on PostgreSQL."""
        if self.pg:
            return sa.cast(p(name, sa.Text()), postgresql.JSONB())
        return p(name, sa.Text())

    def json_out(self, col: sa.ColumnElement[Any], label: bool = True) -> sa.ColumnElement[Any]:
        """A JSON column read back as text (PostgreSQL drivers would parse JSONB themselves)."""
        if self.pg:
            cast = sa.cast(col, sa.Text())
            return cast.label(col.key) if label else cast
        return col

    def bump(self, stmt: sa.Update, values: dict[str, Any]) -> sa.Update:
        """Set ``values``, advance ``version`` and hand the new value back in the same trip.

        PostgreSQL and SQLite use ``RETURNING``; MySQL has no ``UPDATE ... RETURNING``, so the
        new version goes through ``LAST_INSERT_ID(expr)`` and comes back as ``lastrowid``.
        """
        version = self.tables.sessions.c.version
        if self.returning:
            return stmt.values(**values, version=version + ONE).returning(version)
        return stmt.values(**values, version=sa.func.last_insert_id(version + ONE))

    def plus_seconds(self, when: Any, seconds: Any) -> sa.ColumnElement[Any]:
        """``when`` plus a number of seconds, in this dialect's date arithmetic."""
        if self.pg:
            zero: sa.ColumnElement[Any] = sa.literal_column("0")
            interval = sa.func.make_interval(zero, zero, zero, zero, zero, zero, seconds)
            return sa.cast(when, postgresql.TIMESTAMP()).op("+")(interval)
        if self.backend == "mysql":
            micro = sa.cast(seconds * sa.literal_column("1000000"), sa.BigInteger())
            return sa.func.timestampadd(sa.literal_column("MICROSECOND"), micro, when)
        modifier = (
            sa.literal_column("'+'").op("||")(seconds).op("||")(sa.literal_column("' seconds'"))
        )
        return sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%f'"), when, modifier)

    def db_now(self) -> sa.ColumnElement[Any]:
        """The database server's clock, as naive UTC."""
        if self.pg:
            return sa.func.timezone(sa.literal_column("'UTC'"), sa.func.now())
        if self.backend == "mysql":
            return sa.func.utc_timestamp(sa.literal_column("6"))
        return sa.func.strftime(
            sa.literal_column("'%Y-%m-%d %H:%M:%f'"), sa.literal_column("'now'")
        )

    def byte_length(self, col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The size in bytes of a JSON column's text."""
        if self.pg:
            return sa.func.octet_length(sa.cast(col, sa.Text()))
        if self.backend == "mysql":
            return sa.func.length(col)
        return sa.func.length(sa.cast(col, sa.LargeBinary()))

    def guarded_write(self, app: str | None, user: str | None) -> dict[str, Stmt]:
        """MySQL/MariaDB's whole-state write at an expected version, in one request: its
        statements, run in order in one transaction (:meth:`Cx.batch`).

        ``lock`` locks the session's row and notes (``@sdb_ok``) whether it is live at
        ``:expected``; ``check_app``/``check_user`` lock each scoped row to change and note
        whether it still holds ``:old``, the text read before (``insert``: there was no
        row, and still is none); the writes (``write_app``, ``write_user``, ``write``) then
        change rows only if every note is 1, so they are all made or none. ``flags`` reads
        the notes back. ``app``/``user``: None (no change), "update" or "insert".
        """
        cached = self._guarded.get((app, user))
        if cached is not None:
            return cached
        s, c = self.tables.sessions, self.tables.sessions.c
        now = p("now", Timestamp())
        notes = ["@sdb_ok = 1"]
        stmts: dict[str, Stmt] = {}

        def into(query: sa.Select[Any], var: str) -> Stmt:
            stmt = self.compile(query.with_for_update())
            return dataclasses.replace(stmt, sql=f"{stmt.sql} INTO {var}", columns=())

        count = sa.func.count()
        stmts["lock"] = into(
            sa.select(count)
            .select_from(s)
            .where(self.owned, self.live, c.version == p("expected")),
            "@sdb_ok",
        )
        for scope, mode, table in (
            ("app", app, self.tables.app_states),
            ("user", user, self.tables.user_states),
        ):
            if mode is None:
                continue
            where = [table.c.app_name == p("app")]
            if scope == "user":
                where.append(table.c.user_id == p("user"))
            var = f"@sdb_{scope}"
            notes.append(f"{var} = 1")
            if mode == "update":
                same = sa.cast(table.c.state, sa.LargeBinary()) == sa.cast(
                    p("old", sa.Text()), sa.LargeBinary()
                )
                stmts[f"check_{scope}"] = into(
                    sa.select(count).select_from(table).where(*where, same), var
                )
            else:
                stmts[f"check_{scope}"] = into(
                    sa.select(sa.case((count == 0, ONE), else_=ZERO))
                    .select_from(table)
                    .where(*where),
                    var,
                )
        go = sa.text(" AND ".join(notes))
        for scope, mode, table in (
            ("app", app, self.tables.app_states),
            ("user", user, self.tables.user_states),
        ):
            if mode is None:
                continue
            names = ["app_name", "user_id"] if scope == "user" else ["app_name"]
            if mode == "update":
                where = [table.c[n] == p(n.split("_")[0]) for n in names]
                query: Any = (
                    sa.update(table)
                    .where(*where, go)
                    .values(state=self.json_in("state"), updated_at=now)
                )
            else:
                query = sa.insert(table).from_select(
                    [*names, "state", "updated_at"],
                    sa.select(
                        *[p(n.split("_")[0]) for n in names], self.json_in("state"), now
                    ).where(go),
                )
            stmts[f"write_{scope}"] = self.compile(query)
        set_state = {"state": self.json_in("state"), "updated_at": now, "expires_at": self.renew}
        stmts["write"] = self.compile(
            self.bump(
                sa.update(s).where(self.owned, self.live, c.version == p("expected"), go),
                set_state,
            )
        )
        stmts["flags"] = self.compile(
            sa.select(
                *[
                    sa.literal_column(f"@sdb_{n}").label(f"{n}_ok")
                    for n in ("ok", "app", "user")
                    if n == "ok" or (app if n == "app" else user) is not None
                ]
            )
        )
        self._guarded[(app, user)] = stmts
        return stmts

    def cached(
        self, key: Any, build: Callable[[], ClauseElement], *, prepare: bool = False
    ) -> Stmt:
        """Compile ``build()`` once for ``key`` (statements whose shape depends on arguments);
        ``prepare``: a hot statement (:attr:`Stmt.prepare`)."""
        stmt = self._cache.get(key)
        if stmt is None:
            stmt = self.compile(build())
            if prepare:
                stmt = replace(stmt, prepare=True)
            self._cache[key] = stmt
        return stmt

    def filters(self, f: frozenset[str]) -> list[sa.ColumnElement[bool]]:
        """WHERE terms for the named session filters (their values are bound by name)."""
        c = self.tables.sessions.c
        lb = self.tables.labels.c
        ts = Timestamp()
        terms: dict[str, Any] = {
            "app": c.app_name == p("app"),
            "user": c.user_id == p("user"),
            "label": sa.exists().where(
                lb.app_name == c.app_name,
                lb.user_id == c.user_id,
                lb.session_id == c.id,
                lb.label == p("label"),
            ),
            "created_after": c.created_at > p("created_after", ts),
            "created_before": c.created_at < p("created_before", ts),
            "updated_after": c.updated_at > p("updated_after", ts),
            "updated_before": c.updated_at < p("updated_before", ts),
            "live": self.live,
            "expired": sa.and_(c.expires_at.is_not(None), c.expires_at <= self.db_now()),
        }
        return [terms[name] for name in sorted(f)]

    def list_page(
        self, f: frozenset[str], order: str, cursor: str | None, limit: bool, light: bool
    ) -> Stmt:
        """A listing with filters, keyset cursor and limit (compiled once per shape).

        Rows are ordered by the sort key and id, then (listings of several users, where ids
        repeat) by app and user. ``cursor`` is None, ``"id"`` (after :cursor_at, :cursor_id)
        or ``"owner"`` (also :cursor_app, :cursor_user).
        """

        def build() -> ClauseElement:
            c = self.tables.sessions.c
            if light:
                columns = self.light_cols
            elif "user" in f:
                columns = self.owner_cols
            elif "app" in f:
                columns = self.app_cols
            else:
                columns = self.cols
            query = sa.select(*columns).where(*self.filters(f))
            key = c.updated_at if order == "updated" else c.created_at
            desc = order == "updated"
            sort = [key, c.id] if "user" in f else [key, c.id, c.app_name, c.user_id]
            if cursor:
                bounds = [p("cursor_at", Timestamp()), p("cursor_id")]
                if cursor == "owner":
                    bounds += [p("cursor_app"), p("cursor_user")]
                query = query.where(self.after(sort[: len(bounds)], bounds, desc))
            query = query.order_by(*(col.desc() if desc else col for col in sort))
            if limit:
                query = query.limit(p("limit", sa.Integer()))
            return query

        return self.cached(("list", f, order, cursor, limit, light), build)

    @staticmethod
    def after(
        columns: Sequence[sa.ColumnElement[Any]], bounds: Sequence[Any], desc: bool
    ) -> sa.ColumnElement[bool]:
        """Rows strictly after ``bounds`` in the order of ``columns`` (keyset pagination)."""
        terms = []
        for i, (col, bound) in enumerate(zip(columns, bounds, strict=True)):
            equal = [c == b for c, b in zip(columns[:i], bounds[:i], strict=True)]
            terms.append(sa.and_(*equal, col < bound if desc else col > bound))
        return sa.or_(*terms)

    def count(self, f: frozenset[str]) -> Stmt:
        """COUNT(*) of sessions matching the filters."""
        s = self.tables.sessions
        return self.cached(
            ("count", f),
            lambda: (
                sa.select(sa.func.count().label("count")).select_from(s).where(*self.filters(f))
            ),
        )

    def pick_ids(self, f: frozenset[str]) -> Stmt:
        """The keys of up to :limit sessions matching the filters (for batched deletes)."""
        c = self.tables.sessions.c
        return self.cached(
            ("pick", f),
            lambda: (
                sa.select(c.app_name, c.user_id, c.id)
                .where(*self.filters(f))
                .limit(p("limit", sa.Integer()))
            ),
        )

    def key_chunks(self, rows: Sequence[_T]) -> Iterator[Sequence[_T]]:
        """``rows`` in slices small enough for one :meth:`keys_in` each: SQLite parses the
        ``OR`` of n keys as a tree n deep and refuses one deeper than 1000."""
        size = SQLITE_KEYS_PER_STATEMENT if self.backend == "sqlite" else max(len(rows), 1)
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    def keys_in(self, table: sa.Table, id_column: str, n: int) -> sa.ColumnElement[bool]:
        """``table``'s rows of ``n`` sessions, by whole key (:app0, :user0, :id0 ...)."""
        c = table.c
        return sa.or_(
            *(
                sa.and_(
                    c.app_name == p(f"app{i}"), c.user_id == p(f"user{i}"),
                    c[id_column] == p(f"id{i}"),
                )
                for i in range(n)
            )
        )  # fmt: skip

    def delete_ids(self, n: int) -> Stmt:
        """DELETE of ``n`` sessions by key (:app0, :user0, :id0 ... :id{n-1})."""
        s = self.tables.sessions
        return self.cached(("delete", n), lambda: sa.delete(s).where(self.keys_in(s, "id", n)))

    def export_page(self, by_app: bool, cursor: bool) -> Stmt:
        """Sessions in creation order, expired ones included, for export."""

        def build() -> ClauseElement:
            c = self.tables.sessions.c
            query = sa.select(*self.export_cols)
            if by_app:
                query = query.where(c.app_name == p("app"))
            if cursor:
                # (created_at, id, app_name, user_id) > the cursor's: ids repeat across owners
                at, sid = p("cursor_at", Timestamp()), p("cursor_id")
                app, user = p("cursor_app"), p("cursor_user")
                query = query.where(
                    sa.or_(
                        c.created_at > at,
                        sa.and_(c.created_at == at, c.id > sid),
                        sa.and_(c.created_at == at, c.id == sid, c.app_name > app),
                        sa.and_(
                            c.created_at == at, c.id == sid, c.app_name == app, c.user_id > user
                        ),
                    )
                )
            order = (c.created_at, c.id, c.app_name, c.user_id)
            return query.order_by(*order).limit(p("limit", sa.Integer()))

        return self.cached(("export", by_app, cursor), build)

    def events_of(self, n: int) -> Stmt:
        """Every event of ``n`` sessions (:app0, :user0, :id0 ...), by session and seq."""

        def build() -> ClauseElement:
            c = self.tables.events.c
            return (
                sa.select(
                    c.app_name,
                    c.user_id,
                    c.session_id,
                    c.seq,
                    c.author,
                    self.json_out(c.content),
                    c.created_at,
                    self.json_out(c.state_delta),
                    c.invocation_id,
                    self.json_out(c.meta),
                    c.size,
                    c.event_id,
                )
                .where(self.keys_in(self.tables.events, "session_id", n))
                .order_by(c.app_name, c.user_id, c.session_id, c.seq)
            )

        return self.cached(("events_of", n), build)

    def insert_if_absent(self, table: sa.Table, values: dict[str, Any]) -> ClauseElement:
        """INSERT that does nothing when the primary key exists."""
        if self.pg:
            return postgresql.insert(table).values(**values).on_conflict_do_nothing()
        if self.backend == "sqlite":
            return sqlite.insert(table).values(**values).on_conflict_do_nothing()
        return mysql.insert(table).values(**values).prefix_with("IGNORE")

    def insert_if_absent_rows(self, table: sa.Table, rows: list[dict[str, Any]]) -> ClauseElement:
        """A multi-row :meth:`insert_if_absent`."""
        if self.pg:
            return postgresql.insert(table).values(rows).on_conflict_do_nothing()
        if self.backend == "sqlite":
            return sqlite.insert(table).values(rows).on_conflict_do_nothing()
        return mysql.insert(table).values(rows).prefix_with("IGNORE")

    def compile(self, construct: ClauseElement) -> Stmt:
        """Compile ``construct`` for this dialect into a :class:`Stmt`."""
        compiled: Any = construct.compile(dialect=self.dialect)
        names = None
        if self.dialect.positional:
            names = tuple(compiled.positiontup or ())
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        exported = getattr(construct, "exported_columns", None)
        columns = tuple(exported.keys()) if exported is not None else ()
        writes = bool(compiled.isinsert or compiled.isupdate or compiled.isdelete)
        if getattr(construct, "_for_update_arg", None) is not None:
            writes = True  # a row lock: part of a write
        return Stmt(compiled.string, names, fixed or None, columns, writes)

    def list_events(self, after: bool, before: bool, limit: bool, newest_first: bool) -> Stmt:
        """The event slice query for this combination of bounds (compiled once, cached)."""

        def build() -> ClauseElement:
            c = self.tables.events.c
            query = sa.select(
                *self.event_cols(),
            ).where(*self.of_session(self.tables.events))
            if after:
                query = query.where(c.seq > p("after"))
            if before:
                query = query.where(c.seq < p("before"))
            query = query.order_by(c.seq.desc() if newest_first else c.seq)
            if limit:
                query = query.limit(p("limit", sa.Integer()))
            return query

        return self.cached(("events", after, before, limit, newest_first), build)

    @staticmethod
    def of_session(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        """The rows of ``table`` (events, labels) of the session :app, :user, :sid."""
        c = table.c
        return [c.app_name == p("app"), c.user_id == p("user"), c.session_id == p("sid")]

    def event_cols(self, events: sa.FromClause | None = None) -> list[sa.ColumnElement[Any]]:
        """The columns an :class:`~sessiondb.Event` is read from (of ``events``, an alias of
        the events table, if given), named as :data:`EVENT_COLUMNS`."""
        c = (self.tables.events if events is None else events).c
        return [
            c.session_id, c.seq, c.author, self.json_out(c.content), c.created_at,
            self.json_out(c.state_delta), c.invocation_id, self.json_out(c.meta), c.event_id,
        ]  # fmt: skip

    def events_by_id(self, n: int) -> Stmt:
        """The events of :sid whose event_id is one of :e0 ... :e{n-1}."""

        def build() -> ClauseElement:
            c = self.tables.events.c
            return (
                sa.select(*self.event_cols())
                .where(
                    *self.of_session(self.tables.events),
                    c.event_id.in_([p(f"e{i}") for i in range(n)]),
                )
                .order_by(c.seq)
            )

        return self.cached(("events_by_id", n), build)

    # -- value conversion ---------------------------------------------------------------------

    def ts_in(self, value: datetime) -> Any:
        """A naive UTC datetime as the driver binds it (ISO text on SQLite)."""
        if self.backend == "sqlite":
            return value.isoformat(" ", "microseconds")
        return value
