"""Any input, good or bad: every call round-trips exactly or raises a typed error, and a
failed call writes nothing (issue 10 §5)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiondb import SessionDBError, SessionStore

from ._values import json_values, typed

# any text, lone surrogates and control characters included (st.text never makes surrogates)
any_text = st.text(max_size=8) | st.lists(
    st.characters() | st.sampled_from(["\ud800", "\udfff", "\x00", "\x1f"]), max_size=6
).map("".join)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats()  # NaN and infinities included
    | any_text
    | st.binary(max_size=3)
    | st.sets(st.integers(), max_size=2)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.dictionaries(any_text | st.integers(), children, max_size=3)
    ),
    max_leaves=12,
)
# deep values on either side of the nesting limit
deep = st.integers(min_value=95, max_value=105).map(lambda n: _nest(n))


def _nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


keys = any_text.filter(lambda k: not k.startswith(("app:", "user:", "temp:")))
# often valid, so that the writes after a successful create are exercised too
states = (
    st.dictionaries(st.text(max_size=8).filter(lambda k: ":" not in k), json_values, max_size=4)
    | st.dictionaries(keys, values | deep, max_size=4)
    | values
)
ids = (
    st.text(st.characters(codec="ascii", min_codepoint=33), min_size=1, max_size=10)
    | any_text
    | st.text(min_size=120, max_size=140)
    | st.integers()
    | st.none()
)


def _expected(state: Any) -> Any:
    """What a stored state reads back as: tuples become lists."""
    return json.loads(json.dumps(state))


def _snapshot(store: SessionStore) -> Any:
    sessions = store.list_sessions("prop", None)
    return sorted((s.id, s.user_id, json.dumps(s.state, sort_keys=True), s.version)
                  for s in sessions)  # fmt: skip


def _nan_free(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, dict):
        return all(_nan_free(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_nan_free(v) for v in value)
    return True


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=ids, sid=ids, state=states, new_state=states, patch=states)
def test_every_call_round_trips_or_raises_a_typed_error(
    sync_store: SessionStore, user: Any, sid: Any, state: Any, new_state: Any, patch: Any
) -> None:
    store = sync_store  # one store for every example: opening one is not what is tested
    store.clear_sessions("prop")
    before = _snapshot(store)
    try:
        s = store.create_session("prop", user, state, session_id=sid)
    except SessionDBError:
        assert _snapshot(store) == before  # nothing written
        return
    got = store.get_session("prop", user, s.id)
    state = {} if state is None else state  # None asks for an empty state
    assert got is not None and got.state == _expected(state) == s.state
    if _nan_free(state):
        assert typed(got.state) == typed(_expected(state))

    writes = (
        (lambda: store.update_session_state(s.id, new_state), lambda old: new_state),
        (lambda: store.patch_state(s.id, patch), lambda old: {**old, **(patch or {})}),
        (
            lambda: store.append_event(s.id, "tool", new_state, state_delta=patch),
            lambda old: {**old, **(patch or {})},
        ),
    )
    for write, result in writes:
        before = _snapshot(store)
        events = store.list_events(s.id)
        current = store.get_session("prop", user, s.id)
        try:
            write()
        except SessionDBError:
            assert _snapshot(store) == before  # nothing written
            assert store.list_events(s.id) == events
            assert store.get_session("prop", user, s.id) == current
        else:
            after = store.get_session("prop", user, s.id)
            assert after.version == current.version + 1
            assert after.state == _expected(result(current.state))
    final = store.get_session("prop", user, s.id)
    assert final is not None
    for event in store.list_events(s.id):
        assert event.content == _expected(new_state)
