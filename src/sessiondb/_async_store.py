"""``AsyncSessionStore``: the asynchronous front end. ``_store.py`` is generated from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._engine import Durability
    from ._telemetry import Telemetry
    from .models import AppStats, Event, ImportResult, Session, SessionList

__all__ = ["AsyncSessionStore"]


class AsyncSessionStore:
    """Sessions in a database, with awaitable calls that never block the event loop.

    PostgreSQL and MySQL use a native async driver (asyncpg, aiomysql); SQLite runs point
    reads and small writes on the loop when they need no wait (no lock held elsewhere, no
    fsync: not at ``sqlite_durability="full"``), everything else in a worker thread. One
    store may serve several event loops and threads: each loop gets a connection pool of its
    own, closed when the loop shuts down.

    Args:
        url: a database URL (``sqlite:///./sessions.db``, ``postgresql://...``,
            ``mysql://...``) or a SQLAlchemy ``AsyncEngine`` you built.
        table_prefix: prepended to every table name sessiondb creates.
        tz_aware: return timezone-aware UTC datetimes instead of naive local time.
        auto_migrate: create or upgrade the schema on first use; if False, a missing or old
            schema raises :class:`~sessiondb.errors.SchemaError`.
        connect_timeout: seconds to wait for a database server before giving up: connecting,
            the server's greeting and authentication included.
        statement_timeout: seconds a statement may run (PostgreSQL ``statement_timeout``,
            MariaDB ``max_statement_time``, MySQL ``max_execution_time``; on SQLite it bounds
            lock waits). With it, a server that stops answering (frozen) fails a call within
            ``statement_timeout + connect_timeout``. None (default): no limit.
        busy_timeout: seconds SQLite waits for a lock held by another connection.
        pool_size: connections kept open (more are opened under load, up to three times this).
        sqlite_durability: ``"normal"`` (default: WAL with ``synchronous=NORMAL``; a commit
            survives the process being killed, a power cut may lose the last ones; the WAL is
            folded into the main file once writes pause and at close, so a copy of the idle
            file is a backup), ``"full"`` (every commit fsynced into the main file before the
            call returns: survives a power cut, several times slower) or ``"fast"`` (as
            ``"normal"`` without the checkpoints on pauses: back up with ``backup()``).
        ttl: default time to live of new sessions (None: they never expire).
        sliding_ttl: if True, every write renews a session's expiry (else it is absolute).
        engine_options: pool options for SQLAlchemy's ``create_engine`` that sessiondb
            honours (``pool_pre_ping``, ``pool_recycle``, ``pool_timeout``, ``max_overflow``,
            ``connect_args``...); any other raises :class:`~sessiondb.errors.ConfigurationError`.
        conflict_retries: how many times an operation whose transaction lost to a concurrent
            one (a deadlock, a serialization failure, a Galera certification conflict: the
            server rolled it back, nothing was written) is run again, from the start, before
            :class:`~sessiondb.errors.ConflictError`. 0: never.
        conflict_backoff: seconds; the pause before the n-th new attempt is random, up to
            ``conflict_backoff * 2 ** (n - 1)`` (at most 64 times ``conflict_backoff``).
        pooler: ``"transaction"`` when a transaction-mode pooler (PgBouncer, Supavisor, RDS
            Proxy) stands between the store and PostgreSQL: no named prepared statements, no
            connection settings (so no ``statement_timeout``). Same as ``?pooler=transaction``
            in the URL. None (default): a direct connection or a session-mode pooler.
        read_urls: PostgreSQL hot standbys to read from (URLs; several hosts each allowed).
            Reads (``get_session``, ``list_sessions``, ``list_events``, ``count_sessions``,
            scoped state, ``stats``, export and checksum) go to them in turn, every write to
            ``url``; an unreachable replica's reads go to the primary. Other backends:
            :class:`~sessiondb.errors.ConfigurationError`.
        read_consistency: ``"read_your_writes"`` (default: a read goes to a replica only once
            it has replayed this store's last write, else to the primary), ``"eventual"`` (any
            replica, however far behind) or ``"primary"`` (every read on the primary).
        telemetry: OpenTelemetry spans and metrics per operation (the ``[otel]`` extra):
            None (default) turns them on when the application has set an OpenTelemetry tracer
            or meter provider before creating the store; True always (the global providers);
            False never; ``sessiondb.Telemetry(tracer_provider=..., meter_provider=...)``
            with providers of your own. See docs/observability.md.
        log_parameters: the ``sessiondb.sql`` logger's DEBUG lines show each statement's
            parameter values (states, event bodies) instead of only their types. Off by
            default: never in production logs.
    """

    def __init__(
        self,
        url: str | URL | AsyncEngine,
        *,
        table_prefix: str = "",
        tz_aware: bool = False,
        auto_migrate: bool = True,
        connect_timeout: float = 10.0,
        busy_timeout: float = 30.0,
        pool_size: int = 5,
        sqlite_durability: Durability = "normal",
        ttl: timedelta | float | None = None,
        sliding_ttl: bool = False,
        engine_options: dict[str, Any] | None = None,
        statement_timeout: float | None = None,
        conflict_retries: int = 30,
        conflict_backoff: float = 0.01,
        pooler: str | None = None,
        read_urls: Sequence[str | URL] | None = None,
        read_consistency: Literal["read_your_writes", "eventual", "primary"] = "read_your_writes",
        telemetry: bool | Telemetry | None = None,
        log_parameters: bool = False,
    ) -> None:
        from ._backend import AsyncBackend, Options, read_urls_option

        options = Options(
            table_prefix=table_prefix, tz_aware=tz_aware, auto_migrate=auto_migrate,
            connect_timeout=connect_timeout, busy_timeout=busy_timeout, pool_size=pool_size,
            sqlite_durability=sqlite_durability, engine_options=engine_options, ttl=ttl,
            sliding_ttl=sliding_ttl, statement_timeout=statement_timeout,
            conflict_retries=conflict_retries, conflict_backoff=conflict_backoff, pooler=pooler,
            read_urls=read_urls_option(read_urls), read_consistency=read_consistency,
            telemetry=telemetry, log_parameters=log_parameters,
        )  # fmt: skip
        self._backend = AsyncBackend(url, options)
        self._core = self._backend.core
        self._transfer = self._backend.transfer
        self._call = self._backend.call

    @property
    def backend(self) -> str:
        """``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB included)."""
        return self._backend.target.backend

    async def create_session(
        self,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        ttl: timedelta | float | None = None,
        sliding: bool | None = None,
        title: str | None = None,
        labels: Iterable[str] | None = None,
    ) -> Session:
        """Create and store a session; its id is random unless ``session_id`` is given.

        ``ttl`` makes it expire (``sliding=True``: renewed by every write); ``title`` and
        ``labels`` are free metadata, and ``list_sessions(label=...)`` filters on labels.
        Ids are per app and user: another user may have a session with the same id. Raises
        :class:`~sessiondb.errors.SessionExistsError` if this app and user already have one.
        """
        return await self._call(
            self._core.create_session, app_name=app_name, user_id=user_id, state=state,
            session_id=session_id, ttl=ttl, sliding=sliding, title=title, labels=labels,
        )  # fmt: skip

    async def get_session(
        self, app_name: str, user_id: str, session_id: str, *, recent_events: int = 0
    ) -> Session | None:
        """The session, or None if it does not exist or belongs to another app or user.

        With ``recent_events=N`` its last N events come along in ``session.events``.
        """
        return await self._call(
            self._core.get_session, app_name=app_name, user_id=user_id, session_id=session_id,
            recent_events=recent_events,
        )  # fmt: skip

    async def list_sessions(
        self,
        app_name: str | None,
        user_id: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        order: str = "updated",
        label: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        include_state: bool = True,
        include_expired: bool = False,
    ) -> SessionList:
        """One user's sessions (every user's if ``user_id`` is None), newest update first.

        With ``limit``, one page: pass the result's ``next_cursor`` back as ``cursor`` for the
        next (keyset pagination). ``order="created"`` walks oldest first by creation, which
        rows never leave; ``include_state=False`` skips the state for a light listing.
        ``app_name=None`` lists every app. Expired sessions are not listed unless
        ``include_expired`` (those that ``purge_expired`` has not deleted yet).
        """
        return await self._call(
            self._core.list_sessions, app_name=app_name, user_id=user_id, limit=limit,
            cursor=cursor, order=order, label=label, include_state=include_state,
            created_after=created_after, created_before=created_before,
            updated_after=updated_after, updated_before=updated_before,
            include_expired=include_expired,
        )  # fmt: skip

    async def count_sessions(
        self, app_name: str | None = None, user_id: str | None = None, *, label: str | None = None
    ) -> int:
        """How many live sessions an app (a user, a label; everything if None) has."""
        return await self._call(
            self._core.count_sessions, app_name=app_name, user_id=user_id, label=label
        )

    async def get_session_by_id(
        self,
        session_id: str,
        *,
        recent_events: int = 0,
        app_name: str | None = None,
        user_id: str | None = None,
        include_expired: bool = False,
    ) -> Session | None:
        """A session by id alone, whoever owns it (for administration), or None.

        Ids are per app and user: if several owners have a session with this id, it raises
        :class:`~sessiondb.errors.AmbiguousSessionError`; pass ``app_name`` and ``user_id``.
        ``include_expired`` finds an expired session that has not been purged yet.
        """
        return await self._call(
            self._core.get_session_by_id, session_id=session_id, recent_events=recent_events,
            app_name=app_name, user_id=user_id, include_expired=include_expired,
        )  # fmt: skip

    async def update_session_state(
        self,
        session_id: str,
        state: dict[str, Any],
        *,
        expected_version: int | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """Replace the session's own state and return its new version.

        ``app:``/``user:`` keys are shared: only those you changed since this store handed you
        the session are written, so writing back a stale copy never reverts another session's
        newer value; a key the dict lacks is kept (docs/state.md, "Whole-state writes and
        shared keys"). Raises :class:`~sessiondb.errors.SessionNotFoundError` for an unknown
        id, and :class:`~sessiondb.errors.StaleSessionError` (writing nothing) if
        ``expected_version`` (an int) is given and the stored version differs, or if a shared
        value cannot be placed: this store never read the session and the value differs from
        the stored one, or it is an older read's value. Use :meth:`patch_state` to set shared
        keys regardless.

        Session ids are per app and user. Every method that takes a session id also takes
        ``app_name`` and ``user_id`` (both or neither): given, the session is that owner's;
        omitted, the owner is looked up by id (one indexed read), and an id that several
        owners have raises :class:`~sessiondb.errors.AmbiguousSessionError`.
        """
        return await self._call(
            self._core.update_session_state, session_id=session_id, state=state,
            expected_version=expected_version, app_name=app_name, user_id=user_id,
        )  # fmt: skip

    async def patch_state(
        self,
        session_id: str,
        set: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        *,
        increment: Mapping[str, int | float] | None = None,
        expected_version: int | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """Change some keys atomically in the database and return the new version.

        Keys in ``remove`` are deleted, then ``set`` is merged in (``dict.update``), then each
        ``increment`` key is added to (a missing key counts as 0). ``app:``/``user:`` keys go
        to their scope (always written), ``temp:`` keys are dropped. ``set`` and ``increment``
        are mappings, ``remove`` a list of keys. Concurrent patches never lose each other.
        """
        return await self._call(
            self._core.patch_state, session_id=session_id, set_=set, remove=remove,
            increment=increment, expected_version=expected_version, app_name=app_name,
            user_id=user_id,
        )  # fmt: skip

    async def transform_state(
        self,
        session_id: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        attempts: int = 10,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """Read-modify-write with retries: ``fn`` gets the state and returns (or edits) it.

        The write is made with ``expected_version``; when another writer got there first,
        the state is read again and ``fn`` runs again, up to ``attempts`` times (then
        :class:`~sessiondb.errors.StaleSessionError`). Returns the new version. The
        ``app:``/``user:`` keys written are those ``fn`` changed from the state it was given.
        """
        return await self._call(
            self._core.transform_state, session_id=session_id, fn=fn, attempts=attempts,
            app_name=app_name, user_id=user_id,
        )  # fmt: skip

    async def append_event(
        self,
        session_id: str,
        author: str,
        content: Any = None,
        *,
        state_delta: dict[str, Any] | None = None,
        invocation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        expected_version: int | None = None,
        event_id: str | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> Event:
        """Append one event to the session's history; its ``state_delta`` is applied with it.

        ``event_id`` (e.g. ADK's event id) makes the append idempotent: an event with this id
        already in the session is returned as stored, and nothing is written. With it, a call
        that raised :class:`~sessiondb.errors.OutcomeUnknownError` can simply be repeated.
        """
        return await self._call(
            self._core.append_event, session_id=session_id, author=author, content=content,
            state_delta=state_delta, invocation_id=invocation_id, metadata=metadata,
            expected_version=expected_version, event_id=event_id, app_name=app_name,
            user_id=user_id,
        )  # fmt: skip

    async def append_events(
        self,
        session_id: str,
        events: Sequence[Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        """Append several events in one transaction (each a mapping of append_event's fields,
        ``event_id`` included: events whose id is already stored are returned, not written)."""
        return await self._call(
            self._core.append_events, session_id=session_id, events=events,
            expected_version=expected_version, app_name=app_name, user_id=user_id,
        )  # fmt: skip

    async def pop_events(
        self,
        session_id: str,
        *,
        count: int = 1,
        until: Callable[[list[Event]], bool] | None = None,
        expected_version: int | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        """Delete the newest ``count`` events (all, if there are fewer) and return them,
        newest first; ``[]`` if the history is empty.

        One transaction: the session's ``event_count`` and ``event_bytes`` drop by what was
        removed and its version advances (it stays when nothing was). Seqs are not reused:
        the next event appended gets the seq it would have had. With ``until``, a function of
        the events removed so far (newest first), older events are added to them one at a
        time until it returns True or none are left, and removed in the same transaction
        (read ahead in pages, then deleted by one statement); it runs while the session is
        locked, so keep it quick and free of I/O. With
        ``expected_version``, a session at another version raises
        :class:`~sessiondb.errors.StaleSessionError` and nothing is removed.
        """
        return await self._call(
            self._core.pop_events, session_id=session_id, count=count, until=until,
            expected_version=expected_version, app_name=app_name, user_id=user_id,
        )  # fmt: skip

    async def list_events(
        self,
        session_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        app_name: str | None = None,
        user_id: str | None = None,
    ) -> list[Event]:
        """A slice of the history: seq in (after_seq, before_seq), at most ``limit`` events."""
        return await self._call(
            self._core.list_events, session_id=session_id, after_seq=after_seq,
            before_seq=before_seq, limit=limit, newest_first=newest_first, app_name=app_name,
            user_id=user_id,
        )  # fmt: skip

    async def get_app_state(self, app_name: str) -> dict[str, Any]:
        """The ``app:`` state of an app (keys without the prefix)."""
        return await self._call(
            self._core.get_scoped_state, scope="app", app_name=app_name, user_id=None
        )

    async def get_user_state(self, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of one user in an app (keys without the prefix)."""
        return await self._call(
            self._core.get_scoped_state, scope="user", app_name=app_name, user_id=user_id
        )

    async def delete_app_state(self, app_name: str) -> bool:
        """Delete the ``app:`` state of an app; True if there was one."""
        return await self._call(
            self._core.delete_scoped_state, scope="app", app_name=app_name, user_id=None
        )

    async def delete_user_state(self, app_name: str, user_id: str) -> bool:
        """Delete the ``user:`` state of one user; True if there was one."""
        return await self._call(
            self._core.delete_scoped_state, scope="user", app_name=app_name, user_id=user_id
        )

    async def delete_user_data(self, app_name: str, user_id: str) -> int:
        """Delete all of a user's data in an app: sessions, their events, ``user:`` state,
        and the LangGraph threads bound to this user (:mod:`sessiondb.langgraph`).

        Returns the number of sessions deleted.
        """
        return await self._call(self._core.delete_user_data, app_name=app_name, user_id=user_id)

    async def set_metadata(
        self,
        session_id: str,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        **changes: Any,
    ) -> int:
        """Change ``title``, ``labels`` or ``ttl`` (None: never expire; with ``sliding``).

        Only the keywords given change. Returns the new version.
        """
        return await self._call(
            self._core.set_metadata, session_id=session_id, changes=changes, app_name=app_name,
            user_id=user_id,
        )  # fmt: skip

    async def purge_expired(self, *, batch_size: int | None = None, dry_run: bool = False) -> int:
        """Delete expired sessions and expired LangGraph threads (by the database's clock) in
        batches; return how many of both.

        Their events and labels (a thread's checkpoints) go with them. ``dry_run=True`` only
        counts. Batches default to 1,000 sessions (200 on SQLite, where each batch holds the
        database's one write lock, so that concurrent writers never wait much more than
        ~100 ms).
        """
        return await self._call(self._core.purge_expired, batch_size=batch_size, dry_run=dry_run)

    async def delete_sessions(
        self,
        app_name: str | None = None,
        user_id: str | None = None,
        *,
        older_than: timedelta | float | None = None,
        created_before: datetime | None = None,
        updated_before: datetime | None = None,
        batch_size: int | None = None,
        dry_run: bool = False,
    ) -> int:
        """The guide's cleanup job in one call: delete matching sessions in batches.

        ``older_than`` counts from creation (``created_at < now - older_than``).
        Returns how many were deleted (or, with ``dry_run``, would be).
        """
        return await self._call(
            self._core.delete_sessions, app_name=app_name, user_id=user_id,
            older_than=older_than, created_before=created_before, updated_before=updated_before,
            batch_size=batch_size, dry_run=dry_run,
        )  # fmt: skip

    async def stats(self) -> list[AppStats]:
        """Per app: live sessions, users, events, bytes, oldest creation and newest update,
        and ``expired``: the expired sessions ``purge_expired`` has not deleted yet."""
        return await self._call(self._core.stats)

    async def checkpoint_stats(self) -> list[tuple[str, int, int]]:
        """LangGraph checkpoints per app: ``(app_name, threads, checkpoints)``, by app
        (``""``: threads bound to nobody). See :mod:`sessiondb.langgraph`."""
        return await self._call(self._backend.checkpoints.stats)

    async def checkpoint_threads(
        self, app_name: str | None = None
    ) -> dict[tuple[str, str, str], tuple[int, str]]:
        """LangGraph threads with checkpoints (of one app, or all): ``(app_name, user_id,
        thread_id)`` -> ``(checkpoints, newest checkpoint id)``. What ``sessiondb copy
        --merge`` verifies."""
        return await self._call(self._backend.checkpoints.thread_summary, app_name=app_name)

    async def export_records(
        self, app_name: str | None = None, *, batch_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every session (with its events) and scoped state, as JSON-ready dicts.

        Streams page by page (``batch_size`` sessions at a time), in creation order;
        ``import_records`` takes them back.
        """
        for step in self._transfer.export_plan(app_name=app_name, batch_size=batch_size):
            for record in await self._call(step):
                yield record

    async def import_records(
        self, records: Iterable[dict[str, Any]], *, batch_size: int = 500
    ) -> ImportResult:
        """Write exported records. Idempotent: a session already stored at the same or a
        newer version is skipped, and events already present are kept, so importing twice
        changes nothing."""
        plan = self._transfer.import_plan(records=records, batch_size=batch_size)
        for step in plan:
            await self._call(step)
        return plan.result

    async def checksum(self, app_name: str | None = None) -> str:
        """A digest of every session (id, owner, version, state, history) and scoped state.

        Equal on two databases holding the same data, whatever the backends.
        """
        plan = self._transfer.checksum_plan(app_name=app_name)
        for step in plan:
            await self._call(step)
        return plan.result

    async def backup(self, path: str) -> None:
        """Copy a SQLite database to ``path`` with SQLite's online backup (consistent while
        others write). Other backends: use pg_dump or mysqldump."""
        await self._backend.backup(str(path))

    async def current_revision(self) -> str | None:
        """The database's sessiondb schema revision (None: no schema yet). Never migrates."""
        return await self._backend.current_revision()

    async def migrate(self) -> str:
        """Create or upgrade the schema now; returns the revision it is at."""
        return await self._backend.migrate()

    async def doctor(self) -> dict[str, Any]:
        """Health facts and advice: revision, indexes, SQLite pragmas, driver versions."""
        return await self._backend.doctor()

    async def delete_session(
        self, session_id: str, *, app_name: str | None = None, user_id: str | None = None
    ) -> bool:
        """Delete a session; True if it existed. Give app and user to delete that owner's
        (else an id several owners have raises :class:`~sessiondb.errors.AmbiguousSessionError`)."""
        return await self._call(
            self._core.delete_session, session_id=session_id, app_name=app_name, user_id=user_id
        )

    async def clear_sessions(self, app_name: str, user_id: str | None = None) -> int:
        """Delete every session of one user (of every user if None) in an app; return the count."""
        return await self._call(self._core.clear_sessions, app_name=app_name, user_id=user_id)

    async def close(self) -> None:
        """Close pooled connections (an engine you passed in is left open)."""
        await self._backend.close()

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
