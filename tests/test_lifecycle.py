"""Listing at scale, expiry and cleanup, metadata, export/import."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sessiondb import (
    ArgumentTypeError,
    InvalidArgumentError,
    InvalidCursorError,
    InvalidRecordError,
    SessionList,
    SessionNotFoundError,
)


async def _walk(store: Any, **kw: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_sessions("app", kw.pop("user_id", None), cursor=cursor, **kw)
        assert isinstance(page, SessionList)
        seen += [s.id for s in page]
        cursor = page.next_cursor
        if cursor is None:
            return seen


async def test_pagination_walks_every_session_once(store: Any) -> None:
    ids = [(await store.create_session("app", f"u{i % 3}")).id for i in range(23)]
    walked = await _walk(store, limit=5)
    assert sorted(walked) == sorted(ids) and len(walked) == 23
    newest_first = await store.list_sessions("app")
    assert walked == [s.id for s in newest_first]
    assert await _walk(store, limit=5, order="created") == ids
    assert await _walk(store, limit=100) == walked
    page = await store.list_sessions("app", "u0", limit=3)
    assert len(page) == 3 and page.next_cursor is not None


async def test_walk_is_stable_under_concurrent_writes(store: Any) -> None:
    ids = [(await store.create_session("app", "u")).id for _ in range(12)]
    seen: list[str] = []
    page = await store.list_sessions("app", limit=4, order="created")
    while True:
        seen += [s.id for s in page]
        # meanwhile: new sessions arrive and old ones are updated
        await store.create_session("app", "u")
        await store.update_session_state(ids[-1], {"touched": True})
        await store.update_session_state(seen[0], {"touched": True})
        if page.next_cursor is None:
            break
        page = await store.list_sessions("app", limit=4, order="created", cursor=page.next_cursor)
    assert seen[:12] == ids  # nothing skipped, nothing repeated
    assert len(seen) == len(set(seen))
    # newest-update order: a row updated during the walk is never returned twice
    seen = []
    page = await store.list_sessions("app", limit=5)
    while True:
        seen += [s.id for s in page]
        await store.update_session_state(seen[-1], {"again": True})
        await store.create_session("app", "u")
        if page.next_cursor is None:
            break
        page = await store.list_sessions("app", limit=5, cursor=page.next_cursor)
    assert len(seen) == len(set(seen))


async def test_filters_light_listing_and_count(store: Any) -> None:
    a = await store.create_session("app", "u1", {"big": "x" * 100}, labels=["vip", "eu"])
    b = await store.create_session("app", "u2", title="Refund", labels=["eu"])
    c = await store.create_session("other", "u1")
    assert [s.id for s in await store.list_sessions("app", label="vip")] == [a.id]
    assert {s.id for s in await store.list_sessions("app", label="eu")} == {a.id, b.id}
    assert {s.id for s in await store.list_sessions(None)} == {a.id, b.id, c.id}
    light = await store.list_sessions("app", "u1", include_state=False)
    assert light[0].id == a.id and light[0].state == {} and light[0].labels == ["eu", "vip"]
    got = await store.get_session("app", "u2", b.id)
    assert got.title == "Refund" and got.labels == ["eu"]
    later = datetime.now() + timedelta(seconds=5)
    assert await store.list_sessions("app", created_after=later) == []
    assert len(await store.list_sessions("app", created_before=later)) == 2
    assert len(await store.list_sessions("app", updated_before=later, limit=1)) == 1
    assert await store.count_sessions("app") == 2
    assert await store.count_sessions("app", "u1") == 1
    assert await store.count_sessions(label="eu") == 2
    assert await store.count_sessions() == 3
    with pytest.raises(InvalidCursorError):
        await store.list_sessions("app", limit=1, cursor="garbage")
    page = await store.list_sessions("app", limit=1)
    with pytest.raises(InvalidCursorError):
        await store.list_sessions("app", limit=1, order="created", cursor=page.next_cursor)
    with pytest.raises(InvalidArgumentError):
        await store.list_sessions("app", limit=0)
    with pytest.raises(InvalidArgumentError):
        await store.list_sessions(None, "u1")


async def test_metadata_changes(store: Any) -> None:
    s = await store.create_session("app", "u", {"k": 1})
    assert await store.set_metadata(s.id, title="Hello", labels=["a", "b"]) == 2
    got = await store.get_session("app", "u", s.id)
    assert (got.title, got.labels, got.state) == ("Hello", ["a", "b"], {"k": 1})
    await store.set_metadata(s.id, labels=[])
    got = await store.get_session("app", "u", s.id)
    assert got.title == "Hello" and got.labels == []
    assert await store.list_sessions("app", label="a") == []
    with pytest.raises(SessionNotFoundError):
        await store.set_metadata("missing", title="x")
    with pytest.raises(ArgumentTypeError):
        await store.set_metadata(s.id, colour="red")
    with pytest.raises(ArgumentTypeError):
        await store.create_session("app", "u", labels="not-a-list")


def _past(seconds: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()


def _record(sid: str, *, expires: str | None = None, created: str | None = None) -> dict[str, Any]:
    now = _past(0)
    return {
        "type": "session", "id": sid, "app_name": "app", "user_id": "u", "state": {"n": 1},
        "created_at": created or now, "updated_at": now, "version": 1, "expires_at": expires,
        "events": [{"seq": 1, "author": "user", "content": "hi", "created_at": now}],
    }  # fmt: skip


async def test_expired_sessions_are_invisible_then_purged(store: Any) -> None:
    keep = await store.create_session("app", "u", ttl=timedelta(hours=1))
    assert keep.expires_at is not None and keep.expires_at > datetime.now()
    await store.import_records([_record(f"old-{i}", expires=_past(60)) for i in range(7)])
    assert await store.get_session("app", "u", "old-0") is None
    assert await store.get_session_by_id("old-0") is None
    assert [s.id for s in await store.list_sessions("app", "u")] == [keep.id]
    assert await store.count_sessions("app") == 1
    with pytest.raises(SessionNotFoundError):
        await store.update_session_state("old-1", {"x": 1})
    with pytest.raises(SessionNotFoundError):
        await store.patch_state("old-1", {"x": 1})
    with pytest.raises(SessionNotFoundError):
        await store.append_event("old-1", "user", "hi")
    assert await store.purge_expired(dry_run=True) == 7
    assert await store.purge_expired(batch_size=3) == 7
    assert await store.purge_expired() == 0
    assert await store.list_events("old-0") == []
    assert (await store.get_session("app", "u", keep.id)) is not None


async def test_batches_of_a_thousand_sessions_purge_and_export(store: Any) -> None:
    """One batch names every session of it by key: past SQLite's expression depth limit
    (1000) the statements are split, and nothing is left out."""
    n = 1_050
    await store.import_records(
        [_record(f"old-{i}", expires=_past(60)) for i in range(n)], batch_size=n
    )
    exported = [r async for r in store.export_records(batch_size=n) if r["type"] == "session"]
    assert len(exported) == n
    assert all(len(r["events"]) == 1 for r in exported)
    assert await store.purge_expired(batch_size=n) == n
    assert await store.purge_expired(dry_run=True) == 0


async def test_a_tiny_ttl_expires_at_once(store: Any) -> None:
    s = await store.create_session("app", "u", ttl=1e-6)
    assert await store.get_session("app", "u", s.id) is None


async def test_sliding_expiry_moves_on_writes(store: Any) -> None:
    s = await store.create_session("app", "u", ttl=3600, sliding=True)
    fixed = await store.create_session("app", "u", ttl=3600)
    await store.patch_state(s.id, {"a": 1})
    await store.update_session_state(fixed.id, {"a": 1})
    moved = await store.get_session("app", "u", s.id)
    kept = await store.get_session("app", "u", fixed.id)
    assert moved.expires_at > s.expires_at
    assert abs((kept.expires_at - fixed.expires_at).total_seconds()) < 0.01
    await store.set_metadata(fixed.id, ttl=None)
    assert (await store.get_session("app", "u", fixed.id)).expires_at is None


async def test_delete_sessions_the_guides_cleanup_in_one_call(store: Any) -> None:
    await store.import_records([_record(f"old-{i}", created=_past(40 * 86400)) for i in range(5)])
    new = await store.create_session("app", "u")
    other_app = await store.create_session("other", "u")
    assert await store.delete_sessions("app", older_than=timedelta(days=30), dry_run=True) == 5
    assert await store.delete_sessions("app", older_than=timedelta(days=30), batch_size=2) == 5
    assert [s.id for s in await store.list_sessions("app")] == [new.id]
    assert await store.delete_sessions("app", updated_before=datetime.now() + timedelta(1)) == 1
    assert await store.get_session("other", "u", other_app.id) is not None
    with pytest.raises(InvalidArgumentError):
        await store.delete_sessions()


async def test_export_import_round_trip_is_idempotent(store: Any, make_store: Any) -> None:
    s = await store.create_session("app", "u", {"n": 1, "user:lang": "en"}, labels=["x"])
    await store.append_events(s.id, [{"author": "u", "content": i} for i in range(3)])
    await store.create_session("app2", "v", {"m": 2}, title="T")
    records = [r async for r in store.export_records(batch_size=1)]
    kinds = sorted(r["type"] for r in records)
    assert kinds == ["session", "session", "user_state"]
    before = await store.checksum()
    await store.clear_sessions("app")
    await store.clear_sessions("app2")
    await store.delete_user_state("app", "u")
    first = await store.import_records(records)
    assert (first.sessions, first.events, first.user_states) == (2, 3, 1)
    second = await store.import_records(records)
    assert (second.sessions, second.events, second.skipped) == (0, 0, 2)
    assert await store.checksum() == before
    got = await store.get_session("app", "u", s.id, recent_events=5)
    assert got.state == {"n": 1, "user:lang": "en"} and got.labels == ["x"]
    assert [e.content for e in got.events] == [0, 1, 2] and got.event_count == 3
    assert (await store.append_event(s.id, "u", "next")).seq == 4


async def test_bad_records_are_refused_and_nothing_written(store: Any) -> None:
    good = _record("good")
    for bad in ({"no": "type"}, {"type": "alien"}, {**_record("x"), "created_at": "yesterday"},
                {**_record("y"), "state": [1]}, "not a dict"):  # fmt: skip
        with pytest.raises(InvalidRecordError):
            await store.import_records([good, bad])
    assert await store.get_session_by_id("good") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.delete_sessions(older_than=0),
        lambda s: s.purge_expired(batch_size=0),
        lambda s: s.list_sessions(None, limit=-1),
        lambda s: s.list_sessions(None, order="sideways"),
        lambda s: s.count_sessions(None, "u"),
        lambda s: s.create_session("app", "u", ttl=-5),
        lambda s: s.create_session("app", "u", title="x" * 300),
        lambda s: s.list_events("sid", limit=-1),
        lambda s: s.import_records([], batch_size=0),
    ],
)
async def test_bad_arguments_are_library_errors(store: Any, call: Any) -> None:
    from sessiondb import InvalidArgumentError, SessionDBError

    with pytest.raises(InvalidArgumentError) as info:
        await call(store)
    assert isinstance(info.value, (SessionDBError, ValueError))
    assert await store.count_sessions() == 0


async def test_export_batch_size_must_be_positive(store: Any) -> None:
    from sessiondb import InvalidArgumentError

    await store.create_session("app", "u")
    with pytest.raises(InvalidArgumentError):
        [r async for r in store.export_records(batch_size=0)]


def test_backup_to_a_bad_path_names_that_path(tmp_path: Any) -> None:
    from sessiondb import InvalidArgumentError, SessionStore

    with SessionStore(f"sqlite:///{tmp_path}/src.db") as store:
        store.create_session("app", "u")
        with pytest.raises(InvalidArgumentError) as info:
            store.backup(str(tmp_path / "no" / "such" / "dir" / "b.db"))
        assert "no/such/dir" in str(info.value)
        store.backup(str(tmp_path / "b.db"))
    with SessionStore(f"sqlite:///{tmp_path}/b.db") as copy:
        assert copy.count_sessions() == 1
