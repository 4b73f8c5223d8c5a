"""Scoped state: app:, user: and temp: keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sessiondb import SessionStore, StaleSessionError


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


# -- whole-state writes never revert shared keys from a stale read ---------------------------------


async def test_stale_read_never_reverts_another_sessions_write(store: Any) -> None:
    a = await store.create_session("app", "u", {"lang": "en", "app:x": 1, "user:y": "one"})
    b = await store.create_session("app", "u", {})
    loaded = await store.get_session("app", "u", a.id)  # A reads: app:x=1, user:y="one"
    await store.patch_state(b.id, {"app:x": 2, "user:y": "two"})  # B changes both meanwhile
    # the guide's pattern: A writes back everything it read, with one own key changed
    await store.update_session_state(a.id, {**loaded.state, "lang": "es"})
    # writing that dict again changes nothing shared either
    await store.update_session_state(a.id, {**loaded.state, "lang": "de"})
    got = await store.get_session("app", "u", a.id)
    assert got.state == {"lang": "de", "app:x": 2, "user:y": "two"}  # B's values stay
    assert await store.get_app_state("app") == {"x": 2}

    # A's genuine changes to shared keys are written, beside B's
    fresh = await store.get_session("app", "u", a.id)
    await store.update_session_state(
        a.id, {**fresh.state, "app:y": "new", "user:y": "three", "app:z": [1]}
    )
    assert await store.get_app_state("app") == {"x": 2, "y": "new", "z": [1]}
    assert await store.get_user_state("app", "u") == {"y": "three"}


@pytest.mark.parametrize("listing", ["user", "app", "page"])
async def test_a_listing_is_a_read_a_whole_state_write_can_rely_on(
    store: Any, listing: str
) -> None:
    a = await store.create_session("app", "u", {"lang": "en", "app:x": 1})
    b = await store.create_session("app", "u", {})
    await store.patch_state(b.id, {"app:x": 2})
    if listing == "user":
        listed = await store.list_sessions("app", "u")
    elif listing == "app":
        listed = await store.list_sessions("app")
    else:
        listed = await store.list_sessions("app", "u", limit=10)
    read = next(s for s in listed if s.id == a.id)  # A reads app:x=2 in a listing
    assert read.state == {"lang": "en", "app:x": 2}
    await store.patch_state(b.id, {"app:x": 3})  # B changes it meanwhile
    await store.update_session_state(a.id, {**read.state, "lang": "es"})
    got = await store.get_session("app", "u", a.id)
    assert got.state == {"lang": "es", "app:x": 3}  # B's value stays


async def test_in_place_change_of_a_read_value_is_written(store: Any) -> None:
    a = await store.create_session("app", "u", {"user:prefs": {"theme": "dark"}})
    loaded = await store.get_session("app", "u", a.id)
    loaded.state["user:prefs"]["theme"] = "light"  # the very object read, changed in place
    await store.update_session_state(a.id, loaded.state)
    assert await store.get_user_state("app", "u") == {"prefs": {"theme": "light"}}


async def test_transform_state_changes_shared_keys_against_its_own_read(store: Any) -> None:
    a = await store.create_session("app", "u", {"app:n": 1, "app:flag": True, "own": 0})
    b = await store.create_session("app", "u", {})
    await store.patch_state(b.id, {"app:flag": False})

    def bump(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "app:n": state["app:n"] + 1, "own": 1}

    await store.transform_state(a.id, bump)
    assert await store.get_app_state("app") == {"n": 2, "flag": False}

    def flip(state: dict[str, Any]) -> None:
        state["app:flag"] = not state["app:flag"]

    await store.transform_state(a.id, flip)
    assert await store.get_app_state("app") == {"n": 2, "flag": True}


async def test_a_change_back_to_an_older_read_value_is_refused_loudly(store: Any) -> None:
    a = await store.create_session("app", "u", {"app:flag": True})
    b = await store.create_session("app", "u", {})
    await store.get_session("app", "u", a.id)  # flag True
    await store.patch_state(b.id, {"app:flag": False})
    second = await store.get_session("app", "u", a.id)  # flag False
    # True is what the older read returned: a stale copy, or a deliberate flip back?
    with pytest.raises(StaleSessionError, match="app:flag"):
        await store.update_session_state(a.id, {**second.state, "app:flag": True, "own": 1})
    got = await store.get_session("app", "u", a.id)
    assert got.state == {"app:flag": False} and got.version == 1  # nothing written
    await store.patch_state(a.id, {"app:flag": True})  # the unambiguous way
    assert await store.get_app_state("app") == {"flag": True}


async def test_a_store_that_never_read_the_session_refuses_to_guess(
    store: Any, make_store: Callable[..., SessionStore]
) -> None:
    a = await store.create_session("app", "u", {"app:x": 1, "own": 0})
    other = make_store()  # another process, say: it never read session A
    with pytest.raises(StaleSessionError, match="app:x"):
        other.update_session_state(a.id, {"own": 2, "app:x": 5})
    got = await store.get_session("app", "u", a.id)
    assert got.state == {"own": 0, "app:x": 1} and got.version == 1  # nothing written
    other.update_session_state(a.id, {"own": 1, "app:x": 1})  # equal to the stored value: fine
    loaded = other.get_session("app", "u", a.id)  # once it has read it, a change is a change
    other.update_session_state(a.id, {**loaded.state, "app:x": 5})
    assert await store.get_app_state("app") == {"x": 5}


def test_stale_read_across_processes(db_url: str) -> None:
    """Two stores (as two processes would have): A's stale copy keeps B's write."""
    with SessionStore(db_url) as one, SessionStore(db_url) as two:
        a = one.create_session("app", "u", {"app:x": "old", "lang": "en"})
        loaded = one.get_session("app", "u", a.id)
        b = two.create_session("app", "u", {})
        two.update_session_state(b.id, {**b.state, "app:x": "new"})
        one.update_session_state(a.id, {**loaded.state, "lang": "es", "app:y": 1})
        assert two.get_app_state("app") == {"x": "new", "y": 1}
        assert two.get_session("app", "u", a.id).state == {
            "app:x": "new", "app:y": 1, "lang": "es"
        }  # fmt: skip
