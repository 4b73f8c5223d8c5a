"""Export, import and checksums: moving whole databases through records.

The record format itself belongs to :mod:`sessiondb._records`; this module reads rows into
records and writes checked records back. An export, an import or a checksum is a *plan*: an
iterable of steps, each a core operation (``step(cx)``) that the front end runs and, if it is
async, awaits. The plan decides the next page or batch; the front end only runs each step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from . import _checkpoints, _records
from ._checks import positive_int
from ._ids import check_id
from ._replicas import reads
from ._rows import UTC, Row, Rows, iso
from .models import ImportResult

if TYPE_CHECKING:
    from ._queries import Queries
    from ._runner import Cx

__all__ = ["Checksum", "Transfer"]

T = TypeVar("T")
Step = Callable[["Cx"], T]
Record = dict[str, Any]
#: Where an export page ended: created_at (ISO), id, app_name, user_id of its last session.
Cursor = tuple[str, str, str, str]


class Checksum:
    """Order-independent SHA-256 over records, with JSON canonicalised (sorted keys)."""

    def __init__(self) -> None:
        self._acc = 0
        self.count = 0

    def add(self, record: Record) -> None:
        kept = _records.copy_view(record)
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).digest()
        self._acc = (self._acc + int.from_bytes(digest, "big")) % (1 << 256)
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self.count}:{self._acc:064x}"


class ExportPlan:
    """The pages of one export: sessions (with their events) in creation order, then the
    scoped states, then LangGraph's threads (with their checkpoints) in key order. Iterate for
    the steps; each returns its records."""

    def __init__(self, transfer: Transfer, app_name: str | None, batch_size: int) -> None:
        self._transfer = transfer
        self._app_name = app_name
        self._batch_size = positive_int(batch_size, "batch_size")
        self._after: Cursor | None = None
        self._done = False
        self._after_thread: _checkpoints.ThreadKey | None = None
        self._threads_done = False

    def __iter__(self) -> Iterator[Step[list[Record]]]:
        while not self._done:
            yield self._page
        yield self._scopes
        while not self._threads_done:
            yield self._threads

    @reads
    def _page(self, cx: Cx) -> list[Record]:
        page, self._after = self._transfer.export_page(
            cx, app_name=self._app_name, after=self._after, limit=self._batch_size
        )
        self._done = self._after is None or len(page) < self._batch_size
        return page

    @reads
    def _scopes(self, cx: Cx) -> list[Record]:
        return self._transfer.export_scopes(cx, app_name=self._app_name)

    @reads
    def _threads(self, cx: Cx) -> list[Record]:
        page, self._after_thread = _checkpoints.export_threads(
            cx, self._transfer.q, app_name=self._app_name, after=self._after_thread,
            limit=self._batch_size,
        )  # fmt: skip
        self._threads_done = self._after_thread is None or len(page) < self._batch_size
        return page


class ImportPlan:
    """The batches of one import. Iterate for the steps (the records are read here, in the
    caller's thread); ``result`` adds up what they wrote."""

    def __init__(self, transfer: Transfer, records: Iterable[Record], batch_size: int) -> None:
        self._transfer = transfer
        self._records = records
        self._batch_size = positive_int(batch_size, "batch_size")
        self.result = ImportResult()

    def __iter__(self) -> Iterator[Step[None]]:
        batch: list[Record] = []
        for record in self._records:
            batch.append(record)
            if len(batch) >= self._batch_size:
                yield self._step(batch)
                batch = []
        if batch:
            yield self._step(batch)

    def _step(self, batch: list[Record]) -> Step[None]:
        def run(cx: Cx) -> None:
            self.result += self._transfer.import_batch(cx, records=batch)

        return run


class ChecksumPlan:
    """The export pages of a checksum, digested as they come; ``result`` at the end."""

    def __init__(self, transfer: Transfer, app_name: str | None) -> None:
        self._export = ExportPlan(transfer, app_name, 500)
        self._digest = Checksum()

    def __iter__(self) -> Iterator[Step[None]]:
        for step in self._export:
            yield self._digesting(step)

    def _digesting(self, step: Step[list[Record]]) -> Step[None]:
        @reads
        def run(cx: Cx) -> None:
            for record in step(cx):
                self._digest.add(record)

        return run

    @property
    def result(self) -> str:
        return self._digest.hexdigest()


class Transfer:
    """Export and import operations for one store (sync-style over a Cx, like the core)."""

    q: Queries

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def bind(self, queries: Queries) -> None:
        """Attach the compiled statements (once the dialect knows its server)."""
        self.q = queries

    # -- plans -----------------------------------------------------------------------------------

    def export_plan(self, *, app_name: str | None, batch_size: int) -> ExportPlan:
        """The steps of ``export_records``: pages of ``batch_size`` sessions, then the scopes."""
        return ExportPlan(self, app_name, batch_size)

    def import_plan(self, *, records: Iterable[Record], batch_size: int) -> ImportPlan:
        """The steps of ``import_records``: one transaction per ``batch_size`` records."""
        return ImportPlan(self, records, batch_size)

    def checksum_plan(self, *, app_name: str | None) -> ChecksumPlan:
        """The steps of ``checksum``: the export's pages, digested."""
        return ChecksumPlan(self, app_name)

    # -- export ----------------------------------------------------------------------------------

    def export_page(
        self, cx: Cx, *, app_name: str | None, after: Cursor | None, limit: int
    ) -> tuple[list[Record], Cursor | None]:
        """One page of session records (with their events) in creation order, and the cursor
        after it (None if the page is empty)."""
        q, loads = self.q, self.rows.loads
        params: dict[str, Any] = {"limit": limit}
        if app_name is not None:
            params["app"] = check_id(app_name, "app_name")
        if after is not None:
            at = datetime.fromisoformat(after[0]).astimezone(UTC).replace(tzinfo=None)
            params["cursor_at"] = q.ts_in(at)
            params["cursor_id"], params["cursor_app"], params["cursor_user"] = after[1:]
        stmt = q.export_page(app_name is not None, after is not None)
        rows = cx.all(stmt, params)
        if not rows:
            return [], None
        (i_id, i_app, i_user, i_state, i_created, i_updated, i_version, i_expires, i_ttl,
         i_title, i_labels) = stmt.positions(
            "id", "app_name", "user_id", "state", "created_at", "updated_at", "version",
            "expires_at", "ttl_seconds", "title", "labels",
        )  # fmt: skip
        events: dict[tuple[str, str, str], list[Record]] = {
            (r[i_app], r[i_user], r[i_id]): [] for r in rows
        }
        for chunk in q.key_chunks(rows):
            self._events_of(cx, chunk, (i_app, i_user, i_id), events)
        records = []
        for r in rows:
            expires, labels = r[i_expires], r[i_labels]
            records.append(
                _records.session_record(
                    id=r[i_id], app_name=r[i_app], user_id=r[i_user], state=loads(r[i_state]),
                    created_at=iso(r[i_created]), updated_at=iso(r[i_updated]),
                    version=r[i_version], events=events[r[i_app], r[i_user], r[i_id]],
                    lifecycle=_records.Lifecycle(
                        expires_at=None if expires is None else iso(expires),
                        ttl_seconds=r[i_ttl], title=r[i_title],
                        labels=[] if labels is None else loads(labels),
                    ),
                )
            )  # fmt: skip
        last = rows[-1]
        return records, (iso(last[i_created]), last[i_id], last[i_app], last[i_user])

    def _events_of(
        self,
        cx: Cx,
        sessions: Sequence[Row],
        at: tuple[int, int, int],
        events: dict[tuple[str, str, str], list[Record]],
    ) -> None:
        """Append the events of ``sessions`` (rows; ``at`` gives their app, user and id
        columns) to ``events``, in order."""
        of, loads = self.q.events_of(len(sessions)), self.rows.loads
        (e_app, e_user, e_sid, e_seq, e_author, e_content, e_created, e_delta, e_invocation,
         e_meta, e_id) = of.positions(
            "app_name", "user_id", "session_id", "seq", "author", "content", "created_at",
            "state_delta", "invocation_id", "meta", "event_id",
        )  # fmt: skip
        keys: dict[str, Any] = {}
        for i, r in enumerate(sessions):
            keys[f"app{i}"], keys[f"user{i}"], keys[f"id{i}"] = r[at[0]], r[at[1]], r[at[2]]
        for e in cx.all(of, keys):
            events[e[e_app], e[e_user], e[e_sid]].append(
                _records.event_record(
                    seq=e[e_seq], author=e[e_author], content=loads(e[e_content]),
                    created_at=iso(e[e_created]), state_delta=loads(e[e_delta]),
                    invocation_id=e[e_invocation], metadata=loads(e[e_meta]),
                    event_id=e[e_id],
                )
            )  # fmt: skip

    def export_scopes(self, cx: Cx, *, app_name: str | None) -> list[Record]:
        """The ``app:`` and ``user:`` states (of one app, or all) as records."""
        loads = self.rows.loads
        out: list[Record] = []
        stmt = self.q.all_app_states
        i_app, i_state = stmt.positions("app_name", "state")
        for r in cx.all(stmt, {}):
            if app_name is None or r[i_app] == app_name:
                out.append(_records.scope_record("app", r[i_app], None, loads(r[i_state])))
        stmt = self.q.all_user_states
        i_app, i_user, i_state = stmt.positions("app_name", "user_id", "state")
        for r in cx.all(stmt, {}):
            if app_name is None or r[i_app] == app_name:
                out.append(_records.scope_record("user", r[i_app], r[i_user], loads(r[i_state])))
        return out

    # -- import ----------------------------------------------------------------------------------

    def import_batch(self, cx: Cx, *, records: list[Any]) -> ImportResult:
        """Write exported records; sessions already at that version or newer are skipped."""
        result = ImportResult()
        prepared = [_records.check(i, r) for i, r in enumerate(records)]
        q, rows = self.q, self.rows
        ts = q.ts_in
        i_version = q.get_any_version.at("version")
        cx.begin()
        for rec in prepared:
            if isinstance(rec, _records.ThreadRecord):
                new, added = _checkpoints.import_thread(cx, q, rec, rows.now())
                result.threads += new
                result.checkpoints += added
                result.skipped += not (new or added)
                continue
            if isinstance(rec, _records.ScopeRecord):
                params = {"app": rec.app_name, "now": ts(rows.now())}
                if rec.scope == "user":
                    params["user"] = rec.user_id
                stmts = q.scopes[rec.scope]
                cx.run(stmts["ensure"], {**params, "state": "{}"})
                cx.run(stmts["write"], {**params, "state": rows.encode_state(rec.state)})
                if rec.scope == "app":
                    result.app_states += 1
                else:
                    result.user_states += 1
                continue
            sid = rec.id
            key = {"app": rec.app_name, "user": rec.user_id, "sid": sid}
            existing = cx.one(q.get_any_version, key)
            params = {
                **key,
                "state": rows.encode_state(rec.state), "created": ts(rec.created_at),
                "updated": ts(rec.updated_at), "version": rec.version,
                "expires": None if rec.expires_at is None else ts(rec.expires_at),
                "ttl": rec.ttl_seconds, "title": rec.title,
                "labels": rows.dumps(rec.labels, "labels") if rec.labels else None,
            }  # fmt: skip
            older = existing is not None and int(existing[i_version]) < rec.version
            if existing is None:
                cx.run(q.import_session, params)
            elif older:
                cx.run(q.import_update, params)
            else:
                result.skipped += 1
            if existing is None or older:
                result.sessions += 1
                cx.run(q.delete_labels, key)
                cx.run_many(q.insert_label, [{**key, "label": lb} for lb in rec.labels])
            new_events = 0
            for e in rec.events:
                content = rows.dumps(e.content, "content")
                delta = None if e.state_delta is None else rows.encode_state(e.state_delta)
                meta = None if e.metadata is None else rows.encode_state(e.metadata)
                size = sum(len(t.encode()) for t in (content, delta, meta) if t is not None)
                new_events += cx.run(
                    q.import_event,
                    {**key, "seq": e.seq, "author": e.author, "content": content,
                     "delta": delta, "invocation": e.invocation_id, "meta": meta,
                     "now": ts(e.created_at), "size": size, "event_id": e.event_id},
                )  # fmt: skip
            if new_events > 0:
                result.events += new_events
            cx.run(q.recount, key)
        cx.commit()
        return result
