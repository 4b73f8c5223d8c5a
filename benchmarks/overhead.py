"""The hot path's cost of observability: ``get_session`` before and after, A/B interleaved.

    python -m benchmarks.overhead --baseline /path/to/old/src [--db sqlite,postgresql]
        [--fronts sync,async] [--rounds 8] [--calls 3000] [--telemetry off|on]

Each round runs one fresh process per side (the baseline ``src`` and this checkout's), in
alternating order, each timing ``--calls`` ``get_session`` calls five times and keeping its
fastest batch; the figure is the median over rounds of the per-round ratio, so a machine that
slows down during the run slows both sides alike. An empty operation (``Backend.call`` of a
function that runs no statement: the lease-free path through the runner) is timed the same
way; the median difference in ns is what the change adds to every call, with far less noise
than a database round trip has. ``--telemetry on`` opens this checkout's
store with the OpenTelemetry SDK (no exporter) to show what turning it on costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, sys, tempfile, time
db, front, calls, telemetry = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import sessiondb
from sessiondb import AsyncSessionStore, SessionStore
options = {}
if telemetry == "on":
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    options["telemetry"] = sessiondb.Telemetry(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider())
url = db if "://" in db else f"sqlite:///{tempfile.mkdtemp()}/b.db"
state = {"step": 3, "language": "en", "preferences": {"theme": "dark"}}

def best(run):
    times = []
    for _ in range(5):
        t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
    return min(times) / calls * 1e6

if front == "sync":
    store = SessionStore(url, table_prefix="ovh_", **options)
    s = store.create_session("app", "u", state)
    def run():
        for _ in range(calls):
            store.get_session("app", "u", s.id)
    run()
    got = best(run)
    backend = store._backend
    def noop(cx):
        return None
    def run_noop():
        for _ in range(calls):
            backend.call(noop)
    run_noop()
    print(got, best(run_noop)); store.delete_session(s.id); store.close()
else:
    async def main():
        store = AsyncSessionStore(url, table_prefix="ovh_", **options)
        s = await store.create_session("app", "u", state)
        async def run_async():
            for _ in range(calls):
                await store.get_session("app", "u", s.id)
        loop = asyncio.get_running_loop()
        await run_async()
        times = []
        for _ in range(5):
            t = time.perf_counter(); await run_async(); times.append(time.perf_counter() - t)
        got = min(times) / calls * 1e6
        backend = store._backend
        def noop(cx):
            return None
        async def run_noop():
            for _ in range(calls):
                await backend.call(noop)
        await run_noop()
        times = []
        for _ in range(5):
            t = time.perf_counter(); await run_noop(); times.append(time.perf_counter() - t)
        print(got, min(times) / calls * 1e6)
        await store.delete_session(s.id); await store.close()
    asyncio.run(main())
"""


def run(src: Path, db: str, front: str, calls: int, telemetry: str) -> tuple[float, float]:
    """``get_session``'s and an empty operation's µs per call, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, db, front, str(calls), telemetry],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    get, empty = out.stdout.split()[-2:]
    return float(get), float(empty)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, type=Path, help="the old checkout's src/")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--fronts", default="sync,async")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--telemetry", choices=("off", "on"), default="off")
    parser.add_argument(
        "--postgresql-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server where a scratch database may be created and dropped",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import sqlalchemy as sa

    scratch = None
    admin = None
    dbs = {}
    for db in args.db.split(","):
        if db == "postgresql":
            scratch = f"sdb_overhead_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(
                args.postgresql_url.replace("postgresql://", "postgresql+psycopg://"),
                isolation_level="AUTOCOMMIT",
            )
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {scratch}")
            dbs[db] = args.postgresql_url.rsplit("/", 1)[0] + f"/{scratch}"
        else:
            dbs[db] = db
    try:
        print(f"get_session, µs per call (fastest of 5 batches of {args.calls}), "
              f"{args.rounds} rounds, this checkout with telemetry {args.telemetry}")  # fmt: skip
        print(
            "| backend | front end | before | after | after / before (median of rounds) "
            "| empty operation: after - before (ns) | that, / get_session |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, db in dbs.items():
            for front in args.fronts.split(","):
                before, after, ratios, added = [], [], [], []
                for i in range(args.rounds):
                    sides = [("before", args.baseline), ("after", ROOT / "src")]
                    if i % 2:
                        sides.reverse()
                    got = {}
                    for side, src in sides:
                        telemetry = args.telemetry if side == "after" else "off"
                        got[side] = run(src, db, front, args.calls, telemetry)
                    before.append(got["before"][0])
                    after.append(got["after"][0])
                    ratios.append(got["after"][0] / got["before"][0])
                    added.append((got["after"][1] - got["before"][1]) * 1000)
                extra = statistics.median(added)
                print(
                    f"| {name} | {front} | {statistics.median(before):.1f} | "
                    f"{statistics.median(after):.1f} | {statistics.median(ratios):.3f} | "
                    f"{extra:.0f} | {extra / 1000 / statistics.median(before):.2%} |",
                    flush=True,
                )
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
