"""SessiondbSession: the OpenAI Agents SDK's Session protocol over sessiondb, on every backend.

The protocol's documented behaviour first (order, limit, pop, clear, sharing, concurrency), then
the SDK's own ``Runner`` driving a scripted model (no network) with the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import subprocess
import sys
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("agents", reason="the OpenAI Agents SDK (sessiondb[openai-agents]) is absent")

from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.memory import OpenAIResponsesCompactionSession, SessionSettings
from agents.memory import Session as SDKSession
from agents.models.interface import Model
from agents.run_context import RunContextWrapper
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

from ._tables import stored_events


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
    # popped items are gone from the event log, and nothing else is in it
    events = await async_store.list_events("holes")
    assert texts([e.content for e in events]) == everything
    stored = await async_store.get_session("openai-agents", "default", "holes")
    assert stored is not None and stored.event_count == len(everything)


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
        assert store.requested == [3]  # popped items left nothing behind to skip


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


# -- event loops and threads: Runner.run_sync as the SDK's own tests use it ---------------------


class EchoModel(Model):
    """A stateless scripted model: it answers every turn with "re: <the last user text>"."""

    async def get_response(
        self, system_instructions: str | None, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        last = input if isinstance(input, str) else texts(input)[-1]
        return ModelResponse(output=reply(f"re: {last}"), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


def run_sync_in_fresh_thread(
    agent: Agent[Any], prompts: list[str], session: SessiondbSession, config: RunConfig
) -> threading.Thread:
    """Start a thread that makes an event loop of its own and calls ``Runner.run_sync`` once per
    prompt (as the SDK's tests do), then closes its loop; errors go to ``thread.errors``."""
    errors: list[BaseException] = []

    def work() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            for prompt in prompts:
                Runner.run_sync(agent, prompt, session=session, run_config=config)
        except BaseException as exc:
            errors.append(exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_all(threads: list[threading.Thread]) -> None:
    """Join the threads; a thread still running after a minute is a hang, and fails the test."""
    for thread in threads:
        thread.join(60)
    assert [t.is_alive() for t in threads] == [False] * len(threads), "a thread hangs"
    for thread in threads:
        assert thread.errors == []  # type: ignore[attr-defined]


def test_run_sync_from_fresh_threads_shares_one_session(
    db_url: str, offline_sdk: RunConfig
) -> None:
    # built from a URL: the session's own store serves every thread's loop
    session = SessiondbSession("threads", db_url, app_name="chat", user_id="ada")
    model = ScriptedModel([reply("one"), reply("two"), reply("three")])
    agent = Agent(name="a", model=model)
    for prompt in ("first", "second", "third"):
        join_all([run_sync_in_fresh_thread(agent, [prompt], session, offline_sdk)])
    assert texts(model.inputs[-1]) == ["first", "one", "second", "two", "third"]
    closing = session.close()  # no loop runs here: closed on return
    assert closing.done()
    with SessionStore(db_url) as store:
        events = store.list_events("threads", app_name="chat", user_id="ada")
    assert texts([e.content for e in events]) == ["first", "one", "second", "two", "third", "three"]


def test_five_threads_run_sync_on_one_session_at_once(db_url: str, offline_sdk: RunConfig) -> None:
    session = SessiondbSession("five", db_url)
    agent = Agent(name="a", model=EchoModel())
    prompts = {n: [f"t{n}-{i}" for i in range(4)] for n in range(5)}
    join_all([run_sync_in_fresh_thread(agent, prompts[n], session, offline_sdk) for n in range(5)])
    items = texts(asyncio.run(session.get_items()))
    session.close()
    assert len(items) == 5 * 4 * 2
    for n in range(5):  # each thread's turns, in its order, each question before its answer
        mine = [t for t in items if t.removeprefix("re: ").startswith(f"t{n}-")]
        assert mine == [m for p in prompts[n] for m in (p, f"re: {p}")]


def test_five_threads_add_items_at_once_lose_nothing(db_url: str) -> None:
    session = SessiondbSession("adders", db_url)
    errors: list[BaseException] = []

    def adder(n: int) -> None:
        loop = asyncio.new_event_loop()
        try:
            for i in range(6):
                batch = [user(f"{n}-{i}-{k}") for k in range(3)]
                loop.run_until_complete(session.add_items(batch))
        except BaseException as exc:
            errors.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    threads = [threading.Thread(target=adder, args=(n,), daemon=True) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert errors == []
    items = texts(asyncio.run(session.get_items()))
    asyncio.run(session.aclose())
    assert Counter(items) == Counter(
        f"{n}-{i}-{k}" for n in range(5) for i in range(6) for k in range(3)
    )
    for n in range(5):  # each call's items together, each thread's calls in order
        for i in range(6):
            at = items.index(f"{n}-{i}-0")
            assert items[at : at + 3] == [f"{n}-{i}-{k}" for k in range(3)]
        mine = [t for t in items if t.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}-{k}" for i in range(6) for k in range(3)]


# -- the run context ---------------------------------------------------------------------------


@dataclass
class Account:
    user_id: str


async def test_the_sdk_passes_the_run_context(
    async_store: AsyncSessionStore, offline_sdk: RunConfig
) -> None:
    session = SessiondbSession(
        "support", async_store, app_name="desk", user_id_from=lambda w: w.context.user_id
    )
    for method in (session.get_items, session.add_items, session.pop_item, session.clear_session):
        assert (
            inspect.signature(method).parameters["wrapper"].kind is inspect.Parameter.KEYWORD_ONLY
        )
    model = ScriptedModel([reply("hi ann"), reply("hi bob"), reply("again ann")])
    agent: Agent[Account] = Agent(name="a", model=model)
    await Runner.run(
        agent, "I am ann", session=session, context=Account("ann"), run_config=offline_sdk
    )
    await Runner.run(
        agent, "I am bob", session=session, context=Account("bob"), run_config=offline_sdk
    )
    await Runner.run(
        agent, "me again", session=session, context=Account("ann"), run_config=offline_sdk
    )
    # one session object, one id, a history per user: ann's last turn saw only ann's history
    assert texts(model.inputs[-1]) == ["I am ann", "hi ann", "me again"]
    ann = await async_store.list_events("support", app_name="desk", user_id="ann")
    bob = await async_store.list_events("support", app_name="desk", user_id="bob")
    assert texts([e.content for e in ann]) == ["I am ann", "hi ann", "me again", "again ann"]
    assert texts([e.content for e in bob]) == ["I am bob", "hi bob"]
    assert await async_store.get_session("desk", "default", "support") is None


async def test_every_method_uses_the_run_contexts_user(async_store: AsyncSessionStore) -> None:
    session = SessiondbSession("ctx", async_store, user_id_from=lambda w: w.context.user_id)
    ann, bob = RunContextWrapper(Account("ann")), RunContextWrapper(Account("bob"))
    await session.add_items([user("a1"), user("a2")], wrapper=ann)
    await session.add_items([user("b1")], wrapper=bob)
    await session.add_items([user("d1")])  # no run context: user_id ("default")
    assert texts(await session.get_items(wrapper=ann)) == ["a1", "a2"]
    assert texts(await session.get_items(limit=1, wrapper=bob)) == ["b1"]
    assert texts(await session.get_items()) == ["d1"]
    assert await session.pop_item(wrapper=ann) == user("a2")
    await session.clear_session(wrapper=bob)
    assert await session.get_items(wrapper=bob) == []
    assert texts(await session.get_items(wrapper=ann)) == ["a1"]
    assert texts(await session.get_items()) == ["d1"]
    # without user_id_from the run context is accepted and changes nothing
    plain = SessiondbSession("ctx", async_store)
    assert texts(await plain.get_items(wrapper=ann)) == ["d1"]
    # a run context without a usable user id: nothing is read or written
    broken = RunContextWrapper(Account(""))
    with pytest.raises(InvalidIdError):
        await session.add_items([user("x")], wrapper=broken)
    with pytest.raises(InvalidIdError):
        await session.get_items(wrapper=broken)
    with pytest.raises(TypeError):
        SessiondbSession("ctx", async_store, user_id_from="user_id")  # type: ignore[arg-type]


# -- closing -----------------------------------------------------------------------------------


def pools_left(session: SessiondbSession) -> int:
    """How many connection pools (one per event loop) the session's own store still holds."""
    backend = session.store._backend
    return len(backend._pools) + (backend._spare is not None and not backend._spare.closed)


async def test_close_not_awaited_in_a_running_loop(db_url: str) -> None:
    session = SessiondbSession("closing", db_url)
    await session.add_items([user("x")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an un-awaited coroutine would warn: make it fail
        closing = session.close()  # as the SDK's tests call SQLiteSession.close()
        assert not inspect.iscoroutine(closing)
        del closing
        gc.collect()
    # it finishes as the loop runs on; awaiting another close waits for it too
    await session.close()
    assert pools_left(session) == 0


async def test_close_not_awaited_as_the_last_thing_a_test_does(db_url: str) -> None:
    session = SessiondbSession("sdk-style", db_url)
    await session.add_items([user("x")])
    assert texts(await session.get_items()) == ["x"]
    session.close()  # the loop then shuts down: nothing may warn or leak (warnings are errors)


async def test_close_awaited_and_aclose(db_url: str, async_store: AsyncSessionStore) -> None:
    first = SessiondbSession("c1", db_url)
    await first.add_items([user("x")])
    await first.close()
    assert pools_left(first) == 0
    second = SessiondbSession("c1", db_url)
    assert texts(await second.get_items()) == ["x"]
    await second.aclose()
    assert pools_left(second) == 0
    async with SessiondbSession("c1", db_url) as third:
        assert texts(await third.get_items()) == ["x"]
    assert pools_left(third) == 0
    # a store passed in is the caller's: closing the session leaves it open
    shared = SessiondbSession("c1", async_store)
    shared.close()
    await shared.close()
    await shared.aclose()
    assert texts(await SessiondbSession("c1", async_store).get_items()) == ["x"]


def test_close_in_sync_code(db_url: str) -> None:
    session = SessiondbSession("sync-close", db_url)
    asyncio.run(session.add_items([user("x")]))
    closing = session.close()
    assert closing.done() and pools_left(session) == 0
    session.close()  # twice is fine
    asyncio.run(session.close())  # and asyncio.run takes what it returns
    asyncio.run(session.aclose())
    # a closed session is closed: no call may open a new pool that nobody would close
    for call in (
        session.get_items(),
        session.add_items([]),
        session.pop_item(),
        session.clear_session(),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            asyncio.run(call)
    assert pools_left(session) == 0


# -- cancellation: a cancelled write has ended when the cancellation is raised ------------------


async def cancelled_after(coro: Any, steps: int) -> bool:
    """Run ``coro`` as a task, cancel it after ``steps`` turns of the event loop (and as many
    fifths of a millisecond: a server's answers take time to arrive), and wait for it to end;
    True if it finished before the cancellation reached it."""
    task = asyncio.ensure_future(coro)
    for _ in range(steps):
        await asyncio.sleep(0)
    await asyncio.sleep(steps * 0.0002)
    finished = task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return finished


async def test_a_cancelled_add_items_is_all_or_nothing(db_url: str) -> None:
    # one worker thread on SQLite: a cancelled call's thread finishes before the next read
    async with AsyncSessionStore(db_url, pool_size=1) as store:
        session = SessiondbSession("cancel-add", store)
        expected: list[str] = []
        steps, completed = 0, 0
        while completed < 3 and steps < 400:
            batch = [f"{steps}-{k}" for k in range(3)]
            if await cancelled_after(session.add_items([user(t) for t in batch]), steps):
                completed += 1
            stored = texts(await session.get_items())
            assert stored in (expected, expected + batch), f"cancelled after {steps} steps"
            expected = stored
            steps += 1
        assert completed == 3  # the cancellation reached every stage of add_items
        await session.add_items([user("after")])  # and the session works on
        assert texts(await session.get_items()) == [*expected, "after"]


async def test_a_cancelled_pop_item_is_all_or_nothing(db_url: str) -> None:
    async with AsyncSessionStore(db_url, pool_size=1) as store:
        session = SessiondbSession("cancel-pop", store)
        await session.add_items([user(str(i)) for i in range(200)])
        expected = [str(i) for i in range(200)]
        steps, completed = 0, 0
        while completed < 3 and steps < 190:
            if await cancelled_after(session.pop_item(), steps):
                completed += 1
            stored = texts(await session.get_items())
            assert stored in (expected, expected[:-1]), f"cancelled after {steps} steps"
            expected = stored
            steps += 1
        assert completed == 3
        assert texts([await session.pop_item()]) == expected[-1:]


async def cancel_twice_after(coro: Any, steps: int) -> tuple[bool, Any]:
    """Run ``coro`` as a task, cancel it twice after ``steps`` turns of the event loop (and
    ``steps - 1`` fifths of a millisecond) and wait for it to end. Returns whether it ended by
    the cancellation (else it had finished first) and its result."""
    task = asyncio.ensure_future(coro)
    for _ in range(steps):
        await asyncio.sleep(0)
    await asyncio.sleep((steps - 1) * 0.0002)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    try:
        return False, await task
    except asyncio.CancelledError:
        assert task.cancelled()  # the cancellation reaches the caller: never swallowed
        return True, None


async def test_a_cancelled_write_has_ended_when_the_cancellation_is_raised(db_url: str) -> None:
    # As the SDK's own sessions: once add_items, pop_item or clear_session has started, a
    # cancellation lets it finish and is raised after, so the caller never has to guess.
    # Another store (its own connections) sees the outcome as soon as the caller sees the
    # cancellation.
    async with AsyncSessionStore(db_url) as store, AsyncSessionStore(db_url) as other:
        session = SessiondbSession("cancel-ends", store)
        witness = SessiondbSession("cancel-ends", other)
        expected: list[str] = []
        cancelled = 0
        for steps in range(1, 25):
            batch = [f"{steps}-{k}" for k in range(3)]
            was_cancelled, _ = await cancel_twice_after(
                session.add_items([user(t) for t in batch]), steps
            )
            cancelled += was_cancelled
            expected += batch
            assert texts(await witness.get_items()) == expected, f"add cancelled after {steps}"
            was_cancelled, _ = await cancel_twice_after(session.pop_item(), steps)
            cancelled += was_cancelled
            expected.pop()
            assert texts(await witness.get_items()) == expected, f"pop cancelled after {steps}"
        assert cancelled >= 3  # the cancellation did reach calls still under way
        was_cancelled, _ = await cancel_twice_after(session.clear_session(), 1)
        assert was_cancelled
        assert await witness.get_items() == []


# -- compaction: the SDK's OpenAIResponsesCompactionSession over SessiondbSession ---------------


class FakeResponses:
    """Stands in for ``AsyncOpenAI().responses``: ``compact`` returns one compaction item that
    names what it summarised, and records what it was sent (no network)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def compact(self, **request: Any) -> Any:
        self.requests.append(request)
        summary = "|".join(texts(request.get("input") or []))
        item = {
            "type": "compaction",
            "id": f"cmp_{len(self.requests)}",
            "encrypted_content": summary,
        }
        return SimpleNamespace(output=[item], usage=None)


class NumberedModel(ScriptedModel):
    """A scripted model whose responses have ids, as the Responses API's do."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await super().get_response(*args, **kwargs)
        return ModelResponse(
            output=response.output, usage=response.usage, response_id=f"resp_{len(self.inputs)}"
        )


async def test_compaction_session_on_top(
    async_store: AsyncSessionStore, offline_sdk: RunConfig
) -> None:
    responses = FakeResponses()
    inner = SessiondbSession("compact", async_store, app_name="chat", user_id="ada")
    session = OpenAIResponsesCompactionSession(
        "compact",
        inner,
        client=SimpleNamespace(responses=responses),  # type: ignore[arg-type]
        compaction_mode="input",  # send the stored items (not a previous response id)
        # compact once two model items (candidates) are stored
        should_trigger_compaction=lambda ctx: len(ctx["compaction_candidate_items"]) >= 2,
    )
    model = NumberedModel([reply("a1"), reply("a2"), reply("a3")])
    agent = Agent(name="a", model=model)
    await Runner.run(agent, "q1", session=session, run_config=offline_sdk)
    assert responses.requests == []  # one candidate: not yet
    assert texts(await inner.get_items()) == ["q1", "a1"]
    await Runner.run(agent, "q2", session=session, run_config=offline_sdk)
    # after the second turn the stored history was replaced by the compaction's output
    assert len(responses.requests) == 1
    assert await inner.get_items() == [
        {"type": "compaction", "id": "cmp_1", "encrypted_content": "q1|a1|q2|a2"}
    ]
    await Runner.run(agent, "q3", session=session, run_config=offline_sdk)
    assert texts(model.inputs[-1]) == ["<compaction>", "q3"]  # the model got the compacted history
    assert texts(await inner.get_items()) == ["<compaction>", "q3", "a3"]
    # a manual, forced compaction replaces the whole history too
    await session.run_compaction({"force": True})
    assert texts(await inner.get_items()) == ["<compaction>"]
    stored = await async_store.get_session("chat", "ada", "compact")
    assert stored is not None and stored.event_count == 1  # replaced rows are gone, not hidden
    # pop and clear through the wrapper reach the sessiondb session
    assert (await session.pop_item()) == {
        "type": "compaction",
        "id": "cmp_2",
        "encrypted_content": "<compaction>|q3|a3",
    }
    await session.add_items([user("z")])
    await session.clear_session()
    assert await inner.get_items() == []


# -- privacy: another user's session id reveals nothing ------------------------------------------


async def test_another_users_id_behaves_as_a_missing_one(async_store: AsyncSessionStore) -> None:
    await SessiondbSession("secret", async_store, app_name="bank", user_id="alice").add_items(
        [user("balance: 1M")]
    )

    async def observe(session_id: str) -> list[Any]:
        """Everything user mallory can learn about ``session_id`` through the adapter."""
        seen: list[Any] = []
        session = SessiondbSession(session_id, async_store, app_name="bank", user_id="mallory")
        bound = SessiondbSession(
            session_id, async_store, app_name="bank", user_id="mallory", create=False
        )
        seen.append(await session.get_items())
        seen.append(await session.get_items(limit=3))
        seen.append(await session.pop_item())
        await session.clear_session()
        with pytest.raises(SessionNotFoundError) as caught:
            await bound.add_items([user("probe")])
        seen.append(str(caught.value).replace(session_id, "<id>"))
        return seen

    assert await observe("secret") == await observe("no-such-session")
    assert texts(await SessiondbSession("secret", async_store, app_name="bank", user_id="alice")
                 .get_items()) == ["balance: 1M"]  # fmt: skip


# -- pop_item deletes: no growth, legacy tombstones honoured and cleaned --------------------------


async def test_add_pop_cycles_do_not_grow_storage(
    db_url: str, async_store: AsyncSessionStore
) -> None:
    session = SessiondbSession("cycles", async_store, app_name="chat", user_id="ada")
    await session.add_items([user("kept 0"), user("kept 1")])
    baseline = stored_events(db_url, "cycles")
    assert baseline[0] == 2
    for i in range(1000):
        await session.add_items([user(f"draft {i}")])
        assert await session.pop_item() == user(f"draft {i}")
    assert stored_events(db_url, "cycles") == baseline  # rows and bytes: exactly as before
    stored = await async_store.get_session("chat", "ada", "cycles")
    assert stored is not None
    assert (stored.event_count, stored.event_bytes) == baseline
    assert stored.version == 1 + 1 + 2000  # created, the first add, then each add and pop
    assert texts(await session.get_items()) == ["kept 0", "kept 1"]


async def write_legacy_history(store: AsyncSessionStore, session_id: str) -> None:
    """The event log the tombstone-appending ``pop_item`` of earlier releases left behind for:
    add 0..9, pop three times, add x and y, pop, add z (visible: 0..6, x, z)."""
    await store.create_session("openai-agents", "default", session_id=session_id)

    async def items(*names: str) -> None:
        await store.append_events(
            session_id, [{"author": "user", "content": user(n)} for n in names]
        )

    async def tombstone(seq: int) -> None:
        await store.append_event(session_id, TOMBSTONE_AUTHOR, None, metadata={POP_MARKER: seq})

    await items(*(str(i) for i in range(10)))  # seqs 1..10
    for seq in (10, 9, 8):  # seqs 11..13
        await tombstone(seq)
    await items("x", "y")  # 14, 15
    await tombstone(15)  # 16
    await items("z")  # 17


async def test_legacy_tombstones_are_honoured_and_cleaned_up(
    db_url: str, async_store: AsyncSessionStore
) -> None:
    await write_legacy_history(async_store, "legacy")
    session = SessiondbSession("legacy", async_store)
    visible = ["0", "1", "2", "3", "4", "5", "6", "x", "z"]
    assert texts(await session.get_items()) == visible
    for n in range(1, 11):
        assert texts(await session.get_items(limit=n)) == visible[-n:]
    assert stored_events(db_url, "legacy")[0] == 17
    assert await session.pop_item() == user("z")  # an item on top: it alone goes
    assert stored_events(db_url, "legacy")[0] == 16
    # past the tombstone of y: y, the tombstone, and x go together
    assert await session.pop_item() == user("x")
    assert stored_events(db_url, "legacy")[0] == 13
    assert texts(await session.get_items(limit=3)) == ["4", "5", "6"]
    # past three tombstones and the three items they hide
    assert await session.pop_item() == user("6")
    events = await async_store.list_events("legacy")
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e.author != TOMBSTONE_AUTHOR for e in events)
    stored = await async_store.get_session("openai-agents", "default", "legacy")
    assert stored is not None
    assert (stored.event_count, stored.event_bytes) == stored_events(db_url, "legacy")
    assert stored.event_count == 6
    await session.add_items([user("new")])
    assert texts(await session.get_items()) == ["0", "1", "2", "3", "4", "5", "new"]
    assert await session.pop_item() == user("new")


async def test_a_legacy_session_of_hidden_items_only_shrinks_to_nothing(
    db_url: str, async_store: AsyncSessionStore
) -> None:
    await async_store.create_session("openai-agents", "default", session_id="hollow")
    for i in range(3):  # add, pop; three times
        (item,) = await async_store.append_events(
            "hollow", [{"author": "user", "content": user(str(i))}]
        )
        await async_store.append_event(
            "hollow", TOMBSTONE_AUTHOR, None, metadata={POP_MARKER: item.seq}
        )
    session = SessiondbSession("hollow", async_store)
    assert await session.get_items() == []
    assert await session.get_items(limit=2) == []
    assert await session.pop_item() is None
    assert stored_events(db_url, "hollow") == (0, 0)
    stored = await async_store.get_session("openai-agents", "default", "hollow")
    assert stored is not None and (stored.event_count, stored.event_bytes) == (0, 0)


def test_threads_popping_and_adding_lose_nothing_and_pop_nothing_twice(db_url: str) -> None:
    session = SessiondbSession("threads-pop", db_url)
    asyncio.run(session.add_items([user(f"seed {i}") for i in range(30)]))
    popped: list[list[Any]] = [[] for _ in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(n: int) -> None:
        async def work() -> None:
            start.wait()  # every thread begins at once
            for i in range(8):
                if n % 2:
                    await session.add_items([user(f"t{n}-{i}")])
                popped[n].append(await session.pop_item())

        try:
            asyncio.run(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert errors == []
    got = texts([item for mine in popped for item in mine if item is not None])
    left = texts(asyncio.run(session.get_items()))
    asyncio.run(session.aclose())
    assert len(got) == 6 * 8  # 30 seeds and 24 adds: there was always an item to pop
    assert len(set(got)) == len(got)  # never the same item twice
    added = [f"seed {i}" for i in range(30)] + [f"t{n}-{i}" for n in (1, 3, 5) for i in range(8)]
    assert Counter(got + left) == Counter(added)  # nothing lost, nothing made up


@pytest.mark.sqlite
async def test_pop_item_behaves_as_the_sdks_sqlite_session(tmp_path: Any, db_url: str) -> None:
    from agents.memory import SQLiteSession

    async def script(session: Any) -> list[Any]:
        seen: list[Any] = [await session.pop_item()]
        await session.add_items([user("a"), user("b"), user("c")])
        seen += [await session.pop_item(), await session.get_items()]
        await session.add_items([user("d")])
        seen += [
            await session.get_items(limit=2),
            await session.pop_item(),
            await session.pop_item(),
        ]
        seen += [await session.pop_item(), await session.pop_item(), await session.get_items()]
        await session.add_items([user("e")])
        seen += [await session.get_items(), await session.pop_item()]
        return seen

    sdk = SQLiteSession("baseline", str(tmp_path / "sdk.db"))
    try:
        expected = await script(sdk)
    finally:
        sdk.close()
    async with SessiondbSession("baseline", db_url) as ours:
        assert await script(ours) == expected
    assert expected[1] == user("c") and expected[-1] == user("e")


def test_pop_items_until_starts_over_when_the_operation_runs_again() -> None:
    from sessiondb.openai_agents import _ReachesAnItem

    def ev(seq: int, hides: int | None = None) -> Event:
        meta = None if hides is None else {POP_MARKER: hides}
        author = "user" if hides is None else TOMBSTONE_AUTHOR
        return Event("s", seq, author, None, None, metadata=meta)  # type: ignore[arg-type]

    history = [ev(5, hides=4), ev(4), ev(3, hides=2), ev(2), ev(1)]  # newest first
    until = _ReachesAnItem()
    assert [until(history[:n]) for n in range(1, 6)] == [False, False, False, False, True]
    # a conflict makes the store run the operation again: it calls with one event again
    assert [until(history[:n]) for n in range(1, 6)] == [False, False, False, False, True]
    assert until([ev(7)]) is True
