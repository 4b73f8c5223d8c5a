"""Output helpers: Rich consoles and progress bars, and how values are shown or put in JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
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

from sessiondb import Event, Session


def stdout_console() -> Console:
    """Rich console on stdout; when piped, wide enough that tables do not cut ids short."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, width=200)
    return out


def on_terminal() -> bool:
    """Progress bars only when stdout is a terminal."""
    return Console().is_terminal


def note(message: str) -> None:
    """An informational line on stderr (used where stdout carries data)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def one_line(message: str) -> str:
    """``message`` with its lines joined by single spaces."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def fmt_time(moment: datetime | None) -> str:
    """A time for people, in UTC; ``-`` for none."""
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def iso(moment: datetime | None) -> str | None:
    """A time for JSON: ISO 8601, or None."""
    return None if moment is None else moment.isoformat()


def fmt_size(count: int | float) -> str:
    """A number of bytes for people: ``512 B``, ``73.7 MB``."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def plural(count: int, noun: str) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def dumps(value: Any, **options: Any) -> str:
    """JSON with non-ASCII text kept as is."""
    return json.dumps(value, ensure_ascii=False, **options)


def session_json(session: Session, *, state: bool) -> dict[str, Any]:
    """A session as ``ls --json`` and ``show --json`` print it."""
    data: dict[str, Any] = {
        "id": session.id,
        "app_name": session.app_name,
        "user_id": session.user_id,
        "title": session.title,
        "labels": list(session.labels),
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
        "expires_at": iso(session.expires_at),
        "version": session.version,
        "event_count": session.event_count,
        "event_bytes": session.event_bytes,
    }
    if state:
        data["state"] = session.state
    return data


def event_json(event: Event) -> dict[str, Any]:
    """An event as ``show --json`` prints it."""
    return {
        "seq": event.seq,
        "author": event.author,
        "created_at": iso(event.created_at),
        "content": event.content,
        "state_delta": event.state_delta,
        "invocation_id": event.invocation_id,
        "metadata": event.metadata,
    }


def short(value: Any, width: int = 80) -> str:
    """A value on one line of at most ``width`` characters."""
    text = value if isinstance(value, str) else dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@contextmanager
def progress(
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
    with Progress(*columns, console=Console()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
