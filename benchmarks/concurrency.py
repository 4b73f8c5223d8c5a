"""Concurrency: many tasks on one async store, and several processes on one database.

    python -m benchmarks.concurrency --db sqlite,postgresql [--quick]

Part 1 runs the async front end with 64 concurrent tasks against PostgreSQL (and the other
backends asked for); part 2 runs two processes writing to the same SQLite file and the same
PostgreSQL database at once. Each task or process creates sessions, patches them (its own key
plus a shared counter on one hot session) and reads them back. Reported: throughput and errors
(which must be zero), and a check that no update was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sessiondb import AsyncSessionStore, SessionStore

from .targets import drop_sessiondb

PREFIX = "bconc_"
URLS = {
    "postgresql": os.environ.get(
        "SESSIONDB_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("SESSIONDB_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}


async def _tasks(url: str, tasks: int, ops: int) -> dict[str, Any]:
    errors: list[str] = []
    async with AsyncSessionStore(url, table_prefix=PREFIX, pool_size=16) as store:
        hot = await store.create_session("conc", "hot", {"counter": 0})

        async def worker(n: int) -> int:
            done = 0
            for i in range(ops):
                try:
                    s = await store.create_session("conc", f"u{n}", {"i": i})
                    await store.patch_state(s.id, {"seen": True}, increment={"n": 1})
                    await store.patch_state(hot.id, increment={"counter": 1})
                    got = await store.get_session("conc", f"u{n}", s.id)
                    assert got is not None and got.state == {"i": i, "seen": True, "n": 1}
                    done += 4
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            return done

        start = time.perf_counter()
        counts = await asyncio.gather(*(worker(n) for n in range(tasks)))
        wall = time.perf_counter() - start
        final = await store.get_session("conc", "hot", hot.id)
        counter = final.state["counter"] if final else None
    return {
        "tasks": tasks, "ops": sum(counts), "seconds": round(wall, 3),
        "ops_per_s": round(sum(counts) / wall), "errors": len(errors),
        "error_samples": errors[:3], "lost_updates": tasks * ops - (counter or 0),
    }  # fmt: skip


def _process(url: str, n: int, ops: int, hot_id: str, start: Any, out: Any) -> None:
    errors = 0
    start.wait()
    t0 = time.perf_counter()
    with SessionStore(url, table_prefix=PREFIX) as store:
        for i in range(ops):
            try:
                s = store.create_session("conc", f"p{n}", {"i": i})
                store.patch_state(s.id, {"seen": True})
                store.patch_state(hot_id, increment={"counter": 1})
            except Exception:
                errors += 1
    out.put((n, ops * 3, time.perf_counter() - t0, errors))


def _processes(url: str, procs: int, ops: int) -> dict[str, Any]:
    with SessionStore(url, table_prefix=PREFIX) as store:
        hot = store.create_session("conc", "hot", {"counter": 0})
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_process, args=(url, n, ops, hot.id, start, out)) for n in range(procs)
    ]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=900) for _ in workers]
    wall = time.perf_counter() - t0
    for w in workers:
        w.join()
    with SessionStore(url, table_prefix=PREFIX) as store:
        final = store.get_session("conc", "hot", hot.id)
    total = sum(r[1] for r in results)
    return {
        "processes": procs, "ops": total, "seconds": round(wall, 3),
        "ops_per_s": round(total / wall), "errors": sum(r[3] for r in results),
        "lost_updates": procs * ops - (final.state["counter"] if final else 0),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/concurrency.json")
    args = parser.parse_args(argv)
    tasks, task_ops, procs, proc_ops = (64, 5, 2, 20) if args.quick else (64, 50, 2, 500)
    runs = 1 if args.quick else args.runs
    report: dict[str, Any] = {}
    for backend in args.db.split(","):
        tmp = tempfile.mkdtemp()
        url = f"sqlite:///{tmp}/conc.db" if backend == "sqlite" else URLS[backend]
        rows: dict[str, list[dict[str, Any]]] = {"async_tasks": [], "processes": []}
        for _ in range(runs):
            if backend != "sqlite":
                drop_sessiondb(url, PREFIX)
            else:
                for f in Path(tmp).glob("conc.db*"):
                    f.unlink()
            rows["async_tasks"].append(asyncio.run(_tasks(url, tasks, task_ops)))
            rows["processes"].append(_processes(url, procs, proc_ops))
        if backend != "sqlite":
            drop_sessiondb(url, PREFIX)
        report[backend] = {
            kind: {**runs_[0], "ops_per_s": statistics.median(r["ops_per_s"] for r in runs_),
                   "errors": sum(r["errors"] for r in runs_),
                   "lost_updates": sum(r["lost_updates"] for r in runs_), "runs": len(runs_)}
            for kind, runs_ in rows.items()
        }  # fmt: skip
    print(f"{'backend':<11} {'workload':<28} {'ops/s (median)':>15} {'errors':>7} {'lost':>5}")
    bad = 0
    for backend, kinds in report.items():
        for kind, r in kinds.items():
            what = (
                f"{r['tasks']} async tasks"
                if kind == "async_tasks"
                else f"{r['processes']} processes"
            )
            figures = f"{r['ops_per_s']:>15,.0f} {r['errors']:>7} {r['lost_updates']:>5}"
            print(f"{backend:<11} {what:<28} {figures}")
            bad += r["errors"] + abs(r["lost_updates"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
