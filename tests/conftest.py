"""Fixtures: one contract suite x every backend x both front ends, on private databases.

Backends come from ``SESSIONDB_TEST_BACKENDS`` (default ``sqlite,postgresql,mysql``); ``-m "not
mysql"`` drops one. A server that cannot be reached skips its tests, unless
``SESSIONDB_REQUIRE_SERVERS=1`` (set by ``.ci/run``): then the tests fail.

Private databases
-----------------
``SESSIONDB_TEST_POSTGRESQL_URL`` and ``SESSIONDB_TEST_MYSQL_URL`` (defaults
``postgresql://postgres@127.0.0.1:5432/test`` and ``mysql://root@127.0.0.1:3306/test``) only say
how to reach each server and as whom: nothing is ever written into the database they name (on
PostgreSQL the tests connect to it, else to ``postgres``, to run ``CREATE DATABASE``). Every
pytest process (every pytest-xdist worker) creates its own databases, named
``sdbt_<run>_<worker>`` and ``sdbt_<run>_<worker>_<n>`` (``<run>`` is random per run,
``<worker>`` is ``gw0``, ``gw1``... or ``main``), when a test first needs one, and drops them
when the test session ends, passed or failed. It never drops a database
it did not create. Test runs sharing a server therefore never see each other's rows.

Fixture API
-----------
``backend``
    ``"sqlite"``, ``"postgresql"`` or ``"mysql"``; parametrizes the test (ids ``[sqlite]``...)
    and marks it with the backend's marker. Skips (or fails) when the server is unreachable.
``db_url``
    URL of an empty sessiondb database on ``backend``, private to the test: the unprefixed
    sessiondb schema is there, at head, exactly as a first use made it, and holds no row; there
    is no other table. SQLite: ``tmp_path / "sessions.db"``, a copy of a file made once per run.
    Servers: this process's private database, emptied before each test (other tables dropped,
    rows deleted; the schema made again if a test changed it). A test that needs a database
    with no table at all (first use, migrations, cold starts) uses ``make_db_url()``.
``make_db_url``
    Factory: ``make_db_url(backend: str | None = None) -> str`` returns the URL of another new
    database with no table at all (default: the test's own backend; SQLite: a new file in
    ``tmp_path``), e.g. the target of a copy or an ADK source. Each call makes a new one; all
    are dropped when the test ends (and, whatever happens, when the session ends). Asking for a
    server backend skips (or fails) the test when that server is unreachable.
``store``
    The store under test on ``db_url``, through the sync or the async front end (parametrized:
    ids ``[...-sync]`` / ``[...-async]``); every method is awaitable either way.
``async_store``
    An ``AsyncSessionStore`` on ``db_url`` (for code that accepts only the async store).
``sync_store``
    A ``SessionStore`` on ``db_url`` (e.g. one store for every example of a Hypothesis test).
``make_store``
    Factory: ``make_store(**options) -> SessionStore`` opens another sync store on ``db_url``;
    all are closed after the test.
``process_pool``
    Module-scoped factory: ``process_pool(n) -> tests._procs.ProcessPool``, n spawned processes
    started once per test module; ``pool.run(fn, argsets)`` runs ``fn`` in them, all at once.
    Their exit codes must all be 0 when the module ends.

Test modules import nothing from this file: they use the fixtures.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, SessionStore

from ._procs import ProcessPool

SERVER_URLS = {
    "postgresql": os.environ.get(
        "SESSIONDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("SESSIONDB_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
BACKENDS = [
    b.strip()
    for b in os.environ.get("SESSIONDB_TEST_BACKENDS", "sqlite,postgresql,mysql").split(",")
    if b.strip()
]
REQUIRE_SERVERS = os.environ.get("SESSIONDB_REQUIRE_SERVERS") == "1"
CONNECT_TIMEOUT = 5


# -- the servers and this process's databases on them --------------------------------------------


def _sync_url(url: str) -> sa.URL:
    """``url`` with sessiondb's sync driver (psycopg, PyMySQL) spelled out."""
    from sessiondb._urls import resolve_url

    return resolve_url(url).sync_url


class Server:
    """One database server: an admin connection, and the databases this process made there."""

    def __init__(self, backend: str, url: str, run: str) -> None:
        self.backend = backend
        self.url = sa.make_url(url)
        self.prefix = f"sdbt_{run}"
        self.counter = itertools.count(2)
        self.created: list[str] = []  # by this process, so dropped by it
        self.problem: str | None = None
        self._admin: sa.Engine | None = None
        self._private: tuple[str, sa.Engine, Any] | None = None  # name, engine, fingerprint

    # connections

    def _engine(self, database: str | None, **kw: Any) -> sa.Engine:
        base = _sync_url(self.url.render_as_string(hide_password=False))
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
        if self.backend == "postgresql":
            # no named prepared statements: the URL may lead through PgBouncer
            args["prepare_threshold"] = None
        return sa.create_engine(base.set(database=database), connect_args=args, **kw)

    def admin(self) -> sa.Engine:
        """An autocommit engine for CREATE/DROP DATABASE; raises when the server is down."""
        if self._admin is None:
            # PostgreSQL needs some database to connect to: the URL's, else "postgres"
            names = [self.url.database, "postgres"] if self.backend == "postgresql" else [None]
            error: Exception | None = None
            for name in dict.fromkeys(names):
                engine = self._engine(name, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT 1"))
                except Exception as exc:
                    error = error or exc
                    engine.dispose()
                    continue
                self._admin = engine
                break
            if self._admin is None:
                assert error is not None
                raise error
        return self._admin

    def check(self) -> None:
        """Skip (or, with SESSIONDB_REQUIRE_SERVERS=1, fail) when the server is unreachable."""
        if self._admin is None and self.problem is None:
            try:
                self.admin()
            except Exception as exc:
                self.problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if self.problem:
            message = (
                f"{self.backend} server unreachable at "
                f"{self.url.render_as_string(hide_password=True)}: {self.problem}"
            )
            if REQUIRE_SERVERS:
                pytest.fail(message)
            pytest.skip(message)

    def url_of(self, name: str) -> str:
        """The URL of database ``name``, in the form the tests were given (scheme, options)."""
        return self.url.set(database=name).render_as_string(hide_password=False)

    # databases

    def create(self, name: str | None = None) -> str:
        """Create a new, empty database; return its name."""
        name = name or f"{self.prefix}_{next(self.counter)}"
        with self.admin().connect() as conn:
            if self.backend == "postgresql":
                # template0: nobody is ever connected to it, so concurrent creates never clash
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
            else:
                conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop a database this process created, ending connections left open to it."""
        assert name in self.created, f"{name} was not created by this test run"
        if self._private is not None and self._private[0] == name:
            self._private[1].dispose()
            self._private = None
        with self.admin().connect() as conn:
            if self.backend == "postgresql":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            else:
                ids = conn.execute(
                    sa.text(
                        "SELECT id FROM information_schema.processlist"
                        " WHERE db = :n AND id <> CONNECTION_ID()"
                    ),
                    {"n": name},
                ).scalars()
                for pid in list(ids):
                    with contextlib.suppress(sa.exc.DBAPIError):  # it may be gone already
                        conn.execute(sa.text(f"KILL {int(pid)}"))
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        self.created.remove(name)

    def drop_all(self) -> list[str]:
        """Drop every database this process created; return what could not be dropped."""
        failed = []
        for name in list(self.created):
            try:
                self.drop(name)
            except Exception as exc:
                failed.append(f"{self.backend} {name}: {type(exc).__name__}: {exc}")
                self.created.remove(name)
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None
        return failed

    # the private database behind db_url

    def private_url(self) -> str:
        """This process's private database, emptied: the unprefixed schema at head, no rows."""
        if self._private is None:
            name = self.create(self.prefix)
            url = self.url_of(name)
            with SessionStore(url) as store:  # the schema, made once by sessiondb itself
                store.count_sessions()
            engine = self._engine(name, pool_size=1, max_overflow=0)
            sa.event.listen(engine, "connect", _lock_timeout)
            self._private = (name, engine, _fingerprint(engine))
        name, engine, fingerprint = self._private
        if not _empty(engine, fingerprint):  # a test changed the schema: make it again
            with SessionStore(self.url_of(name)) as store:
                store.count_sessions()
            assert _fingerprint(engine) == fingerprint
        return self.url_of(name)


def _lock_timeout(dbapi_connection: Any, _record: Any) -> None:
    """Emptying waits at most a minute for a lock a test left behind, then fails."""
    cursor = dbapi_connection.cursor()
    try:
        if "psycopg" in type(dbapi_connection).__module__:
            cursor.execute("SET lock_timeout = '60s'")
        else:
            cursor.execute("SET SESSION lock_wait_timeout = 60, innodb_lock_wait_timeout = 60")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _sessiondb_tables(prefix: str = "") -> Any:
    from sessiondb._schema import tables

    return tables(prefix)


def _own_table_names() -> set[str]:
    from sessiondb._schema import version_table_name

    return {t.name for t in _sessiondb_tables().metadata.sorted_tables} | {version_table_name("")}


FINGERPRINT_SQL = {
    "postgresql": """
        SELECT 'column', table_name::text, concat_ws(' ', column_name, data_type,
               character_maximum_length, datetime_precision, is_nullable, column_default,
               collation_name)
          FROM information_schema.columns WHERE table_schema = current_schema()
        UNION ALL
        SELECT 'index', tablename::text, indexdef
          FROM pg_indexes WHERE schemaname = current_schema()
        UNION ALL
        SELECT 'constraint', conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
    """,
    "mysql": """
        SELECT 'column', table_name, concat_ws(' ', column_name, column_type, is_nullable,
               column_default, collation_name)
          FROM information_schema.columns WHERE table_schema = DATABASE()
        UNION ALL
        SELECT 'index', table_name, concat_ws(' ', index_name, seq_in_index, column_name,
               non_unique, sub_part)
          FROM information_schema.statistics WHERE table_schema = DATABASE()
        UNION ALL
        SELECT 'constraint', table_name, concat_ws(' ', constraint_name, delete_rule,
               update_rule, referenced_table_name)
          FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE()
    """,
}


def _fingerprint(engine: sa.Engine) -> Any:
    """Every column, index and constraint of the database, and sessiondb's revision."""
    from sessiondb._schema import version_table_name

    dialect = "postgresql" if engine.dialect.name == "postgresql" else "mysql"
    with engine.connect() as conn:
        shape = sorted(
            tuple(map(str, row)) for row in conn.execute(sa.text(FINGERPRINT_SQL[dialect]))
        )
        try:
            revision = conn.execute(sa.text(f"SELECT version_num FROM {version_table_name('')}"))
            revisions = sorted(str(r[0]) for r in revision)
        except sa.exc.DBAPIError:
            revisions = []
    return shape, revisions


def _drop_tables(conn: sa.Connection, names: set[str]) -> None:
    if not names:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("DROP TABLE IF EXISTS {} CASCADE".format(", ".join(f'"{n}"' for n in names)))
        )
    else:
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        try:
            conn.execute(
                sa.text("DROP TABLE IF EXISTS {}".format(", ".join(f"`{n}`" for n in names)))
            )
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))


def _empty(engine: sa.Engine, fingerprint: Any) -> bool:
    """Drop every table but sessiondb's unprefixed ones and delete their rows.

    Returns False (having dropped them too) when they are no longer exactly ``fingerprint``.
    """
    own = _own_table_names()
    with engine.begin() as conn:
        names = set(sa.inspect(conn).get_table_names())
        _drop_tables(conn, names - own)
    if _fingerprint(engine) != fingerprint:
        with engine.begin() as conn:
            _drop_tables(conn, own)
        return False
    with engine.begin() as conn:
        for table in reversed(_sessiondb_tables().metadata.sorted_tables):
            conn.execute(table.delete())
    return True


def _run_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "sessiondb_run" in workerinput:
        return str(workerinput["sessiondb_run"])
    if not hasattr(config, "_sessiondb_run"):
        config._sessiondb_run = secrets.token_hex(3)  # type: ignore[attr-defined]
    return str(config._sessiondb_run)  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker of one run shares the run's id (its databases say gw0...)."""
    node.workerinput["sessiondb_run"] = _run_id(node.config)


_SERVERS: dict[str, Server] = {}


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run = f"{_run_id(config)}_{worker}"
    for backend, url in SERVER_URLS.items():
        _SERVERS[backend] = Server(backend, url, run)
    atexit.register(_drop_databases)  # in case the session never finishes normally


def _drop_databases() -> list[str]:
    failed = []
    for server in _SERVERS.values():
        failed += server.drop_all()
    return failed


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop this process's databases after every fixture is torn down, passed or failed."""
    failed = _drop_databases()
    if failed:
        print("\nsessiondb tests: could not drop " + "; ".join(failed), file=sys.stderr)


# -- fixtures -------------------------------------------------------------------------------------


def backend_params() -> list[Any]:
    return [pytest.param(b, marks=getattr(pytest.mark, b), id=b) for b in BACKENDS]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name: sqlite, postgresql or mysql."""
    name: str = request.param
    if name != "sqlite":
        _SERVERS[name].check()
    return name


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the unprefixed schema at head and no rows, made once by sessiondb."""
    path = tmp_path_factory.mktemp("template") / "sessions.db"
    with SessionStore(f"sqlite:///{path}") as store:
        store.count_sessions()
    assert not Path(f"{path}-wal").exists()  # closed: everything is in the main file
    return path


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty sessiondb database on ``backend``, private to this test."""
    if backend == "sqlite":
        path = tmp_path / "sessions.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    return _SERVERS[backend].private_url()


@pytest.fixture
def make_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``make_db_url(backend=None)``: the URL of another new database with no table at all."""
    made: list[tuple[Server, str]] = []
    count = itertools.count(1)

    def make(backend: str | None = None) -> str:
        if backend is None:
            if "backend" not in request.fixturenames:
                raise TypeError("make_db_url() needs a backend in a test without `backend`")
            backend = str(request.getfixturevalue("backend"))
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'extra{next(count)}.db'}"
        if backend not in _SERVERS:
            raise ValueError(f"unknown backend {backend!r}")
        server = _SERVERS[backend]
        server.check()
        name = server.create()
        made.append((server, name))
        return server.url_of(name)

    yield make
    for server, name in made:
        server.drop(name)


class SyncAsAsync:
    """A SessionStore whose methods can be awaited, so each contract test is written once."""

    def __init__(self, store: SessionStore) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if not callable(attr):
            return attr
        if inspect.isgeneratorfunction(attr):

            async def agen(*args: Any, **kwargs: Any) -> Any:
                for item in attr(*args, **kwargs):
                    yield item

            return agen

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
async def store(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Any]:
    """The store under test, through the sync or the async front end; every method awaitable."""
    if request.param == "sync":
        sync = SessionStore(db_url)
        yield SyncAsAsync(sync)
        sync.close()
    else:
        async with AsyncSessionStore(db_url) as astore:
            yield astore


@pytest.fixture
async def async_store(db_url: str) -> AsyncIterator[AsyncSessionStore]:
    """An AsyncSessionStore on the test database."""
    async with AsyncSessionStore(db_url) as astore:
        yield astore


@pytest.fixture
def sync_store(db_url: str) -> Iterator[SessionStore]:
    """A SessionStore on the test database."""
    with SessionStore(db_url) as sstore:
        yield sstore


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., SessionStore]]:
    """Open extra sync stores on the test database; all are closed afterwards."""
    opened: list[SessionStore] = []

    def make(**options: Any) -> SessionStore:
        s = SessionStore(db_url, **options)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture(scope="module")
def process_pool() -> Iterator[Callable[[int], ProcessPool]]:
    """``process_pool(n)``: n spawned processes, started once for the test module."""
    pools: dict[int, ProcessPool] = {}
    exits: list[tuple[int, list[int | None]]] = []

    def get(size: int) -> ProcessPool:
        pool = pools.get(size)
        if pool is not None and pool.broken:  # a failed run: its test failed, start afresh
            pool.close()
            pool = None
        if pool is None:
            pool = pools[size] = ProcessPool(size)
        return pool

    yield get
    for pool in pools.values():
        codes = pool.close()
        if not pool.broken:
            exits.append((pool.size, codes))
    assert all(codes == [0] * size for size, codes in exits), f"exit codes: {exits}"
