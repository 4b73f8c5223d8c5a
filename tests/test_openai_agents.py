"""SessiondbSession: the OpenAI Agents SDK's Session protocol over sessiondb, on every backend.

The protocol's documented behaviour first (order, limit, pop, clear, sharing, concurrency), then
the SDK's own ``Runner`` driving a scripted model (no network) with the session.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

pytest.importorskip("agents", reason="the OpenAI Agents SDK (sessiondb[openai-agents]) is absent")

from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.memory import Session as SDKSession
from agents.memory import SessionSettings
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    Event,
    InvalidIdError,
    Session,
    SessionNotFoundError,
    SessionStore,
)
from sessiondb.openai_agents import POP_MARKER, TOMBSTONE_AUTHOR, SessiondbSession


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def texts(items: list[Any]) -> list[str]:
    """The text of each item: a user message's content, an assistant message's output text."""
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append("".join(part["text"] for part in content))
        else:
            out.append(f"<{item['type']}>")
    return out


# -- the protocol ------------------------------------------------------------------------------


async def test_satisfies_the_sdk_protocol(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("proto", async_store)
    assert isinstance(session, SDKSession)
    assert session.session_id == "proto"
    assert session.session_settings == SessionSettings()


async def test_empty_session(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("empty", async_store)
    assert await session.get_items() == []
    assert await session.get_items(limit=3) == []
    assert await session.pop_item() is None
    await session.clear_session()
    assert await async_store.get_session_by_id("empty") is None  # reads never create it


async def test_items_come_back_in_order_as_stored(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("order", async_store, app_name="bot", user_id="alice")
    rich = {
        "type": "function_call",
        "call_id": "c1",
        "name": "lookup",
        "arguments": '{"q": "ünïcode ✓", "n": [1, 2.5, null, true]}',
        "id": "fc_1",
    }
    await session.add_items([user("one"), user("two")])
    await session.add_items([rich])
    await session.add_items([])
    await session.add_items([user("four")])
    assert await session.get_items() == [user("one"), user("two"), rich, user("four")]
    stored = await async_store.get_session("bot", "alice", "order")
    assert stored is not None and stored.event_count == 4
    events = await async_store.list_events("order")
    assert [e.author for e in events] == ["user", "user", "function_call", "user"]
    assert events[2].content == rich


async def test_limit_returns_the_latest_items_oldest_first(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("limit", async_store)
    await session.add_items([user(str(i)) for i in range(10)])
    assert texts(await session.get_items(limit=3)) == ["7", "8", "9"]
    assert texts(await session.get_items(limit=1)) == ["9"]
    assert texts(await session.get_items(limit=50)) == [str(i) for i in range(10)]
    assert await session.get_items(limit=0) == []
    with pytest.raises(ValueError):  # a bare ValueError: SessiondbSession raises no sessiondb error
        await session.get_items(limit=-1)


async def test_session_settings_limit_is_the_default(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("settings", async_store, session_settings={"limit": 2})
    assert session.session_settings == SessionSettings(limit=2)
    await session.add_items([user(c) for c in "abcde"])
    assert texts(await session.get_items()) == ["d", "e"]
    assert texts(await session.get_items(limit=4)) == ["b", "c", "d", "e"]


async def test_pop_item_removes_and_returns_the_newest(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("pop", async_store)
    await session.add_items([user("a"), user("b"), user("c")])
    assert await session.pop_item() == user("c")
    assert texts(await session.get_items()) == ["a", "b"]
    await session.add_items([user("d")])
    assert texts(await session.get_items()) == ["a", "b", "d"]
    assert await session.pop_item() == user("d")
    assert await session.pop_item() == user("b")
    assert texts(await session.get_items()) == ["a"]
    assert await session.pop_item() == user("a")
    assert await session.pop_item() is None
    assert await session.get_items() == []
    assert await session.get_items(limit=2) == []


async def test_limit_skips_popped_items(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("holes", async_store)
    await session.add_items([user(str(i)) for i in range(10)])
    for expected in ("9", "8", "7"):
        assert texts([await session.pop_item()]) == [expected]
    await session.add_items([user("x"), user("y")])
    assert await session.pop_item() == user("y")
    await session.add_items([user("z")])
    everything = ["0", "1", "2", "3", "4", "5", "6", "x", "z"]
    assert texts(await session.get_items()) == everything
    for n in range(1, 12):
        assert texts(await session.get_items(limit=n)) == everything[-n:]
    # the log itself is append-only: four tombstones sit in it
    events = await async_store.list_events("holes")
    tombstones = [e for e in events if e.author == TOMBSTONE_AUTHOR]
    assert sorted(e.metadata[POP_MARKER] for e in tombstones if e.metadata) == [8, 9, 10, 15]


class CountingStore(AsyncSessionStore):
    """A real store that records how many events each read asked the database for."""

    requested: list[int | None]

    async def get_session(
        self, app_name: str, user_id: str, session_id: str, *, recent_events: int = 0
    ) -> Session | None:
        self.requested.append(recent_events)
        return await super().get_session(app_name, user_id, session_id, recent_events=recent_events)

    async def list_events(self, session_id: str, **kwargs: Any) -> list[Event]:
        self.requested.append(kwargs.get("limit"))
        return await super().list_events(session_id, **kwargs)


async def test_get_items_with_limit_reads_o_limit_events(db_url: str) -> None:
    async with CountingStore(db_url) as store:
        store.requested = []
        session = SessiondbSession("long", store)
        await session.add_items([user(str(i)) for i in range(300)])
        store.requested.clear()
        assert texts(await session.get_items(limit=3)) == ["297", "298", "299"]
        assert store.requested == [3]
        await session.pop_item()
        await session.pop_item()
        store.requested.clear()
        assert texts(await session.get_items(limit=3)) == ["295", "296", "297"]
        read = store.requested
        assert None not in read and sum(n for n in read if n is not None) <= 3 + 2 * 2


async def test_clear_session_deletes_everything(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("clear", async_store, app_name="bot", user_id="u")
    other = SessiondbSession("clear", async_store, app_name="bot", user_id="u")
    await session.add_items([user("a"), user("b")])
    await session.clear_session()
    assert await session.get_items() == []
    assert await other.get_items() == []
    assert await session.pop_item() is None
    assert await async_store.get_session_by_id("clear") is None
    await other.add_items([user("again")])  # recreated on the next write
    assert texts(await session.get_items()) == ["again"]


async def test_two_instances_share_one_history(db_url: str, async_store: AsyncSessionStore) -> None:
    first = SessiondbSession("shared", async_store, user_id="bob")
    async with SessiondbSession("shared", db_url, user_id="bob") as second:  # own store
        await first.add_items([user("from first")])
        await second.add_items([user("from second")])
        assert texts(await first.get_items()) == ["from first", "from second"]
        assert await second.get_items() == await first.get_items()
        assert await second.pop_item() == user("from second")
        assert texts(await first.get_items()) == ["from first"]


async def test_another_owners_session_is_never_touched(async_store: AsyncSessionStore) -> None:
    mine = SessiondbSession("owned", async_store, app_name="bot", user_id="alice")
    await mine.add_items([user("private")])
    intruder = SessiondbSession("owned", async_store, app_name="bot", user_id="mallory")
    assert await intruder.get_items() == []
    assert await intruder.get_items(limit=5) == []
    assert await intruder.pop_item() is None
    # ids are per app and user: the same id is another session for another user
    await intruder.add_items([user("injected")])
    assert texts(await intruder.get_items()) == ["injected"]
    assert texts(await mine.get_items()) == ["private"]
    assert texts([await intruder.pop_item()]) == ["injected"]
    assert texts(await mine.get_items()) == ["private"]
    await intruder.clear_session()
    assert texts(await mine.get_items()) == ["private"]
    assert await async_store.get_session("bot", "mallory", "owned") is None


async def test_create_false_needs_an_existing_session(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("precreated", async_store, app_name="bot", user_id="u", create=False)
    with pytest.raises(SessionNotFoundError):
        await session.add_items([user("x")])
    assert await async_store.get_session_by_id("precreated") is None
    await async_store.create_session(
        "bot", "u", {"mood": "calm"}, session_id="precreated", title="T"
    )
    await session.add_items([user("x")])
    stored = await async_store.get_session("bot", "u", "precreated")
    assert stored is not None and stored.state == {"mood": "calm"} and stored.title == "T"
    assert texts(await session.get_items()) == ["x"]


async def test_concurrent_adds_lose_nothing(db_url: str, async_store: AsyncSessionStore) -> None:
    async with AsyncSessionStore(db_url) as second_store:

        async def writer(n: int) -> None:
            session = SessiondbSession("busy", async_store if n % 2 else second_store)
            for i in range(5):
                await session.add_items([user(f"w{n}-{i}"), user(f"w{n}-{i}b")])

        await asyncio.gather(*(writer(n) for n in range(8)))
    items = texts(await SessiondbSession("busy", async_store).get_items())
    assert len(items) == 8 * 5 * 2
    assert Counter(items) == Counter(
        f"w{n}-{i}{s}" for n in range(8) for i in range(5) for s in ("", "b")
    )
    for n in range(8):  # each writer's items keep its order, and a batch stays together
        mine = [t for t in items if t.startswith(f"w{n}-")]
        assert mine == [f"w{n}-{i}{s}" for i in range(5) for s in ("", "b")]
        for i in range(5):
            at = items.index(f"w{n}-{i}")
            assert items[at + 1] == f"w{n}-{i}b"


async def test_concurrent_pops_return_each_item_once(
    db_url: str, async_store: AsyncSessionStore
) -> None:
    await SessiondbSession("popping", async_store).add_items([user(str(i)) for i in range(20)])
    async with AsyncSessionStore(db_url) as second_store:

        async def popper(n: int) -> list[Any]:
            session = SessiondbSession("popping", async_store if n % 2 else second_store)
            return [await session.pop_item() for _ in range(3)]

        results = await asyncio.gather(*(popper(n) for n in range(8)))
    popped = [item for got in results for item in got]
    assert popped.count(None) == 4
    assert sorted(texts([p for p in popped if p is not None]), key=int) == [
        str(i) for i in range(20)
    ]
    for got in results:  # each popper saw the history shrink from the end
        values = [int(t) for t in texts([g for g in got if g is not None])]
        assert values == sorted(values, reverse=True)
    assert await SessiondbSession("popping", async_store).get_items() == []


async def test_concurrent_adds_and_pops_conserve_items(async_store: AsyncSessionStore) -> None:
    async def adder(n: int) -> None:
        session = SessiondbSession("mixed", async_store)
        for i in range(6):
            await session.add_items([user(f"a{n}-{i}")])

    async def popper() -> list[Any]:
        session = SessiondbSession("mixed", async_store)
        return [await session.pop_item() for _ in range(4)]

    results = await asyncio.gather(*(adder(n) for n in range(4)), *(popper() for _ in range(4)))
    popped = texts([p for got in results if got for p in got if p is not None])
    left = texts(await SessiondbSession("mixed", async_store).get_items())
    assert len(popped) == len(set(popped))
    assert Counter(popped + left) == Counter(f"a{n}-{i}" for n in range(4) for i in range(6))


async def test_arguments_are_checked(db_url: str, async_store: AsyncSessionStore) -> None:
    with pytest.raises(InvalidIdError):
        SessiondbSession("", async_store)
    with pytest.raises(InvalidIdError):
        SessiondbSession("ok", async_store, user_id="\x00")
    with pytest.raises(ConfigurationError):
        SessiondbSession("ok", "nosuchdb://x")
    sync = SessionStore(db_url)
    try:
        with pytest.raises(TypeError, match="AsyncSessionStore"):
            SessiondbSession("ok", sync)  # type: ignore[arg-type]
    finally:
        sync.close()
    with pytest.raises(TypeError):  # a bare TypeError, as above
        await SessiondbSession("ok", async_store).get_items(limit="3")  # type: ignore[arg-type]


@pytest.mark.sqlite
def test_import_sessiondb_does_not_import_the_sdk() -> None:
    code = (
        "import sys, sessiondb, sessiondb.openai_agents\n"
        "assert 'agents' not in sys.modules, 'agents imported'\n"
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.sqlite
def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("agents", "agents.memory", "agents.memory.session_settings"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'sessiondb\[openai-agents\]'"):
        SessiondbSession("s", "sqlite:///:memory:")


# -- the SDK's Runner with a scripted model -----------------------------------------------------


def reply(text: str) -> list[Any]:
    return [
        ResponseOutputMessage(
            id=f"msg_{abs(hash(text))}",
            role="assistant",
            status="completed",
            type="message",
            content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
        )
    ]


class ScriptedModel(Model):
    """A model that answers with canned outputs, in order, and records what it was sent."""

    def __init__(self, outputs: list[list[Any]]) -> None:
        self.outputs = list(outputs)
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        self.inputs.append(input)
        return ModelResponse(output=self.outputs.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture
def offline_sdk(monkeypatch: pytest.MonkeyPatch) -> RunConfig:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    set_tracing_disabled(True)
    return RunConfig(tracing_disabled=True)


async def test_runner_keeps_every_turn(
    db_url: str, async_store: AsyncSessionStore, offline_sdk: RunConfig
) -> None:
    tool_call = ResponseFunctionToolCall(
        arguments='{"a": 2, "b": 3}', call_id="call_1", name="add", type="function_call", id="fc_1"
    )
    model = ScriptedModel([reply("Hello, Ada!"), [tool_call], reply("It is 5."), reply("Bye!")])
    agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[add])
    session = SessiondbSession("run-1", async_store, app_name="chat", user_id="ada")

    first = await Runner.run(agent, "Hi, I am Ada", session=session, run_config=offline_sdk)
    assert first.final_output == "Hello, Ada!"
    second = await Runner.run(agent, "What is 2 + 3?", session=session, run_config=offline_sdk)
    assert second.final_output == "It is 5."

    # a new process: another store, another session object, the same id
    async with AsyncSessionStore(db_url) as other_store:
        resumed = SessiondbSession("run-1", other_store, app_name="chat", user_id="ada")
        third = await Runner.run(agent, "Goodbye", session=resumed, run_config=offline_sdk)
    assert third.final_output == "Bye!"

    history = await session.get_items()
    assert texts(history) == [
        "Hi, I am Ada",
        "Hello, Ada!",
        "What is 2 + 3?",
        "<function_call>",
        "<function_call_output>",
        "It is 5.",
        "Goodbye",
        "Bye!",
    ]
    assert history[4]["output"] == "5"
    # the model saw the whole stored history on the last turn
    assert texts(model.inputs[-1]) == texts(history)[:-1]
    stored = await async_store.get_session("chat", "ada", "run-1")
    assert stored is not None and stored.event_count == len(history)


async def test_runner_respects_session_settings_limit(
    async_store: AsyncSessionStore, offline_sdk: RunConfig
) -> None:
    model = ScriptedModel([reply("one"), reply("two"), reply("three")])
    agent = Agent(name="assistant", model=model)
    session = SessiondbSession("run-2", async_store, session_settings=SessionSettings(limit=2))
    for question in ("q1", "q2", "q3"):
        await Runner.run(agent, question, session=session, run_config=offline_sdk)
    assert texts(model.inputs[-1]) == ["q2", "two", "q3"]  # two items of history + the new turn
    assert texts(await session.get_items(limit=100)) == ["q1", "one", "q2", "two", "q3", "three"]


async def test_runner_continues_a_conversation_written_by_plain_sessiondb(
    async_store: AsyncSessionStore, offline_sdk: RunConfig
) -> None:
    # what the FastAPI example stores: Responses-format messages as events
    await async_store.create_session("fastapi-chat", "ada", {"turns": 1}, session_id="web-1")
    await async_store.append_events(
        "web-1",
        [
            {"author": "user", "content": {"role": "user", "content": "Hi"}},
            {"author": "assistant", "content": {"role": "assistant", "content": "Hello!"}},
        ],
    )
    model = ScriptedModel([reply("Sure.")])
    session = SessiondbSession(
        "web-1", async_store, app_name="fastapi-chat", user_id="ada", create=False
    )
    result = await Runner.run(
        Agent(name="a", model=model), "Go on", session=session, run_config=offline_sdk
    )
    assert result.final_output == "Sure."
    assert texts(model.inputs[0]) == ["Hi", "Hello!", "Go on"]
    assert texts(await session.get_items()) == ["Hi", "Hello!", "Go on", "Sure."]
    stored = await async_store.get_session("fastapi-chat", "ada", "web-1")
    assert stored is not None and stored.state == {"turns": 1}
