"""Fixtures of the fault tests: private servers they may break, and unreachable addresses.

Every test here is marked ``faults`` (``-m "not faults"`` skips them) and with its backend's
marker (``-m "not mysql"``). The private PostgreSQL and MariaDB instances (``_servers.py``) start
once per test session, both at once in the background when the first test needs one, and are
stopped by pid, their directories deleted, when the session ends, passed or failed (and, should
pytest itself be killed, by the next run: ``reap_orphans``). Missing binaries skip the tests,
except under ``SESSIONDB_REQUIRE_SERVERS=1`` (CI), where they fail.

Fixture API
-----------
``dbms``
    ``"postgresql"`` or ``"mysql"`` (MariaDB): parametrizes the test.
``server``
    The private :class:`~tests.faults._servers.PrivateServer` of ``dbms``, running and thawed
    before and after the test whatever the test did to it.
``db``
    A :class:`Db` on ``server`` (``db.url()``, ``db.name``): a database at sessiondb's schema
    that the tests share, each with sessions of its own (migrating per test would cost 0.5 s
    on PostgreSQL, 1.2 s on MariaDB).
``own_db``
    A :class:`Db` of the test's own, at sessiondb's schema (for counting its connections).
``front``
    ``"sync"`` or ``"async"``: parametrizes the test.
``silent_port``
    A port on 127.0.0.1 that accepts connections and never answers.
``refused_port``
    A port on 127.0.0.1 nobody listens on.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessiondb import SessionStore

from ._servers import (
    MariaDBServer,
    PostgresServer,
    PrivateServer,
    SilentServer,
    UnavailableError,
    free_port,
    reap_orphans,
)

HERE = Path(__file__).parent
REQUIRE_SERVERS = os.environ.get("SESSIONDB_REQUIRE_SERVERS") == "1"
KINDS: dict[str, type[PrivateServer]] = {"postgresql": PostgresServer, "mysql": MariaDBServer}


def _here(item: pytest.Item) -> bool:
    return HERE in Path(item.path).parents


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not _here(item):
            continue
        item.add_marker(pytest.mark.faults)
        params = getattr(item, "callspec", None)
        backend = params.params.get("dbms") if params is not None else None
        if backend:
            item.add_marker(getattr(pytest.mark, backend))


# -- the private servers ---------------------------------------------------------------------------


class Servers:
    """Starts the private servers the selected tests need, in parallel, in the background."""

    def __init__(self, kinds: set[str]) -> None:
        self.reaped = reap_orphans()
        self.results: dict[str, PrivateServer | BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.ready_after: dict[str, float] = {}
        for kind in sorted(kinds):
            thread = threading.Thread(target=self._build, args=(kind,), daemon=True)
            self.threads[kind] = thread
            thread.start()

    def _build(self, kind: str) -> None:
        try:
            server = KINDS[kind]()
        except BaseException as exc:
            with self.lock:
                self.results[kind] = exc
            return
        with self.lock:
            self.results[kind] = server  # registered before it starts, so cleanup finds it
        try:
            server.setup()
            t0 = time.monotonic()
            prepare(server)
            server.timings["schema"] = time.monotonic() - t0
        except BaseException as exc:
            with self.lock:
                self.results[kind] = exc
            server.cleanup()
        self.ready_after[kind] = time.monotonic() - self.t0

    def get(self, kind: str) -> PrivateServer:
        thread = self.threads.get(kind)
        if thread is None:  # not foreseen at collection (e.g. a fixture asked for late)
            thread = self.threads[kind] = threading.Thread(target=self._build, args=(kind,))
            thread.start()
        thread.join(180)
        result = self.results.get(kind)
        if isinstance(result, UnavailableError):
            message = f"private {kind} server unavailable: {result}"
            if REQUIRE_SERVERS:
                pytest.fail(message + " (SESSIONDB_REQUIRE_SERVERS=1)")
            pytest.skip(message)
        if isinstance(result, BaseException):
            pytest.fail(f"private {kind} server failed to start: {result!r}")
        if result is None:
            pytest.fail(f"private {kind} server did not start in 180 s")
        return result

    def cleanup(self) -> None:
        for thread in self.threads.values():
            thread.join(180)
        with self.lock:
            servers = [s for s in self.results.values() if isinstance(s, PrivateServer)]
            self.results.clear()
        for server in servers:
            server.cleanup()

    def summary(self) -> str:
        parts = []
        for kind, result in sorted(self.results.items()):
            if isinstance(result, PrivateServer):
                t = result.timings
                parts.append(
                    f"{kind} on 127.0.0.1:{result.port}: init {t.get('init', 0):.1f} s, "
                    f"first start {t.get('first start', 0):.1f} s, "
                    f"schema {t.get('schema', 0):.1f} s, "
                    f"ready {self.ready_after.get(kind, 0):.1f} s after the first request"
                )
        return "; ".join(parts)


def _kinds_needed(items: list[pytest.Item]) -> set[str]:
    """The servers the selected tests need: those of every test with a server backend, but
    the tests that only point stores at unreachable ports (some tests ask for the server with
    ``request.getfixturevalue``, so the fixture names alone do not tell)."""
    kinds = set()
    for item in items:
        spec = getattr(item, "callspec", None)
        dbms = spec.params.get("dbms") if spec is not None else None
        unreachable = {"silent_port", "refused_port"} & set(getattr(item, "fixturenames", ()))
        if _here(item) and dbms in KINDS and not unreachable:
            kinds.add(dbms)
    return kinds


_SERVERS: list[Servers] = []
_SUMMARIES: list[str] = []


def _cleanup_all() -> None:
    while _SERVERS:
        servers = _SERVERS.pop()
        text = servers.summary()
        try:
            servers.cleanup()
        finally:
            if text:
                _SUMMARIES.append(text)


def _on_sigterm(signum: int, frame: Any) -> None:
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@pytest.fixture(scope="session")
def _private_servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    servers = Servers(_kinds_needed(request.session.items))
    _SERVERS.append(servers)
    atexit.register(_cleanup_all)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield servers
    finally:
        _cleanup_all()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in _SUMMARIES:
        terminalreporter.write_line(f"fault tests, private servers: {text}")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "mysql"])
def dbms(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(dbms: str, _private_servers: Servers) -> Iterator[PrivateServer]:
    srv = _private_servers.get(dbms)
    srv.ensure_running()
    yield srv
    srv.ensure_running()


_COUNTER = itertools.count(1)
SHARED = "faults_shared"  # one migrated database the tests share (each uses its own sessions)
TEMPLATE = "faults_template"  # PostgreSQL: a migrated template nobody connects to


def migrate(server: PrivateServer, name: str) -> None:
    store = SessionStore(server.url(name), connect_timeout=5)
    try:
        store.migrate()
    finally:
        store.close()


def prepare(server: PrivateServer) -> None:
    """Create the shared database (PostgreSQL: and the template), at sessiondb's head schema.

    Migrating takes about 0.5 s on PostgreSQL and 1.2 s on MariaDB: done once, not per test.
    """
    if server.backend == "postgresql":
        server.create_database(TEMPLATE)
        migrate(server, TEMPLATE)
        server.admin(f'CREATE DATABASE "{SHARED}" TEMPLATE "{TEMPLATE}"')
    else:
        server.create_database(SHARED)
        migrate(server, SHARED)


def fresh_database(server: PrivateServer) -> str:
    """A new database of the test's own, at sessiondb's head schema; returns its name."""
    name = f"fault_{os.getpid()}_{next(_COUNTER)}"
    if server.backend == "postgresql":
        server.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    else:
        server.create_database(name)
        migrate(server, name)
    return name


@dataclass
class Db:
    """A database on a private server: the shared one, or one of the test's own."""

    server: PrivateServer
    name: str

    @property
    def backend(self) -> str:
        return self.server.backend

    def url(self, *, password: str | None = None, port: int | None = None) -> str:
        return self.server.url(self.name, password=password, port=port)


@pytest.fixture
def db(server: PrivateServer) -> Db:
    """The shared database: tests keep to sessions of their own."""
    return Db(server, SHARED)


@pytest.fixture
def own_db(server: PrivateServer) -> Db:
    """A database of the test's own (to count its connections, say)."""
    return Db(server, fresh_database(server))


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = SilentServer()
    yield listener.port
    listener.close()


@pytest.fixture
def refused_port() -> int:
    return free_port()
