"""Proof that partial updates never lose each other: 8 real processes x 200 updates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, SessionStore

PROCESSES = 8
UPDATES = 200


def _worker(url: str, session_id: str, worker: int, front_end: str) -> None:
    """Runs in a spawned process (all of them start at once): ``UPDATES`` partial updates."""
    if front_end == "sync":
        with SessionStore(url) as store:
            for i in range(UPDATES):
                store.patch_state(session_id, {f"w{worker}-{i}": i}, increment={"counter": 1})
        return

    async def run() -> None:
        async with AsyncSessionStore(url) as store:
            for i in range(UPDATES):
                await store.patch_state(session_id, {f"w{worker}-{i}": i}, increment={"counter": 1})

    asyncio.run(run())


@pytest.mark.slow
@pytest.mark.parametrize("front_end", ["sync", "async"])
def test_concurrent_partial_updates_lose_nothing(
    db_url: str, front_end: str, process_pool: Any
) -> None:
    with SessionStore(db_url) as store:
        session = store.create_session("proof", "u", {"counter": 0})
    # PROCESSES real processes, spawned once for this module (their exit codes are checked
    # when it ends), all starting their updates at once
    pool = process_pool(PROCESSES)
    reports = pool.run(_worker, [(db_url, session.id, w, front_end) for w in range(PROCESSES)])
    assert reports == dict.fromkeys(range(PROCESSES)), reports
    with SessionStore(db_url) as store:
        final = store.get_session("proof", "u", session.id)
    assert final is not None
    assert final.state["counter"] == PROCESSES * UPDATES
    keys = {k for k in final.state if k != "counter"}
    assert keys == {f"w{w}-{i}" for w in range(PROCESSES) for i in range(UPDATES)}
    assert final.version == 1 + PROCESSES * UPDATES
