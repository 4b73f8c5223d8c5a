"""Commands on the sessions themselves: ls, show, rm, clear, purge and stats."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sessiondb import AmbiguousSessionError, Session, SessionList, SessionStore

from ._app import (
    AppOpt,
    CliError,
    Format,
    FormatOpt,
    JsonOpt,
    OlderThan,
    Order,
    TablePrefix,
    Url,
    UserOpt,
    YesOpt,
    ago,
    confirm,
    fmt_delta,
    open_store,
    output_format,
    parse_time,
)
from ._output import (
    dumps,
    event_json,
    fmt_size,
    fmt_time,
    iso,
    note,
    plural,
    session_json,
    short,
    stdout_console,
)

IncludeExpired = Annotated[
    bool,
    typer.Option(
        "--include-expired",
        help="Also expired sessions that 'sessiondb purge' has not deleted yet.",
    ),
]


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
    include_expired: IncludeExpired = False,
    fmt: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List sessions, a page at a time (expired sessions only with --include-expired).

    Rows are streamed page by page; beyond a screenful the table becomes plain columns. The
    next page's cursor (when --limit cut the listing short) is printed after the table; with
    another --format on stderr, so stdout stays pure data.
    """
    created_before = ago(older_than) if older_than is not None else None
    fmt = output_format(fmt, as_json)
    with open_store(url, table_prefix) as store:
        filters = dict(
            order=order.value,
            created_before=created_before,
            updated_before=updated_before,
            updated_after=updated_after,
            label=label,
            include_state=False,
            include_expired=include_expired,
        )
        pages = _pages(store, app_name, user_id, limit, cursor, filters)
        next_cursor = _write_rows(fmt, pages)
    if next_cursor:
        if fmt is Format.table:
            stdout_console().print(f"next cursor: {escape(next_cursor)}", soft_wrap=True)
        else:
            note(f"next cursor: {next_cursor}")


_PAGE = 1000  # sessions read per query while streaming a listing
SCREEN = 100  # rows shown as a Rich table; a longer listing is written as plain columns


def _pages(
    store: SessionStore,
    app_name: str | None,
    user_id: str | None,
    limit: int,
    cursor: str | None,
    filters: dict[str, Any],
) -> Iterator[SessionList]:
    """The listing a page of at most _PAGE rows at a time, up to ``limit`` rows (0: all)."""
    left = limit or None
    while True:
        size = _PAGE if left is None else min(_PAGE, left)
        page = store.list_sessions(app_name, user_id, limit=size, cursor=cursor, **filters)
        yield page
        cursor = page.next_cursor
        if left is not None:
            left -= len(page)
        if cursor is None or left == 0:
            return


_COLUMNS = ("ID", "APP", "USER", "TITLE", "LABELS", "CREATED", "UPDATED", "VERSION", "EVENTS",
            "SIZE")  # fmt: skip
_CSV_COLUMNS = ("id", "app_name", "user_id", "title", "labels", "created_at", "updated_at",
                "expires_at", "version", "event_count", "event_bytes")  # fmt: skip


def _cells(s: Session) -> list[str]:
    return [
        s.id, s.app_name, s.user_id, s.title or "", ",".join(s.labels), fmt_time(s.created_at),
        fmt_time(s.updated_at), str(s.version), str(s.event_count), fmt_size(s.event_bytes),
    ]  # fmt: skip


def _write_rows(fmt: Format, pages: Iterator[SessionList]) -> str | None:
    """Write the sessions of ``pages`` as they come; return the last page's next cursor."""
    out = sys.stdout
    next_cursor: str | None = None
    if fmt is Format.table:
        first: list[Session] = []
        for page in pages:  # up to a screenful, to choose the layout
            first.extend(page)
            next_cursor = page.next_cursor
            if len(first) > SCREEN:
                break
        if len(first) <= SCREEN:
            _rich_table(first)
            return next_cursor
        widths = [len(c) for c in _COLUMNS]
        for s in first:
            widths = [max(w, len(v)) for w, v in zip(widths, _cells(s), strict=True)]
        widths[3] = min(widths[3], 30)
        right = {7, 8, 9}

        def line(cells: list[str]) -> str:
            if len(cells[3]) > 30:
                cells[3] = cells[3][:29] + "…"
            parts = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))]  # fmt: skip
            return "  ".join(parts).rstrip() + "\n"

        out.write(line(list(_COLUMNS)))
        out.writelines(line(_cells(s)) for s in first)
        for page in pages:
            out.writelines(line(_cells(s)) for s in page)
            next_cursor = page.next_cursor
        out.flush()
        return next_cursor
    writer = csv.writer(out, lineterminator="\n") if fmt is Format.csv else None
    if writer is not None:
        writer.writerow(_CSV_COLUMNS)
    count = 0
    if fmt is Format.json:
        out.write("[")
    for page in pages:
        for s in page:
            if writer is not None:
                data = session_json(s, state=False)
                data["labels"] = ",".join(s.labels)
                writer.writerow([data[k] for k in _CSV_COLUMNS])
            elif fmt is Format.json:
                out.write(("\n" if count == 0 else ",\n") + dumps(session_json(s, state=False)))
            else:
                out.write(dumps(session_json(s, state=False)) + "\n")
            count += 1
        next_cursor = page.next_cursor
    if fmt is Format.json:
        out.write("\n]\n" if count else "]\n")
    out.flush()
    return next_cursor


def _rich_table(sessions: list[Session]) -> None:
    console = stdout_console()
    if not sessions:
        console.print("no sessions")
        return
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
    for s in sessions:
        table.add_row(*map(escape, _cells(s)))
    console.print(table)


OwnerApp = Annotated[
    str | None,
    typer.Option(
        "--app", metavar="APP", help="The session's app (with --user: when users share the id)."
    ),
]
OwnerUser = Annotated[
    str | None,
    typer.Option(
        "--user", metavar="USER", help="The session's user (with --app: when users share the id)."
    ),
]


def _by_id(
    store: SessionStore,
    session_id: str,
    app_name: str | None,
    user_id: str | None,
    recent_events: int = 0,
    include_expired: bool = False,
) -> Session | None:
    """The session with this id (of this owner, if given); a usage error when the id alone
    names several users' sessions."""
    if (app_name is None) != (user_id is None):
        raise CliError("--app and --user go together: give both, or neither", 2)
    try:
        return store.get_session_by_id(
            session_id,
            recent_events=recent_events,
            app_name=app_name,
            user_id=user_id,
            include_expired=include_expired,
        )
    except AmbiguousSessionError:
        raise CliError(
            f"several users have a session with id {session_id!r} (ids are per app and user): "
            "say whose with --app and --user",
            2,
        ) from None


def _expired(session: Session) -> bool:
    expires = session.expires_at
    return expires is not None and expires <= datetime.now(timezone.utc)


def show_command(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session's id.")],
    url: Url = None,
    table_prefix: TablePrefix = "",
    app_name: OwnerApp = None,
    user_id: OwnerUser = None,
    events: Annotated[
        int, typer.Option("--events", min=0, metavar="N", help="How many of the last events.")
    ] = 10,
    include_expired: IncludeExpired = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one session: its metadata, its state as JSON and its last events."""
    with open_store(url, table_prefix) as store:
        session = _by_id(store, session_id, app_name, user_id, events, include_expired)
        expired = None
        if session is None and not include_expired:
            expired = _by_id(store, session_id, app_name, user_id, 0, True)
    if session is None:
        whose = "" if app_name is None else f" for app {app_name!r} and user {user_id!r}"
        if expired is not None:
            raise CliError(
                f"session {session_id!r}{whose} expired at {fmt_time(expired.expires_at)} and "
                "awaits 'sessiondb purge' (pass --include-expired to show it)"
            )
        raise CliError(f"no session with id {session_id!r}{whose}")
    recent = session.events or []
    if as_json:
        data = session_json(session, state=True)
        data["events"] = [event_json(e) for e in recent]
        typer.echo(dumps(data, indent=2))
        return
    console = stdout_console()
    meta = Table(box=None, show_header=False)
    meta.add_column(style="bold", no_wrap=True)
    meta.add_column(overflow="fold")
    for key, value in (
        ("id", session.id),
        ("app", session.app_name),
        ("user", session.user_id),
        ("title", session.title or "-"),
        ("labels", ", ".join(session.labels) or "-"),
        ("created", fmt_time(session.created_at)),
        ("updated", fmt_time(session.updated_at)),
        ("expires", fmt_time(session.expires_at) + (" (expired)" if _expired(session) else "")),
        ("version", str(session.version)),
        ("events", f"{session.event_count} ({fmt_size(session.event_bytes)})"),
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
            fmt_time(event.created_at),
            escape(event.author),
            escape(short(event.content)),
            escape(", ".join(event.state_delta or {})),
        )
    console.print(table)


def rm_command(
    session_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="The id of each session to delete.")
    ],
    url: Url = None,
    table_prefix: TablePrefix = "",
    app_name: OwnerApp = None,
    user_id: OwnerUser = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete sessions by id, with their events. Asks first unless --yes."""
    ids = list(dict.fromkeys(session_ids))
    with open_store(url, table_prefix) as store:
        found: list[Session] = []
        for sid in ids:
            session = _by_id(store, sid, app_name, user_id)
            if session is None:
                raise CliError(f"no session with id {sid!r} (nothing was deleted)")
            found.append(session)
        if len(found) == 1:
            s = found[0]
            question = (
                f"Delete session {s.id} (app {s.app_name!r}, user {s.user_id!r}, "
                f"{plural(s.event_count, 'event')})?"
            )
        else:
            question = f"Delete {len(found)} sessions?"
        confirm(question, yes)
        deleted = sum(
            store.delete_session(s.id, app_name=s.app_name, user_id=s.user_id) for s in found
        )
    if as_json:
        typer.echo(dumps({"deleted": deleted, "ids": [s.id for s in found]}))
        return
    typer.echo(f"deleted {plural(deleted, 'session')}")


def clear_command(
    app_name: Annotated[
        str, typer.Option("--app", metavar="APP", help="The app whose sessions to delete.")
    ],
    user_id: UserOpt = None,
    url: Url = None,
    table_prefix: TablePrefix = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete every session of an app (or of one user in it). Asks first unless --yes."""
    with open_store(url, table_prefix) as store:
        count = store.count_sessions(app_name, user_id)
        whose = f"app {app_name!r}" + (f", user {user_id!r}" if user_id is not None else "")
        deleted = 0
        if count:
            confirm(f"Delete all {plural(count, 'session')} of {whose}?", yes)
            deleted = store.clear_sessions(app_name, user_id)
    if as_json:
        typer.echo(dumps({"deleted": deleted}))
    elif count == 0:
        typer.echo(f"no sessions in {whose}")
    else:
        typer.echo(f"deleted {plural(deleted, 'session')}")


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
    as_json: JsonOpt = False,
) -> None:
    """Delete expired sessions, or with --older-than the sessions created before then.

    Deletes in batches, so the database is never locked for long; safe to run from cron.
    """
    if older_than is None and (app_name is not None or user_id is not None):
        raise CliError("--app and --user select sessions for --older-than; add --older-than", 2)
    with open_store(url, table_prefix) as store:
        if older_than is None:
            # LangGraph threads past their ttl go too, and are counted with the sessions
            count = store.purge_expired(batch_size=batch_size, dry_run=dry_run)
            what = f"{count} expired " + (
                "session or thread" if count == 1 else "sessions and LangGraph threads"
            )
        else:
            ago(older_than)
            count = store.delete_sessions(
                app_name, user_id, older_than=older_than, batch_size=batch_size, dry_run=dry_run
            )
            what = f"{plural(count, 'session')} older than {fmt_delta(older_than)}"
    if as_json:
        typer.echo(
            dumps({"deleted": 0 if dry_run else count, "matched": count, "dry_run": dry_run})
        )
    elif dry_run:
        typer.echo(f"would delete {what} (dry run)")
    else:
        typer.echo(f"deleted {what}")


def stats_command(
    url: Url = None, table_prefix: TablePrefix = "", fmt: FormatOpt = None, as_json: JsonOpt = False
) -> None:
    """Sessions, users, events and bytes per app, with the oldest and newest session, and
    the expired sessions awaiting purge; LangGraph threads and checkpoints per app."""
    fmt = output_format(fmt, as_json)
    with open_store(url, table_prefix) as store:
        stats = store.stats()
        graphs = store.checkpoint_stats()
    rows = [
        {
            "app_name": row.app_name,
            "sessions": row.sessions,
            "users": row.users,
            "events": row.events,
            "state_bytes": row.state_bytes,
            "event_bytes": row.event_bytes,
            "oldest_created_at": iso(row.oldest_created_at),
            "newest_updated_at": iso(row.newest_updated_at),
            "expired": row.expired,
        }
        for row in stats
    ]
    graph_rows = [
        {"app_name": app, "langgraph_threads": threads, "checkpoints": checkpoints}
        for app, threads, checkpoints in graphs
    ]
    if fmt is Format.jsonl:
        for data in rows + graph_rows:
            typer.echo(dumps(data))
        return
    if fmt is Format.json:
        typer.echo(dumps({"apps": rows, "langgraph": graph_rows}, indent=2))
        return
    if fmt is Format.csv:  # the per-app rows (LangGraph's are in the other formats)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        columns = list(rows[0]) if rows else ["app_name", "sessions", "users", "events",
                                              "state_bytes", "event_bytes", "oldest_created_at",
                                              "newest_updated_at", "expired"]  # fmt: skip
        writer.writerow(columns)
        writer.writerows([data[c] for c in columns] for data in rows)
        return
    console = stdout_console()
    if graphs:
        graph_table = Table(box=None, header_style="bold")
        graph_table.add_column("APP (LANGGRAPH)")
        graph_table.add_column("THREADS", justify="right")
        graph_table.add_column("CHECKPOINTS", justify="right")
        for app, threads, checkpoints in graphs:
            graph_table.add_row(escape(app) or "(no owner)", str(threads), str(checkpoints))
    if not stats:
        console.print("no sessions")
        if graphs:
            console.print(graph_table)
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
    table.add_column("STATE", justify="right", footer=fmt_size(total[2]))
    table.add_column("EVENT DATA", justify="right", footer=fmt_size(total[3]))
    table.add_column("OLDEST CREATED", no_wrap=True)
    table.add_column("NEWEST UPDATED", no_wrap=True)
    backlog = sum(r.expired for r in stats)
    table.add_column("EXPIRED", justify="right", footer=str(backlog))
    for row in stats:
        table.add_row(
            escape(row.app_name),
            str(row.sessions),
            str(row.users),
            str(row.events),
            fmt_size(row.state_bytes),
            fmt_size(row.event_bytes),
            fmt_time(row.oldest_created_at),
            fmt_time(row.newest_updated_at),
            str(row.expired),
        )
    console.print(table)
    if backlog:
        console.print(
            f"{plural(backlog, 'expired session')} awaiting purge (not counted above): "
            "run 'sessiondb purge'",
            soft_wrap=True,
        )
    if graphs:
        console.print(graph_table)
