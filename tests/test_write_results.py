"""A write is acknowledged only when what came back is that write's own result (issue 11 §3).

The database is made to skip the writes for real: a ``BEFORE UPDATE`` trigger that drops every
update of the sessions table (PostgreSQL returns NULL, SQLite raises IGNORE), so each UPDATE
answers "0 rows" while the session is there. Every write must then fail with
:class:`UnexpectedResultError` and change nothing; never report a new version. (MySQL has no
trigger that skips a row.) The same checks meet a misconfigured pooler in
``tests/scale/test_pgbouncer.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import AsyncSessionStore, SessionStore, UnexpectedResultError
from sessiondb._urls import resolve_url

SKIP_UPDATES = {
    "postgresql": [
        "CREATE FUNCTION sdbt_skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL;"
        " END $$",
        "CREATE TRIGGER sdbt_skip BEFORE UPDATE ON sessions FOR EACH ROW"
        " EXECUTE FUNCTION sdbt_skip()",
    ],
    "sqlite": [
        "CREATE TRIGGER sdbt_skip BEFORE UPDATE ON sessions BEGIN SELECT RAISE(IGNORE); END"
    ],
}
ALLOW_UPDATES = {
    "postgresql": ["DROP TRIGGER sdbt_skip ON sessions", "DROP FUNCTION sdbt_skip()"],
    "sqlite": ["DROP TRIGGER sdbt_skip"],
}


def _admin(url: str, statements: list[str]) -> None:
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


async def _scenario(call: Callable[..., Any], url: str, backend: str) -> None:
    session = await call("create_session", "app", "u", {"counter": 0})
    sid = session.id
    (event,) = await call("append_events", sid, [{"author": "user", "content": "kept"}])
    _admin(url, SKIP_UPDATES[backend])
    writes = [
        ("patch_state", (sid,), {"increment": {"counter": 1}}),  # the general path
        ("patch_state", (sid, {"k": 1}), {}),  # the one-statement path, then the general one
        ("update_session_state", (sid, {"counter": 5}), {}),
        ("update_session_state", (sid, {"counter": 5}), {"expected_version": 2}),
        ("append_event", (sid, "user", "hi"), {}),
        ("set_metadata", (sid,), {"title": "t"}),
        ("pop_events", (sid,), {}),  # deletes, then its UPDATE is skipped: rolled back
    ]
    for name, args, kwargs in writes:
        with pytest.raises(UnexpectedResultError, match="not its result"):
            await call(name, *args, **kwargs)
    _admin(url, ALLOW_UPDATES[backend])
    after = await call("get_session", "app", "u", sid, recent_events=10)
    assert (after.state, after.version, after.events, after.title) == (
        {"counter": 0}, 2, [event], None
    )  # fmt: skip
    assert after.event_count == 1
    # the connections that saw the answers were discarded: the store goes on
    assert await call("patch_state", sid, increment={"counter": 1}) == 3


@pytest.mark.parametrize("front_end", ["sync", "async"])
def test_a_write_the_database_skipped_is_never_acknowledged(
    backend: str, make_db_url: Callable[..., str], front_end: str
) -> None:
    if backend not in SKIP_UPDATES:
        pytest.skip("MySQL has no trigger that skips a row's update")
    url = make_db_url()
    if front_end == "sync":
        with SessionStore(url) as store:

            async def call(name: str, *args: Any, **kwargs: Any) -> Any:
                return getattr(store, name)(*args, **kwargs)

            asyncio.run(_scenario(call, url, backend))
        return

    async def main() -> None:
        async with AsyncSessionStore(url) as store:

            async def call(name: str, *args: Any, **kwargs: Any) -> Any:
                return await getattr(store, name)(*args, **kwargs)

            await _scenario(call, url, backend)

    asyncio.run(main())
