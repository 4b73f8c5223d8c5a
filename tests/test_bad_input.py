"""Bad input gets a clear, typed error, and nothing is written."""

from __future__ import annotations

import math
import socket
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from sessiondb import (
    ArgumentTypeError,
    AsyncSessionStore,
    ConfigurationError,
    DatabaseSessionService,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    InvalidArgumentError,
    InvalidCursorError,
    InvalidIdError,
    InvalidStateError,
    SessionDBError,
    SessionStore,
    StateTypeError,
)

# -- URLs ----------------------------------------------------------------------------------------


def test_guide_wrong_sqlite_url_shows_right_form() -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseSessionService(db_url="sqlite://./data.db")
    assert "sqlite:///./data.db" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "empty"),
        ("not a url", "dialect"),
        ("oracle://u:p@h/db", "unsupported database"),
        ("postgresql+pg8000://u@h/db", "unsupported driver"),
        ("postgresql://u@localhost", "names no database"),
        ("sqlite://", "SQLite file"),
        ("sqlite:///:memory:", "SQLite file"),
    ],
)
def test_bad_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionStore(url)
    assert words in str(info.value)


def test_not_a_url_at_all() -> None:
    with pytest.raises(ConfigurationError):
        SessionStore(42)  # type: ignore[arg-type]


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def fake(name: str, *a: Any) -> Any:
        return None if name == "asyncpg" else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DriverNotInstalledError) as info:
        AsyncSessionStore("postgresql://u@localhost/db")
    assert "sessiondb[postgresql]" in str(info.value)
    assert isinstance(info.value, ImportError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_fails_fast_without_password(scheme: str) -> None:
    port = _free_port()
    url = f"{scheme}://user:s3cret-pw@127.0.0.1:{port}/db"
    with (
        SessionStore(url, connect_timeout=2) as store,
        pytest.raises(DatabaseUnavailableError) as info,
    ):
        store.get_session("app", "u", "id")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_unreachable_server_async(scheme: str) -> None:
    port = _free_port()
    async with AsyncSessionStore(f"{scheme}://u:pw@127.0.0.1:{port}/db", connect_timeout=2) as s:
        with pytest.raises(DatabaseUnavailableError):
            await s.list_sessions("app", "u")


def test_unopenable_sqlite_file(tmp_path: Any) -> None:
    with (
        SessionStore(f"sqlite:///{tmp_path}/no/such/dir/x.db") as store,
        pytest.raises(DatabaseUnavailableError) as info,
    ):
        store.list_sessions("app", "u")
    assert "no/such/dir" in str(info.value)


# -- ids -----------------------------------------------------------------------------------------

BAD_IDS = ["", "x" * 129, 5, None, b"bytes", "tab\there", "nul\x00"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_bad_ids_raise_value_error_and_write_nothing(store: Any, bad: Any) -> None:
    with pytest.raises(InvalidIdError) as info:
        await store.create_session(bad, "u1")
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidIdError):
        await store.create_session("app", bad)
    if bad is not None:  # session_id=None asks for a generated id
        with pytest.raises(InvalidIdError):
            await store.create_session("app", "u1", session_id=bad)
    with pytest.raises(InvalidIdError):
        await store.get_session("app", "u1", bad)
    with pytest.raises(InvalidIdError):
        await store.update_session_state(bad, {})
    with pytest.raises(InvalidIdError):
        await store.delete_session(bad)
    assert await store.list_sessions("app", None) == []


async def test_longest_id_is_fine(store: Any) -> None:
    sid = "é" * 128
    s = await store.create_session("a" * 128, "ü" * 128, session_id=sid)
    assert (await store.get_session("a" * 128, "ü" * 128, sid)) == s


# -- state ---------------------------------------------------------------------------------------


class Thing:
    pass


BAD_STATES: list[tuple[Any, type[Exception], str]] = [
    ({"tags": {1, 2}}, StateTypeError, "state['tags']"),
    ({"blob": b"x"}, StateTypeError, "state['blob']"),
    ({"deep": {"obj": Thing()}}, StateTypeError, "state['deep']['obj']"),
    ({"nan": math.nan}, InvalidStateError, "state['nan']"),
    ({"list": [1, math.inf]}, InvalidStateError, "state['list'][1]"),
    ({"x": {1: "int key"}}, StateTypeError, "state['x']"),
    ({"big": 2**64}, InvalidStateError, "state['big']"),
    ({"dec": Decimal("1.5")}, StateTypeError, "state['dec']"),
    ([1, 2], StateTypeError, "dict"),
]


@pytest.mark.parametrize("bad, kind, path", BAD_STATES, ids=[p for _, _, p in BAD_STATES])
async def test_bad_state_names_the_path_and_writes_nothing(
    store: Any, bad: Any, kind: type[Exception], path: str
) -> None:
    with pytest.raises(kind) as info:
        await store.create_session("app", "u1", bad)
    assert path in str(info.value)
    assert isinstance(info.value, (TypeError, ValueError))
    assert isinstance(info.value, SessionDBError)
    assert await store.list_sessions("app", "u1") == []  # no half-made session

    s = await store.create_session("app", "u1", {"keep": "me"})
    with pytest.raises(kind):
        await store.update_session_state(s.id, bad)
    got = await store.get_session("app", "u1", s.id)
    assert got is not None and got.state == {"keep": "me"} and got.version == 1


# -- issue 10 §4: every bad argument is a typed error, and nothing is written ------------------


async def _unchanged(store: Any, sid: str, state: dict[str, Any]) -> None:
    got = await store.get_session("app", "u1", sid)
    assert got is not None and got.state == state and got.version == 1 and got.event_count == 0
    assert len(await store.list_sessions("app", None)) == 1


SURROGATE = "\ud800"


async def test_lone_surrogates_are_invalid_state(store: Any) -> None:
    s = await store.create_session("app", "u1", {"keep": "me"})
    calls = [
        lambda: store.create_session("app", "u1", {"x": SURROGATE}),
        lambda: store.create_session("app", "u1", {"deep": [{"k": "a" + SURROGATE}]}),
        lambda: store.create_session("app", "u1", {SURROGATE: 1}),
        lambda: store.update_session_state(s.id, {"x": SURROGATE}),
        lambda: store.update_session_state(s.id, {"app:x": SURROGATE}),
        lambda: store.patch_state(s.id, {"x": SURROGATE}),
        lambda: store.append_event(s.id, "user", {"text": SURROGATE}),
        lambda: store.append_event(s.id, "user", state_delta={"x": SURROGATE}),
    ]
    for call in calls:
        with pytest.raises(InvalidStateError, match="surrogate"):
            await call()
    for call in (
        lambda: store.create_session("app", SURROGATE),
        lambda: store.create_session("app", "u1", session_id="s" + SURROGATE),
        lambda: store.append_event(s.id, SURROGATE),
    ):
        with pytest.raises(InvalidIdError):
            await call()
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        await store.set_metadata(s.id, title="t" + SURROGATE)
    await _unchanged(store, s.id, {"keep": "me"})
    assert await store.get_app_state("app") == {}


BIG = 2**63


@pytest.mark.parametrize(
    "call",
    [
        lambda st, sid: st.list_sessions("app", "u1", limit=BIG),
        lambda st, sid: st.list_events(sid, after_seq=BIG),
        lambda st, sid: st.list_events(sid, before_seq=BIG),
        lambda st, sid: st.list_events(sid, limit=BIG),
        lambda st, sid: st.get_session("app", "u1", sid, recent_events=BIG),
        lambda st, sid: st.update_session_state(sid, {"x": 1}, expected_version=BIG),
        lambda st, sid: st.patch_state(sid, {"x": 1}, expected_version=BIG),
        lambda st, sid: st.patch_state(sid, increment={"n": 1}, expected_version=BIG),
        lambda st, sid: st.append_event(sid, "user", expected_version=BIG),
        lambda st, sid: st.purge_expired(batch_size=BIG),
        lambda st, sid: st.delete_sessions("app", batch_size=BIG),
    ],
    ids=["limit", "after_seq", "before_seq", "events-limit", "recent_events", "update",
         "patch", "patch-increment", "append", "purge", "delete"],
)  # fmt: skip
async def test_counts_beyond_64_bits(store: Any, call: Any) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    with pytest.raises(InvalidArgumentError, match="64 bits") as info:
        await call(store, s.id)
    assert not isinstance(info.value, TypeError)
    await _unchanged(store, s.id, {"n": 0})


@pytest.mark.parametrize("bad", [1.9, 1.0, True, "1", None.__class__], ids=repr)
async def test_expected_version_is_a_real_int(store: Any, bad: Any) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    for call in (
        lambda: store.update_session_state(s.id, {"n": 1}, expected_version=bad),
        lambda: store.update_session_state(s.id, {"n": 1, "user:x": 1}, expected_version=bad),
        lambda: store.patch_state(s.id, {"n": 1}, expected_version=bad),
        lambda: store.patch_state(s.id, increment={"n": 1}, expected_version=bad),
        lambda: store.append_event(s.id, "user", expected_version=bad),
        lambda: store.append_events(s.id, [{"author": "user"}], expected_version=bad),
    ):
        with pytest.raises(ArgumentTypeError, match="expected_version"):
            await call()
    await _unchanged(store, s.id, {"n": 0})
    assert await store.get_user_state("app", "u1") == {}


@pytest.mark.parametrize(
    "duration", [1e300, math.inf, math.nan, 2**63, timedelta(days=10**8), -1, 0], ids=repr
)
async def test_durations_out_of_range(store: Any, duration: Any) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    with pytest.raises(InvalidArgumentError, match="ttl"):
        await store.create_session("app", "u1", ttl=duration)
    with pytest.raises(InvalidArgumentError, match="ttl"):
        await store.set_metadata(s.id, ttl=duration)
    with pytest.raises(InvalidArgumentError, match="older_than"):
        await store.delete_sessions("app", older_than=duration)
    await _unchanged(store, s.id, {"n": 0})
    got = await store.get_session("app", "u1", s.id)
    assert got.expires_at is None


async def test_arguments_of_the_wrong_type(store: Any) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    with pytest.raises(ArgumentTypeError, match="attempts"):
        await store.transform_state(s.id, lambda st: {**st, "n": 1}, attempts="3")
    with pytest.raises(InvalidArgumentError, match="attempts"):
        await store.transform_state(s.id, lambda st: {**st, "n": 1}, attempts=0)
    for cursor in (5, b"abc", None.__class__, "!!not-ours!!"):
        with pytest.raises(InvalidCursorError):
            await store.list_sessions("app", "u1", limit=1, cursor=cursor)
    with pytest.raises(InvalidIdError):
        await store.get_user_state("app", None)
    with pytest.raises(InvalidIdError):
        await store.delete_user_state("app", None)
    await _unchanged(store, s.id, {"n": 0})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"set": ["ab"]},
        {"set": "ab"},
        {"set": [("a", "b")]},
        {"increment": [("n", 1)]},
        {"remove": "n"},
        {"remove": 5},
    ],
    ids=repr,
)
async def test_patch_arguments_must_have_their_shape(store: Any, kwargs: dict[str, Any]) -> None:
    s = await store.create_session("app", "u1", {"n": 0})
    with pytest.raises(StateTypeError):
        await store.patch_state(s.id, **kwargs)
    await _unchanged(store, s.id, {"n": 0})


@pytest.mark.parametrize(
    "options",
    [
        {"pool_size": "5"},
        {"pool_size": 5.0},
        {"pool_size": True},
        {"pool_size": 0},
        {"busy_timeout": "x"},
        {"busy_timeout": math.inf},
        {"busy_timeout": 10**12},
        {"connect_timeout": "10"},
        {"connect_timeout": math.nan},
        {"tz_aware": "yes"},
        {"engine_options": ["echo"]},
        {"ttl": math.inf},
    ],
    ids=repr,
)
@pytest.mark.parametrize("front", [SessionStore, AsyncSessionStore, DatabaseSessionService])
def test_bad_store_options_are_configuration_errors(
    tmp_path: Any, front: Any, options: dict[str, Any]
) -> None:
    path = tmp_path / "x.db"
    with pytest.raises(ConfigurationError):
        front(f"sqlite:///{path}", **options)
    assert not path.exists()


@pytest.mark.parametrize(
    "tail",
    ["x.db?timeout=abc", "x.db?mode=ro", "what?.db", "x.db?mode=ro&uri=true", "x.db?"],
)
def test_sqlite_url_options_are_refused(tmp_path: Any, tail: str) -> None:
    with pytest.raises(ConfigurationError, match="%3F"):
        SessionStore(f"sqlite:///{tmp_path}/{tail}")
    assert list(tmp_path.iterdir()) == []


def test_a_question_mark_in_a_file_name_is_written_as_pct_3f(tmp_path: Any) -> None:
    with SessionStore(f"sqlite:///{tmp_path}/what%3F.db") as store:
        store.create_session("app", "u")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["what?.db"]
