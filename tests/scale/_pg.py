"""PostgreSQL primaries and standbys for the failover and replica tests.

:meth:`Cluster.shared` is the cluster ``tools/cluster.sh start pg`` started (its URLs come from
``SESSIONDB_CLUSTER_PG_PRIMARY_URL`` / ``SESSIONDB_CLUSTER_PG_STANDBY_URLS``, or from the
``env`` file in ``SESSIONDB_CLUSTER_DIR``, default ``/tmp/sessiondb-cluster``): tests only make
databases there and drop them. :meth:`Cluster.private` starts a set of the test's own with the
same script, in its own directory and ports, for tests that kill, promote or pause a server;
:meth:`Cluster.stop` stops it by PID, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb._replicas import reads

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "cluster.sh"
PG_BIN = Path(os.environ.get("SESSIONDB_PG_BIN", "/usr/lib/postgresql/15/bin"))
REQUIRE = os.environ.get("SESSIONDB_REQUIRE_CLUSTER") == "1"

Address = tuple[str, int]


def unavailable(why: str) -> None:
    """Skip, or fail under ``SESSIONDB_REQUIRE_CLUSTER=1``."""
    message = f"{why}: start it with `tools/cluster.sh start pg`"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


def _env_file(directory: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    path = directory / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export ") :].partition("=")
                found[key] = shlex.split(value)[0] if value else ""
    return found


def _address(url: str) -> Address:
    parsed = sa.make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


class Cluster:
    """A primary and its standbys: addresses, admin connections, the test's databases."""

    def __init__(self, primary: str, standbys: list[str], directory: Path | None = None) -> None:
        self.primary_url = primary
        self.standby_urls = standbys
        self.directory = directory  # a private cluster's; None for the shared one
        self.port = 0
        self.user = sa.make_url(primary).username or "postgres"

    # -- the clusters ----------------------------------------------------------------------------

    @classmethod
    def shared(cls) -> Cluster:
        directory = Path(os.environ.get("SESSIONDB_CLUSTER_DIR", "/tmp/sessiondb-cluster"))
        env = {**_env_file(directory), **os.environ}
        primary = env.get("SESSIONDB_CLUSTER_PG_PRIMARY_URL")
        standbys = [u for u in env.get("SESSIONDB_CLUSTER_PG_STANDBY_URLS", "").split(",") if u]
        if not primary or not standbys:
            unavailable("the PostgreSQL cluster is not started")
        assert primary is not None
        cluster = cls(primary, standbys)
        for address in [cluster.primary_address(), *map(_address, standbys)]:
            if not cluster.ready(address):
                unavailable(f"the PostgreSQL cluster does not answer at {address}")
        return cluster

    @classmethod
    def private(cls, first_port: int = 5451) -> Cluster:
        """Start a primary, a synchronous standby (its port +1) and an async one (+2) on free
        ports from ``first_port`` up, in a directory of their own (under /tmp: the servers run
        as the ``postgres`` user). Ports another process takes meanwhile: the next ones."""
        if not SCRIPT.exists() or not (PG_BIN / "pg_ctl").exists():
            unavailable(f"{SCRIPT} or PostgreSQL's binaries ({PG_BIN}) are missing")
        error = ""
        for _ in range(5):
            port = free_ports(first_port)
            directory = Path(tempfile.mkdtemp(prefix=f"sessiondb-ha-{port}-"))
            directory.chmod(0o755)
            cluster = cls(
                f"postgresql://postgres@127.0.0.1:{port}/test",
                [f"postgresql://postgres@127.0.0.1:{port + i}/test" for i in (1, 2)],
                directory,
            )
            cluster.port = port
            error = cluster.start()
            if not error:
                return cluster
            cluster.stop()
            if "is taken" not in error:
                break
        pytest.fail(f"tools/cluster.sh start pg failed:\n{error[-3000:]}")

    def start(self) -> str:
        """Start the servers of a private cluster; the script's complaint if it failed."""
        assert self.directory is not None
        env = {**os.environ, "SESSIONDB_CLUSTER_DIR": str(self.directory),
               "SESSIONDB_CLUSTER_PG_PORT": str(self.port)}  # fmt: skip
        done = subprocess.run(
            ["bash", str(SCRIPT), "start", "pg"], env=env, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip
        return done.stderr if done.returncode != 0 else ""

    def kill(self, node: str) -> None:
        """SIGKILL a server of a private cluster (a crash)."""
        pid = self.pid(node)
        assert pid is not None, f"{node} is not running"
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop a private cluster's servers by PID (fast shutdown, SIGKILL if they linger),
        and delete its files."""
        assert self.directory is not None
        pids = [pid for pid in map(self.pid, ("pg0", "pg1", "pg2")) if pid is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.directory)], check=False)

    def start_node(self, node: str) -> None:
        """Start one stopped server of a private cluster again."""
        assert self.directory is not None
        log = self.directory / "log" / f"{node}.log"
        self.pg_ctl(node, "start", "-w", "-t", "60", "-l", str(log))

    # -- addresses and URLs ----------------------------------------------------------------------

    def primary_address(self) -> Address:
        return _address(self.primary_url)

    def standby_address(self, index: int) -> Address:
        return _address(self.standby_urls[index])

    def url(self, database: str, addresses: list[Address], **query: str) -> str:
        """A libpq-style URL naming ``addresses`` in this order."""
        hosts = ",".join(f"{h}:{p}" for h, p in addresses)
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{self.user}@{hosts}/{database}" + (f"?{options}" if options else "")

    def engine(self, address: Address, database: str = "postgres") -> sa.Engine:
        return sa.create_engine(
            f"postgresql+psycopg://{self.user}@{address[0]}:{address[1]}/{database}",
            isolation_level="AUTOCOMMIT", poolclass=sa.NullPool,
            connect_args={"connect_timeout": 3},
        )  # fmt: skip

    def scalar(self, address: Address, sql: str, database: str = "postgres", **params: Any) -> Any:
        engine = self.engine(address, database)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql), params).scalar()
        finally:
            engine.dispose()

    def execute(self, address: Address, sql: str, database: str = "postgres") -> None:
        engine = self.engine(address, database)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    def in_transaction(self, address: Address, sql: str, database: str = "postgres") -> None:
        engine = self.engine(address, database).execution_options(isolation_level="READ COMMITTED")
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    def reload(self, address: Address) -> None:
        """``pg_reload_conf()``, returning once the server has re-read its files (a new
        connection shows a later load time). pg_reload_conf() only signals the postmaster; once
        it has reloaded, it has signalled every server process too, and each one applies the
        change before its next statement: a pooled connection's next write sees it."""
        when = "SELECT pg_conf_load_time()"
        before = self.scalar(address, when)
        self.scalar(address, "SELECT pg_reload_conf()")
        self.wait_for(lambda: self.scalar(address, when) > before, f"{address} to reload")

    def ready(self, address: Address) -> bool:
        try:
            self.scalar(address, "SELECT 1")
        except sa.exc.OperationalError:
            return False
        return True

    # -- the test's databases --------------------------------------------------------------------

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new database on the primary, present on every standby; dropped at the end."""
        name = f"sdbt_ha_{secrets.token_hex(4)}"
        primary = self.primary_address()
        self.execute(primary, f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            for index in range(len(self.standby_urls)):
                address = self.standby_address(index)
                self.wait_for(
                    lambda a=address: self.exists(a, name), f"database {name} on {address}"
                )
            yield name
        finally:
            if self.directory is None:  # a private cluster goes whole, whatever it became
                self.execute(primary, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def exists(self, address: Address, database: str) -> bool:
        sql = "SELECT count(*) FROM pg_database WHERE datname = :n"
        return bool(self.scalar(address, sql, n=database) == 1)

    @staticmethod
    def wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def has_session(self, address: Address, database: str, session_id: str) -> bool:
        sql = "SELECT count(*) FROM sessions WHERE id = :s"
        try:
            return bool(self.scalar(address, sql, database, s=session_id) == 1)
        except sa.exc.ProgrammingError:  # the schema is not there yet
            return False

    def read_on_primary(self, database: str, session_id: str) -> Any:
        sql = "SELECT state FROM sessions WHERE id = :s"
        return self.scalar(self.primary_address(), sql, database, s=session_id)

    # -- where a store's connections go (a test hook on the store's own runner) -------------------

    @staticmethod
    def server_port(store: Any) -> int:
        return int(store._backend.call(_server_port))

    @staticmethod
    async def server_port_async(store: Any) -> int:
        return int(await store._backend.call(_server_port))

    def pause_replay(self, index: int) -> None:
        self.scalar(self.standby_address(index), "SELECT pg_wal_replay_pause()::text")

    def resume_replay(self, index: int) -> None:
        self.scalar(self.standby_address(index), "SELECT pg_wal_replay_resume()::text")

    # -- a private cluster's processes -----------------------------------------------------------

    def pid(self, node: str) -> int | None:
        assert self.directory is not None
        path = self.directory / node / "postmaster.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log(self, node: str) -> str:
        """A private server's log so far."""
        assert self.directory is not None
        return (self.directory / "log" / f"{node}.log").read_text(errors="replace")

    def pg_ctl(self, node: str, *args: str) -> None:
        assert self.directory is not None
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.directory / node), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def free_ports(first: int = 5451, last: int = 5499) -> int:
    """The first port of three free ones in a row, in ``first..last`` (private clusters),
    from a random start (tests running at once rarely pick the same)."""
    bases = list(range(first, last - 1, 3))
    start = random.randrange(len(bases))
    for base in bases[start:] + bases[:start]:
        if all(_free(port) for port in range(base, base + 3)):
            return base
    pytest.fail(f"no three free ports in a row in {first}-{last}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet) is gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _server_port(cx: Any) -> int:
    from sessiondb._queries import Stmt

    stmt = Stmt("SELECT inet_server_port()", (), columns=("port",), writes=False)
    return int(cx.one(stmt, {})[0])


def _read_port(cx: Any) -> int:
    return _server_port(cx)


#: ``store._backend.call(READ_PORT)``: the port of the server a read runs on (an operation
#: declared a read, like get_session); ``WRITE_PORT``: where a write runs
READ_PORT = reads(_read_port)
WRITE_PORT = _server_port


class Front:
    """A store through the sync or the async front end, every method awaitable."""

    def __init__(self, front: str, url: str, **options: Any) -> None:
        from sessiondb import AsyncSessionStore, SessionStore

        self.front = front
        self.store: Any = (SessionStore if front == "sync" else AsyncSessionStore)(url, **options)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if self.front == "async" or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call

    async def op(self, fn: Any, **kwargs: Any) -> Any:
        """Run a core operation through the store's backend (its routing included)."""
        result = self.store._backend.call(fn, **kwargs)
        return await result if self.front == "async" else result

    async def op_in_background(self, fn: Any, **kwargs: Any) -> Any:
        """:meth:`op` while the test goes on (a sync store's call in a thread)."""
        if self.front == "async":
            return await self.store._backend.call(fn, **kwargs)
        return await asyncio.to_thread(self.store._backend.call, fn, **kwargs)

    async def read_port(self) -> int:
        return int(await self.op(READ_PORT))

    async def write_port(self) -> int:
        return int(await self.op(WRITE_PORT))

    async def aclose(self) -> None:
        result = self.store.close()
        if self.front == "async":
            await result
