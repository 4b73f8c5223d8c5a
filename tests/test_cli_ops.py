"""The ``sessiondb`` command as operators use it (issue 15): URLs as they write them, read-only
commands that create nothing, expired sessions made visible, machine-readable output and exit
statuses, copy into a non-empty target, large listings, progress, and the schema commands.

End to end as in test_cli.py: Typer's ``CliRunner`` in-process, real processes where exit
statuses, pipes or a terminal matter; real databases, nothing mocked.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from sessiondb import SessionStore
from sessiondb._urls import resolve_url
from sessiondb.errors import ConfigurationError

from .test_cli import fails, json_lines, ok, process, records_like, run, seed

EXPIRED = {"expires_at": "2021-01-01T00:00:00+00:00"}


# -- URLs as operators write them -------------------------------------------------------------


def test_postgres_scheme_is_postgresql() -> None:
    """Heroku, Supabase and Render hand out postgres://; the library takes it too."""
    target = resolve_url("postgres://u:secret@db.example:6543/app")
    assert target.backend == "postgresql"
    assert target.sync_url.drivername == "postgresql+psycopg"
    assert target.async_url.drivername == "postgresql+asyncpg"
    assert target.sync_url.port == 6543 and "secret" not in target.safe_url
    assert resolve_url("postgres+asyncpg://u@h/app").async_url.drivername == "postgresql+asyncpg"


@pytest.mark.postgresql
def test_postgres_scheme_on_the_server(make_db_url: object) -> None:
    url = make_db_url("postgresql")  # type: ignore[operator]
    heroku = "postgres://" + url.split("://", 1)[1]
    assert "created the schema" in ok("migrate", "--url", heroku)
    seed(url, per_app=1)
    assert len(json_lines(ok("ls", "--url", heroku, "--json"))) == 2


def test_database_url_comes_after_url_and_sessiondb_url(tmp_path: Path) -> None:
    a, b, c = (f"sqlite:///{tmp_path / name}.db" for name in "abc")
    for url, app in ((a, "from-a"), (b, "from-b"), (c, "from-c")):
        with SessionStore(url) as store:
            store.create_session(app, "u")
    apps = lambda out: {row["app_name"] for row in json_lines(out)}  # noqa: E731
    assert apps(ok("ls", "--json", env={"DATABASE_URL": c})) == {"from-c"}
    assert apps(ok("ls", "--json", env={"DATABASE_URL": c, "SESSIONDB_URL": b})) == {"from-b"}
    env = {"DATABASE_URL": c, "SESSIONDB_URL": b}
    assert apps(ok("ls", "--json", "--url", a, env=env)) == {"from-a"}
    assert "DATABASE_URL" in fails("ls", status=2)


def test_a_bare_path_is_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "created the schema" in ok("migrate", "--url", "./cli.db")
    assert (tmp_path / "cli.db").is_file()
    with SessionStore(f"sqlite:///{tmp_path / 'cli.db'}") as store:
        store.create_session("chat", "u")
    for form in ("./cli.db", "cli.db", str(tmp_path / "cli.db")):
        assert len(json_lines(ok("ls", "--url", form, "--json"))) == 1
    assert len(json_lines(ok("ls", "--json", env={"SESSIONDB_URL": "cli.db"}))) == 1
    # the library wants a URL, and says how to write one
    with pytest.raises(ConfigurationError, match=r"no scheme.*sqlite:///"):
        SessionStore("cli.db")


# -- read-only commands create nothing --------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["stats"], ["ls"], ["show", "x"], ["doctor"], ["current"], ["export"],
                ["rm", "x", "--yes"], ["purge"], ["clear", "--app", "a", "--yes"]],
)  # fmt: skip
def test_read_only_commands_create_no_file(command: list[str], tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'typo.db'}", str(tmp_path / "typo.db")):
        line = fails(*command, "--url", url, status=1)
        assert "does not exist" in line and "typo.db" in line, line
        assert "auto_migrate" not in line and "None" not in line
        assert not (tmp_path / "typo.db").exists()


def test_a_file_without_the_schema_is_said_plainly(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    line = fails("stats", "--url", str(tmp_path / "empty.db"), status=1)
    assert "has no sessiondb schema" in line and "sessiondb migrate" in line
    assert "auto_migrate" not in line and "revision None" not in line


# -- exit statuses and help -------------------------------------------------------------------


def test_bad_values_exit_2(tmp_path: Path, db_url: str) -> None:
    assert "malformed database URL" in fails("ls", "--url", "postgresql://", status=2)
    assert "malformed database URL" in fails("ls", "--url", "pg:/nowhere", status=2)
    line = fails("ls", "--url", db_url, "--cursor", "not-a-cursor", status=2)
    assert "cursor" in line
    line = fails("ls", "--url", "sqlite://./x.db", status=2)
    assert "three slashes" in line and "dialect[+driver]://...." not in line


def test_the_console_script_exit_status_for_bad_values(tmp_path: Path) -> None:
    done = process("ls", "--url", "mysql://")
    assert done.returncode == 2 and done.stderr.startswith("sessiondb: error: malformed")


def test_flags_are_shown_as_flags_in_help() -> None:
    for command in ("ls", "show", "stats", "doctor", "purge", "rm", "copy", "migrate"):
        out = ok(command, "--help", env={"COLUMNS": "200"})
        assert "<bool>" not in out, (command, out)
    assert "<bool>" not in ok("--help", env={"COLUMNS": "200"})


# -- expired sessions awaiting purge ----------------------------------------------------------


def test_expired_sessions_are_visible(db_url: str, tmp_path: Path) -> None:
    url = ["--url", db_url]
    live = seed(db_url, apps=["chat"], per_app=2)
    with SessionStore(db_url) as store:
        store.import_records(records_like(tmp_path, 3, app="chat", **EXPIRED))
        store.import_records(records_like(tmp_path, 1, app="gone", **EXPIRED))
    expired = {r["id"] for r in json_lines(ok("ls", *url, "--json", "--include-expired"))}
    assert len(expired) == 6 and set(live) < expired
    assert {r["id"] for r in json_lines(ok("ls", *url, "--json"))} == set(live)
    some = sorted(expired - set(live))[0]

    line = fails("show", some, *url, status=1)
    assert "expired" in line and "--include-expired" in line and "purge" in line
    shown = json.loads(ok("show", some, *url, "--include-expired", "--json"))
    assert shown["id"] == some and shown["expires_at"].startswith("2021-01-01")
    assert "(expired)" in ok("show", some, *url, "--include-expired")

    stats = {row["app_name"]: row for row in json_lines(ok("stats", *url, "--json"))}
    assert stats["chat"]["sessions"] == 2 and stats["chat"]["expired"] == 3
    assert stats["gone"]["sessions"] == 0 and stats["gone"]["expired"] == 1
    table = ok("stats", *url)
    assert "EXPIRED" in table and "4 expired sessions awaiting purge" in table

    advice = json.loads(ok("doctor", *url, "--json"))
    assert advice["expired_awaiting_purge"] == 4
    assert any("sessiondb purge" in line for line in advice["advice"])
    assert "sessiondb purge" in ok("doctor", *url)

    ok("purge", *url)
    assert "awaiting purge" not in ok("stats", *url)
    assert json.loads(ok("doctor", *url, "--json"))["expired_awaiting_purge"] == 0
    assert "all looks well" in ok("doctor", *url) or "advice" in ok("doctor", *url)
    assert len(json_lines(ok("ls", *url, "--json", "--include-expired"))) == 2


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


_ = (run, _csv_rows)


def test_every_command_speaks_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    other = f"sqlite:///{tmp_path / 'b.db'}"
    u = ["--url", url]
    assert json.loads(ok("migrate", *u, "--json")) == {
        "before": None, "after": sessiondb_head(), "changed": True
    }  # fmt: skip
    assert json.loads(ok("current", *u, "--json"))["at_head"] is True
    ids = seed(url, apps=["chat"], per_app=3)
    with SessionStore(url) as store:
        store.import_records(records_like(tmp_path, 2, app="chat", **EXPIRED))
    assert json.loads(ok("purge", *u, "--dry-run", "--json")) == {
        "deleted": 0, "matched": 2, "dry_run": True
    }  # fmt: skip
    assert json.loads(ok("purge", *u, "--json"))["deleted"] == 2
    dump = tmp_path / "dump.jsonl"
    exported = json.loads(ok("export", *u, "-o", str(dump), "--json"))
    assert exported["sessions"] == 3 and exported["output"] == str(dump)
    imported = json.loads(ok("import", str(dump), "--url", other, "--json"))
    assert imported["sessions"] == 3 and imported["skipped"] == 0
    copied = json.loads(ok("copy", "--from", url, "--to", other, "--json"))
    assert copied["skipped"] == 3 and copied["verified"] and copied["source"] == 3
    backed = json.loads(ok("backup", str(tmp_path / "bk.db"), *u, "--json"))
    assert backed["bytes"] > 0
    assert json.loads(ok("rm", ids[0], *u, "--yes", "--json")) == {"deleted": 1, "ids": [ids[0]]}
    assert json.loads(ok("clear", "--app", "chat", *u, "--yes", "--json")) == {"deleted": 2}
    dropped = json.loads(ok("uninstall", "--url", other, "--yes", "--json"))
    assert "sessiondb_alembic_version" in dropped["dropped"] and dropped["sessions"] == 3


def sessiondb_head() -> str:
    import sessiondb

    return sessiondb.SCHEMA_HEAD


# -- large listings and output formats --------------------------------------------------------


def test_ls_formats_and_streamed_pages(tmp_path: Path) -> None:
    """More rows than a page (1000) and a screenful (100): every format lists each once."""
    from sessiondb.cli._sessions import SCREEN

    url = f"sqlite:///{tmp_path / 'many.db'}"
    with SessionStore(url) as store:
        store.import_records(records_like(tmp_path, 2300, app="chat", title='t,"quoted"'))
    u = ["--url", url, "--limit", "0"]
    ids = {r["id"] for r in json_lines(ok("ls", *u, "--json"))}
    assert len(ids) == 2300
    assert {r["id"] for r in json_lines(ok("ls", *u, "--format", "jsonl"))} == ids
    assert {r["id"] for r in json.loads(ok("ls", *u, "--format", "json"))} == ids
    rows = _csv_rows(ok("ls", *u, "--format", "csv"))
    assert {r["id"] for r in rows} == ids and rows[0]["title"] == 't,"quoted"'
    table = ok("ls", *u).splitlines()
    assert table[0].split()[:3] == ["ID", "APP", "USER"] and len(table) == 2301
    assert {line.split()[0] for line in table[1:]} == ids
    # a page: its cursor on stdout after a table, on stderr after data
    done = run("ls", "--url", url, "--limit", "1500", "--format", "csv")
    assert len(_csv_rows(done.stdout)) == 1500 and done.stderr.startswith("next cursor: ")
    cursor = done.stderr.split()[-1]
    rest = _csv_rows(ok("ls", "--url", url, "--limit", "0", "--cursor", cursor, "--format", "csv"))
    assert {r["id"] for r in rows[:0]} | {r["id"] for r in rest} | {
        r["id"] for r in _csv_rows(done.stdout)
    } == ids and len(rest) == 800
    small = ok("ls", "--url", url, "--limit", str(SCREEN)).splitlines()
    assert small[-1].startswith("next cursor: ") and len(small) == SCREEN + 2
    assert (
        json.loads(ok("ls", "--url", url, "--limit", "0", "--app", "none", "--format", "json"))
        == []
    )
    assert "--format" in fails("ls", *u, "--json", "--format", "csv", status=2)


def test_stats_formats(db_url: str, tmp_path: Path) -> None:
    seed(db_url, apps=["chat", "support"], per_app=2)
    u = ["--url", db_url]
    rows = _csv_rows(ok("stats", *u, "--format", "csv"))
    assert [(r["app_name"], r["sessions"], r["expired"]) for r in rows] == [
        ("chat", "2", "0"), ("support", "2", "0")
    ]  # fmt: skip
    whole = json.loads(ok("stats", *u, "--format", "json"))
    assert [a["app_name"] for a in whole["apps"]] == ["chat", "support"]
    assert json_lines(ok("stats", *u, "--format", "jsonl")) == whole["apps"] + whole["langgraph"]


def test_export_piped_into_import_on_a_terminal(tmp_path: Path) -> None:
    """No bar of bytes counted as items, and the exporter's summary on a line of its own."""
    import os
    import pty
    import subprocess
    import sys

    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    seed(f"sqlite:///{src}", per_app=3)
    py = f"{sys.executable} -m sessiondb"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["sh", "-c", f"{py} export --url {src} | {py} import - --url {dst}"],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    lines = [line.strip() for line in b"".join(chunks).decode().splitlines() if line.strip()]
    assert sorted(lines) == sorted([
        "exported 6 sessions (24 events), 2 app states, 4 user states",
        "imported 6 sessions (24 events), 2 app states, 4 user states; skipped 0 already present",
    ]), lines  # fmt: skip


# -- the schema commands: migrate --sql, history ----------------------------------------------


def _run_script(url: str, script: str) -> None:
    """Run the SQL as a DBA would (psql / mysql), one statement at a time."""
    from .test_cli import _engine

    engine = _engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in script.split(";\n"):
                body = "\n".join(
                    line for line in statement.splitlines() if not line.startswith("--")
                ).strip()
                if body and body.upper() not in ("BEGIN", "COMMIT"):
                    conn.exec_driver_sql(body.replace("%", "%%"))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql),
                pytest.param("mysql", marks=pytest.mark.mysql)],
)  # fmt: skip
def test_migrate_sql_makes_a_schema_a_dba_can_apply(backend: str, make_db_url: object) -> None:
    url = make_db_url(backend)  # type: ignore[operator]
    dialect_url = url.replace("mysql", "mariadb", 1) if backend == "mysql" else url
    script = ok("migrate", "--sql", "--url", dialect_url)
    assert "CREATE TABLE sessions" in script and "sessiondb_alembic_version" in script
    assert "no schema" in ok("current", "--url", url)  # printing it changed nothing
    _run_script(url, script)
    assert f"{sessiondb_head()} (head)" in ok("current", "--url", url, "--check")
    with SessionStore(url, auto_migrate=False) as store:
        s = store.create_session("chat", "u", {"k": 1})
        store.append_event(s.id, "user", {"text": "hi"})
        assert store.get_session("chat", "u", s.id, recent_events=5).events  # type: ignore[union-attr]
    assert "schema already at revision" in ok("migrate", "--url", url)
    part = json.loads(ok("migrate", "--sql", "--url", dialect_url, "--from-revision", "0005",
                         "--json"))  # fmt: skip
    assert part["from"] == "0005" and "0005 -> 0006" in part["sql"]
    assert "CREATE TABLE sessions " not in part["sql"]


def test_migrate_sql_refusals(tmp_path: Path) -> None:
    assert "SQLite" in fails("migrate", "--sql", "--url", str(tmp_path / "x.db"), status=2)
    assert not (tmp_path / "x.db").exists()
    line = fails("migrate", "--sql", "--url", "postgresql://h/db", "--from-revision", "9", status=2)
    assert "not a revision" in line
    assert "--sql" in fails("migrate", "--url", "postgresql://h/db", "--from-revision", "0001",
                            status=2)  # fmt: skip
    assert "already at" in ok("migrate", "--sql", "--url", "postgres://h/db", "--from-revision",
                              sessiondb_head())  # fmt: skip


def test_history() -> None:
    import sessiondb
    from sessiondb import _migrations

    rows = json_lines(ok("history", "--json"))
    assert [r["revision"] for r in rows] == list(_migrations.REVISIONS)
    assert rows[0]["down_revision"] is None and rows[-1]["revision"] == sessiondb.SCHEMA_HEAD
    lines = ok("history").splitlines()
    assert lines[0].startswith("<base> -> 0001") and lines[-1].endswith(rows[-1]["description"])
    assert "(head)" in lines[-1]


# -- wording ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server", [pytest.param("postgresql://postgres@127.0.0.1:5432", marks=pytest.mark.postgresql),
               pytest.param("mysql://root@127.0.0.1:3306", marks=pytest.mark.mysql)],
)  # fmt: skip
def test_a_missing_database_and_a_refused_user_are_named(server: str) -> None:
    missing = f"{server}/sessiondb_no_such_db_{uuid_hex()}"
    line = fails("stats", "--url", missing, status=1)
    assert "does not exist" in line and "cannot reach" not in line
    assert "mysql error" not in line and "1049" not in line
    scheme, rest = server.split("://")
    stranger = f"{scheme}://nobody_{uuid_hex()}:wrong@{rest.split('@')[1]}/postgres"
    line = fails("stats", "--url", stranger, status=1)
    assert "authentication failed for user" in line and "cannot reach" not in line
    assert "wrong" not in line  # the password


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


def test_every_command_has_json() -> None:
    from .test_cli import cli_commands

    for name in cli_commands():
        assert "--json" in ok(name, "--help", env={"COLUMNS": "200"}), name


def test_an_unparseable_url_shows_the_form_once() -> None:
    line = fails("ls", "--url", "postgresql://u@h:port/db", status=2)
    assert "dialect[+driver]://[user[:password]@]host/database;" in line
    assert "...." not in line
