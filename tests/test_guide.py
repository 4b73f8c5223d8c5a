"""Every ```python sample of the user's guide, extracted at test time and run on each backend.

Samples run verbatim, except that ``google.adk.sessions`` becomes ``sessiondb`` and, on the
server backends, the string literal assigned to ``db_url`` becomes the test's private database.

The guide is read from ``SESSIONDB_GUIDE``, else from ``../shared/spec/guide.md`` beside the
checkout. Without it these tests skip (a plain clone has no ``shared/``), unless
``SESSIONDB_REQUIRE_GUIDE=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from sessiondb import ConfigurationError, DatabaseSessionService, Session, SessionStore
from sessiondb._urls import resolve_url

GUIDE = Path(
    os.environ.get(
        "SESSIONDB_GUIDE", Path(__file__).resolve().parents[2] / "shared" / "spec" / "guide.md"
    )
)
REQUIRE_GUIDE = os.environ.get("SESSIONDB_REQUIRE_GUIDE") == "1"
MISSING_GUIDE = (
    f"the beginner's guide is not at {GUIDE}: set SESSIONDB_GUIDE to the path of guide.md "
    "(or keep the shared/ folder beside the checkout)"
)
ADK_IMPORT = "from google.adk.sessions import DatabaseSessionService"
OUR_IMPORT = "from sessiondb import DatabaseSessionService"
APP, USER, SID = "my_chat_app", "user456", "xyz-789-abc"
PRE_STATE: dict[str, Any] = {"language": "en", "message_count": 3}
SQLITE_URL = "sqlite:///./my_agent_data.db"


@pytest.fixture(autouse=True)
def _guide_is_there() -> None:
    """Every test here skips, for one reason, when the guide is absent (unless it is required)."""
    if not GUIDE.is_file() and not REQUIRE_GUIDE:
        pytest.skip(MISSING_GUIDE)


def guide_blocks() -> dict[str, str]:
    """``{heading: code}`` for every ```python block; repeats under one heading get `` (2)``."""
    blocks: dict[str, str] = {}
    if not GUIDE.is_file():  # under SESSIONDB_REQUIRE_GUIDE=1 (else the module is skipped)
        pytest.fail(f"{MISSING_GUIDE}; SESSIONDB_REQUIRE_GUIDE=1 makes that a failure")
    heading, lines, i = "", GUIDE.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = lines.index("```", i + 1)
            if line.strip() == "```python":
                key, n = heading, 1
                while key in blocks:
                    n += 1
                    key = f"{heading} ({n})"
                blocks[key] = "\n".join(lines[i + 1 : end]) + "\n"
            i = end
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        i += 1
    return blocks


def db_url_literals(code: str) -> list[ast.Constant]:
    """The string literals assigned to ``db_url`` in ``code``, in order."""
    return [
        node.value
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["db_url"]
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]


def url_assignments(code: str) -> list[tuple[str, str]]:
    """``(url, the rest of its line: the comment)`` for each ``db_url = "..."``."""
    src = code.splitlines()
    return [
        (str(n.value), src[n.lineno - 1][n.end_col_offset or 0 :]) for n in db_url_literals(code)
    ]


def placeholder_port(url: str) -> bool:
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
        return False
    except ValueError:  # "host:port"
        return True


def adapt(code: str, server_url: str | None) -> str:
    """Swap the import; on servers, point a service sample's ``db_url`` literal at the server."""
    assert ADK_IMPORT in code or "google" not in code
    code = code.replace(ADK_IMPORT, OUR_IMPORT)
    if server_url is None or "DatabaseSessionService(" not in code:
        return code
    lines = code.splitlines(keepends=True)
    literals = db_url_literals(code)
    assert literals, "a sample that builds a service must assign db_url"
    for lit in sorted(literals, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        assert lit.lineno == lit.end_lineno and lit.end_col_offset is not None
        row = lines[lit.lineno - 1]
        lines[lit.lineno - 1] = row[: lit.col_offset] + repr(server_url) + row[lit.end_col_offset :]
    return "".join(lines)


def execute(code: str, ns: dict[str, Any]) -> str:
    """Run ``code`` (top-level ``await`` allowed) in ``ns``; return what it printed."""
    compiled = compile(code, "<guide>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if compiled.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(compiled, ns))
        else:
            exec(compiled, ns)
    return out.getvalue()


@dataclass
class Guide:
    """One backend's setting for the samples: their namespace and a store to check effects."""

    backend: str
    url: str  # where the prepared service (and the ``check`` store) point
    server_url: str | None
    tmp: Path
    check: SessionStore
    services: list[DatabaseSessionService] = field(default_factory=list)
    ns: dict[str, Any] = field(default_factory=dict)
    pre: Session | None = None

    def fresh(self) -> dict[str, Any]:
        return {"__name__": "__guide__"}

    def prepare(self) -> DatabaseSessionService:
        """The namespace the samples assume: a service and the session "xyz-789-abc"."""
        svc = DatabaseSessionService(db_url=self.url)
        self.services.append(svc)
        self.pre = asyncio.run(svc.create_session(APP, USER, dict(PRE_STATE), session_id=SID))
        self.ns.update(self.fresh(), session_service=svc, app_name=APP, user_id=USER)
        self.ns.update(session_id=SID, APP_NAME=APP)
        return svc

    def create(
        self, app: str = APP, user: str = USER, state: dict[str, Any] | None = None
    ) -> Session:
        svc: DatabaseSessionService = self.ns["session_service"]
        return asyncio.run(svc.create_session(app, user, state or {}))

    def run(self, key: str, ns: dict[str, Any] | None = None) -> str:
        blocks = guide_blocks()
        assert key in blocks, f"the guide has no python block under {key!r}"
        ns = self.ns if ns is None else ns
        try:
            return execute(adapt(blocks[key], self.server_url), ns)
        finally:
            self.services += [
                v
                for v in ns.values()
                if isinstance(v, DatabaseSessionService) and v not in self.services
            ]

    def stored(self, sid: str = SID, app: str = APP, user: str = USER) -> Session | None:
        return self.check.get_session(app, user, sid)


@pytest.fixture
def guide(
    backend: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Guide]:
    monkeypatch.chdir(tmp_path)
    server = None if backend == "sqlite" else db_url
    url = server or SQLITE_URL
    g = Guide(backend, url, server, tmp_path, SessionStore(url))
    yield g
    for svc in g.services:
        svc.close()
    g.check.close()


Check = Callable[["Guide", str], None]
SAMPLES: dict[str, Check] = {}


def sample(*keys: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        SAMPLES.update(dict.fromkeys(keys, fn))
        return fn

    return register


def test_every_guide_sample_is_checked() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 15
    assert set(blocks) == set(SAMPLES)


# -- the samples --------------------------------------------------------------------------------


@sample("Basic Setup")
def _basic_setup(g: Guide, key: str) -> None:
    ns = g.fresh()
    assert g.run(key, ns) == ""
    svc = ns["session_service"]
    assert isinstance(svc, DatabaseSessionService) and svc.store.backend == g.backend
    if g.backend == "sqlite":  # "created automatically in your current directory": at once
        path = g.tmp / "my_agent_data.db"
        assert path.is_file()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"sessions", "events", "app_states", "user_states"} <= names
    created = asyncio.run(svc.create_session(app_name="setup_app", user_id="u1"))
    assert g.stored(created.id, "setup_app", "u1") == created


@sample(
    "Other Database Options",
    "Problem: Database Connection Errors",
    "SQLite (Good for Starting)",
    "PostgreSQL (Production Recommended)",
)
def _url_forms(g: Guide, key: str) -> None:
    assigned = url_assignments(guide_blocks()[key])
    assert assigned, "the sample assigns no db_url"
    ns = g.fresh()
    assert g.run(key, ns) == ""
    assert ns["db_url"] == assigned[-1][0]
    for url, comment in assigned:
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if "wrong" in comment.lower():
            with pytest.raises(ConfigurationError) as wrong:
                DatabaseSessionService(db_url=url)
            assert url.replace("://", ":///", 1) in str(wrong.value)
            continue
        if placeholder_port(url):  # "host:port": refused, with a concrete form shown
            with pytest.raises(ConfigurationError) as placeholder:
                DatabaseSessionService(db_url=url)
            assert f"{scheme}://user:password@host:5432/database" in str(placeholder.value)
            continue
        svc = DatabaseSessionService(db_url=url)
        g.services.append(svc)
        assert svc.store.backend == scheme
        if scheme == "sqlite":  # the relative file URL really works, in the current directory
            made = asyncio.run(svc.create_session(app_name="a", user_id="u", state={"k": 1}))
            path = g.tmp / url.removeprefix("sqlite:///")
            assert path.is_file()
            with SessionStore(f"sqlite:///{path}") as other:
                assert other.get_session("a", "u", made.id) == made


@sample("1. Creating a New Session")
def _create(g: Guide, key: str) -> None:
    g.prepare()
    out = g.run(key)
    made = g.ns["new_session"]
    assert out == (
        f"Session created with ID: {made.id}\nThis session is now saved in the database!\n"
    )
    stored = g.stored(made.id, "my_chat_app", "user456")
    assert stored is not None and stored == made
    assert stored.state == {"language": "en", "preferences": {"theme": "dark"}}


@sample("2. Listing All Sessions")
def _list(g: Guide, key: str) -> None:
    g.prepare()
    newer = g.create(state={"n": 2})
    g.create(user="someone_else")
    g.create(app="other_app")
    out = g.run(key)
    assert g.pre is not None
    expected = "".join(
        f"- Session {s.id}: created at {s.created_at}\n  State: {s.state}\n" for s in (newer, g.pre)
    )
    assert out == f"Found 2 sessions in database\n{expected}"


@sample("3. Getting a Specific Session")
def _get(g: Guide, key: str) -> None:
    g.prepare()
    assert g.run(key) == f"Loaded session state: {PRE_STATE}\n"
    assert g.check.delete_session(SID)
    assert g.run(key) == "Session not found\n"


@sample("4. Updating Session State (2)")
def _merge(g: Guide, key: str) -> None:
    g.prepare()
    for count, version in ((4, 2), (5, 3)):
        assert g.run(key) == ""
        stored = g.stored()
        assert stored is not None and stored.version == version
        assert stored.state == {**PRE_STATE, "last_topic": "weather", "message_count": count}


@sample("5. Deleting a Session")
def _delete(g: Guide, key: str) -> None:
    g.prepare()
    kept = g.create()
    assert g.run(key) == "Session removed from database\n"
    assert g.stored() is None
    assert [s.id for s in g.check.list_sessions(APP, USER)] == [kept.id]


@sample("6. Clearing All Sessions")
def _clear(g: Guide, key: str) -> None:
    g.prepare()
    g.create()
    g.create()
    other_user, other_app = g.create(user="user789"), g.create(app="other_app")
    assert len(g.check.list_sessions(APP, USER)) == 3
    assert g.run(key) == "All sessions cleared from database\n"
    assert g.check.list_sessions(APP, USER) == []
    assert g.check.list_sessions(APP, "user789") == [other_user]
    assert g.check.list_sessions("other_app", USER) == [other_app]


@sample("Understanding the Session Object")
def _session_object(g: Guide, key: str) -> None:
    svc = g.prepare()
    g.ns["session"] = session = svc.get_session(APP, USER, SID)
    assert g.run(key) == ""
    assert isinstance(session, Session) and session == g.pre
    assert (session.id, session.app_name, session.user_id) == (SID, APP, USER)
    assert isinstance(session.created_at, datetime) and session.created_at.tzinfo is None
    assert isinstance(session.updated_at, datetime) and session.updated_at >= session.created_at
    assert session.state == PRE_STATE
    with sa_engine(g.url) as conn:  # "stored as JSON"
        raw = conn.execute(sa.text("SELECT state FROM sessions WHERE id = :i"), {"i": SID}).scalar()
    assert (raw if isinstance(raw, dict) else json.loads(str(raw))) == PRE_STATE


REPLIES = {
    1: "Hello! What's your name?",
    2: "Nice to meet you, My name is Alice! How can I help you today?",
}


def chatbot_lines(sid: str, first_message: int) -> list[str]:
    """What the guide's chatbot prints when its conversation is at ``first_message`` - 1."""
    lines: list[str] = []
    for n in range(first_message, first_message + 3):
        lines.append(f"Started new session {sid}" if n == 1 else f"Continuing session {sid}")
        lines.append(REPLIES.get(n, "Thanks for your message, My name is Alice!"))
    count = first_message + 2
    return [*lines, "", "Total sessions in database: 1", f"Messages in current session: {count}"]


def check_chatbot(g: Guide, out: str, messages: int, sid: str | None = None) -> str:
    first = out.splitlines()[0]
    assert re.fullmatch(r"(Started new|Continuing) session \S+", first), out
    sid = sid or first.rsplit(" ", 1)[1]
    assert out.splitlines() == chatbot_lines(sid, messages - 2)
    with SessionStore(g.server_url or "sqlite:///./chatbot_data.db") as store:
        (session,) = store.list_sessions("customer_support_bot")
    assert (session.id, session.user_id, session.version) == (sid, "customer_001", messages + 1)
    assert session.state["message_count"] == messages
    assert session.state["user_name"] == "My name is Alice"
    history = session.state["conversation_history"]
    assert [h["role"] for h in history] == ["user", "assistant"] * messages
    return sid


@sample("Complete Example: Building a Chat Bot")
def _chatbot(g: Guide, key: str) -> None:
    check_chatbot(g, g.run(key, g.fresh()), 3)


def test_chatbot_runs_twice_as_programs(guide: Guide) -> None:
    """Two separate runs: the second continues the first run's one session."""
    code = adapt(guide_blocks()["Complete Example: Building a Chat Bot"], guide.server_url)
    (guide.tmp / "chatbot.py").write_text(code, encoding="utf-8")
    sid, cmd = None, [sys.executable, "chatbot.py"]
    for messages in (3, 6):
        proc = subprocess.run(cmd, cwd=guide.tmp, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        sid = check_chatbot(guide, proc.stdout, messages, sid)


@sample("Checking Your Database")
def _inspect(g: Guide, key: str) -> None:
    if g.backend != "sqlite":
        pytest.skip("the sample opens the SQLite file my_agent_data.db; servers have no file")
    g.prepare()
    g.create()
    g.create(app="other_app", user="someone")
    assert g.run(key) == "Total sessions: 3\n"


@sample("Backup and Recovery")
def _backup(g: Guide, key: str) -> None:
    if g.backend != "sqlite":
        pytest.skip("the sample copies the SQLite file; servers are backed up with their tools")
    svc = g.prepare()
    expected = {SID: dict(PRE_STATE)}
    for i in range(6):
        expected[g.create(user=f"u{i}", state={"i": i}).id] = {"i": i}
    for n, sid in enumerate(list(expected)[::2]):
        expected[sid] = {"updated": n}
        asyncio.run(svc.update_session_state(sid, expected[sid]))
    # idle: the store folds its WAL into the main file once writes pause (docs/performance.md)
    assert svc.store._backend.runner.checkpointer.wait_idle(30)
    assert g.run(key) == ""  # the service is still open, and idle
    with contextlib.closing(sqlite3.connect(g.tmp / "my_agent_data_backup.db")) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = copy.execute("SELECT id, state FROM sessions").fetchall()
    assert {sid: json.loads(state) for sid, state in rows} == expected


@contextlib.contextmanager
def sa_engine(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@sample("Session Cleanup")
def _cleanup(g: Guide, key: str) -> None:
    g.prepare()
    old = {g.create().id, g.create(user="user999").id}
    recent, other_app = g.create(user="user777"), g.create(app="other_app")
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)
    ages = {**dict.fromkeys(old, 40), recent.id: 10, other_app.id: 400}
    stmt = sa.text("UPDATE sessions SET created_at = :ts WHERE id = :i").bindparams(
        sa.bindparam("ts", type_=sa.DateTime())
    )
    with sa_engine(g.url) as conn:
        for sid, days in ages.items():
            assert conn.execute(stmt, {"ts": utc_now - timedelta(days=days), "i": sid}).rowcount
    assert g.run(key) == ""

    def cleanup(**kwargs: Any) -> list[str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            asyncio.run(g.ns["cleanup_old_sessions"](**kwargs))
        return sorted(out.getvalue().splitlines())

    assert cleanup() == sorted(f"Deleted old session: {sid}" for sid in old)
    assert {s.id for s in g.check.list_sessions(APP)} == {SID, recent.id}
    assert cleanup(days_old=5) == [f"Deleted old session: {recent.id}"]
    assert [s.id for s in g.check.list_sessions(APP)] == [SID]
    assert [s.id for s in g.check.list_sessions("other_app")] == [other_app.id]  # untouched


# sample -> (what it prints, the stored state afterwards, the version afterwards)
WRITES: dict[str, tuple[str, dict[str, Any], int]] = {
    "4. Updating Session State": (
        "State updated in database\n",
        {"language": "es", "message_count": 10},
        2,
    ),
    "Problem: Lost State Updates": ("", {"count": 5}, 2),  # the local edit is lost
    "Problem: State Overwrites": ("", {"new_key": "value"}, 3),  # replaced, then merged
}


@sample(*WRITES)
def _writes(g: Guide, key: str) -> None:
    g.prepare()
    printed, state, version = WRITES[key]
    assert g.run(key) == printed
    stored = g.stored()
    assert stored is not None and (stored.state, stored.version) == (state, version)


@pytest.mark.parametrize("key", list(SAMPLES))
def test_guide_sample(key: str, guide: Guide) -> None:
    SAMPLES[key](guide, key)
