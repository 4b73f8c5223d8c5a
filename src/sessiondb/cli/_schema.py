"""Commands on the schema: migrate, current, doctor and uninstall."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import sessiondb

from ._app import (
    CliError,
    JsonOpt,
    TablePrefix,
    Url,
    YesOpt,
    confirm,
    database_url,
    open_store,
    sqlite_path,
)
from ._output import dumps, note, one_line, plural, stdout_console


def migrate_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the SQL of the upgrade for the URL's dialect (PostgreSQL, MySQL, "
            "MariaDB) instead of running it; nothing is connected to.",
        ),
    ] = False,
    from_revision: Annotated[
        str | None,
        typer.Option(
            "--from-revision",
            metavar="REV",
            help="With --sql: the revision the database is at (default: no schema yet).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the schema, or upgrade it to this version of sessiondb (--sql: print the SQL)."""
    if from_revision is not None and not sql:
        raise CliError("--from-revision goes with --sql", 2)
    if sql:
        _offline_sql(url, table_prefix, from_revision, as_json)
        return
    with open_store(url, table_prefix, create=True) as store:
        before = store.current_revision()
        after = store.migrate()
    if as_json:
        typer.echo(dumps({"before": before, "after": after, "changed": before != after}))
        return
    if before == after:
        typer.echo(f"schema already at revision {after} (head)")
    elif before is None:
        typer.echo(f"created the schema at revision {after}")
    else:
        typer.echo(f"upgraded the schema from revision {before} to {after}")


def _offline_sql(url: str | None, prefix: str, start: str | None, as_json: bool) -> None:
    import io

    from sessiondb import _migrations
    from sessiondb._urls import resolve_url

    url = database_url(url)
    sqlite_path(url)  # a malformed URL: status 2
    target = resolve_url(url)
    if target.backend == "sqlite":
        raise CliError(
            "--sql prints SQL for PostgreSQL and MySQL/MariaDB: SQLite's upgrades rebuild "
            "tables from the live database; run 'sessiondb migrate' on the file instead",
            2,
        )
    if start is not None and start not in _migrations.REVISIONS:
        known = ", ".join(_migrations.REVISIONS)
        raise CliError(f"--from-revision {start!r} is not a revision (they are {known})", 2)
    if start == _migrations.HEAD:
        text = ""
    else:
        buffer = io.StringIO()
        _migrations.offline_sql(
            target.sync_url.render_as_string(hide_password=False), prefix, start, buffer
        )
        text = buffer.getvalue()
    if as_json:
        typer.echo(dumps({"from": start, "to": _migrations.HEAD, "sql": text}))
    else:
        sys.stdout.write(text or f"-- already at {_migrations.HEAD} (head): nothing to run\n")


def history_command(as_json: JsonOpt = False) -> None:
    """List sessiondb's schema revisions, oldest first (no database needed)."""
    from sessiondb import _migrations

    revisions = _migrations.history()
    if as_json:
        for rev, down, doc in revisions:
            typer.echo(dumps({"revision": rev, "down_revision": down, "description": doc}))
        return
    for rev, down, doc in revisions:
        head = " (head)" if rev == _migrations.HEAD else ""
        typer.echo(f"{down or '<base>'} -> {rev}{head}: {doc}")


def current_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit with status 1 unless the schema is at the head."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the schema revision and whether it is this library's head. Changes nothing."""
    with open_store(url, table_prefix) as store:
        revision = store.current_revision()
    head = sessiondb.SCHEMA_HEAD
    if as_json:
        typer.echo(dumps({"revision": revision, "head": head, "at_head": revision == head}))
        if check and revision != head:
            raise typer.Exit(1)
        return
    if revision == head:
        typer.echo(f"{revision} (head)")
        return
    if revision is None:
        typer.echo(f"no schema (head is {head}; run 'sessiondb migrate')")
    else:
        typer.echo(f"{revision} (not the head {head}; run 'sessiondb migrate')")
    if check:
        raise typer.Exit(1)


def doctor_command(
    url: Url = None, table_prefix: TablePrefix = "", as_json: JsonOpt = False
) -> None:
    """Check the database: schema revision, indexes, SQLite pragmas, drivers, and advice."""
    with open_store(url, table_prefix) as store:
        report = store.doctor()
        if report.get("revision") == report.get("head"):
            backlog = store.purge_expired(dry_run=True)
            report["expired_awaiting_purge"] = backlog
            if backlog:
                report.setdefault("advice", []).append(
                    f"{plural(backlog, 'expired session')} (or LangGraph thread) await "
                    "deletion: run `sessiondb purge` (from cron, e.g. hourly)"
                )
    if as_json:
        typer.echo(dumps(report, indent=2, default=str))
        return
    console = stdout_console()
    revision, head = report.get("revision"), report.get("head")
    if revision == head:
        schema = f"{revision} (head)"
    elif revision is None:
        schema = f"none (head is {head})"
    else:
        schema = f"{revision} (head is {head})"
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("backend", escape(str(report.get("backend"))))
    table.add_row("url", escape(str(report.get("url"))))
    if report.get("server"):
        table.add_row("server", escape(str(report["server"])))
    table.add_row("schema", escape(schema))
    indexes = report.get("indexes") or []
    table.add_row("indexes", escape(", ".join(map(str, indexes)) or "none"))
    for name, value in (report.get("pragmas") or {}).items():
        table.add_row(f"pragma {escape(str(name))}", escape(str(value)))
    for name, value in (report.get("drivers") or {}).items():
        table.add_row(escape(str(name)), escape(str(value)))
    console.print(table)
    advice = report.get("advice") or []
    console.print()
    if advice:
        console.print("[bold]advice[/bold]")
        for line in advice:
            console.print(f"- {escape(str(line))}", soft_wrap=True)
    else:
        console.print("no advice: all looks well")


@dataclass(frozen=True)
class _Installed:
    """What ``uninstall`` finds: sessiondb's tables in a database, and their sessions."""

    url: str  # password hidden
    version_table: str  # sessiondb's Alembic version table, for this prefix
    tables: list[str]  # sessiondb's tables that exist, its version table last
    sessions: int  # rows of the sessions table, expired ones included
    lookalikes: list[str]  # tables named like sessiondb's, in a database without its version table


def _installed(url: str, table_prefix: str) -> _Installed:
    """Look for sessiondb's tables (with ``table_prefix``) in the database at ``url``."""
    import sqlalchemy as sa

    from sessiondb._schema import lock_table_name, tables, version_table_name
    from sessiondb._urls import resolve_url

    target = resolve_url(url)
    schema = tables(table_prefix)
    # the schema lock's table exists on Galera only
    ours = [t.name for t in schema.metadata.sorted_tables] + [lock_table_name(table_prefix)]
    version = version_table_name(table_prefix)
    engine = sa.create_engine(target.sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            found = [name for name in ours if name in present]
            if version not in present:
                return _Installed(target.safe_url, version, [], 0, found)
            sessions = 0
            if schema.sessions.name in present:
                count = sa.select(sa.func.count()).select_from(schema.sessions)
                sessions = conn.execute(count).scalar_one()
    except sa.exc.SQLAlchemyError as exc:
        reason = one_line(str(getattr(exc, "orig", None) or exc))
        raise CliError(f"cannot read the tables of {target.safe_url}: {reason}") from exc
    finally:
        engine.dispose()
    return _Installed(target.safe_url, version, [*found, version], sessions, [])


def uninstall_command(
    url: Url = None, table_prefix: TablePrefix = "", yes: YesOpt = False, as_json: JsonOpt = False
) -> None:
    """Drop every table sessiondb created, all data included. Asks first unless --yes.

    Only sessiondb's tables with the given --table-prefix are dropped (its version table
    included); the application's own tables and other prefixes are left alone.
    """
    url = database_url(url)
    with open_store(url, table_prefix) as store:
        store.current_revision()  # a bad URL or an unreachable server, reported clearly
    found = _installed(url, table_prefix)
    where = found.url + (f" (table prefix {table_prefix!r})" if table_prefix else "")
    if found.lookalikes:
        raise CliError(
            f"{where} has tables named like sessiondb's ({', '.join(found.lookalikes)}) but "
            f"no {found.version_table} table: they are not sessiondb's; nothing was dropped"
        )
    if not found.tables:
        if as_json:
            typer.echo(dumps({"dropped": [], "sessions": 0, "url": found.url}))
            return
        typer.echo(f"no sessiondb tables in {where}: nothing to drop")
        return
    what = f"{plural(len(found.tables), 'table')} ({plural(found.sessions, 'session')})"
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"uninstall would drop {what} from {where}, and stdin is not a terminal "
                "to confirm it: pass --yes",
                2,
            )
        note(f"This drops sessiondb's tables from {where}:")
        note(f"  {', '.join(found.tables)}")
        note(
            f"with {plural(found.sessions, 'session')} (expired ones included) and all their data."
        )
        confirm("Drop them?", yes, refusal="nothing was dropped")
    from sqlalchemy.exc import SQLAlchemyError

    from sessiondb._schema import drop_all

    try:
        drop_all(url, table_prefix)
    except SQLAlchemyError as exc:
        reason = one_line(str(getattr(exc, "orig", None) or exc))
        raise CliError(f"dropping the tables failed: {reason}") from exc
    if as_json:
        typer.echo(dumps({"dropped": found.tables, "sessions": found.sessions, "url": found.url}))
        return
    typer.echo(f"dropped {what} from {where}: {', '.join(found.tables)}")
