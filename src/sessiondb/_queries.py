"""The SQL of every operation, written once with SQLAlchemy Core and compiled once per dialect.

:class:`Queries` holds each statement as a :class:`Stmt`: the SQL text in the driver's
paramstyle plus the order of its parameters, ready to run on a raw DBAPI cursor. The few places
where dialects differ (JSON casts, RETURNING versus MySQL's ``LAST_INSERT_ID``) are decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from ._schema import Tables, Timestamp

__all__ = ["Queries", "Stmt"]


@dataclass(frozen=True, slots=True)
class Stmt:
    """A compiled statement: SQL text and, for positional paramstyles, the parameter order."""

    sql: str
    names: tuple[str, ...] | None

    def bind(self, params: dict[str, Any]) -> Any:
        """The parameters in the form the driver wants (a tuple, or the dict itself)."""
        names = self.names
        if names is None:
            return params
        return tuple([params[n] for n in names])


def p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    """A named bind parameter."""
    return sa.bindparam(name, type_=type_)


class Queries:
    """Every statement for one dialect and table prefix, compiled at construction."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        self.dialect = dialect
        self.backend = "mysql" if dialect.name == "mariadb" else dialect.name
        self.pg = self.backend == "postgresql"
        self.returning = self.backend != "mysql"
        self.tables = tables
        s = tables.sessions
        c = s.c
        cols = [
            c.id,
            c.app_name,
            c.user_id,
            self.json_out(c.state),
            c.created_at,
            c.updated_at,
            c.version,
        ]

        self.insert_session = self.compile(
            sa.insert(s).values(
                id=p("sid"),
                app_name=p("app"),
                user_id=p("user"),
                state=self.json_in("state"),
                created_at=p("now", Timestamp()),
                updated_at=p("now", Timestamp()),
                version=sa.literal_column("1"),
            )
        )
        owned = sa.and_(c.id == p("sid"), c.app_name == p("app"), c.user_id == p("user"))
        self.get_session = self.compile(sa.select(*cols).where(owned))
        order = (c.updated_at.desc(), c.id.desc())
        self.list_user = self.compile(
            sa.select(*cols).where(c.app_name == p("app"), c.user_id == p("user")).order_by(*order)
        )
        self.list_app = self.compile(
            sa.select(*cols).where(c.app_name == p("app")).order_by(*order)
        )

        set_state = {"state": self.json_in("state"), "updated_at": p("now", Timestamp())}
        self.update_state = self.compile(
            self.bump(sa.update(s).where(c.id == p("sid")).values(**set_state))
        )
        self.update_state_expected = self.compile(
            self.bump(
                sa.update(s).where(c.id == p("sid"), c.version == p("expected")).values(**set_state)
            )
        )
        self.get_version = self.compile(sa.select(c.version).where(c.id == p("sid")))
        self.delete_session = self.compile(sa.delete(s).where(c.id == p("sid")))
        self.delete_owned = self.compile(sa.delete(s).where(owned))
        self.clear_user = self.compile(
            sa.delete(s).where(c.app_name == p("app"), c.user_id == p("user"))
        )
        self.clear_app = self.compile(sa.delete(s).where(c.app_name == p("app")))

    # -- dialect differences ------------------------------------------------------------------

    def json_in(self, name: str) -> sa.ColumnElement[Any]:
        """A JSON text parameter, cast to JSONB on PostgreSQL."""
        if self.pg:
            return sa.cast(p(name, sa.Text()), postgresql.JSONB())
        return p(name, sa.Text())

    def json_out(self, col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A JSON column read back as text (PostgreSQL drivers would parse JSONB themselves)."""
        if self.pg:
            return sa.cast(col, sa.Text()).label(col.key)
        return col

    def bump(self, stmt: sa.Update) -> sa.Update:
        """Advance ``version`` and hand the new value back in the same round trip.

        PostgreSQL and SQLite use ``RETURNING``; MySQL has no ``UPDATE ... RETURNING``, so the
        new version goes through ``LAST_INSERT_ID(expr)`` and comes back as ``lastrowid``.
        """
        version = self.tables.sessions.c.version
        bumped = version + sa.literal_column("1")
        if self.returning:
            return stmt.values(version=bumped).returning(version)
        return stmt.values(version=sa.func.last_insert_id(bumped))

    def compile(self, construct: ClauseElement) -> Stmt:
        """Compile ``construct`` for this dialect into a :class:`Stmt`."""
        compiled: Any = construct.compile(dialect=self.dialect)
        names = (
            tuple(compiled.positiontup)
            if self.dialect.positional and compiled.positiontup
            else None
        )
        if self.dialect.positional and names is None:
            names = ()
        return Stmt(compiled.string, names)

    # -- value conversion ---------------------------------------------------------------------

    def ts_in(self, value: datetime) -> Any:
        """A naive UTC datetime as the driver binds it (ISO text on SQLite)."""
        if self.backend == "sqlite":
            return value.isoformat(" ", "microseconds")
        return value
