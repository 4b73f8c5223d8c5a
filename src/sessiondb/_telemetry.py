"""What sessiondb tells operators: logs, OpenTelemetry spans and metrics (docs/observability.md).

Logging is the standard library's: the logger ``sessiondb`` (reconnects, retries, failovers,
pool drops, replica fallbacks) and its child ``sessiondb.sql`` (each statement at DEBUG, its
parameters redacted unless the store was opened with ``log_parameters=True``). A state or an
event body is never logged otherwise, at any level.

OpenTelemetry (the ``[otel]`` extra: ``opentelemetry-api``) is on when a store is opened with
``telemetry=True`` or ``telemetry=Telemetry(...)``, or, by default (``telemetry=None``), when
the application has set an OpenTelemetry tracer or meter provider before opening the store.
Then every store operation is one CLIENT span following the database semantic conventions
(``db.system.name``, ``db.operation.name``, ``db.namespace``, ``server.address``,
``server.port``, ``error.type``; never a statement's parameters, a state or an event), and
metrics are recorded. When it is off nothing here runs on the hot path: the backend's ``call``
is wrapped only for a store with telemetry, and statements are logged only while
``sessiondb.sql`` is enabled for DEBUG (checked once per operation).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from .errors import DriverNotInstalledError

if TYPE_CHECKING:
    from ._runner import Runner
    from ._urls import Target

__all__ = [
    "StoreTelemetry",
    "Telemetry",
    "log",
    "log_statement",
    "op_name",
    "sql_log",
    "telemetry_for",
]

#: reconnects, retries, failovers, pool drops, replica fallbacks
log = logging.getLogger("sessiondb")
#: every statement, at DEBUG (parameters redacted unless ``log_parameters=True``)
sql_log = logging.getLogger("sessiondb.sql")

#: the histogram's bucket boundaries (seconds), as the semantic conventions advise
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
#: a logged parameter value (with ``log_parameters=True``) is cut after this many characters
SHOWN_CHARS = 500

# -- statement logs ------------------------------------------------------------------------------


def _redacted(bound: Any) -> str:
    """The parameters' types only, never their values: ``[redacted: str, str, int]``."""
    values = bound.values() if isinstance(bound, dict) else bound
    return "[redacted: " + ", ".join(type(v).__name__ for v in values) + "]"


def _shown(bound: Any) -> str:
    """The parameters' values (``log_parameters=True``), long strings cut."""

    def one(v: Any) -> str:
        text = repr(v)
        if len(text) > SHOWN_CHARS:
            return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"
        return text

    if isinstance(bound, dict):
        return "{" + ", ".join(f"{k!r}: {one(v)}" for k, v in bound.items()) + "}"
    return "(" + ", ".join(one(v) for v in bound) + ")"


def log_statement(op: str, sql: str, bound: Any = (), *, show: bool = False, many: int = 0) -> None:
    """Log one statement at DEBUG on ``sessiondb.sql`` (the caller checked that it is enabled)."""
    if many:
        sql_log.debug("%s: %s; %d parameter sets %s", op, sql, many,
                      _shown(bound[0]) if show else _redacted(bound[0]))  # fmt: skip
    elif bound:
        sql_log.debug("%s: %s; parameters %s", op, sql, _shown(bound) if show else _redacted(bound))
    else:
        sql_log.debug("%s: %s", op, sql)


# -- operation names -----------------------------------------------------------------------------

#: plan steps (export, import, checksum) are closures and private methods: their operation
_STEPS = {
    "ExportPlan._page": "export_records",
    "ExportPlan._scopes": "export_records",
    "ExportPlan._threads": "export_records",
    "ImportPlan._step.<locals>.run": "import_records",
    "ChecksumPlan._digesting.<locals>.run": "checksum",
    "backup": "backup",
    "read_revision": "read_revision",
}
#: the read router's wrappers: the operation is their first argument
_WRAPPERS = frozenset({"Router.write", "Router.on_replica"})
_NAMES: dict[str, str] = {}


def op_name(fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> str:
    """The store operation ``fn`` runs (``get_session``...), as ``db.operation.name``."""
    while isinstance(fn, partial):
        args = fn.args + args
        fn = fn.func
    qualname = getattr(fn, "__qualname__", "") or type(fn).__qualname__
    if qualname in _WRAPPERS:
        inner = args[1:] if qualname == "Router.on_replica" else args
        return op_name(inner[0], inner[1:]) if inner else "operation"
    name = _NAMES.get(qualname)
    if name is None:
        name = _STEPS.get(qualname)
        if name is None:
            name = qualname.rsplit(".", 1)[-1].lstrip("_") or "operation"
            if qualname.startswith("Checkpoints."):  # LangGraph's checkpointer
                name = f"checkpoint_{name}"
        _NAMES[qualname] = name
    return name


# -- the option ----------------------------------------------------------------------------------


class Telemetry:
    """OpenTelemetry for a store, with providers of your own: ``telemetry=Telemetry(...)``.

    Args:
        tracer_provider: where the spans go (None: OpenTelemetry's global provider).
        meter_provider: where the metrics go (None: OpenTelemetry's global provider).
    """

    __slots__ = ("meter_provider", "tracer_provider")

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    def __repr__(self) -> str:
        return (
            f"Telemetry(tracer_provider={self.tracer_provider!r}, "
            f"meter_provider={self.meter_provider!r})"
        )


def _configured() -> bool:
    """Whether the application set an OpenTelemetry tracer or meter provider (the API's
    modules are imported by then: nothing is imported here)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return True
    metrics = sys.modules.get("opentelemetry.metrics")
    if metrics is not None:
        name = type(metrics.get_meter_provider()).__name__
        if name not in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            return True
    return False


def telemetry_for(option: Any, target: Target) -> StoreTelemetry | None:
    """A store's telemetry from its ``telemetry`` option, or None (off)."""
    from .errors import ConfigurationError

    if option is False:
        return None
    if option is None:
        if not _configured():
            return None
        option = Telemetry()
    elif option is True:
        option = Telemetry()
    elif not isinstance(option, Telemetry):
        raise ConfigurationError(
            f"telemetry must be True, False, None or a sessiondb.Telemetry, not {option!r}"
        )
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise DriverNotInstalledError(
            "telemetry needs OpenTelemetry's API: pip install 'sessiondb[otel]' (and "
            "opentelemetry-sdk with an exporter to send the data somewhere)"
        ) from exc
    return StoreTelemetry(option, target)


# -- attributes ----------------------------------------------------------------------------------


def _base_attributes(target: Target) -> dict[str, Any]:
    """The attributes of every span and measurement of one store (its primary)."""
    url = target.sync_url
    system = target.backend
    if system == "mysql" and "mariadb" in url.drivername:
        system = "mariadb"
    attrs: dict[str, Any] = {"db.system.name": system}
    if url.database:
        attrs["db.namespace"] = url.database
    if target.backend != "sqlite":
        host = url.host
        if isinstance(host, (list, tuple)):  # a multi-host URL: the first one
            host = host[0] if host else None
        hosts = url.query.get("host")  # psycopg's multi-host form (?host=a:1&host=b:2)
        if not host and hosts:
            first = hosts[0] if isinstance(hosts, tuple) else hosts
            host, _, port = first.partition(":")
            if port.isdigit():
                attrs["server.port"] = int(port)
        if host:
            attrs["server.address"] = host
        if url.port:
            attrs["server.port"] = int(url.port)
        elif "server.port" not in attrs and host:
            attrs["server.port"] = 5432 if target.backend == "postgresql" else 3306
    return attrs


def _old_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes of the conventions before the stable ones (``database/dup``)."""
    old = {"db.system": attrs["db.system.name"]}
    for new, before in (
        ("db.namespace", "db.name"),
        ("db.operation.name", "db.operation"),
        ("server.address", "net.peer.name"),
        ("server.port", "net.peer.port"),
    ):
        if new in attrs:
            old[before] = attrs[new]
    return old


def _pool_name(target: Target) -> str:
    """``server.address:server.port/db.namespace`` (the semantic conventions' form)."""
    attrs = _base_attributes(target)
    namespace = attrs.get("db.namespace", "")
    if "server.address" not in attrs:  # SQLite: the file
        return str(namespace)
    return f"{attrs['server.address']}:{attrs.get('server.port', '')}/{namespace}"


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


# -- instruments, one set per meter provider -----------------------------------------------------


class _Instruments:
    """The instruments of one meter provider, and the stores they observe."""

    def __init__(self, meter_provider: Any) -> None:
        from opentelemetry import metrics

        from . import __version__

        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("sessiondb", __version__)
        self.stores: weakref.WeakSet[StoreTelemetry] = weakref.WeakSet()
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )  # fmt: skip
        self.errors = meter.create_counter(
            "sessiondb.client.operation.errors", unit="{error}",
            description="Store operations that raised, by error.type (the exception's class).",
        )  # fmt: skip
        self.retries = meter.create_counter(
            "sessiondb.client.retries", unit="{retry}",
            description="Operations run again: sessiondb.retry.reason is conflict, "
            "disconnect or read_only.",
        )  # fmt: skip
        self.reconnects = meter.create_counter(
            "sessiondb.client.reconnects", unit="{connection}",
            description="Connections dropped and replaced: sessiondb.reconnect.reason is "
            "closed_by_server, ping, disconnect or read_only.",
        )  # fmt: skip
        self.fallbacks = meter.create_counter(
            "sessiondb.client.replica.fallbacks", unit="{read}",
            description="Reads a replica did not serve: sessiondb.fallback.reason is behind "
            "or failed.",
        )  # fmt: skip
        self.purged = meter.create_counter(
            "sessiondb.purge.deleted", unit="{session}",
            description="Expired sessions and LangGraph threads deleted by purge_expired.",
        )  # fmt: skip
        meter.create_observable_up_down_counter(
            "db.client.connection.count", [self._connections], unit="{connection}",
            description="Connections of the pool, by db.client.connection.state (idle, used).",
        )  # fmt: skip
        meter.create_observable_up_down_counter(
            "db.client.connection.max", [self._maximum], unit="{connection}",
            description="The most connections the pool may open.",
        )  # fmt: skip
        meter.create_observable_gauge(
            "sessiondb.purge.backlog", [self._backlog], unit="{session}",
            description="Expired sessions and threads awaiting purge_expired, as last counted "
            "(purge_expired(dry_run=True), or 0 after a purge).",
        )  # fmt: skip

    def _runners(self) -> dict[str, list[Runner]]:
        pools: dict[str, list[Runner]] = {}
        for store in list(self.stores):
            for runner in list(store.runners):
                pools.setdefault(store.pool_names[runner.target.safe_url], []).append(runner)
        return pools

    def _connections(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        found = []
        for name, runners in self._runners().items():
            idle = used = 0
            for runner in runners:
                pool: Any = runner.engine.pool
                kept = len(runner._idle) + len(runner._idle_now)  # idle in ours
                checkedin = pool.checkedin() if hasattr(pool, "checkedin") else 0
                checkedout = pool.checkedout() if hasattr(pool, "checkedout") else 0
                idle += checkedin + kept
                used += max(checkedout - kept, 0)
            attrs = {"db.client.connection.pool.name": name}
            found.append(Observation(idle, {**attrs, "db.client.connection.state": "idle"}))
            found.append(Observation(used, {**attrs, "db.client.connection.state": "used"}))
        return found

    def _maximum(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        found = []
        for name, runners in self._runners().items():
            most = 0
            for runner in runners:
                pool: Any = runner.engine.pool
                size = pool.size() if hasattr(pool, "size") else 0
                most += size + max(int(getattr(pool, "_max_overflow", 0)), 0)
            found.append(Observation(most, {"db.client.connection.pool.name": name}))
        return found

    def _backlog(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [
            Observation(store.backlog, store.attrs)
            for store in list(self.stores)
            if store.backlog is not None
        ]


_INSTRUMENTS: dict[int, tuple[Any, _Instruments]] = {}


def _instruments(meter_provider: Any) -> _Instruments:
    """One set of instruments per meter provider (an observable instrument made twice keeps
    only its first callbacks), made on first use."""
    key = id(meter_provider)
    entry = _INSTRUMENTS.get(key)
    if entry is None or entry[0] is not meter_provider:
        entry = (meter_provider, _Instruments(meter_provider))
        _INSTRUMENTS[key] = entry
    return entry[1]


# -- one store's telemetry -----------------------------------------------------------------------


class StoreTelemetry:
    """A store's tracer and instruments, and the spans and measurements of its operations."""

    def __init__(self, option: Telemetry, target: Target) -> None:
        from opentelemetry import trace

        from . import __version__

        self._trace = trace
        provider = option.tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("sessiondb", __version__)
        self.attrs = _base_attributes(target)
        self.dup = "database/dup" in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
        self.instruments = _instruments(option.meter_provider)
        self.instruments.stores.add(self)
        self.runners: weakref.WeakSet[Runner] = weakref.WeakSet()
        self.pool_names: dict[str, str] = {target.safe_url: _pool_name(target)}
        #: expired sessions awaiting a purge, as last counted (None: never counted)
        self.backlog: int | None = None
        self._ops: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        self._kind = trace.SpanKind.CLIENT
        self._error = trace.StatusCode.ERROR

    def watch(self, runner: Runner) -> None:
        """Observe ``runner``'s pool, and let it report its retries and reconnects."""
        runner.telemetry = self
        self.runners.add(runner)
        if runner.target.safe_url not in self.pool_names:
            self.pool_names[runner.target.safe_url] = _pool_name(runner.target)

    def bind(self, dialect: Any) -> None:
        """The first connection told MySQL from MariaDB: name the right one from now on."""
        if getattr(dialect, "is_mariadb", False) and self.attrs["db.system.name"] == "mysql":
            self.attrs = {**self.attrs, "db.system.name": "mariadb"}
            self._ops = {}

    def _op(self, op: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """An operation's span name, span attributes and metric attributes (made once)."""
        known = self._ops.get(op)
        if known is None:
            metric = {**self.attrs, "db.operation.name": op}
            span = {**metric, **_old_attributes(metric)} if self.dup else metric
            namespace = self.attrs.get("db.namespace")
            name = f"{op} {namespace}" if namespace else op
            known = self._ops[op] = (name, span, metric)
        return known

    # -- the wrappers of Backend.call and AsyncBackend.call ----------------------------------------

    def traced(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call`` (a sync backend's) with a span and measurements per operation."""

        def traced_call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            op = op_name(fn, args)
            name, span_attrs, metric = self._op(op)
            span = self.tracer.start_span(name, kind=self._kind, attributes=span_attrs)
            start = time.perf_counter()
            with self._trace.use_span(
                span, end_on_exit=True, record_exception=False, set_status_on_exception=False
            ):
                try:
                    result = call(fn, *args, **kwargs)
                except BaseException as exc:
                    self._failed(span, metric, start, exc)
                    raise
                self._done(op, metric, start, result, kwargs)
            return result

        return traced_call

    def traced_async(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """``call`` (an async backend's) with a span and measurements per operation."""

        async def traced_call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            op = op_name(fn, args)
            name, span_attrs, metric = self._op(op)
            span = self.tracer.start_span(name, kind=self._kind, attributes=span_attrs)
            start = time.perf_counter()
            with self._trace.use_span(
                span, end_on_exit=True, record_exception=False, set_status_on_exception=False
            ):
                try:
                    result = await call(fn, *args, **kwargs)
                except BaseException as exc:
                    self._failed(span, metric, start, exc)
                    raise
                self._done(op, metric, start, result, kwargs)
            return result

        return traced_call

    def _done(
        self, op: str, metric: dict[str, Any], start: float, result: Any, kwargs: dict[str, Any]
    ) -> None:
        self.instruments.duration.record(time.perf_counter() - start, metric)
        if op == "purge_expired" and isinstance(result, int):
            if kwargs.get("dry_run"):
                self.backlog = result
            else:
                self.backlog = 0
                if result:
                    self.instruments.purged.add(result, self.attrs)

    def _failed(self, span: Any, metric: dict[str, Any], start: float, exc: BaseException) -> None:
        """An operation raised: ``error.type`` on the span and the measurements. The exception's
        message is not recorded (it may quote data); the caller gets the exception itself."""
        error = _error_type(exc)
        span.set_attribute("error.type", error)
        span.set_status(self._error, error)
        failed = {**metric, "error.type": error}
        self.instruments.duration.record(time.perf_counter() - start, failed)
        self.instruments.errors.add(1, failed)

    # -- what the runner and the router report -----------------------------------------------------

    def _event(self, name: str, attrs: dict[str, Any]) -> None:
        span = self._trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attrs)

    def retry(self, op: str, reason: str, attempt: int) -> None:
        """An operation is run again (``reason``: conflict, disconnect, read_only)."""
        self.instruments.retries.add(
            1, {**self.attrs, "db.operation.name": op, "sessiondb.retry.reason": reason}
        )
        self._event("sessiondb.retry", {"sessiondb.retry.reason": reason,
                                        "sessiondb.retry.attempt": attempt})  # fmt: skip

    def reconnect(self, target: Target, reason: str) -> None:
        """A connection was dropped, to be replaced (``reason``: closed_by_server, ping,
        disconnect, read_only)."""
        pool = self.pool_names.get(target.safe_url) or _pool_name(target)
        self.instruments.reconnects.add(
            1, {**self.attrs, "db.client.connection.pool.name": pool,
                "sessiondb.reconnect.reason": reason},
        )  # fmt: skip
        self._event("sessiondb.reconnect", {"sessiondb.reconnect.reason": reason})

    def fallback(self, target: Target, reason: str) -> None:
        """A read left a replica for another one or the primary (``reason``: behind, failed)."""
        pool = self.pool_names.get(target.safe_url) or _pool_name(target)
        self.instruments.fallbacks.add(
            1, {**self.attrs, "db.client.connection.pool.name": pool,
                "sessiondb.fallback.reason": reason},
        )  # fmt: skip
        self._event("sessiondb.replica_fallback", {"sessiondb.fallback.reason": reason,
                                                   "server.address": target.location})  # fmt: skip
