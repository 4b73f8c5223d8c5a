"""Google ADK integration: SessiondbSessionService under a real Runner, and import_adk.

The model is a scripted fake (no network). The proof: a conversation run through ADK's
``Runner`` is read back by a second process, event for event and key for key, on every backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa

pytest.importorskip("google.adk", reason="google-adk is not installed (sessiondb[adk])")

from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import DatabaseSessionService, Session
from google.adk.sessions.base_session_service import (
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from sessiondb import AsyncSessionStore, ConfigurationError, SessionStore
from sessiondb._urls import resolve_url
from sessiondb.adk import STALE_MESSAGE, SessiondbSessionService
from sessiondb.adk_import import (
    UnsafePickleError,
    aimport_adk,
    import_adk,
    safe_unpickle,
)

APP = "helpdesk"


# -- a scripted model and a tool -----------------------------------------------------------------


class ScriptedLlm(BaseLlm):
    """Answers from a script: ``remember X`` calls the tool, anything else is echoed.

    With ``stream=True`` the text arrives as partial chunks before the final response.
    """

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        part = llm_request.contents[-1].parts[0]  # type: ignore[index]
        if part.function_response is not None:
            text = f"Noted ({part.function_response.response})."
        elif part.text and part.text.startswith("remember "):
            call = types.FunctionCall(name="remember", args={"item": part.text[9:]})
            content = types.Content(role="model", parts=[types.Part(function_call=call)])
            yield LlmResponse(content=content)
            return
        else:
            text = f"You said: {part.text}"
        if stream:
            for i in range(0, len(text), 6):
                chunk = types.Content(role="model", parts=[types.Part(text=text[i : i + 6])])
                yield LlmResponse(content=chunk, partial=True)
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def remember(item: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember an item for the user."""
    state = tool_context.state
    state["temp:scratch"] = f"working on {item}"  # lives for this invocation only
    state["user:name"] = item
    state["app:remembered"] = state.get("app:remembered", 0) + 1
    state["items"] = [*state.get("items", []), item]
    return {"saved": item, "scratch": state["temp:scratch"]}


def make_runner(service: Any, *, output_key: str | None = "last_reply") -> Runner:
    agent = LlmAgent(name="helper", model=ScriptedLlm(), tools=[remember], output_key=output_key)
    return Runner(agent=agent, app_name=APP, session_service=service)


def say(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def converse(
    runner: Runner, user: str, session_id: str, turns: list[str], **kw: Any
) -> list[Event]:
    seen = []
    for text in turns:
        async for event in runner.run_async(
            user_id=user, session_id=session_id, new_message=say(text),
            yield_user_message=True, **kw,
        ):  # fmt: skip
            seen.append(event)
    return seen


def dump(events: list[Event]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json", exclude_none=True) for e in events]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def target(db_url: str) -> tuple[str, str]:
    """(url, table_prefix) of an empty sessiondb on ``backend``: a fresh prefix in the test's
    private database."""
    return db_url, f"adk{uuid.uuid4().hex[:8]}_"


@pytest.fixture
async def service(target: tuple[str, str]) -> AsyncIterator[SessiondbSessionService]:
    url, prefix = target
    svc = SessiondbSessionService(url, table_prefix=prefix)
    yield svc
    await svc.close()


# -- the proof: a Runner conversation, read back by another process ------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, traceback
    from google.adk.events.event import Event
    from sessiondb.adk import SessiondbSessionService

    async def main(url, prefix, app, user, sid, expected_path):
        expected = json.load(open(expected_path))
        svc = SessiondbSessionService(url, table_prefix=prefix)
        try:
            s = await svc.get_session(app_name=app, user_id=user, session_id=sid)
            listed = await svc.list_sessions(app_name=app, user_id=user)
            want = [Event.model_validate(e) for e in expected["events"]]
            return {
                "found": s is not None,
                "count": len(s.events),
                "authors": [e.author for e in s.events],
                "events_equal": s.events == want,
                "first_difference": next(
                    (i for i, (a, b) in enumerate(zip(s.events, want)) if a != b), None),
                "state": s.state,
                "user_state": await svc.get_user_state(app_name=app, user_id=user),
                "listed": [x.id for x in listed.sessions],
            }
        finally:
            await svc.close()

    for line in sys.stdin:  # one request a line, one "RESULT {json}" line each
        try:
            result = asyncio.run(main(*json.loads(line)))
        except BaseException:
            result = {"error": traceback.format_exc()}
        print("RESULT", json.dumps(result), flush=True)
    """
)


class SecondProcess:
    """The reading process of the proof: started once for the module (importing ADK costs
    seconds), it opens a new service for every request, on whichever backend it names."""

    def __init__(self, tmp: Path) -> None:
        self.stderr = (tmp / "stderr.txt").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )  # fmt: skip

    def read(self, *args: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        timer = threading.Timer(120, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                if line.startswith("RESULT "):
                    got: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
                    assert "error" not in got, got["error"]
                    return got
        finally:
            timer.cancel()
        self.stderr.seek(0)
        raise AssertionError(f"the second process ended ({self.proc.wait()}): {self.stderr.read()}")

    def close(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.stderr.close()


@pytest.fixture(scope="module")
def second_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondProcess]:
    process = SecondProcess(tmp_path_factory.mktemp("second_process"))
    yield process
    assert process.close() == 0


async def test_runner_conversation_is_seen_by_a_second_process(
    service: SessiondbSessionService,
    target: tuple[str, str],
    tmp_path: Path,
    second_process: SecondProcess,
) -> None:
    runner = make_runner(service)
    session = await service.create_session(
        app_name=APP, user_id="ada", state={"app:motd": "be kind", "topic": "billing"}
    )
    turns = ["hello", "remember the invoice", "remember the refund", "thanks, bye"]
    seen = await converse(runner, "ada", session.id, turns)

    # the tool read its temp: value inside the invocation...
    responses = [
        p.function_response.response
        for e in seen
        if e.content and e.content.parts
        for p in e.content.parts
        if p.function_response
    ]
    assert responses == [
        {"saved": "the invoice", "scratch": "working on the invoice"},
        {"saved": "the refund", "scratch": "working on the refund"},
    ]
    # ...and no stored event carries it
    assert all("temp:scratch" not in e.actions.state_delta for e in seen)

    here = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
    assert here is not None
    assert here.events == seen  # what the Runner appended is what is stored, in order
    assert len(seen) == 4 + 2 * 3 + 2  # 4 user turns, 2 tool round trips, 2 plain replies

    expected = {"events": dump(seen)}
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(expected))
    url, prefix = target
    got = second_process.read(url, prefix, APP, "ada", session.id, str(path))
    assert got["found"]
    assert got["count"] == len(seen)
    assert got["authors"] == [e.author for e in seen]
    assert got["events_equal"], f"event {got['first_difference']} differs"
    assert got["state"] == {
        "topic": "billing",
        "items": ["the invoice", "the refund"],
        "last_reply": "You said: thanks, bye",
        "app:motd": "be kind",
        "app:remembered": 2,
        "user:name": "the refund",
    }
    assert not any(k.startswith("temp:") for k in got["state"])
    assert got["user_state"] == {"name": "the refund"}
    assert got["listed"] == [session.id]


async def test_user_and_app_state_are_shared_between_sessions(
    service: SessiondbSessionService,
) -> None:
    runner = make_runner(service)
    first = await service.create_session(app_name=APP, user_id="ada")
    await converse(runner, "ada", first.id, ["remember the invoice"])
    second = await service.create_session(app_name=APP, user_id="ada")
    other = await service.create_session(app_name=APP, user_id="bob")
    assert second.state == {"app:remembered": 1, "user:name": "the invoice"}
    assert other.state == {"app:remembered": 1}
    await converse(runner, "bob", other.id, ["remember the parcel"])
    again = await service.get_session(app_name=APP, user_id="ada", session_id=second.id)
    assert again is not None
    assert again.state == {"app:remembered": 2, "user:name": "the invoice"}
    assert await service.get_user_state(app_name=APP, user_id="bob") == {"name": "the parcel"}
    assert await service.get_user_state(app_name=APP, user_id="nobody") == {}
    assert await service.get_app_state(app_name=APP) == {"remembered": 2}


def test_sync_runner_run_works_across_event_loops(target: tuple[str, str]) -> None:
    """``Runner.run`` starts a new event loop per call; the service follows it."""
    url, prefix = target
    service = SessiondbSessionService(url, table_prefix=prefix)
    runner = make_runner(service)
    session = asyncio.run(service.create_session(app_name=APP, user_id="ada"))
    for text in ["hello", "remember the invoice", "bye"]:
        list(runner.run(user_id="ada", session_id=session.id, new_message=say(text)))

    async def read_and_close() -> Session | None:
        try:
            return await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
        finally:
            await service.close()

    got = asyncio.run(read_and_close())
    assert got is not None
    assert len(got.events) == 2 + 4 + 2
    assert got.state["user:name"] == "the invoice"


# -- ADK semantics, call by call -----------------------------------------------------------------


async def test_partial_events_are_not_persisted(service: SessiondbSessionService) -> None:
    runner = make_runner(service)
    session = await service.create_session(app_name=APP, user_id="ada")
    seen = await converse(
        runner, "ada", session.id, ["hello there"],
        run_config=RunConfig(streaming_mode=StreamingMode.SSE),
    )  # fmt: skip
    assert any(e.partial for e in seen)
    stored = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
    assert stored is not None
    assert stored.events == [e for e in seen if not e.partial]
    assert not any(e.partial for e in stored.events)

    # and called directly: returned untouched, nothing stored, the session object unchanged
    before = stored.model_copy(deep=True)
    partial = Event(
        author="helper", invocation_id="inv-1", partial=True,
        actions=EventActions(state_delta={"x": 1}),
    )  # fmt: skip
    assert await service.append_event(stored, partial) is partial
    assert stored == before
    again = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
    assert again is not None
    assert again.events == stored.events and "x" not in again.state


async def test_temp_user_app_keys_in_append_event(service: SessiondbSessionService) -> None:
    session = await service.create_session(
        app_name=APP, user_id="ada", state={"temp:dropped": 1, "kept": 1}
    )
    assert session.state == {"kept": 1}  # temp: keys are never stored, not even at creation
    event = Event(
        author="helper",
        invocation_id="inv-1",
        actions=EventActions(
            state_delta={"temp:t": "now", "k": {"deep": [1, 2]}, "user:u": 3, "app:a": 4}
        ),
    )
    returned = await service.append_event(session, event)
    # as ADK's own services: temp: lives in the in-memory session for the invocation...
    assert session.state == {
        "kept": 1, "temp:t": "now", "k": {"deep": [1, 2]}, "user:u": 3, "app:a": 4,
    }  # fmt: skip
    # ...but the event carries (and the store keeps) no temp: key
    assert returned.actions.state_delta == {"k": {"deep": [1, 2]}, "user:u": 3, "app:a": 4}
    assert session.events == [returned]
    stored = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
    assert stored is not None
    assert stored.state == {"kept": 1, "k": {"deep": [1, 2]}, "user:u": 3, "app:a": 4}
    assert stored.events == [returned]
    assert stored.last_update_time == pytest.approx(session.last_update_time, abs=1e-6)
    assert abs(stored.last_update_time - time.time()) < 60


async def test_events_compare_equal(service: SessiondbSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="ada")
    call = types.FunctionCall(id="call-1", name="lookup", args={"q": "ünïcode ✓", "n": 3})
    rich = [
        Event(author="user", invocation_id="inv-1", content=say("hi 👋")),
        Event(
            author="helper",
            invocation_id="inv-1",
            branch="helper.sub",
            long_running_tool_ids={"call-1", "call-2"},
            content=types.Content(
                role="model",
                parts=[
                    types.Part(text="looking"),
                    types.Part(function_call=call),
                    types.Part(
                        inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG\x00\xff")
                    ),
                ],
            ),
            custom_metadata={"trace": {"id": 7, "tags": ["a", "b"]}},
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=10, candidates_token_count=5
            ),
            actions=EventActions(state_delta={"seen": 1.5}, artifact_delta={"report.pdf": 2}),
        ),
        Event(
            author="helper",
            invocation_id="inv-1",
            content=types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="call-1", name="lookup", response={"rows": [{"a": None}]}
                        ),
                    )
                ],
            ),
            actions=EventActions(skip_summarization=True, transfer_to_agent="billing"),
        ),
        Event(author="helper", invocation_id="inv-1", error_code="E1", error_message="x" * 500),
    ]
    returned = [await service.append_event(session, e) for e in rich]
    assert returned == rich
    stored = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
    assert stored is not None
    assert stored.events == rich
    assert stored.events[1].content.parts[2].inline_data.data == b"\x89PNG\x00\xff"  # type: ignore[union-attr,index]
    assert stored.events[1].long_running_tool_ids == {"call-1", "call-2"}


async def test_get_session_config(service: SessiondbSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="ada", state={"k": 0})
    t0 = 1_700_000_000.0
    events = []
    for i in range(6):
        event = Event(
            author="user", invocation_id=f"inv-{i}", timestamp=t0 + i, content=say(f"m{i}"),
            actions=EventActions(state_delta={"k": i}),
        )  # fmt: skip
        events.append(await service.append_event(session, event))

    async def get(**config: Any) -> Session:
        got = await service.get_session(
            app_name=APP, user_id="ada", session_id=session.id,
            config=GetSessionConfig(**config) if config else None,
        )  # fmt: skip
        assert got is not None
        assert got.state == {"k": 5}  # the config limits events, never the state
        return got

    assert (await get()).events == events
    assert (await get(num_recent_events=2)).events == events[-2:]
    assert (await get(num_recent_events=10)).events == events
    assert (await get(num_recent_events=0)).events == []
    assert (await get(after_timestamp=t0 + 3)).events == events[3:]  # >=, as ADK
    assert (await get(after_timestamp=t0 + 3.5)).events == events[4:]
    assert (await get(after_timestamp=t0 + 1, num_recent_events=2)).events == events[-2:]
    assert (await get(after_timestamp=t0 + 4, num_recent_events=5)).events == events[4:]
    assert (await get(after_timestamp=t0 + 99)).events == []
    with pytest.raises(pydantic.ValidationError):  # ADK's own check
        GetSessionConfig(num_recent_events=-1)
    # a session read with fewer events still appends (its version is what counts)
    short = await get(num_recent_events=1)
    await service.append_event(short, Event(author="user", invocation_id="inv-9"))


async def test_list_sessions_response(service: SessiondbSessionService) -> None:
    a1 = await service.create_session(
        app_name=APP, user_id="ada", state={"n": 1, "app:x": "shared", "user:lang": "en"}
    )
    b1 = await service.create_session(app_name=APP, user_id="bob", state={"user:lang": "fr"})
    a2 = await service.create_session(app_name=APP, user_id="ada", session_id="ada-second")
    await service.append_event(
        a1, Event(author="user", invocation_id="i", actions=EventActions(state_delta={"n": 2}))
    )
    await service.create_session(app_name="another-app", user_id="ada")

    mine = await service.list_sessions(app_name=APP, user_id="ada")
    assert isinstance(mine, ListSessionsResponse)
    assert [s.id for s in mine.sessions] == [a2.id, a1.id]  # least recently updated first
    assert all(isinstance(s, Session) and s.events == [] for s in mine.sessions)
    assert mine.sessions[1].state == {"n": 2, "app:x": "shared", "user:lang": "en"}
    assert mine.sessions[0].state == {"app:x": "shared", "user:lang": "en"}
    assert mine.sessions[1].last_update_time > mine.sessions[0].last_update_time

    everyone = await service.list_sessions(app_name=APP)
    assert {s.id for s in everyone.sessions} == {a1.id, a2.id, b1.id}
    times = [s.last_update_time for s in everyone.sessions]
    assert times == sorted(times)
    langs = {s.user_id: s.state["user:lang"] for s in everyone.sessions}
    assert langs == {"ada": "en", "bob": "fr"}
    assert (await service.list_sessions(app_name="nobody")).sessions == []
    # a listed session can be appended to, like a loaded one
    await service.append_event(mine.sessions[0], Event(author="user", invocation_id="i"))


async def test_listed_last_update_time_is_the_one_get_gives(
    service: SessiondbSessionService,
) -> None:
    t0 = 1_700_000_000.25
    plenty = await service.create_session(app_name=APP, user_id="ada")
    for i in range(3):  # timestamps ADK chose, not when the database wrote the rows
        await service.append_event(
            plenty, Event(author="user", invocation_id=f"i{i}", timestamp=t0 + i)
        )
    empty = await service.create_session(app_name=APP, user_id="ada")
    theirs = await service.create_session(app_name=APP, user_id="bob")
    await service.append_event(theirs, Event(author="user", invocation_id="b", timestamp=t0 + 9))
    plain = await service.create_session(app_name=APP, user_id="bob")
    # an event another program appended with the plain sessiondb API
    await service.store.append_event(
        plain.id, "tool", {"text": "hello"}, app_name=APP, user_id="bob"
    )
    for user in ("ada", "bob", None):
        listed = await service.list_sessions(app_name=APP, user_id=user)
        assert listed.sessions
        for s in listed.sessions:
            got = await service.get_session(app_name=APP, user_id=s.user_id, session_id=s.id)
            assert got is not None
            assert s.last_update_time == got.last_update_time, s.id
            assert s.events == []
    by_id = {s.id: s for s in (await service.list_sessions(app_name=APP)).sessions}
    assert by_id[plenty.id].last_update_time == t0 + 2
    assert by_id[theirs.id].last_update_time == t0 + 9
    assert by_id[empty.id].last_update_time == empty.last_update_time
    # a listed session carries the version it was listed at: appending to it goes on, and a
    # copy listed before that append is stale
    again = await service.list_sessions(app_name=APP, user_id="ada")
    copy = next(s for s in again.sessions if s.id == plenty.id)
    await service.append_event(by_id[plenty.id], Event(author="user", invocation_id="i3"))
    with pytest.raises(StaleSessionError):
        await service.append_event(copy, Event(author="user", invocation_id="late"))


async def test_create_get_delete(service: SessiondbSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="ada", session_id="s-1")
    assert (session.id, session.app_name, session.user_id) == ("s-1", APP, "ada")
    assert session.events == [] and session.last_update_time > 0
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="ada", session_id="s-1")
    generated = await service.create_session(app_name=APP, user_id="ada")
    assert uuid.UUID(generated.id)

    assert await service.get_session(app_name=APP, user_id="ada", session_id="nope") is None
    assert await service.get_session(app_name=APP, user_id="bob", session_id="s-1") is None
    assert await service.get_session(app_name="other", user_id="ada", session_id="s-1") is None

    await service.append_event(session, Event(author="user", invocation_id="i"))
    await service.delete_session(app_name=APP, user_id="bob", session_id="s-1")  # not bob's
    assert await service.get_session(app_name=APP, user_id="ada", session_id="s-1") is not None
    await service.delete_session(app_name=APP, user_id="ada", session_id="s-1")
    assert await service.get_session(app_name=APP, user_id="ada", session_id="s-1") is None
    await service.delete_session(app_name=APP, user_id="ada", session_id="s-1")  # no error
    listed = await service.list_sessions(app_name=APP, user_id="ada")
    assert [s.id for s in listed.sessions] == [generated.id]
    with pytest.raises(SessionNotFoundError):
        await service.append_event(session, Event(author="user", invocation_id="i"))


async def test_stale_session_detection(
    service: SessiondbSessionService, target: tuple[str, str]
) -> None:
    url, prefix = target
    other = SessiondbSessionService(url, table_prefix=prefix)  # another worker, same database
    try:
        created = await service.create_session(app_name=APP, user_id="ada", state={"n": 0})
        mine = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        theirs = await other.get_session(app_name=APP, user_id="ada", session_id=created.id)
        assert mine is not None and theirs is not None

        def bump(n: int) -> Event:
            return Event(
                author="user", invocation_id=f"inv-{n}", actions=EventActions(state_delta={"n": n})
            )

        await other.append_event(theirs, bump(1))
        await other.append_event(theirs, bump(2))  # the winner goes on appending
        before = mine.model_copy(deep=True)
        with pytest.raises(StaleSessionError) as caught:
            await service.append_event(mine, bump(3))
        assert str(caught.value) == STALE_MESSAGE
        assert isinstance(caught.value, ValueError)  # ADK's error is a ValueError
        assert mine.events == before.events and mine.state == before.state

        fresh = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        assert fresh is not None
        await service.append_event(fresh, bump(3))
        stored = await other.get_session(app_name=APP, user_id="ada", session_id=created.id)
        assert stored is not None
        assert [e.invocation_id for e in stored.events] == ["inv-1", "inv-2", "inv-3"]
        assert stored.state == {"n": 3}

        # two Session objects of one service race the same way
        one = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        two = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        assert one is not None and two is not None
        await service.append_event(one, bump(4))
        with pytest.raises(StaleSessionError):
            await service.append_event(two, bump(5))

        # a Session this service did not load (no version marker): ADK's fallback rule
        manual = Session(id=created.id, app_name=APP, user_id="ada", last_update_time=0.0)
        with pytest.raises(StaleSessionError):
            await service.append_event(manual, bump(6))
        latest = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        assert latest is not None
        copy = Session(
            id=created.id, app_name=APP, user_id="ada", events=latest.events,
            last_update_time=0.0,
        )  # fmt: skip
        await service.append_event(copy, bump(6))
    finally:
        await other.close()


async def test_concurrent_appends_one_wins(service: SessiondbSessionService) -> None:
    created = await service.create_session(app_name=APP, user_id="ada")
    copies = [
        await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
        for _ in range(4)
    ]
    results = await asyncio.gather(
        *(service.append_event(s, Event(author="user", invocation_id=f"i{n}"))  # type: ignore[arg-type]
          for n, s in enumerate(copies)),
        return_exceptions=True,
    )  # fmt: skip
    assert sum(isinstance(r, Event) for r in results) == 1
    assert all(isinstance(r, (Event, StaleSessionError)) for r in results)
    stored = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert stored is not None and len(stored.events) == 1


async def test_redelivered_event_does_not_make_the_next_append_stale(
    service: SessiondbSessionService,
) -> None:
    created = await service.create_session(app_name=APP, user_id="ada", state={"n": 0})

    def bump(n: int) -> Event:
        return Event(
            author="user", invocation_id=f"inv-{n}", actions=EventActions(state_delta={"n": n})
        )

    first = bump(1)
    await service.append_event(created, first)
    again = await service.append_event(created, first.model_copy(deep=True))  # a retry
    assert again == first
    assert created.events == [first] and created.state == {"n": 1}
    await service.append_event(created, bump(2))  # not stale: nothing moved in between

    # a session read back re-delivers an old event, then goes on
    loaded = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert loaded is not None
    await service.append_event(loaded, first.model_copy(deep=True))
    await service.append_event(loaded, bump(3))
    # ... and so does one read with only its last event
    recent = await service.get_session(
        app_name=APP, user_id="ada", session_id=created.id,
        config=GetSessionConfig(num_recent_events=1),
    )  # fmt: skip
    assert recent is not None
    await service.append_event(recent, first.model_copy(deep=True))
    await service.append_event(recent, bump(4))

    # an append whose first try stored the event but raised (the outcome was unknown): the
    # session object lacks it, and its retry makes the object catch up with storage
    behind = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert behind is not None
    first_try = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert first_try is not None
    lost = bump(5)
    await service.append_event(first_try, lost)
    await service.append_event(behind, lost.model_copy(deep=True))
    assert behind.events[-1] == lost and behind.state == {"n": 5}
    await service.append_event(behind, bump(6))

    stored = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert stored is not None
    assert [e.invocation_id for e in stored.events] == [f"inv-{n}" for n in range(1, 7)]
    assert stored.state == {"n": 6}


async def test_redelivery_does_not_hide_a_concurrent_writer(
    service: SessiondbSessionService,
) -> None:
    created = await service.create_session(app_name=APP, user_id="ada")
    first = Event(author="user", invocation_id="inv-1")
    await service.append_event(created, first)
    theirs = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert theirs is not None
    await service.append_event(theirs, Event(author="user", invocation_id="theirs"))
    # re-delivering an event storage holds writes nothing and raises nothing...
    await service.append_event(created, first.model_copy(deep=True))
    assert created.events == [first]
    # ... and the other writer's append is still detected
    with pytest.raises(StaleSessionError):
        await service.append_event(created, Event(author="user", invocation_id="mine"))
    stored = await service.get_session(app_name=APP, user_id="ada", session_id=created.id)
    assert stored is not None
    assert [e.invocation_id for e in stored.events] == ["inv-1", "theirs"]


async def test_a_store_can_be_passed_in(tmp_path: Path) -> None:
    async with AsyncSessionStore(f"sqlite:///{tmp_path / 'own.db'}", tz_aware=True) as store:
        service = SessiondbSessionService(store=store)
        assert service.store is store
        session = await service.create_session(app_name=APP, user_id="ada")
        await service.append_event(session, Event(author="user", invocation_id="i"))
        await service.close()  # leaves the caller's store open
        got = await store.get_session(APP, "ada", session.id, recent_events=5)
        assert got is not None and got.event_count == 1 and got.events is not None
        assert got.events[0].author == "user" and got.events[0].invocation_id == "i"
    # a bare ValueError: SessiondbSessionService raises no sessiondb error for this
    with pytest.raises(ValueError):
        SessiondbSessionService()
    with pytest.raises(ValueError):
        SessiondbSessionService("sqlite:///./x.db", store=store)


async def test_events_written_without_adk_are_shown(tmp_path: Path) -> None:
    """Events another program appended with the plain sessiondb API still load as Events."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    service = SessiondbSessionService(url)
    try:
        session = await service.create_session(app_name=APP, user_id="ada")
        await service.store.append_event(session.id, "user", "plain text")
        await service.store.append_event(
            session.id, "assistant", {"answer": 42}, state_delta={"k": 1}
        )
        got = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
        assert got is not None
        assert [e.author for e in got.events] == ["user", "assistant"]
        assert got.events[0].content.parts[0].text == "plain text"  # type: ignore[union-attr,index]
        assert got.events[1].actions.state_delta == {"k": 1}
        assert got.state == {"k": 1}
    finally:
        await service.close()


def test_importing_sessiondb_does_not_import_adk() -> None:
    code = "import sys, sessiondb; assert 'google.adk' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_adk_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["google.adk"] = None  # as if google-adk were not installed
        try:
            import sessiondb.adk
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'sessiondb[adk]'" in out.stdout


# -- import_adk: from ADK's own DatabaseSessionService --------------------------------------------


def adk_source(backend: str, make_db_url: Any) -> str:
    """A new, empty database for ADK's DatabaseSessionService, as an async-driver URL."""
    return adk_form(backend, make_db_url())


def adk_form(backend: str, url: str) -> str:
    """The async-driver URL ADK's DatabaseSessionService takes for a sessiondb test URL."""
    if backend == "sqlite":
        return url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    driver = "postgresql+asyncpg" if backend == "postgresql" else "mysql+aiomysql"
    base = resolve_url(url).sync_url
    return base.set(drivername=driver).render_as_string(hide_password=False)


def adk_service(source: str) -> DatabaseSessionService:
    """ADK's own service on ``source``; through a transaction-mode pooler (CI's PgBouncer run)
    asyncpg must not keep prepared statements across transactions."""
    pooled = "pooler=transaction" in os.environ.get("SESSIONDB_TEST_POSTGRESQL_URL", "")
    if pooled and source.startswith("postgresql+asyncpg"):
        return DatabaseSessionService(
            source,
            connect_args={
                "statement_cache_size": 0,
                "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
            },
        )
    return DatabaseSessionService(source)


async def adk_conversations(service: Any) -> list[Session]:
    """Three sessions of two users, run through a Runner on ``service``; returns them."""
    runner = make_runner(service)
    made = []
    for user, state, turns in [
        ("ada", {"app:motd": "hi", "topic": "billing"}, ["hello", "remember the invoice", "bye"]),
        ("ada", {}, ["remember the refund"]),
        ("bob", {"user:vip": True}, ["hello", "remember the parcel"]),
    ]:
        s = await service.create_session(app_name=APP, user_id=user, state=state)
        await converse(runner, user, s.id, turns)
        made.append(s)
    empty = await service.create_session(app_name="quiet", user_id="cy", state={"a": [1]})
    made.append(empty)
    out = []
    for s in made:
        got = await service.get_session(app_name=s.app_name, user_id=s.user_id, session_id=s.id)
        assert got is not None
        out.append(got)
    return out


async def check_imported(service: SessiondbSessionService, originals: list[Session]) -> None:
    for orig in originals:
        got = await service.get_session(
            app_name=orig.app_name, user_id=orig.user_id, session_id=orig.id
        )
        assert got is not None, orig.id
        assert got.events == orig.events
        assert got.state == orig.state
        assert got.last_update_time == pytest.approx(orig.last_update_time, abs=1e-5)
    assert await service.get_user_state(app_name=APP, user_id="ada") == {"name": "the refund"}
    assert await service.get_user_state(app_name=APP, user_id="bob") == {
        "vip": True, "name": "the parcel",
    }  # fmt: skip
    assert await service.get_app_state(app_name=APP) == {"motd": "hi", "remembered": 3}
    listed = await service.list_sessions(app_name=APP)
    assert {s.id for s in listed.sessions} == {o.id for o in originals if o.app_name == APP}


async def test_import_adk_database(backend: str, target: tuple[str, str], make_db_url: Any) -> None:
    source = adk_source(backend, make_db_url)
    adk = adk_service(source)
    try:
        originals = await adk_conversations(adk)
    finally:
        await adk.close()
    n_events = sum(len(s.events) for s in originals)
    assert n_events == 8 + 4 + 6

    url, prefix = target
    counts = await aimport_adk(source, url, table_prefix=prefix)
    assert counts == {
        "sessions": 4, "events": n_events, "app_states": 2, "user_states": 3,
        "skipped_sessions": 0, "unreadable_events": 0, "read_sessions": 4,
        "read_events": n_events,
    }  # fmt: skip
    again = await aimport_adk(source, url, table_prefix=prefix)  # idempotent
    assert again["sessions"] == 0 and again["events"] == 0
    assert again["skipped_sessions"] == 4

    service = SessiondbSessionService(url, table_prefix=prefix)
    try:
        await check_imported(service, originals)
        # the imported sessions go on under sessiondb
        first = await service.get_session(app_name=APP, user_id="ada", session_id=originals[0].id)
        assert first is not None
        await converse(make_runner(service), "ada", first.id, ["one more"])
    finally:
        await service.close()


async def test_session_ids_are_per_user(service: SessiondbSessionService) -> None:
    """ADK's contract: u2 may create s1 while u1 has s1 in the same app; each keeps its own
    state and events, and a collision within one (app, user) is ADK's AlreadyExistsError."""
    u1 = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"k": 1})
    u2 = await service.create_session(app_name=APP, user_id="u2", session_id="s1", state={"k": 2})
    assert (u1.user_id, u2.user_id) == ("u1", "u2")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="u2", session_id="s1")
    runner = make_runner(service)
    await converse(runner, "u1", "s1", ["remember the invoice"])
    await converse(runner, "u2", "s1", ["hello"])
    got1 = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    got2 = await service.get_session(app_name=APP, user_id="u2", session_id="s1")
    assert got1 is not None and got2 is not None
    assert got1.state["k"] == 1 and got2.state["k"] == 2
    texts1 = [p.text for e in got1.events if e.content for p in e.content.parts or [] if p.text]
    texts2 = [p.text for e in got2.events if e.content for p in e.content.parts or [] if p.text]
    assert "remember the invoice" in texts1 and "remember the invoice" not in texts2
    assert "hello" in texts2 and "hello" not in texts1
    # a stale copy of one user's session never touches the other's
    await service.append_event(got2, Event(author="user", invocation_id="i2"))
    with pytest.raises(StaleSessionError):
        await service.append_event(u2, Event(author="user", invocation_id="late"))
    await service.append_event(got1, Event(author="user", invocation_id="i1"))
    listed = await service.list_sessions(app_name=APP)
    assert sorted((s.user_id, s.id) for s in listed.sessions) == [("u1", "s1"), ("u2", "s1")]
    await service.delete_session(app_name=APP, user_id="u1", session_id="s1")
    assert await service.get_session(app_name=APP, user_id="u1", session_id="s1") is None
    kept = await service.get_session(app_name=APP, user_id="u2", session_id="s1")
    assert kept is not None and kept.events == got2.events  # with the event appended to it


async def test_import_adk_sessions_sharing_an_id(
    backend: str, target: tuple[str, str], make_db_url: Any
) -> None:
    """ADK keys sessions by (app, user, id): sessions that share an id are all imported."""
    source = adk_source(backend, make_db_url)
    adk = adk_service(source)
    try:
        originals = []
        for app, user in ((APP, "ada"), (APP, "bob"), ("other", "ada")):
            made = await adk.create_session(
                app_name=app, user_id=user, session_id="same", state={"who": f"{app}/{user}"}
            )
            await adk.append_event(made, Event(author="user", invocation_id=f"{app}-{user}"))
            got = await adk.get_session(app_name=app, user_id=user, session_id="same")
            assert got is not None
            originals.append(got)
    finally:
        await adk.close()
    url, prefix = target
    counts = await aimport_adk(source, url, table_prefix=prefix)
    assert (counts["sessions"], counts["events"]) == (3, 3)
    service = SessiondbSessionService(url, table_prefix=prefix)
    try:
        for orig in originals:
            got = await service.get_session(
                app_name=orig.app_name, user_id=orig.user_id, session_id="same"
            )
            assert got is not None
            assert got.state == orig.state and got.events == orig.events
    finally:
        await service.close()


def test_import_adk_sync_and_same_file(tmp_path: Path) -> None:
    """The sync entry point, into the ADK database itself (with a table prefix)."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'both.db'}"

    async def run_adk() -> list[Session]:
        adk = adk_service(source)
        try:
            return await adk_conversations(adk)
        finally:
            await adk.close()

    originals = asyncio.run(run_adk())
    same = f"sqlite:///{tmp_path / 'both.db'}"
    with pytest.raises(ConfigurationError, match="table_prefix"):
        import_adk(source, same)
    with SessionStore(same) as unprefixed, pytest.raises(ConfigurationError, match="table_prefix"):
        import_adk(source, unprefixed)
    counts = import_adk(source, same, table_prefix="sdb_")
    assert counts["sessions"] == 4 and counts["events"] == 18
    with SessionStore(same, table_prefix="sdb_") as store:
        assert import_adk(source, store)["events"] == 0
        assert store.count_sessions() == 4
    astore = AsyncSessionStore(same, table_prefix="sdb_")
    assert import_adk(source, astore)["skipped_sessions"] == 4  # driven by asyncio.run
    asyncio.run(astore.close())

    async def check() -> None:
        service = SessiondbSessionService(same, table_prefix="sdb_")
        try:
            await check_imported(service, originals)
        finally:
            await service.close()

    asyncio.run(check())
    not_adk = f"sqlite:///{tmp_path / 'plain.db'}"
    with SessionStore(not_adk) as plain:
        plain.create_session(APP, "ada")  # sessiondb's own unprefixed "sessions" table
    with pytest.raises(ConfigurationError, match="not ADK's"):
        import_adk(not_adk, same, table_prefix="sdb2_")
    with pytest.raises(ConfigurationError, match="no ADK session tables"):
        import_adk(f"sqlite:///{tmp_path / 'empty.db'}", same, table_prefix="sdb2_")


# -- the legacy pickled schema, and the safe unpickler -------------------------------------------


class Exploit:
    """A pickle that would run a shell command when loaded by a plain unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_safe_unpickle_loads_adk_actions_and_refuses_the_rest(tmp_path: Path) -> None:
    from google.adk.auth.auth_credential import AuthCredential, AuthCredentialTypes, OAuth2Auth
    from google.adk.auth.auth_schemes import OpenIdConnectWithConfig
    from google.adk.auth.auth_tool import AuthConfig
    from google.adk.events.event_actions import EventCompaction
    from google.adk.tools.tool_confirmation import ToolConfirmation

    actions = EventActions(
        state_delta={"when": datetime(2024, 5, 1, tzinfo=timezone.utc), "tags": {"a"}, "n": 1},
        artifact_delta={"f.txt": 1},
        requested_auth_configs={
            "call-1": AuthConfig(
                credential_key="key-1",
                auth_scheme=OpenIdConnectWithConfig(
                    authorization_endpoint="https://a", token_endpoint="https://t",
                    scopes=["openid"],
                ),
                raw_auth_credential=AuthCredential(
                    auth_type=AuthCredentialTypes.OAUTH2,
                    oauth2=OAuth2Auth(client_id="id", client_secret="secret"),
                ),
            )
        },
        requested_tool_confirmations={"call-2": ToolConfirmation(hint="ok?", confirmed=False)},
        compaction=EventCompaction(
            start_timestamp=1.0, end_timestamp=2.0, compacted_content=say("summary")
        ),
        escalate=True,
    )  # fmt: skip
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert safe_unpickle(pickle.dumps(actions, protocol)) == actions, protocol

    marker = tmp_path / "pwned"
    for payload in (
        pickle.dumps(Exploit(marker)),
        pickle.dumps(EventActions(state_delta={"x": Exploit(marker)})),
        pickle.dumps(subprocess.Popen),
        b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR.",
    ):
        with pytest.raises(UnsafePickleError, match="refused to unpickle"):
            safe_unpickle(payload)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)


async def test_import_legacy_pickled_schema(tmp_path: Path) -> None:
    from google.adk.sessions.schemas.v0 import Base as LegacyBase

    db = tmp_path / "legacy.db"
    source = f"sqlite+aiosqlite:///{db}"
    engine = sa.create_engine(f"sqlite:///{db}", poolclass=sa.NullPool)
    LegacyBase.metadata.create_all(engine)  # ADK then keeps using the legacy schema
    adk = adk_service(source)
    try:
        originals = await adk_conversations(adk)
    finally:
        await adk.close()
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
        assert "actions" in columns and "event_data" not in columns
        kinds = conn.execute(sa.text("SELECT DISTINCT typeof(actions) FROM events")).all()
        assert kinds == [("blob",)]
        marker = tmp_path / "pwned"
        conn.execute(
            sa.text(
                "INSERT INTO events (id, app_name, user_id, session_id, invocation_id, author,"
                " actions, timestamp) VALUES ('evil', :app, 'ada', :sid, 'inv-x', 'user', :blob,"
                " '2030-01-01 00:00:00.000000')"
            ),
            {"app": APP, "sid": originals[0].id, "blob": pickle.dumps(Exploit(marker))},
        )
    engine.dispose()

    target = f"sqlite:///{tmp_path / 'target.db'}"
    with pytest.raises(UnsafePickleError, match=r"event 'evil'.*refused to unpickle posix\.system"):
        await aimport_adk(source, target)
    assert not marker.exists()
    async with AsyncSessionStore(target) as store:
        assert await store.count_sessions() == 0  # stopped before writing anything

    counts = await aimport_adk(source, target, skip_unreadable=True)
    assert not marker.exists()
    assert counts["unreadable_events"] == 1
    assert counts["events"] == 18 and counts["sessions"] == 4
    service = SessiondbSessionService(target)
    try:
        await check_imported(service, originals)  # every event but the refused one
    finally:
        await service.close()


async def test_import_adk_command(tmp_path: Path) -> None:
    """`sessiondb import-adk` end to end, as an operator runs it."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'adk.db'}"
    adk = adk_service(source)
    try:
        originals = await adk_conversations(adk)
    finally:
        await adk.close()
    target_url = f"sqlite:///{tmp_path / 'sessiondb.db'}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sessiondb", "import-adk", "--from", source, "--to",
             target_url, *args],
            capture_output=True, text=True,
        )  # fmt: skip

    first = run("--json")
    assert first.returncode == 0, first.stderr
    counts = json.loads(first.stdout)
    assert counts["sessions"] == 4 and counts["events"] == sum(len(s.events) for s in originals)
    second = run()
    assert second.returncode == 0, second.stderr
    assert "imported 0 sessions, 0 events" in second.stdout
    with SessionStore(target_url) as store:
        assert store.count_sessions() == 4
    bad = subprocess.run(
        [sys.executable, "-m", "sessiondb", "import-adk", "--from", "nonsense://x", "--to",
         target_url],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


async def test_errors_are_adks_classes(service: SessiondbSessionService) -> None:
    from google.adk.errors.input_validation_error import InputValidationError

    from sessiondb.errors import InvalidIdError, SessionExistsError

    for bad in ("x" * 129, "a\x00b"):
        with pytest.raises(InputValidationError) as caught:
            await service.create_session(app_name=APP, user_id="ada", session_id=bad)
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value.__cause__, InvalidIdError)
        with pytest.raises(InputValidationError):
            await service.get_session(app_name=APP, user_id="ada", session_id=bad)
    with pytest.raises(InputValidationError):
        await service.list_sessions(app_name="")
    await service.create_session(app_name=APP, user_id="ada", session_id="taken")
    with pytest.raises(AlreadyExistsError) as exists:
        await service.create_session(app_name=APP, user_id="ada", session_id=" taken ")
    assert isinstance(exists.value.__cause__, SessionExistsError)


async def test_adk_and_sessiondb_tables_in_one_database(backend: str, make_db_url: Any) -> None:
    """Both name tables ``sessions`` and ``events``: unprefixed sessiondb on ADK's tables is a
    SchemaError naming the fix; with a table_prefix both work side by side, and import-adk
    reads ADK's tables from that same database."""
    from sessiondb.errors import SchemaError

    plain_url = make_db_url()
    adk_url = adk_form(backend, plain_url)
    adk = adk_service(adk_url)
    mine = SessiondbSessionService(plain_url, table_prefix="sdb_")
    try:
        originals = await adk_conversations(adk)
        with pytest.raises(SchemaError, match=r"table_prefix='sdb_'") as caught:
            async with AsyncSessionStore(plain_url) as unprefixed:
                await unprefixed.list_sessions("any")
        assert "sessions" in str(caught.value) and "ADK" in str(caught.value)

        # side by side: ADK keeps its tables, sessiondb has its own; each sees only its own
        ours = await mine.create_session(app_name=APP, user_id="ada", session_id="ours")
        await mine.append_event(ours, Event(author="user", invocation_id="i"))
        theirs = await adk.create_session(app_name=APP, user_id="ada", session_id="theirs")
        await adk.append_event(theirs, Event(author="user", invocation_id="j"))
        assert await adk.get_session(app_name=APP, user_id="ada", session_id="ours") is None
        assert await mine.get_session(app_name=APP, user_id="ada", session_id="theirs") is None

        # import-adk from the same database, into the prefixed tables
        counts = await aimport_adk(adk_url, mine.store)
        assert counts["sessions"] == len(originals) + 1
        for orig in originals:
            got = await mine.get_session(
                app_name=orig.app_name, user_id=orig.user_id, session_id=orig.id
            )
            assert got is not None and got.events == orig.events
    finally:
        await mine.close()
        await adk.close()


async def test_adk_on_sessiondbs_unprefixed_tables_fails_prefixed_works(
    backend: str, make_db_url: Any
) -> None:
    """ADK's own service cannot share sessiondb's unprefixed table names (its error, not
    ours); it works beside sessiondb tables that have a prefix."""
    plain_url = make_db_url()
    adk_url = adk_form(backend, plain_url)
    async with AsyncSessionStore(plain_url, table_prefix="sdb_") as prefixed:
        await prefixed.create_session(APP, "ada", session_id="ours")
    adk = adk_service(adk_url)
    try:
        made = await adk.create_session(app_name=APP, user_id="ada", session_id="ours")
        await adk.append_event(made, Event(author="user", invocation_id="i"))
    finally:
        await adk.close()

    plain_other = make_db_url()
    other_url = adk_form(backend, plain_other)
    async with AsyncSessionStore(plain_other) as unprefixed:
        await unprefixed.create_session(APP, "ada")
    adk = adk_service(other_url)
    try:
        with pytest.raises(sa.exc.DBAPIError):  # sessiondb's 'sessions' is not ADK's
            await adk.create_session(app_name=APP, user_id="ada")
    finally:
        await adk.close()
