"""The SQL of LangGraph checkpoints (the ``lg_*`` tables), compiled once per dialect.

A sibling of :mod:`sessiondb._queries`, built from its :class:`~sessiondb._queries.Queries`
(the same compiler, statement cache and dialect decisions). Statements whose shape depends on
a count (several blobs or writes in one INSERT, several keys in one DELETE) are compiled once
per count and cached.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from ._queries import ONE, Queries, Stmt, p
from ._schema import Timestamp

__all__ = ["CheckpointQueries"]

#: the key of a thread as statements bind it: :app, :user, :tid
THREAD = ("app_name", "user_id", "thread_id")
#: SQLite: at most this many channels' blobs read as one SELECT each, joined by UNION ALL
#: (SQLite allows 500 SELECTs in one compound statement)
SQLITE_BLOB_ARMS = 200
#: a turn's statements (a checkpoint with up to this many changed channels, a task's writes
#: up to this many, a checkpoint's read) are prepared on first use (Stmt.prepare); larger
#: shapes are rare and left to the driver's own statement cache
HOT_MAX = 16


class CheckpointQueries:
    """Every checkpoint statement for one dialect and table prefix."""

    def __init__(self, q: Queries) -> None:
        self.q = q
        t = q.tables
        self.threads, self.checkpoints = t.lg_threads, t.lg_checkpoints
        self.blobs, self.writes = t.lg_blobs, t.lg_writes
        self.all_tables = (self.checkpoints, self.blobs, self.writes, self.threads)
        th, ck = self.threads.c, self.checkpoints.c
        now = p("now", Timestamp())

        # a thread's row: made by its first checkpoint, its expiry renewed by every one
        self.touch_thread_rows: Any = self.upsert(
            self.threads,
            {"app_name": p("app"), "user_id": p("user"), "thread_id": p("tid"),
             "created_at": now, "updated_at": now, "expires_at": p("expires", Timestamp())},
            ("updated_at", "expires_at"),
        )  # fmt: skip
        self.touch_thread = q.compile(self.touch_thread_rows)
        self.owners_of = q.compile(
            sa.select(th.app_name, th.user_id).where(th.thread_id == p("tid"))
        )
        self.cols = [
            ck.thread_id, ck.checkpoint_ns, ck.checkpoint_id, ck.parent_checkpoint_id, ck.type,
            ck.checkpoint, ck.versions, ck.metadata, ck.app_name, ck.user_id,
        ]  # fmt: skip
        self.put_checkpoint_row: Any = self.upsert(
            self.checkpoints,
            {"app_name": p("app"), "user_id": p("user"), "thread_id": p("tid"),
             "checkpoint_ns": p("ns"), "checkpoint_id": p("cid"),
             "parent_checkpoint_id": p("parent"), "run_id": p("run"), "type": p("type"),
             "checkpoint": p("data", sa.LargeBinary()), "versions": p("versions"),
             "metadata": p("meta"), "created_at": now},
            ("parent_checkpoint_id", "run_id", "type", "checkpoint", "versions", "metadata"),
        )  # fmt: skip
        self.put_checkpoint = q.compile(self.put_checkpoint_row)
        owned = self.of_thread(self.checkpoints)
        self.latest = q.compile(
            sa.select(*self.cols)
            .where(*owned, ck.checkpoint_ns == p("ns"))
            .order_by(ck.checkpoint_id.desc())
            .limit(1)
        )
        self.exact = q.compile(
            sa.select(*self.cols).where(
                *owned, ck.checkpoint_ns == p("ns"), ck.checkpoint_id == p("cid")
            )
        )
        # prune: the newest checkpoint of each namespace of a thread
        self.newest_per_ns = q.compile(
            sa.select(ck.checkpoint_ns, sa.func.max(ck.checkpoint_id).label("checkpoint_id"))
            .where(*owned)
            .group_by(ck.checkpoint_ns)
        )
        # a thread that uses a DeltaChannel: LangGraph marks its checkpoints' metadata
        self.uses_delta = q.compile(
            sa.select(ck.checkpoint_id)
            .where(
                *owned,
                sa.or_(
                    ck.metadata.contains('"counters_since_delta_snapshot"', autoescape=True),
                    ck.metadata.contains('"delta_writes_versioned"', autoescape=True),
                ),
            )
            .limit(1)
        )
        self.versions_of = q.compile(sa.select(ck.checkpoint_ns, ck.versions).where(*owned))
        bl = self.blobs.c
        self.blob_keys = q.compile(
            sa.select(bl.checkpoint_ns, bl.channel, bl.version).where(*self.of_thread(self.blobs))
        )
        self.delete_thread = {
            table.name: q.compile(sa.delete(table).where(*self.of_thread(table)))
            for table in self.all_tables
        }
        self.delete_owner = {
            table.name: q.compile(
                sa.delete(table).where(table.c.app_name == p("app"), table.c.user_id == p("user"))
            )
            for table in self.all_tables
        }
        self.delete_app = {
            table.name: q.compile(sa.delete(table).where(table.c.app_name == p("app")))
            for table in self.all_tables
        }
        wr = self.writes.c
        self.delete_older = {
            name: q.compile(
                sa.delete(table).where(
                    *self.of_thread(table),
                    table.c.checkpoint_ns == p("ns"),
                    table.c.checkpoint_id < p("keep"),
                )
            )
            for name, table in (("checkpoints", self.checkpoints), ("writes", self.writes))
        }
        self.delete_checkpoint = {
            name: q.compile(
                sa.delete(table).where(
                    *self.of_thread(table),
                    table.c.checkpoint_ns == p("ns"),
                    table.c.checkpoint_id == p("cid"),
                )
            )
            for name, table in (("checkpoints", self.checkpoints), ("writes", self.writes))
        }
        self.delete_blob = q.compile(
            sa.delete(self.blobs).where(
                *self.of_thread(self.blobs), bl.checkpoint_ns == p("ns"),
                bl.channel == p("channel"), bl.version == p("version"),
            )
        )  # fmt: skip
        self.copy = {table.name: q.compile(self.copy_rows(table)) for table in self.all_tables}
        self.write_cols = [wr.task_id, wr.channel, wr.type, wr.blob, wr.task_path, wr.idx]
        self.expired_threads = q.compile(
            sa.select(th.app_name, th.user_id, th.thread_id)
            .where(th.expires_at.is_not(None), th.expires_at <= q.db_now())
            .limit(p("limit", sa.Integer()))
        )
        self.count_expired = q.compile(
            sa.select(sa.func.count().label("count")).where(
                th.expires_at.is_not(None), th.expires_at <= q.db_now()
            )
        )
        self.stats = q.compile(
            sa.select(
                ck.app_name,
                sa.func.count(sa.distinct(ck.thread_id)).label("threads"),
                sa.func.count().label("checkpoints"),
            )
            .group_by(ck.app_name)
            .order_by(ck.app_name)
        )
        # export: every row of one thread, per table, in key order
        self.thread_rows = {
            table.name: q.compile(
                sa.select(*table.columns)
                .where(*self.of_thread(table))
                .order_by(*table.primary_key.columns)
            )
            for table in (self.checkpoints, self.blobs, self.writes)
        }

    # -- building blocks -------------------------------------------------------------------

    @staticmethod
    def of_thread(table: sa.Table) -> list[sa.ColumnElement[bool]]:
        """``table``'s rows of the thread :app, :user, :tid (its whole key, owner first)."""
        c = table.c
        return [c.app_name == p("app"), c.user_id == p("user"), c.thread_id == p("tid")]

    def upsert(
        self, table: sa.Table, values: dict[str, Any], update: tuple[str, ...]
    ) -> ClauseElement:
        """INSERT, or UPDATE of the ``update`` columns when the primary key exists."""
        q = self.q
        keys = [c.name for c in table.primary_key.columns]
        if q.pg or q.backend == "sqlite":
            dialect_insert = postgresql.insert if q.pg else sqlite.insert
            ins = dialect_insert(table).values(**values)
            return ins.on_conflict_do_update(
                index_elements=keys, set_={name: ins.excluded[name] for name in update}
            )
        ins_my = mysql.insert(table).values(**values)
        return ins_my.on_duplicate_key_update({name: ins_my.inserted[name] for name in update})

    def copy_rows(self, table: sa.Table) -> ClauseElement:
        """Copy a thread's rows of ``table`` to the thread :target (same owner), keeping rows
        the target already has."""
        c = table.c
        names = [col.name for col in table.columns]
        select = sa.select(
            *(p("target").label(n) if n == "thread_id" else c[n] for n in names)
        ).where(*self.of_thread(table))
        q = self.q
        if q.pg:
            return postgresql.insert(table).from_select(names, select).on_conflict_do_nothing()
        if q.backend == "sqlite":
            # SQLite's parser needs a WHERE before ON CONFLICT after a SELECT
            return sqlite.insert(table).from_select(names, select).on_conflict_do_nothing()
        return mysql.insert(table).from_select(names, select).prefix_with("IGNORE")

    # -- shapes compiled per count ---------------------------------------------------------

    def put_blobs(self, n: int) -> Stmt:
        """Insert ``n`` channel blobs (:ch0, :v0, :type0, :blob0 ...), keeping existing ones."""
        return self.q.cached(("lg_blobs", n), lambda: self.blob_rows(n))

    def blob_rows(self, n: int) -> Any:
        """The INSERT of :meth:`put_blobs`, not compiled."""
        rows = [
            {"app_name": p("app"), "user_id": p("user"), "thread_id": p("tid"),
             "checkpoint_ns": p("ns"), "channel": p(f"ch{i}"), "version": p(f"v{i}"),
             "type": p(f"type{i}"), "blob": p(f"blob{i}", sa.LargeBinary())}
            for i in range(n)
        ]  # fmt: skip
        return self.q.insert_if_absent_rows(self.blobs, rows)

    def put_all(self, n: int) -> Stmt:
        """PostgreSQL: the thread's row, ``n`` blobs and the checkpoint in one statement (the
        first two as data-modifying CTEs): one round trip, atomic without a transaction."""

        def build() -> ClauseElement:
            stmt = self.put_checkpoint_row.add_cte(self.touch_thread_rows.cte("lg_touch"))
            if n:
                stmt = stmt.add_cte(self.blob_rows(n).cte("lg_put_blobs"))
            return stmt  # type: ignore[no-any-return]

        return self.q.cached(("lg_put_all", n), build, prepare=n <= HOT_MAX)

    def put_writes(self, n: int, replace: bool) -> Stmt:
        """Insert ``n`` pending writes (:task, :path; :idx0, :ch0, :type0, :blob0 ...); with
        ``replace``, an existing (task, idx) is overwritten, else kept."""

        def build() -> ClauseElement:
            rows = [
                {"app_name": p("app"), "user_id": p("user"), "thread_id": p("tid"),
                 "checkpoint_ns": p("ns"), "checkpoint_id": p("cid"), "task_id": p("task"),
                 "idx": p(f"idx{i}"), "channel": p(f"ch{i}"), "type": p(f"type{i}"),
                 "blob": p(f"blob{i}", sa.LargeBinary()), "task_path": p("path")}
                for i in range(n)
            ]  # fmt: skip
            if not replace:
                return self.q.insert_if_absent_rows(self.writes, rows)
            return self.upsert_rows(self.writes, rows, ("channel", "type", "blob", "task_path"))

        return self.q.cached(("lg_writes", n, replace), build, prepare=n <= HOT_MAX)

    def upsert_rows(
        self, table: sa.Table, rows: list[dict[str, Any]], update: tuple[str, ...]
    ) -> ClauseElement:
        """A multi-row :meth:`upsert`."""
        q = self.q
        keys = [c.name for c in table.primary_key.columns]
        if q.pg or q.backend == "sqlite":
            dialect_insert = postgresql.insert if q.pg else sqlite.insert
            ins = dialect_insert(table).values(rows)
            return ins.on_conflict_do_update(
                index_elements=keys, set_={name: ins.excluded[name] for name in update}
            )
        ins_my = mysql.insert(table).values(rows)
        return ins_my.on_duplicate_key_update({name: ins_my.inserted[name] for name in update})

    def blobs_of(self, n: int, *columns: Any) -> list[Any]:
        """SELECTs of ``columns`` from the blobs (:ch0, :v0 ...) of ``n`` channels of the
        thread :app, :user, :tid in :ns, to be joined by UNION ALL (none when ``n`` is 0).

        On SQLite one SELECT per channel (up to :data:`SQLITE_BLOB_ARMS`), each a lookup of its
        whole primary key: SQLite's planner serves ``(channel = ? AND version = ?) OR ...``
        by scanning every blob of the namespace, so a read would slow down as the thread
        grows. Elsewhere (and for more channels) one SELECT with the pairs OR'ed."""
        if not n:
            return []
        bl = self.blobs.c
        owned = [*self.of_thread(self.blobs), bl.checkpoint_ns == p("ns")]
        if self.q.backend == "sqlite" and n <= SQLITE_BLOB_ARMS:
            return [
                sa.select(*columns).where(
                    *owned, bl.channel == p(f"ch{i}"), bl.version == p(f"v{i}")
                )
                for i in range(n)
            ]
        pairs = (sa.and_(bl.channel == p(f"ch{i}"), bl.version == p(f"v{i}")) for i in range(n))
        return [sa.select(*columns).where(*owned, sa.or_(*pairs))]

    def load(self, n: int) -> Stmt:
        """A checkpoint's ``n`` blobs (:ch0, :v0 ...) and its pending writes (:cid), in one
        statement: rows of (kind, channel, a, b, idx, type, blob), kind "b" for a blob (a:
        its version), "w" for a write (a: task id, b: task path)."""

        def build() -> ClauseElement:
            bl, wr = self.blobs.c, self.writes.c
            text = sa.literal_column
            parts: list[Any] = self.blobs_of(
                n,
                text("'b'").label("kind"), bl.channel.label("channel"), bl.version.label("a"),
                sa.cast(text("''"), sa.Text()).label("b"), text("0").label("idx"),
                bl.type.label("type"), bl.blob.label("blob"),
            )  # fmt: skip
            parts.append(
                sa.select(
                    text("'w'").label("kind"), wr.channel.label("channel"),
                    wr.task_id.label("a"), sa.cast(wr.task_path, sa.Text()).label("b"),
                    wr.idx.label("idx"), wr.type.label("type"), wr.blob.label("blob"),
                ).where(
                    *self.of_thread(self.writes), wr.checkpoint_ns == p("ns"),
                    wr.checkpoint_id == p("cid"),
                )
            )  # fmt: skip
            return parts[0] if len(parts) == 1 else sa.union_all(*parts)

        return self.q.cached(("lg_load", n), build)

    def get_all(self, latest: bool) -> Stmt:
        """PostgreSQL: a checkpoint (:cid, or the namespace's newest with ``latest``) of the
        thread :app, :user, :tid in :ns, with its blobs and pending writes, in one statement
        (one round trip): rows of (kind, channel, a, b, idx, type, blob, meta). Kind "c" is
        the checkpoint (channel: its id, a: its parent's, b: its versions, blob: its bytes,
        meta: its metadata); "b" and "w" are as in :meth:`load`. No row: no checkpoint."""

        def build() -> ClauseElement:
            ck, bl, wr = self.checkpoints.c, self.blobs.c, self.writes.c
            text = sa.literal_column
            found = sa.select(
                ck.checkpoint_id, ck.parent_checkpoint_id, ck.type, ck.checkpoint, ck.versions,
                ck.metadata,
            ).where(*self.of_thread(self.checkpoints), ck.checkpoint_ns == p("ns"))  # fmt: skip
            if latest:
                found = found.order_by(ck.checkpoint_id.desc()).limit(ONE)
            else:
                found = found.where(ck.checkpoint_id == p("cid"))
            at = found.cte("lg_at")
            # the checkpoint's channel versions, as rows (channel, version)
            pairs = (
                sa.func.jsonb_each_text(sa.cast(at.c.versions, postgresql.JSONB))
                .table_valued("key", "value")
                .render_derived(name="lg_v")
            )
            checkpoint = sa.select(
                text("'c'").label("kind"), at.c.checkpoint_id.label("channel"),
                at.c.parent_checkpoint_id.label("a"), sa.cast(at.c.versions, sa.Text()).label("b"),
                text("0").label("idx"), at.c.type.label("type"), at.c.checkpoint.label("blob"),
                sa.cast(at.c.metadata, sa.Text()).label("meta"),
            )  # fmt: skip
            # each blob by its whole key (an index lookup per channel, whatever the thread's
            # length): LIMIT 1 keeps the lookup inside the loop over the pairs
            blob = (
                sa.select(bl.type, bl.blob)
                .where(
                    *self.of_thread(self.blobs), bl.checkpoint_ns == p("ns"),
                    bl.channel == pairs.c.key, bl.version == pairs.c.value,
                )
                .limit(ONE)
                .lateral("lg_b")
            )  # fmt: skip
            blobs = (
                sa.select(
                    text("'b'").label("kind"), pairs.c.key, pairs.c.value,
                    sa.cast(text("''"), sa.Text()), text("0"), blob.c.type, blob.c.blob,
                    sa.cast(sa.null(), sa.Text()),
                )
                .select_from(at)
                .join(pairs, sa.true())
                .join(blob, sa.true())
            )  # fmt: skip
            # the checkpoint's id found once (an InitPlan): the writes by their key's prefix
            writes = sa.select(
                text("'w'").label("kind"), wr.channel, wr.task_id,
                sa.cast(wr.task_path, sa.Text()), wr.idx, wr.type, wr.blob,
                sa.cast(sa.null(), sa.Text()),
            ).where(
                *self.of_thread(self.writes), wr.checkpoint_ns == p("ns"),
                wr.checkpoint_id == sa.select(at.c.checkpoint_id).scalar_subquery(),
            )  # fmt: skip
            return sa.union_all(checkpoint, blobs, writes)

        return self.q.cached(("lg_get_all", latest), build, prepare=True)

    def listing(
        self, owner: bool, thread: bool, ns: bool, checkpoint: bool, before: bool, limit: bool
    ) -> Stmt:
        """Checkpoints newest first, filtered by what is bound (:app/:user, :tid, :ns, :cid,
        :before), up to :limit."""

        def build() -> ClauseElement:
            ck = self.checkpoints.c
            query = sa.select(*self.cols)
            if owner:
                query = query.where(ck.app_name == p("app"), ck.user_id == p("user"))
            if thread:
                query = query.where(ck.thread_id == p("tid"))
            if ns:
                query = query.where(ck.checkpoint_ns == p("ns"))
            if checkpoint:
                query = query.where(ck.checkpoint_id == p("cid"))
            if before:
                query = query.where(ck.checkpoint_id < p("before"))
            query = query.order_by(
                ck.checkpoint_id.desc(), ck.thread_id, ck.checkpoint_ns, ck.app_name, ck.user_id
            )
            if limit:
                query = query.limit(p("limit", sa.Integer()))
            return query

        return self.q.cached(("lg_list", owner, thread, ns, checkpoint, before, limit), build)

    def chain(self, latest: bool) -> Stmt:
        """The parent chain of a checkpoint (:cid, or the namespace's newest with ``latest``)
        of the thread :app, :user, :tid in :ns, as rows (depth, checkpoint_id, versions)
        nearest first: depth 0 is the checkpoint itself. One recursive query."""

        def build() -> ClauseElement:
            ck = self.checkpoints.c
            owned = [*self.of_thread(self.checkpoints), ck.checkpoint_ns == p("ns")]
            if latest:
                target: Any = (
                    sa.select(sa.func.max(ck.checkpoint_id)).where(*owned).scalar_subquery()
                )
            else:
                target = p("cid")
            anchor = sa.select(
                ck.checkpoint_id, ck.parent_checkpoint_id, ck.versions,
                sa.literal(0, sa.Integer()).label("depth"),
            ).where(*owned, ck.checkpoint_id == target)  # fmt: skip
            chain = anchor.cte("lg_chain", recursive=True)
            parent = self.checkpoints.alias("lg_parent")
            pc = parent.c
            chain = chain.union_all(
                sa.select(
                    pc.checkpoint_id, pc.parent_checkpoint_id, pc.versions, chain.c.depth + 1
                ).where(
                    pc.app_name == p("app"), pc.user_id == p("user"), pc.thread_id == p("tid"),
                    pc.checkpoint_ns == p("ns"), pc.checkpoint_id == chain.c.parent_checkpoint_id,
                )
            )  # fmt: skip
            return sa.select(chain.c.depth, chain.c.checkpoint_id, chain.c.versions).order_by(
                chain.c.depth
            )

        return self.q.cached(("lg_chain", latest), build)

    def blobs_at(self, n: int) -> Stmt:
        """The blobs (channel, version, type, blob) of ``n`` (:ch0, :v0 ...) of a thread's
        namespace :ns."""

        def build() -> ClauseElement:
            bl = self.blobs.c
            parts = self.blobs_of(n, bl.channel, bl.version, bl.type, bl.blob)
            return parts[0] if len(parts) == 1 else sa.union_all(*parts)

        return self.q.cached(("lg_blobs_at", n), build)

    def writes_between(self, n: int) -> Stmt:
        """The pending writes to ``n`` channels (:ch0 ...) of a thread's namespace :ns stored
        at checkpoints from :oldest to :newest, as rows (checkpoint_id, task_id,
        task_path, idx, channel, type, blob)."""

        def build() -> ClauseElement:
            wr = self.writes.c
            return sa.select(
                wr.checkpoint_id, wr.task_id, wr.task_path, wr.idx, wr.channel, wr.type, wr.blob
            ).where(
                *self.of_thread(self.writes), wr.checkpoint_ns == p("ns"),
                wr.checkpoint_id >= p("oldest"), wr.checkpoint_id <= p("newest"),
                wr.channel.in_([p(f"ch{i}") for i in range(n)]),
            )  # fmt: skip

        return self.q.cached(("lg_writes_between", n), build)

    def by_runs(self, n: int) -> Stmt:
        """The keys of the checkpoints of ``n`` runs (:run0 ...)."""
        ck = self.checkpoints.c
        return self.q.cached(
            ("lg_runs", n),
            lambda: sa.select(
                ck.app_name, ck.user_id, ck.thread_id, ck.checkpoint_ns, ck.checkpoint_id
            ).where(ck.run_id.in_([p(f"run{i}") for i in range(n)])),
        )

    def threads_in(self, table: sa.Table, n: int) -> Stmt:
        """DELETE of ``table``'s rows of ``n`` threads (:app0, :user0, :tid0 ...)."""

        def build() -> ClauseElement:
            c = table.c
            return sa.delete(table).where(
                sa.or_(
                    *(
                        sa.and_(c.app_name == p(f"app{i}"), c.user_id == p(f"user{i}"),
                                c.thread_id == p(f"tid{i}"))
                        for i in range(n)
                    )
                )
            )  # fmt: skip

        return self.q.cached(("lg_threads_in", table.name, n), build)

    def thread_page(self, by_app: bool, after: bool) -> Stmt:
        """Up to :limit thread rows in key order (of :app; after the key :a_app, :a_user,
        :a_tid): the pages of an export."""

        def build() -> ClauseElement:
            th = self.threads.c
            query = sa.select(*self.threads.columns)
            if by_app:
                query = query.where(th.app_name == p("app"))
            if after:
                query = query.where(
                    sa.tuple_(th.app_name, th.user_id, th.thread_id)
                    > sa.tuple_(p("a_app"), p("a_user"), p("a_tid"))
                )
            return query.order_by(th.app_name, th.user_id, th.thread_id).limit(
                p("limit", sa.Integer())
            )

        return self.q.cached(("lg_thread_page", by_app, after), build)

    def thread_summary(self, by_app: bool) -> Stmt:
        """(app, user, thread, checkpoints, newest checkpoint id) of every thread (of :app)
        that has a checkpoint: what ``copy --merge`` compares."""

        def build() -> ClauseElement:
            ck = self.checkpoints.c
            query = sa.select(
                ck.app_name, ck.user_id, ck.thread_id, sa.func.count().label("checkpoints"),
                sa.func.max(ck.checkpoint_id).label("newest"),
            )  # fmt: skip
            if by_app:
                query = query.where(ck.app_name == p("app"))
            return query.group_by(ck.app_name, ck.user_id, ck.thread_id)

        return self.q.cached(("lg_thread_summary", by_app), build)

    def insert_row(self, table: sa.Table) -> Stmt:
        """INSERT of one row of ``table``, every column a parameter named after it (import);
        a row whose key exists is kept."""
        return self.q.cached(
            ("lg_insert", table.name),
            lambda: self.q.insert_if_absent(
                table,
                {
                    c.name: p(
                        c.name,
                        sa.LargeBinary() if isinstance(c.type, sa.LargeBinary)
                        else Timestamp() if isinstance(c.type, sa.DateTime) else None,
                    )
                    for c in table.columns
                },
            ),
        )  # fmt: skip
