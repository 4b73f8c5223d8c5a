"""Versions, partial updates, increments and the retry helper."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiondb import (
    InvalidIdError,
    InvalidStateError,
    SessionNotFoundError,
    SessionStore,
    StaleSessionError,
    StateTypeError,
)

from ._values import json_values, typed


async def test_patch_merges_top_level_keys(store: Any) -> None:
    s = await store.create_session("app", "u", {"a": 1, "b": {"x": 1}, "c": [1], "keep": True})
    version = await store.patch_state(s.id, {"b": {"y": 2}, "c": None, "d": "new"}, ["a"])
    assert version == 2
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"b": {"y": 2}, "c": None, "d": "new", "keep": True}
    assert got.version == 2 and got.updated_at > s.updated_at


async def test_patch_scalar_fast_path(store: Any) -> None:
    s = await store.create_session("app", "u", {"a": 1, "nested": {"k": [1, 2]}})
    assert await store.patch_state(s.id, {"last_intent": "refund", "turn": 1234}) == 2
    assert await store.patch_state(s.id, set={"turn": 1235, "list": [None, {"x": None}]}) == 3
    got = await store.get_session("app", "u", s.id)
    assert got.state == {
        "a": 1,
        "nested": {"k": [1, 2]},
        "last_intent": "refund",
        "turn": 1235,
        "list": [None, {"x": None}],
    }


async def test_increment(store: Any) -> None:
    s = await store.create_session("app", "u", {"n": 1, "f": 0.5})
    await store.patch_state(s.id, increment={"n": 2, "f": 0.25, "new": 5})
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 3, "f": 0.75, "new": 5}
    assert type(got.state["n"]) is int


async def test_increment_of_a_non_number_writes_nothing(store: Any) -> None:
    s = await store.create_session("app", "u", {"name": "x"})
    with pytest.raises(InvalidStateError) as info:
        await store.patch_state(s.id, set={"other": 1}, increment={"name": 1})
    assert "name" in str(info.value)
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"name": "x"} and got.version == 1


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({"set": {"bad": {1, 2}}}, StateTypeError),
        ({"set": {"nan": float("nan")}}, InvalidStateError),
        ({"increment": {"n": "1"}}, StateTypeError),
        ({"increment": {"n": True}}, StateTypeError),
        ({"remove": [1]}, StateTypeError),
        ({"set": [1]}, StateTypeError),
    ],
    ids=["set", "nan", "inc-str", "inc-bool", "remove-int", "set-list"],
)
async def test_bad_patches_write_nothing(
    store: Any, kwargs: dict[str, Any], kind: type[Exception]
) -> None:
    s = await store.create_session("app", "u", {"n": 1})
    with pytest.raises(kind):
        await store.patch_state(s.id, **kwargs)
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"n": 1} and got.version == 1


async def test_patch_unknown_and_stale(store: Any) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.patch_state("missing", {"a": 1})
    with pytest.raises(SessionNotFoundError):
        await store.patch_state("missing", increment={"a": 1})
    with pytest.raises(InvalidIdError):
        await store.patch_state("", {"a": 1})
    s = await store.create_session("app", "u", {"a": 0})
    await store.patch_state(s.id, {"a": 1})
    for kwargs in ({"set": {"a": 2}}, {"increment": {"a": 1}}):
        with pytest.raises(StaleSessionError) as info:
            await store.patch_state(s.id, expected_version=1, **kwargs)
        assert info.value.actual == 2
    assert await store.patch_state(s.id, {"a": 3}, expected_version=2) == 3
    assert (await store.get_session("app", "u", s.id)).state == {"a": 3}


async def test_transform_state(store: Any) -> None:
    s = await store.create_session("app", "u", {"items": []})

    def add(state: dict[str, Any]) -> None:
        state["items"].append(len(state["items"]))

    assert await store.transform_state(s.id, add) == 2
    assert await store.transform_state(s.id, lambda st: {**st, "done": True}) == 3
    got = await store.get_session("app", "u", s.id)
    assert got.state == {"items": [0], "done": True}
    with pytest.raises(SessionNotFoundError):
        await store.transform_state("missing", add)


def test_transform_state_retries_when_another_writer_wins(db_url: str) -> None:
    with SessionStore(db_url) as store, SessionStore(db_url) as rival:
        s = store.create_session("app", "u", {"n": 0})
        calls = []

        def bump(state: dict[str, Any]) -> dict[str, Any]:
            calls.append(state["n"])
            if len(calls) == 1:  # another writer slips in between our read and write
                rival.patch_state(s.id, increment={"n": 10})
            return {"n": state["n"] + 1}

        store.transform_state(s.id, bump)
        assert calls == [0, 10]
        assert store.get_session("app", "u", s.id).state == {"n": 11}

        def always_loses(state: dict[str, Any]) -> dict[str, Any]:
            rival.patch_state(s.id, increment={"n": 1})
            return state

        with pytest.raises(StaleSessionError):
            store.transform_state(s.id, always_loses, attempts=3)


def test_transform_state_keeps_a_rivals_shared_keys(db_url: str) -> None:
    """Shared keys another session changed between transform_state's read and its write are
    kept (merged into, not a conflict); a rival's write of the session itself is a conflict,
    and fn runs again on the newer state. On MySQL/MariaDB the write is one request that
    writes nothing when a scoped row it changes is no longer as read (then the general
    path merges), also when the row did not exist at the read."""
    with SessionStore(db_url) as store, SessionStore(db_url) as rival:
        s = store.create_session("app", "u", {"app:n": 0, "own": 0})
        other = rival.create_session("app", "u", {})
        calls: list[int] = []

        def bump(state: dict[str, Any]) -> dict[str, Any]:
            calls.append(state["app:n"])
            if len(calls) == 1:  # no user state yet: the rival makes one; and changes app's
                rival.patch_state(other.id, {"app:other": 1, "user:other": 2})
            return {**state, "app:n": state["app:n"] + 1, "user:mine": 3, "own": 1}

        assert store.transform_state(s.id, bump) == 2
        assert calls == [0]
        assert store.get_app_state("app") == {"n": 1, "other": 1}
        assert store.get_user_state("app", "u") == {"other": 2, "mine": 3}
        got = store.get_session("app", "u", s.id)
        assert got is not None and got.state["own"] == 1 and got.version == 2

        def bump_again(state: dict[str, Any]) -> dict[str, Any]:
            calls.append(state["app:n"])
            if len(calls) == 2:  # the rival writes the session itself: a conflict
                rival.patch_state(s.id, {"own": 7, "app:n": 10})
            return {**state, "app:n": state["app:n"] + 1, "user:mine": state["own"]}

        assert store.transform_state(s.id, bump_again) == 4
        assert calls == [0, 1, 10]
        assert store.get_app_state("app") == {"n": 11, "other": 1}
        assert store.get_user_state("app", "u") == {"other": 2, "mine": 7}

        def deleted_meanwhile(state: dict[str, Any]) -> dict[str, Any]:
            rival.delete_session(s.id)
            return {**state, "app:n": 0}

        with pytest.raises(SessionNotFoundError):
            store.transform_state(s.id, deleted_meanwhile)
        assert store.get_app_state("app") == {"n": 11, "other": 1}


patches = st.fixed_dictionaries(
    {
        "set": st.dictionaries(
            st.sampled_from("abcdefg") | st.text(max_size=5), json_values, max_size=4
        ),
        "remove": st.lists(st.sampled_from("abcdefg"), max_size=3),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.dictionaries(st.sampled_from("abcdefg"), json_values, max_size=5),
    patch=patches,
)
def test_random_patches_merge_like_dict_update(
    sync_store: SessionStore, initial: dict[str, Any], patch: dict[str, Any]
) -> None:
    patch["set"] = {
        k: v for k, v in patch["set"].items() if not k.startswith(("app:", "user:", "temp:"))
    }
    store = sync_store  # one store for every example: opening one is not what is tested
    s = store.create_session("prop", "u", initial)
    store.patch_state(s.id, patch["set"], patch["remove"])
    expected = dict(initial)
    for key in patch["remove"]:
        expected.pop(key, None)
    expected.update(patch["set"])
    got = store.get_session("prop", "u", s.id)
    assert got.state == expected
    assert typed(got.state) == typed(json.loads(json.dumps(expected)))
    store.delete_session(s.id)


def test_state_type_error_is_a_type_error() -> None:
    assert issubclass(StateTypeError, TypeError)
