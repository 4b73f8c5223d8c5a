"""The ``sessiondb`` command, end to end.

The commands run in-process through Typer's ``CliRunner`` (the same app the console script
runs, with the same one-line error reporting), against real databases (SQLite, PostgreSQL,
MariaDB) from the ``db_url`` / ``make_db_url`` fixtures, and each test checks what a user would
see: stdout, stderr and the exit status. Data is seeded and checked with the public library API.
A few tests run real processes, for what only a process shows: the console script's exit status,
pipes between two commands, a signal, a terminal, another process writing. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import sessiondb
from sessiondb import SessionStore
from sessiondb._urls import resolve_url
from sessiondb.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "cli.md"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"
HEAD = sessiondb.SCHEMA_HEAD
SCRIPT = Path(sys.executable).with_name("sessiondb")  # the console script pip installed

# What the operator's shell might have set, and the tests must not inherit.
_CLEAN_ENV = ("SESSIONDB_URL", "SESSIONDB_TABLE_PREFIX", "SESSIONDB_DEBUG", "COLUMNS")


# -- running the command ----------------------------------------------------------------------


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``sessiondb ARGS`` in this process; stdin is ``input`` (none: empty, not a terminal)."""
    environ: dict[str, str | None] = dict.fromkeys(_CLEAN_ENV)
    environ.update(env or {})
    return CliRunner().invoke(
        app, list(args), input=input, env=environ, prog_name="sessiondb", catch_exceptions=False
    )


def ok(*args: str, **kw: Any) -> str:
    """Run a command that must succeed; return its stdout."""
    done = run(*args, **kw)
    assert done.exit_code == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def one_error_line(stderr: str) -> str:
    """The single ``sessiondb: error: ...`` line a failure prints on stderr."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sessiondb: error: "), lines[0]
    return lines[0]


def fails(*args: str, status: int | None = None, **kw: Any) -> str:
    """Run a command that must fail with a one-line error; return that line."""
    done = run(*args, **kw)
    assert done.exit_code != 0, (args, done.stdout, done.stderr)
    if status is not None:
        assert done.exit_code == status, (args, done.exit_code, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    return one_error_line(done.stderr)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a real process: this one's, without the operator's settings."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
    env.update(extra or {})
    return env


def _interruptible() -> None:
    """In the child before it starts: Ctrl-C's default action. A test run started as a
    background job of a non-interactive shell has SIGINT ignored and passes that on; Python
    then installs no KeyboardInterrupt handler, so the commands would finish, not stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process(
    *args: str, input: str = "", script: Sequence[str] = (sys.executable, "-m", "sessiondb")
) -> subprocess.CompletedProcess[str]:
    """Run the command as a real process (``python -m sessiondb`` unless ``script``)."""
    return subprocess.run(
        [*script, *args],
        input=input,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        cwd=ROOT,
    )


# -- data -------------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def seed(
    url: str,
    prefix: str = "",
    *,
    apps: Sequence[str] = ("chat", "support"),
    per_app: int = 3,
    events: int = 4,
) -> list[str]:
    """Sessions with events, labels, titles, app and user state; returns their ids."""
    ids = []
    with SessionStore(url, table_prefix=prefix) as store:
        for app_name in apps:
            for i in range(per_app):
                state = {"n": i, "nested": {"k": [1, 2.5, None]}, "app:theme": "dark"}
                state["user:lang"] = f"fr-{i % 2}"
                s = store.create_session(
                    app_name,
                    f"user{i % 2}",
                    state,
                    title=f"{app_name} #{i}",
                    labels=["vip"] if i == 0 else ["free", "trial"],
                )
                store.append_events(
                    s.id,
                    [
                        {"author": "user", "content": {"text": f"hello {j} é"}}
                        for j in range(events)
                    ],
                )
                ids.append(s.id)
    return ids


def records_like(tmp_path: Path, n: int, *, app: str, **overrides: Any) -> Iterator[dict[str, Any]]:
    """``n`` export records of fresh sessions of ``app``, with some fields overridden.

    Made the way an operator would: a session created through the API in a scratch database,
    exported, then copied under new ids and edited (e.g. to be created in 2020).
    """
    scratch = f"sqlite:///{tmp_path / f'scratch-{uuid.uuid4().hex}.db'}"
    with SessionStore(scratch) as store:
        s = store.create_session(app, "old", {"i": 0})
        store.append_event(s.id, "user", {"text": "old"})
        (record,) = store.export_records()
    for i in range(n):
        fresh = {"id": str(uuid.uuid4()), "user_id": f"old{i}", "state": {"i": i}}
        yield {**record, **fresh, **overrides}


def checksum(url: str, prefix: str = "") -> tuple[int, str]:
    with SessionStore(url, table_prefix=prefix, auto_migrate=False) as store:
        return store.count_sessions(), store.checksum()


_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def table_names(url: str) -> set[str]:
    """The tables in the database at ``url`` (looked at with SQLAlchemy, not sessiondb)."""
    with _engine(url).connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def _engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name().replace("mariadb", "mysql")
    return sa.create_engine(parsed.set(drivername=_SYNC_DRIVERS[backend]), poolclass=sa.NullPool)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'source.db'}"


def cli_commands() -> dict[str, Any]:
    """The Typer app's commands, by name (as Click commands)."""
    import typer.main

    group: Any = typer.main.get_command(app)
    return dict(group.commands)


# -- documentation and help -------------------------------------------------------------------


def doc_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    current = None
    for line in DOCS.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_docs_have_a_section_for_exactly_the_commands_that_exist() -> None:
    assert sorted(doc_sections()) == sorted(cli_commands())


def test_docs_mention_every_option_of_every_command() -> None:
    sections = doc_sections()
    for name, command in cli_commands().items():
        for param in command.params:
            if param.param_type_name != "option":
                continue
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--"):
                    assert f"`{flag}" in sections[name], f"docs/cli.md: {name} lacks {flag}"


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_command_has_help(command: str) -> None:
    assert (cli_commands()[command].help or "").strip()
    out = ok(command, "--help")
    assert "Usage" in out and len(out.strip().splitlines()) > 3
    assert ok(command, "-h") == out


def test_no_command_prints_help_and_version() -> None:
    out = ok()
    for name in cli_commands():
        assert name in out
    assert ok("--version").strip() == f"sessiondb {sessiondb.__version__}"


def test_the_sessiondb_script_is_declared() -> None:
    from importlib.metadata import entry_points

    from sessiondb.cli import main

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "sessiondb"]
    assert script.value == "sessiondb.cli:main" and script.load() is main


def test_main_returns_the_exit_status(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``main(argv)`` (what the script calls) returns the status rather than exiting."""
    from sessiondb.cli import main

    assert main(["--version"]) == 0
    assert main(["current", "--url", sqlite_url, "--check"]) == 1
    assert main(["ls", "--nope"]) == 2
    assert main(["show", "nope", "--url", sqlite_url]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("sessiondb: error: ") for line in err)


def test_the_console_script_exits_with_the_status(sqlite_url: str, tmp_path: Path) -> None:
    """The installed ``sessiondb`` script: output, exit status, one-line errors."""
    script = [str(SCRIPT)]
    assert (
        process("--version", script=script).stdout.strip() == f"sessiondb {sessiondb.__version__}"
    )
    seed(sqlite_url, per_app=1)
    done = process("ls", "--url", sqlite_url, "--json", script=script)
    assert done.returncode == 0 and len(json_lines(done.stdout)) == 2
    sqlite3.connect(tmp_path / "empty.db").close()  # a file without sessiondb's tables
    for args, status in [
        (["ls", "--url", sqlite_url, "--nope"], 2),  # bad usage
        (["show", "nope", "--url", sqlite_url], 1),  # failed work
        (["current", "--url", f"sqlite:///{tmp_path / 'empty.db'}", "--check"], 1),
    ]:
        done = process(*args, script=script)
        assert done.returncode == status, (args, done.stderr)
        if status == 1 and args[0] == "current":
            assert "no schema" in done.stdout and done.stderr == ""
        else:
            one_error_line(done.stderr)


def test_importing_the_library_does_not_import_the_cli() -> None:
    code = "import sys, sessiondb; print(sorted(m for m in ('typer', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- bad input: one line on stderr, non-zero status, no traceback ------------------------------

COMMANDS_WITH_A_URL = [
    ["migrate"],
    ["current"],
    ["ls"],
    ["show", "some-id"],
    ["rm", "--yes", "some-id"],
    ["clear", "--app", "a", "--yes"],
    ["purge"],
    ["stats"],
    ["export"],
    ["import", "-"],
    ["backup", "never-written.db"],
    ["doctor"],
    ["uninstall", "--yes"],
]


@pytest.mark.parametrize("args", COMMANDS_WITH_A_URL, ids=lambda a: a[0])
def test_bad_url_and_missing_url(args: list[str]) -> None:
    line = fails(*args, "--url", "oracle://scott@db/x")
    assert "oracle" in line and "sqlite" in line  # names the right forms
    assert "SESSIONDB_URL" in fails(*args, status=2)  # no --url and no environment variable


def test_url_comes_from_the_environment(sqlite_url: str) -> None:
    seed(sqlite_url)
    assert "chat" in ok("stats", env={"SESSIONDB_URL": sqlite_url})


@pytest.mark.parametrize(
    "args", [["ls"], ["stats"], ["doctor"], ["migrate"], ["uninstall"]], ids=lambda a: a[0]
)
def test_unreachable_server(args: list[str]) -> None:
    assert "127.0.0.1:1" in fails(*args, "--url", UNREACHABLE)


def test_missing_sqlite_directory(tmp_path: Path) -> None:
    fails("ls", "--url", f"sqlite:///{tmp_path}/no/such/dir/x.db")


@pytest.mark.parametrize("value", ["30", "30x", "d", "-1d", "1.5h", "0s", ""])
def test_bad_duration(value: str, sqlite_url: str) -> None:
    line = fails("ls", "--url", sqlite_url, "--older-than", value, status=2)
    assert "--older-than" in line


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "31/05/2024"])
def test_bad_time(value: str, sqlite_url: str) -> None:
    assert "--updated-before" in fails("ls", "--url", sqlite_url, "--updated-before", value)


def test_usage_errors_are_one_line(sqlite_url: str) -> None:
    assert "bogus" in fails("bogus", status=2)
    assert "--app" in fails("clear", "--url", sqlite_url, status=2)
    assert "--nope" in fails("ls", "--url", sqlite_url, "--nope", status=2)
    assert "--limit" in fails("ls", "--url", sqlite_url, "--limit", "-1", status=2)
    assert "ID" in fails("show", "--url", sqlite_url, status=2)
    assert "sessiondb ls --help" in fails("ls", "--url", sqlite_url, "--order", "x", status=2)


# -- every command on every backend -----------------------------------------------------------


def test_every_command_on_every_backend(db_url: str, backend: str, tmp_path: Path) -> None:
    """The happy path of each database command, briefly, on SQLite, PostgreSQL and MariaDB."""
    ids = seed(db_url, per_app=2)
    url = ["--url", db_url]
    assert "already" in ok("migrate", *url)
    assert ok("current", *url, "--check").strip() == f"{HEAD} (head)"
    listed = json_lines(ok("ls", *url, "--json", "--label", "vip", "--updated-after", "1d"))
    assert {r["id"] for r in listed} == {ids[0], ids[2]}
    shown = json.loads(ok("show", ids[0], *url, "--json", "--events", "2"))
    assert shown["title"] == "chat #0" and [e["seq"] for e in shown["events"]] == [3, 4]
    stats = {r["app_name"]: r["sessions"] for r in json_lines(ok("stats", *url, "--json"))}
    assert stats == {"chat": 2, "support": 2}
    report = json.loads(ok("doctor", *url, "--json"))
    assert report["backend"] == backend and report["revision"] == HEAD
    assert "would delete 0 expired sessions" in ok("purge", *url, "--dry-run")
    assert "would delete 0 sessions" in ok("purge", *url, "--older-than", "1d", "--dry-run")
    assert "deleted 1 session" in ok("rm", ids[0], *url, "--yes")
    assert "deleted 2 sessions" in ok("clear", "--app", "support", *url, "--yes")
    with SessionStore(db_url) as store:
        assert [s.id for s in store.list_sessions(None)] == [ids[1]]
    assert "dropped 10 tables (1 session)" in ok("uninstall", *url, "--yes")
    assert "no schema" in ok("current", *url)


# -- migrate, current -------------------------------------------------------------------------


def test_migrate_and_current(db_url: str) -> None:
    url = ["--url", db_url, "--table-prefix", "cli_mig_"]
    head = sessiondb.SCHEMA_HEAD
    assert "no schema" in ok("current", *url)
    assert run("current", *url, "--check").exit_code == 1
    assert "sessiondb migrate" in fails("ls", *url)  # never migrates behind your back
    assert ok("migrate", *url).strip() == f"created the schema at revision {head}"
    assert ok("current", *url).strip() == f"{head} (head)"
    ok("current", *url, "--check")
    assert "already" in ok("migrate", *url)
    assert "no sessions" in ok("ls", *url)
    prefixed = ok("ls", *url[:2], env={"SESSIONDB_TABLE_PREFIX": "cli_mig_"})
    assert "no sessions" in prefixed


# -- ls ---------------------------------------------------------------------------------------


def test_ls_table_filters_and_json(db_url: str) -> None:
    ids = seed(db_url)
    url = ["--url", db_url]
    table = ok("ls", *url)
    for sid in ids:
        assert sid in table
    assert "chat #0" in table and "vip" in table and "next cursor" not in table

    rows = json_lines(ok("ls", *url, "--json"))
    assert {r["id"] for r in rows} == set(ids)
    assert all("state" not in r for r in rows)
    first = next(r for r in rows if r["id"] == ids[0])
    assert first["app_name"] == "chat" and first["user_id"] == "user0"
    assert first["labels"] == ["vip"] and first["title"] == "chat #0"
    assert first["event_count"] == 4 and first["version"] >= 1

    def listed(*args: str) -> set[str]:
        return {r["id"] for r in json_lines(ok("ls", *url, "--json", *args))}

    assert listed("--app", "chat") == set(ids[:3])
    assert listed("--app", "chat", "--user", "user0") == {ids[0], ids[2]}
    assert listed("--label", "vip") == {ids[0], ids[3]}
    assert listed("--older-than", "30d") == set()
    assert listed("--updated-after", "1h") == set(ids)
    assert listed("--updated-before", "1h") == set()
    assert listed("--updated-before", "2999-01-01") == set(ids)
    assert listed("--updated-after", "2999-01-01T00:00:00Z") == set()
    assert "no sessions" in ok("ls", *url, "--app", "nope")


def test_ls_pages_with_a_cursor(db_url: str) -> None:
    ids = seed(db_url, per_app=3)
    url = ["--url", db_url]
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        done = run("ls", *url, "--json", "--limit", "2", "--order", "created", *cursor)
        assert done.exit_code == 0, done.stderr
        page = [r["id"] for r in json_lines(done.stdout)]
        assert len(page) <= 2
        seen += page
        found = re.search(r"next cursor: (\S+)", done.stderr)
        if not found:
            break
        cursor = ["--cursor", found.group(1)]
    assert seen == ids  # oldest first by creation, each exactly once
    table = ok("ls", *url, "--limit", "4")
    assert re.search(r"next cursor: \S+", table)
    assert "cursor" in fails("ls", *url, "--cursor", "garbage")


# -- show -------------------------------------------------------------------------------------


def test_show(db_url: str) -> None:
    sid = seed(db_url, apps=["chat"], per_app=1, events=5)[0]
    url = ["--url", db_url]
    out = ok("show", sid, *url, "--events", "2")
    for text in (sid, "chat", "user0", "chat #0", "vip", "version", '"nested"', "hello 4"):
        assert text in out, text
    assert "hello 2" not in out  # only the last two events
    assert "last 2 of 5" in out

    data = json.loads(ok("show", sid, *url, "--json", "--events", "3"))
    assert data["id"] == sid and data["event_count"] == 5 and data["labels"] == ["vip"]
    assert data["state"]["nested"] == {"k": [1, 2.5, None]}
    assert [e["seq"] for e in data["events"]] == [3, 4, 5]
    assert data["events"][-1]["content"] == {"text": "hello 4 é"}
    assert json.loads(ok("show", sid, *url, "--json", "--events", "0"))["events"] == []

    assert "nope" in fails("show", "nope", *url, status=1)


# -- rm, clear --------------------------------------------------------------------------------


def test_rm_asks_first(db_url: str) -> None:
    a, b, c = seed(db_url, apps=["chat"], per_app=3)
    url = ["--url", db_url]
    done = run("rm", a, *url, input="n\n")
    assert done.exit_code == 1 and "aborted" in done.stderr and "Traceback" not in done.stderr
    assert f"Delete session {a}" in done.stderr
    assert run("rm", a, *url).exit_code == 1  # end of input: no
    assert "deleted 1 session" in ok("rm", a, *url, input="y\n")
    assert "deleted 2 sessions" in ok("rm", b, c, *url, "--yes")
    with SessionStore(db_url) as store:
        assert store.count_sessions() == 0


def test_rm_a_missing_session_deletes_nothing(db_url: str) -> None:
    (sid,) = seed(db_url, apps=["chat"], per_app=1)
    assert "nope" in fails("rm", sid, "nope", "--yes", "--url", db_url)
    with SessionStore(db_url) as store:
        assert store.get_session_by_id(sid) is not None


def test_show_and_rm_an_id_several_users_have(db_url: str) -> None:
    with SessionStore(db_url) as store:
        for user in ("ada", "bob"):
            store.create_session("chat", user, {"who": user}, session_id="s1")
            store.append_event("s1", "user", f"hi from {user}", app_name="chat", user_id=user)
    url = ["--url", db_url]
    for command in (["show", "s1"], ["rm", "s1", "--yes"]):
        line = fails(*command, *url, status=2)
        assert "'s1'" in line and "--app" in line and "--user" in line
        assert "--app and --user go together" in fails(*command, *url, "--app", "chat", status=2)
    data = json.loads(ok("show", "s1", *url, "--app", "chat", "--user", "bob", "--json"))
    assert data["user_id"] == "bob" and data["state"] == {"who": "bob"}
    assert [e["content"] for e in data["events"]] == ["hi from bob"]
    assert "nope" in fails("show", "s1", *url, "--app", "chat", "--user", "nope", status=1)
    assert "deleted 1 session" in ok("rm", "s1", *url, "--app", "chat", "--user", "ada", "-y")
    # one owner left: the id alone is enough again
    assert json.loads(ok("show", "s1", *url, "--json"))["user_id"] == "bob"
    with SessionStore(db_url) as store:
        assert [e.content for e in store.list_events("s1")] == ["hi from bob"]


def test_clear(db_url: str) -> None:
    seed(db_url, per_app=3)
    url = ["--url", db_url]
    assert "aborted" in run("clear", "--app", "chat", *url, input="no\n").stderr
    assert "deleted 2 sessions" in ok("clear", "--app", "chat", "--user", "user0", *url, "-y")
    assert "deleted 1 session" in ok("clear", "--app", "chat", *url, input="yes\n")
    assert "no sessions" in ok("clear", "--app", "chat", *url)
    with SessionStore(db_url) as store:
        assert store.count_sessions("support") == 3


# -- purge ------------------------------------------------------------------------------------


def test_purge_dry_run_then_real(db_url: str, tmp_path: Path) -> None:
    url = ["--url", db_url]
    fresh = seed(db_url, apps=["chat"], per_app=2)
    old = {"created_at": "2020-01-01T00:00:00+00:00", "updated_at": "2020-01-02T00:00:00+00:00"}
    with SessionStore(db_url) as store:
        store.import_records(records_like(tmp_path, 3, app="chat", **old))
        store.import_records(records_like(tmp_path, 1, app="other", **old))
        store.import_records(
            records_like(tmp_path, 2, app="chat", expires_at="2021-01-01T00:00:00+00:00")
        )
        assert store.count_sessions() == 6  # the expired ones are not counted

    def count(output: str) -> int:
        found = re.search(r"(\d+) (expired )?sessions?", output)
        assert found, output
        return int(found.group(1))

    assert count(ok("purge", *url, "--dry-run")) == 2
    assert "dry run" in ok("purge", *url, "--dry-run")
    assert count(ok("purge", *url)) == 2
    assert count(ok("purge", *url, "--dry-run")) == 0

    assert count(ok("purge", *url, "--older-than", "30d", "--app", "chat", "--dry-run")) == 3
    assert count(ok("purge", *url, "--older-than", "30d", "--dry-run")) == 4
    assert count(ok("purge", *url, "--older-than", "4w", "--app", "chat")) == 3
    assert count(ok("purge", *url, "--older-than", "30d", "--batch-size", "1")) == 1
    assert count(ok("purge", *url, "--older-than", "1d")) == 0
    with SessionStore(db_url) as store:
        assert {s.id for s in store.list_sessions(None)} == set(fresh)

    assert "--older-than" in fails("purge", *url, "--app", "chat", status=2)
    assert "--older-than" in fails("purge", *url, "--older-than", "soon", status=2)


# -- stats ------------------------------------------------------------------------------------


def test_stats(db_url: str) -> None:
    url = ["--url", db_url]
    ok("migrate", *url)
    assert "no sessions" in ok("stats", *url)
    seed(db_url, apps=["chat", "support"], per_app=3, events=4)
    rows = {r["app_name"]: r for r in json_lines(ok("stats", *url, "--json"))}
    assert set(rows) == {"chat", "support"}
    chat = rows["chat"]
    assert (chat["sessions"], chat["users"], chat["events"]) == (3, 2, 12)
    assert chat["event_bytes"] > 0 and chat["state_bytes"] > 0
    assert chat["oldest_created_at"] <= chat["newest_updated_at"]
    table = ok("stats", *url)
    assert "chat" in table and "support" in table and "total" in table and "24" in table


# -- export, import ---------------------------------------------------------------------------


def test_export_import_round_trip(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    with SessionStore(db_url) as store:
        store.patch_state(store.list_sessions("chat")[0].id, set={"app:flag": True})
    dump = tmp_path / "dump.jsonl"
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    done = run("export", "--url", db_url, "--output", str(dump))
    assert done.exit_code == 0 and done.stdout == "" and "exported 6 sessions" in done.stderr
    assert not dump.with_name("dump.jsonl.part").exists()
    records = json_lines(dump.read_text())
    assert {r["type"] for r in records} == {"session", "app_state", "user_state"}

    first = ok("import", str(dump), "--url", copy)
    assert "imported 6 sessions (24 events)" in first
    second = ok("import", str(dump), "--url", copy)
    assert "imported 0 sessions" in second and "skipped 6" in second
    assert checksum(copy) == checksum(db_url)

    # export to stdout, import from stdin, into other tables of the same database
    prefix = "cli_rt_"
    exported = ok("export", "--url", copy)
    assert json_lines(exported) == records
    ok("import", "--url", db_url, "--table-prefix", prefix, input=exported)
    ok("import", "-", "--url", db_url, "--table-prefix", prefix, input=exported)
    assert checksum(db_url, prefix) == checksum(db_url)
    with SessionStore(db_url, table_prefix=prefix) as store:
        assert store.get_app_state("chat") == {"theme": "dark", "flag": True}
        assert store.get_user_state("chat", "user1") == {"lang": "fr-1"}

    only_chat = json_lines(ok("export", "--url", db_url, "--app", "chat"))
    assert {r["app_name"] for r in only_chat} == {"chat"}


def test_export_to_an_unwritable_place(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url, per_app=1)
    line = fails("export", "--url", sqlite_url, "-o", str(tmp_path / "no" / "dump.jsonl"))
    assert "cannot write" in line


def test_pipes_between_real_processes(sqlite_url: str, tmp_path: Path) -> None:
    """``export | import -`` copies a database; ``export | head -1`` ends quietly.

    The export is several times what a pipe holds, so ``head`` leaves while it still writes.
    """
    seed(sqlite_url, per_app=2)
    with SessionStore(sqlite_url) as store:
        store.import_records(records_like(tmp_path, 400, app="big"))
    target = f"sqlite:///{tmp_path / 'piped.db'}"
    python = f"{sys.executable} -m sessiondb"
    pipeline = subprocess.run(
        f"{python} export --batch-size 7 --url {sqlite_url} | {python} import - --url {target}",
        shell=True,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert pipeline.returncode == 0, pipeline.stderr
    assert "imported 404 sessions (416 events)" in pipeline.stdout
    assert "exported 404 sessions" in pipeline.stderr and "Traceback" not in pipeline.stderr
    assert checksum(target) == checksum(sqlite_url)

    head = subprocess.run(
        f"{python} export --batch-size 5 --url {sqlite_url} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert json.loads(head.stdout)["type"] == "session"
    assert "Traceback" not in head.stderr


def test_import_bad_files(sqlite_url: str, tmp_path: Path) -> None:
    url = ["--url", sqlite_url]
    seed(sqlite_url, apps=["chat"], per_app=1)
    good = json_lines(ok("export", *url))
    line = json.dumps(good[0])

    def bad(text: str) -> str:
        path = tmp_path / "bad.jsonl"
        path.write_text(text)
        return fails("import", str(path), *url)

    assert "line 3 is not JSON" in bad(f"{line}\n\nnot json\n")
    assert "line 2 is not a sessiondb record" in bad(f"{line}\n[1, 2]\n")
    assert "line 1 is not a sessiondb record" in bad('{"no": "type"}\n')
    assert "line 1" in bad('{"type": "spaceship"}\n')
    assert "line 1" in bad('{"type": "session", "id": "x"}\n')
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"type": "app_state", "app_name": "caf\xe9"}\n')
    assert "line 1 is not UTF-8" in fails("import", str(path), *url)
    assert "line 2 is not JSON" in fails("import", *url, input=f"{line}\n{{oops\n")
    assert "no-such-file" in fails("import", str(tmp_path / "no-such-file.jsonl"), *url)
    assert "cannot read" in fails("import", str(tmp_path), *url)  # a directory
    assert "imported 0 sessions" in ok("import", *url, input="")


# -- copy -------------------------------------------------------------------------------------


def test_copy_sqlite_to_every_backend(db_url: str, sqlite_url: str, tmp_path: Path) -> None:
    """SQLite to SQLite, PostgreSQL and MariaDB (the target's tables get their own prefix)."""
    seed(sqlite_url)
    prefix = "cli_copy_"
    args = ["copy", "--from", sqlite_url, "--to", db_url, "--to-table-prefix", prefix]
    out = ok(*args)
    assert "copied 6 sessions (24 events)" in out and "verified: 6 sessions" in out
    assert checksum(db_url, prefix) == checksum(sqlite_url)
    again = ok(*args, "--batch-size", "2")
    assert "copied 0 sessions" in again and "skipped 6" in again and "verified" in again
    with SessionStore(db_url, table_prefix=prefix) as store:
        assert store.count_sessions("chat") == 3
        assert store.get_app_state("support") == {"theme": "dark"}

    # copy back, with the source URL from the environment
    back = f"sqlite:///{tmp_path / 'back.db'}"
    ok("copy", "--to", back, "--from-table-prefix", prefix, env={"SESSIONDB_URL": db_url})
    assert checksum(back) == checksum(sqlite_url)


def test_copy_between_two_new_databases(backend: str, make_db_url: Any) -> None:
    """Into a database with no table at all, of the same kind, one app at a time."""
    source, target = make_db_url(), make_db_url()
    seed(source)
    out = ok("copy", "--from", source, "--to", target, "--app", "chat")
    assert "copied 3 sessions (12 events)" in out and "verified: 3 sessions" in out
    with SessionStore(target) as store:
        assert store.count_sessions() == 3 and store.count_sessions("support") == 0


def test_copy_resumes_after_an_interruption(db_url: str, sqlite_url: str) -> None:
    """Half the records are already in the target (as after a crash): copy finishes the job."""
    seed(sqlite_url, per_app=5)
    prefix = "cli_resume_"
    with SessionStore(sqlite_url) as src, SessionStore(db_url, table_prefix=prefix) as dst:
        sessions = [r for r in src.export_records() if r["type"] == "session"]
        dst.import_records(sessions[: len(sessions) // 2])
        assert dst.count_sessions() == 5
    out = ok("copy", "--from", sqlite_url, "--to", db_url, "--to-table-prefix", prefix)
    assert "copied 5 sessions" in out and "skipped 5" in out and "verified" in out
    assert checksum(db_url, prefix) == checksum(sqlite_url)


def test_copy_refuses_a_target_with_other_sessions(sqlite_url: str, tmp_path: Path) -> None:
    """Checked before writing; --merge adds to them and verifies only what it copied."""
    seed(sqlite_url, per_app=2)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    seed(target, apps=["elsewhere"], per_app=1)
    before = checksum(target)
    line = fails("copy", "--from", sqlite_url, "--to", target, status=1)
    assert "1 session that the source does not have" in line and "--merge" in line
    assert "nothing was written" in line and checksum(target) == before

    done = json.loads(ok("copy", "--from", sqlite_url, "--to", target, "--merge", "--json"))
    assert done["sessions"] == 4 and done["verified"] and done["foreign"] == 1
    out = ok("copy", "--from", sqlite_url, "--to", target, "--merge")
    assert "verified: the 4 sessions of the source are in the target" in out
    with SessionStore(target) as store:
        assert store.count_sessions() == 5
        (one,) = store.list_sessions("chat", limit=1)
        store.append_event(one.id, "user", {"text": "written in the target"}, app_name="chat",
                           user_id=one.user_id)  # fmt: skip
    line = fails("copy", "--from", sqlite_url, "--to", target, "--merge", status=1)
    assert "verification failed: 1 copied session differs" in line and one.id in line


def test_copy_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url, per_app=1)
    assert "--to" in fails("copy", "--from", sqlite_url, status=2)
    assert "--from" in fails("copy", "--to", sqlite_url, status=2)
    assert "same" in fails("copy", "--from", sqlite_url, "--to", sqlite_url, status=2)
    target = f"sqlite:///{tmp_path / 't.db'}"
    assert "127.0.0.1:1" in fails("copy", "--from", UNREACHABLE, "--to", target)
    assert "127.0.0.1:1" in fails("copy", "--from", sqlite_url, "--to", UNREACHABLE)


# -- signals: real processes ------------------------------------------------------------------


@pytest.mark.slow
def test_copy_interrupted_then_run_again(db_url: str, tmp_path: Path) -> None:
    """Ctrl-C (status 130), then a crash (SIGKILL), midway: each run again continues the copy."""
    source = f"sqlite:///{tmp_path / 'big.db'}"
    with SessionStore(source) as store:
        store.import_records(records_like(tmp_path, 1500, app="big"))
    prefix = "cli_kill_"
    args = ["copy", "--from", source, "--to", db_url, "--to-table-prefix", prefix]

    counter = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)

    def copied() -> int:
        """Sessions in the target so far: one cheap query, so the loop below polls often."""
        try:
            with counter.connect() as conn:
                return int(
                    conn.execute(sa.text(f"SELECT COUNT(*) FROM {prefix}sessions")).scalar_one()
                )
        except sa.exc.DBAPIError:
            return 0  # the schema is not there yet

    def interrupt(sig: signal.Signals) -> tuple[int, int, str]:
        """Copy until more sessions are in the target than before, then send ``sig``."""
        before = copied()
        cmd = [sys.executable, "-m", "sessiondb", *args, "--batch-size", "20"]
        proc = subprocess.Popen(
            cmd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and copied() <= before:
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, copied(), err

    try:
        status, first, err = interrupt(signal.SIGINT)
        assert status == 130 and "Traceback" not in err, err
        status, second, _ = interrupt(signal.SIGKILL)
    finally:
        counter.dispose()
    assert status == -signal.SIGKILL
    assert 0 < first < second < 1500  # stopped midway each time, as the loops waited for
    out = ok(*args)
    assert "verified: 1500 sessions" in out
    assert f"skipped {second} already present" in out
    assert checksum(db_url, prefix) == checksum(source)


def test_ctrl_c_during_an_export_exits_130_and_leaves_no_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    """SIGINT mid-export: status 130, no traceback, neither FILE nor FILE.part left behind.

    ``FILE.part`` is made a FIFO beforehand, so the test reads the export as it is written and
    interrupts it for certain halfway: the whole export is far bigger than a pipe holds.
    """
    with SessionStore(sqlite_url) as store:
        store.import_records(records_like(tmp_path, 600, app="big"))
    dump = tmp_path / "dump.jsonl"
    part = tmp_path / "dump.jsonl.part"
    os.mkfifo(part)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "export", "--url", sqlite_url, "-o", str(dump)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    try:
        with part.open("rb") as fifo:
            assert json.loads(fifo.readline())["type"] == "session"  # the export is under way
            proc.send_signal(signal.SIGINT)
            rest = fifo.read()  # let it finish writing what it had, if anything
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    assert rest.count(b"\n") < 599  # interrupted, not finished
    assert not dump.exists() and not part.exists()


# -- progress bars and prompts: a real terminal -----------------------------------------------


def run_on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the command with stdout on a pseudo-terminal; return its status and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=_env({"TERM": "xterm-256color", "COLUMNS": "120"}),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err.decode()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def answer_on_a_terminal(answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with stdin on a pseudo-terminal where ``answer`` is typed."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer.encode())
        done = subprocess.run(
            [sys.executable, "-m", "sessiondb", *args],
            stdin=follower,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert "Traceback" not in done.stderr
    return done


def test_progress_bar_on_a_terminal_only(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    status, screen = run_on_a_terminal("copy", "--from", sqlite_url, "--to", target)
    assert status == 0 and "copying" in screen and "6/6" in screen and "verified" in screen
    piped = ok("copy", "--from", sqlite_url, "--to", f"sqlite:///{tmp_path / 'piped.db'}")
    assert "copying" not in piped and "\x1b" not in piped

    dump = tmp_path / "dump.jsonl"
    status, screen = run_on_a_terminal("export", "--url", sqlite_url, "-o", str(dump))
    assert status == 0 and "exporting" in screen
    status, screen = run_on_a_terminal("import", str(dump), "--url", target)
    assert status == 0 and "importing" in screen and "skipped 6" in screen


def test_import_without_a_file_on_a_terminal_is_a_usage_error(sqlite_url: str) -> None:
    done = answer_on_a_terminal("", "import", "--url", sqlite_url)
    assert done.returncode == 2 and "stdin is a terminal" in one_error_line(done.stderr)


# -- backup -----------------------------------------------------------------------------------

WRITER = """
import sys, time
from sessiondb import SessionStore
store = SessionStore(sys.argv[1])
session = store.create_session("writer", "w")
print("ready", flush=True)
n = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    n += 1
    store.append_event(session.id, "user", {"n": n, "pad": "x" * 500}, state_delta={"n": n})
    if n % 20 == 0:
        extra = store.create_session("writer", f"u{n}", {"n": n})
        store.append_events(extra.id, [{"author": "a", "content": i} for i in range(5)])
print(n, flush=True)
"""


def assert_consistent_copy(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with SessionStore(f"sqlite:///{path}", auto_migrate=False) as store:
        sessions = store.list_sessions("writer")
        assert sessions
        for s in sessions:
            seqs = [e.seq for e in store.list_events(s.id)]
            assert seqs == list(range(1, s.event_count + 1))
            if s.user_id == "w" and seqs:  # the state went with the events, atomically
                assert s.state["n"] == seqs[-1]


def test_backup(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url, apps=["writer"])
    copy = tmp_path / "copy.db"
    assert "backed up to" in ok("backup", str(copy), "--url", sqlite_url)
    assert_consistent_copy(copy)
    assert checksum(f"sqlite:///{copy}") == checksum(sqlite_url)
    assert "--force" in fails("backup", str(copy), "--url", sqlite_url)
    ok("backup", str(copy), "--url", sqlite_url, "--force")
    assert "no directory" in fails("backup", str(tmp_path / "no" / "x.db"), "--url", sqlite_url)
    assert "is a directory" in fails("backup", str(tmp_path), "--url", sqlite_url, "--force")


def test_backup_on_every_backend(backend: str, db_url: str, tmp_path: Path) -> None:
    """SQLite is copied; a server's URL fails with one line naming the server's dump tool."""
    copy = tmp_path / "x.db"
    if backend == "sqlite":
        assert "backed up to" in ok("backup", str(copy), "--url", db_url)
        return
    tool = {"postgresql": "pg_dump", "mysql": "mysqldump"}[backend]
    assert tool in fails("backup", str(copy), "--url", db_url)
    assert not copy.exists()


@pytest.mark.slow
def test_backup_while_another_process_writes(sqlite_url: str, tmp_path: Path) -> None:
    with SessionStore(sqlite_url):
        pass  # create the schema before the writer starts
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, sqlite_url, "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        copies = []
        for i in range(3):
            copy = tmp_path / f"during-{i}.db"
            ok("backup", str(copy), "--url", sqlite_url)
            copies.append(copy)
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        assert int(out.split()[-1]) > 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    for copy in copies:
        assert_consistent_copy(copy)
    events_in = [checksum(f"sqlite:///{c}")[0] for c in copies]
    assert events_in == sorted(events_in)  # later copies hold at least as much
    assert json_lines(ok("ls", "--url", f"sqlite:///{copies[-1]}", "--json", "--limit", "0"))


# -- doctor -----------------------------------------------------------------------------------


def test_doctor(db_url: str, backend: str) -> None:
    seed(db_url, per_app=1)
    out = ok("doctor", "--url", db_url)
    assert backend in out and f"{HEAD} (head)" in out and "sqlalchemy" in out
    report = json.loads(ok("doctor", "--url", db_url, "--json"))
    assert report["backend"] == backend and report["revision"] == report["head"] == HEAD
    assert report["indexes"] and isinstance(report["advice"], list)
    if backend == "sqlite":
        assert report["pragmas"]["journal_mode"] == "wal"
        assert "journal_mode" in out
    else:
        assert report["server"]


def test_doctor_advises_migrating(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    out = ok("doctor", "--url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert "none (head is" in out and "migrate" in out


# -- uninstall --------------------------------------------------------------------------------

SESSIONDB_TABLES = {
    "sessions",
    "events",
    "session_labels",
    "app_states",
    "user_states",
    "lg_threads",
    "lg_checkpoints",
    "lg_blobs",
    "lg_writes",
    "sessiondb_alembic_version",
}


def test_uninstall_drops_sessiondbs_tables_and_nothing_else(db_url: str) -> None:
    seed(db_url)
    seed(db_url, "other_", apps=["kept"], per_app=2)
    with _engine(db_url).begin() as conn:  # the application's own table, with a row
        conn.execute(sa.text("CREATE TABLE app_orders (id INTEGER PRIMARY KEY, item TEXT)"))
        conn.execute(sa.text("INSERT INTO app_orders (id, item) VALUES (1, 'tea')"))
    before = table_names(db_url)
    assert SESSIONDB_TABLES | {"app_orders"} <= before
    url = ["--url", db_url]

    # stdin is not a terminal and no --yes: refuses, and says what it would have dropped
    line = fails("uninstall", *url, status=2)
    assert "--yes" in line and "10 tables (6 sessions)" in line
    assert table_names(db_url) == before

    out = ok("uninstall", *url, "--yes")
    assert out.startswith("dropped 10 tables (6 sessions) from ")
    for name in SESSIONDB_TABLES:
        assert name in out
    assert table_names(db_url) == before - SESSIONDB_TABLES
    with _engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT item FROM app_orders")).scalars().all() == ["tea"]
    assert "no schema" in ok("current", *url)
    with SessionStore(db_url, table_prefix="other_", auto_migrate=False) as store:
        assert store.count_sessions("kept") == 2  # another prefix: untouched

    assert "nothing to drop" in ok("uninstall", *url, "--yes")
    assert "nothing to drop" in ok("uninstall", *url)  # nothing to confirm either
    out = ok("uninstall", *url, "--table-prefix", "other_", "-y")
    assert "dropped 10 tables (2 sessions)" in out and "other_sessions" in out
    assert table_names(db_url) == {"app_orders"}


def test_uninstall_leaves_tables_that_only_have_sessiondbs_names(
    backend: str, make_db_url: Any
) -> None:
    """A ``sessions`` table without sessiondb's version table (Google ADK's, say) is kept."""
    url = make_db_url()
    with _engine(url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE sessions (id VARCHAR(64) PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE events (id VARCHAR(64) PRIMARY KEY)"))
    line = fails("uninstall", "--url", url, "--yes", status=1)
    assert "not sessiondb's" in line and "sessions" in line and "sessiondb_alembic_version" in line
    assert table_names(url) == {"sessions", "events"}
    with _engine(url).begin() as conn:  # with a prefix, only that prefix's names count
        conn.execute(sa.text("CREATE TABLE adk_sessions (id VARCHAR(64) PRIMARY KEY)"))
    line = fails("uninstall", "--url", url, "--table-prefix", "adk_", "--yes", status=1)
    assert "adk_sessiondb_alembic_version" in line
    assert "nothing to drop" in ok("uninstall", "--url", url, "--table-prefix", "x_", "--yes")
    assert table_names(url) == {"sessions", "events", "adk_sessions"}


def test_uninstall_of_an_old_schema(tmp_path: Path) -> None:
    """A schema at an older revision is dropped whole, its version table included."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with sqlite3.connect(tmp_path / "old.db") as conn:  # fewer tables, as revision 0001 had
        conn.execute("CREATE TABLE sessiondb_alembic_version (version_num VARCHAR(32))")
        conn.execute("INSERT INTO sessiondb_alembic_version VALUES ('0001')")
        conn.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, app_name TEXT)")
        conn.execute("INSERT INTO sessions VALUES ('a', 'chat')")
    assert "0001 (not the head" in ok("current", "--url", url)
    out = ok("uninstall", "--url", url, "--yes")
    assert "dropped 2 tables (1 session)" in out
    assert table_names(url) == set()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_uninstall_hides_the_password(backend: str, db_url: str) -> None:
    with_password = sa.make_url(db_url).set(password="s3cret").render_as_string(False)
    out = ok("uninstall", "--url", with_password, "--yes")
    assert "dropped 10 tables" in out and ":***@" in out and "s3cret" not in out


def test_uninstall_asks_on_a_terminal(sqlite_url: str) -> None:
    seed(sqlite_url)
    declined = answer_on_a_terminal("n\n", "uninstall", "--url", sqlite_url)
    assert declined.returncode == 1
    # the terminal echoes the answer and its newline; here stderr is a pipe, not that terminal
    prompt, _, error = declined.stderr.rpartition("[y/N] ")
    assert sqlite_url in prompt and "6 sessions" in prompt
    for name in SESSIONDB_TABLES:
        assert name in prompt
    assert (
        error
        == "sessiondb: error: aborted: nothing was dropped (pass --yes to skip the question)\n"
    )
    assert table_names(sqlite_url) >= SESSIONDB_TABLES

    confirmed = answer_on_a_terminal("y\n", "uninstall", "--url", sqlite_url)
    assert confirmed.returncode == 0, confirmed.stderr
    assert "dropped 10 tables (6 sessions)" in confirmed.stdout
    assert table_names(sqlite_url) == set()


# -- LangGraph checkpoints: export, import, copy ----------------------------------------------


def lg_threads(url: str, threads: dict[str, tuple[dict[str, str], int]]) -> None:
    """LangGraph threads with ``n`` checkpoints each (thread id -> (owner keys, n)), written by
    the saver as a graph would."""
    pytest.importorskip("langgraph.checkpoint.conformance", reason="sessiondb[langgraph]")
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(url) as saver:
        for thread, (owner, n) in threads.items():
            config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": "", **owner}}
            for step in range(n):
                v = {"ch": saver.get_next_version(None, None)}
                checkpoint = generate_checkpoint(channel_values={"ch": step}, channel_versions=v)
                config = saver.put(config, checkpoint, {"step": step}, v)
            saver.put_writes(config, [("ch", "pending")], "task-1")


def lg_value(url: str, thread: str, **owner: str) -> Any:
    """The newest checkpoint's channel value and pending writes of a thread."""
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(url) as saver:
        found = saver.get_tuple({"configurable": {"thread_id": thread, **owner}})
        assert found is not None
        return found.checkpoint["channel_values"]["ch"], found.pending_writes


TRAVEL = {"app_name": "chat", "user_id": "ann"}


def test_export_import_and_copy_carry_langgraph_threads(
    db_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Threads bound to a user and to nobody, with checkpoints, blobs and pending writes, go
    through export | import and copy to another backend; --app keeps only its app's threads;
    an export without threads (as older versions wrote) still imports."""
    seed(db_url, per_app=1)
    lg_threads(db_url, {"trip": (TRAVEL, 3), "anon": ({}, 2)})
    dump = tmp_path / "all.jsonl"
    summary = json.loads(ok("export", "--url", db_url, "-o", str(dump), "--json"))
    assert (summary["sessions"], summary["threads"], summary["checkpoints"]) == (2, 2, 5)
    assert "2 LangGraph threads (5 checkpoints)" in run("export", "--url", db_url).stderr

    out = ok("import", str(dump), "--url", sqlite_url)
    assert "imported 2 sessions" in out and "2 LangGraph threads (5 checkpoints)" in out
    assert checksum(sqlite_url) == checksum(db_url)
    assert lg_value(sqlite_url, "trip", **TRAVEL) == (2, [("task-1", "ch", "pending")])
    assert lg_value(sqlite_url, "anon")[0] == 1
    again = json.loads(ok("import", str(dump), "--url", sqlite_url, "--json"))
    assert (again["threads"], again["checkpoints"], again["skipped"]) == (0, 0, 4)

    chat = json_lines(ok("export", "--url", db_url, "--app", "chat"))
    assert [(r["type"], r.get("thread_id")) for r in chat if r["type"] != "session"] == [
        ("app_state", None), ("user_state", None), ("lg_thread", "trip"),
    ]  # fmt: skip

    old = tmp_path / "old.jsonl"
    old.write_text(
        "".join(line + "\n" for line in dump.read_text().splitlines() if '"lg_thread"' not in line)
    )
    older = f"sqlite:///{tmp_path / 'older.db'}"
    assert "imported 2 sessions (8 events), 2 app states, 2 user states;" in ok(
        "import", str(old), "--url", older
    )

    target = f"sqlite:///{tmp_path / 'copy.db'}"
    out = ok("copy", "--from", db_url, "--to", target)
    assert "2 LangGraph threads (5 checkpoints)" in out and "verified" in out
    assert checksum(target) == checksum(db_url)
    assert lg_value(target, "trip", **TRAVEL)[0] == 2


def test_copy_merge_verifies_langgraph_threads(sqlite_url: str, tmp_path: Path) -> None:
    """A target holding threads the source lacks is refused without --merge; --merge verifies
    the copied threads, and fails when one differs in the target."""
    lg_threads(sqlite_url, {"trip": (TRAVEL, 2)})
    target = f"sqlite:///{tmp_path / 'target.db'}"
    lg_threads(target, {"other": ({}, 1)})
    line = fails("copy", "--from", sqlite_url, "--to", target, status=1)
    assert "1 LangGraph thread that the source does not have" in line and "--merge" in line

    done = json.loads(ok("copy", "--from", sqlite_url, "--to", target, "--merge", "--json"))
    assert done["verified"] and (done["threads"], done["checkpoints"]) == (1, 2)
    assert done["foreign_threads"] == 1 and done["differing_threads"] == 0
    out = ok("copy", "--from", sqlite_url, "--to", target, "--merge")
    assert "1 LangGraph thread (2 checkpoints) of the source are in the target" in out

    lg_threads(target, {"trip": (TRAVEL, 1)})  # a checkpoint more in the target's copy
    line = fails("copy", "--from", sqlite_url, "--to", target, "--merge", status=1)
    assert "verification failed: 1 copied LangGraph thread differs" in line and "'trip'" in line
