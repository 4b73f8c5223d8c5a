"""Database URLs: parsing, driver choice, and the helpful errors when a URL is wrong.

Every URL resolves to a :class:`Target`: the backend (``sqlite``, ``postgresql`` or ``mysql``),
the SQLAlchemy URL for the synchronous driver, and the one for the asynchronous driver. A bare
``postgresql://`` or ``mysql://`` maps to drivers that install from wheels (psycopg 3 / asyncpg,
PyMySQL / aiomysql); a URL naming a driver keeps it for its side and gets the default for the other.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigurationError, DriverNotInstalledError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["Target", "resolve_url"]

FORMS = (
    "sqlite:///./relative.db, sqlite:////absolute/path.db, "
    "postgresql://user:password@host:5432/database, "
    "mysql://user:password@host:3306/database"
)

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

    @property
    def location(self) -> str:
        """``host:port`` for servers, the file path for SQLite."""
        if self.backend == "sqlite":
            return self.sync_url.database or ":memory:"
        port = self.sync_url.port or (5432 if self.backend == "postgresql" else 3306)
        return f"{self.sync_url.host or 'localhost'}:{port}"

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
    return ConfigurationError(f"malformed database URL {text!r}: {why}. Use one of: {FORMS}")


def resolve_url(url: str | URL) -> Target:
    """Parse ``url`` and choose drivers, or raise :class:`ConfigurationError` saying why not."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    if isinstance(url, str):
        if not url.strip():
            raise _malformed(url, "it is empty")
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError) as exc:
            raise _malformed(url, "it does not have the form dialect[+driver]://...") from exc
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
    sync_url = parsed.set(drivername=f"{base}+{sync_driver}")
    async_url = parsed.set(drivername=f"{base}+{async_driver}")
    return Target(backend, sync_url, async_url, safe)


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
    if parsed.database in (None, "", ":memory:") or (parsed.database or "").startswith("file:"):
        raise ConfigurationError(
            f"{text!r}: sessiondb needs a SQLite file, e.g. 'sqlite:///./sessions.db' "
            "(in-memory databases cannot be shared between connections)"
        )
