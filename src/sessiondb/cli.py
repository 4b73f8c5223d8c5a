"""The ``sessiondb`` command: look after a sessiondb database from the shell.

A thin shell over the public API: every command opens a :class:`~sessiondb.SessionStore` and
calls its methods; there is no SQL here. Output is made with Rich for people and, with
``--json``, as JSON (Lines) for scripts. A problem is reported as one line on stderr with a
non-zero exit status (2 for bad usage, 1 for anything else), never as a traceback.

Run it as ``sessiondb ...`` or ``python -m sessiondb ...``; ``main()`` is the entry point.
``import sessiondb`` never imports this module (nor Typer or Rich).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import sessiondb
from sessiondb import Event, Session, SessionDBError, SessionStore

__all__ = ["CliError", "app", "main", "parse_duration", "parse_time"]

ENV_URL = "SESSIONDB_URL"
ENV_TABLE_PREFIX = "SESSIONDB_TABLE_PREFIX"
ENV_DEBUG = "SESSIONDB_DEBUG"


class CliError(Exception):
    """A problem reported as one line on stderr; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


app = typer.Typer(
    name="sessiondb",
    help=(
        "Look after a sessiondb database: schema, sessions, clean-up, export/import, copy "
        "between databases, backup and diagnosis. The database URL comes from --url or the "
        "SESSIONDB_URL environment variable."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# -- parsing ----------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+[wdhms])+")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (or a sum such as ``1d12h``) as a timedelta."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise typer.BadParameter(
            f"{text!r} is not a duration (use a number and a unit: 30d, 12h, 90m, 45s, 2w)"
        )
    delta = timedelta()
    for number, unit in _DURATION_PART.findall(compact):
        try:
            delta += timedelta(**{_UNIT[unit]: int(number)})
        except OverflowError:
            raise typer.BadParameter(f"{text!r} is too long a duration") from None
    if not delta:
        raise typer.BadParameter(f"{text!r} is no time at all (a duration must be positive)")
    return delta


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time (naive means UTC), or a duration meaning that long ago."""
    value = text.strip()
    if _DURATION.fullmatch(value.lower().replace(" ", "")):
        return datetime.now(timezone.utc) - parse_duration(value)
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO date (2024-05-31, 2024-05-31T12:00:00Z) "
            "nor a duration (30d, 12h)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _ago(delta: timedelta) -> datetime:
    try:
        return datetime.now(timezone.utc) - delta
    except OverflowError:
        raise CliError(f"{_fmt_delta(delta)} ago is before year 1", 2) from None


def _fmt_delta(delta: timedelta) -> str:
    """``timedelta(minutes=90)`` as ``1h30m``."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# -- options shared by the commands -----------------------------------------------------------

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=ENV_URL,
        show_envvar=True,
        metavar="URL",
        help="Database URL, e.g. sqlite:///./sessions.db or postgresql://user@host/db.",
    ),
]
TablePrefix = Annotated[
    str,
    typer.Option(
        "--table-prefix",
        envvar=ENV_TABLE_PREFIX,
        show_envvar=True,
        metavar="PREFIX",
        help="Prefix of sessiondb's table names (the table_prefix the application uses).",
    ),
]
AppOpt = Annotated[str | None, typer.Option("--app", metavar="APP", help="Only this app.")]
UserOpt = Annotated[
    str | None, typer.Option("--user", metavar="USER", help="Only this user's sessions.")
]
OlderThan = Annotated[
    timedelta | None,
    typer.Option(
        "--older-than",
        parser=parse_duration,
        metavar="DURATION",
        help="Only sessions created more than this long ago: 30d, 12h, 90m, 45s, 2w.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead.")]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation before deleting.")
]
BatchSize = Annotated[
    int,
    typer.Option("--batch-size", min=1, metavar="N", help="Rows per database round trip."),
]


class Order(str, Enum):
    updated = "updated"
    created = "created"


def _open(url: str | None, table_prefix: str, *, migrate: bool = False) -> SessionStore:
    """A store on ``url``; the schema is created or upgraded only if ``migrate``."""
    if not url:
        raise CliError(f"no database URL: pass --url URL or set {ENV_URL}", 2)
    return SessionStore(url, table_prefix=table_prefix, tz_aware=True, auto_migrate=migrate)


# -- output helpers ---------------------------------------------------------------------------


def _console() -> Console:
    """Rich console on stdout; when piped, wide enough that tables do not cut ids short."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=200)
    return console


def _fancy() -> bool:
    """Progress bars only when stdout is a terminal."""
    return Console().is_terminal


def _note(message: str) -> None:
    """An informational line on stderr (used where stdout carries data)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _size(count: int | float) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _dumps(value: Any, **options: Any) -> str:
    return json.dumps(value, ensure_ascii=False, **options)


def _session_json(session: Session, *, state: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": session.id,
        "app_name": session.app_name,
        "user_id": session.user_id,
        "title": session.title,
        "labels": list(session.labels),
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "expires_at": _iso(session.expires_at),
        "version": session.version,
        "event_count": session.event_count,
        "event_bytes": session.event_bytes,
    }
    if state:
        data["state"] = session.state
    return data


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "author": event.author,
        "created_at": _iso(event.created_at),
        "content": event.content,
        "state_delta": event.state_delta,
        "invocation_id": event.invocation_id,
        "metadata": event.metadata,
    }


def _short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else _dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@contextmanager
def _progress(
    description: str, total: float | None, *, enabled: bool, unit: str = "items"
) -> Iterator[Callable[[float], None]]:
    """A progress bar on a terminal; yields ``advance(n)``. Quiet when not ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    count: ProgressColumn = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console()) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def _confirm(question: str, yes: bool) -> None:
    """Ask on stderr, read the answer from stdin; anything but y/yes aborts."""
    if yes:
        return
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n") or not sys.stdin.isatty():  # no echo of the answer
        sys.stderr.write("\n")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("aborted: nothing was deleted (pass --yes to skip the question)")


# -- JSON Lines -------------------------------------------------------------------------------


class _JsonLines:
    """Records read lazily from a binary stream of JSON Lines, remembering the line number."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.line = 0
        self.bytes_read = 0

    def records(self, advance: Callable[[float], None]) -> Iterator[dict[str, Any]]:
        for raw in self.stream:
            self.line += 1
            self.bytes_read += len(raw)
            advance(len(raw))
            text = raw.strip()
            if self.line == 1 and text.startswith(b"\xef\xbb\xbf"):
                text = text[3:]
            if not text:
                continue
            try:
                record = json.loads(text)
            except UnicodeDecodeError:
                raise CliError(f"{self.name} line {self.line} is not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise CliError(
                    f"{self.name} line {self.line} is not JSON: {exc.msg} (column {exc.colno})"
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                raise CliError(
                    f"{self.name} line {self.line} is not a sessiondb record "
                    '(expected a JSON object with a "type" key)'
                )
            yield record


# -- commands ---------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sessiondb {sessiondb.__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command("migrate")
def migrate_command(url: Url = None, table_prefix: TablePrefix = "") -> None:
    """Create the schema, or upgrade it to this version of sessiondb."""
    with _open(url, table_prefix) as store:
        before = store.current_revision()
        after = store.migrate()
    if before == after:
        typer.echo(f"schema already at revision {after} (head)")
    elif before is None:
        typer.echo(f"created the schema at revision {after}")
    else:
        typer.echo(f"upgraded the schema from revision {before} to {after}")


@app.command("current")
def current_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit with status 1 unless the schema is at the head."),
    ] = False,
) -> None:
    """Show the schema revision and whether it is this library's head. Changes nothing."""
    with _open(url, table_prefix) as store:
        revision = store.current_revision()
    head = sessiondb.SCHEMA_HEAD
    if revision == head:
        typer.echo(f"{revision} (head)")
        return
    if revision is None:
        typer.echo(f"no schema (head is {head}; run 'sessiondb migrate')")
    else:
        typer.echo(f"{revision} (not the head {head}; run 'sessiondb migrate')")
    if check:
        raise typer.Exit(1)


@app.command("ls")
def ls_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    app_name: AppOpt = None,
    user_id: UserOpt = None,
    label: Annotated[
        str | None, typer.Option("--label", metavar="LABEL", help="Only sessions with this label.")
    ] = None,
    older_than: OlderThan = None,
    updated_before: Annotated[
        datetime | None,
        typer.Option(
            "--updated-before",
            parser=parse_time,
            metavar="WHEN",
            help="Only sessions last updated before WHEN: an ISO date/time (UTC if no "
            "offset) or a duration meaning that long ago (7d).",
        ),
    ] = None,
    updated_after: Annotated[
        datetime | None,
        typer.Option(
            "--updated-after",
            parser=parse_time,
            metavar="WHEN",
            help="Only sessions last updated after WHEN (same forms as --updated-before).",
        ),
    ] = None,
    order: Annotated[
        Order,
        typer.Option(
            "--order",
            help="updated: most recently updated first; created: oldest first by creation.",
        ),
    ] = Order.updated,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, metavar="N", help="Sessions per page; 0 for all."),
    ] = 50,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", metavar="CURSOR", help="Continue where a previous page ended."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List sessions, a page at a time (expired sessions are not listed).

    The next page's cursor is printed after the table (with --json: on stderr, so stdout
    stays pure JSON Lines, one session per line, without state).
    """
    created_before = _ago(older_than) if older_than is not None else None
    with _open(url, table_prefix) as store:
        page = store.list_sessions(
            app_name,
            user_id,
            limit=limit or None,
            cursor=cursor,
            order=order.value,
            created_before=created_before,
            updated_before=updated_before,
            updated_after=updated_after,
            label=label,
            include_state=False,
        )
    if as_json:
        out = sys.stdout
        for session in page:
            out.write(_dumps(_session_json(session, state=False)) + "\n")
        out.flush()
        if page.next_cursor:
            _note(f"next cursor: {page.next_cursor}")
        return
    console = _console()
    if not page:
        console.print("no sessions")
    else:
        table = Table(box=None, header_style="bold")
        table.add_column("ID", no_wrap=True, overflow="fold")
        table.add_column("APP")
        table.add_column("USER")
        table.add_column("TITLE", max_width=30, overflow="ellipsis", no_wrap=True)
        table.add_column("LABELS")
        table.add_column("CREATED", no_wrap=True)
        table.add_column("UPDATED", no_wrap=True)
        table.add_column("VERSION", justify="right")
        table.add_column("EVENTS", justify="right")
        table.add_column("SIZE", justify="right", no_wrap=True)
        for s in page:
            table.add_row(
                escape(s.id),
                escape(s.app_name),
                escape(s.user_id),
                escape(s.title or ""),
                escape(",".join(s.labels)),
                _time(s.created_at),
                _time(s.updated_at),
                str(s.version),
                str(s.event_count),
                _size(s.event_bytes),
            )
        console.print(table)
    if page.next_cursor:
        console.print(f"next cursor: {escape(page.next_cursor)}", soft_wrap=True)


@app.command("show")
def show_command(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session's id.")],
    url: Url = None,
    table_prefix: TablePrefix = "",
    events: Annotated[
        int, typer.Option("--events", min=0, metavar="N", help="How many of the last events.")
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Show one session: its metadata, its state as JSON and its last events."""
    with _open(url, table_prefix) as store:
        session = store.get_session_by_id(session_id, recent_events=events)
    if session is None:
        raise CliError(f"no session with id {session_id!r}")
    recent = session.events or []
    if as_json:
        data = _session_json(session, state=True)
        data["events"] = [_event_json(e) for e in recent]
        typer.echo(_dumps(data, indent=2))
        return
    console = _console()
    meta = Table(box=None, show_header=False)
    meta.add_column(style="bold", no_wrap=True)
    meta.add_column(overflow="fold")
    for key, value in (
        ("id", session.id),
        ("app", session.app_name),
        ("user", session.user_id),
        ("title", session.title or "-"),
        ("labels", ", ".join(session.labels) or "-"),
        ("created", _time(session.created_at)),
        ("updated", _time(session.updated_at)),
        ("expires", _time(session.expires_at)),
        ("version", str(session.version)),
        ("events", f"{session.event_count} ({_size(session.event_bytes)})"),
    ):
        meta.add_row(key, escape(value))
    console.print(meta)
    console.print()
    console.print("[bold]state[/bold]")
    console.print_json(data=session.state)
    if events == 0:
        return
    console.print()
    if not recent:
        console.print("[bold]events[/bold]: none")
        return
    shown = f"last {len(recent)} of {session.event_count}"
    console.print(f"[bold]events[/bold] ({shown})")
    table = Table(box=None, header_style="bold")
    table.add_column("SEQ", justify="right")
    table.add_column("TIME", no_wrap=True)
    table.add_column("AUTHOR")
    table.add_column("CONTENT", overflow="fold")
    table.add_column("STATE DELTA", overflow="fold")
    for event in recent:
        table.add_row(
            str(event.seq),
            _time(event.created_at),
            escape(event.author),
            escape(_short(event.content)),
            escape(", ".join(event.state_delta or {})),
        )
    console.print(table)


@app.command("rm")
def rm_command(
    session_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="The id of each session to delete.")
    ],
    url: Url = None,
    table_prefix: TablePrefix = "",
    yes: YesOpt = False,
) -> None:
    """Delete sessions by id, with their events. Asks first unless --yes."""
    ids = list(dict.fromkeys(session_ids))
    with _open(url, table_prefix) as store:
        found: list[Session] = []
        for sid in ids:
            session = store.get_session_by_id(sid)
            if session is None:
                raise CliError(f"no session with id {sid!r} (nothing was deleted)")
            found.append(session)
        if len(found) == 1:
            s = found[0]
            question = (
                f"Delete session {s.id} (app {s.app_name!r}, user {s.user_id!r}, "
                f"{_plural(s.event_count, 'event')})?"
            )
        else:
            question = f"Delete {len(found)} sessions?"
        _confirm(question, yes)
        deleted = sum(store.delete_session(s.id) for s in found)
    typer.echo(f"deleted {_plural(deleted, 'session')}")


@app.command("clear")
def clear_command(
    app_name: Annotated[
        str, typer.Option("--app", metavar="APP", help="The app whose sessions to delete.")
    ],
    user_id: UserOpt = None,
    url: Url = None,
    table_prefix: TablePrefix = "",
    yes: YesOpt = False,
) -> None:
    """Delete every session of an app (or of one user in it). Asks first unless --yes."""
    with _open(url, table_prefix) as store:
        count = store.count_sessions(app_name, user_id)
        whose = f"app {app_name!r}" + (f", user {user_id!r}" if user_id is not None else "")
        if count == 0:
            typer.echo(f"no sessions in {whose}")
            return
        _confirm(f"Delete all {_plural(count, 'session')} of {whose}?", yes)
        deleted = store.clear_sessions(app_name, user_id)
    typer.echo(f"deleted {_plural(deleted, 'session')}")


@app.command("purge")
def purge_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    older_than: OlderThan = None,
    app_name: AppOpt = None,
    user_id: UserOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            metavar="N",
            help="Sessions deleted per batch (default 1000; 200 on SQLite).",
        ),
    ] = None,
) -> None:
    """Delete expired sessions, or with --older-than the sessions created before then.

    Deletes in batches, so the database is never locked for long; safe to run from cron.
    """
    if older_than is None and (app_name is not None or user_id is not None):
        raise CliError("--app and --user select sessions for --older-than; add --older-than", 2)
    with _open(url, table_prefix) as store:
        if older_than is None:
            count = store.purge_expired(batch_size=batch_size, dry_run=dry_run)
            what = _plural(count, "expired session")
        else:
            _ago(older_than)
            count = store.delete_sessions(
                app_name, user_id, older_than=older_than, batch_size=batch_size, dry_run=dry_run
            )
            what = f"{_plural(count, 'session')} older than {_fmt_delta(older_than)}"
    if dry_run:
        typer.echo(f"would delete {what} (dry run)")
    else:
        typer.echo(f"deleted {what}")


@app.command("stats")
def stats_command(
    url: Url = None, table_prefix: TablePrefix = "", as_json: JsonOpt = False
) -> None:
    """Sessions, users, events and bytes per app, with the oldest and newest session."""
    with _open(url, table_prefix) as store:
        stats = store.stats()
    if as_json:
        for row in stats:
            typer.echo(
                _dumps(
                    {
                        "app_name": row.app_name,
                        "sessions": row.sessions,
                        "users": row.users,
                        "events": row.events,
                        "state_bytes": row.state_bytes,
                        "event_bytes": row.event_bytes,
                        "oldest_created_at": _iso(row.oldest_created_at),
                        "newest_updated_at": _iso(row.newest_updated_at),
                    }
                )
            )
        return
    console = _console()
    if not stats:
        console.print("no sessions")
        return
    table = Table(box=None, header_style="bold", show_footer=len(stats) > 1)
    total = (
        sum(r.sessions for r in stats),
        sum(r.events for r in stats),
        sum(r.state_bytes for r in stats),
        sum(r.event_bytes for r in stats),
    )
    table.add_column("APP", footer="total")
    table.add_column("SESSIONS", justify="right", footer=str(total[0]))
    table.add_column("USERS", justify="right")
    table.add_column("EVENTS", justify="right", footer=str(total[1]))
    table.add_column("STATE", justify="right", footer=_size(total[2]))
    table.add_column("EVENT DATA", justify="right", footer=_size(total[3]))
    table.add_column("OLDEST CREATED", no_wrap=True)
    table.add_column("NEWEST UPDATED", no_wrap=True)
    for row in stats:
        table.add_row(
            escape(row.app_name),
            str(row.sessions),
            str(row.users),
            str(row.events),
            _size(row.state_bytes),
            _size(row.event_bytes),
            _time(row.oldest_created_at),
            _time(row.newest_updated_at),
        )
    console.print(table)


def _tally(counts: dict[str, int], record: dict[str, Any]) -> None:
    kind = record.get("type")
    counts[str(kind)] = counts.get(str(kind), 0) + 1
    if kind == "session":
        counts["event"] = counts.get("event", 0) + len(record.get("events") or ())


def _summary(counts: dict[str, int]) -> str:
    return (
        f"{_plural(counts.get('session', 0), 'session')} "
        f"({_plural(counts.get('event', 0), 'event')}), "
        f"{_plural(counts.get('app_state', 0), 'app state')}, "
        f"{_plural(counts.get('user_state', 0), 'user state')}"
    )


@app.command("export")
def export_command(
    url: Url = None,
    table_prefix: TablePrefix = "",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            help="Write to FILE (replaced only once the export is complete) instead of stdout.",
        ),
    ] = None,
    app_name: AppOpt = None,
    batch_size: BatchSize = 500,
) -> None:
    """Write sessions (with their events) and app/user state as JSON Lines.

    Streams: memory use does not grow with the database. The result is what 'import' reads.
    """
    counts: dict[str, int] = {}
    with ExitStack() as stack:
        store = stack.enter_context(_open(url, table_prefix))
        if output is None:
            sink: IO[bytes] = sys.stdout.buffer
            part = None
        else:
            part = output.with_name(output.name + ".part")
            try:
                sink = stack.enter_context(part.open("wb"))
            except OSError as exc:
                raise CliError(f"cannot write {output}: {exc.strerror}") from None
        try:
            fancy = output is not None and _fancy()
            total = store.count_sessions(app_name) if fancy else None
            advance = stack.enter_context(_progress("exporting", total, enabled=fancy))
            for record in store.export_records(app_name, batch_size=batch_size):
                sink.write(_dumps(record).encode() + b"\n")
                _tally(counts, record)
                if record.get("type") == "session":
                    advance(1)
            sink.flush()
        except BaseException:
            if part is not None:
                sink.close()
                part.unlink(missing_ok=True)
            raise
    if output is not None and part is not None:
        os.replace(part, output)
    _note(f"exported {_summary(counts)}" + (f" to {output}" if output else ""))


@app.command("import")
def import_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]",
            help="JSON Lines written by 'export'; stdin if omitted or '-'.",
        ),
    ] = None,
    url: Url = None,
    table_prefix: TablePrefix = "",
    batch_size: BatchSize = 500,
) -> None:
    """Read JSON Lines written by 'export' into the database (creating the schema if needed).

    Idempotent: sessions that already exist are skipped, so an interrupted import can simply
    be run again. Streams: memory use does not grow with the file.
    """
    if file is None and sys.stdin.isatty():
        raise CliError("no FILE given and stdin is a terminal: name a file or pipe one in", 2)
    with ExitStack() as stack:
        if file is None or str(file) == "-":
            source: IO[bytes] = sys.stdin.buffer
            name, size = "<stdin>", None
        else:
            try:
                source = stack.enter_context(file.open("rb"))
            except OSError as exc:
                raise CliError(f"cannot read {file}: {exc.strerror}") from None
            name, size = str(file), file.stat().st_size
        reader = _JsonLines(source, name)
        store = stack.enter_context(_open(url, table_prefix, migrate=True))
        fancy = _fancy()
        advance = stack.enter_context(
            _progress("importing", size, enabled=fancy, unit="bytes" if size else "items")
        )
        try:
            result = store.import_records(reader.records(advance), batch_size=batch_size)
        except SessionDBError as exc:
            raise CliError(f"{_one_line(str(exc))} (reading {name}, line {reader.line})") from exc
    typer.echo(
        f"imported {_plural(result.sessions, 'session')} "
        f"({_plural(result.events, 'event')}), {_plural(result.app_states, 'app state')}, "
        f"{_plural(result.user_states, 'user state')}; "
        f"skipped {result.skipped} already present"
    )


@app.command("copy")
def copy_command(
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            envvar=ENV_URL,
            show_envvar=True,
            metavar="URL",
            help="The database to copy from.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--to", metavar="URL", help="The database to copy into (required)."),
    ] = None,
    table_prefix: TablePrefix = "",
    from_table_prefix: Annotated[
        str | None,
        typer.Option(
            "--from-table-prefix", metavar="PREFIX", help="Table prefix of the source only."
        ),
    ] = None,
    to_table_prefix: Annotated[
        str | None,
        typer.Option(
            "--to-table-prefix", metavar="PREFIX", help="Table prefix of the target only."
        ),
    ] = None,
    app_name: AppOpt = None,
    batch_size: BatchSize = 500,
) -> None:
    """Copy everything from one database to another, e.g. SQLite to PostgreSQL.

    Creates the target's schema if needed. Sessions already in the target are skipped, so an
    interrupted copy continues when run again. At the end the session counts and checksums
    of both sides are compared; the exit status is 1 if they differ.
    """
    if not target:
        raise CliError("missing option '--to URL'", 2)
    if not source:
        raise CliError(f"no source database: pass --from URL or set {ENV_URL}", 2)
    src_prefix = table_prefix if from_table_prefix is None else from_table_prefix
    dst_prefix = table_prefix if to_table_prefix is None else to_table_prefix
    if source == target and src_prefix == dst_prefix:
        raise CliError("--from and --to are the same database and table prefix", 2)
    console = _console()
    with _open(source, src_prefix) as src, _open(target, dst_prefix, migrate=True) as dst:
        fancy = _fancy()
        total = src.count_sessions(app_name)

        def records(advance: Callable[[float], None]) -> Iterator[dict[str, Any]]:
            for record in src.export_records(app_name, batch_size=batch_size):
                yield record
                if record.get("type") == "session":
                    advance(1)

        with _progress("copying", total, enabled=fancy) as advance:
            result = dst.import_records(records(advance), batch_size=batch_size)
        console.print(
            f"copied {_plural(result.sessions, 'session')} "
            f"({_plural(result.events, 'event')}), {_plural(result.app_states, 'app state')}, "
            f"{_plural(result.user_states, 'user state')}; "
            f"skipped {result.skipped} already present",
            soft_wrap=True,
        )
        counts = (src.count_sessions(app_name), dst.count_sessions(app_name))
        sums = (src.checksum(app_name), dst.checksum(app_name))
    if counts[0] != counts[1] or sums[0] != sums[1]:
        raise CliError(
            f"verification failed: source has {_plural(counts[0], 'session')} "
            f"(checksum {sums[0]}), target has {counts[1]} (checksum {sums[1]})"
        )
    console.print(
        f"verified: {_plural(counts[0], 'session')} on both sides, checksum {sums[0]}",
        soft_wrap=True,
    )


_DUMP_TOOLS = {
    "postgresql": "pg_dump",
    "mysql": "mysqldump (or mariadb-dump)",
}


@app.command("backup")
def backup_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the copy.")],
    url: Url = None,
    table_prefix: TablePrefix = "",
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace FILE if it exists.")
    ] = False,
) -> None:
    """Copy a SQLite database with SQLite's online backup, safely while it is in use.

    The copy is consistent even while the application writes. For PostgreSQL use pg_dump, for
    MySQL/MariaDB mysqldump.
    """
    with _open(url, table_prefix) as store:
        backend = store.backend
        if backend != "sqlite":
            tool = _DUMP_TOOLS.get(backend, "the database's own dump tool")
            raise CliError(f"backup copies SQLite databases only; for {backend} use {tool}")
        if file.exists() or file.is_symlink():
            if not force:
                raise CliError(f"{file} exists (pass --force to replace it)")
            if file.is_dir():
                raise CliError(f"{file} is a directory")
            file.unlink()
        if not file.parent.is_dir():
            raise CliError(f"cannot write {file}: no directory {file.parent}")
        store.backup(str(file))
    typer.echo(f"backed up to {file} ({_size(file.stat().st_size)})")


@app.command("import-adk")
def import_adk_command(
    source: Annotated[
        str,
        typer.Option(
            "--from", metavar="URL", help="The database Google ADK's DatabaseSessionService used."
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--to", envvar=ENV_URL, show_envvar=True, metavar="URL", help="The sessiondb database."
        ),
    ] = None,
    table_prefix: TablePrefix = "",
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Count and skip events that cannot be read safely instead of stopping.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move sessions, events and app/user state from Google ADK's own tables into sessiondb.

    Reads ADK's current (JSON) and legacy (pickled) schemas; legacy pickles are unpickled with
    an allow-list, never as arbitrary classes. Running it twice imports nothing twice.
    """
    if url is None:
        raise CliError("no target database: pass --to URL or set SESSIONDB_URL")
    try:
        from .adk_import import import_adk
    except ImportError as exc:
        raise CliError(f"{exc}") from exc
    counts = import_adk(source, url, table_prefix=table_prefix, skip_unreadable=skip_unreadable)
    if as_json:
        typer.echo(_dumps(counts))
        return
    typer.echo(
        f"imported {_plural(counts.get('sessions', 0), 'session')}, "
        f"{_plural(counts.get('events', 0), 'event')}, "
        f"{counts.get('app_states', 0)} app and {counts.get('user_states', 0)} user states "
        f"({counts.get('skipped_sessions', 0)} already there, "
        f"{counts.get('unreadable_events', 0)} unreadable events)"
    )


@app.command("doctor")
def doctor_command(
    url: Url = None, table_prefix: TablePrefix = "", as_json: JsonOpt = False
) -> None:
    """Check the database: schema revision, indexes, SQLite pragmas, drivers, and advice."""
    with _open(url, table_prefix) as store:
        report = store.doctor()
    if as_json:
        typer.echo(_dumps(report, indent=2, default=str))
        return
    console = _console()
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


# -- entry point ------------------------------------------------------------------------------

# Typer raises Click's exceptions; newer Typers vendor Click, so find its base class by name.
_CLICK_EXCEPTION: type[BaseException] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _fail(message: str, exit_code: int) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"sessiondb: error: {_one_line(message)}\n")
    sys.stderr.flush()
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    args: Iterable[str] | None = list(argv) if argv is not None else None
    try:
        result = app(args=args, prog_name="sessiondb", standalone_mode=False)
    except CliError as exc:
        return _fail(str(exc), exc.exit_code)
    except SessionDBError as exc:
        return _fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:
        if isinstance(exc, _CLICK_EXCEPTION):
            format_message = getattr(exc, "format_message", None)
            message = format_message() if callable(format_message) else str(exc)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            return _fail(message, int(getattr(exc, "exit_code", 2)))
        if type(exc).__name__ == "Abort":
            return _fail("aborted", 1)
        if isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            return _fail(f"{exc.strerror}{where}", 1)
        if os.environ.get(ENV_DEBUG):
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (set {ENV_DEBUG}=1 to see the traceback)", 1
        )
    return result if isinstance(result, int) else 0
