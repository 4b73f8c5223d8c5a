"""Bad input gets a clear, typed error, and nothing is written."""

from __future__ import annotations

import math
import socket
from decimal import Decimal
from typing import Any

import pytest

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    DatabaseSessionService,
    DatabaseUnavailableError,
    DriverNotInstalledError,
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
