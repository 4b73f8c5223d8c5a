"""One contender on one backend, in a process of its own (so memory figures are its own).

``python -m benchmarks.worker JOB.json`` reads the job, rebuilds the workload from its seed, runs
it and writes the result to ``job["out"]``. Mode ``time`` runs the timed phases; mode ``count``
runs a short pass through the counting proxy (servers) or with SQLite's trace callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import conversation
from .contenders import REGISTRY
from .contenders.base import AsyncContender, Handle, SyncContender
from .measure import (
    Args,
    Phase,
    SqliteStatementCounter,
    count_async,
    count_stats,
    count_sync,
    proc_status_kib,
    time_async,
    time_sync,
)
from .proxy import CountingProxy
from .targets import Target, empty_wal, host_port
from .workload import CONV_USER, CrudData, Sizes, Workload, generate

OPS = ("create", "update", "get", "list", "delete")


class CheckFailedError(Exception):
    """The data a contender gave back is not what the workload wrote."""


class Runner:
    """Runs the workload's phases on one contender; untimed work and checks around them."""

    def __init__(
        self,
        contender: SyncContender | AsyncContender,
        workload: Workload,
        counter: Callable[[], int] | None,
    ) -> None:
        self.c = contender
        self.w = workload
        self.counter = counter
        self.is_async = contender.is_async

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """An untimed call to a sync or async contender method."""
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def timed(self, fn: Callable[..., Any], calls: list[Args], keep: bool = False) -> Phase:
        if self.is_async:
            return await time_async(fn, calls, keep)
        return time_sync(fn, calls, keep)

    async def counted(
        self, fn: Callable[..., Any], calls: list[Args], keep: bool = False
    ) -> tuple[list[int], list[Any]]:
        assert self.counter is not None
        if self.is_async:
            return await count_async(fn, calls, self.counter, keep)
        return count_sync(fn, calls, self.counter, keep)

    # -- phases ----------------------------------------------------------------------------

    @staticmethod
    def calls(crud: CrudData, handles: list[Handle]) -> dict[str, list[Args]]:
        """The argument lists of the five ops (update/get/delete need create's handles)."""
        return {
            "update": [(handles[i], delta) for i, delta in crud.updates],
            "get": [(handles[i],) for i in crud.gets],
            "list": [(user,) for user in crud.lists],
            "delete": [(handles[i],) for i in crud.deletes],
        }

    async def warm_up(self) -> None:
        crud = self.w.warmup
        c = self.c
        handles = [
            await self.call(c.create, u, s) for u, s in zip(crud.user_ids, crud.states, strict=True)
        ]
        calls = self.calls(crud, handles)
        for name, fn in (("update", c.update), ("get", c.get), ("list", c.list)):
            for args in calls[name]:
                await self.call(fn, *args)
        for args in calls["delete"]:
            await self.call(c.delete, *args)

    async def crud_timed(self) -> dict[str, Any]:
        crud = self.w.crud
        c = self.c
        expected = crud.expected_states()  # before any op: nothing can alias it
        phases: dict[str, Phase] = {}
        creates = [(u, s) for u, s in zip(crud.user_ids, crud.states, strict=True)]
        phases["create"] = await self.timed(c.create, creates, keep=True)
        handles = phases["create"].kept
        phases["create"].kept = []
        calls = self.calls(crud, handles)
        phases["update"] = await self.timed(c.update, calls["update"])
        phases["get"] = await self.timed(c.get, calls["get"])
        phases["list"] = await self.timed(c.list, calls["list"])
        await self.verify(handles, expected)
        phases["delete"] = await self.timed(c.delete, calls["delete"])
        await self.verify_deleted(handles)
        return {name: phases[name].stats() for name in OPS}

    async def crud_counted(self) -> dict[str, Any]:
        crud = self.w.crud
        c = self.c
        expected = crud.expected_states()
        counts: dict[str, list[int]] = {}
        creates = [(u, s) for u, s in zip(crud.user_ids, crud.states, strict=True)]
        counts["create"], handles = await self.counted(c.create, creates, keep=True)
        calls = self.calls(crud, handles)
        for name, fn in (("update", c.update), ("get", c.get), ("list", c.list)):
            counts[name], _ = await self.counted(fn, calls[name])
        await self.verify(handles, expected)
        counts["delete"], _ = await self.counted(c.delete, calls["delete"])
        return {name: count_stats(counts[name]) for name in OPS}

    async def verify(self, handles: list[Handle], expected: list[dict[str, Any]]) -> None:
        """Untimed: sampled sessions hold exactly the expected state; a list is complete."""
        crud = self.w.crud
        sample = [i for i in self.w.check_sample if i < len(handles)]
        for i in sample:
            got = self.c.state_of(await self.call(self.c.get, handles[i]))
            if got != expected[i]:
                raise CheckFailedError(
                    f"get of session #{i} returned {got!r}, expected {expected[i]!r}"
                )
        if sample:
            user = crud.user_ids[sample[0]]
            want = crud.user_ids.count(user)
            have = self.c.count_of(await self.call(self.c.list, user))
            if have != want:
                raise CheckFailedError(f"list of {user} returned {have} sessions, expected {want}")

    async def verify_deleted(self, handles: list[Handle]) -> None:
        for i in self.w.check_sample[:3]:
            got = await self.call(self.c.get, handles[i])
            if self.c.state_of(got) is not None:
                raise CheckFailedError(f"session #{i} is still there after delete")

    async def conversation(self) -> dict[str, Any]:
        """Every conversation variant this contender runs, by variant name."""
        out: dict[str, Any] = {}
        if self.w.sizes.turns == 0:
            return out
        for name in self.c.conversation_variants:
            variant = conversation.VARIANTS[name]
            if not variant.implemented:
                out[name] = {"skipped": "not implemented yet"}
                continue
            out[name] = await self.one_conversation(name)
        return out

    async def one_conversation(self, variant: str) -> dict[str, Any]:
        c: Any = self.c
        messages = self.w.messages
        events = variant == "sessiondb-events"
        initial: dict[str, Any] = {"message_count": 0}
        if not events:
            initial["conversation_history"] = []
        wal = self.empty_wal()
        handle = await self.call(c.create, CONV_USER, initial)
        if isinstance(c, AsyncContender):
            turns = await conversation.turns_async(c, handle, messages, self.counter, variant)
        else:
            turns = conversation.turns_sync(c, handle, messages, self.counter, variant)
        _, final = await self.call(c.conv_read, handle)
        want = conversation.expected_history(messages)
        if events:
            final = {
                **final,
                "conversation_history": await self.call(c.conv_events_history, handle),
            }
        history = final.get("conversation_history")
        if history != want or final.get("message_count") != len(want):
            have = len(history) if isinstance(history, list) else history
            raise CheckFailedError(
                f"conversation: the final state holds {have} messages "
                f"(message_count={final.get('message_count')}), expected all {len(want)}"
            )
        if self.counter is not None:
            return {
                "read": count_stats(turns.read_counts),
                "write": count_stats(turns.write_counts),
            }
        result = conversation.summarize(turns, len(messages))
        stored = c.stored_bytes(handle)
        result["state_bytes"] = stored.get("state", 0)
        result["event_bytes"] = stored.get("events", 0)
        result["stored_bytes"] = sum(stored.values())
        result["messages_checked"] = len(want)
        if wal is not None:
            result["wal_emptied"] = wal
        return result

    def empty_wal(self) -> dict[str, int] | None:
        """SQLite: the WAL the earlier phases left, checkpointed and emptied before a
        conversation (untimed), so that it starts every contender and run at the same point.

        A WAL-mode file is checkpointed (3 fsyncs, ~8 ms on this disk) each time its log
        reaches 1000 pages; the CRUD phases leave it at a point that differs by tree and run,
        and a conversation of T = 40 turns (~8 ms of work, ~200-300 pages) met that
        checkpoint or not: its total time was ~8 or ~16 ms, and a now/before ratio 0.5 or 1
        by chance. The conversation still pays for the checkpoints its own writes cause
        (several at T = 200). Server backends: nothing to do.
        """
        if self.c.backend != "sqlite":
            return None
        return empty_wal(self.c.target.url)

    async def run(self) -> dict[str, Any]:
        c = self.c
        started = time.perf_counter()
        await self.call(c.setup)
        result: dict[str, Any] = {"memory": {"rss_after_setup_kib": proc_status_kib("VmRSS")}}
        try:
            await self.phases(result)
        except BaseException:
            result["info"] = c.info()
            with contextlib.suppress(Exception):  # the first error is the one to report
                await self.call(c.teardown)
            raise
        result["info"] = c.info()
        await self.call(c.teardown)
        result["elapsed_s"] = time.perf_counter() - started
        return result

    async def phases(self, result: dict[str, Any]) -> None:
        await self.warm_up()
        if self.counter is None:
            result["ops"] = await self.crud_timed()
        else:
            result["counts"] = await self.crud_counted()
        result["memory"]["hwm_after_crud_kib"] = proc_status_kib("VmHWM")
        conv = await self.conversation()
        if self.counter is None:
            result["conversation"] = conv
        else:
            for name, figures in conv.items():
                if "read" in figures:
                    result["counts"][f"conv_read[{name}]"] = figures["read"]
                    result["counts"][f"conv_write[{name}]"] = figures["write"]
        result["memory"]["hwm_end_kib"] = proc_status_kib("VmHWM")


def _run(job: dict[str, Any]) -> dict[str, Any]:
    entry = REGISTRY[job["contender"].removesuffix("@before")]  # a baseline twin: same code
    cls = entry.load()
    workload = generate(Sizes(**job["sizes"]), int(job["seed"]))
    backend = job["backend"]
    tmpdir: str | None = None
    if backend == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix=f"bench-{entry.name}-", dir=job.get("sqlite_dir"))
        url = f"sqlite:///{Path(tmpdir, 'bench.db')}"
        target = Target("sqlite", url, url)
    else:
        target = Target(backend, job["url"], job["url"], job.get("adk_database"))
    counter: Callable[[], int] | None = None
    proxy: CountingProxy | None = None
    sqlite_counter: SqliteStatementCounter | None = None
    unit = ""
    if job["mode"] == "count":
        if backend == "sqlite":
            sqlite_counter = SqliteStatementCounter()
            sqlite_counter.install()
            counter, unit = sqlite_counter.count, "statements"
        else:
            proxy = CountingProxy(*host_port(target.url))
            target = target.via(proxy.host, proxy.port)
            counter, unit = proxy.count, "round trips"
    try:
        contender = cls(target)
        if job.get("table_prefix"):  # a baseline twin keeps to tables of its own
            contender.prefix = job["table_prefix"]
            contender.baseline = True
        runner = Runner(contender, workload, counter)
        result = asyncio.run(runner.run())
    finally:
        if proxy is not None:
            proxy.close()
        if sqlite_counter is not None:
            sqlite_counter.uninstall()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if unit:
        result["unit"] = unit
    return result


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    base = {"contender": job["contender"], "backend": job["backend"], "mode": job["mode"]}
    try:
        result = {"status": "ok", **base, **_run(job)}
    except CheckFailedError as exc:
        result = {"status": "failed", "kind": "correctness", "error": str(exc), **base}
    except Exception as exc:
        result = {
            "status": "failed",
            "kind": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            **base,
        }
    Path(job["out"]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
