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

Each operation is written once, as a :class:`_Call` (the core operation, its arguments, and
what turns its result into LangGraph's); the two savers differ only in how they run a call:
:class:`SessiondbSaver` on the sync store (its ``a``-methods in the loop's executor),
:class:`AsyncSessiondbSaver` on the async store (its blocking methods on a loop of their own).

This module needs langgraph-checkpoint (``pip install 'sessiondb[langgraph]'``); ``import
sessiondb`` never imports it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

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
from ._checkpoints import Place
from ._checks import seconds
from ._store import SessionStore
from .errors import ConfigurationError, InvalidArgumentError

if TYPE_CHECKING:
    from ._checkpoints import Checkpoints, History, Stored

__all__ = ["AsyncSessiondbSaver", "SessiondbSaver"]

#: the ``configurable`` keys that bind a thread to an owner, by default
OWNER_KEYS = ("app_name", "user_id")

#: LangGraph's checkpointer methods, each made from the ``_``-prefixed call of the same name:
#: ``name`` blocking, ``aname`` awaitable (``list`` and ``alist`` iterate)
_METHODS = (
    "get_tuple", "list", "put", "put_writes", "delete_thread", "delete_for_runs", "copy_thread",
    "prune", "get_delta_channel_history",
)  # fmt: skip


def _same(result: Any) -> Any:
    return result


@dataclass(frozen=True, slots=True)
class _Call:
    """One core operation to run: ``op(cx, **kwargs)``, its result passed through ``then``."""

    op: Callable[..., Any]
    kwargs: dict[str, Any]
    then: Callable[[Any], Any] = _same


class _Saver(BaseCheckpointSaver[str]):
    """Both savers: LangGraph's API as calls of the core. A subclass runs them (``_run``
    blocking, ``_arun`` awaited)."""

    #: the store a saver stands on (made from a URL, or given)
    store_type: ClassVar[type[SessionStore] | type[AsyncSessionStore]]
    store: SessionStore | AsyncSessionStore
    _ops: Checkpoints

    def __init__(
        self,
        source: str | SessionStore | AsyncSessionStore,
        *,
        serde: SerializerProtocol | None = None,
        ttl: timedelta | float | None = None,
        owner_keys: tuple[str, str] | None = OWNER_KEYS,
        **store_options: Any,
    ) -> None:
        super().__init__(serde=serde)
        self.ttl = None if ttl is None else seconds(ttl, "ttl")
        self.owner_keys = owner_keys
        store_type = self.store_type
        if isinstance(source, (SessionStore, AsyncSessionStore)):
            if not isinstance(source, store_type):
                raise ConfigurationError(
                    f"{type(self).__name__} stands on {store_type.__name__}, not on "
                    f"{type(source).__name__}"
                )
            if store_options:
                raise ConfigurationError("store options apply to a URL, not to a store")
            self.store, self._owns_store = source, False
        else:
            self.store, self._owns_store = store_type(source, **store_options), True
        self._ops = self.store._backend.checkpoints
        self._call: Any = self.store._backend.call

    def _run(self, call: _Call) -> Any:
        raise NotImplementedError

    async def _arun(self, call: _Call) -> Any:
        raise NotImplementedError

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

    # -- the calls: LangGraph's arguments to the core's, its results back ------------------------

    def _place(self, config: RunnableConfig) -> Place:
        return Place(**self._where(config), checkpoint_id=get_checkpoint_id(config))

    def _get_tuple(self, config: RunnableConfig) -> _Call:
        return _Call(
            self._ops.get,
            {"at": self._place(config)},
            lambda stored: None if stored is None else self._tuple(stored),
        )

    def _list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> _Call:
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
            args["checkpoint_id"] = get_checkpoint_id(config)
        return _Call(
            self._ops.list_checkpoints, args, lambda found: [self._tuple(s) for s in found]
        )

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> _Call:
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
        args = {
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
        after = self._config(
            where["app_name"], where["user_id"], where["thread_id"], where["checkpoint_ns"],
            checkpoint["id"],
        )  # fmt: skip
        return _Call(self._ops.put, args, lambda _: after)

    def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> _Call:
        rows = [
            (WRITES_IDX_MAP.get(channel, i), channel, *self.serde.dumps_typed(value))
            for i, (channel, value) in enumerate(writes)
        ]
        args = {
            **self._where(config),
            "checkpoint_id": config["configurable"]["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
            "writes": rows,
            # special writes (errors, interrupts...) replace their earlier value
            "replace": all(channel in WRITES_IDX_MAP for channel, _ in writes),
        }
        return _Call(self._ops.put_writes, args)

    def _delete_thread(self, thread_id: str) -> _Call:
        return _Call(self._ops.delete_thread, {"thread_id": str(thread_id)})

    def _delete_for_runs(self, run_ids: Sequence[str]) -> _Call:
        return _Call(self._ops.delete_for_runs, {"run_ids": list(run_ids)})

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> _Call:
        return _Call(
            self._ops.copy_thread,
            {"source": str(source_thread_id), "target": str(target_thread_id)},
        )

    def _prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> _Call:
        return _Call(
            self._ops.prune,
            {"thread_ids": [str(t) for t in thread_ids], "keep_latest": _keep_latest(strategy)},
        )

    def _get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> _Call:
        args = {"at": self._place(config), "channels": [str(c) for c in channels]}
        return _Call(self._ops.delta_history, args, self._history)

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

    def _history(self, found: History) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for channel, (writes, seed) in found.items():
            entry: dict[str, Any] = {
                "writes": [
                    (task, ch, self.serde.loads_typed((kind, blob)))  # type: ignore[arg-type]
                    for task, ch, kind, blob in writes
                ]
            }
            if seed is not None:
                entry["seed"] = self.serde.loads_typed(seed)
            out[channel] = entry
        return out

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A new version, greater than ``current``, with a random part: a branch made from an
        older checkpoint never reuses a version (blobs are keyed by it)."""
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(str(current).split(".", 1)[0])
        # random, not secrets: os.urandom drops the GIL, a wait for it back under threads
        return f"{n + 1:032}.{random.getrandbits(64):016x}"


# -- LangGraph's methods, each made from its call: blocking, awaitable, or iterating --------------


def _blocking(make: Callable[..., _Call]) -> Callable[..., Any]:
    def method(self: _Saver, *args: Any, **kwargs: Any) -> Any:
        return self._run(make(self, *args, **kwargs))

    return method


def _awaiting(make: Callable[..., _Call]) -> Callable[..., Any]:
    async def method(self: _Saver, *args: Any, **kwargs: Any) -> Any:
        return await self._arun(make(self, *args, **kwargs))

    return method


def _iterating(make: Callable[..., _Call]) -> Callable[..., Any]:
    def method(self: _Saver, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from self._run(make(self, *args, **kwargs))

    return method


def _async_iterating(make: Callable[..., _Call]) -> Callable[..., Any]:
    async def method(self: _Saver, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in await self._arun(make(self, *args, **kwargs)):
            yield item

    return method


for _name in _METHODS:
    _make = getattr(_Saver, f"_{_name}")
    _kinds = (_iterating, _async_iterating) if _name == "list" else (_blocking, _awaiting)
    for _method_name, _kind in zip((_name, f"a{_name}"), _kinds, strict=True):
        _method = _kind(_make)
        _method.__name__ = _method.__qualname__ = _method_name
        _method.__doc__ = getattr(BaseCheckpointSaver, _method_name).__doc__
        setattr(_Saver, _method_name, _method)


class SessiondbSaver(_Saver):
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

    store_type = SessionStore
    store: SessionStore

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

    def _run(self, call: _Call) -> Any:
        return call.then(self._call(call.op, **call.kwargs))

    async def _arun(self, call: _Call) -> Any:
        """The blocking call in the loop's default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, self._run, call)


class AsyncSessiondbSaver(_Saver):
    """A LangGraph checkpointer on sessiondb whose calls never block the event loop.

    Args: as :class:`SessiondbSaver`, with an :class:`~sessiondb.AsyncSessionStore` as the
    store. Calls from several tasks run in parallel on the store's pool: there is no lock
    around the saver.

    Its blocking methods (``graph.get_state`` in sync code) work from a thread with no
    running event loop; from inside a running loop use the ``a``-methods.
    """

    store_type = AsyncSessionStore
    store: AsyncSessionStore

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

    async def _arun(self, call: _Call) -> Any:
        return call.then(await self._call(call.op, **call.kwargs))

    def _run(self, call: _Call) -> Any:
        """The call on an event loop of its own; refused inside a running loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._arun(call))
        raise ConfigurationError(
            "AsyncSessiondbSaver's blocking methods cannot run inside an event loop: await "
            "its a-methods (graph.aget_state, graph.ainvoke ...), or use SessiondbSaver"
        )


def _keep_latest(strategy: str) -> bool:
    if strategy == "keep_latest":
        return True
    if strategy == "delete":
        return False
    raise InvalidArgumentError(
        f"prune strategy must be 'keep_latest' or 'delete', not {strategy!r}"
    )
