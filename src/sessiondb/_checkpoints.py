"""LangGraph checkpoint operations, written once over a Cx (like :mod:`sessiondb._core`).

The adapter (:mod:`sessiondb.langgraph`) serializes with LangGraph's ``serde`` and hands
bytes here; these operations only store and find them. A checkpoint is one row (the
checkpoint without its channel values, its metadata as JSON, and which version of each
channel it holds), plus one blob row per channel *version*: a checkpoint writes only the
channels whose version changed, and reading one gathers its blobs by (channel, version).

Threads are keyed by their owner ``(app_name, user_id)``, ``("", "")`` when bound to nobody,
then the thread id; calls that name a thread by id alone (``delete_thread``, ``copy_thread``,
``prune``) act on it under every owner that has one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import _checks, _records
from ._ids import MAX_ID_LENGTH
from ._queries import SQLITE_KEYS_PER_STATEMENT
from ._replicas import quick, reads
from ._rows import iso
from ._schema import CHECKPOINT_ID_LENGTH, NS_LENGTH, VERSION_LENGTH
from .errors import ArgumentTypeError, InvalidArgumentError

if TYPE_CHECKING:
    from ._checkpoint_queries import CheckpointQueries
    from ._queries import Queries, Stmt
    from ._rows import Row, Rows
    from ._runner import Cx

__all__ = [
    "Checkpoints",
    "History",
    "Place",
    "Stored",
    "delete_owner",
    "export_threads",
    "import_thread",
    "purge_threads",
]

#: where an export's page of threads ended: the key of its last thread
ThreadKey = tuple[str, str, str]
#: per channel: its pending writes along a parent chain (task id, channel, serde type,
#: bytes), oldest first, and its seed value (serde type, bytes) or None
History = dict[str, tuple[list[tuple[str, str, str, "bytes | None"]], "tuple[str, bytes] | None"]]
#: one blob to store: (channel, version, serde type, bytes or None)
Blob = tuple[str, str, str, "bytes | None"]
#: one pending write to store: (idx, channel, serde type, bytes or None)
Write = tuple[int, str, str, "bytes | None"]


@dataclass(frozen=True, slots=True)
class Place:
    """A checkpoint's place: its thread (and owner), namespace and id (None: the newest)."""

    app_name: str
    user_id: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str | None

    def params(self) -> dict[str, Any]:
        """The checked parameters :app, :user, :tid, :ns (and :cid if there is an id)."""
        params = {
            **_thread(self.app_name, self.user_id, self.thread_id),
            "ns": key(self.checkpoint_ns, "checkpoint_ns", NS_LENGTH, empty=True),
        }
        if self.checkpoint_id is not None:
            params["cid"] = self.checkpoint_id
        return params


@dataclass(frozen=True, slots=True)
class Stored:
    """A checkpoint as stored: what the adapter turns back into a ``CheckpointTuple``."""

    app_name: str
    user_id: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    type: str
    checkpoint: bytes
    metadata: dict[str, Any]
    #: channel -> (serde type, bytes): the values of the checkpoint's channels
    blobs: dict[str, tuple[str, bytes | None]]
    #: (task id, channel, serde type, bytes), in LangGraph's order (task path, task id, idx)
    writes: list[tuple[str, str, str, bytes | None]]


def key(value: Any, what: str, limit: int = MAX_ID_LENGTH, empty: bool = False) -> str:
    """``value`` if it fits its column (a str of printable characters within ``limit``)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value and not empty:
        raise InvalidArgumentError(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidArgumentError(f"{what} is {len(value)} characters long; the limit is {limit}")
    if not value.isprintable():
        raise InvalidArgumentError(f"{what} {value!r} holds control or unprintable characters")
    return value


def _thread(app: str, user: str, thread: str) -> dict[str, Any]:
    return {
        "app": key(app, "app_name", empty=True),
        "user": key(user, "user_id", empty=True),
        "tid": key(thread, "thread_id"),
    }


def _pairs(wanted: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """Parameters :ch0, :v0 ... of (channel, version) pairs."""
    params: dict[str, Any] = {}
    for i, (channel, (_, version)) in enumerate(wanted.items()):
        params[f"ch{i}"], params[f"v{i}"] = channel, version
    return params


def _raw(value: Any) -> bytes | None:
    """A driver's binary value as bytes (psycopg and asyncpg give bytes or memoryview)."""
    if value is None or isinstance(value, bytes):
        return value
    return bytes(value)


class Checkpoints:
    """The checkpoint operations of one store."""

    q: CheckpointQueries

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def bind(self, queries: Queries) -> None:
        """Attach the compiled statements (see :meth:`Core.bind <sessiondb._core.Core.bind>`)."""
        self.queries = queries

    @property
    def _q(self) -> CheckpointQueries:
        return self.queries.lg

    # -- writes -------------------------------------------------------------------------------

    def put(
        self,
        cx: Cx,
        *,
        app_name: str,
        user_id: str,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_id: str | None,
        run_id: str | None,
        type: str,
        data: bytes,
        versions: dict[str, str],
        metadata: dict[str, Any],
        blobs: Sequence[Blob],
        ttl: float | None,
    ) -> None:
        """Store a checkpoint and the blobs of its changed channels (each kept if present)."""
        q, lgq = self.queries, self._q
        thread = _thread(app_name, user_id, thread_id)
        where = {**thread, "ns": key(checkpoint_ns, "checkpoint_ns", NS_LENGTH, empty=True)}
        key(checkpoint_id, "checkpoint_id", CHECKPOINT_ID_LENGTH)
        if parent_id is not None:
            key(parent_id, "parent checkpoint_id", CHECKPOINT_ID_LENGTH)
        if run_id is not None and (not isinstance(run_id, str) or len(run_id) > MAX_ID_LENGTH):
            run_id = None  # a run id the column cannot hold is not indexed
        for channel, version in versions.items():
            # the common case in one expression (a put checks every channel's version;
            # `type` is a parameter here)
            if not (
                channel.__class__ is str and version.__class__ is str
                and 0 < len(channel) <= MAX_ID_LENGTH and 0 < len(version) <= VERSION_LENGTH
                and channel.isprintable() and version.isprintable()
            ):  # fmt: skip
                key(channel, "channel name")
                key(version, f"version of channel {channel!r}", VERSION_LENGTH)
        now = self.rows.now()
        expires = None if ttl is None else q.ts_in(now + timedelta(seconds=ttl))
        params: dict[str, Any] = {}
        for i, (channel, version, kind, blob) in enumerate(blobs):
            params.update({f"ch{i}": channel, f"v{i}": version, f"type{i}": kind, f"blob{i}": blob})
        checkpoint = {
            "cid": checkpoint_id, "parent": parent_id, "run": run_id, "type": type, "data": data,
            "versions": json.dumps(versions, separators=(",", ":")),
            "meta": _dump_metadata(metadata), "now": q.ts_in(now), "expires": expires,
        }  # fmt: skip
        # every statement is idempotent: a lost connection may run the whole put again
        cx.repeatable = True
        if q.pg:  # one statement: one round trip, one commit
            cx.run(lgq.put_all(len(blobs)), {**where, **params, **checkpoint})
            return
        cx.begin()  # one commit (one WAL flush) for the three statements
        cx.run(lgq.touch_thread, {**thread, "now": checkpoint["now"], "expires": expires})
        if blobs:
            cx.run(lgq.put_blobs(len(blobs)), {**where, **params})
        cx.run(lgq.put_checkpoint, {**where, **checkpoint})
        cx.commit()

    def put_writes(
        self,
        cx: Cx,
        *,
        app_name: str,
        user_id: str,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        task_id: str,
        task_path: str,
        writes: Sequence[Write],
        replace: bool,
    ) -> None:
        """Store a task's pending writes for a checkpoint: one statement."""
        if not writes:
            return
        params: dict[str, Any] = {
            **_thread(app_name, user_id, thread_id),
            "ns": key(checkpoint_ns, "checkpoint_ns", NS_LENGTH, empty=True),
            "cid": key(checkpoint_id, "checkpoint_id", CHECKPOINT_ID_LENGTH),
            "task": key(task_id, "task_id", CHECKPOINT_ID_LENGTH),
            "path": task_path,
        }
        for i, (idx, channel, kind, blob) in enumerate(writes):
            key(channel, "channel name")
            params.update({f"idx{i}": idx, f"ch{i}": channel, f"type{i}": kind, f"blob{i}": blob})
        cx.repeatable = True
        cx.run(self._q.put_writes(len(writes), replace), params)

    # -- reads --------------------------------------------------------------------------------

    @quick
    def get(self, cx: Cx, *, at: Place) -> Stored | None:
        """The checkpoint ``at`` names, or the thread's newest in the namespace."""
        lgq = self._q
        params = at.params()
        if self.queries.pg:  # one statement: the checkpoint with its blobs and writes
            return self._gathered(at, cx.all(lgq.get_all(at.checkpoint_id is None), params))
        stmt = lgq.latest if at.checkpoint_id is None else lgq.exact
        row = cx.one(stmt, params)
        return None if row is None else self._load(cx, row)

    def _gathered(self, at: Place, rows: list[Any]) -> Stored | None:
        """A checkpoint from the rows of :meth:`CheckpointQueries.get_all`."""
        found = None
        blobs: dict[str, tuple[str, bytes | None]] = {}
        pending: list[tuple[tuple[str, str, int], tuple[str, str, str, bytes | None]]] = []
        for r_kind, channel, a, b, idx, r_type, blob, meta in rows:
            if r_kind == "b":
                blobs[channel] = (r_type, _raw(blob))
            elif r_kind == "w":
                pending.append(((b or "", a, int(idx)), (a, channel, r_type, _raw(blob))))
            else:
                found = (channel, a, r_type, _raw(blob) or b"", meta)
        if found is None:
            return None
        cid, parent, kind, data, meta = found
        pending.sort(key=lambda item: item[0])
        return Stored(
            at.app_name, at.user_id, at.thread_id, at.checkpoint_ns, cid, parent, kind, data,
            json.loads(meta), blobs, [w for _, w in pending],
        )  # fmt: skip

    @reads
    def list_checkpoints(
        self,
        cx: Cx,
        *,
        app_name: str | None,
        user_id: str | None,
        thread_id: str | None,
        checkpoint_ns: str | None,
        before: str | None,
        filter: dict[str, Any] | None,
        limit: int | None,
        checkpoint_id: str | None = None,
    ) -> list[Stored]:
        """Checkpoints newest first, of a thread (and namespace) or of all, only
        ``checkpoint_id`` if given, whose metadata holds every ``filter`` item, before
        ``before``, at most ``limit``."""
        params: dict[str, Any] = {}
        owner = app_name is not None
        if owner:
            params["app"] = key(app_name, "app_name", empty=True)
            params["user"] = key(user_id, "user_id", empty=True)
        if thread_id is not None:
            params["tid"] = key(thread_id, "thread_id")
        if checkpoint_ns is not None:
            params["ns"] = key(checkpoint_ns, "checkpoint_ns", NS_LENGTH, empty=True)
        if checkpoint_id is not None:
            params["cid"] = key(checkpoint_id, "checkpoint_id", CHECKPOINT_ID_LENGTH)
        if before is not None:
            params["before"] = before
        if limit is not None:
            limit = _checks.positive_int(limit, "limit") if limit else 0
            if limit == 0:
                return []
        # metadata is matched here, so the database limits only an unfiltered listing
        in_sql = limit is not None and not filter
        if in_sql:
            params["limit"] = limit
        stmt = self._q.listing(
            owner,
            thread_id is not None,
            checkpoint_ns is not None,
            checkpoint_id is not None,
            before is not None,
            in_sql,
        )
        found: list[Stored] = []
        at_meta = self._q.cols.index(self._q.checkpoints.c.metadata)
        for row in cx.all(stmt, params):
            if filter:
                metadata = json.loads(row[at_meta])
                if any(k not in metadata or metadata[k] != v for k, v in filter.items()):
                    continue
            found.append(self._load(cx, row))
            if limit is not None and len(found) >= limit:
                break
        return found

    def _load(self, cx: Cx, row: Row) -> Stored:
        """A checkpoint row with its blobs and pending writes (one more statement)."""
        tid, ns, cid, parent, kind, data, versions_text, meta, app, user = row
        versions: dict[str, str] = json.loads(versions_text)
        params: dict[str, Any] = {"app": app, "user": user, "tid": tid, "ns": ns, "cid": cid}
        for i, (channel, version) in enumerate(versions.items()):
            params[f"ch{i}"], params[f"v{i}"] = channel, version
        blobs: dict[str, tuple[str, bytes | None]] = {}
        pending: list[tuple[tuple[str, str, int], tuple[str, str, str, bytes | None]]] = []
        for r_kind, channel, a, b, idx, r_type, blob in cx.all(self._q.load(len(versions)), params):
            if r_kind == "b":
                blobs[channel] = (r_type, _raw(blob))
            else:
                pending.append(((b or "", a, int(idx)), (a, channel, r_type, _raw(blob))))
        pending.sort(key=lambda item: item[0])
        return Stored(
            app, user, tid, ns, cid, parent, kind, _raw(data) or b"", json.loads(meta), blobs,
            [w for _, w in pending],
        )  # fmt: skip

    @reads
    def delta_history(self, cx: Cx, *, at: Place, channels: Sequence[str]) -> History:
        """What ``channels`` contributed along the parent chain of the checkpoint ``at`` names
        (the newest without a checkpoint id): per channel, the pending writes stored at its
        ancestors (oldest first, each checkpoint's in LangGraph's order) down to the nearest
        ancestor holding a value for it, and that value (None if no ancestor holds one).

        LangGraph's ``get_delta_channel_history``, in three statements whatever the chain's
        length: the chain (one recursive query), the seeds' blobs, and the writes."""
        if not channels:
            return {}
        for channel in channels:
            key(channel, "channel name")
        lgq = self._q
        params = at.params()
        thread = {name: params[name] for name in ("app", "user", "tid", "ns")}
        chain = [
            (cid, json.loads(versions))
            for _, cid, versions in cx.all(lgq.chain(at.checkpoint_id is None), params)
        ]
        history: History = {channel: ([], None) for channel in channels}
        if len(chain) < 2:
            return history
        ancestors = chain[1:]  # nearest first; the checkpoint's own writes are still pending
        # the seed of a channel: the value at the nearest ancestor that has one; a version
        # whose blob is "empty" holds none, so look further for another version
        seed_at: dict[str, int] = {}
        seeds: dict[str, tuple[str, bytes]] = {}
        start = dict.fromkeys(channels, 0)
        while True:
            wanted: dict[str, tuple[int, str]] = {}
            for channel in channels:
                if channel in seed_at:
                    continue
                for depth in range(start[channel], len(ancestors)):
                    version = ancestors[depth][1].get(channel)
                    if version is not None:
                        wanted[channel] = (depth, version)
                        break
                else:
                    start[channel] = len(ancestors)
            if not wanted:
                break
            found = {
                (channel, version): (kind, _raw(blob))
                for channel, version, kind, blob in cx.all(
                    lgq.blobs_at(len(wanted)),
                    {**thread, **_pairs(wanted)},
                )
            }
            for channel, (depth, version) in wanted.items():
                kind, blob = found.get((channel, version), ("empty", None))
                if kind != "empty" and blob is not None:
                    seed_at[channel], seeds[channel] = depth, (kind, blob)
                    continue
                # the next ancestor holding another version of the channel
                after = depth
                while after < len(ancestors) and ancestors[after][1].get(channel) == version:
                    after += 1
                start[channel] = after
        # the writes of the ancestors down to the deepest seed (or the root), one statement
        deepest = max(seed_at.get(c, len(ancestors) - 1) for c in channels)
        on_path = {cid: depth for depth, (cid, _) in enumerate(ancestors[: deepest + 1])}
        rows = cx.all(
            lgq.writes_between(len(channels)),
            {**thread, "oldest": min(on_path), "newest": max(on_path),
             **{f"ch{i}": c for i, c in enumerate(channels)}},
        )  # fmt: skip
        ordered = sorted(
            ((-on_path[cid], path or "", task, int(idx)), (task, channel, kind, _raw(blob)))
            for cid, task, path, idx, channel, kind, blob in rows
            if cid in on_path and on_path[cid] <= seed_at.get(channel, len(ancestors))
        )
        for _, (task, channel, kind, blob) in ordered:
            history[channel][0].append((task, channel, kind, blob))
        return {channel: (writes, seeds.get(channel)) for channel, (writes, _) in history.items()}

    # -- deletes and copies -------------------------------------------------------------------

    def _owners(self, cx: Cx, thread_id: str) -> list[dict[str, Any]]:
        """The keys of the threads named ``thread_id``, under every owner."""
        key(thread_id, "thread_id")
        return [
            {"app": app, "user": user, "tid": thread_id}
            for app, user in cx.all(self._q.owners_of, {"tid": thread_id})
        ]

    def delete_thread(self, cx: Cx, *, thread_id: str) -> None:
        """Delete a thread's checkpoints, blobs and writes (under every owner)."""
        cx.repeatable = True
        for thread in self._owners(cx, thread_id):
            self._delete_thread(cx, thread)

    def _delete_thread(self, cx: Cx, thread: dict[str, Any]) -> None:
        lgq = self._q
        cx.begin()
        for table in lgq.all_tables:  # the thread's own row last
            cx.run(lgq.delete_thread[table.name], thread)
        cx.commit()

    def delete_for_runs(self, cx: Cx, *, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) that these runs made; blobs no checkpoint
        of their thread refers to any more go too."""
        ids = [r for r in run_ids if isinstance(r, str) and len(r) <= MAX_ID_LENGTH]
        if not ids:
            return
        lgq = self._q
        cx.repeatable = True
        rows = cx.all(lgq.by_runs(len(ids)), {f"run{i}": r for i, r in enumerate(ids)})
        if not rows:
            return
        threads: dict[tuple[str, str, str], dict[str, Any]] = {}
        cx.begin()
        for app, user, tid, ns, cid in rows:
            thread = {"app": app, "user": user, "tid": tid}
            threads[app, user, tid] = thread
            for name in ("writes", "checkpoints"):
                cx.run(lgq.delete_checkpoint[name], {**thread, "ns": ns, "cid": cid})
        for thread in threads.values():
            self._collect_blobs(cx, thread)
        cx.commit()

    def _collect_blobs(self, cx: Cx, thread: dict[str, Any]) -> None:
        """Delete the thread's blobs that none of its checkpoints refers to."""
        lgq = self._q
        used = {
            (ns, channel, version)
            for ns, versions in cx.all(lgq.versions_of, thread)
            for channel, version in json.loads(versions).items()
        }
        for ns, channel, version in cx.all(lgq.blob_keys, thread):
            if (ns, channel, version) not in used:
                cx.run(
                    lgq.delete_blob, {**thread, "ns": ns, "channel": channel, "version": version}
                )

    def copy_thread(self, cx: Cx, *, source: str, target: str) -> None:
        """Copy every checkpoint, blob and write of ``source`` to ``target`` (same owner)."""
        key(target, "target thread_id")
        lgq = self._q
        cx.repeatable = True
        for thread in self._owners(cx, source):
            cx.begin()
            for table in reversed(lgq.all_tables):  # the thread's own row first
                cx.run(lgq.copy[table.name], {**thread, "target": target})
            cx.commit()

    def prune(self, cx: Cx, *, thread_ids: Sequence[str], keep_latest: bool) -> None:
        """Keep each namespace's newest checkpoint (``keep_latest``) or none of the threads'.

        ``keep_latest`` refuses threads that use LangGraph's ``DeltaChannel`` (their newest
        value is rebuilt from older checkpoints' writes): if any does, nothing is pruned."""
        lgq = self._q
        cx.repeatable = True
        threads = [(tid, self._owners(cx, tid)) for tid in thread_ids]
        if keep_latest:
            delta = sorted(
                {tid for tid, owners in threads for t in owners if cx.one(lgq.uses_delta, t)}
            )
            if delta:
                raise InvalidArgumentError(
                    "prune(strategy='keep_latest') cannot prune threads that use a "
                    f"DeltaChannel: {', '.join(map(repr, delta))}; nothing was pruned"
                )
        for _, owners in threads:
            for thread in owners:
                if not keep_latest:
                    self._delete_thread(cx, thread)
                    continue
                cx.begin()
                for ns, newest in cx.all(lgq.newest_per_ns, thread):
                    for name in ("writes", "checkpoints"):
                        cx.run(lgq.delete_older[name], {**thread, "ns": ns, "keep": newest})
                self._collect_blobs(cx, thread)
                cx.commit()

    @reads
    def thread_summary(self, cx: Cx, *, app_name: str | None) -> dict[ThreadKey, tuple[int, str]]:
        """Every thread with checkpoints (of ``app_name``) -> (checkpoints, newest id)."""
        params = {} if app_name is None else {"app": app_name}
        stmt = self._q.thread_summary(app_name is not None)
        return {
            (app, user, tid): (int(count), newest)
            for app, user, tid, count, newest in cx.all(stmt, params)
        }

    @reads
    def stats(self, cx: Cx) -> list[tuple[str, int, int]]:
        """(app_name, threads, checkpoints) per app."""
        return [(app, int(t), int(c)) for app, t, c in cx.all(self._q.stats, {})]


def _dump_metadata(metadata: dict[str, Any]) -> str:
    """Checkpoint metadata as JSON (values JSON has no form for are stored as their text)."""
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str)


def delete_owner(cx: Cx, q: Queries, *, app_name: str, user_id: str | None) -> None:
    """Delete every thread of a user (or, ``user_id`` None, of an app): part of the caller's
    transaction."""
    lgq = q.lg
    for table in lgq.all_tables:
        if user_id is None:
            cx.run(lgq.delete_app[table.name], {"app": app_name})
        else:
            cx.run(lgq.delete_owner[table.name], {"app": app_name, "user": user_id})


def purge_threads(cx: Cx, q: Queries, *, batch_size: int, dry_run: bool) -> int:
    """Delete the expired threads, in batches of ``batch_size``; their number."""
    lgq = q.lg
    if dry_run:
        return int(cx.one(lgq.count_expired, {})[0])
    if q.backend == "sqlite":  # SQLite's expression depth bounds the keys in one statement
        batch_size = min(batch_size, SQLITE_KEYS_PER_STATEMENT)
    total = 0
    while True:
        keys = cx.all(lgq.expired_threads, {"limit": batch_size})
        if not keys:
            return total
        params: dict[str, Any] = {}
        for i, (app, user, tid) in enumerate(keys):
            params[f"app{i}"], params[f"user{i}"], params[f"tid{i}"] = app, user, tid
        # the thread rows last: a purge cut short finds the rest next time
        for table in lgq.all_tables:
            count = cx.run(lgq.threads_in(table, len(keys)), params)
        total += count
        if len(keys) < batch_size:
            return total


# -- export and import (see _transfer and _records) ---------------------------------------------


def export_threads(
    cx: Cx, q: Queries, *, app_name: str | None, after: ThreadKey | None, limit: int
) -> tuple[list[dict[str, Any]], ThreadKey | None]:
    """Up to ``limit`` thread records (of ``app_name``) in key order after ``after``, and the
    key of the last (None if there was none)."""
    lgq = q.lg
    params: dict[str, Any] = {"limit": limit}
    if app_name is not None:
        params["app"] = app_name
    if after is not None:
        params["a_app"], params["a_user"], params["a_tid"] = after
    stmt = lgq.thread_page(app_name is not None, after is not None)
    found = cx.all(stmt, params)
    if not found:
        return [], None
    i_app, i_user, i_tid, i_created, i_updated, i_expires = stmt.positions(
        "app_name", "user_id", "thread_id", "created_at", "updated_at", "expires_at"
    )
    records = []
    for t in found:
        thread = {"app": t[i_app], "user": t[i_user], "tid": t[i_tid]}
        rows = {name: _export_rows(cx, stmt, thread) for name, stmt in lgq.thread_rows.items()}
        expires = t[i_expires]
        records.append(
            _records.thread_record(
                app_name=t[i_app], user_id=t[i_user], thread_id=t[i_tid],
                created_at=iso(t[i_created]), updated_at=iso(t[i_updated]),
                expires_at=None if expires is None else iso(expires),
                checkpoints=rows[lgq.checkpoints.name], blobs=rows[lgq.blobs.name],
                writes=rows[lgq.writes.name],
            )
        )  # fmt: skip
    last = found[-1]
    return records, (last[i_app], last[i_user], last[i_tid])


_KEY_COLUMNS = frozenset(("app_name", "user_id", "thread_id"))


def _export_rows(cx: Cx, stmt: Stmt, thread: dict[str, Any]) -> list[dict[str, Any]]:
    """A thread's rows of one table as record rows (its key columns left out)."""
    out = []
    for row in cx.all(stmt, thread):
        item: dict[str, Any] = {}
        for name, value in zip(stmt.columns, row, strict=True):
            if name in _KEY_COLUMNS:
                continue
            if name in ("checkpoint", "blob"):
                value = _records.b64(_raw(value))
            elif name in ("versions", "metadata"):
                value = json.loads(value)
            elif name == "created_at":
                value = iso(value)
            item[name] = value
        out.append(item)
    return out


def import_thread(cx: Cx, q: Queries, record: _records.ThreadRecord, now: Any) -> tuple[bool, int]:
    """Write a checked thread record, keeping every row already present (part of the
    caller's transaction): whether the thread is new, and how many checkpoints were."""
    lgq = q.lg
    ts = q.ts_in
    thread = {
        "app_name": record.app_name, "user_id": record.user_id, "thread_id": record.thread_id,
    }  # fmt: skip
    new = cx.run(
        lgq.insert_row(lgq.threads),
        {**thread, "created_at": ts(record.created_at), "updated_at": ts(record.updated_at),
         "expires_at": None if record.expires_at is None else ts(record.expires_at)},
    )  # fmt: skip
    added = 0
    for row in record.checkpoints:
        created = row["created_at"]
        added += cx.run(
            lgq.insert_row(lgq.checkpoints),
            {**thread, **row, "created_at": ts(now if created is None else created)},
        )
    for table, rows in ((lgq.blobs, record.blobs), (lgq.writes, record.writes)):
        stmt = lgq.insert_row(table)
        for row in rows:
            cx.run(stmt, {**thread, **row})
    return new > 0, added
