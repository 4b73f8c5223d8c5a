"""Commands that move data in and out: export, import, copy, backup and import-adk."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from sessiondb import SessionDBError, SessionStore

from .. import _records
from ._app import (
    ENV_DATABASE_URL,
    ENV_URL,
    AppOpt,
    BatchSize,
    CliError,
    JsonOpt,
    TablePrefix,
    Url,
    database_url,
    open_store,
)
from ._output import (
    dumps,
    fmt_size,
    note,
    on_terminal,
    one_line,
    plural,
    progress,
    stdout_console,
)

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
            if _records.kind(record) is None:
                raise CliError(
                    f"{self.name} line {self.line} is not a sessiondb record "
                    '(expected a JSON object with a "type" key)'
                )
            yield record


def _tally(counts: dict[str, int], record: dict[str, Any]) -> None:
    kind = str(_records.kind(record))
    counts[kind] = counts.get(kind, 0) + 1
    counts["event"] = counts.get("event", 0) + _records.event_count(record)
    counts["checkpoint"] = counts.get("checkpoint", 0) + _records.checkpoint_count(record)


def _summary(counts: dict[str, int]) -> str:
    return (
        f"{plural(counts.get(_records.SESSION, 0), 'session')} "
        f"({plural(counts.get('event', 0), 'event')}), "
        f"{plural(counts.get(_records.APP_STATE, 0), 'app state')}, "
        f"{plural(counts.get(_records.USER_STATE, 0), 'user state')}"
        + _threads(counts.get(_records.LG_THREAD, 0), counts.get("checkpoint", 0))
    )


def _threads(threads: int, checkpoints: int) -> str:
    """ ", 2 LangGraph threads (5 checkpoints)", or nothing when there are none."""
    if not threads:
        return ""
    return f", {plural(threads, 'LangGraph thread')} ({plural(checkpoints, 'checkpoint')})"


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
    as_json: JsonOpt = False,
) -> None:
    """Write sessions (with their events), app/user state and LangGraph threads (with their
    checkpoints) as JSON Lines.

    Streams: memory use does not grow with the database. The result is what 'import' reads.
    """
    counts: dict[str, int] = {}
    with ExitStack() as stack:
        store = stack.enter_context(open_store(url, table_prefix))
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
            fancy = output is not None and on_terminal()
            total = store.count_sessions(app_name) if fancy else None
            advance = stack.enter_context(progress("exporting", total, enabled=fancy))
            for record in store.export_records(app_name, batch_size=batch_size):
                sink.write(dumps(record).encode() + b"\n")
                _tally(counts, record)
                if _records.kind(record) == _records.SESSION:
                    advance(1)
            sink.flush()
        except BaseException:
            if part is not None:
                sink.close()
                part.unlink(missing_ok=True)
            raise
    if output is not None and part is not None:
        os.replace(part, output)
    if as_json:
        summary = {
            "sessions": counts.get(_records.SESSION, 0),
            "events": counts.get("event", 0),
            "app_states": counts.get(_records.APP_STATE, 0),
            "user_states": counts.get(_records.USER_STATE, 0),
            "threads": counts.get(_records.LG_THREAD, 0),
            "checkpoints": counts.get("checkpoint", 0),
            "output": None if output is None else str(output),
        }
        # stdout carries the records unless they went to a file
        (typer.echo if output is not None else note)(dumps(summary))
        return
    note(f"exported {_summary(counts)}" + (f" to {output}" if output else ""))


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
    as_json: JsonOpt = False,
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
        store = stack.enter_context(open_store(url, table_prefix, migrate=True))
        # a bar of bytes read, out of the file's size; from a pipe (export | import) the size
        # is unknown and the exporter's summary shares the terminal: no bar, the summary only
        fancy = on_terminal() and size is not None and not as_json
        advance = stack.enter_context(progress("importing", size, enabled=fancy, unit="bytes"))
        try:
            result = store.import_records(reader.records(advance), batch_size=batch_size)
        except SessionDBError as exc:
            raise CliError(f"{one_line(str(exc))} (reading {name}, line {reader.line})") from exc
    if as_json:
        typer.echo(dumps(_result_json(result)))
        return
    typer.echo(
        f"imported {plural(result.sessions, 'session')} "
        f"({plural(result.events, 'event')}), {plural(result.app_states, 'app state')}, "
        f"{plural(result.user_states, 'user state')}"
        f"{_threads(result.threads, result.checkpoints)}; "
        f"skipped {result.skipped} already present"
    )


def _result_json(result: Any) -> dict[str, int]:
    return {
        "sessions": result.sessions,
        "events": result.events,
        "app_states": result.app_states,
        "user_states": result.user_states,
        "threads": result.threads,
        "checkpoints": result.checkpoints,
        "skipped": result.skipped,
    }


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
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Copy into a target that holds other sessions too; verify only what was copied.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy everything from one database to another, e.g. SQLite to PostgreSQL.

    Creates the target's schema if needed. A target holding sessions the source does not have
    is refused before anything is written, unless --merge. Sessions already in the target are
    skipped, so an interrupted copy continues when run again. At the end both sides are
    compared (with --merge: only the copied sessions); the exit status is 1 if they differ.
    """
    if not target:
        raise CliError("missing option '--to URL'", 2)
    if not source and not os.environ.get(ENV_DATABASE_URL):
        raise CliError(f"no source database: pass --from URL or set {ENV_URL}", 2)
    source, target = database_url(source), database_url(target)
    src_prefix = table_prefix if from_table_prefix is None else from_table_prefix
    dst_prefix = table_prefix if to_table_prefix is None else to_table_prefix
    if source == target and src_prefix == dst_prefix:
        raise CliError("--from and --to are the same database and table prefix", 2)
    console = stdout_console()
    with open_store(source, src_prefix) as src, open_store(target, dst_prefix, migrate=True) as dst:
        fancy = on_terminal() and not as_json
        total = src.count_sessions(app_name)
        mine = _keys(src, app_name)
        theirs = _keys(dst, app_name)
        foreign = len(theirs.keys() - mine.keys())
        my_threads = src.checkpoint_threads(app_name)
        foreign_threads = len(dst.checkpoint_threads(app_name).keys() - my_threads.keys())
        if (foreign or foreign_threads) and not merge:
            held = " and ".join(
                plural(n, what)
                for n, what in ((foreign, "session"), (foreign_threads, "LangGraph thread"))
                if n
            )
            raise CliError(
                f"the target already holds {held} that the source does "
                "not have; nothing was written. Copy into an empty database, or pass --merge "
                "to add to them (its verification covers only the copied sessions and threads)"
            )

        def records(advance: Callable[[float], None]) -> Iterator[dict[str, Any]]:
            for record in src.export_records(app_name, batch_size=batch_size):
                yield record
                if _records.kind(record) == _records.SESSION:
                    advance(1)

        with progress("copying", total, enabled=fancy) as advance:
            result = dst.import_records(records(advance), batch_size=batch_size)
        copied = (
            f"copied {plural(result.sessions, 'session')} "
            f"({plural(result.events, 'event')}), {plural(result.app_states, 'app state')}, "
            f"{plural(result.user_states, 'user state')}"
            f"{_threads(result.threads, result.checkpoints)}; "
            f"skipped {result.skipped} already present"
        )
        if not as_json:
            console.print(copied, soft_wrap=True)
        summary: dict[str, Any] = {**_result_json(result), "merge": merge}
        if merge:
            after = _keys(dst, app_name)
            differ = sorted(k for k, v in _keys(src, app_name).items() if after.get(k) != v)
            after_threads = dst.checkpoint_threads(app_name)
            differ_threads = sorted(
                k for k, v in src.checkpoint_threads(app_name).items() if after_threads.get(k) != v
            )
            summary.update(
                verified=not differ and not differ_threads, differing=len(differ),
                foreign=foreign, differing_threads=len(differ_threads),
                foreign_threads=foreign_threads,
            )  # fmt: skip
            failure = _differing(differ, "copied session") or _differing(
                differ_threads, "copied LangGraph thread"
            )
            also = plural(foreign, "other session")
            if foreign_threads:
                also += f" and {plural(foreign_threads, 'other thread')}"
            n_checkpoints = sum(n for n, _ in my_threads.values())
            verified = (
                f"verified: the {plural(len(mine), 'session')}"
                f"{_threads(len(my_threads), n_checkpoints)} of the source are in the target "
                f"(which also holds {also})"
            )
        else:
            counts = (src.count_sessions(app_name), dst.count_sessions(app_name))
            sums = (src.checksum(app_name), dst.checksum(app_name))
            summary.update(verified=counts[0] == counts[1] and sums[0] == sums[1])
            summary.update(source=counts[0], target=counts[1], checksum=sums[0])
            failure = (
                None
                if summary["verified"]
                else f"verification failed: source has {plural(counts[0], 'session')} "
                f"(checksum {sums[0]}), target has {counts[1]} (checksum {sums[1]})"
            )
            verified = f"verified: {plural(counts[0], 'session')} on both sides, checksum {sums[0]}"
    if as_json:
        typer.echo(dumps(summary))
    if failure is not None:
        raise CliError(failure)
    if not as_json:
        console.print(verified, soft_wrap=True)


def _differing(keys: list[tuple[str, str, str]], what: str) -> str | None:
    """The failure of a merge's verification for ``keys`` that differ, None if there is none."""
    if not keys:
        return None
    (app, user, key), verb = keys[0], "differs" if len(keys) == 1 else "differ"
    return (
        f"verification failed: {plural(len(keys), what)} {verb} in the target (first: "
        f"{key!r} of app {app!r}, user {user!r})"
    )


def _keys(store: SessionStore, app_name: str | None) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Every session's owner and id (expired ones included) -> its version and event count."""
    keys: dict[tuple[str, str, str], tuple[int, int]] = {}
    cursor: str | None = None
    while True:
        page = store.list_sessions(
            app_name, None, limit=1000, cursor=cursor, order="created",
            include_state=False, include_expired=True,
        )  # fmt: skip
        for s in page:
            keys[(s.app_name, s.user_id, s.id)] = (s.version, s.event_count)
        cursor = page.next_cursor
        if cursor is None:
            return keys


_DUMP_TOOLS = {
    "postgresql": "pg_dump",
    "mysql": "mysqldump (or mariadb-dump)",
}


def backup_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the copy.")],
    url: Url = None,
    table_prefix: TablePrefix = "",
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace FILE if it exists.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy a SQLite database with SQLite's online backup, safely while it is in use.

    The copy is consistent even while the application writes. For PostgreSQL use pg_dump, for
    MySQL/MariaDB mysqldump.
    """
    with open_store(url, table_prefix) as store:
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
    if as_json:
        typer.echo(dumps({"file": str(file), "bytes": file.stat().st_size}))
        return
    typer.echo(f"backed up to {file} ({fmt_size(file.stat().st_size)})")


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
    url = database_url(url, what="target database")
    try:
        from ..adk_import import import_adk
    except ImportError as exc:
        raise CliError(f"{exc}") from exc
    counts = import_adk(source, url, table_prefix=table_prefix, skip_unreadable=skip_unreadable)
    if as_json:
        typer.echo(dumps(counts))
        return
    typer.echo(
        f"imported {plural(counts.get('sessions', 0), 'session')}, "
        f"{plural(counts.get('events', 0), 'event')}, "
        f"{counts.get('app_states', 0)} app and {counts.get('user_states', 0)} user states "
        f"({counts.get('skipped_sessions', 0)} already there, "
        f"{counts.get('unreadable_events', 0)} unreadable events)"
    )
