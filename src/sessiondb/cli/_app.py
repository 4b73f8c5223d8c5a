"""The Typer app, the options the commands share, and how a failure reaches the user.

Every failure, wherever the app is run from (the console script, ``python -m sessiondb``,
Typer's test runner), is reported by :class:`_Group` as one line on stderr starting
``sessiondb: error:``, with exit status 2 for bad usage and 1 for anything else.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

import sessiondb
from sessiondb import SessionDBError, SessionStore
from sessiondb.errors import ConfigurationError

from ._output import one_line

ENV_URL = "SESSIONDB_URL"
ENV_DATABASE_URL = "DATABASE_URL"  # read after --url and SESSIONDB_URL (Heroku, Render, ...)
ENV_TABLE_PREFIX = "SESSIONDB_TABLE_PREFIX"
ENV_DEBUG = "SESSIONDB_DEBUG"


class CliError(Exception):
    """A problem reported as one line on stderr; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Typer raises Click's exceptions; newer Typers vendor Click, so find its base class by name.
_CLICK_EXCEPTION: type[BaseException] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _fail(message: str, exit_code: int) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"sessiondb: error: {one_line(message)}\n")
    sys.stderr.flush()
    return exit_code


def _flags_as_flags(params: list[Any]) -> list[Any]:
    """Blank every flag's type label, so help shows ``--json``, not ``--json <bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Typer's command, with flags shown in help as flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, flags without a type label."""
        return _flags_as_flags(super().get_params(ctx))


class _Group(TyperGroup):
    """Typer's group, with every failure reported as one line on stderr and an exit status."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, flags without a type label."""
        return _flags_as_flags(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; return its exit status, or exit with it if ``standalone_mode``."""
        try:
            result = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
            status = result if isinstance(result, int) else 0
        except CliError as exc:
            status = _fail(str(exc), exc.exit_code)
        except SessionDBError as exc:
            status = _fail(_library_message(exc), 2 if _is_usage(exc) else 1)
        except Exception as exc:
            if isinstance(exc, _CLICK_EXCEPTION):
                format_message = getattr(exc, "format_message", None)
                message = format_message() if callable(format_message) else str(exc)
                ctx = getattr(exc, "ctx", None)
                if ctx is not None:
                    message += f" (see '{ctx.command_path} --help')"
                status = _fail(message, int(getattr(exc, "exit_code", 2)))
            elif type(exc).__name__ == "Abort":
                status = _fail("aborted", 1)
            elif isinstance(exc, OSError) and exc.strerror:
                where = f": {exc.filename}" if exc.filename else ""
                status = _fail(f"{exc.strerror}{where}", 1)
            elif os.environ.get(ENV_DEBUG):
                raise
            else:
                status = _fail(
                    f"unexpected {type(exc).__name__}: {exc} "
                    f"(set {ENV_DEBUG}=1 to see the traceback)",
                    1,
                )
        if standalone_mode:
            sys.exit(status)
        return status


def _is_usage(exc: SessionDBError) -> bool:
    """A bad value given on the command line (a cursor, an id, a limit): exit status 2."""
    from sessiondb.errors import InvalidArgumentError, InvalidRecordError

    return isinstance(exc, InvalidArgumentError) and not isinstance(exc, InvalidRecordError)


def _library_message(exc: SessionDBError) -> str:
    """The library's message, without advice only a program can follow."""
    message = str(exc) or type(exc).__name__
    return message.replace(" (or open the store with auto_migrate=True)", "")


app = typer.Typer(
    name="sessiondb",
    cls=_Group,
    help=(
        "Look after a sessiondb database: schema, sessions, clean-up, export/import, copy "
        "between databases, backup and diagnosis. The database URL comes from --url, else the "
        "SESSIONDB_URL environment variable, else DATABASE_URL; a bare path is a SQLite file."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    args = list(argv) if argv is not None else None
    status: int = app(args=args, prog_name="sessiondb", standalone_mode=False)
    return status


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


def ago(delta: timedelta) -> datetime:
    """The moment ``delta`` before now (a usage error before year 1)."""
    try:
        return datetime.now(timezone.utc) - delta
    except OverflowError:
        raise CliError(f"{fmt_delta(delta)} ago is before year 1", 2) from None


def fmt_delta(delta: timedelta) -> str:
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
        help="Database URL, e.g. sqlite:///./sessions.db, ./sessions.db (a SQLite file) or "
        "postgresql://user@host/db; else DATABASE_URL.",
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
    """The order of ``ls``."""

    updated = "updated"
    created = "created"


class Format(str, Enum):
    """How listed rows are printed."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


FormatOpt = Annotated[
    Format | None,
    typer.Option(
        "--format",
        help="table (for people), json (one array), jsonl (one object a line) or csv. "
        "--json means jsonl.",
    ),
]


def output_format(fmt: Format | None, as_json: bool) -> Format:
    """``--format``, or jsonl for ``--json``; both at once must agree."""
    if as_json and fmt not in (None, Format.jsonl):
        raise CliError(f"--json means --format jsonl; it cannot go with --format {fmt.value}", 2)
    if as_json:
        return Format.jsonl
    return fmt or Format.table


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def database_url(url: str | None, *, what: str = "database URL") -> str:
    """The URL the operator meant: ``url`` (from --url or SESSIONDB_URL), else DATABASE_URL;
    a bare path (``./cli.db``, ``/abs/x.db``, ``x.db``) is a SQLite file."""
    if not url:
        url = os.environ.get(ENV_DATABASE_URL) or None
    if not url or not url.strip():
        raise CliError(f"no {what}: pass --url URL or set {ENV_URL} (or {ENV_DATABASE_URL})", 2)
    url = url.strip()
    if "://" not in url and not _SCHEME.match(url):
        # a path: the form SQLite URLs take ('?' and '%' escaped, as the URL parser unescapes)
        return "sqlite:///" + url.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for a server); a malformed URL is a usage error."""
    from sessiondb._urls import resolve_url

    try:
        target = resolve_url(url)
    except ConfigurationError as exc:
        raise CliError(str(exc), 2) from None
    return Path(target.location) if target.backend == "sqlite" else None


def open_store(
    url: str | None, table_prefix: str, *, migrate: bool = False, create: bool = False
) -> SessionStore:
    """A store on ``url``; the schema is created or upgraded only if ``migrate``.

    Unless ``migrate`` or ``create``, nothing is created: a SQLite file that does not exist
    is an error (the driver would make an empty one)."""
    url = database_url(url)
    path = sqlite_path(url)
    if path is not None and not (migrate or create) and not path.exists():
        raise CliError(
            f"no SQLite database at {path}: the file does not exist "
            "(check the path; 'sessiondb migrate' creates a new database)"
        )
    return SessionStore(url, table_prefix=table_prefix, tz_aware=True, auto_migrate=migrate)


def confirm(question: str, yes: bool, *, refusal: str = "nothing was deleted") -> None:
    """Ask on stderr, read the answer from stdin; anything but y/yes aborts."""
    if yes:
        return
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n") or not sys.stdin.isatty():  # no echo of the answer
        sys.stderr.write("\n")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError(f"aborted: {refusal} (pass --yes to skip the question)")
