"""The hot path's cost of observability: an operation before and after, A/B interleaved.

    python -m benchmarks.overhead --baseline stripped|/path/to/old/src [--db sqlite,postgresql]
        [--fronts sync,async] [--ops get_session,patch_state] [--rounds 8] [--calls 3000]
        [--write-calls 500] [--telemetry off|on]

``--baseline stripped`` compares with a copy of this checkout's ``src`` whose observability
hooks are compiled out (``stripped_src``: each ``if self.log is not None:`` and ``if
...telemetry is not None:`` becomes ``if False:``, which CPython drops, and an operation no
longer asks whether ``sessiondb.sql`` logs): the same code but for the hooks, so nothing else
that changed since the feature landed is measured. A path compares with another checkout's
``src`` (e.g. the commit before the feature).

Each round runs one fresh process per side (the baseline and this checkout's), in
alternating order, each timing ``--calls`` calls of the operation (``get_session`` on a
one-session database; ``patch_state``, an increment, with ``--write-calls``; SQLite writes
with ``sqlite_durability="fast"``, so that fsync's noise does not hide the Python path) five
times and keeping its fastest batch; the figure is the median over rounds of the per-round
ratio, so a machine that slows down during the run slows both sides alike. An empty
operation (``Backend.call`` of a function that runs no statement: the lease-free path through
the runner) is timed the same way; the median difference in ns is what the change adds to
every call, with far less noise than a database round trip has.

``--paired`` (with ``--baseline stripped``) times both sides in one process instead: the
stripped copy is imported as ``sessiondb_before`` beside ``sessiondb``, both stores work on the
same database and session, and ``--batches`` pairs of batches alternate A/B and B/A, so load
that comes and goes on a shared machine hits both sides within milliseconds; each round's
figure is the median of its paired-batch ratios. ``--telemetry on`` opens this checkout's
store with the OpenTelemetry SDK (no exporter) to show what turning it on costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, sys, tempfile, time
db, front, calls, telemetry, op = sys.argv[1:3] + [int(sys.argv[3])] + sys.argv[4:6]
import sessiondb
from sessiondb import AsyncSessionStore, SessionStore
options = {}
if telemetry == "on":
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    options["telemetry"] = sessiondb.Telemetry(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider())
url = db if "://" in db else f"sqlite:///{tempfile.mkdtemp()}/b.db"
if op != "get_session" and "://" not in db:
    options["sqlite_durability"] = "fast"
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
        if op == "get_session":
            for _ in range(calls):
                store.get_session("app", "u", s.id)
        else:
            for _ in range(calls):
                store.patch_state(s.id, increment={"n": 1})
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
            if op == "get_session":
                for _ in range(calls):
                    await store.get_session("app", "u", s.id)
            else:
                for _ in range(calls):
                    await store.patch_state(s.id, increment={"n": 1})
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


PAIRED = r"""
import asyncio, statistics, sys, tempfile, time
db, front, op = sys.argv[1:4]
batches, calls, before_dir = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
now = time.process_time if sys.argv[7] == "cpu" else time.perf_counter
sys.path.insert(0, before_dir)
import sessiondb, sessiondb_before
url = db if "://" in db else f"sqlite:///{tempfile.mkdtemp()}/b.db"
options = {"table_prefix": "ovh_"}
if op != "get_session" and "://" not in db:
    options["sqlite_durability"] = "fast"
state = {"step": 3, "language": "en", "preferences": {"theme": "dark"}}

def noop(cx):
    return None

def report(times):
    ratios = [a / b for a, b in zip(times["after"], times["before"])]
    print(min(times["before"]) / calls * 1e6, min(times["after"]) / calls * 1e6,
          statistics.median(ratios))

if front == "sync":
    after = sessiondb.SessionStore(url, **options)  # first: it makes the schema
    before = sessiondb_before.SessionStore(url, **options)
    sid = after.create_session("app", "u", state).id
    def batch(store, what):
        if what == "noop":
            call = store._backend.call
            t = now()
            for _ in range(calls):
                call(noop)
        elif what == "get_session":
            t = now()
            for _ in range(calls):
                store.get_session("app", "u", sid)
        else:
            t = now()
            for _ in range(calls):
                store.patch_state(sid, increment={"n": 1})
        return now() - t
    for what in (op, "noop"):
        times = {"before": [], "after": []}
        for i in range(batches + 2):  # two warm-up pairs
            sides = [("before", before), ("after", after)][:: 1 if i % 2 else -1]
            for side, store in sides:
                took = batch(store, what)
                if i >= 2:
                    times[side].append(took)
        report(times)
    after.delete_session(sid); after.close(); before.close()
else:
    async def main():
        after = sessiondb.AsyncSessionStore(url, **options)
        before = sessiondb_before.AsyncSessionStore(url, **options)
        sid = (await after.create_session("app", "u", state)).id
        async def batch(store, what):
            if what == "noop":
                call = store._backend.call
                t = now()
                for _ in range(calls):
                    await call(noop)
            elif what == "get_session":
                t = now()
                for _ in range(calls):
                    await store.get_session("app", "u", sid)
            else:
                t = now()
                for _ in range(calls):
                    await store.patch_state(sid, increment={"n": 1})
            return now() - t
        for what in (op, "noop"):
            times = {"before": [], "after": []}
            for i in range(batches + 2):
                sides = [("before", before), ("after", after)][:: 1 if i % 2 else -1]
                for side, store in sides:
                    took = await batch(store, what)
                    if i >= 2:
                        times[side].append(took)
            report(times)
        await after.delete_session(sid); await after.close(); await before.close()
    asyncio.run(main())
"""


def paired(
    before_dir: Path, db: str, front: str, op: str, batches: int, calls: int, clock: str
) -> tuple[float, float, float, float, float, float]:
    """One process timing both sides in alternating batches: the operation's fastest µs per
    call before and after and the median ratio of paired batches, then the same for an empty
    operation."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [db, front, op, str(batches), str(calls), str(before_dir), clock]
    out = subprocess.run(
        [sys.executable, "-c", PAIRED, *argv], env=env, capture_output=True, text=True, check=True
    )
    lines = out.stdout.split("\n")
    a, b, c = (float(x) for x in lines[-3].split())
    d, e, f = (float(x) for x in lines[-2].split())
    return a, b, c, d, e, f


#: the observability hooks on the hot path, and what ``stripped_src`` makes of them
HOOKS = {
    "op_name(fn, args) if _logs_statements(logging.DEBUG) else None": "None",
    "if self.log is not None:": "if False:",
    "if self.runner.telemetry is not None:": "if False:",
    "if self.telemetry is not None:": "if False:",
}


def stripped_src(into: Path, strip: bool = True) -> Path:
    """A copy of this checkout's ``src`` with the observability hooks compiled out (or, with
    ``strip=False``, an exact copy: the A/A control that shows the method's own noise)."""
    target = into / "src"
    shutil.copytree(ROOT / "src", target, ignore=shutil.ignore_patterns("__pycache__"))
    if not strip:
        return target
    found = dict.fromkeys(HOOKS, 0)
    for path in (target / "sessiondb").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for hook, replacement in HOOKS.items():
            found[hook] += text.count(hook)
            text = text.replace(hook, replacement)
        path.write_text(text, encoding="utf-8")
    missing = [hook for hook, n in found.items() if not n]
    if missing:  # the code moved on: say so rather than measure nothing
        raise SystemExit(f"stripped_src: not found in src/sessiondb: {missing}")
    return target


def run(src: Path, db: str, front: str, calls: int, telemetry: str, op: str) -> tuple[float, float]:
    """The operation's and an empty operation's µs per call, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, db, front, str(calls), telemetry, op],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    get, empty = out.stdout.split()[-2:]
    return float(get), float(empty)


def paired_table(args: argparse.Namespace, dbs: dict[str, str], before_dir: Path, what: str) -> int:
    print(
        f"µs per call (fastest batch of {args.calls} reads / {args.write_calls} writes), "
        f"{args.rounds} processes x {args.batches} alternating batch pairs, {args.clock} "
        f"clock; before: {what}; after: this checkout, telemetry off"
    )
    print(
        "| backend | front end | operation | before | after | after / before (median of "
        "rounds of paired-batch medians) | empty operation: after - before (ns) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, db in dbs.items():
        for front in args.fronts.split(","):
            for op in args.ops.split(","):
                calls = args.calls if op == "get_session" else args.write_calls
                got = [
                    paired(before_dir, db, front, op, args.batches, calls, args.clock)
                    for _ in range(args.rounds)
                ]
                before = statistics.median(g[0] for g in got)
                after = statistics.median(g[1] for g in got)
                ratio = statistics.median(g[2] for g in got)
                added = statistics.median((g[4] - g[3]) * 1000 for g in got)
                print(
                    f"| {name} | {front} | {op} | {before:.1f} | {after:.1f} | {ratio:.3f} "
                    f"| {added:.0f} |",
                    flush=True,
                )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        required=True,
        help="'stripped' (this src without the hooks), 'copy' (A/A control) or a src/ path",
    )
    parser.add_argument("--ops", default="get_session,patch_state")
    parser.add_argument(
        "--paired", action="store_true",
        help="with --baseline stripped: one process per round imports both sides (the stripped "
        "copy as sessiondb_before) and times them in alternating batches (--batches of --calls)",
    )  # fmt: skip
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="with --paired: cpu times the process's CPU (time.process_time): the client's Python "
        "path, where the hooks are, without the time other processes take the CPU away",
    )  # fmt: skip
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--fronts", default="sync,async")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--write-calls", type=int, default=500)
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
    tmp = tempfile.TemporaryDirectory(prefix="sdb_overhead_")
    try:
        if args.baseline in ("stripped", "copy"):
            baseline = stripped_src(Path(tmp.name), strip=args.baseline == "stripped")
            what = (
                "this checkout without its observability hooks"
                if args.baseline == "stripped"
                else "an exact copy of this checkout (A/A control)"
            )
            if args.paired:
                before_dir = Path(tmp.name) / "paired"
                shutil.copytree(baseline / "sessiondb", before_dir / "sessiondb_before")
                return paired_table(args, dbs, before_dir, what)
        elif args.paired:
            parser.error("--paired needs --baseline stripped or copy (the sides share a schema)")
        else:
            baseline, what = Path(args.baseline), f"{args.baseline}"
        print(
            f"µs per call (fastest of 5 batches of {args.calls} reads / {args.write_calls} "
            f"writes), median of {args.rounds} rounds; before: {what}; after: this checkout, "
            f"telemetry {args.telemetry}"
        )
        print(
            "| backend | front end | operation | before | after "
            "| after / before (median of rounds) | empty operation: after - before (ns) |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, db in dbs.items():
            for front in args.fronts.split(","):
                for op in args.ops.split(","):
                    calls = args.calls if op == "get_session" else args.write_calls
                    before, after, ratios, added = [], [], [], []
                    for i in range(args.rounds):
                        sides = [("before", baseline), ("after", ROOT / "src")]
                        if i % 2:
                            sides.reverse()
                        got = {}
                        for side, src in sides:
                            telemetry = args.telemetry if side == "after" else "off"
                            got[side] = run(src, db, front, calls, telemetry, op)
                        before.append(got["before"][0])
                        after.append(got["after"][0])
                        ratios.append(got["after"][0] / got["before"][0])
                        added.append((got["after"][1] - got["before"][1]) * 1000)
                    print(
                        f"| {name} | {front} | {op} | {statistics.median(before):.1f} | "
                        f"{statistics.median(after):.1f} | {statistics.median(ratios):.3f} | "
                        f"{statistics.median(added):.0f} |",
                        flush=True,
                    )
    finally:
        tmp.cleanup()
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
