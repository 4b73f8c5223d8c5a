"""The async front end's reused worker greenlets (``_runner.run_in_greenlet``): each operation
runs sync-style, awaits through ``await_only``, sees its caller's context variables, and a
worker that ran a failed or cancelled operation serves the next one cleanly."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from sqlalchemy.util import await_only

from sessiondb._runner import run_in_greenlet

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def _value(v: int) -> int:
    await asyncio.sleep(0)
    return v


def _sum(n: int) -> int:
    return sum(await_only(_value(i)) for i in range(n))


async def test_operations_await_and_return() -> None:
    for n in range(5):
        assert await run_in_greenlet(lambda n=n: _sum(n)) == sum(range(n))  # type: ignore[misc]


async def test_each_operation_sees_its_callers_context() -> None:
    async def call(name: str) -> tuple[str, str]:
        who.set(name)

        def op() -> tuple[str, str]:
            before = who.get()
            await_only(asyncio.sleep(0))
            return before, who.get()

        return await run_in_greenlet(op)

    got = await asyncio.gather(*(call(f"t{i}") for i in range(20)))
    assert got == [(f"t{i}", f"t{i}") for i in range(20)]


async def test_errors_raised_inside_and_thrown_in_reach_the_caller() -> None:
    def fails() -> None:
        await_only(asyncio.sleep(0))
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        await run_in_greenlet(fails)

    async def boom() -> None:
        raise LookupError("awaited")

    seen: list[str] = []

    def catches() -> str:
        try:
            await_only(boom())
        except LookupError as exc:
            seen.append(str(exc))
        return "recovered"

    assert await run_in_greenlet(catches) == "recovered"
    assert seen == ["awaited"]
    assert await run_in_greenlet(lambda: _sum(3)) == 3


async def test_a_cancelled_operation_runs_its_cleanup_and_the_next_one_works() -> None:
    started = asyncio.Event()
    cleaned: list[bool] = []

    def waits() -> None:
        try:
            started.set()
            await_only(asyncio.sleep(3600))
        finally:
            cleaned.append(True)

    task = asyncio.create_task(run_in_greenlet(waits))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    results = await asyncio.gather(*(run_in_greenlet(lambda: _sum(4)) for _ in range(10)))
    assert results == [6] * 10


def test_each_thread_has_its_own_workers() -> None:
    def in_new_loop() -> int:
        return asyncio.run(run_in_greenlet(lambda: _sum(5)))

    assert in_new_loop() == 10
    assert asyncio.run(asyncio.to_thread(in_new_loop)) == 10
    assert in_new_loop() == 10
