"""LangGraph integration: :class:`SessiondbSaver` and :class:`AsyncSessiondbSaver`, LangGraph
checkpointers on sessiondb.

Use them wherever LangGraph takes a checkpointer::

    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver.from_conn_string("sqlite:///./graph.db") as checkpointer:
        graph = builder.compile(checkpointer=checkpointer)
        graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})

Every sessiondb URL works (SQLite, PostgreSQL, MySQL/MariaDB, ``?pooler=transaction`` behind
PgBouncer); a saver may also stand on a store (:class:`~sessiondb.SessionStore` for the sync
saver, :class:`~sessiondb.AsyncSessionStore` for the async one), sharing its pool.

A thread is bound to an owner when its config carries ``app_name`` and/or ``user_id`` in
``configurable``: the thread is then that user's (its id is per owner, like a session id), it
is deleted by ``delete_user_data`` and listed with the owner. Without them it belongs to
nobody (the owner ``("", "")``). ``ttl`` makes threads expire that long after their last
checkpoint; ``purge_expired`` (or ``sessiondb purge``) deletes them.

The SQL lives in sessiondb's core (``_checkpoint_queries.py``, ``_checkpoints.py``); this module
only maps LangGraph's API onto it. Values go through the saver's ``serde`` (LangGraph's
``JsonPlusSerializer`` by default, its msgpack allow-list honoured), and each checkpoint writes
only the channels whose version changed.

This module needs langgraph-checkpoint (``pip install 'sessiondb[langgraph]'``); ``import
sessiondb`` never imports it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_serializable_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "sessiondb.langgraph needs LangGraph's checkpoint package: "
        "pip install 'sessiondb[langgraph]'"
    ) from exc

from ._async_store import AsyncSessionStore
from ._checks import seconds
from ._store import SessionStore
from .errors import ConfigurationError, InvalidArgumentError

if TYPE_CHECKING:
    from ._backend import AsyncBackend, Backend
    from ._checkpoints import Checkpoints, Stored

__all__ = ["AsyncSessiondbSaver", "SessiondbSaver"]

T = TypeVar("T")
#: the ``configurable`` keys that bind a thread to an owner, by default
OWNER_KEYS = ("app_name", "user_id")


class _Mapping(BaseCheckpointSaver[str]):
    """What both savers share: LangGraph's objects to and from the core's arguments."""

    def __init__(
        self,
        *,
        serde: SerializerProtocol | None,
        ttl: timedelta | float | None,
        owner_keys: tuple[str, str] | None,
    ) -> None:
        super().__init__(serde=serde)
        self.ttl = None if ttl is None else seconds(ttl, "ttl")
        self.owner_keys = owner_keys

    # -- config ------------------------------------------------------------------------------

    def _owner(self, configurable: dict[str, Any]) -> tuple[str, str]:
        if self.owner_keys is None:
            return "", ""
        app_key, user_key = self.owner_keys
        return str(configurable.get(app_key) or ""), str(configurable.get(user_key) or "")

    def _where(self, config: RunnableConfig) -> dict[str, Any]:
        conf = config["configurable"]
        app, user = self._owner(conf)
        return {
            "app_name": app,
            "user_id": user,
            "thread_id": str(conf["thread_id"]),
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
        }

    def _config(
        self, app: str, user: str, thread_id: str, ns: str, checkpoint_id: str
    ) -> RunnableConfig:
        conf: dict[str, Any] = {
            "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id,
        }  # fmt: skip
        if self.owner_keys is not None:
            if app:
                conf[self.owner_keys[0]] = app
            if user:
                conf[self.owner_keys[1]] = user
        return {"configurable": conf}

    # -- to the core ----------------------------------------------------------------------------

    def _put_args(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> dict[str, Any]:
        where = self._where(config)
        stored: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = stored.pop("channel_values", None) or {}
        kind, data = self.serde.dumps_typed(stored)
        blobs: list[tuple[str, str, str, bytes | None]] = []
        for channel, version in new_versions.items():
            if channel in values:
                blobs.append((channel, str(version), *self.serde.dumps_typed(values[channel])))
            else:
                blobs.append((channel, str(version), "empty", None))
        meta = dict(get_serializable_checkpoint_metadata(config, metadata))
        run_id = meta.get("run_id")
        return {
            **where,
            "checkpoint_id": checkpoint["id"],
            "parent_id": config["configurable"].get("checkpoint_id"),
            "run_id": run_id if isinstance(run_id, str) else None,
            "type": kind,
            "data": data,
            "versions": {ch: str(v) for ch, v in checkpoint["channel_versions"].items()},
            "metadata": meta,
            "blobs": blobs,
            "ttl": self.ttl,
        }

    def _put_result(self, args: dict[str, Any]) -> RunnableConfig:
        return self._config(
            args["app_name"], args["user_id"], args["thread_id"], args["checkpoint_ns"],
            args["checkpoint_id"],
        )  # fmt: skip

    def _writes_args(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> dict[str, Any]:
        where = self._where(config)
        rows = [
            (WRITES_IDX_MAP.get(channel, i), channel, *self.serde.dumps_typed(value))
            for i, (channel, value) in enumerate(writes)
        ]
        return {
            **where,
            "checkpoint_id": config["configurable"]["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
            "writes": rows,
            # special writes (errors, interrupts...) replace their earlier value
            "replace": all(channel in WRITES_IDX_MAP for channel, _ in writes),
        }

    def _get_args(self, config: RunnableConfig) -> dict[str, Any]:
        return {**self._where(config), "checkpoint_id": get_checkpoint_id(config)}

    def _list_args(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "app_name": None, "user_id": None, "thread_id": None, "checkpoint_ns": None,
            "before": get_checkpoint_id(before) if before else None, "filter": filter,
            "limit": limit,
        }  # fmt: skip
        if config is not None:
            conf = config["configurable"]
            args["app_name"], args["user_id"] = self._owner(conf)
            if conf.get("thread_id") is not None:
                args["thread_id"] = str(conf["thread_id"])
            args["checkpoint_ns"] = conf.get("checkpoint_ns")
        return args

    # -- from the core --------------------------------------------------------------------------

    def _tuple(self, stored: Stored) -> CheckpointTuple:
        checkpoint = self.serde.loads_typed((stored.type, stored.checkpoint))
        checkpoint["channel_values"] = {
            channel: self.serde.loads_typed((kind, blob))
            for channel, (kind, blob) in stored.blobs.items()
            if kind != "empty" and blob is not None
        }
        app, user, tid, ns = stored.app_name, stored.user_id, stored.thread_id, stored.checkpoint_ns
        return CheckpointTuple(
            config=self._config(app, user, tid, ns, stored.checkpoint_id),
            checkpoint=checkpoint,
            metadata=stored.metadata,  # type: ignore[arg-type]
            parent_config=(
                self._config(app, user, tid, ns, stored.parent_id) if stored.parent_id else None
            ),
            pending_writes=[
                (task, channel, self.serde.loads_typed((kind, blob)))  # type: ignore[arg-type]
                for task, channel, kind, blob in stored.writes
            ],
        )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A new version, greater than ``current``, with a random part: a branch made from an
        older checkpoint never reuses a version (blobs are keyed by it)."""
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(str(current).split(".", 1)[0])
        return f"{n + 1:032}.{secrets.token_hex(8)}"


class SessiondbSaver(_Mapping):
    """A LangGraph checkpointer on sessiondb, with blocking calls.

    Args:
        source: a database URL or a :class:`~sessiondb.SessionStore` (shared, not closed).
        serde: LangGraph's serializer (default: ``JsonPlusSerializer``).
        ttl: threads expire this long after their last checkpoint (None: never);
            ``purge_expired`` deletes them.
        owner_keys: the ``configurable`` keys that bind a thread to ``(app_name, user_id)``;
            None: threads are bound to nobody.
        store_options: options of the :class:`~sessiondb.SessionStore` made from a URL.

    Its async methods run the blocking ones in the event loop's default executor; in async
    code prefer :class:`AsyncSessiondbSaver`.
    """

    def __init__(
        self,
        source: str | SessionStore,
        *,
        serde: SerializerProtocol | None = None,
        ttl: timedelta | float | None = None,
        owner_keys: tuple[str, str] | None = OWNER_KEYS,
        **store_options: Any,
    ) -> None:
        super().__init__(serde=serde, ttl=ttl, owner_keys=owner_keys)
        if isinstance(source, SessionStore):
            if store_options:
                raise ConfigurationError("store options apply to a URL, not to a store")
            self.store, self._owns_store = source, False
        else:
            self.store, self._owns_store = SessionStore(source, **store_options), True
        backend: Backend = self.store._backend
        self._call = backend.call
        self._ops: Checkpoints = backend.checkpoints

    @classmethod
    @contextmanager
    def from_conn_string(cls, url: str, **options: Any) -> Iterator[SessiondbSaver]:
        """A saver on ``url`` for the ``with`` block, closed after it."""
        saver = cls(url, **options)
        try:
            yield saver
        finally:
            saver.close()

    def setup(self) -> None:
        """Create or upgrade the tables now (otherwise done on first use)."""
        self.store.migrate()

    def close(self) -> None:
        """Close the store the saver made (a store it was given stays open)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> SessiondbSaver:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        stored = self._call(self._ops.get, **self._get_args(config))
        return None if stored is None else self._tuple(stored)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        found = self._call(
            self._ops.list_checkpoints, **self._list_args(config, filter, before, limit)
        )
        for stored in found:
            yield self._tuple(stored)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args = self._put_args(config, checkpoint, metadata, new_versions)
        self._call(self._ops.put, **args)
        return self._put_result(args)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._call(self._ops.put_writes, **self._writes_args(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._call(self._ops.delete_thread, thread_id=str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._call(self._ops.delete_for_runs, run_ids=list(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._call(
            self._ops.copy_thread, source=str(source_thread_id), target=str(target_thread_id)
        )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._call(
            self._ops.prune, thread_ids=[str(t) for t in thread_ids],
            keep_latest=_keep_latest(strategy),
        )  # fmt: skip

    # -- async: the blocking calls in the default executor --------------------------------------

    async def _off_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kwargs))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        result: CheckpointTuple | None = await self._off_loop(self.get_tuple, config)
        return result

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._off_loop(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        result: RunnableConfig = await self._off_loop(
            self.put, config, checkpoint, metadata, new_versions
        )
        return result

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._off_loop(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._off_loop(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._off_loop(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._off_loop(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._off_loop(self.prune, thread_ids, strategy=strategy)


class AsyncSessiondbSaver(_Mapping):
    """A LangGraph checkpointer on sessiondb whose calls never block the event loop.

    Args: as :class:`SessiondbSaver`, with an :class:`~sessiondb.AsyncSessionStore` as the
    store. Calls from several tasks run in parallel on the store's pool: there is no lock
    around the saver.

    Its blocking methods (``graph.get_state`` in sync code) work from a thread with no
    running event loop; from inside a running loop use the ``a``-methods.
    """

    def __init__(
        self,
        source: str | AsyncSessionStore,
        *,
        serde: SerializerProtocol | None = None,
        ttl: timedelta | float | None = None,
        owner_keys: tuple[str, str] | None = OWNER_KEYS,
        **store_options: Any,
    ) -> None:
        super().__init__(serde=serde, ttl=ttl, owner_keys=owner_keys)
        if isinstance(source, AsyncSessionStore):
            if store_options:
                raise ConfigurationError("store options apply to a URL, not to a store")
            self.store, self._owns_store = source, False
        else:
            self.store, self._owns_store = AsyncSessionStore(source, **store_options), True
        backend: AsyncBackend = self.store._backend
        self._call = backend.call
        self._ops: Checkpoints = backend.checkpoints

    @classmethod
    @asynccontextmanager
    async def from_conn_string(cls, url: str, **options: Any) -> AsyncIterator[AsyncSessiondbSaver]:
        """A saver on ``url`` for the ``async with`` block, closed after it."""
        saver = cls(url, **options)
        try:
            yield saver
        finally:
            await saver.aclose()

    async def setup(self) -> None:
        """Create or upgrade the tables now (otherwise done on first use)."""
        await self.store.migrate()

    async def aclose(self) -> None:
        """Close the store the saver made (a store it was given stays open)."""
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> AsyncSessiondbSaver:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        stored = await self._call(self._ops.get, **self._get_args(config))
        return None if stored is None else self._tuple(stored)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._call(
            self._ops.list_checkpoints, **self._list_args(config, filter, before, limit)
        )
        for stored in found:
            yield self._tuple(stored)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args = self._put_args(config, checkpoint, metadata, new_versions)
        await self._call(self._ops.put, **args)
        return self._put_result(args)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._call(
            self._ops.put_writes, **self._writes_args(config, writes, task_id, task_path)
        )

    async def adelete_thread(self, thread_id: str) -> None:
        await self._call(self._ops.delete_thread, thread_id=str(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._call(self._ops.delete_for_runs, run_ids=list(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._call(
            self._ops.copy_thread, source=str(source_thread_id), target=str(target_thread_id)
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._call(
            self._ops.prune, thread_ids=[str(t) for t in thread_ids],
            keep_latest=_keep_latest(strategy),
        )  # fmt: skip

    # -- blocking: each call on an event loop of its own -----------------------------------------

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        coro.close()
        raise ConfigurationError(
            "AsyncSessiondbSaver's blocking methods cannot run inside an event loop: await "
            "its a-methods (graph.aget_state, graph.ainvoke ...), or use SessiondbSaver"
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def gather() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._blocking(gather())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._blocking(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._blocking(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._blocking(self.aprune(thread_ids, strategy=strategy))


def _keep_latest(strategy: str) -> bool:
    if strategy == "keep_latest":
        return True
    if strategy == "delete":
        return False
    raise InvalidArgumentError(
        f"prune strategy must be 'keep_latest' or 'delete', not {strategy!r}"
    )
