"""The same data comes back identically on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiondb import InvalidStateError, SessionStore

from ._values import json_values, typed

TRICKY: dict[str, Any] = {
    "unicode": "héllo wörld — 日本語 — Ελληνικά",
    "emoji": "🚀👩‍💻🇯🇵",
    "nul": "before\u0000after",
    "nul key \u0000": 1,
    "escape-char": "\ue000 private use \ue000e0",
    "backslash": 'a\\u0000b \\ c " d',
    "control": "\t\n\r\x01\x1f",
    "int64": [2**63 - 1, -(2**63), 2**64 - 1, 0, -1],
    "floats": [0.1, -2.5, 1e16, 1.5e300, 5e-324, 1e-7, 123456789.123456789, 2.0],
    "bools": [True, False, None],
    "empty": {"obj": {}, "list": [], "str": ""},
    "tuple": (1, "two"),
}


async def test_tricky_values_round_trip(store: Any) -> None:
    s = await store.create_session("app", "u1", TRICKY)
    expected = json.loads(json.dumps(TRICKY))  # the tuple comes back as a list
    assert s.state == expected
    got = await store.get_session("app", "u1", s.id)
    assert got is not None
    assert got.state == expected
    for key in ("floats", "int64"):
        assert [type(v) for v in got.state[key]] == [type(v) for v in expected[key]]
    await store.update_session_state(s.id, TRICKY)
    listed = await store.list_sessions("app", "u1")
    assert listed[0].state == expected


def nested(levels: int) -> Any:
    """A value ``levels`` objects and arrays deep, alternating."""
    value: Any = "bottom"
    for i in range(levels):
        value = {f"k{i}": value} if i % 2 else [value]
    return value


async def test_nesting_limit_is_the_same_everywhere(store: Any) -> None:
    # the state itself is one level: 100 in all is the documented limit (_json.MAX_DEPTH),
    # patchable on MariaDB too, whose JSON functions stop at 32
    deep = nested(99)
    s = await store.create_session("app", "u1", {"deep": deep})
    got = await store.get_session("app", "u1", s.id)
    assert got is not None and got.state == {"deep": deep}
    assert await store.patch_state(s.id, {"flag": 1}) == 2  # the one-statement merge
    assert await store.patch_state(s.id, {"more": [deep[0]]}) == 3
    assert await store.patch_state(s.id, {"obj": {"d": deep[0]}}, increment={"n": 1}) == 4
    await store.append_event(s.id, "tool", deep, state_delta={"x": deep})
    got = await store.get_session("app", "u1", s.id)
    assert got.state == {"deep": deep, "flag": 1, "more": [deep[0]], "obj": {"d": deep[0]},
                         "n": 1, "x": deep}  # fmt: skip
    assert (await store.list_events(s.id))[0].content == deep

    too_deep = nested(100)
    for call in (
        lambda: store.create_session("app", "u1", {"deep": too_deep}),
        lambda: store.update_session_state(s.id, {"deep": too_deep}),
        lambda: store.patch_state(s.id, {"deep": too_deep}),
        lambda: store.append_event(s.id, "tool", [too_deep]),
        lambda: store.append_event(s.id, "tool", state_delta={"d": too_deep}),
        lambda: store.create_session("app", "u1", {"deep": nested(2000)}),
    ):
        with pytest.raises(InvalidStateError, match="deeper than 100 levels"):
            await call()
    assert len(await store.list_sessions("app", "u1")) == 1
    again = await store.get_session("app", "u1", s.id)
    assert again == got and again.version == 5 and again.event_count == 1


@pytest.mark.slow
async def test_ten_megabyte_state(store: Any) -> None:
    big = {"history": ["x" * 1000 + str(i) for i in range(10_000)], "tail": "é" * 100}
    s = await store.create_session("app", "u1", big)
    got = await store.get_session("app", "u1", s.id)
    assert got is not None and got.state == big
    big["history"].append("one more")
    await store.update_session_state(s.id, big)
    again = await store.get_session("app", "u1", s.id)
    assert again is not None and len(again.state["history"]) == 10_001


# app:/user: keys are shared between sessions (tests/test_scopes.py): keep examples independent
states = st.dictionaries(
    st.text(max_size=12).filter(lambda k: not k.startswith(("app:", "user:", "temp:"))),
    json_values,
    max_size=6,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(state=states)
def test_random_states_round_trip(sync_store: SessionStore, state: dict[str, Any]) -> None:
    store = sync_store  # one store for every example: opening one is not what is tested
    s = store.create_session("prop", "u", state)
    got = store.get_session("prop", "u", s.id)
    assert got is not None
    assert got.state == state
    assert typed(got.state) == typed(state)  # 1.0 stays a float, 1 an int, True a bool
    store.delete_session(s.id)
