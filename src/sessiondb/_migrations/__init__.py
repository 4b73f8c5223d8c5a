"""sessiondb's Alembic environment, shipped inside the package.

The schema is upgraded under a lock so that several processes may start at once: an advisory
lock on PostgreSQL and MySQL/MariaDB, an exclusive transaction on SQLite. sessiondb keeps its own
version table (``sessiondb_alembic_version``), apart from the host application's.
"""

from __future__ import annotations

import threading
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .._runner import Cx

__all__ = [
    "HEAD",
    "REVISIONS",
    "history",
    "offline_sql",
    "read_revision",
    "refuse_foreign_tables",
    "upgrade",
]

#: Every revision this library knows, oldest first; the last is the head.
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
HEAD = REVISIONS[-1]

#: Alembic keeps its migration context in module globals: upgrades in one process take turns.
UPGRADE_LOCK = threading.Lock()


def table_prefix() -> str:
    """The table-name prefix of the running migration (for revision scripts)."""
    from alembic import context

    return str(context.config.attributes.get("table_prefix", ""))


def read_revision(cx: Cx, prefix: str) -> str | None:
    """The database's sessiondb revision, or None when it has no sessiondb schema yet."""
    from .._queries import Stmt
    from .._runner import classify
    from .._schema import version_table_name

    stmt = Stmt(
        f"SELECT version_num FROM {version_table_name(prefix)}",
        (),
        columns=("version_num",),
        writes=False,
    )
    cx.connect()
    try:
        row = cx.one(stmt, {})
    except cx.dbapi.Error as exc:
        # no table: no schema yet. SQLite busy: another process is creating the file's schema
        # (the upgrade takes the lock, waits for it, and finds out). Any other error is the
        # runner's to translate.
        if classify(exc, cx.backend) not in ("no_table", "busy"):
            raise
        return None
    return None if row is None else str(row[stmt.at("version_num")])


def refuse_foreign_tables(connection: Connection, prefix: str) -> None:
    """Refuse to create sessiondb's tables where tables of those names exist that sessiondb did
    not make (no sessiondb revision recorded): Google ADK's DatabaseSessionService names its
    tables ``sessions`` and ``events`` too. Run under the upgrade lock, so that another process
    creating sessiondb's schema at the same moment is not taken for a stranger."""
    from sqlalchemy import inspect

    from .._schema import tables, version_table_name
    from ..errors import SchemaError

    present = set(inspect(connection).get_table_names())
    if version_table_name(prefix) in present:
        return
    clash = sorted(present & {t.name for t in tables(prefix).metadata.sorted_tables})
    if clash:
        fix = f"{prefix}sdb_"
        raise SchemaError(
            f"the database already has tables named {', '.join(clash)} that sessiondb did not "
            f"make (there is no {version_table_name(prefix)} table): Google ADK's "
            "DatabaseSessionService, for one, names its tables 'sessions' and 'events'. Give "
            f"sessiondb its own table names with a prefix: table_prefix={fix!r} "
            f"(`--table-prefix {fix}` on the command line)"
        )


def upgrade(connection: Connection, prefix: str, revision: str = "head") -> None:
    """Upgrade the schema reachable through ``connection`` (a sync SQLAlchemy Connection)."""
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("sessiondb") / "_migrations"))
    cfg.attributes["connection"] = connection
    cfg.attributes["table_prefix"] = prefix
    # an upgrade by sessiondb checks for strangers' tables; `alembic stamp` over tables an
    # operator made (partitioned ones, docs/deploy.md) does not
    cfg.attributes["refuse_foreign_tables"] = True
    command.upgrade(cfg, revision)


def _config(prefix: str) -> Any:
    from importlib.resources import files

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("sessiondb") / "_migrations"))
    cfg.attributes["table_prefix"] = prefix
    return cfg


def offline_sql(url: str, prefix: str, start: str | None, out: IO[str]) -> None:
    """Write to ``out`` the SQL that upgrades a schema at revision ``start`` (None: no schema)
    to the head, for the dialect of ``url`` (a SQLAlchemy URL; nothing is connected to)."""
    from alembic import command

    cfg = _config(prefix)
    cfg.output_buffer = out
    cfg.attributes["offline_url"] = url
    with UPGRADE_LOCK:
        command.upgrade(cfg, f"{start}:head" if start else "head", sql=True)


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, oldest first: (revision, the one before it, its description)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config(""))
    found = [(str(r.revision), r.down_revision, str(r.doc or "")) for r in script.walk_revisions()]
    return [(rev, None if down is None else str(down), doc) for rev, down, doc in reversed(found)]
