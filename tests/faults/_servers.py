"""Private database servers the fault tests may stop, kill, freeze and restart.

Each :class:`PrivateServer` lives in its own temporary directory (``/tmp/sessiondb-faults-*``),
listens on 127.0.0.1 on a port of its own, and is only ever signalled by the process ids this
module started (plus, for PostgreSQL, that postmaster's own children). The shared servers on
127.0.0.1:5432 and :3306 are never touched.

- PostgreSQL 15: ``initdb`` (as the ``postgres`` OS user when we are root: initdb refuses root),
  then ``postgres -D ...`` started directly, so its pid is the postmaster's. Trust on the Unix
  socket (administration), scram-sha-256 over TCP (the stores, so a wrong password is refused).
- MariaDB: ``mariadb-install-db`` then ``mariadbd --no-defaults``; root on the Unix socket for
  administration, a password user for the stores.

Nothing here uses sessiondb: administration goes through the drivers (psycopg, PyMySQL) directly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "PASSWORD",
    "USER",
    "MariaDBServer",
    "PostgresServer",
    "PrivateServer",
    "SilentServer",
    "UnavailableError",
    "free_port",
    "reap_orphans",
]

#: The account the stores use (a password account, so wrong passwords are refused).
USER = "sdb_fault"
PASSWORD = "Fault-Pw-7f3a91c2"

PG_BIN = Path(os.environ.get("SESSIONDB_PG_BIN", "/usr/lib/postgresql/15/bin"))
TMP_PREFIX = "sessiondb-faults-"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class UnavailableError(Exception):
    """The binaries (or the OS user) a private server needs are missing: skip, or fail in CI."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _stat(pid)
    return state is not None and state[0] != "Z"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid``, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[1] == pid:
                kids.append(int(entry.name))
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return not any(_alive(p) for p in pids)


def _reap(root: Path) -> None:
    """Kill the server recorded in ``root`` (checked by its command line) and remove ``root``."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((root / "server.pid").read_text())
        if _alive(pid) and str(root) in _cmdline(pid):
            kids = _children(pid)
            for p in [pid, *kids]:
                _signal(p, signal.SIGCONT)
                _signal(p, signal.SIGKILL)
            _wait_gone([pid, *kids], 5)
    shutil.rmtree(root, ignore_errors=True)


def _watch(owner: int, root: Path) -> None:
    """The watchdog's loop: once ``owner`` (pytest) is gone and ``root`` is still there (pytest
    crashed: a segfault in a driver, a SIGKILL), kill the server and remove its directory."""
    while root.exists():
        if not _alive(owner):
            _reap(root)
            return
        time.sleep(0.5)


def reap_orphans() -> list[str]:
    """Kill private servers left behind by a test process that died without cleaning up.

    A directory ``/tmp/sessiondb-faults-*`` holds ``owner`` (the pytest pid) and ``server.pid``;
    when the owner is gone, the server (checked by its command line naming that directory) and
    its children are killed and the directory removed. Returns what was reaped.
    """
    reaped = []
    for root in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        _reap(root)
        reaped.append(str(root))
    return reaped


class PrivateServer:
    """A database server of our own: start, stop, restart, kill, freeze, thaw, cleanup."""

    backend = ""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.backend}-"))
        (self.root / "owner").write_text(str(os.getpid()))
        self.port = free_port()
        # a watchdog process outlives us should pytest crash, and then stops the server; it
        # exits by itself once cleanup() has removed the directory
        self.watchdog = subprocess.Popen(
            [sys.executable, __file__, "--watch", str(os.getpid()), str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.timings: dict[str, float] = {}
        self._lock = threading.RLock()
        self._log: Any = None

    # -- to implement ----------------------------------------------------------------------------

    def _init(self) -> None:
        raise NotImplementedError

    def _command(self) -> tuple[list[str], str | None]:
        """The server's command line, and the OS user to run it as (None: ourselves)."""
        raise NotImplementedError

    def _ping(self) -> None:
        """Raise unless the server answers an administrative query."""
        raise NotImplementedError

    def _first_start(self) -> None:
        """Create the password user (after the first start)."""

    def admin(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the administrator (over the Unix socket); return its rows."""
        raise NotImplementedError

    def url(self, database: str, *, password: str | None = None, port: int | None = None) -> str:
        raise NotImplementedError

    def create_database(self, name: str) -> None:
        raise NotImplementedError

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def setup(self) -> None:
        """Initialise the data directory and start the server (once)."""
        t0 = time.monotonic()
        self._init()
        self.timings["init"] = time.monotonic() - t0
        t1 = time.monotonic()
        self.start()
        self._first_start()
        self.timings["first start"] = time.monotonic() - t1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers (it must not be running)."""
        with self._lock:
            assert not self.running(), f"{self.backend} is already running"
            command, user = self._command()
            self._log = open(self.root / "server.log", "ab")  # noqa: SIM115 (closed in stop)
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                user=user,
                start_new_session=True,  # a Ctrl-C in the terminal does not reach it
                cwd=self.root,
            )
            (self.root / "server.pid").write_text(str(self.proc.pid))
            self.frozen = False
            deadline = time.monotonic() + START_TIMEOUT
            error: BaseException | None = None
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.backend} exited with {self.proc.returncode} at start:\n"
                        + self.log_tail()
                    )
                try:
                    self._ping()
                    return
                except Exception as exc:
                    error = exc
                time.sleep(0.02)
            raise RuntimeError(f"{self.backend} did not answer in {START_TIMEOUT}s: {error}")

    def _graceful(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        """Shut the server down cleanly (closing every connection); wait for it."""
        with self._lock:
            if not self.running():
                self._reap()
                return
            self.thaw()
            assert self.proc is not None
            kids = _children(self.proc.pid)
            self.proc.send_signal(self._graceful())
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            _wait_gone(kids, STOP_TIMEOUT)
            self._reap()

    def kill(self) -> None:
        """SIGKILL the server (and, for PostgreSQL, every child of it): a crash."""
        with self._lock:
            if self.proc is None:
                return
            pid = self.proc.pid
            kids = _children(pid) if self.proc.poll() is None else []
            for p in [pid, *kids]:
                _signal(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
            kids += _children(pid) if _alive(pid) else []
            for p in kids:
                _signal(p, signal.SIGKILL)
            _wait_gone([pid, *kids], STOP_TIMEOUT)
            self.frozen = False
            self._reap()

    def restart(self) -> None:
        """Clean shutdown, then start again on the same port and data."""
        self.stop()
        self.start()

    def _pids(self) -> list[int]:
        if not self.running():
            return []
        assert self.proc is not None
        return [self.proc.pid, *_children(self.proc.pid)]

    def freeze(self) -> None:
        """SIGSTOP the server (first the parent, so it forks no new child, then its children)."""
        with self._lock:
            assert self.running(), f"{self.backend} is not running"
            assert self.proc is not None
            self.frozen = True
            _signal(self.proc.pid, signal.SIGSTOP)
            for p in _children(self.proc.pid):
                _signal(p, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what :meth:`freeze` stopped."""
        with self._lock:
            if not self.frozen:
                return
            self.frozen = False
            if self.proc is None:
                return
            for p in _children(self.proc.pid):
                _signal(p, signal.SIGCONT)
            _signal(self.proc.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen_for(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def ensure_running(self) -> None:
        """After a test: thawed and answering, whatever the test did."""
        with self._lock:
            self.thaw()
            if not self.running():
                self.start()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        """Kill the server (by pid: its data is thrown away) and delete its directory."""
        with self._lock:
            try:
                self.thaw()
                self.kill()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.watchdog.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# -- PostgreSQL ------------------------------------------------------------------------------------


class PostgresServer(PrivateServer):
    backend = "postgresql"

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists() or not (PG_BIN / "postgres").exists():
            raise UnavailableError(f"PostgreSQL binaries not found in {PG_BIN} (SESSIONDB_PG_BIN)")
        self.os_user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise UnavailableError(
                    "running as root and there is no 'postgres' OS user"
                ) from None
            self.os_user = "postgres"
        super().__init__()
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            for path in (self.root, self.sock):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _init(self) -> None:
        result = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            user=self.os_user,
            cwd=self.root,
            capture_output=True,
            timeout=120,
        )
        if result.returncode:
            raise RuntimeError(f"initdb failed: {result.stdout!r} {result.stderr!r}")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _command(self) -> tuple[list[str], str | None]:
        return [
            str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.sock), "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
            "-c", "shared_buffers=16MB", "-c", "logging_collector=off",
        ], self.os_user  # fmt: skip

    def _graceful(self) -> int:
        return signal.SIGINT  # "fast" shutdown: ends every session, then stops

    def _connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=str(self.sock), port=self.port, user="postgres", dbname=dbname,
            connect_timeout=2, autocommit=True,
        )  # fmt: skip

    def _ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def admin(self, sql: str) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def _first_start(self) -> None:
        self.admin(f"CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")

    def create_database(self, name: str) -> None:
        self.admin(f'CREATE DATABASE "{name}" OWNER {USER} TEMPLATE template0')

    def url(self, database: str, *, password: str | None = None, port: int | None = None) -> str:
        pw = PASSWORD if password is None else password
        return f"postgresql://{USER}:{pw}@127.0.0.1:{port or self.port}/{database}"

    def connections(self, database: str) -> list[tuple[str, str]]:
        """(state, query) of every client session on ``database``."""
        rows = self.admin(
            "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        return [(str(a), str(b)) for a, b in rows]


# -- MariaDB -------------------------------------------------------------------------------------


class MariaDBServer(PrivateServer):
    backend = "mysql"

    def __init__(self) -> None:
        self.install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        self.daemon = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        if self.install is None or self.daemon is None:
            raise UnavailableError("MariaDB binaries not found (mariadb-install-db, mariadbd)")
        super().__init__()
        self.data = self.root / "data"
        self.sock = self.root / "mysqld.sock"

    _TUNING = (
        "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M",
        "--innodb-flush-log-at-trx-commit=2",  # on commit, to the OS: survives a SIGKILL
        "--innodb-doublewrite=0", "--skip-name-resolve",
    )  # fmt: skip

    def _as_root(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _init(self) -> None:
        assert self.install is not None
        result = subprocess.run(
            [
                self.install,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._as_root(),
                *self._TUNING,
            ],
            cwd=self.root,
            capture_output=True,
            timeout=120,
        )
        if result.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {result.stdout!r} {result.stderr!r}")

    def _command(self) -> tuple[list[str], str | None]:
        assert self.daemon is not None
        return [
            self.daemon, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.sock}",
            f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin", "--max-connections=300",
            *self._as_root(), *self._TUNING,
        ], None  # fmt: skip

    def _graceful(self) -> int:
        return signal.SIGTERM

    def _connect(self) -> Any:
        import pymysql

        # our own socket, closed on failure (PyMySQL leaves it to the garbage collector)
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.settimeout(2)
            sock.connect(str(self.sock))
            conn = pymysql.connect(user="root", autocommit=True, defer_connect=True)
            conn.connect(sock)
        except BaseException:
            sock.close()
            raise
        return conn

    def _ping(self) -> None:
        conn = self._connect()
        conn.close()

    def admin(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def _first_start(self) -> None:
        self.admin(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
        self.admin(f"GRANT ALL ON *.* TO '{USER}'@'%'")

    def create_database(self, name: str) -> None:
        self.admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def url(self, database: str, *, password: str | None = None, port: int | None = None) -> str:
        pw = PASSWORD if password is None else password
        return f"mysql://{USER}:{pw}@127.0.0.1:{port or self.port}/{database}"

    def connections(self, database: str) -> list[tuple[str, str]]:
        """(command, transaction state) of every client session on ``database``."""
        rows = self.admin(
            "SELECT p.command, coalesce(t.trx_state, '') FROM information_schema.processlist p"
            " LEFT JOIN information_schema.innodb_trx t ON t.trx_mysql_thread_id = p.id"
            f" WHERE p.db = '{database}' AND p.id <> CONNECTION_ID()"
        )
        return [(str(a), str(b)) for a, b in rows]


# -- a server that never answers -----------------------------------------------------------------


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self.accepted:
            conn.close()


if __name__ == "__main__":  # the watchdog: python _servers.py --watch OWNER_PID ROOT
    if len(sys.argv) == 4 and sys.argv[1] == "--watch":
        _watch(int(sys.argv[2]), Path(sys.argv[3]))
