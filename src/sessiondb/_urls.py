"""Database URLs: parsing, driver choice, and the helpful errors when a URL is wrong.

Every URL resolves to a :class:`Target`: the backend (``sqlite``, ``postgresql`` or ``mysql``),
the SQLAlchemy URL for the synchronous driver, and the one for the asynchronous driver. A bare
``postgresql://`` (or ``postgres://``, as Heroku, Supabase and Render write it) or ``mysql://``
maps to drivers that install from wheels (psycopg 3 / asyncpg, PyMySQL / aiomysql); a URL
naming a driver keeps it for its side and gets the default for the other. A bare path is not a
URL here (the ``sessiondb`` command takes one as a SQLite file; code says what it means).

A PostgreSQL URL may name several hosts (a primary and its standbys), in libpq's form
``postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write`` or SQLAlchemy's
``postgresql://u@/db?host=h1:5432&host=h2:5433`` (or ``?host=h1,h2&port=5432,5433``). Every
form becomes one: ``?host=h1,h2&port=5432,5433``, every port spelled out, which SQLAlchemy's
psycopg dialect hands to libpq as a multi-host conninfo and its asyncpg dialect to
``asyncpg.connect`` as lists; ``target_session_attrs`` goes through to both drivers.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigurationError, DriverNotInstalledError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["POOLERS", "Target", "check_pooler", "resolve_url"]

#: The values of the ``pooler`` option (and of a PostgreSQL URL's ``?pooler=``): None for a
#: direct connection (or a session-mode pooler), "transaction" for a transaction-mode one.
POOLERS = (None, "transaction")

FORMS = (
    "sqlite:///./relative.db, sqlite:////absolute/path.db, "
    "postgresql://user:password@host:5432/database, "
    "postgresql://user:password@host1:5432,host2:5432/database?target_session_attrs=read-write, "
    "mysql://user:password@host:3306/database"
)
_PORTS = {"postgresql": 5432, "mysql": 3306}

# backend -> (extra, {driver: (module, side)}) ; side is "sync", "async" or "both"
_DRIVERS: dict[str, dict[str, tuple[str, str]]] = {
    "sqlite": {"pysqlite": ("sqlite3", "both"), "aiosqlite": ("sqlite3", "both")},
    "postgresql": {
        "psycopg": ("psycopg", "sync"),
        "psycopg2": ("psycopg2", "sync"),
        "asyncpg": ("asyncpg", "async"),
        "psycopg_async": ("psycopg", "async"),
    },
    "mysql": {
        "pymysql": ("pymysql", "sync"),
        "mysqldb": ("MySQLdb", "sync"),
        "aiomysql": ("aiomysql", "async"),
        "asyncmy": ("asyncmy", "async"),
    },
}
_DEFAULTS = {
    "sqlite": ("pysqlite", "pysqlite"),
    "postgresql": ("psycopg", "asyncpg"),
    "mysql": ("pymysql", "aiomysql"),
}
_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "sqlite": ""}
# drivers outside the extras: the package to install
_PACKAGES = {"asyncmy": "asyncmy", "mysqldb": "mysqlclient", "psycopg2": "psycopg2-binary"}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a store connects: the backend and a driver URL for each side."""

    backend: str  # "sqlite", "postgresql" or "mysql" (MariaDB included)
    sync_url: URL
    async_url: URL  # on SQLite the same as sync_url: async runs the sync core in a thread
    safe_url: str  # for messages: password hidden
    #: several ``(host, port)`` for a multi-host PostgreSQL URL, else empty
    hosts: tuple[tuple[str, int], ...] = ()
    #: "transaction": a transaction-mode pooler (PgBouncer) stands in front of PostgreSQL
    pooler: str | None = None

    @property
    def location(self) -> str:
        """``host:port`` for servers (every one of a multi-host URL, comma-separated), the
        file path for SQLite."""
        if self.backend == "sqlite":
            return self.sync_url.database or ":memory:"
        if self.hosts:
            return ",".join(_host_port(host, port) for host, port in self.hosts)
        port = self.sync_url.port or _PORTS[self.backend]
        return _host_port(self.sync_url.host or "localhost", port)

    def require_driver(self, side: str) -> None:
        """Raise :class:`DriverNotInstalledError` unless the driver for ``side`` is importable."""
        url = self.sync_url if side == "sync" else self.async_url
        driver = url.get_driver_name()
        module = _DRIVERS[self.backend][driver][0]
        if importlib.util.find_spec(module) is None:
            extra = _EXTRAS[self.backend]
            default = driver in _DEFAULTS[self.backend]
            hint = (
                f"pip install 'sessiondb[{extra}]'"
                if extra and default
                else f"pip install {_PACKAGES.get(driver, module)}"
            )
            raise DriverNotInstalledError(
                f"the {side} {self.backend} driver '{driver}' (module {module!r}) is not "
                f"installed; install it with: {hint}"
            )


def _malformed(text: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"malformed database URL {text!r}: {why}; use one of: {FORMS}")


def _postgres_alias(text: str) -> str:
    """``postgres://`` (Heroku, Supabase, Render; SQLAlchemy refuses it) as ``postgresql://``."""
    scheme, sep, rest = text.partition("://")
    name, plus, driver = scheme.partition("+")
    if sep and name.lower() == "postgres":
        return f"postgresql{plus}{driver}://{rest}"
    return text


def resolve_url(url: str | URL) -> Target:
    """Parse ``url`` and choose drivers, or raise :class:`ConfigurationError` saying why not."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    listed: list[tuple[str, int | None]] = []
    if isinstance(url, str):
        if not url.strip():
            raise _malformed(url, "it is empty")
        stripped, listed = _split_hosts(_postgres_alias(url.strip()))
        try:
            parsed = make_url(stripped)
        except (ArgumentError, ValueError) as exc:
            if ":" not in url:
                why = (
                    "it has no scheme dialect[+driver]:// (a SQLite file is written "
                    "sqlite:///path/to/file.db; the sessiondb command also takes a bare path)"
                )
            else:
                why = "it is not of the form dialect[+driver]://[user[:password]@]host/database"
            raise _malformed(url, why) from exc
    else:
        parsed = url
    safe = parsed.render_as_string(hide_password=True)
    name = parsed.get_backend_name()
    backend = "mysql" if name == "mariadb" else name
    if backend not in _DRIVERS:
        raise ConfigurationError(
            f"unsupported database {name!r} in {safe!r}: sessiondb supports sqlite, "
            f"postgresql and mysql/mariadb. Use one of: {FORMS}"
        )
    if backend == "sqlite":
        _check_sqlite(text, parsed)
    driver = parsed.get_driver_name() if "+" in parsed.drivername else None
    drivers = _DRIVERS[backend]
    if driver is not None and driver not in drivers:
        raise ConfigurationError(
            f"unsupported driver {driver!r} for {name} in {safe!r}; "
            f"use one of: {', '.join(sorted(drivers))}"
        )
    sync_driver, async_driver = _DEFAULTS[backend]
    if driver is not None:
        side = drivers[driver][1]
        if side in ("sync", "both"):
            sync_driver = driver if backend != "sqlite" else "pysqlite"
        if side == "async":
            async_driver = driver
        elif driver == "psycopg":
            async_driver = "psycopg_async"
    base = name  # keep "mariadb" so SQLAlchemy knows the server flavour
    if backend != "sqlite" and not parsed.database:
        raise _malformed(text, "it names no database (add /database_name at the end)")
    pooler = None
    if "pooler" in parsed.query:
        # sessiondb's own option: the drivers never see it
        pooler = check_pooler(parsed.query["pooler"], backend, f"in {safe!r}")
        parsed = parsed.difference_update_query(["pooler"])
        safe = parsed.render_as_string(hide_password=True)
    hosts: tuple[tuple[str, int], ...] = ()
    if listed and backend != "postgresql":
        raise _malformed(text, "several hosts in one URL are for PostgreSQL only")
    if backend == "postgresql":
        parsed, hosts = _multi_host(text, parsed, listed)
        if hosts:
            safe = _render_hosts(parsed, hosts)
    sync_url = parsed.set(drivername=f"{base}+{sync_driver}")
    async_url = parsed.set(drivername=f"{base}+{async_driver}")
    return Target(backend, sync_url, async_url, safe, hosts, pooler)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_hosts(text: str) -> tuple[str, list[tuple[str, int | None]]]:
    """Take libpq's host list (``h1:p1,h2:p2``) out of a URL, which SQLAlchemy cannot parse:
    the URL without it, and the hosts (empty unless the URL names several)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text, []
    end = len(rest)
    for stop in "/?":
        found = rest.find(stop)
        if found >= 0:
            end = min(end, found)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostlist = netloc.rpartition("@")
    if "," not in hostlist:
        return text, []
    hosts = [_one_host(text, item) for item in hostlist.split(",")]
    return f"{scheme}://{userinfo}{at}{tail}", hosts


def _one_host(text: str, item: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]/]+))(?::(\d{1,5}))?", item)
    if match is None:
        raise _malformed(
            text, f"{item!r} in its host list is not host, host:port or [IPv6 address]:port"
        )
    host = match.group(1) or match.group(2)
    port = int(match.group(3)) if match.group(3) else None
    if port is not None and not 0 < port < 65536:
        raise _malformed(text, f"port {port} of host {host!r} is out of range")
    return host, port


def _multi_host(
    text: str, parsed: URL, listed: list[tuple[str, int | None]]
) -> tuple[URL, tuple[tuple[str, int], ...]]:
    """Every multi-host form in one: ``?host=h1,h2&port=p1,p2`` (each port spelled out, as
    asyncpg requires), the URL's own host and port removed. A one-host URL is left alone."""
    query = parsed.query
    if "host" in query or "port" in query:
        if listed:
            raise _malformed(text, "it names hosts both before the database and in ?host=")
        raw = query.get("host", ())
        raw_hosts = [raw] if isinstance(raw, str) else list(raw)
        raw_port = query.get("port", ())
        raw_ports = [raw_port] if isinstance(raw_port, str) else list(raw_port)
        if len(raw_hosts) == 1 and "," in raw_hosts[0]:  # ?host=h1,h2&port=p1,p2
            names = raw_hosts[0].split(",")
            ports = ",".join(raw_ports).split(",") if raw_ports else []
            if ports and len(ports) != len(names):
                raise _malformed(text, f"it names {len(names)} hosts and {len(ports)} ports")
            spelled = [f"{n}:{p}" for n, p in zip(names, ports, strict=True)] if ports else names
            listed = [_one_host(text, item) for item in spelled]
        elif len(raw_hosts) > 1:  # ?host=h1:p1&host=h2:p2
            if raw_ports:
                raise _malformed(text, "give each host its port as ?host=h1:p1&host=h2:p2")
            listed = [_one_host(text, item) for item in raw_hosts]
        if listed and (parsed.host or parsed.port):
            raise _malformed(text, "it names hosts both before the database and in ?host=")
    if len(listed) < 2:
        return parsed, ()
    default = parsed.port or _PORTS["postgresql"]
    hosts = tuple((host, default if port is None else port) for host, port in listed)
    url = parsed.set(host=None, port=None).difference_update_query(["host", "port"])
    url = url.update_query_dict(
        {"host": ",".join(h for h, _ in hosts), "port": ",".join(str(p) for _, p in hosts)}
    )
    return url, hosts


def _render_hosts(url: URL, hosts: tuple[tuple[str, int], ...]) -> str:
    """A multi-host URL for messages, in libpq's form, password hidden."""
    plain = url.difference_update_query(["host", "port"])
    rendered = plain.render_as_string(hide_password=True)
    scheme, _, rest = rendered.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo = netloc[: netloc.rfind("@") + 1]
    listed = ",".join(_host_port(h, p) for h, p in hosts)
    return f"{scheme}://{userinfo}{listed}{slash}{tail}"


def check_pooler(value: object, backend: str, where: str = "") -> str | None:
    """The ``pooler`` option (or ``?pooler=``), checked: None or ``"transaction"``."""
    if value in ("", "none"):
        value = None
    if value not in POOLERS:
        raise ConfigurationError(
            f"unknown pooler {value!r} {where}".rstrip()
            + ": use pooler='transaction' (or ?pooler=transaction in the URL) for a "
            "transaction-mode pooler such as PgBouncer, or leave it out for a direct "
            "connection or a session-mode pooler"
        )
    if value is not None and backend != "postgresql":
        raise ConfigurationError(
            f"pooler={value!r} {where}".rstrip()
            + f" applies to PostgreSQL (PgBouncer), not {backend}"
        )
    return value


def _in_memory(parsed: URL) -> bool:
    """A SQLite URL that names no file (``sqlite://``, ``sqlite:///:memory:``)."""
    return parsed.database in (None, "", ":memory:")


def in_memory_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite URL of an in-memory database (ADK's services are often
    given ``sqlite+aiosqlite:///:memory:``); False for anything else, a malformed URL too."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return False  # not a URL: resolve_url says what is wrong with it
    return parsed.get_backend_name() == "sqlite" and _in_memory(parsed)


def _check_sqlite(text: str, parsed: URL) -> None:
    if parsed.host or parsed.port or parsed.username:
        # sqlite://./data.db parses with host "." : the guide's "Wrong!" example.
        raw = text.split("://", 1)[1] if "://" in text else text
        raise _malformed(
            text,
            f"SQLite URLs take three slashes before a relative path, as in "
            f"'sqlite:///{raw}' (four for an absolute path: 'sqlite:////abs/path.db')",
        )
    raw = text.split("://", 1)[1] if "://" in text else text
    if parsed.query or "?" in raw:
        # sqlite3 would open a file named up to the "?" and ignore the options (mode=ro
        # included), or fail later on a malformed one (timeout=abc): refuse them all
        options = "&".join(f"{k}={v}" for k, v in parsed.query.items()) or raw.split("?", 1)[1]
        raise ConfigurationError(
            f"{text!r}: sessiondb takes no options in a SQLite URL (got {options!r}). Give "
            "busy_timeout=... to the store instead; a read-only SQLite database is not "
            "supported. If '?' is part of the file name, write it as %3F, as in "
            "'sqlite:///./what%3F.db'"
        )
    if _in_memory(parsed) or (parsed.database or "").startswith("file:"):
        raise ConfigurationError(
            f"{text!r}: sessiondb needs a SQLite file, e.g. 'sqlite:///./sessions.db' "
            "(in-memory databases cannot be shared between connections)"
        )
