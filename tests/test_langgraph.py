"""LangGraph: the published conformance suite, a real graph, and sessiondb's extras.

The conformance suite (PyPI ``langgraph-checkpoint-conformance``) runs against
``AsyncSessiondbSaver`` on every backend; every capability it detects must pass, with no
capability skipped. The real graph is a tool-calling loop with a scripted chat model (no
network), interrupted and resumed, then resumed again in a second process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="sessiondb[langgraph] is missing")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from sessiondb.langgraph import AsyncSessiondbSaver

#: what the conformance suite checks, per capability (its own count of tests)
EXPECTED = {cap.value for cap in ALL_CAPABILITIES}


@pytest.mark.parametrize("front", ["async", "sync"])
async def test_conformance(db_url: str, front: str) -> None:
    """Every capability of LangGraph's conformance suite passes, none skipped: on
    ``AsyncSessiondbSaver``, and on ``SessiondbSaver`` (its a-methods run the blocking ones,
    which on PostgreSQL take the prepared statements of :class:`PsycopgCursor
    <sessiondb._runner.PsycopgCursor>`)."""
    from sessiondb.langgraph import SessiondbSaver

    @checkpointer_test(name=f"{front} SessiondbSaver[{db_url.split(':', 1)[0]}]")
    async def saver() -> AsyncGenerator[Any, None]:
        if front == "sync":
            with SessiondbSaver.from_conn_string(db_url) as sync_saver:
                yield sync_saver
            return
        async with AsyncSessiondbSaver.from_conn_string(db_url) as s:
            yield s

    report = await validate(saver)
    results = report.results
    failures = {cap: r.failures for cap, r in results.items() if r.failures}
    assert not failures, failures
    assert set(results) == EXPECTED
    not_run = sorted(cap for cap, r in results.items() if not r.detected or r.passed is not True)
    assert not_run == [], f"capabilities not run or not passed: {not_run}"
    counts = {cap: r.tests_passed for cap, r in sorted(results.items())}
    print(f"conformance {db_url.split(':', 1)[0]}: {sum(counts.values())} passed {counts}")
    assert all(n > 0 for n in counts.values())


# -- a real graph: a tool-calling loop with a scripted chat model -------------------------------

GRAPH_MODULE = '''
"""The graph of tests/test_langgraph.py (also imported by its second process)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import interrupt


class ScriptedChat(BaseChatModel):
    """A chat model that answers by rule, never over the network: a user's "weather in X"
    or "book X" becomes a tool call, a tool's answer becomes the final reply."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        last = messages[-1]
        n = len(messages)
        if isinstance(last, HumanMessage):
            verb, _, place = str(last.content).partition(" ")
            name = "weather" if verb == "weather" else "book"
            reply = AIMessage(content="", tool_calls=[
                {"name": name, "args": {"place": place}, "id": f"call-{n}"}])
        elif isinstance(last, ToolMessage):
            reply = AIMessage(content=f"done: {last.content}")
        else:
            reply = AIMessage(content="?")
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def weather(place: str) -> str:
    """The weather at a place."""
    return f"sunny in {place}"


@tool
def book(place: str) -> str:
    """Book a trip, once a human approves."""
    answer = interrupt({"question": f"book {place}?"})
    return f"booked {place}" if answer == "yes" else f"not booked {place}"


def build(checkpointer: Any) -> Any:
    model = ScriptedChat()

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([weather, book]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer)
'''

SECOND_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from langgraph.types import Command
from lg_graph import build
from sessiondb.langgraph import SessiondbSaver

config = {"configurable": {"thread_id": "trip", "app_name": "travel", "user_id": "ann"}}
with SessiondbSaver.from_conn_string(sys.argv[2]) as saver:
    graph = build(saver)
    pending = graph.get_state(config)
    assert pending.next == ("tools",), pending.next
    assert pending.tasks[0].interrupts[0].value == {"question": "book Rome?"}
    out = graph.invoke(Command(resume="no"), config)
    print(out["messages"][-1].content)
"""


def _texts(state: Any) -> list[str]:
    return [str(m.content) for m in state.values["messages"]]


def _graph_builder(tmp_path: Any) -> Any:
    """``build(checkpointer)`` of GRAPH_MODULE, written to ``tmp_path`` (which a second
    process can import too)."""
    import sys

    (tmp_path / "lg_graph.py").write_text(GRAPH_MODULE, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        from lg_graph import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    return build


async def test_a_real_graph(db_url: str, tmp_path: Any) -> None:
    """Several turns with tool calls, an interrupt resumed here, another resumed by a second
    process (the sync saver), then history and time travel (the async saver)."""
    import subprocess
    import sys

    from langgraph.types import Command

    build = _graph_builder(tmp_path)
    config = {"configurable": {"thread_id": "trip", "app_name": "travel", "user_id": "ann"}}
    async with AsyncSessiondbSaver.from_conn_string(db_url) as saver:
        graph = build(saver)
        out = await graph.ainvoke({"messages": [("user", "weather Paris")]}, config)
        assert out["messages"][-1].content == "done: sunny in Paris"

        out = await graph.ainvoke({"messages": [("user", "book Paris")]}, config)
        state = await graph.aget_state(config)
        assert state.next == ("tools",)
        assert state.tasks[0].interrupts[0].value == {"question": "book Paris?"}
        out = await graph.ainvoke(Command(resume="yes"), config)
        assert out["messages"][-1].content == "done: booked Paris"

        await graph.ainvoke({"messages": [("user", "book Rome")]}, config)
        assert (await graph.aget_state(config)).next == ("tools",)

    # the same thread, resumed by another process through the sync saver
    child = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(tmp_path), db_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "done: not booked Rome"

    async with AsyncSessiondbSaver.from_conn_string(db_url) as saver:
        graph = build(saver)
        state = await graph.aget_state(config)
        assert state.next == ()
        texts = _texts(state)
        assert texts[-1] == "done: not booked Rome"
        assert [t for t in texts if t.startswith("done")] == [
            "done: sunny in Paris", "done: booked Paris", "done: not booked Rome",
        ]  # fmt: skip

        # history: newest first, each snapshot's parent is the next one
        history = [s async for s in graph.aget_state_history(config)]
        assert (
            history[0].config["configurable"]["checkpoint_id"]
            == (state.config["configurable"]["checkpoint_id"])
        )
        for newer, older in itertools.pairwise(history):
            assert (
                newer.parent_config["configurable"]["checkpoint_id"]
                == (older.config["configurable"]["checkpoint_id"])
            )
        assert history[-1].parent_config is None
        lengths = [len(s.values.get("messages", [])) for s in history]
        assert lengths == sorted(lengths, reverse=True)

        # time travel: fork from the end of the first turn
        first = next(s for s in reversed(history) if _texts(s)[-1:] == ["done: sunny in Paris"])
        out = await graph.ainvoke({"messages": [("user", "weather Oslo")]}, first.config)
        assert [str(m.content) for m in out["messages"]] == [
            *_texts(first), "weather Oslo", "", "sunny in Oslo", "done: sunny in Oslo",
        ]  # fmt: skip
        # the old branch is intact
        old = await graph.aget_state(state.config)
        assert _texts(old) == texts

        # the thread is the user's: unbound configs do not see it
        unbound = {"configurable": {"thread_id": "trip"}}
        assert (await graph.aget_state(unbound)).values == {}


#: where each backend's export is imported: always another backend
_NEXT_BACKEND = {"sqlite": "postgresql", "postgresql": "mysql", "mysql": "sqlite"}


async def test_export_import_carries_checkpoints(
    backend: str, db_url: str, make_db_url: Any, tmp_path: Any
) -> None:
    """A graph paused on an interrupt, exported from one backend and imported into another,
    resumes there from the imported checkpoint with the same history; both checksums are
    equal; importing again writes nothing; an app's export holds only that app's threads."""
    from langgraph.types import Command

    build = _graph_builder(tmp_path)
    config = {"configurable": {"thread_id": "trip", "app_name": "travel", "user_id": "ann"}}
    unbound = {"configurable": {"thread_id": "anon"}}
    async with AsyncSessiondbSaver.from_conn_string(db_url) as saver:
        graph = build(saver)
        await graph.ainvoke({"messages": [("user", "weather Paris")]}, config)
        await graph.ainvoke({"messages": [("user", "book Rome")]}, config)
        assert (await graph.aget_state(config)).next == ("tools",)
        await graph.ainvoke({"messages": [("user", "weather Oslo")]}, unbound)
        history = [s async for s in graph.aget_state_history(config)]
        store = saver.store
        session = await store.create_session("travel", "ann", {"k": 1})
        records = [r async for r in store.export_records(batch_size=1)]
        travel = [r async for r in store.export_records("travel")]
        source_sum = await store.checksum()
        n_checkpoints = sum(n for _, _, n in await store.checkpoint_stats())

    threads = [r for r in records if r["type"] == "lg_thread"]
    assert sorted((r["app_name"], r["user_id"], r["thread_id"]) for r in threads) == [
        ("", "", "anon"), ("travel", "ann", "trip"),
    ]  # fmt: skip
    assert sum(len(r["checkpoints"]) for r in threads) == n_checkpoints
    assert [r["thread_id"] for r in travel if r["type"] == "lg_thread"] == ["trip"]
    assert [r["id"] for r in travel if r["type"] == "session"] == [session.id]

    target = make_db_url(_NEXT_BACKEND[backend])
    async with AsyncSessiondbSaver.from_conn_string(target) as saver:
        result = await saver.store.import_records(records, batch_size=2)
        assert (result.sessions, result.threads, result.checkpoints) == (1, 2, n_checkpoints)
        assert await saver.store.checksum() == source_sum
        again = await saver.store.import_records(records)
        assert (again.sessions, again.threads, again.checkpoints, again.skipped) == (0, 0, 0, 3)

        graph = build(saver)
        state = await graph.aget_state(config)
        assert state.next == ("tools",)
        assert state.tasks[0].interrupts[0].value == {"question": "book Rome?"}
        imported = [s async for s in graph.aget_state_history(config)]
        assert [s.config for s in imported] == [s.config for s in history]
        assert [s.values for s in imported] == [s.values for s in history]
        out = await graph.ainvoke(Command(resume="yes"), config)
        assert out["messages"][-1].content == "done: booked Rome"
        assert _texts(await graph.aget_state(unbound))[-1] == "done: sunny in Oslo"
        # the copy now has a checkpoint more than the source
        assert await saver.store.checksum() != source_sum


async def test_bad_thread_records_are_refused(db_url: str) -> None:
    """A thread record with a malformed row raises InvalidRecordError and writes nothing."""
    from sessiondb.errors import InvalidRecordError

    async with AsyncSessiondbSaver.from_conn_string(db_url) as saver:
        config = _config("t1")
        v = {"ch": saver.get_next_version(None, None)}
        await saver.aput(config, _checkpoint({"ch": 1}, v), {"step": 1}, v)
        (good,) = [r async for r in saver.store.export_records()]
        await saver.adelete_thread("t1")
        bad_rows = [
            {"checkpoints": [{**good["checkpoints"][0], "checkpoint": "not base64!"}]},
            {"checkpoints": [{**good["checkpoints"][0], "checkpoint_id": "x" * 65}]},
            {"blobs": [{**good["blobs"][0], "blob": 7}]},
            {"writes": "none"},
            {"thread_id": ""},
        ]
        for change in bad_rows:
            with pytest.raises(InvalidRecordError):
                await saver.store.import_records([good, {**good, "thread_id": "t2", **change}])
            assert await saver.store.checkpoint_threads() == {}
        result = await saver.store.import_records([good])
        assert (result.threads, result.checkpoints) == (1, 1)
        assert (await saver.aget_tuple(config)).checkpoint["channel_values"] == {"ch": 1}


# -- storage and sessiondb's extras ------------------------------------------------------------


def _count(db_url: str, table: str, where: str = "") -> int:
    import sqlalchemy as sa

    from sessiondb._urls import resolve_url

    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} {where}")).scalar_one())
    finally:
        engine.dispose()


def _checkpoint(values: dict[str, Any], versions: dict[str, Any]) -> Any:
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    return generate_checkpoint(channel_values=values, channel_versions=versions)


def _config(thread: str, **owner: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", **owner}}


def test_only_changed_channels_are_written(db_url: str) -> None:
    """A checkpoint stores blobs for ``new_versions`` only; the rest are found by version."""
    from sessiondb.langgraph import SessiondbSaver

    big = "x" * 100_000
    with SessiondbSaver(db_url) as saver:
        v1 = {"big": saver.get_next_version(None, None), "n": saver.get_next_version(None, None)}
        c1 = saver.put(_config("t"), _checkpoint({"big": big, "n": 1}, v1), {"step": 0}, v1)
        assert _count(db_url, "lg_blobs") == 2
        v2 = {**v1, "n": saver.get_next_version(v1["n"], None)}
        c2 = {**c1, "configurable": {**c1["configurable"]}}
        saver.put(c2, _checkpoint({"big": big, "n": 2}, v2), {"step": 1}, {"n": v2["n"]})
        assert _count(db_url, "lg_blobs") == 3  # "big" was not written again
        latest = saver.get_tuple(_config("t"))
        assert latest is not None
        assert latest.checkpoint["channel_values"] == {"big": big, "n": 2}
        first = saver.get_tuple(c1)
        assert first is not None and first.checkpoint["channel_values"] == {"big": big, "n": 1}


def test_sqlite_reads_blobs_by_their_whole_key(db_url: str, backend: str) -> None:
    """On SQLite, reading a checkpoint (and the delta history's seeds) looks each blob up by
    its whole key, never by scanning the namespace's blobs: a read stays as fast as the
    thread grows (an OR of (channel, version) pairs scanned them all)."""
    if backend != "sqlite":
        pytest.skip("the planner choice is SQLite's; PostgreSQL and MySQL use the key for the OR")
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(db_url) as saver:
        saver.setup()
        lgq = saver.store._backend.checkpoints._q
        cx_params = {"app": "", "user": "", "tid": "t", "ns": "", "cid": "c"}
        for stmt in (lgq.load(3), lgq.blobs_at(3)):
            params = {**cx_params, **{f"ch{i}": f"c{i}" for i in range(3)}}
            params.update({f"v{i}": f"v{i}" for i in range(3)})
            conn = saver.store._backend.engine.raw_connection()
            try:
                cur = conn.driver_connection.cursor()
                cur.execute(f"EXPLAIN QUERY PLAN {stmt.sql}", stmt.bind(params))
                steps = [row[3] for row in cur.fetchall() if "lg_blobs" in row[3]]
            finally:
                conn.close()
            assert len(steps) == 3, steps
            assert all("channel=? AND version=?" in step for step in steps), steps


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_get_tuple_is_one_statement_on_postgresql(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL a checkpoint is read in one statement, with the blobs of every version it
    names (including ones an older checkpoint wrote) and its pending writes, newest or by id."""
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(db_url) as saver:
        v1 = {"a": saver.get_next_version(None, None), "b": saver.get_next_version(None, None)}
        c1 = saver.put(_config("t"), _checkpoint({"a": "one", "b": 1}, v1), {"step": 0}, v1)
        v2 = {**v1, "b": saver.get_next_version(v1["b"], None)}
        c2 = saver.put(c1, _checkpoint({"a": "one", "b": 2}, v2), {"step": 1}, {"b": v2["b"]})
        saver.put_writes(c2, [("a", "two"), ("b", 3)], "task-1")
        saver.put_writes(c1, [("a", "old")], "task-0")
        for config, values, writes in (
            (_config("t"), {"a": "one", "b": 2}, [("task-1", "a", "two"), ("task-1", "b", 3)]),
            (c1, {"a": "one", "b": 1}, [("task-0", "a", "old")]),
        ):
            with caplog.at_level(logging.DEBUG, logger="sessiondb.sql"):
                caplog.clear()
                got = saver.get_tuple(config)
            statements = [r for r in caplog.records if r.name == "sessiondb.sql"]
            assert len(statements) == 1
            assert got is not None
            assert got.checkpoint["channel_values"] == values
            assert got.pending_writes == writes
        assert saver.get_tuple(_config("other")) is None


def _prepared_names(saver: Any) -> list[str]:
    """The statements prepared on the sync saver's idle connections (pg_prepared_statements)."""
    names = []
    for raw, _cur, _since in list(saver.store._backend.runner._idle):
        rows = raw.driver_connection.execute("SELECT name FROM pg_prepared_statements").fetchall()
        names += [name for (name,) in rows]
    return names


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_sync_postgresql_prepares_a_turn_s_statements_under_names_of_its_own(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync saver on psycopg prepares its hot statements (a checkpoint, a task's writes, a
    checkpoint's read) on first use, named ``_sdb_<random>_<n>``; none with
    ``pooler="transaction"``. A statement gone from the server connection (what a
    transaction-mode pooler nobody told of does) is a PoolerError naming the switch, and
    the saver goes on; past PREPARED_MAX statements run on psycopg's cursor, same results."""
    from sessiondb import PoolerError, _runner
    from sessiondb._urls import resolve_url
    from sessiondb.langgraph import SessiondbSaver

    if resolve_url(db_url).pooler is not None:  # CI's PgBouncer stage: nothing is prepared
        pytest.skip("the URL already says pooler=transaction")

    def turn(saver: SessiondbSaver, thread: str) -> None:
        versions = {
            "a": saver.get_next_version(None, None),
            "b": saver.get_next_version(None, None),
        }
        # "b" is in new_versions without a value: its blob is stored as "empty" (a NULL)
        config = saver.put(_config(thread), _checkpoint({"a": "one"}, versions), {}, versions)
        saver.put_writes(config, [("a", b"\x00\xff"), ("b", 7)], "task")
        got = saver.get_tuple(_config(thread))
        assert got is not None and got.checkpoint["channel_values"] == {"a": "one"}
        assert got.pending_writes == [("task", "a", b"\x00\xff"), ("task", "b", 7)]

    with SessiondbSaver(db_url, pool_size=1) as saver:
        turn(saver, "t1")
        names = _prepared_names(saver)
        assert len(names) == 3 and all(n.startswith("_sdb_") for n in names), names
        prefix = names[0].rsplit("_", 1)[0]
        assert all(n.rsplit("_", 1)[0] == prefix for n in names)
        runner = saver.store._backend.runner
        while runner._idle:  # back to SQLAlchemy's pool (as after IDLE_RECYCLE), then out again
            raw, cur, _since = runner._idle.pop()
            runner._return_to_pool(raw, cur)
        turn(saver, "t1b")  # the same connection: its statements are not prepared again
        assert sorted(_prepared_names(saver)) == sorted(names)
        for raw, _cur, _since in saver.store._backend.runner._idle:
            raw.driver_connection.execute("DEALLOCATE ALL")
        with pytest.raises(PoolerError, match="pooler=transaction"):
            turn(saver, "t2")
        turn(saver, "t3")  # on a new connection, its statements prepared anew
        assert len(_prepared_names(saver)) == 3
    switched = db_url + ("&" if "?" in db_url else "?") + "pooler=transaction"
    with SessiondbSaver(switched, pool_size=1) as saver:
        turn(saver, "t4")
        assert _prepared_names(saver) == []
    monkeypatch.setattr(_runner, "PREPARED_MAX", 1)
    with SessiondbSaver(db_url, pool_size=1) as saver:
        turn(saver, "t5")
        turn(saver, "t6")
        assert len([n for n in _prepared_names(saver) if n.startswith("_sdb_")]) == 1


def test_bad_channel_names_and_versions_are_refused(db_url: str) -> None:
    """Every channel name and version of a checkpoint is checked before anything is stored."""
    from sessiondb.errors import ArgumentTypeError, InvalidArgumentError
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(db_url) as saver:
        good = saver.get_next_version(None, None)
        for versions, error in (
            ({"a": good, "b\x00": good}, InvalidArgumentError),  # control character
            ({"a": good, "": good}, InvalidArgumentError),  # empty name
            ({"a": good, "b": "9" * 500}, InvalidArgumentError),  # version too long
            ({"a": good, "b": ""}, InvalidArgumentError),  # empty version
            ({"a": good, 7: good}, ArgumentTypeError),  # not a str
        ):
            with pytest.raises(error):
                saver.put(_config("t"), _checkpoint({"a": 1}, versions), {}, {"a": good})
        assert saver.get_tuple(_config("t")) is None
        ok = saver.put(_config("t"), _checkpoint({"a": 1}, {"a": good}), {}, {"a": good})
        assert ok["configurable"]["checkpoint_id"]


@dataclasses.dataclass
class Point:
    """A type of the application's own, which msgpack revives only when allowed."""

    x: int
    y: int


def test_serde_allow_list_is_honoured(db_url: str) -> None:
    """Values go through the saver's serde: a strict msgpack allow-list keeps unlisted types
    out, and ``with_allowlist`` lets them in."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from sessiondb.langgraph import SessiondbSaver

    value = {"where": Point(1, 2), "items": [1, 2]}
    with SessiondbSaver(db_url) as saver:
        v = {"state": saver.get_next_version(None, None)}
        saver.put(_config("t"), _checkpoint({"state": value}, v), {}, v)
    strict = JsonPlusSerializer(allowed_msgpack_modules=None)
    with SessiondbSaver(db_url, serde=strict) as saver:
        got = saver.get_tuple(_config("t"))
        assert got is not None
        assert not isinstance(got.checkpoint["channel_values"]["state"]["where"], Point)
        allowed = saver.with_allowlist([(Point.__module__, "Point")])
        got = allowed.get_tuple(_config("t"))
        assert got is not None and got.checkpoint["channel_values"] == {"state": value}


async def test_threads_are_bound_to_their_owner(db_url: str) -> None:
    """``app_name``/``user_id`` in ``configurable`` bind a thread: ids are per owner, listing
    by owner, and ``delete_user_data`` deletes the user's threads with their sessions."""
    from sessiondb import AsyncSessionStore

    async with AsyncSessionStore(db_url) as store:
        saver = AsyncSessiondbSaver(store)
        for owner in ({"app_name": "a", "user_id": "ann"}, {"app_name": "a", "user_id": "bob"}, {}):
            v = {"ch": saver.get_next_version(None, None)}
            stored = await saver.aput(
                _config("same-id", **owner), _checkpoint({"ch": str(owner)}, v), {}, v
            )
            assert {k: stored["configurable"].get(k) for k in owner} == owner
        for owner in ({"app_name": "a", "user_id": "ann"}, {"app_name": "a", "user_id": "bob"}, {}):
            got = await saver.aget_tuple(_config("same-id", **owner))
            assert got is not None and got.checkpoint["channel_values"] == {"ch": str(owner)}
        ann = [t async for t in saver.alist({"configurable": {"app_name": "a", "user_id": "ann"}})]
        assert [t.checkpoint["channel_values"] for t in ann] == [
            {"ch": str({"app_name": "a", "user_id": "ann"})}
        ]
        await store.create_session("a", "ann", session_id="s1")

        assert await store.delete_user_data("a", "ann") == 1
        assert await saver.aget_tuple(_config("same-id", app_name="a", user_id="ann")) is None
        assert await saver.aget_tuple(_config("same-id", app_name="a", user_id="bob")) is not None
        assert await saver.aget_tuple(_config("same-id")) is not None
        # delete_thread names a thread by id alone: every owner's
        await saver.adelete_thread("same-id")
        assert [t async for t in saver.alist(None)] == []
        for table in ("lg_threads", "lg_checkpoints", "lg_blobs", "lg_writes"):
            assert _count(db_url, table) == 0, table


async def test_ttl_and_purge_expired(db_url: str) -> None:
    """A saver's ``ttl`` sets each thread's expiry, renewed by every checkpoint;
    ``purge_expired`` deletes expired threads with all their rows, and counts them."""
    from datetime import datetime, timedelta, timezone

    from sessiondb import AsyncSessionStore

    async with AsyncSessionStore(db_url) as store:
        saver = AsyncSessiondbSaver(store, ttl=timedelta(hours=1))
        forever = AsyncSessiondbSaver(store)
        for s, thread in ((saver, "short"), (saver, "renewed"), (forever, "kept")):
            v = {"ch": s.get_next_version(None, None)}
            stored = await s.aput(_config(thread), _checkpoint({"ch": 1}, v), {}, v)
            await s.aput_writes(stored, [("ch", 2)], "task-1")
        assert await store.purge_expired() == 0
        assert _count(db_url, "lg_threads", "WHERE expires_at IS NOT NULL") == 2

        # an hour passes for "short" and "renewed" (their expiry moved back by hand)...
        import sqlalchemy as sa

        from sessiondb._urls import resolve_url

        past = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=1)
        engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE lg_threads SET expires_at = :t WHERE expires_at IS NOT NULL"),
                {"t": past},
            )
        engine.dispose()
        # ... but "renewed" gets a new checkpoint, which renews its expiry
        latest = await saver.aget_tuple(_config("renewed"))
        assert latest is not None
        v = {"ch": saver.get_next_version(latest.checkpoint["channel_versions"]["ch"], None)}
        await saver.aput(latest.config, _checkpoint({"ch": 3}, v), {}, v)

        assert await store.purge_expired(dry_run=True) == 1
        assert await store.purge_expired() == 1
        assert await saver.aget_tuple(_config("short")) is None
        assert await saver.aget_tuple(_config("renewed")) is not None
        assert await saver.aget_tuple(_config("kept")) is not None
        where = "WHERE thread_id = 'short'"
        for table in ("lg_threads", "lg_checkpoints", "lg_blobs", "lg_writes"):
            assert _count(db_url, table, where) == 0, table


def test_missing_langgraph_names_the_extra() -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        sys.modules["langgraph"] = None  # as if langgraph-checkpoint were not installed
        try:
            import sessiondb.langgraph
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'sessiondb[langgraph]'" in out.stdout


def test_docs_quickstart_runs_and_continues(tmp_path: Any) -> None:
    """docs/langgraph.md's quickstart, copied as is, runs; a second run finds the thread."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "langgraph.md").read_text("utf-8")
    section = page.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1), encoding="utf-8")

    def run() -> str:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run()
    assert "waiting: ('ask',)" in first and "notes: ['buy milk']" in first
    assert "notes: ['buy milk', 'buy milk']" in run()


def test_cli_stats_and_purge_cover_checkpoints(db_url: str) -> None:
    """``sessiondb stats`` counts threads and checkpoints per app; ``sessiondb purge``
    deletes expired threads."""
    import json
    import subprocess
    import sys

    import sqlalchemy as sa

    from sessiondb._urls import resolve_url
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(db_url, ttl=3600) as saver:
        for thread, owner, n in (("t1", {"app_name": "travel", "user_id": "ann"}, 3),
                                 ("t2", {}, 1)):  # fmt: skip
            config = _config(thread, **owner)
            for step in range(n):
                v = {"ch": saver.get_next_version(None, None)}
                config = saver.put(config, _checkpoint({"ch": step}, v), {"step": step}, v)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sessiondb", *args, "--url", db_url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = [json.loads(line) for line in cli("stats", "--json").splitlines()]
    assert {"app_name": "travel", "langgraph_threads": 1, "checkpoints": 3} in lines
    assert {"app_name": "", "langgraph_threads": 1, "checkpoints": 1} in lines
    table = cli("stats")
    assert "THREADS" in table and "travel" in table

    assert "would delete 0 expired sessions" in cli("purge", "--dry-run")
    engine = sa.create_engine(resolve_url(db_url).sync_url, poolclass=sa.NullPool)
    with engine.begin() as conn:  # t1's hour has passed
        conn.execute(
            sa.text("UPDATE lg_threads SET expires_at = :t WHERE thread_id = 't1'"),
            {"t": datetime(2000, 1, 1)},
        )
    engine.dispose()
    assert "would delete 1 expired session or thread" in cli("purge", "--dry-run")
    assert "deleted 1 expired session or thread" in cli("purge")
    lines = [json.loads(line) for line in cli("stats", "--json").splitlines()]
    assert [line for line in lines if "langgraph_threads" in line] == [
        {"app_name": "", "langgraph_threads": 1, "checkpoints": 1}
    ]


def test_async_saver_from_sync_code_and_sync_saver_from_async(db_url: str) -> None:
    """The async saver's blocking methods work where no loop runs (each call on a loop of its
    own) and refuse inside a running loop; the sync saver's a-methods work in a loop."""
    import asyncio

    from sessiondb import ConfigurationError
    from sessiondb.langgraph import SessiondbSaver

    saver = AsyncSessiondbSaver(db_url)
    v = {"ch": saver.get_next_version(None, None)}
    stored = saver.put(_config("t"), _checkpoint({"ch": "a"}, v), {"step": 1}, v)
    saver.put_writes(stored, [("ch", "w")], "task-1")
    got = saver.get_tuple(_config("t"))
    assert got is not None and got.checkpoint["channel_values"] == {"ch": "a"}
    assert got.pending_writes == [("task-1", "ch", "w")]
    assert [t.metadata["step"] for t in saver.list(_config("t"))] == [1]

    async def inside_a_loop() -> None:
        with pytest.raises(ConfigurationError, match="a-methods"):
            saver.get_tuple(_config("t"))
        with SessiondbSaver(db_url) as sync_saver:
            found = await sync_saver.aget_tuple(_config("t"))
            assert found is not None and found.checkpoint["channel_values"] == {"ch": "a"}
            assert [t.config async for t in sync_saver.alist(_config("t"))] == [found.config]
            await sync_saver.adelete_thread("t")
        await saver.aclose()

    asyncio.run(inside_a_loop())
    assert _count(db_url, "lg_checkpoints") == 0


def _extend(state: Any, writes: Any) -> list[str]:
    out = list(state or [])
    for write in writes:
        out.extend(write)
    return out


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_delta_channel_history(db_url: str, sync: bool) -> None:
    """A graph whose state is a DeltaChannel (stored as writes, a snapshot every 3 updates)
    rebuilds its value through ``get_delta_channel_history``, on a fork too, and the answer
    for every checkpoint equals LangGraph's default walk of ``get_tuple``."""
    from typing import Annotated, TypedDict

    from langgraph.channels.delta import DeltaChannel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph import END, START, StateGraph

    from sessiondb.errors import InvalidArgumentError
    from sessiondb.langgraph import SessiondbSaver

    # the functional form: the class form's annotations would be strings (future import)
    State = TypedDict(  # noqa: UP013
        "State",
        {"items": Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=3)], "turn": int},
    )

    def add(state: Any) -> dict[str, Any]:
        return {"items": [f"step{len(state['items'])}"], "turn": state.get("turn", 0) + 1}

    g = StateGraph(State)
    g.add_node("add", add)
    g.add_edge(START, "add")
    g.add_edge("add", END)
    config = {"configurable": {"thread_id": "delta", "app_name": "a", "user_id": "u"}}
    expected: list[str] = []
    saver: Any = SessiondbSaver(db_url) if sync else AsyncSessiondbSaver(db_url)
    try:
        graph = g.compile(checkpointer=saver)
        for turn in range(7):
            if sync:
                out = graph.invoke({"items": [f"in{turn}"]}, config)
            else:
                out = await graph.ainvoke({"items": [f"in{turn}"]}, config)
            expected += [f"in{turn}", f"step{len(expected) + 1}"]
            assert out["items"] == expected
        history = (
            list(graph.get_state_history(config))
            if sync
            else [s async for s in graph.aget_state_history(config)]
        )
        # fork from the third turn's end: the branch sees that turn's items, then its own
        third = next(s for s in history if s.values.get("turn") == 3 and not s.next)
        fork = (graph.invoke if sync else graph.ainvoke)({"items": ["fork"]}, third.config)
        if not sync:
            fork = await fork
        before = third.values["items"]
        assert fork["items"] == [*before, "fork", f"step{len(before) + 1}"]
        channels = ["items", "turn", "nothing"]
        configs = [s.config for s in history] + [
            {"configurable": {**config["configurable"]}},  # the newest: the fork
        ]
        answers = []
        for c in configs:
            if sync:
                mine = saver.get_delta_channel_history(config=c, channels=channels)
            else:
                mine = await saver.aget_delta_channel_history(config=c, channels=channels)
            base = BaseCheckpointSaver.get_delta_channel_history
            if sync:
                walked = base(saver, config=c, channels=channels)
            else:
                walked = await BaseCheckpointSaver.aget_delta_channel_history(
                    saver, config=c, channels=channels
                )
            assert mine == walked, c
            answers.append(mine)
        # the answers are not trivial: writes to replay, snapshots as seeds, nothing for none
        assert any(len(a["items"]["writes"]) >= 2 for a in answers)
        assert any("seed" in a["items"] for a in answers)
        assert all(a["nothing"] == {"writes": []} for a in answers)
        assert await saver.aget_delta_channel_history(config=config, channels=[]) == {}
        # keep_latest would cut the chain the value is rebuilt from: refused, nothing pruned
        kept = [t.config async for t in saver.alist(config)]
        with pytest.raises(InvalidArgumentError, match="DeltaChannel: 'delta'"):
            await saver.aprune(["delta"])
        assert [t.config async for t in saver.alist(config)] == kept
        await saver.aprune(["delta"], strategy="delete")
        assert [t async for t in saver.alist(config)] == []
    finally:
        if sync:
            saver.close()
        else:
            await saver.aclose()


def test_a_saver_refuses_the_other_kind_of_store(db_url: str) -> None:
    """The sync saver stands on a SessionStore, the async one on an AsyncSessionStore: the
    other kind, or store options beside a store, is a ConfigurationError naming it."""
    from sessiondb import AsyncSessionStore, SessionStore
    from sessiondb.errors import ConfigurationError
    from sessiondb.langgraph import SessiondbSaver

    with SessionStore(db_url) as sync_store:
        with pytest.raises(
            ConfigurationError,
            match="AsyncSessiondbSaver stands on AsyncSessionStore, not on SessionStore",
        ):
            AsyncSessiondbSaver(sync_store)
        with pytest.raises(ConfigurationError, match="store options"):
            SessiondbSaver(sync_store, pool_size=2)
        assert SessiondbSaver(sync_store).store is sync_store
    async_store = AsyncSessionStore(db_url)
    try:
        with pytest.raises(
            ConfigurationError,
            match="SessiondbSaver stands on SessionStore, not on AsyncSessionStore",
        ):
            SessiondbSaver(async_store)
    finally:
        asyncio.run(async_store.close())


@pytest.mark.parametrize("front", ["async", "sync"])
async def test_list_by_checkpoint_id(db_url: str, front: str) -> None:
    """``list(config)`` with a ``checkpoint_id`` in ``config`` yields that checkpoint only,
    with or without a ``checkpoint_ns``, as LangGraph's savers do; ``filter``, ``before``
    and ``limit`` still apply."""
    from sessiondb.langgraph import SessiondbSaver

    saver: Any = SessiondbSaver(db_url) if front == "sync" else AsyncSessiondbSaver(db_url)

    async def put(config: Any, values: dict[str, Any], step: int) -> Any:
        versions = {ch: saver.get_next_version(None, None) for ch in values}
        checkpoint = _checkpoint(values, versions)
        if front == "sync":
            return saver.put(config, checkpoint, {"step": step}, versions)
        return await saver.aput(config, checkpoint, {"step": step}, versions)

    async def ids(config: Any, **kw: Any) -> list[tuple[str, str]]:
        found = list(saver.list(config, **kw)) if front == "sync" else [
            t async for t in saver.alist(config, **kw)
        ]  # fmt: skip
        return [(t.config["configurable"]["checkpoint_ns"], t.metadata["step"]) for t in found]

    try:
        first = await put(_config("t"), {"ch": 1}, 1)
        second = await put(first, {"ch": 2}, 2)
        inner = await put({"configurable": {"thread_id": "t", "checkpoint_ns": "sub"}}, {}, 3)
        await put(_config("other"), {"ch": 9}, 4)
        cid = first["configurable"]["checkpoint_id"]
        assert await ids({"configurable": {"thread_id": "t"}}) == [("sub", 3), ("", 2), ("", 1)]
        assert await ids({"configurable": {"thread_id": "t", "checkpoint_id": cid}}) == [("", 1)]
        assert await ids(first) == [("", 1)]
        sub = {"configurable": {**inner["configurable"], "checkpoint_ns": ""}}
        assert await ids(sub) == []  # that id is in namespace "sub", not ""
        assert await ids({"configurable": {"thread_id": "t", **inner["configurable"]}}) == [
            ("sub", 3)
        ]
        assert await ids(first, filter={"step": 1}) == [("", 1)]
        assert await ids(first, filter={"step": 2}) == []
        assert await ids(second, before=first) == []
        assert await ids(second, limit=1) == [("", 2)]
    finally:
        if front == "sync":
            saver.close()
        else:
            await saver.aclose()


def test_list_by_a_bad_checkpoint_id_is_refused(db_url: str) -> None:
    """A checkpoint id that cannot be stored (too long, control characters, not a str) is a
    typed error before anything runs, not an empty listing; the saver goes on."""
    from sessiondb.errors import ArgumentTypeError, InvalidArgumentError
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(db_url) as saver:
        good = saver.get_next_version(None, None)
        saver.put(_config("t"), _checkpoint({"a": 1}, {"a": good}), {}, {"a": good})
        for cid, error in (
            ("9" * 500, InvalidArgumentError),
            ("ab\x00", InvalidArgumentError),
            (7, ArgumentTypeError),
        ):
            with pytest.raises(error, match="checkpoint_id"):
                list(saver.list({"configurable": {"thread_id": "t", "checkpoint_id": cid}}))
        assert len(list(saver.list(_config("t")))) == 1
