"""The floor: the minimal SQL by hand on the bare drivers, one table, autocommit.

stdlib ``sqlite3`` with ``isolation_level=None``, psycopg 3 (sync, autocommit, one connection,
default auto-prepare) or PyMySQL (autocommit). One cursor is kept open for every statement.
Timestamps are epoch seconds. The table is ``floor_sessions`` so it never meets sessiondb's or
ADK's tables.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, NamedTuple

from ..targets import Target, connect, drop_tables, scalar, text_bytes
from ..workload import APP_NAME, CONV_USER
from .base import Handle, SyncContender

TABLE = "floor_sessions"


class FloorHandle(NamedTuple):
    id: str
    user_id: str


def _schema(backend: str) -> list[str]:
    if backend == "mysql":
        key = "VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        create = (
            f"CREATE TABLE {TABLE} (id {key} PRIMARY KEY, app_name {key} NOT NULL, "
            f"user_id {key} NOT NULL, state LONGTEXT NOT NULL, created_at DOUBLE NOT NULL, "
            "updated_at DOUBLE NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
    else:
        real = "DOUBLE PRECISION" if backend == "postgresql" else "REAL"
        create = (
            f"CREATE TABLE {TABLE} (id TEXT PRIMARY KEY, app_name TEXT NOT NULL, "
            f"user_id TEXT NOT NULL, state TEXT NOT NULL, created_at {real} NOT NULL, "
            f"updated_at {real} NOT NULL)"
        )
    index = f"CREATE INDEX {TABLE}_app_user_updated ON {TABLE} (app_name, user_id, updated_at)"
    return [create, index]


def _merge(backend: str) -> str:
    """The SQL expression that applies a JSON delta to ``state``."""
    if backend == "postgresql":
        return "(state::jsonb || %s::jsonb)::text"
    if backend == "mysql":
        return "JSON_MERGE_PATCH(state, %s)"
    return "json_patch(state, ?)"


class Floor(SyncContender):
    name = "floor"
    # SQLite settings; the plain floor runs at sessiondb's strict durability ("full");
    # floor-wal-normal matches sessiondb's default.
    journal_mode = "WAL"
    synchronous = "FULL"
    autocheckpoint: int | None = 1  # None: SQLite's default (1000 pages)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        b = target.backend
        m = "?" if b == "sqlite" else "%s"
        owned = f"id = {m} AND app_name = {m} AND user_id = {m}"
        self.sql_insert = f"INSERT INTO {TABLE} VALUES ({m}, {m}, {m}, {m}, {m}, {m})"
        self.sql_update = f"UPDATE {TABLE} SET state = {_merge(b)}, updated_at = {m} WHERE {owned}"
        self.sql_get = f"SELECT state, created_at, updated_at FROM {TABLE} WHERE {owned}"
        self.sql_list = (
            f"SELECT id, state, created_at, updated_at FROM {TABLE} "
            f"WHERE app_name = {m} AND user_id = {m} ORDER BY updated_at"
        )
        self.sql_delete = f"DELETE FROM {TABLE} WHERE {owned}"

    def _pragmas(self) -> list[str]:
        pragmas = [
            f"PRAGMA journal_mode={self.journal_mode}",
            f"PRAGMA synchronous={self.synchronous}",
        ]
        if self.autocheckpoint is not None:
            pragmas.append(f"PRAGMA wal_autocheckpoint={self.autocheckpoint}")
        return pragmas

    def setup(self) -> None:
        b = self.backend
        if b != "sqlite":
            drop_tables(self.target.admin_url, [TABLE])
        self.conn = connect(self.target.url)
        self.cur = self.conn.cursor()
        if b == "sqlite":
            for pragma in self._pragmas():
                self.cur.execute(pragma)
            ckpt = self.autocheckpoint if self.autocheckpoint is not None else "1000 (default)"
            self.settings = (
                f"sqlite3, journal_mode={self.journal_mode}, synchronous={self.synchronous}"
                + (f", wal_autocheckpoint={ckpt}" if self.journal_mode == "WAL" else "")
            )
        else:
            driver = "psycopg 3 (sync)" if b == "postgresql" else "PyMySQL"
            self.settings = f"{driver}, one connection, autocommit"
        for statement in _schema(b):
            self.cur.execute(statement)
        self.update_mode = "UPDATE ... SET state = " + _merge(b)

    def create(self, user_id: str, state: dict[str, Any]) -> Handle:
        sid = str(uuid.uuid4())
        now = time.time()
        self.cur.execute(self.sql_insert, (sid, APP_NAME, user_id, json.dumps(state), now, now))
        return FloorHandle(sid, user_id)

    def update(self, handle: Handle, delta: dict[str, Any]) -> None:
        self.cur.execute(
            self.sql_update, (json.dumps(delta), time.time(), handle.id, APP_NAME, handle.user_id)
        )

    def get(self, handle: Handle) -> Any:
        self.cur.execute(self.sql_get, (handle.id, APP_NAME, handle.user_id))
        row = self.cur.fetchone()
        return None if row is None else (json.loads(row[0]), row[1], row[2])

    def state_of(self, got: Any) -> dict[str, Any] | None:
        return None if got is None else dict(got[0])

    def list(self, user_id: str) -> Any:
        self.cur.execute(self.sql_list, (APP_NAME, user_id))
        return [(r[0], json.loads(r[1]), r[2], r[3]) for r in self.cur.fetchall()]

    def delete(self, handle: Handle) -> None:
        self.cur.execute(self.sql_delete, (handle.id, APP_NAME, handle.user_id))

    def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        got = self.get(handle)
        if got is None:
            raise LookupError("the conversation session vanished")
        state: dict[str, Any] = got[0]
        return got, state

    def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None:
        self.cur.execute(
            self.sql_update, (json.dumps(delta), time.time(), handle.id, APP_NAME, CONV_USER)
        )

    def stored_bytes(self, handle: Handle) -> dict[str, int]:
        sql = f"SELECT {text_bytes(self.backend, 'state')} FROM {TABLE} WHERE id = ?"
        return {"state": int(scalar(self.target.admin_url, sql, (handle.id,)) or 0)}

    def teardown(self) -> None:
        self.cur.close()
        self.conn.close()
        if self.backend != "sqlite":
            drop_tables(self.target.admin_url, [TABLE])


class FloorWalFull(Floor):
    name = "floor-wal-full"
    autocheckpoint = None


class FloorWalNormal(Floor):
    name = "floor-wal-normal"
    synchronous = "NORMAL"
    autocheckpoint = None


class FloorDeleteFull(Floor):
    name = "floor-delete-full"
    journal_mode = "DELETE"
    autocheckpoint = None
