"""The SQL of every operation, written once with SQLAlchemy Core and compiled once per dialect.

:class:`Queries` holds each statement as a :class:`Stmt`: the SQL text in the driver's
paramstyle plus the order of its parameters, ready to run on a raw DBAPI cursor. The few places
where dialects differ (JSON casts and merges, RETURNING versus MySQL's ``LAST_INSERT_ID``,
insert-if-absent) are decided here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from ._schema import Tables, Timestamp

__all__ = ["Queries", "Stmt"]


@dataclass(frozen=True, slots=True)
class Stmt:
    """A compiled statement: SQL text and, for positional paramstyles, the parameter order."""

    sql: str
    names: tuple[str, ...] | None
    fixed: dict[str, Any] | None = None  # values SQLAlchemy bound itself (e.g. SQLite's OFFSET 0)

    def bind(self, params: dict[str, Any]) -> Any:
        """The parameters in the form the driver wants (a tuple, or the dict itself)."""
        if self.fixed:
            params = self.fixed | params
        names = self.names
        if names is None:
            return params
        return tuple([params[n] for n in names])


def p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    """A named bind parameter."""
    return sa.bindparam(name, type_=type_)


ONE: sa.ColumnElement[Any] = sa.literal_column("1")


class Queries:
    """Every statement for one dialect and table prefix, compiled at construction."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        self.dialect = dialect
        self.backend = "mysql" if dialect.name == "mariadb" else dialect.name
        self.pg = self.backend == "postgresql"
        self.returning = self.backend != "mysql"
        self.tables = tables
        self._cache: dict[Any, Stmt] = {}
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
        cols = [
            c.id, c.app_name, c.user_id, self.json_out(c.state), c.created_at, c.updated_at,
            c.version, c.event_count, c.event_bytes,
            app_state.scalar_subquery().label("app_state"),
            user_state.scalar_subquery().label("user_state"),
        ]  # fmt: skip
        owned = sa.and_(c.id == p("sid"), c.app_name == p("app"), c.user_id == p("user"))
        self.get_session = self.compile(sa.select(*cols).where(owned))
        self.get_by_id = self.compile(sa.select(*cols).where(c.id == p("sid")))
        order = (c.updated_at.desc(), c.id.desc())
        self.list_user = self.compile(
            sa.select(*cols).where(c.app_name == p("app"), c.user_id == p("user")).order_by(*order)
        )
        self.list_app = self.compile(
            sa.select(*cols).where(c.app_name == p("app")).order_by(*order)
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
        )
        app_sub = sa.select(self.json_out(apps.c.state, label=False)).where(
            apps.c.app_name == p("app")
        )
        user_sub = sa.select(self.json_out(users.c.state, label=False)).where(
            users.c.app_name == p("app"), users.c.user_id == p("user")
        )
        self.insert_session = self.compile(
            insert.returning(app_sub.scalar_subquery(), user_sub.scalar_subquery())
            if self.returning or dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False)
            else insert
        )
        self.insert_returns = self.returning or bool(getattr(dialect, "is_mariadb", False))
        self.insert_plain = self.compile(insert)

        # -- sessions: write -----------------------------------------------------------------
        set_state = {"state": self.json_in("state"), "updated_at": now}
        self.update_state = self.compile(self.bump(sa.update(s).where(c.id == p("sid")), set_state))
        self.update_state_expected = self.compile(
            self.bump(sa.update(s).where(c.id == p("sid"), c.version == p("expected")), set_state)
        )
        # the general write path: under the row lock taken by lock_session
        self.lock_session = self.compile(
            sa.select(c.app_name, c.user_id, self.json_out(c.state), c.version, c.last_seq)
            .where(c.id == p("sid"))
            .with_for_update()
        )
        self.write_session = self.compile(
            sa.update(s)
            .where(c.id == p("sid"))
            .values(
                state=self.json_in("state"),
                updated_at=now,
                version=p("version"),
                last_seq=p("last_seq"),
                event_count=c.event_count + p("n_events"),
                event_bytes=c.event_bytes + p("n_bytes"),
            )
        )
        self.get_version = self.compile(sa.select(c.version).where(c.id == p("sid")))
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
        patch_where = [c.id == p("sid")]
        if self.backend == "mysql":  # MariaDB's JSON functions give NULL past 32 levels
            patch_where.append(merged.is_not(None))
        self.patch_fast = self.compile(
            self.bump(sa.update(s).where(*patch_where), {"state": merged, "updated_at": now})
        )
        self.patch_fast_expected = self.compile(
            self.bump(
                sa.update(s).where(*patch_where, c.version == p("expected")),
                {"state": merged, "updated_at": now},
            )
        )

        # -- sessions: delete ----------------------------------------------------------------
        self.delete_session = self.compile(sa.delete(s).where(c.id == p("sid")))
        self.delete_owned = self.compile(sa.delete(s).where(owned))
        self.clear_user = self.compile(
            sa.delete(s).where(c.app_name == p("app"), c.user_id == p("user"))
        )
        self.clear_app = self.compile(sa.delete(s).where(c.app_name == p("app")))

        # -- events --------------------------------------------------------------------------
        self.insert_event = self.compile(
            sa.insert(ev).values(
                session_id=p("sid"),
                seq=p("seq"),
                author=p("author"),
                content=self.json_in("content"),
                state_delta=self.json_in("delta"),
                invocation_id=p("invocation"),
                meta=self.json_in("meta"),
                created_at=now,
                size=p("size"),
            )
        )

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
        self.delete_user_sessions = self.clear_user

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

    def insert_if_absent(self, table: sa.Table, values: dict[str, Any]) -> ClauseElement:
        """INSERT that does nothing when the primary key exists."""
        if self.pg:
            return postgresql.insert(table).values(**values).on_conflict_do_nothing()
        if self.backend == "sqlite":
            return sqlite.insert(table).values(**values).on_conflict_do_nothing()
        return mysql.insert(table).values(**values).prefix_with("IGNORE")

    def compile(self, construct: ClauseElement) -> Stmt:
        """Compile ``construct`` for this dialect into a :class:`Stmt`."""
        compiled: Any = construct.compile(dialect=self.dialect)
        names = None
        if self.dialect.positional:
            names = tuple(compiled.positiontup or ())
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        return Stmt(compiled.string, names, fixed or None)

    def list_events(self, after: bool, before: bool, limit: bool, newest_first: bool) -> Stmt:
        """The event slice query for this combination of bounds (compiled once, cached)."""
        key = ("events", after, before, limit, newest_first)
        stmt = self._cache.get(key)
        if stmt is None:
            ev = self.tables.events
            c = ev.c
            query = sa.select(
                c.session_id, c.seq, c.author, self.json_out(c.content), c.created_at,
                self.json_out(c.state_delta), c.invocation_id, self.json_out(c.meta),
            ).where(c.session_id == p("sid"))  # fmt: skip
            if after:
                query = query.where(c.seq > p("after"))
            if before:
                query = query.where(c.seq < p("before"))
            query = query.order_by(c.seq.desc() if newest_first else c.seq)
            if limit:
                query = query.limit(p("limit", sa.Integer()))
            stmt = self._cache[key] = self.compile(query)
        return stmt

    # -- value conversion ---------------------------------------------------------------------

    def ts_in(self, value: datetime) -> Any:
        """A naive UTC datetime as the driver binds it (ISO text on SQLite)."""
        if self.backend == "sqlite":
            return value.isoformat(" ", "microseconds")
        return value
