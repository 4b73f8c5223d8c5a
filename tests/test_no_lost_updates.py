"""Proof that partial updates never lose each other: 8 real processes x 200 updates."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, SessionStore

PROCESSES = 8
UPDATES = 200


def _worker(url: str, session_id: str, worker: int, front_end: str, start: Any) -> None:
    start.wait()
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
def test_concurrent_partial_updates_lose_nothing(db_url: str, front_end: str) -> None:
    with SessionStore(db_url) as store:
        session = store.create_session("proof", "u", {"counter": 0})
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_worker, args=(db_url, session.id, w, front_end, start))
        for w in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=600)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with SessionStore(db_url) as store:
        final = store.get_session("proof", "u", session.id)
    assert final is not None
    assert final.state["counter"] == PROCESSES * UPDATES
    keys = {k for k in final.state if k != "counter"}
    assert keys == {f"w{w}-{i}" for w in range(PROCESSES) for i in range(UPDATES)}
    assert final.version == 1 + PROCESSES * UPDATES
