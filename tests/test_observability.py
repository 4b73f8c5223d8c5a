"""Issue 15 §1: logs (``sessiondb``, ``sessiondb.sql``), OpenTelemetry spans and metrics.

Spans and metrics are read back with the OpenTelemetry SDK's in-memory span exporter and
metric reader, given to each store with ``telemetry=Telemetry(...)`` (the global providers
can be set once per process). Retries are caused for real: a deadlock (as in
``test_conflicts.py``) and connections killed by the server (as in ``test_reliability.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import make_url

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    SessionNotFoundError,
    SessionStore,
    Telemetry,
)
from sessiondb._backend import AsyncBackend, Backend
from tests.test_conflicts import deadlock
from tests.test_conflicts import setup as deadlock_setup
from tests.test_reliability import Admin, wait_for

#: what a state, an event or a delta holds: never in a log line, a span or a metric
SECRET = "s3cr3t-PAYLOAD"
Call = Callable[..., Awaitable[Any]]


class Observed:
    """A store opened with in-memory OpenTelemetry, and what it recorded."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        self.call: Call

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (cumulative since the store opened)."""
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def count(self, name: str, **attrs: Any) -> float:
        """The sum of a counter's points whose attributes include ``attrs``."""
        return sum(
            p.value for p in self.points(name) if attrs.items() <= dict(p.attributes).items()
        )

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture(params=["sync", "async"])
async def observed(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Observed]:
    """A store with telemetry on ``db_url`` through the front end under test; ``call(method,
    ...)`` awaits it (a sync store's calls run in a thread, as an application's would)."""
    o = Observed()
    options: dict[str, Any] = {"telemetry": o.telemetry, "conflict_backoff": 0.001}
    if request.param == "sync":
        sync = SessionStore(db_url, **options)

        async def call_sync(method: str, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(sync, method), *args, **kwargs)

        o.call = call_sync
        yield o
        sync.close()
    else:
        astore = AsyncSessionStore(db_url, **options)

        async def call_async(method: str, *args: Any, **kwargs: Any) -> Any:
            return await getattr(astore, method)(*args, **kwargs)

        o.call = call_async
        yield o
        await astore.close()
    o.shutdown()


def no_secret(text: str) -> None:
    assert SECRET not in text, text


async def some_operations(call: Call) -> str:
    """Every kind of write and read, with SECRET in states, events, deltas and scoped state."""
    s = await call("create_session", "app", "u", {"k": SECRET, "app:shared": SECRET})
    await call("get_session", "app", "u", s.id, recent_events=5)
    await call("append_event", s.id, "user", {"text": SECRET}, state_delta={"d": SECRET})
    await call("patch_state", s.id, set={"p": SECRET})
    await call("update_session_state", s.id, {"k": SECRET})
    await call("list_sessions", "app", "u")
    await call("list_events", s.id)
    with pytest.raises(SessionNotFoundError):
        await call("update_session_state", "missing", {"k": SECRET})
    return str(s.id)


# -- logging -------------------------------------------------------------------------------------


async def test_statements_are_logged_at_debug_with_parameters_redacted(
    store: Any, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sessiondb.sql"):
        s = await store.create_session("app", "u", {"k": SECRET})
        await store.get_session("app", "u", s.id)
        await store.append_event(s.id, "user", {"text": SECRET}, state_delta={"n": 1})
    sql = [r for r in caplog.records if r.name == "sessiondb.sql"]
    assert sql and all(r.levelno == logging.DEBUG for r in sql)
    messages = [r.getMessage() for r in sql]
    assert any(m.startswith("create_session: INSERT") for m in messages), messages
    gets = [m for m in messages if m.startswith("get_session: SELECT")]
    assert gets and all("parameters [redacted: str" in m for m in gets), gets
    if backend == "postgresql":  # one data-modifying statement, in autocommit
        assert any(m.startswith("append_event: WITH") for m in messages), messages
        assert "append_event: COMMIT" not in messages
    else:  # a transaction: the event's INSERT with its parameter sets, then COMMIT
        assert any(m.startswith("append_event: INSERT") and "parameter sets" in m for m in messages)
        assert any(m == "append_event: COMMIT" for m in messages), messages
    for m in messages:
        no_secret(m)


async def test_no_payload_in_any_log_record_by_default(
    observed: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, on every logger (sessiondb's, SQLAlchemy's, the drivers'), nothing of a
    state, an event or a delta appears, in the message, its arguments or a traceback."""
    with caplog.at_level(logging.DEBUG):
        await some_operations(observed.call)
    assert any(r.name == "sessiondb.sql" for r in caplog.records)
    for r in caplog.records:
        no_secret(r.getMessage())
        no_secret(repr(r.args))
        no_secret(r.exc_text or "")
    for span in observed.finished():  # nor in a span
        no_secret(repr(dict(span.attributes or {})))
        no_secret(repr([(e.name, dict(e.attributes or {})) for e in span.events]))
        no_secret(span.status.description or "")


def test_log_parameters_shows_the_values(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with (
        SessionStore(db_url, log_parameters=True) as s,
        caplog.at_level(logging.DEBUG, logger="sessiondb.sql"),
    ):
        s.create_session("app", "u", {"k": SECRET})
    assert any(SECRET in r.getMessage() for r in caplog.records if r.name == "sessiondb.sql")


def test_options_are_checked(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(ConfigurationError, match="telemetry"):
        SessionStore(url, telemetry="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="log_parameters"):
        SessionStore(url, log_parameters=1)  # type: ignore[arg-type]


async def test_off_means_the_call_is_not_wrapped(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with SessionStore(url, telemetry=False) as off:
        assert off._backend.call.__func__ is Backend.call  # type: ignore[attr-defined]
        assert off._backend.runner.telemetry is None
    with SessionStore(url, telemetry=True) as on:  # the global providers (no-op here)
        assert getattr(on._backend.call, "__func__", None) is not Backend.call
        on.create_session("app", "u")
    async with AsyncSessionStore(url, telemetry=False) as aoff:
        assert aoff._backend.call.__func__ is AsyncBackend.call  # type: ignore[attr-defined]


# -- spans and metrics ---------------------------------------------------------------------------


async def test_a_span_per_operation_with_the_semantic_conventions(
    observed: Observed, backend: str, db_url: str
) -> None:
    sid = await some_operations(observed.call)
    spans = observed.finished()
    ops = [s.attributes["db.operation.name"] for s in spans if s.attributes]
    assert ops == [
        "create_session",
        "get_session",
        "append_event",
        "patch_state",
        "update_session_state",
        "list_sessions",
        "list_events",
        "update_session_state",
    ]
    system = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": ("mysql", "mariadb")}
    for span in spans:
        attrs = dict(span.attributes or {})
        assert span.kind is trace.SpanKind.CLIENT
        assert attrs["db.system.name"] in system[backend]
        namespace = attrs["db.namespace"]
        assert namespace and namespace in db_url
        assert span.name == f"{attrs['db.operation.name']} {namespace}"
        if backend == "sqlite":
            assert "server.address" not in attrs
        else:
            url = make_url(db_url)
            assert attrs["server.address"] == url.host
            assert attrs["server.port"] == (url.port or (5432 if backend == "postgresql" else 3306))
    *ok, failed = spans
    assert all(s.status.status_code is trace.StatusCode.UNSET for s in ok)
    assert all("error.type" not in (s.attributes or {}) for s in ok)
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "SessionNotFoundError"  # type: ignore[index]
    assert sid  # the session the operations worked on

    # the histogram: one measurement per operation, failures with error.type
    durations = observed.points("db.client.operation.duration")
    by_op = {
        (p.attributes["db.operation.name"], p.attributes.get("error.type")): p.count
        for p in durations
    }
    assert by_op[("update_session_state", None)] == 1
    assert by_op[("update_session_state", "SessionNotFoundError")] == 1
    assert by_op[("get_session", None)] == 1
    assert all(p.sum > 0 for p in durations)
    assert (
        observed.count(
            "sessiondb.client.operation.errors", **{"error.type": "SessionNotFoundError"}
        )
        == 1
    )

    # the pool: idle and used connections, and its maximum
    conns = {
        p.attributes["db.client.connection.state"]: p.value
        for p in observed.points("db.client.connection.count")
    }
    assert conns["idle"] >= 1 and conns["used"] == 0, conns
    assert [p.value for p in observed.points("db.client.connection.max")] == [15]


async def test_spans_are_children_of_the_callers_span(observed: Observed) -> None:
    tracer = observed.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as parent:
        await observed.call("create_session", "app", "u")
    child, request = observed.finished()
    assert request.name == "request"
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.context.trace_id == parent.get_span_context().trace_id


async def test_purge_backlog_is_what_the_last_count_found(observed: Observed) -> None:
    assert observed.points("sessiondb.purge.backlog") == []  # never counted: nothing reported
    await observed.call("create_session", "app", "u", ttl=timedelta(milliseconds=1))
    await observed.call("create_session", "app", "u")
    deadline = time.monotonic() + 10
    while await observed.call("purge_expired", dry_run=True) < 1:  # the clock passes the ttl
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert [p.value for p in observed.points("sessiondb.purge.backlog")] == [1]
    assert await observed.call("purge_expired") == 1
    assert [p.value for p in observed.points("sessiondb.purge.backlog")] == [0]
    assert observed.count("sessiondb.purge.deleted") == 1


# -- retries and reconnects, for real ------------------------------------------------------------


@pytest.mark.usefixtures("backend")
async def test_conflict_retries_are_logged_and_counted(
    observed: Observed, backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite takes the write lock up front (BEGIN IMMEDIATE): no deadlock")
    sid, others = await deadlock_setup(observed.call)
    with caplog.at_level(logging.DEBUG, logger="sessiondb"):
        result = await deadlock(observed.call, backend, db_url, sid, others)
    assert result == 3, repr(result)
    retries = [r for r in caplog.records if "conflict 1 at" in r.getMessage()]
    assert len(retries) == 1 and retries[0].levelno == logging.DEBUG
    assert retries[0].getMessage().startswith("patch_state: ")
    assert (
        observed.count(
            "sessiondb.client.retries",
            **{"sessiondb.retry.reason": "conflict", "db.operation.name": "patch_state"},
        )
        == 1
    )
    patch = [s for s in observed.finished() if s.name.startswith("patch_state")][-1]
    assert [(e.name, dict(e.attributes or {})) for e in patch.events] == [
        ("sessiondb.retry", {"sessiondb.retry.reason": "conflict", "sessiondb.retry.attempt": 1})
    ]
    assert patch.status.status_code is trace.StatusCode.UNSET


@pytest.mark.usefixtures("backend")
async def test_connections_killed_by_the_server_are_logged_and_counted(
    observed: Observed, backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Idle connections the server closed are replaced when leased (INFO, and counted as
    reconnects ``closed_by_server``); a transaction cut before COMMIT is run again (WARNING,
    a retry ``disconnect``)."""
    if backend == "sqlite":
        pytest.skip("SQLite has no server connections to kill")
    admin = Admin(db_url, backend)
    try:
        before = admin.others()
        s = await observed.call("create_session", "app", "u", {"n": 0})
        mine = admin.others() - before
        assert mine
        admin.kill(mine)
        wait_for(lambda: not (admin.others() & mine), "the killed connections to go")
        with caplog.at_level(logging.INFO, logger="sessiondb"):
            assert (await observed.call("get_session", "app", "u", s.id)).state == {"n": 0}
        replaced = [r for r in caplog.records if "closed by the server" in r.getMessage()]
        assert replaced and all(r.levelno == logging.INFO for r in replaced)
        assert (
            observed.count(
                "sessiondb.client.reconnects", **{"sessiondb.reconnect.reason": "closed_by_server"}
            )
            >= 1
        )

        # a transaction whose connection dies while it waits for a lock: run again
        caplog.clear()
        admin.lock_row(s.id)

        def kill_when_waiting() -> None:
            waiting = wait_for(
                lambda: admin.waiting_for_lock(admin.others()), "the call to wait for the lock"
            )
            admin.kill(waiting)
            admin.unlock()

        with caplog.at_level(logging.INFO, logger="sessiondb"):
            killer = asyncio.create_task(asyncio.to_thread(kill_when_waiting))
            # with an event id: on PostgreSQL the append is one statement, and only an
            # idempotent one is run again after a cut (docs/reliability.md)
            event = await observed.call(
                "append_event", s.id, "user", {"text": SECRET}, state_delta={"n": 1},
                event_id="e-kill",
            )  # fmt: skip
            await killer
        assert event.seq == 1
        lost = [r for r in caplog.records if "was lost; running it again" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING
        assert lost[0].getMessage().startswith("append_event: ")
        assert any("dropping the pool" in r.getMessage() for r in caplog.records)
        for r in caplog.records:
            no_secret(r.getMessage())
        assert (
            observed.count("sessiondb.client.retries", **{"sessiondb.retry.reason": "disconnect"})
            == 1
        )
        assert (
            observed.count(
                "sessiondb.client.reconnects", **{"sessiondb.reconnect.reason": "disconnect"}
            )
            == 1
        )
        span = [x for x in observed.finished() if x.name.startswith("append_event")][-1]
        assert [e.name for e in span.events] == ["sessiondb.reconnect", "sessiondb.retry"]
    finally:
        admin.close()


async def test_the_guide_service_keeps_the_callers_span(db_url: str) -> None:
    """DatabaseSessionService's coroutines run the sync store in an executor thread, with the
    caller's context: the operation's span is a child of the caller's."""
    from sessiondb import DatabaseSessionService

    o = Observed()
    service = DatabaseSessionService(db_url=db_url, telemetry=o.telemetry)
    try:
        with o.tracer_provider.get_tracer("app").start_as_current_span("request") as parent:
            await service.create_session(app_name="app", user_id="u")
        child = next(s for s in o.finished() if s.name.startswith("create_session"))
        assert child.parent is not None
        assert child.parent.span_id == parent.get_span_context().span_id
    finally:
        service.close()
        o.shutdown()


def test_plan_steps_are_named_after_their_operation(db_url: str) -> None:
    """Export, import and checksum run as steps (a span per page or batch), each named after
    the store method."""
    o = Observed()
    try:
        with SessionStore(db_url, telemetry=o.telemetry) as s:
            s.create_session("app", "u", {"a": 1})
            records = list(s.export_records())
            s.import_records(records)
            s.checksum()
        ops = {(sp.attributes or {})["db.operation.name"] for sp in o.finished()}
        assert ops == {"create_session", "export_records", "import_records", "checksum"}
    finally:
        o.shutdown()


def test_an_unreachable_replica_falls_back_to_the_primary(
    backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A read URL nobody listens on: the read is served by the primary, a WARNING names the
    replica, and the fallback is counted (reason ``failed``) and an event of the read's span."""
    if backend != "postgresql":
        pytest.skip("read_urls are PostgreSQL hot standbys")
    o = Observed()
    nowhere = "postgresql://postgres@127.0.0.1:9/none"  # the discard port: refused at once
    try:
        s = SessionStore(db_url, read_urls=[nowhere], telemetry=o.telemetry)
        with s, caplog.at_level(logging.INFO, logger="sessiondb"):
            assert list(s.list_sessions("app", "u")) == []
        warned = [r for r in caplog.records if r.getMessage().startswith("replica 127.0.0.1:9")]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        assert (
            o.count(
                "sessiondb.client.replica.fallbacks",
                **{
                    "sessiondb.fallback.reason": "failed",
                    "db.client.connection.pool.name": "127.0.0.1:9/none",
                },
            )
            == 1
        )
        read = next(sp for sp in o.finished() if sp.name.startswith("list_sessions"))
        assert [e.name for e in read.events] == ["sessiondb.replica_fallback"]
        assert read.status.status_code is trace.StatusCode.UNSET
    finally:
        o.shutdown()
