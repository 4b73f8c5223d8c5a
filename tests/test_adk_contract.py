"""ADK's session-service contract, written from ADK's documentation, run on every implementation.

The behaviour comes from ``BaseSessionService``'s docstrings (``GetSessionConfig``,
``list_sessions`` ordering, ``get_user_state``, ``append_event``'s ``StaleSessionError``), the
``Session`` model (``last_update_time``) and ADK's docs on sessions and state (``app:``,
``user:`` and ``temp:`` keys, partial events). Each test runs against:

- ADK's own ``InMemorySessionService`` and ``DatabaseSessionService`` (SQLite through
  aiosqlite, PostgreSQL through asyncpg, MySQL/MariaDB through aiomysql): the baseline;
- sessiondb's ``SessiondbSessionService`` on SQLite, PostgreSQL and MySQL/MariaDB.

Where ADK's own service fails a documented behaviour, that one implementation carries a strict
``xfail`` with the reason: it must keep failing, and every other implementation must pass. The
one exception is a race ADK's SQLite service usually loses but may win (non-strict ``xfail``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="google-adk is not installed (sessiondb[adk])")

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import DatabaseSessionService, InMemorySessionService, Session
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.genai import types

from sessiondb._urls import resolve_url
from sessiondb.adk import SessiondbSessionService

APP = "contract"

BACKENDS = [
    b.strip()
    for b in os.environ.get("SESSIONDB_TEST_BACKENDS", "sqlite,postgresql,mysql").split(",")
    if b.strip()
]
SERVER_URL_PG = os.environ.get("SESSIONDB_TEST_POSTGRESQL_URL", "")
IMPLS = [pytest.param("adk-memory", id="adk-memory")] + [
    pytest.param(f"{kind}-{b}", id=f"{kind}-{b}", marks=getattr(pytest.mark, b))
    for kind in ("adk", "sessiondb")
    for b in BACKENDS
]

# why ADK's own services fail a documented behaviour (keys: implementation name prefixes)
IN_MEMORY_NO_STALE = (
    "ADK's InMemorySessionService never raises StaleSessionError: an append through an "
    "out-of-date Session object is accepted"
)
SQLITE_NO_ROW_LOCK = (
    "ADK's DatabaseSessionService locks rows only on PostgreSQL and MySQL: on SQLite two "
    "service instances racing both check the same revision and both append"
)
DB_NO_STRIP = (
    "ADK's DatabaseSessionService keeps surrounding whitespace in session ids (its in-memory "
    "service, like sessiondb, strips it)"
)


@dataclass
class Impl:
    """One implementation under test: ``service``, and ``other()`` for a second writer on the
    same storage (another worker; the same object for the in-memory service)."""

    name: str
    make: Callable[[], BaseSessionService]
    service: BaseSessionService = field(init=False)
    opened: list[BaseSessionService] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.service = self.other()

    def other(self) -> BaseSessionService:
        made = self.make()
        self.opened.append(made)
        return made

    def fails(
        self, request: pytest.FixtureRequest, reasons: dict[str, str], *, strict: bool = True
    ) -> None:
        """Mark this test xfail for the implementations ADK itself fails: strict, unless the
        failure depends on how a race happens to go (then it may pass now and then)."""
        for prefix, reason in reasons.items():
            if self.name.startswith(prefix):
                request.node.add_marker(pytest.mark.xfail(strict=strict, reason=reason))


def _adk_url(backend: str, url: str) -> str:
    if backend == "sqlite":
        return url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    driver = "postgresql+asyncpg" if backend == "postgresql" else "mysql+aiomysql"
    return resolve_url(url).sync_url.set(drivername=driver).render_as_string(hide_password=False)


@pytest.fixture(params=IMPLS)
async def impl(request: pytest.FixtureRequest, make_db_url: Any) -> AsyncIterator[Impl]:
    name: str = request.param
    if name == "adk-memory":
        memory = InMemorySessionService()
        made = Impl(name, lambda: memory)
    elif name.startswith("adk-"):
        backend = name.removeprefix("adk-")
        if backend == "postgresql" and "pooler=transaction" in SERVER_URL_PG:
            pytest.skip("ADK's DatabaseSessionService (asyncpg) does not run through a "
                        "transaction-mode pooler")  # fmt: skip
        url = _adk_url(backend, make_db_url(backend))
        made = Impl(name, lambda: DatabaseSessionService(url))
    else:
        backend = name.removeprefix("sessiondb-")
        url = make_db_url(backend)
        made = Impl(name, lambda: SessiondbSessionService(url))
    yield made
    for svc in {id(s): s for s in made.opened}.values():
        close = getattr(svc, "close", None)
        if close is not None:
            await close()


def event(
    author: str = "user",
    text: str | None = "hi",
    *,
    delta: dict[str, Any] | None = None,
    timestamp: float | None = None,
    partial: bool | None = None,
    invocation: str = "inv",
) -> Event:
    extra: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
    content = None
    if text is not None:
        role = "user" if author == "user" else "model"
        content = types.Content(role=role, parts=[types.Part(text=text)])
    return Event(
        author=author, invocation_id=invocation, content=content, partial=partial,
        actions=EventActions(state_delta=delta or {}), **extra,
    )  # fmt: skip


async def get(svc: BaseSessionService, sid: str, user: str = "ada", **kw: Any) -> Session | None:
    return await svc.get_session(app_name=APP, user_id=user, session_id=sid, **kw)


# -- create, get, list, delete ---------------------------------------------------------------


async def test_create_and_get(impl: Impl) -> None:
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada", state={"topic": "tea"})
    assert isinstance(made.id, str) and made.id
    assert (made.app_name, made.user_id, made.state, made.events) == (
        APP, "ada", {"topic": "tea"}, [],
    )  # fmt: skip
    got = await get(svc, made.id)
    assert got is not None
    assert (got.id, got.app_name, got.user_id, got.state, got.events) == (
        made.id, APP, "ada", {"topic": "tea"}, [],
    )  # fmt: skip
    chosen = await svc.create_session(app_name=APP, user_id="ada", session_id="chosen")
    assert chosen.id == "chosen"
    assert await get(svc, "missing") is None
    assert await get(svc, made.id, user="bob") is None  # another user's session is not found
    assert await svc.get_session(app_name="other", user_id="ada", session_id=made.id) is None


async def test_session_ids_are_per_app_and_user(impl: Impl) -> None:
    svc = impl.service
    await svc.create_session(app_name=APP, user_id="u1", session_id="s1", state={"who": 1})
    await svc.create_session(app_name=APP, user_id="u2", session_id="s1", state={"who": 2})
    await svc.create_session(app_name="other", user_id="u1", session_id="s1", state={"who": 3})
    with pytest.raises(AlreadyExistsError):
        await svc.create_session(app_name=APP, user_id="u1", session_id="s1")
    one, two = await get(svc, "s1", "u1"), await get(svc, "s1", "u2")
    assert one is not None and two is not None
    assert (one.state, two.state) == ({"who": 1}, {"who": 2})
    await svc.append_event(two, event(text="only u2"))
    one = await get(svc, "s1", "u1")
    assert one is not None and one.events == []
    await svc.delete_session(app_name=APP, user_id="u2", session_id="s1")
    assert await get(svc, "s1", "u2") is None
    assert await get(svc, "s1", "u1") is not None


async def test_list_sessions_with_and_without_user(impl: Impl) -> None:
    svc = impl.service
    first = await svc.create_session(app_name=APP, user_id="ada", state={"n": 1})
    second = await svc.create_session(app_name=APP, user_id="ada", state={"user:lang": "en"})
    bobs = await svc.create_session(app_name=APP, user_id="bob")
    await svc.create_session(app_name="other", user_id="ada")
    await svc.append_event(first, event(text="later"))  # first is now the most recent

    listed = (await svc.list_sessions(app_name=APP, user_id="ada")).sessions
    # oldest update first, so the last session is the most recently active one
    assert [s.id for s in listed] == [second.id, first.id]
    assert all(s.events == [] for s in listed)
    assert [s.state for s in listed] == [{"user:lang": "en"}, {"n": 1, "user:lang": "en"}]

    everyone = (await svc.list_sessions(app_name=APP)).sessions
    assert [s.id for s in everyone] == [second.id, bobs.id, first.id]
    assert {s.id: s.user_id for s in everyone}[bobs.id] == "bob"
    assert (await svc.list_sessions(app_name=APP, user_id="nobody")).sessions == []
    assert (await svc.list_sessions(app_name="no-such-app")).sessions == []


async def test_delete_session(impl: Impl) -> None:
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada")
    await svc.append_event(made, event())
    kept = await svc.create_session(app_name=APP, user_id="ada")
    await svc.delete_session(app_name=APP, user_id="bob", session_id=made.id)  # not bob's
    assert await get(svc, made.id) is not None
    await svc.delete_session(app_name=APP, user_id="ada", session_id=made.id)
    assert await get(svc, made.id) is None
    await svc.delete_session(app_name=APP, user_id="ada", session_id=made.id)  # no error
    listed = (await svc.list_sessions(app_name=APP, user_id="ada")).sessions
    assert [s.id for s in listed] == [kept.id]
    with pytest.raises(SessionNotFoundError):
        await svc.append_event(made, event())


# -- state -----------------------------------------------------------------------------------


async def test_app_user_temp_state(impl: Impl) -> None:
    svc = impl.service
    state = {"app:motd": "hi", "user:lang": "en", "temp:scratch": 1, "topic": "tea"}
    ada = await svc.create_session(app_name=APP, user_id="ada", state=state)
    assert ada.state == {"app:motd": "hi", "user:lang": "en", "topic": "tea"}

    delta = {"app:count": 1, "user:name": "Ada", "temp:step": "x", "mood": "ok"}
    appended = await svc.append_event(ada, event(delta=delta))
    # temp: keys reach the in-memory session of this invocation, never the stored event
    assert ada.state["temp:step"] == "x"
    assert "temp:step" not in appended.actions.state_delta

    again = await svc.create_session(app_name=APP, user_id="ada")
    assert again.state == {"app:motd": "hi", "app:count": 1, "user:lang": "en", "user:name": "Ada"}
    bob = await svc.create_session(app_name=APP, user_id="bob")
    assert bob.state == {"app:motd": "hi", "app:count": 1}

    stored = await get(svc, ada.id)
    assert stored is not None
    assert stored.state == {
        "app:motd": "hi", "app:count": 1, "user:lang": "en", "user:name": "Ada",
        "topic": "tea", "mood": "ok",
    }  # fmt: skip
    assert stored.events[0].actions.state_delta == {
        "app:count": 1, "user:name": "Ada", "mood": "ok",
    }  # fmt: skip
    assert await svc.get_user_state(app_name=APP, user_id="ada") == {"lang": "en", "name": "Ada"}
    assert await svc.get_user_state(app_name=APP, user_id="bob") == {}
    assert await svc.get_user_state(app_name="other", user_id="ada") == {}


async def test_partial_events_are_not_persisted(impl: Impl) -> None:
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada")
    chunk = event("agent", "Hel", partial=True, delta={"k": 1})
    assert await svc.append_event(made, chunk) is chunk
    assert made.events == [] and made.state == {}
    final = await svc.append_event(made, event("agent", "Hello"))
    stored = await get(svc, made.id)
    assert stored is not None
    assert stored.events == [final] and stored.state == {}


# -- events ----------------------------------------------------------------------------------


async def test_events_compare_equal_after_a_round_trip(impl: Impl) -> None:
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada")
    call = types.FunctionCall(id="c1", name="lookup", args={"q": "tea", "n": [1, 2.5, None]})
    reply = types.FunctionResponse(id="c1", name="lookup", response={"found": True})
    blob = types.Blob(mime_type="image/png", data=b"\x89PNG\x00\xff")
    sent = [
        event(text="hé ☕ \u2028 \"quoted\""),
        Event(
            author="agent", invocation_id="inv-2",
            content=types.Content(role="model", parts=[types.Part(function_call=call)]),
            custom_metadata={"trace": {"depth": 2}},
        ),
        Event(
            author="agent", invocation_id="inv-2", branch="root.agent",
            content=types.Content(role="user", parts=[
                types.Part(function_response=reply), types.Part(inline_data=blob),
            ]),
            actions=EventActions(state_delta={"found": True}, transfer_to_agent="other"),
        ),
    ]  # fmt: skip
    for e in sent:
        await svc.append_event(made, e)
    stored = await get(svc, made.id)
    assert stored is not None
    assert stored.events == sent
    assert made.events == sent


async def test_get_session_config(impl: Impl) -> None:
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada", state={"k": "v"})
    sent = [event(text=f"m{n}", timestamp=1000.0 + n) for n in range(5)]
    for e in sent:
        await svc.append_event(made, e)

    async def read(**config: Any) -> list[Event]:
        got = await get(svc, made.id, config=GetSessionConfig(**config))
        assert got is not None
        assert got.state == {"k": "v"}  # the config never limits the state
        return got.events

    assert await read() == sent
    assert await read(num_recent_events=0) == []
    assert await read(num_recent_events=2) == sent[-2:]
    assert await read(num_recent_events=50) == sent
    assert await read(after_timestamp=1002.0) == sent[2:]  # timestamp >= after_timestamp
    assert await read(after_timestamp=1002.5) == sent[3:]
    assert await read(after_timestamp=9999.0) == []
    assert await read(after_timestamp=1001.0, num_recent_events=2) == sent[-2:]
    assert await read(after_timestamp=1003.0, num_recent_events=4) == sent[3:]
    with pytest.raises(ValueError):
        GetSessionConfig(num_recent_events=-1)


# -- last_update_time ------------------------------------------------------------------------


async def test_last_update_time(impl: Impl) -> None:
    svc = impl.service
    before = time.time()
    made = await svc.create_session(app_name=APP, user_id="ada")
    after = time.time()
    # on create: when the session was made
    assert before - 1e-3 <= made.last_update_time <= after + 1e-3
    created = made.last_update_time
    got = await get(svc, made.id)
    assert got is not None and got.last_update_time == pytest.approx(created, abs=2e-6)

    first = event(text="one")
    await svc.append_event(made, first)
    # after an append: that event's timestamp
    assert made.last_update_time == pytest.approx(first.timestamp, abs=2e-6)
    second = event(text="two", timestamp=first.timestamp + 5.25)
    await svc.append_event(made, second)
    assert made.last_update_time == pytest.approx(second.timestamp, abs=2e-6)

    configs = [
        None,
        GetSessionConfig(num_recent_events=0),
        GetSessionConfig(num_recent_events=1),
        GetSessionConfig(after_timestamp=second.timestamp + 100),
    ]
    for config in configs:
        got = await get(svc, made.id, config=config)
        assert got is not None
        assert got.last_update_time == pytest.approx(second.timestamp, abs=2e-6), config
    listed = (await svc.list_sessions(app_name=APP, user_id="ada")).sessions
    assert [s.last_update_time for s in listed] == [pytest.approx(second.timestamp, abs=2e-6)]
    listed = (await svc.list_sessions(app_name=APP)).sessions
    assert [s.last_update_time for s in listed] == [pytest.approx(second.timestamp, abs=2e-6)]


# -- stale sessions --------------------------------------------------------------------------


async def test_append_with_a_stale_session_raises(
    impl: Impl, request: pytest.FixtureRequest
) -> None:
    impl.fails(request, {"adk-memory": IN_MEMORY_NO_STALE})
    svc, other = impl.service, impl.other()
    made = await svc.create_session(app_name=APP, user_id="ada", state={"n": 0})
    mine = await get(svc, made.id)
    theirs = await get(other, made.id)
    assert mine is not None and theirs is not None
    await other.append_event(theirs, event(delta={"n": 1}, invocation="theirs-1"))
    await other.append_event(theirs, event(delta={"n": 2}, invocation="theirs-2"))
    events_before, state_before = list(mine.events), dict(mine.state)
    with pytest.raises(StaleSessionError):
        await svc.append_event(mine, event(delta={"n": 3}, invocation="mine"))
    assert (mine.events, mine.state) == (events_before, state_before)
    stored = await get(svc, made.id)
    assert stored is not None
    assert [e.invocation_id for e in stored.events] == ["theirs-1", "theirs-2"]
    assert stored.state == {"n": 2}


async def test_no_false_stale_after_reading_another_writers_append(impl: Impl) -> None:
    svc, other = impl.service, impl.other()
    made = await svc.create_session(app_name=APP, user_id="ada")
    theirs = await get(other, made.id)
    assert theirs is not None
    await other.append_event(theirs, event(invocation="theirs"))
    mine = await get(svc, made.id)  # read after the other writer's append
    assert mine is not None
    for n in range(3):  # and a writer keeps appending through the object it holds
        await svc.append_event(mine, event(invocation=f"mine-{n}", timestamp=time.time()))
    for config in (GetSessionConfig(num_recent_events=0), GetSessionConfig(num_recent_events=1)):
        light = await get(svc, made.id, config=config)
        assert light is not None
        await svc.append_event(light, event(invocation="light"))
    listed = (await svc.list_sessions(app_name=APP, user_id="ada")).sessions
    await svc.append_event(listed[0], event(invocation="listed"))
    stored = await get(other, made.id)
    assert stored is not None
    assert [e.invocation_id for e in stored.events] == [
        "theirs", "mine-0", "mine-1", "mine-2", "light", "light", "listed",
    ]  # fmt: skip


async def test_racing_writers_one_wins(impl: Impl, request: pytest.FixtureRequest) -> None:
    impl.fails(request, {"adk-memory": IN_MEMORY_NO_STALE})
    # without a row lock both racers usually append, but one may finish before the other reads
    impl.fails(request, {"adk-sqlite": SQLITE_NO_ROW_LOCK}, strict=False)
    svc, other = impl.service, impl.other()
    made = await svc.create_session(app_name=APP, user_id="ada")
    copies = [await get(s, made.id) for s in (svc, svc, other, other)]
    results = await asyncio.gather(
        *(s.append_event(c, event(invocation=f"w{n}"))  # type: ignore[arg-type]
          for n, (s, c) in enumerate(zip((svc, svc, other, other), copies, strict=True))),
        return_exceptions=True,
    )  # fmt: skip
    assert sum(isinstance(r, Event) for r in results) == 1, results
    assert all(isinstance(r, (Event, StaleSessionError)) for r in results), results
    stored = await get(svc, made.id)
    assert stored is not None and len(stored.events) == 1


async def test_a_different_event_reusing_a_stored_id_is_not_lost_silently(impl: Impl) -> None:
    """Two different events with one id (a test that fixes uuid4, say): ADK's in-memory
    service stores both, its database service refuses the second loudly; none may report the
    second appended while storage lacks it."""
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada")
    first = Event(id="same-id", author="user", invocation_id="inv-a",
                  actions=EventActions(state_delta={"step": "a"}))  # fmt: skip
    second = Event(id="same-id", author="agent", invocation_id="inv-b",
                   actions=EventActions(state_delta={"step": "b"}))  # fmt: skip
    await svc.append_event(made, first)
    try:
        await svc.append_event(made, second)
    except Exception:  # refused (ADK's database service: IntegrityError)
        stored = await get(svc, made.id)
        assert stored is not None
        assert [e.invocation_id for e in stored.events] == ["inv-a"]
        assert stored.state == {"step": "a"}
        assert [e.invocation_id for e in made.events] == ["inv-a"]
    else:  # accepted: then it is stored, and its state delta applied
        stored = await get(svc, made.id)
        assert stored is not None
        assert [e.invocation_id for e in stored.events] == ["inv-a", "inv-b"]
        assert stored.state == {"step": "b"}


@pytest.mark.sqlite
@pytest.mark.parametrize("kind", ["adk", "sessiondb"])
async def test_an_in_memory_sqlite_url_is_a_private_database(kind: str) -> None:
    """ADK's tests and examples give ``sqlite+aiosqlite:///:memory:``: a database of this one
    service (another service on the same URL sees none of it), gone once it is closed."""
    make: Callable[[str], BaseSessionService] = (
        DatabaseSessionService if kind == "adk" else SessiondbSessionService
    )
    one, two = make("sqlite+aiosqlite:///:memory:"), make("sqlite+aiosqlite:///:memory:")
    try:
        made = await one.create_session(app_name=APP, user_id="ada", state={"app:lang": "en"})
        await one.append_event(made, event(delta={"n": 1}))
        created = [
            await one.create_session(app_name=APP, user_id="ada", session_id=f"s{n}")
            for n in range(3)
        ]
        got = await get(one, made.id)
        assert got is not None and got.state == {"app:lang": "en", "n": 1}
        assert len(got.events) == 1
        listed = (await one.list_sessions(app_name=APP, user_id="ada")).sessions
        assert {s.id for s in listed} == {made.id} | {s.id for s in created}
        assert await get(two, made.id) is None
        assert (await two.list_sessions(app_name=APP, user_id="ada")).sessions == []
        fresh = await two.create_session(app_name=APP, user_id="ada")
        assert fresh.state == {}  # the app: state of the other database is not here
    finally:
        for svc in (one, two):
            await svc.close()  # type: ignore[attr-defined]


# -- ids -------------------------------------------------------------------------------------


async def test_session_ids_with_surrounding_whitespace(
    impl: Impl, request: pytest.FixtureRequest
) -> None:
    impl.fails(request, {"adk-sqlite": DB_NO_STRIP, "adk-postgresql": DB_NO_STRIP,
                         "adk-mysql": DB_NO_STRIP})  # fmt: skip
    svc = impl.service
    made = await svc.create_session(app_name=APP, user_id="ada", session_id="  order-42\n")
    assert made.id == "order-42"
    for spelling in ("order-42", "order-42\n", " order-42 "):
        got = await get(svc, spelling)
        assert got is not None and got.id == "order-42", repr(spelling)
    with pytest.raises(AlreadyExistsError):
        await svc.create_session(app_name=APP, user_id="ada", session_id="order-42 ")
    await svc.delete_session(app_name=APP, user_id="ada", session_id="\torder-42")
    assert await get(svc, "order-42") is None
