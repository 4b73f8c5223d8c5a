"""The contenders, by name. Modules are imported only when a contender runs, so a missing
optional library (google-adk, psycopg, PyMySQL) only skips the contenders that need it."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..targets import installed
from .base import AsyncContender, SyncContender


@dataclass(frozen=True)
class Entry:
    """How to build a contender and what it needs."""

    name: str
    module: str  # inside benchmarks.contenders
    cls: str
    backends: tuple[str, ...]
    requires: Mapping[str, tuple[str, ...]]  # backend -> modules that must be importable
    description: str

    def missing(self, backend: str) -> list[str]:
        """Modules this contender needs on ``backend`` that are not installed."""
        return [m for m in self.requires.get(backend, ()) if not installed(m)]

    def load(self) -> type[SyncContender] | type[AsyncContender]:
        module = importlib.import_module(f"{__name__}.{self.module}")
        cls: type[SyncContender] | type[AsyncContender] = getattr(module, self.cls)
        return cls


ALL = ("sqlite", "postgresql", "mysql")
_SESSIONDB_SYNC = {"sqlite": ("sessiondb",), "postgresql": ("sessiondb", "psycopg"),
                   "mysql": ("sessiondb", "pymysql")}  # fmt: skip
_SESSIONDB_ASYNC = {"sqlite": ("sessiondb",), "postgresql": ("sessiondb", "asyncpg"),
                    "mysql": ("sessiondb", "aiomysql")}  # fmt: skip
_ADK = {"sqlite": ("google.adk", "aiosqlite"), "postgresql": ("google.adk", "asyncpg"),
        "mysql": ("google.adk", "aiomysql")}  # fmt: skip
_FLOOR = {"postgresql": ("psycopg",), "mysql": ("pymysql",)}

# The order in which contenders run inside one run (the same order on every backend).
REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("sessiondb-sync", "sessiondb_store", "SessiondbSync", ALL, _SESSIONDB_SYNC,
              "sessiondb SessionStore, default options"),
        Entry("sessiondb-sync-fast", "sessiondb_store", "SessiondbSyncFast", ("sqlite",),
              _SESSIONDB_SYNC, 'sessiondb SessionStore(sqlite_durability="fast")'),
        Entry("sessiondb-sync-full", "sessiondb_store", "SessiondbSyncFull", ("sqlite",),
              _SESSIONDB_SYNC, 'sessiondb SessionStore(sqlite_durability="full")'),
        Entry("sessiondb-async", "sessiondb_store", "SessiondbAsync", ALL, _SESSIONDB_ASYNC,
              "sessiondb AsyncSessionStore, default options"),
        Entry("adk", "adk", "Adk", ALL, _ADK, "google-adk DatabaseSessionService, defaults"),
        Entry("floor", "floor", "Floor", ALL, _FLOOR,
              "bare driver, minimal SQL (SQLite: sessiondb's strict 'full')"),
        Entry("floor-wal-full", "floor", "FloorWalFull", ("sqlite",), _FLOOR,
              "bare sqlite3, WAL + synchronous=FULL, default autocheckpoint"),
        Entry("floor-wal-normal", "floor", "FloorWalNormal", ("sqlite",), _FLOOR,
              "bare sqlite3, WAL + synchronous=NORMAL"),
        Entry("floor-delete-full", "floor", "FloorDeleteFull", ("sqlite",), _FLOOR,
              "bare sqlite3, journal_mode=DELETE + synchronous=FULL"),
    )
}  # fmt: skip
