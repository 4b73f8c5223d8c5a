"""Fixtures for the scale-out tests (issue 11): the engines ``tools/cluster.sh`` starts.

Every test under ``tests/scale`` is marked ``scale`` (``-m "not scale"`` leaves them out).

Where the cluster is
--------------------
The URLs come from the environment, else from the ``env`` file ``tools/cluster.sh start`` writes
in ``$SESSIONDB_CLUSTER_DIR`` (default ``/tmp/sessiondb-cluster``)::

    SESSIONDB_CLUSTER_PG_PRIMARY_URL   postgresql://postgres@127.0.0.1:5441/test
    SESSIONDB_CLUSTER_PG_STANDBY_URLS  the synchronous standby first, then the async one
    SESSIONDB_CLUSTER_PGBOUNCER_URL    PgBouncer 1.18, pool_mode=transaction, before the primary
    SESSIONDB_CLUSTER_GALERA_URLS      the three MariaDB Galera nodes

A part that is not configured, or does not answer, skips its tests with a reason naming
``tools/cluster.sh``; with ``SESSIONDB_REQUIRE_CLUSTER=1`` (set by ``.ci/run``) that is a failure.
These fixtures only create and drop databases of their own on the shared cluster: a test that
kills, promotes or freezes a server starts a private set (``tests/scale/_pg.py``).

Fixture API
-----------
``cluster_env``
    Session-scoped :class:`ClusterEnv`: the URLs above (``None`` / ``[]`` when not configured)
    and ``directory``.
``pg_cluster_db``
    A :class:`PgDatabase`: a new database on the primary, already visible on every standby;
    ``url`` (the primary), ``standby_urls`` (same database, sync standby first),
    ``multi_host_url(**query)`` (every node, primary first). Dropped at the end.
``pgbouncer_db``
    A :class:`PgBouncerDatabase`: a new database made on the primary; ``url`` reaches it
    through PgBouncer (same name), ``direct_url`` on the primary. Dropped at the end.
``front`` / ``open_store``
    ``front`` is ``"sync"`` or ``"async"`` (parametrizes the test); ``open_store(url, **options)``
    opens a store on ``url`` through that front end, every method awaitable (the sync store is
    wrapped), closed when the test ends.
``galera_db``
    A :class:`GaleraDatabase`: a new database made on node 1 (``CREATE DATABASE`` replicates),
    present on every node before the test starts; ``urls`` (one per node), ``url`` (node 1).
    Dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, SessionStore

from ..conftest import SyncAsAsync

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "cluster.sh"
REQUIRE_CLUSTER = os.environ.get("SESSIONDB_REQUIRE_CLUSTER") == "1"
DEFAULT_DIR = "/tmp/sessiondb-cluster"
CONNECT_TIMEOUT = 3
VISIBLE_TIMEOUT = 30.0  # replication of CREATE DATABASE to a standby or a Galera node


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.scale)


def cluster_unavailable(why: str, part: str = "all") -> None:
    """Skip the test, or fail it under ``SESSIONDB_REQUIRE_CLUSTER=1``."""
    message = f"{why}: start it with `tools/cluster.sh start {part}`"
    if REQUIRE_CLUSTER:
        pytest.fail(message)
    pytest.skip(message)


# -- where the cluster is --------------------------------------------------------------------------


def read_env_file(directory: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``directory/env`` (missing file: nothing)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (directory / "env").read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export ") :].partition("=")
                found[key] = shlex.split(value)[0] if value else ""
    return found


def _split(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


@dataclass(frozen=True)
class ClusterEnv:
    """The URLs of the cluster's parts; each is empty when that part is not configured."""

    directory: Path
    pg_primary_url: str | None
    pg_standby_urls: list[str]
    pgbouncer_url: str | None
    galera_urls: list[str]

    @classmethod
    def load(cls) -> ClusterEnv:
        """The environment's variables, else the values of the ``env`` file (per variable)."""
        directory = Path(os.environ.get("SESSIONDB_CLUSTER_DIR") or DEFAULT_DIR)
        env = {**read_env_file(directory), **{k: v for k, v in os.environ.items() if v}}
        return cls(
            directory=directory,
            pg_primary_url=env.get("SESSIONDB_CLUSTER_PG_PRIMARY_URL"),
            pg_standby_urls=_split(env.get("SESSIONDB_CLUSTER_PG_STANDBY_URLS")),
            pgbouncer_url=env.get("SESSIONDB_CLUSTER_PGBOUNCER_URL"),
            galera_urls=_split(env.get("SESSIONDB_CLUSTER_GALERA_URLS")),
        )


# -- administration (drivers through SQLAlchemy, never sessiondb) -------------------------------


def admin_engine(url: str, database: str | None = None) -> sa.Engine:
    """An autocommit engine on ``url``'s server (``database`` instead of the URL's, if given)."""
    parsed = sa.make_url(url)
    driver = "postgresql+psycopg" if parsed.get_backend_name() == "postgresql" else "mysql+pymysql"
    parsed = parsed.set(drivername=driver)
    if database is not None:
        parsed = parsed.set(database=database)
    return sa.create_engine(
        parsed,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )


def admin_scalar(url: str, sql: str, database: str | None = None, **params: object) -> object:
    engine = admin_engine(url, database)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def _answers(url: str) -> str | None:
    """None when ``url``'s server answers ``SELECT 1``; else why not (one line)."""
    try:
        admin_scalar(url, "SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _safe(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def require(urls: list[str], what: str, part: str) -> None:
    """Skip (or fail) unless every one of ``urls`` is configured and answers."""
    if not urls:
        cluster_unavailable(f"the {what} is not started (no URL in the environment)", part)
    for url in urls:
        problem = _answers(url)
        if problem is not None:
            cluster_unavailable(f"the {what} does not answer at {_safe(url)} ({problem})", part)


def wait_for(check: Callable[[], bool], what: str, timeout: float = VISIBLE_TIMEOUT) -> None:
    """Poll ``check`` until it holds (replication is asynchronous to observe); fail on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def unique_name(kind: str) -> str:
    return f"sdbt_{kind}_{secrets.token_hex(4)}"


def with_database(url: str, name: str) -> str:
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def pg_database_exists(url: str, name: str) -> bool:
    sql = "SELECT count(*) FROM pg_database WHERE datname = :n"
    return admin_scalar(url, sql, database="postgres", n=name) == 1


def mysql_database_exists(url: str, name: str) -> bool:
    sql = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :n"
    return admin_scalar(url, sql, n=name) == 1


@contextlib.contextmanager
def pg_database(primary_url: str, wait_on: list[str]) -> Iterator[str]:
    """A new database on the primary, visible on every URL of ``wait_on``; dropped after."""
    name = unique_name("scale")
    engine = admin_engine(primary_url, "postgres")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        try:
            for url in wait_on:
                wait_for(lambda u=url: pg_database_exists(u, name), f"{name} on {_safe(url)}")
            yield name
        finally:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


# -- the fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster_env() -> ClusterEnv:
    return ClusterEnv.load()


@pytest.fixture(params=["sync", "async"])
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(front: str) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Any] = []

    def open_(url: str, **options: Any) -> Any:
        store: Any
        if front == "sync":
            store = SyncAsAsync(SessionStore(url, **options))
        else:
            store = AsyncSessionStore(url, **options)
        opened.append(store)
        return store

    yield open_
    for store in reversed(opened):
        await store.close()


@dataclass
class PgDatabase:
    """A private database on the cluster's primary, replicated to its standbys."""

    name: str
    url: str
    standby_urls: list[str] = field(default_factory=list)

    def multi_host_url(self, **query: str) -> str:
        """Every node in one libpq-style URL, primary first, with ``query`` options."""
        urls = [self.url, *self.standby_urls]
        first = sa.make_url(urls[0])
        hosts = ",".join(f"{sa.make_url(u).host}:{sa.make_url(u).port}" for u in urls)
        user = first.username or "postgres"
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{user}@{hosts}/{self.name}" + (f"?{options}" if options else "")


@dataclass
class PgBouncerDatabase:
    """A private database on the primary, reached through PgBouncer (``url``) or not."""

    name: str
    url: str
    direct_url: str


@dataclass
class GaleraDatabase:
    """A private database on the Galera cluster, present on every node."""

    name: str
    urls: list[str]

    @property
    def url(self) -> str:
        return self.urls[0]


@pytest.fixture
def pg_cluster_db(cluster_env: ClusterEnv) -> Iterator[PgDatabase]:
    primary = cluster_env.pg_primary_url
    require([primary] if primary else [], "PostgreSQL cluster's primary", "pg")
    require(cluster_env.pg_standby_urls, "PostgreSQL cluster's standbys", "pg")
    assert primary is not None
    with pg_database(primary, cluster_env.pg_standby_urls) as name:
        yield PgDatabase(
            name,
            with_database(primary, name),
            [with_database(u, name) for u in cluster_env.pg_standby_urls],
        )


@pytest.fixture
def pgbouncer_db(cluster_env: ClusterEnv) -> Iterator[PgBouncerDatabase]:
    primary, bouncer = cluster_env.pg_primary_url, cluster_env.pgbouncer_url
    require([primary] if primary else [], "PostgreSQL cluster's primary", "pg")
    require([bouncer] if bouncer else [], "PgBouncer", "pgbouncer")
    assert primary is not None and bouncer is not None
    with pg_database(primary, []) as name:
        yield PgBouncerDatabase(name, with_database(bouncer, name), with_database(primary, name))


@pytest.fixture
def galera_db(cluster_env: ClusterEnv) -> Iterator[GaleraDatabase]:
    urls = cluster_env.galera_urls
    require(urls, "Galera cluster", "galera")
    name = unique_name("scale")
    engine = admin_engine(urls[0])
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        try:
            for url in urls[1:]:
                wait_for(lambda u=url: mysql_database_exists(u, name), f"{name} on {_safe(url)}")
            yield GaleraDatabase(name, [with_database(u, name) for u in urls])
        finally:
            with engine.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        engine.dispose()
