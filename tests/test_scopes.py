"""Scoped state: app:, user: and temp: keys."""

from __future__ import annotations

from typing import Any


async def test_scopes_are_shared_and_merged_on_read(store: Any) -> None:
    a = await store.create_session(
        "app", "alice", {"topic": "a", "app:motd": "hi", "user:lang": "en", "temp:scratch": 1}
    )
    assert a.state == {"topic": "a", "app:motd": "hi", "user:lang": "en"}
    b = await store.create_session("app", "alice", {"topic": "b"})
    assert b.state == {"topic": "b", "app:motd": "hi", "user:lang": "en"}
    c = await store.create_session("app", "bob", {"topic": "c"})
    assert c.state == {"topic": "c", "app:motd": "hi"}
    d = await store.create_session("other-app", "alice")
    assert d.state == {}
    assert await store.get_app_state("app") == {"motd": "hi"}
    assert await store.get_user_state("app", "alice") == {"lang": "en"}
    assert await store.get_user_state("app", "bob") == {}

    await store.patch_state(c.id, {"app:motd": "bye", "user:lang": "fr", "temp:x": 1})
    got_b = await store.get_session("app", "alice", b.id)
    assert got_b.state == {"topic": "b", "app:motd": "bye", "user:lang": "en"}
    got_c = await store.get_session("app", "bob", c.id)
    assert got_c.state == {"topic": "c", "app:motd": "bye", "user:lang": "fr"}
    listed = await store.list_sessions("app", "alice")
    assert all(s.state["app:motd"] == "bye" and s.state["user:lang"] == "en" for s in listed)


async def test_whole_update_routes_keys(store: Any) -> None:
    s = await store.create_session("app", "u", {"x": 1, "user:credits": 5})
    await store.update_session_state(s.id, {"y": 2, "user:tier": "gold", "temp:t": 0})
    got = await store.get_session("app", "u", s.id)
    # the session's own state is replaced; scoped keys are merged into their scope
    assert got.state == {"y": 2, "user:credits": 5, "user:tier": "gold"}


async def test_scoped_increment_remove_and_event_delta(store: Any) -> None:
    s = await store.create_session("app", "u", {"user:credits": 5, "app:visits": 0})
    await store.patch_state(s.id, remove=["user:credits"], increment={"app:visits": 1})
    await store.append_event(s.id, "tool", "ok", state_delta={"user:plan": "pro", "n": 1})
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"app:visits": 1, "user:plan": "pro", "n": 1}


async def test_user_deletion_request(store: Any) -> None:
    s1 = await store.create_session("app", "alice", {"user:email": "a@x", "app:v": 1})
    await store.create_session("app", "alice")
    keep = await store.create_session("app", "bob", {"user:email": "b@x"})
    await store.append_event(s1.id, "user", "my data")
    assert await store.delete_user_data("app", "alice") == 2
    assert await store.list_sessions("app", "alice") == []
    assert await store.list_events(s1.id) == []
    assert await store.get_user_state("app", "alice") == {}
    assert await store.get_user_state("app", "bob") == {"email": "b@x"}
    assert await store.get_app_state("app") == {"v": 1}
    assert (await store.get_session("app", "bob", keep.id)) is not None


async def test_delete_scoped_state(store: Any) -> None:
    s = await store.create_session("app", "u", {"app:a": 1, "user:b": 2, "c": 3})
    assert await store.delete_app_state("app") is True
    assert await store.delete_app_state("app") is False
    assert await store.delete_user_state("app", "u") is True
    assert (await store.get_session("app", "u", s.id)).state == {"c": 3}
