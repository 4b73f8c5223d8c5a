"""The contract every backend and both front ends keep."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sessiondb import (
    AmbiguousSessionError,
    ArgumentTypeError,
    AsyncSessionStore,
    InvalidArgumentError,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
    StaleSessionError,
)

from ._tables import stored_events


async def test_create_returns_session_with_fresh_random_id(store: Any) -> None:
    a = await store.create_session("app", "u1", {"lang": "en"})
    b = await store.create_session("app", "u1")
    assert isinstance(a, Session)
    assert a.id != b.id
    assert uuid.UUID(a.id).version == 4  # 122 random bits
    assert (a.app_name, a.user_id, a.state, a.version) == ("app", "u1", {"lang": "en"}, 1)
    assert b.state == {}
    assert a.created_at == a.updated_at


async def test_created_session_is_stored(store: Any) -> None:
    created = await store.create_session("app", "u1", {"n": 1, "nested": {"x": [1, 2]}})
    got = await store.get_session("app", "u1", created.id)
    assert got == created


async def test_caller_chosen_id(store: Any) -> None:
    s = await store.create_session("app", "u1", {}, session_id="my-id")
    assert s.id == "my-id"
    assert (await store.get_session("app", "u1", "my-id")) is not None
    with pytest.raises(SessionExistsError):
        await store.create_session("app", "u1", {"other": True}, session_id="my-id")
    kept = await store.get_session("app", "u1", "my-id")
    assert kept is not None and kept.state == {}
    # ids are per app and user: another owner may choose the same one
    other = await store.create_session("app", "u2", {"other": True}, session_id="my-id")
    assert (other.user_id, other.state) == ("u2", {"other": True})
    kept = await store.get_session("app", "u1", "my-id")
    assert kept is not None and kept.state == {}


async def test_ids_compare_exactly(store: Any) -> None:
    await store.create_session("app", "u1", {"v": 1}, session_id="abc")
    await store.create_session("app", "u1", {"v": 2}, session_id="ABC")
    await store.create_session("app", "u1", {"v": 3}, session_id="abc ")
    for sid, v in (("abc", 1), ("ABC", 2), ("abc ", 3)):
        got = await store.get_session("app", "u1", sid)
        assert got is not None and got.state == {"v": v}
    assert await store.get_session("App", "u1", "abc") is None
    assert await store.get_session("app", "U1", "abc") is None


async def test_get_is_none_for_unknown_or_foreign(store: Any) -> None:
    s = await store.create_session("app", "alice", {"secret": 1})
    assert await store.get_session("app", "alice", "nope") is None
    assert await store.get_session("app", "bob", s.id) is None
    assert await store.get_session("other-app", "alice", s.id) is None


async def test_list_most_recently_updated_first(store: Any) -> None:
    a = await store.create_session("app", "u1", {"n": "a"})
    b = await store.create_session("app", "u1", {"n": "b"})
    c = await store.create_session("app", "u1", {"n": "c"})
    await store.create_session("app", "u2", {"n": "other user"})
    await store.create_session("app2", "u1", {"n": "other app"})
    assert [s.id for s in await store.list_sessions("app", "u1")] == [c.id, b.id, a.id]
    await store.update_session_state(a.id, {"n": "a2"})
    listed = await store.list_sessions("app", "u1")
    assert [s.id for s in listed] == [a.id, c.id, b.id]
    assert listed[0].state == {"n": "a2"}
    assert await store.list_sessions("app", "nobody") == []


async def test_list_every_user_of_an_app(store: Any) -> None:
    ids = {(await store.create_session("app", f"u{i}")).id for i in range(3)}
    await store.create_session("app2", "u0")
    everyone = await store.list_sessions("app", None)
    assert {s.id for s in everyone} == ids
    assert [s.updated_at for s in everyone] == sorted(
        (s.updated_at for s in everyone), reverse=True
    )


async def test_update_replaces_whole_state_and_advances(store: Any) -> None:
    s = await store.create_session("app", "u1", {"a": 1, "b": 2})
    version = await store.update_session_state(s.id, {"c": 3})
    assert version == 2
    got = await store.get_session("app", "u1", s.id)
    assert got is not None
    assert got.state == {"c": 3}
    assert got.version == 2
    assert got.updated_at > s.updated_at
    assert got.created_at == s.created_at


async def test_update_unknown_raises_lookup_error(store: Any) -> None:
    with pytest.raises(SessionNotFoundError) as info:
        await store.update_session_state("missing", {"a": 1})
    assert isinstance(info.value, LookupError)


async def test_expected_version(store: Any) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    assert await store.update_session_state(s.id, {"n": 1}, expected_version=1) == 2
    with pytest.raises(StaleSessionError) as info:
        await store.update_session_state(s.id, {"n": 99}, expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    got = await store.get_session("app", "u1", s.id)
    assert got is not None and got.state == {"n": 1} and got.version == 2
    with pytest.raises(SessionNotFoundError):
        await store.update_session_state("missing", {}, expected_version=1)


async def test_returned_sessions_are_detached(store: Any) -> None:
    state = {"count": 1, "items": [1]}
    s = await store.create_session("app", "u1", state)
    state["count"] = 100
    state["items"].append(2)
    s.state["count"] = 5
    got = await store.get_session("app", "u1", s.id)
    assert got is not None and got.state == {"count": 1, "items": [1]}
    got.state["count"] = 7
    got.state["items"].append(3)
    again = await store.get_session("app", "u1", s.id)
    assert again is not None and again.state == {"count": 1, "items": [1]}
    listed = (await store.list_sessions("app", "u1"))[0]
    listed.state.clear()
    assert (await store.get_session("app", "u1", s.id)).state == {"count": 1, "items": [1]}


async def test_delete_session(store: Any) -> None:
    s = await store.create_session("app", "u1")
    keep = await store.create_session("app", "u1")
    assert await store.delete_session(s.id) is True
    assert await store.delete_session(s.id) is False
    assert await store.get_session("app", "u1", s.id) is None
    assert await store.get_session("app", "u1", keep.id) is not None


async def test_delete_checks_owner_when_given(store: Any) -> None:
    s = await store.create_session("app", "alice")
    assert await store.delete_session(s.id, app_name="app", user_id="bob") is False
    assert await store.get_session("app", "alice", s.id) is not None
    assert await store.delete_session(s.id, app_name="app", user_id="alice") is True


async def test_clear_sessions(store: Any) -> None:
    for _ in range(3):
        await store.create_session("app", "u1")
    other = await store.create_session("app", "u2")
    other_app = await store.create_session("app2", "u1")
    assert await store.clear_sessions("app", "u1") == 3
    assert await store.list_sessions("app", "u1") == []
    assert [s.id for s in await store.list_sessions("app", "u2")] == [other.id]
    assert await store.clear_sessions("app") == 1
    assert [s.id for s in await store.list_sessions("app2", "u1")] == [other_app.id]


async def test_timestamps_are_naive_local_and_comparable_with_now(store: Any) -> None:
    before = datetime.now()
    s = await store.create_session("app", "u1")
    after = datetime.now()
    got = await store.get_session("app", "u1", s.id)
    assert got is not None
    assert got.created_at.tzinfo is None
    assert before - timedelta(seconds=1) <= got.created_at <= after + timedelta(seconds=1)
    assert got.created_at < datetime.now() - timedelta(days=-1)  # the guide's cleanup comparison
    assert got.created_at == s.created_at  # microseconds survive the database


async def test_tz_aware_option(db_url: str) -> None:
    with SessionStore(db_url, tz_aware=True) as store:
        s = store.create_session("app", "u1")
        got = store.get_session("app", "u1", s.id)
        assert got is not None and got.created_at.tzinfo is not None
        assert got.created_at.utcoffset() == timedelta(0)
        assert abs(got.created_at - datetime.now(timezone.utc)) < timedelta(seconds=5)
        assert got.created_at == s.created_at


async def test_stores_see_each_others_writes(db_url: str) -> None:
    with SessionStore(db_url) as sync_store:
        async with AsyncSessionStore(db_url) as async_store:
            s = sync_store.create_session("app", "u1", {"from": "sync"})
            got = await async_store.get_session("app", "u1", s.id)
            assert got is not None and got.state == {"from": "sync"}
            await async_store.update_session_state(s.id, {"from": "async"})
            again = sync_store.get_session("app", "u1", s.id)
            assert again is not None and again.state == {"from": "async"}


def test_session_survives_serialisation() -> None:
    import pickle

    now = datetime.now()
    s = Session("id", "app", "u", now, now, {"a": [1, {"b": None}]}, 7)
    assert pickle.loads(pickle.dumps(s)) == s
    assert Session.from_dict(s.to_dict()) == s
    assert s.to_dict()["version"] == 7


# -- pop_events: the newest events go, for real ---------------------------------------------------


async def test_pop_events_removes_the_newest_and_returns_them(store: Any, db_url: str) -> None:
    s = await store.create_session("app", "u1")
    appended = await store.append_events(
        s.id, [{"author": "a", "content": {"n": i, "pad": "x" * i}} for i in range(6)]
    )
    full = await store.get_session("app", "u1", s.id)
    assert (full.version, full.event_count) == (2, 6)
    assert stored_events(db_url, s.id) == (6, full.event_bytes)
    popped = await store.pop_events(s.id)
    assert popped == [appended[5]]  # the very event, newest first
    popped = await store.pop_events(s.id, count=3)
    assert popped == appended[4:1:-1]
    got = await store.get_session("app", "u1", s.id, recent_events=10)
    assert got.events == appended[:2]
    assert (got.version, got.event_count, got.state) == (4, 2, {})
    assert got.updated_at >= full.updated_at
    rows, size = stored_events(db_url, s.id)
    assert (rows, size) == (2, got.event_bytes)
    assert 0 < got.event_bytes < full.event_bytes
    # seqs are not reused: the next event comes after every one appended so far
    (next_event,) = await store.append_events(s.id, [{"author": "a", "content": "next"}])
    assert next_event.seq == 7
    assert [e.seq for e in await store.list_events(s.id)] == [1, 2, 7]
    # more than there are: every one; then an empty history pops nothing, version unchanged
    assert [e.seq for e in await store.pop_events(s.id, count=10)] == [7, 2, 1]
    before = await store.get_session("app", "u1", s.id)
    assert (before.event_count, before.event_bytes) == (0, 0)
    assert await store.pop_events(s.id) == []
    assert await store.pop_events(s.id, count=5, expected_version=before.version) == []
    after = await store.get_session("app", "u1", s.id)
    assert after.version == before.version
    assert stored_events(db_url, s.id) == (0, 0)


async def test_pop_events_until(store: Any) -> None:
    s = await store.create_session("app", "u1")
    authors = ["user", "model", "user", "model", "tool", "model"]
    await store.append_events(s.id, [{"author": a, "content": i} for i, a in enumerate(authors)])
    seen: list[list[int]] = []

    def last_user_turn(popped: list[Any]) -> bool:
        seen.append([e.seq for e in popped])
        return popped[-1].author == "user"

    popped = await store.pop_events(s.id, until=last_user_turn)
    assert [e.content for e in popped] == [5, 4, 3, 2]
    assert seen == [[6], [6, 5], [6, 5, 4], [6, 5, 4, 3]]
    assert [e.content for e in await store.list_events(s.id)] == [0, 1]
    # never satisfied: everything goes, and the history ends
    assert [e.seq for e in await store.pop_events(s.id, until=lambda p: False)] == [2, 1]
    got = await store.get_session("app", "u1", s.id)
    assert (got.event_count, got.event_bytes, got.version) == (0, 0, 4)
    # an error raised by until passes through, and nothing is removed
    await store.append_events(s.id, [{"author": "user", "content": 9}])

    def broken(popped: list[Any]) -> bool:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await store.pop_events(s.id, until=broken)
    assert [e.content for e in await store.list_events(s.id)] == [9]
    assert (await store.get_session("app", "u1", s.id)).version == 5


async def test_pop_events_expected_version(store: Any) -> None:
    s = await store.create_session("app", "u1")
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(3)])
    with pytest.raises(StaleSessionError) as info:
        await store.pop_events(s.id, count=2, expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert len(await store.list_events(s.id)) == 3
    (popped,) = await store.pop_events(s.id, expected_version=2)
    assert popped.content == 2
    got = await store.get_session("app", "u1", s.id)
    assert (got.version, got.event_count) == (3, 2)
    with pytest.raises(StaleSessionError):
        await store.pop_events(s.id, expected_version=2)  # the pop advanced it
    with pytest.raises(SessionNotFoundError):
        await store.pop_events("missing", expected_version=1)


async def test_pop_events_bad_input_removes_nothing(store: Any) -> None:
    s = await store.create_session("app", "u1")
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(3)])
    for bad in (0, -1, 2**63, 1.0, "1", True, None):
        with pytest.raises(InvalidArgumentError):
            await store.pop_events(s.id, count=bad)
    for bad in (0, 1.5, "2", True):
        with pytest.raises(InvalidArgumentError):
            await store.pop_events(s.id, expected_version=bad)
    with pytest.raises(ArgumentTypeError):
        await store.pop_events(s.id, until="user")
    with pytest.raises(InvalidArgumentError):
        await store.pop_events("", count=1)
    with pytest.raises(InvalidArgumentError):
        await store.pop_events(s.id, app_name="app")  # the owner is both or neither
    got = await store.get_session("app", "u1", s.id)
    assert (got.version, got.event_count) == (2, 3)
    assert len(await store.list_events(s.id)) == 3
    # a count as large as 64 bits allows is fine
    assert len(await store.pop_events(s.id, count=2**63 - 1)) == 3


async def test_pop_events_is_scoped_to_the_owner(store: Any) -> None:
    for user in ("alice", "bob"):
        await store.create_session("app", user, session_id="shared")
        await store.append_events(
            "shared", [{"author": "a", "content": f"{user} {i}"} for i in range(2)],
            app_name="app", user_id=user,
        )  # fmt: skip
    with pytest.raises(AmbiguousSessionError):
        await store.pop_events("shared")
    (popped,) = await store.pop_events("shared", app_name="app", user_id="bob")
    assert popped.content == "bob 1"
    with pytest.raises(SessionNotFoundError):
        await store.pop_events("shared", app_name="app", user_id="mallory")
    with pytest.raises(SessionNotFoundError):
        await store.pop_events("shared", app_name="other", user_id="alice")
    alice = await store.get_session("app", "alice", "shared", recent_events=5)
    assert [e.content for e in alice.events] == ["alice 0", "alice 1"]
    assert (alice.version, alice.event_count) == (2, 2)
    await store.delete_session("shared", app_name="app", user_id="bob")
    (popped,) = await store.pop_events("shared")  # one owner left: the id alone finds it
    assert popped.content == "alice 1"


async def test_pop_events_until_reaches_far_back(store: Any) -> None:
    s = await store.create_session("app", "u1")
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(1, 51)])
    lengths: list[int] = []

    def down_to_3(popped: list[Any]) -> bool:
        lengths.append(len(popped))
        return popped[-1].seq == 3

    popped = await store.pop_events(s.id, until=down_to_3)
    assert [e.seq for e in popped] == list(range(50, 2, -1))
    assert [e.content for e in popped] == list(range(50, 2, -1))
    assert lengths == list(range(1, 49))  # one more event each time, never one skipped
    got = await store.get_session("app", "u1", s.id, recent_events=10)
    assert [e.seq for e in got.events] == [1, 2]
    assert (got.event_count, got.version) == (2, 3)
    # count first, then until; and an until never satisfied takes the whole history
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(20)])
    popped = await store.pop_events(s.id, count=3, until=lambda p: p[-1].content == 10)
    assert [e.content for e in popped] == [19, 18, 17, 16, 15, 14, 13, 12, 11, 10]
    popped = await store.pop_events(s.id, count=2, until=lambda p: False)
    assert len(popped) == 12 and popped[-1].seq == 1
    got = await store.get_session("app", "u1", s.id)
    assert (got.event_count, got.event_bytes) == (0, 0)
