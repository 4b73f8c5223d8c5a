"""Session ids are per (app, user), as in Google ADK: two owners may each have the same id.

Every call that takes a session id also takes ``app_name``/``user_id``; without them the owner
is looked up by id, and an id several owners have raises ``AmbiguousSessionError``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sessiondb import (
    AmbiguousSessionError,
    InvalidArgumentError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
)

ALICE = {"app_name": "app", "user_id": "alice"}
BOB = {"app_name": "app", "user_id": "bob"}


async def shared(store: Any) -> None:
    """Alice and Bob each have a session "s1" with two events and labels."""
    await store.create_session("app", "alice", {"who": "alice"}, session_id="s1", labels=["a"])
    await store.create_session("app", "bob", {"who": "bob"}, session_id="s1", labels=["b"])
    for owner in (ALICE, BOB):
        for n in (1, 2):
            await store.append_event("s1", "user", f"{owner['user_id']} {n}", **owner)


def contents(events: list[Any]) -> list[Any]:
    return [e.content for e in events]


async def test_two_users_one_id(store: Any) -> None:
    await shared(store)
    with pytest.raises(SessionExistsError):
        await store.create_session("app", "alice", session_id="s1")
    alice = await store.get_session("app", "alice", "s1", recent_events=5)
    bob = await store.get_session("app", "bob", "s1", recent_events=5)
    assert alice is not None and bob is not None
    assert (alice.state, bob.state) == ({"who": "alice"}, {"who": "bob"})
    assert contents(alice.events) == ["alice 1", "alice 2"]
    assert contents(bob.events) == ["bob 1", "bob 2"]
    assert (alice.labels, bob.labels) == (["a"], ["b"])
    assert contents(await store.list_events("s1", **BOB)) == ["bob 1", "bob 2"]
    got = await store.get_session_by_id("s1", recent_events=1, **ALICE)
    assert got is not None and got.user_id == "alice" and contents(got.events) == ["alice 2"]
    # another app's user with the same id is yet another session
    await store.create_session("other", "alice", session_id="s1")
    assert await store.count_sessions("app") == 2 and await store.count_sessions() == 3


async def test_writes_with_the_owner(store: Any) -> None:
    await shared(store)
    assert await store.update_session_state("s1", {"n": 1}, **ALICE) == 4
    assert await store.patch_state("s1", {"m": 2}, increment={"n": 1}, **ALICE) == 5
    assert await store.transform_state("s1", lambda s: {**s, "t": True}, **ALICE) == 6
    assert await store.append_events("s1", [{"author": "u", "event_id": "e"}], **ALICE)
    assert await store.set_metadata("s1", title="Alice's", **ALICE) == 8
    alice = await store.get_session("app", "alice", "s1")
    bob = await store.get_session("app", "bob", "s1")
    assert alice is not None and bob is not None
    assert (alice.state, alice.title, alice.version) == ({"n": 2, "m": 2, "t": True}, "Alice's", 8)
    assert (bob.state, bob.title, bob.version) == ({"who": "bob"}, None, 3)
    # the same event id in Bob's session is Bob's own event
    (mine,) = await store.append_events("s1", [{"author": "u", "event_id": "e"}], **BOB)
    assert mine.seq == 3
    assert await store.update_session_state("s1", {"x": 1}, expected_version=4, **BOB) == 5


async def test_an_id_alone_that_two_users_have_is_ambiguous(store: Any) -> None:
    await shared(store)
    calls = {
        "update_session_state": lambda: store.update_session_state("s1", {"x": 1}),
        "patch_state": lambda: store.patch_state("s1", {"x": 1}),
        "transform_state": lambda: store.transform_state("s1", lambda s: s),
        "append_event": lambda: store.append_event("s1", "user", "x"),
        "append_events": lambda: store.append_events("s1", [{"author": "user"}]),
        "pop_events": lambda: store.pop_events("s1"),
        "list_events": lambda: store.list_events("s1"),
        "get_session_by_id": lambda: store.get_session_by_id("s1"),
        "set_metadata": lambda: store.set_metadata("s1", title="t"),
        "delete_session": lambda: store.delete_session("s1"),
    }
    for name, call in calls.items():
        with pytest.raises(AmbiguousSessionError) as info:
            await call()
        message = str(info.value)
        assert "'s1'" in message and "app_name" in message and "user_id" in message, name
        assert isinstance(info.value, InvalidArgumentError)
    # nothing was written
    for owner in ("alice", "bob"):
        got = await store.get_session("app", owner, "s1", recent_events=5)
        assert got is not None and got.version == 3 and got.state == {"who": owner}
        assert contents(got.events) == [f"{owner} 1", f"{owner} 2"]
    # once only one owner has it, the id alone finds it again
    assert await store.delete_session("s1", **ALICE) is True
    assert await store.update_session_state("s1", {"x": 1}) == 4
    got = await store.get_session_by_id("s1")
    assert got is not None and got.user_id == "bob"


async def test_owner_is_both_or_neither(store: Any) -> None:
    await store.create_session("app", "alice", session_id="s1")
    for owner in ({"app_name": "app"}, {"user_id": "alice"}):
        with pytest.raises(InvalidArgumentError):
            await store.update_session_state("s1", {}, **owner)
        with pytest.raises(InvalidArgumentError):
            await store.delete_session("s1", **owner)
    with pytest.raises(SessionNotFoundError):
        await store.patch_state("s1", {"x": 1}, **BOB)
    assert await store.list_events("s1", **BOB) == []
    assert await store.get_session_by_id("s1", **BOB) is None
    assert await store.delete_session("s1", **BOB) is False


async def test_delete_with_the_owner_keeps_the_other(store: Any) -> None:
    await shared(store)
    assert await store.delete_session("s1", **BOB) is True
    assert await store.get_session("app", "bob", "s1") is None
    assert await store.list_events("s1", **BOB) == []
    alice = await store.get_session("app", "alice", "s1", recent_events=5)
    assert alice is not None and contents(alice.events) == ["alice 1", "alice 2"]
    assert alice.labels == ["a"] and await store.count_sessions("app", label="a") == 1
    assert await store.count_sessions("app", label="b") == 0


async def test_labels_and_listings_per_owner(store: Any) -> None:
    await shared(store)
    await store.set_metadata("s1", labels=["x", "b"], **ALICE)
    assert await store.count_sessions("app", label="b") == 2
    assert await store.count_sessions("app", "alice", label="b") == 1
    assert await store.count_sessions("app", label="a") == 0
    listed = await store.list_sessions("app", label="x")
    assert [(s.user_id, s.id) for s in listed] == [("alice", "s1")]
    assert {(s.user_id, s.id) for s in await store.list_sessions("app")} == {
        ("alice", "s1"), ("bob", "s1"),
    }  # fmt: skip
    page = await store.list_sessions("app", limit=1, order="created")
    rest = await store.list_sessions("app", limit=5, order="created", cursor=page.next_cursor)
    assert {s.user_id for s in [*page, *rest]} == {"alice", "bob"}
    (bobs,) = await store.list_sessions("app", "bob")
    assert (bobs.id, bobs.state, bobs.labels) == ("s1", {"who": "bob"}, ["b"])


async def test_delete_user_data_and_clear_keep_the_other(store: Any) -> None:
    await shared(store)
    assert await store.delete_user_data("app", "alice") == 1
    bob = await store.get_session("app", "bob", "s1", recent_events=5)
    assert bob is not None and contents(bob.events) == ["bob 1", "bob 2"]
    await store.create_session("app", "alice", session_id="s1")
    assert await store.clear_sessions("app", "bob") == 1
    assert await store.list_events("s1") == []  # alice's, found by id alone
    assert [s.user_id for s in await store.list_sessions("app")] == ["alice"]


async def test_purge_expired_takes_only_the_expired_one(store: Any) -> None:
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    await store.create_session("app", "alice", {"keep": True}, session_id="s1")
    record = {
        "type": "session", "id": "s1", "app_name": "app", "user_id": "bob", "state": {},
        "created_at": past, "updated_at": past, "version": 1, "expires_at": past,
        "events": [{"seq": 1, "author": "user", "content": "gone", "created_at": past}],
    }  # fmt: skip
    await store.import_records([record])
    # the expired one is invisible, so the id alone is Alice's
    assert await store.update_session_state("s1", {"keep": 1}) == 2
    assert await store.purge_expired(dry_run=True) == 1
    assert await store.purge_expired(batch_size=1) == 1
    assert await store.list_events("s1", **BOB) == []
    got = await store.get_session("app", "alice", "s1")
    assert got is not None and got.state == {"keep": 1}
    # batched deletes go by whole key too
    await store.create_session("app", "bob", session_id="s1")
    assert await store.delete_sessions("app", "alice", batch_size=1) == 1
    assert [s.user_id for s in await store.list_sessions("app")] == ["bob"]


async def test_export_import_round_trip_with_shared_ids(store: Any, make_db_url: Any) -> None:
    await shared(store)
    await store.create_session("other", "alice", {"o": 1}, session_id="s1")
    records = [r async for r in store.export_records(batch_size=1)]
    sessions = [r for r in records if r["type"] == "session"]
    assert sorted((r["app_name"], r["user_id"], r["id"]) for r in sessions) == [
        ("app", "alice", "s1"), ("app", "bob", "s1"), ("other", "alice", "s1"),
    ]  # fmt: skip
    with SessionStore(make_db_url()) as copy:
        result = copy.import_records(records, batch_size=2)
        assert (result.sessions, result.events) == (3, 4)
        assert copy.checksum() == await store.checksum()
        assert copy.checksum("app") == await store.checksum("app")
        bob = copy.get_session("app", "bob", "s1", recent_events=5)
        assert bob is not None and contents(bob.events) == ["bob 1", "bob 2"]
        assert bob.labels == ["b"]
        again = copy.import_records(records)  # idempotent
        assert (again.sessions, again.skipped) == (0, 3)
        assert copy.checksum() == await store.checksum()
    # the checksum tells owners apart: the same data under another user differs
    with SessionStore(make_db_url()) as moved:
        moved.import_records(
            [{**r, "user_id": "carol"} if r.get("user_id") == "bob" else r for r in records]
        )
        assert moved.checksum() != await store.checksum()


@pytest.mark.parametrize("order", ["updated", "created"])
async def test_pages_of_several_users_never_skip_a_shared_id(store: Any, order: str) -> None:
    """Two users' sessions with the same id and the very same timestamps: the keyset cursor
    of a listing of several users goes by owner too, so a page boundary between them loses
    neither."""
    when = datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc).isoformat()
    records = [
        {"type": "session", "id": sid, "app_name": app, "user_id": user, "state": {},
         "created_at": when, "updated_at": when, "version": 1}
        for app in ("a1", "a2") for user in ("u1", "u2", "u3") for sid in ("s1", "s2")
    ]  # fmt: skip
    await store.import_records(records)
    everyone = {(r["app_name"], r["user_id"], r["id"]) for r in records}
    for app in ("a1", None):
        seen: list[tuple[str, str, str]] = []
        cursor = None
        while True:
            page = await store.list_sessions(
                app, limit=1, cursor=cursor, order=order, include_state=False
            )
            seen += [(s.app_name, s.user_id, s.id) for s in page]
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = {k for k in everyone if app is None or k[0] == app}
        assert sorted(seen) == sorted(expected) and len(seen) == len(expected), (app, seen)
    # one user's listing pages by id alone, as before
    page = await store.list_sessions("a1", "u2", limit=1, order=order)
    rest = await store.list_sessions("a1", "u2", limit=5, order=order, cursor=page.next_cursor)
    assert [s.id for s in [*page, *rest]] == (["s2", "s1"] if order == "updated" else ["s1", "s2"])
