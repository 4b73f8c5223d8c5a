"""A server session that accepts no writes (a standby, a fenced primary, a read-only MariaDB):
writes raise ReadOnlyDatabaseError after one new connection, never loop, and write nothing;
reads go on. Made here with a read-only connection setting on the test servers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, ReadOnlyDatabaseError, SessionStore

#: what makes every new connection read-only, per driver
READ_ONLY: dict[tuple[str, str], dict[str, Any]] = {
    ("postgresql", "sync"): {"options": "-c default_transaction_read_only=on"},
    ("postgresql", "async"): {"server_settings": {"default_transaction_read_only": "on"}},
    ("mysql", "sync"): {"init_command": "SET SESSION TRANSACTION READ ONLY"},
    ("mysql", "async"): {"init_command": "SET SESSION TRANSACTION READ ONLY"},
}


@pytest.mark.parametrize("front", ["sync", "async"])
async def test_writes_on_a_read_only_session_raise_a_typed_error(
    backend: str, db_url: str, front: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no read-only server sessions")
    with SessionStore(db_url) as writer:
        session = writer.create_session("app", "user", {"n": 1})
    options = {"engine_options": {"connect_args": READ_ONLY[backend, front]},
               "connect_timeout": 5}  # fmt: skip
    if front == "sync":
        store: Any = SessionStore(db_url, **options)
    else:
        store = AsyncSessionStore(db_url, **options)

    async def call(result: Any) -> Any:
        return await result if front == "async" else result

    try:
        assert (await call(store.get_session("app", "user", session.id))).state == {"n": 1}
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ReadOnlyDatabaseError) as info:
                await call(store.patch_state(session.id, increment={"n": 1}))
            assert time.monotonic() - started < 5
            assert "nothing was written" in str(info.value)
        with pytest.raises(ReadOnlyDatabaseError):
            await call(store.create_session("app", "user"))
        assert [s.id for s in await call(store.list_sessions("app", "user"))] == [session.id]
    finally:
        await call(store.close())
    with SessionStore(db_url) as writer:
        assert writer.get_session("app", "user", session.id).state == {"n": 1}  # type: ignore[union-attr]
