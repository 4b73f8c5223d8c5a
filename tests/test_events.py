"""The append-only event history."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessiondb import (
    ArgumentTypeError,
    Event,
    InvalidArgumentError,
    InvalidIdError,
    InvalidStateError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
)


async def test_append_and_list(store: Any) -> None:
    s = await store.create_session("app", "u", {"turns": 0})
    e1 = await store.append_event(s.id, "user", {"text": "hi"}, invocation_id="inv-1")
    e2 = await store.append_event(
        s.id, "assistant", "hello!", state_delta={"turns": 1}, metadata={"model": "m"}
    )
    assert isinstance(e1, Event)
    assert (e1.seq, e2.seq) == (1, 2)
    assert (e1.author, e1.content, e1.invocation_id) == ("user", {"text": "hi"}, "inv-1")
    events = await store.list_events(s.id)
    assert events == [e1, e2]
    assert events[1].state_delta == {"turns": 1} and events[1].metadata == {"model": "m"}
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"turns": 1}
    assert got.version == 3
    assert got.event_count == 2
    expected_bytes = sum(
        len(json.dumps(v, separators=(",", ":")).encode())
        for v in ({"text": "hi"}, "hello!", {"turns": 1}, {"model": "m"})
    )
    assert got.event_bytes == expected_bytes
    assert got.events is None


async def test_batch_append_is_one_transaction(store: Any) -> None:
    s = await store.create_session("app", "u")
    batch = [{"author": "user", "content": f"m{i}", "state_delta": {"last": i}} for i in range(5)]
    appended = await store.append_events(s.id, batch)
    assert [e.seq for e in appended] == [1, 2, 3, 4, 5]
    assert (await store.get_session("app", "u", s.id)).state == {"last": 4}
    bad = [{"author": "user", "content": "ok"}, {"author": "user", "content": {1, 2}}]
    with pytest.raises(StateTypeError):
        await store.append_events(s.id, bad)
    assert [e.seq for e in await store.list_events(s.id)] == [1, 2, 3, 4, 5]
    assert await store.append_events(s.id, []) == []


async def test_slices_are_exact(store: Any) -> None:
    s = await store.create_session("app", "u")
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(1, 21)])

    async def seqs(**kw: Any) -> list[int]:
        return [e.seq for e in await store.list_events(s.id, **kw)]

    assert await seqs() == list(range(1, 21))
    assert await seqs(after_seq=15) == [16, 17, 18, 19, 20]
    assert await seqs(before_seq=4) == [1, 2, 3]
    assert await seqs(after_seq=5, before_seq=9) == [6, 7, 8]
    assert await seqs(limit=3) == [1, 2, 3]
    assert await seqs(limit=3, newest_first=True) == [20, 19, 18]
    assert await seqs(before_seq=10, limit=2, newest_first=True) == [9, 8]
    assert await seqs(after_seq=20) == []
    assert await seqs(limit=0) == []
    with pytest.raises(InvalidArgumentError):
        await seqs(limit=-1)


async def test_session_with_recent_events(store: Any) -> None:
    s = await store.create_session("app", "u")
    await store.append_events(s.id, [{"author": "a", "content": i} for i in range(1, 11)])
    got = await store.get_session("app", "u", s.id, recent_events=3)
    assert [e.content for e in got.events] == [8, 9, 10]
    assert got.event_count == 10


async def test_deleting_a_session_deletes_its_events(store: Any) -> None:
    s = await store.create_session("app", "u")
    other = await store.create_session("app", "u")
    await store.append_event(s.id, "a", 1)
    await store.append_event(other.id, "a", 2)
    await store.delete_session(s.id)
    assert await store.list_events(s.id) == []
    assert [e.content for e in await store.list_events(other.id)] == [2]
    # a new session reusing the id starts a fresh history
    again = await store.create_session("app", "u", session_id=s.id)
    assert (await store.append_event(again.id, "a", 3)).seq == 1


async def test_bad_events_write_nothing(store: Any) -> None:
    s = await store.create_session("app", "u", {"k": 1})
    with pytest.raises(SessionNotFoundError):
        await store.append_event("missing", "user", "hi")
    with pytest.raises(InvalidIdError):
        await store.append_event(s.id, "", "hi")
    with pytest.raises(InvalidIdError):
        await store.append_event(s.id, "user", "hi", invocation_id="x" * 200)
    with pytest.raises(StateTypeError):
        await store.append_event(s.id, "user", b"bytes")
    with pytest.raises(StateTypeError):
        await store.append_event(s.id, "user", "hi", state_delta=["not", "a", "dict"])
    with pytest.raises(InvalidStateError):
        await store.append_event(s.id, "user", {"x": float("inf")})
    with pytest.raises(ArgumentTypeError):
        await store.append_events(s.id, [{"author": "user", "colour": "red"}])
    with pytest.raises(StaleSessionError):
        await store.append_event(s.id, "user", "hi", state_delta={"k": 2}, expected_version=7)
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"k": 1} and got.version == 1 and got.event_count == 0
    assert await store.list_events(s.id) == []


async def test_append_cost_does_not_read_history(store: Any) -> None:
    # appending touches only the session row and the new event: the history length
    # changes nothing but the sequence number
    s = await store.create_session("app", "u")
    await store.append_events(s.id, [{"author": "a", "content": "x" * 100}] * 200)
    e = await store.append_event(s.id, "a", "last")
    assert e.seq == 201
    assert [x.seq for x in await store.list_events(s.id, limit=2, newest_first=True)] == [201, 200]
