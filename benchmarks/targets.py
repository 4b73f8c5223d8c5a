"""Backends: default URLs, reachability, and the untimed admin work done with bare drivers.

Admin work (dropping a contender's tables before and after it runs, creating ADK's database,
reading the stored bytes at the end of the conversation) never goes through the counting proxy
and is never timed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

BACKENDS = ("sqlite", "postgresql", "mysql")
DEFAULT_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
URL_ENV = {
    "postgresql": "SESSIONDB_BENCH_POSTGRESQL_URL",
    "mysql": "SESSIONDB_BENCH_MYSQL_URL",
}
ADMIN_DRIVER = {"postgresql": "psycopg", "mysql": "pymysql"}


def adk_database(url: str) -> str:
    """ADK's own database beside the one ``url`` names (ADK and sessiondb both want a table
    called "sessions"): ``<database>_adk``, so runs on separate databases never share it."""
    return f"{_parsed(url).database or 'sessiondb_bench'}_adk"


@dataclass(frozen=True)
class Target:
    """Where one contender runs.

    ``url`` is a sessiondb-style URL (``sqlite:////abs/file.db``, ``postgresql://...``,
    ``mysql://...``). ``host``/``port`` are where clients connect: the real server, or the
    counting proxy during the counting pass. ``admin_url`` always names the real server.
    """

    backend: str
    url: str
    admin_url: str
    adk_database: str | None = None  # None: ADK shares the main database (tables cleared)

    def via(self, host: str, port: int) -> Target:
        """The same target with clients sent to ``host:port`` (the counting proxy)."""
        return replace(self, url=with_host(self.url, host, port))


def server_url(backend: str) -> str:
    """The URL of a server backend: the environment's override, or the local default."""
    return os.environ.get(URL_ENV[backend]) or DEFAULT_URLS[backend]


def _parsed(url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(url)


def with_host(url: str, host: str, port: int) -> str:
    """``url`` pointed at another host and port (password kept)."""
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    rendered: str = parsed.set(host=host, port=port).render_as_string(hide_password=False)
    return rendered


def with_database(url: str, database: str) -> str:
    parsed = _parsed(url)
    rendered: str = parsed.set(database=database).render_as_string(hide_password=False)
    return rendered


def with_driver(url: str, driver: str) -> str:
    parsed = _parsed(url)
    rendered: str = parsed.set(drivername=driver).render_as_string(hide_password=False)
    return rendered


def host_port(url: str) -> tuple[str, int]:
    parsed = _parsed(url)
    default = 5432 if parsed.get_backend_name() == "postgresql" else 3306
    return parsed.host or "127.0.0.1", int(parsed.port or default)


def safe(url: str) -> str:
    """``url`` with its password hidden, for printing."""
    rendered: str = _parsed(url).render_as_string(hide_password=True)
    return rendered


def sqlite_path(url: str) -> str:
    database: str | None = _parsed(url).database
    if not database:
        raise ValueError(f"no SQLite file in {url!r}")
    return database


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def connect(url: str, *, timeout: float = 5.0) -> Any:
    """A bare DBAPI connection in autocommit mode: sqlite3, psycopg 3 or PyMySQL."""
    parsed = _parsed(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
    host, port = host_port(url)
    if backend == "postgresql":
        import psycopg

        return psycopg.connect(
            host=host,
            port=port,
            user=parsed.username or None,
            password=parsed.password or None,
            dbname=parsed.database,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
        )
    import pymysql

    return pymysql.connect(
        host=host,
        port=port,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.database,
        autocommit=True,
        connect_timeout=max(1, int(timeout)),
        charset="utf8mb4",
    )


def empty_wal(url: str) -> dict[str, int] | None:
    """Checkpoint a SQLite file's WAL and truncate it (untimed, between phases), or None when
    the file is not in WAL mode: ``frames``, the WAL's size in frames before (its pages, some
    maybe checkpointed already), and ``busy``, 1 when a reader or writer kept the checkpoint
    from finishing within a 5 s busy timeout."""
    path = sqlite_path(url)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            return None
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        size = os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return {"frames": max(0, size - 32) // (page + 24), "busy": int(busy)}
    finally:
        conn.close()


def reachable(backend: str, url: str) -> tuple[bool, str]:
    """(True, server version) or (False, why not) for a server backend."""
    if not installed(ADMIN_DRIVER[backend]):
        return False, f"driver {ADMIN_DRIVER[backend]!r} is not installed"
    host, port = host_port(url)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        return False, f"nothing listens at {host}:{port} ({exc.strerror or exc})"
    try:
        conn = connect(url, timeout=5)
    except Exception as exc:
        return False, f"cannot log in at {safe(url)}: {str(exc).strip().splitlines()[0]}"
    try:
        cur = conn.cursor()
        cur.execute("SELECT version()")
        version = str(cur.fetchone()[0])
    finally:
        conn.close()
    return True, version


def ensure_adk_database(url: str) -> str | None:
    """Create ADK's own database on the server; its name, or None if that is not allowed."""
    parsed = _parsed(url)
    backend = parsed.get_backend_name()
    name = adk_database(url)
    conn = connect(url)
    try:
        cur = conn.cursor()
        if backend == "postgresql":
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        else:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    except Exception:
        return None
    finally:
        conn.close()
    return name


def drop_tables(url: str, tables: list[str]) -> None:
    """Drop ``tables`` (children first) if they exist."""
    backend = _parsed(url).get_backend_name()
    conn = connect(url)
    try:
        cur = conn.cursor()
        if backend == "mysql":
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in tables:
            if backend == "postgresql":
                cur.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
            elif backend == "mysql":
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            else:
                cur.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        conn.close()


def drop_prefixed(url: str, prefix: str) -> None:
    """Drop every table whose name starts with ``prefix`` (whatever the schema version made)."""
    backend = _parsed(url).get_backend_name()
    if backend == "postgresql":
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name LIKE %s"
        )
    elif backend == "mysql":
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE %s"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'"
    pattern = prefix.replace("_", "\\_") + "%"
    conn = connect(url)
    try:
        cur = conn.cursor()
        cur.execute(sql, (pattern,))
        names = [str(row[0]) for row in cur.fetchall()]
    finally:
        conn.close()
    if names:
        drop_tables(url, names)


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of ``sql`` (``?`` placeholders become ``%s``)."""
    backend = _parsed(url).get_backend_name()
    if backend != "sqlite":
        sql = sql.replace("?", "%s")
    conn = connect(url)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else row[0]
    finally:
        conn.close()


def text_bytes(backend: str, column: str) -> str:
    """SQL for the stored size in bytes of a JSON or text column."""
    if backend == "postgresql":
        return f"octet_length(CAST({column} AS TEXT))"
    if backend == "mysql":
        return f"LENGTH({column})"
    return f"length(CAST({column} AS BLOB))"


def create_database(backend: str, url: str) -> bool:
    """Create the server database named in ``url`` when it does not exist yet; True if this
    call created it (the caller then drops it with :func:`drop_database` when done)."""
    import sqlalchemy as sa

    from sessiondb._urls import resolve_url

    sync = resolve_url(url).sync_url
    name = sync.database
    admin = sync.set(database="postgres" if backend == "postgresql" else "mysql")
    engine = sa.create_engine(admin, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                found = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if found:
                    return False
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                return True
            made = conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}`"))
            return bool(made.rowcount)  # 0, with a warning, when it exists
    finally:
        engine.dispose()


def drop_database(backend: str, url: str) -> None:
    """Drop the server database named in ``url`` (one :func:`create_database` created)."""
    import sqlalchemy as sa

    from sessiondb._urls import resolve_url

    sync = resolve_url(url).sync_url
    admin = sync.set(database="postgres" if backend == "postgresql" else "mysql")
    engine = sa.create_engine(admin, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sync.database}" WITH (FORCE)'))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{sync.database}`"))
    finally:
        engine.dispose()


def drop_sessiondb(url: str, prefix: str) -> None:
    """Drop every table sessiondb made with ``prefix``, its version table included."""
    from sessiondb._schema import drop_all

    drop_all(url, prefix)


@contextmanager
def scratch_database(backend: str, prefix: str) -> Iterator[str]:
    """A new database named ``<prefix>_<random>`` on ``backend``'s server (:func:`server_url`),
    dropped however the block ends; yields its URL."""
    import secrets

    import sqlalchemy as sa

    from sessiondb._urls import resolve_url

    base = server_url(backend)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        resolve_url(base).sync_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield with_database(base, name)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(sa.text(f"DROP DATABASE {name}{force}"))
        admin.dispose()
