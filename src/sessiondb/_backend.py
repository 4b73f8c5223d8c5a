"""What a store is built on: URL or engine, runner, core, and the schema check on first use.

:class:`Backend` serves :class:`~sessiondb.SessionStore`; :class:`AsyncBackend` serves
:class:`~sessiondb.AsyncSessionStore`. They share construction and the schema decision, and
differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeGuard, TypeVar, Union

from sqlalchemy.engine import URL, Engine
from sqlalchemy.util import greenlet_spawn

from . import _doctor, _migrations
from ._backup import backup
from ._checks import seconds, store_options
from ._core import Core
from ._engine import Durability, make_engine, migration_engine
from ._queries import Queries
from ._rows import Rows
from ._runner import AsyncRunner, Cx, Runner, translate
from ._schema import tables
from ._transfer import Transfer
from ._urls import Target, resolve_url
from .errors import ConfigurationError, SchemaError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AsyncBackend", "Backend", "Options"]

P = ParamSpec("P")
T = TypeVar("T")
Source = Union[str, URL, Engine, "AsyncEngine"]


def is_async_engine(obj: object) -> TypeGuard[AsyncEngine]:
    """True for a SQLAlchemy AsyncEngine, without importing the asyncio extension (an
    AsyncEngine cannot exist unless its module was imported)."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(obj, module.AsyncEngine)


@dataclass(frozen=True, kw_only=True)
class Options:
    """Store options, shared by every front end (see ``SessionStore`` for their meaning)."""

    table_prefix: str = ""
    tz_aware: bool = False
    auto_migrate: bool = True
    connect_timeout: float = 10.0
    busy_timeout: float = 30.0
    pool_size: int = 5
    sqlite_durability: Durability = "full"
    engine_options: dict[str, Any] | None = None
    ttl: timedelta | float | None = None
    sliding_ttl: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.table_prefix, str) or not all(
            ch.isalnum() or ch == "_" for ch in self.table_prefix
        ):
            raise ConfigurationError(
                f"table_prefix {self.table_prefix!r} may hold only letters, digits and '_'"
            )
        if len(self.table_prefix) > 24:
            raise ConfigurationError("table_prefix is limited to 24 characters")
        if self.sqlite_durability not in ("full", "fast"):
            raise ConfigurationError("sqlite_durability must be 'full' or 'fast'")
        store_options(
            connect_timeout=self.connect_timeout, busy_timeout=self.busy_timeout,
            pool_size=self.pool_size, engine_options=self.engine_options,
            flags={"tz_aware": self.tz_aware, "auto_migrate": self.auto_migrate,
                   "sliding_ttl": self.sliding_ttl},
        )  # fmt: skip
        if self.ttl is not None:
            try:
                seconds(self.ttl, "ttl")
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc


def _target_of(source: Source) -> tuple[Target, Engine | AsyncEngine | None]:
    if isinstance(source, Engine) or is_async_engine(source):
        return resolve_url(source.url), source
    if isinstance(source, (str, URL)):
        return resolve_url(source), None
    raise ConfigurationError(
        f"expected a database URL or a SQLAlchemy Engine, not {type(source).__name__}"
    )


def _decide(revision: str | None, options: Options, target: Target) -> bool:
    """Whether the schema must be upgraded; raise :class:`SchemaError` when it must not be."""
    if revision == _migrations.HEAD:
        return False
    if revision is not None and revision not in _migrations.REVISIONS:
        raise SchemaError(
            f"the database at {target.safe_url} is at sessiondb schema revision {revision!r}, "
            "newer than this version of sessiondb knows: upgrade sessiondb"
        )
    if not options.auto_migrate:
        raise SchemaError(
            f"the database at {target.safe_url} is at sessiondb schema revision {revision!r}, "
            f"this library needs {_migrations.HEAD!r}: run `sessiondb migrate --url URL"
            + (f" --table-prefix {options.table_prefix}" if options.table_prefix else "")
            + "` (or open the store with auto_migrate=True)"
        )
    return True


class _BaseBackend:
    def __init__(self, source: Source, options: Options, side: Literal["sync", "async"]) -> None:
        self.options = options
        self.target, engine = _target_of(source)
        self.owns_engine = engine is None
        if engine is None:
            engine = make_engine(
                self.target,
                side,
                connect_timeout=options.connect_timeout,
                busy_timeout=options.busy_timeout,
                pool_size=options.pool_size,
                durability=options.sqlite_durability,
                options=options.engine_options,
            )
        self.engine = engine
        sync_engine: Engine = engine.sync_engine if is_async_engine(engine) else engine  # type: ignore[assignment]
        self.runner = Runner(
            sync_engine,
            self.target,
            foreign=not self.owns_engine,
            durability=options.sqlite_durability,
            busy_timeout=options.busy_timeout,
            keep=options.pool_size,
        )
        self.tables = tables(options.table_prefix)
        self.dialect = sync_engine.dialect
        self.rows = Rows(tz_aware=options.tz_aware)
        self.core = Core(
            self.rows,
            ttl=None if options.ttl is None else seconds(options.ttl, "ttl"),
            sliding=options.sliding_ttl,
        )
        self.transfer = Transfer(self.rows)
        self.ready = False

    def _bind(self) -> None:
        # after the first connection, so the dialect knows its server (MySQL or MariaDB)
        queries = Queries(self.dialect, self.tables)
        self.rows.bind(queries)
        self.core.bind(queries)
        self.transfer.bind(queries)

    def require_sqlite(self, what: str) -> None:
        if self.target.backend != "sqlite":
            raise ConfigurationError(
                f"{what} is SQLite's online backup; for {self.target.backend} use "
                + ("pg_dump" if self.target.backend == "postgresql" else "mysqldump")
            )

    def _diagnose(self, conn: Any, revision: str | None) -> dict[str, Any]:
        return _doctor.report(conn, self.target, self.tables, revision)

    def _migration_engine(self, side: Literal["sync", "async"]) -> Any:
        options = self.options
        return migration_engine(
            self.target,
            side,
            durability=options.sqlite_durability,
            busy_timeout=options.busy_timeout,
        )

    def _upgrade_sync(self) -> None:
        with _migrations.UPGRADE_LOCK:
            engine = self._migration_engine("sync")
            try:
                with engine.connect() as conn:
                    _migrations.upgrade(conn, self.options.table_prefix)
                    conn.commit()
            finally:
                engine.dispose()


class Backend(_BaseBackend):
    """The synchronous backend: calls run on the caller's thread."""

    def __init__(self, source: Source, options: Options) -> None:
        if is_async_engine(source):
            raise ConfigurationError("SessionStore needs a sync Engine; use AsyncSessionStore")
        super().__init__(source, options, "sync")
        self._lock = threading.Lock()

    def ensure_schema(self) -> None:
        """Check the schema once, upgrading it (under a lock) when it is missing or old."""
        with self._lock:
            if self.ready:
                return
            revision = self.runner.call(_migrations.read_revision, prefix=self.options.table_prefix)
            if _decide(revision, self.options, self.target):
                self.runner.translating(self._upgrade_sync)
            self._bind()
            self.ready = True

    def current_revision(self) -> str | None:
        return self.runner.call(_migrations.read_revision, prefix=self.options.table_prefix)

    def migrate(self) -> str:
        with self._lock:
            self.runner.translating(self._upgrade_sync)
            self._bind()
            self.ready = True
        return _migrations.HEAD

    def doctor(self) -> dict[str, Any]:
        revision = self.current_revision()
        sync_engine: Any = self.engine

        def gather() -> dict[str, Any]:
            with sync_engine.connect() as conn:
                return self._diagnose(conn, revision)

        return self.runner.translating(gather)

    def call(self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a core operation (checking the schema on first use)."""
        if not self.ready:
            self.ensure_schema()
        return self.runner.call(fn, *args, **kwargs)

    def backup(self, path: str) -> None:
        """SQLite's online backup of the database into ``path``."""
        self.require_sqlite("backup")
        self.call(backup, path=path)

    def close(self) -> None:
        self.runner.drain()
        if self.owns_engine:
            self.engine.dispose()


class AsyncBackend(_BaseBackend):
    """The asynchronous backend: greenlets over an async driver, or worker threads on SQLite."""

    def __init__(self, source: Source, options: Options) -> None:
        if isinstance(source, Engine) and resolve_url(source.url).backend != "sqlite":
            raise ConfigurationError(
                "AsyncSessionStore needs an AsyncEngine (or a URL); use SessionStore for an Engine"
            )
        super().__init__(source, options, "async")
        self.arunner = AsyncRunner(self.runner, threads=options.pool_size)
        self._lock: asyncio.Lock | None = None

    async def ensure_schema(self) -> None:
        """Check the schema once, upgrading it (under a lock) when it is missing or old."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.ready:
                return
            revision = await self.arunner.call(
                _migrations.read_revision, prefix=self.options.table_prefix
            )
            if _decide(revision, self.options, self.target):
                try:
                    await self._upgrade()
                except self.runner.driver_errors as exc:
                    raise translate(exc, self.target) from exc
            self._bind()
            self.ready = True

    async def _upgrade(self) -> None:
        if self.target.backend == "sqlite":
            await asyncio.get_running_loop().run_in_executor(None, self._upgrade_sync)
            return
        # Alembic's context is process-wide: one upgrade at a time in this process. The lock
        # is taken in a worker thread, so waiting for it never blocks the event loop.
        await asyncio.get_running_loop().run_in_executor(None, _migrations.UPGRADE_LOCK.acquire)
        try:
            engine = self._migration_engine("async")
            try:
                async with engine.connect() as conn:
                    await conn.run_sync(_migrations.upgrade, self.options.table_prefix)
                    await conn.commit()
            finally:
                await engine.dispose()
        finally:
            _migrations.UPGRADE_LOCK.release()

    async def current_revision(self) -> str | None:
        return await self.arunner.call(_migrations.read_revision, prefix=self.options.table_prefix)

    async def migrate(self) -> str:
        try:
            await self._upgrade()
        except self.runner.driver_errors as exc:
            raise translate(exc, self.target) from exc
        self._bind()
        self.ready = True
        return _migrations.HEAD

    async def doctor(self) -> dict[str, Any]:
        revision = await self.current_revision()
        engine = self.engine
        if is_async_engine(engine):
            async with engine.connect() as conn:
                return await conn.run_sync(self._diagnose, revision)
        sync_engine: Engine = engine  # type: ignore[assignment]

        def gather() -> dict[str, Any]:
            with sync_engine.connect() as conn:
                return self._diagnose(conn, revision)

        return await asyncio.get_running_loop().run_in_executor(None, gather)

    async def call(
        self, fn: Callable[Concatenate[Cx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a core operation (checking the schema on first use) without blocking the
        event loop."""
        if not self.ready:
            await self.ensure_schema()
        return await self.arunner.call(fn, *args, **kwargs)

    async def backup(self, path: str) -> None:
        """SQLite's online backup of the database into ``path``."""
        self.require_sqlite("backup")
        await self.call(backup, path=path)

    async def close(self) -> None:
        self.arunner.shutdown()
        if is_async_engine(self.engine):
            await greenlet_spawn(self.runner.drain)
            if self.owns_engine:
                await self.engine.dispose()
        else:
            self.runner.drain()
            if self.owns_engine:
                self.engine.dispose()
