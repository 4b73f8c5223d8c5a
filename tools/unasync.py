"""Generate ``src/sessiondb/_store.py`` from ``src/sessiondb/_async_store.py``.

The async front end is the one written by hand; the sync one is derived by an ordered table of
substitutions (httpcore's "unasync" approach). ``--check`` fails if the generated file is stale,
or if a substitution no longer matches anything.

    python tools/unasync.py          # rewrite _store.py
    python tools/unasync.py --check  # CI: is _store.py up to date?
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "sessiondb"
SOURCE = ROOT / "_async_store.py"
TARGET = ROOT / "_store.py"

ASYNC_DOC = (
    "Sessions in a database, with awaitable calls that never block the event loop.\n\n"
    "    PostgreSQL and MySQL use a native async driver (asyncpg, aiomysql); SQLite runs point\n"
    "    reads and small writes on the loop when they need no wait (no lock held elsewhere, no\n"
    '    fsync: not at ``sqlite_durability="full"``), everything else in a worker thread. One\n'
    "    store may serve several event loops and threads: each loop gets a connection pool of its\n"
    "    own, closed when the loop shuts down."
)
SYNC_DOC = "Sessions in a database, with blocking calls. Safe to share between threads."

# Plain substitutions first (docstrings, imports), then the renaming rules.
LITERAL: list[tuple[str, str]] = [
    (
        "``AsyncSessionStore``: the asynchronous front end. ``_store.py`` is generated from it.",
        "``SessionStore``: the synchronous front end.\n\n"
        "Generated from ``_async_store.py`` by ``tools/unasync.py``: DO NOT EDIT.",
    ),
    (ASYNC_DOC, SYNC_DOC),
    (
        "from sqlalchemy.engine import URL\n    from sqlalchemy.ext.asyncio import AsyncEngine",
        "from sqlalchemy.engine import URL, Engine",
    ),
]
SUBS: list[tuple[str, str]] = [
    (r"\bAsyncEngine\b", "Engine"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncSessionStore\b", "SessionStore"),
    (r"\bAsyncBackend\b", "Backend"),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
    (r"\basync def ", "def "),
    (r"\bawait ", ""),
    # a sync generator hands a page over whole
    (r"for (\w+) in (.+):\n\s+yield \1\n", r"yield from \2\n"),
]


def generate() -> str:
    text = SOURCE.read_text()
    for old, new in LITERAL:
        if old not in text:
            raise SystemExit(f"unasync: {old[:40]!r}... is not in {SOURCE.name}")
        text = text.replace(old, new)
    for pattern, replacement in SUBS:
        text, count = re.subn(pattern, replacement, text)
        if count == 0:
            raise SystemExit(f"unasync: substitution {pattern!r} matched nothing")
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for args in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        text = subprocess.run(
            [ruff, *args, "--stdin-filename", str(TARGET), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return text


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python tools/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
