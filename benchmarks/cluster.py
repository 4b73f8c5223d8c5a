"""Cluster benchmark: failover as the app sees it, reads on replicas, replica lag.

Run from the repository root (as root or as a user who may run PostgreSQL)::

    python -m benchmarks.cluster                    # every part, both front ends
    python -m benchmarks.cluster --quick            # shorter phases: a smoke run
    python -m benchmarks.cluster --parts failover   # failover,reads,lag

Every part runs on a PRIVATE set of PostgreSQL 15 servers that ``tools/cluster.sh start pg``
starts in a temporary directory on ``--port`` (default 5591: primary; +1 the synchronous
standby ``s1``; +2 an asynchronous standby), and stops by PID at the end, whatever happens.
The shared cluster (5441...) and the servers on 5432/3306 are never touched.

1. **Failover** (``--runs`` times per front end, a fresh set each time). A writer loops
   ``patch_state(sid, increment={"n": 1})`` through the multi-host URL ``postgresql://...@p0,p1,p2/db?
   target_session_attrs=read-write``. After ``--warmup`` seconds the primary and its children
   are killed with SIGKILL; ``--detect`` seconds later (what a failover manager takes to
   notice) the synchronous standby's ``synchronous_standby_names`` is cleared and it is
   promoted with ``pg_ctl promote``. The writer goes on for ``--after`` seconds after its first
   success on the new primary. Reported: the seconds with failed calls (first failure to last
   failure), the outage (kill to first acknowledged write after it), the errors by class, and
   **acknowledged writes lost**: acknowledged increments minus the counter read on the new
   primary (must be 0: the standby was synchronous). ``OutcomeUnknownError`` calls may or may
   not have landed; the counter is checked to lie between acknowledged and acknowledged + unknown.
2. **Reads** (one set, seeded with ``--sessions`` sessions). ``get_session`` on random sessions
   for ``--seconds`` by ``--threads`` threads on a sync store, then by as many tasks on an
   async store, with 0, 1 and 2 replicas in ``read_urls`` (``--read-consistency``, default
   ``read_your_writes``), and with the primary itself as the one "replica" (what the routing
   costs, the servers being equal), in ``--rounds`` alternating rounds. Reported: ops/s, and the
   transactions each server counted (``pg_stat_database``, flushed up to a second late, so
   approximate), which shows where the reads went. All servers share this machine's cores
   with the client, so more replicas add no CPU here: the figure shows the routing's cost,
   not a cluster's capacity.
3. **Lag** (same set). ``--threads`` writers each loop ``patch_state`` + ``append_event`` (a
   1 KB event) for ``--seconds``, while the primary's ``pg_stat_replication`` is sampled every
   50 ms: ``replay_lag`` and the LSN distance (bytes) from the primary's current WAL position to
   what each standby replayed. Reported: p50 / p95 / max per standby, the write rate, and how
   long the async standby took to catch up once the writes stopped.

A line per measurement goes to stdout; everything to ``--json`` (default
``benchmarks/results/cluster.json``). The exit status is 1 when a failover lost an
acknowledged write, left the counter outside its bounds, or left the writer hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from sessiondb import AsyncSessionStore, SessionStore
from sessiondb.errors import OutcomeUnknownError, SessionDBError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "cluster.sh"
PG_BIN = Path(os.environ.get("SESSIONDB_PG_BIN", "/usr/lib/postgresql/15/bin"))
RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
DB = "bench"
APP = "bench-cluster"


def log(msg: str) -> None:
    print(msg, flush=True)


# -- a private primary and two standbys ----------------------------------------------------------


class PrivateCluster:
    """``tools/cluster.sh start pg`` in a directory of its own; stopped by PID in :meth:`close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="sessiondb-bench-cluster-"))
        self.env = {
            **os.environ,
            "SESSIONDB_CLUSTER_DIR": str(self.dir),
            "SESSIONDB_CLUSTER_PG_PORT": str(port),
        }
        self.killed: set[int] = set()

    def start(self) -> float:
        t0 = time.perf_counter()
        done = subprocess.run(
            ["bash", str(SCRIPT), "start", "pg"], env=self.env, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            self.close()
            raise RuntimeError(f"tools/cluster.sh start pg failed:\n{done.stderr[-3000:]}")
        self.admin(0, f'CREATE DATABASE "{DB}"')
        return time.perf_counter() - t0

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(
                ["bash", str(SCRIPT), "destroy"], env=self.env, capture_output=True,
                timeout=120, check=False,
            )  # fmt: skip
        for node in range(3):  # whatever the script could not stop
            pid = self.pid(node)
            if pid is not None and _cmdline(pid).find(str(self.dir)) >= 0:
                _kill_tree(pid)
        shutil.rmtree(self.dir, ignore_errors=True)

    def node_port(self, node: int) -> int:
        return self.port + node

    def url(self, node: int, database: str = DB) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.node_port(node)}/{database}"

    def multi_host_url(self, database: str = DB) -> str:
        hosts = ",".join(f"127.0.0.1:{self.node_port(n)}" for n in range(3))
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def connect(self, node: int, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.node_port(node), user="postgres", dbname=database,
            autocommit=True, connect_timeout=3,
        )  # fmt: skip

    def admin(self, node: int, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(node, database) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def pid(self, node: int) -> int | None:
        try:
            return int((self.dir / f"pg{node}" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self, node: int) -> None:
        """SIGKILL the postmaster and every child of it: a crash of the server."""
        pid = self.pid(node)
        assert pid is not None, f"pg{node} has no postmaster.pid"
        _kill_tree(pid)

    def promote(self, node: int) -> dict[str, float]:
        """Promote a standby, first dropping the synchronous standby it would wait for.

        Returns the seconds each step took."""
        t0 = time.perf_counter()
        self.admin(node, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self.admin(node, "SELECT pg_reload_conf()")
        t1 = time.perf_counter()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_pg, str(PG_BIN / "pg_ctl"), "promote", "-w", "-t", "60", "-D",
             str(self.dir / f"pg{node}")],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        return {"configure": t1 - t0, "pg_ctl_promote": time.perf_counter() - t1}

    def caught_up(self) -> bool:
        """Every standby has replayed everything the primary has written."""
        rows = self.admin(
            0,
            "SELECT count(*) FROM pg_stat_replication"
            " WHERE replay_lsn >= pg_current_wal_lsn() AND state = 'streaming'",
        )
        return int(rows[0][0]) == 2

    def xacts(self, node: int) -> int:
        rows = self.admin(
            node, f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{DB}'"
        )
        return int(rows[0][0])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = (entry / "stat").read_text()
                if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def _kill_tree(pid: int) -> None:
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        status = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
        if not status or status[status.rindex(")") + 2] == "Z":
            break
        time.sleep(0.01)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- 1. failover ---------------------------------------------------------------------------------


@dataclass
class Call:
    start: float
    end: float
    outcome: str  # "ok" or the error's class name


@dataclass
class WriterLog:
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    first_ok_after: float | None = None  # set by the writer: its first success after `mark`
    mark: float | None = None


def _record(log_: WriterLog, start: float, outcome: str) -> None:
    end = time.perf_counter()
    log_.calls.append(Call(start, end, outcome))
    if (
        outcome == "ok"
        and log_.mark is not None
        and start > log_.mark
        and log_.first_ok_after is None
    ):
        log_.first_ok_after = end


def _sync_writer(url: str, sid: str, log_: WriterLog, connect_timeout: float) -> None:
    with SessionStore(url, connect_timeout=connect_timeout) as store:
        while not log_.stop.is_set():
            start = time.perf_counter()
            try:
                store.patch_state(sid, increment={"n": 1})
                outcome = "ok"
            except SessionDBError as exc:
                outcome = type(exc).__name__
            _record(log_, start, outcome)


async def _async_writer(url: str, sid: str, log_: WriterLog, connect_timeout: float) -> None:
    async with AsyncSessionStore(url, connect_timeout=connect_timeout) as store:
        while not log_.stop.is_set():
            start = time.perf_counter()
            try:
                await store.patch_state(sid, increment={"n": 1})
                outcome = "ok"
            except SessionDBError as exc:
                outcome = type(exc).__name__
            _record(log_, start, outcome)


def failover(front: str, args: argparse.Namespace) -> dict[str, Any]:
    cluster = PrivateCluster(args.port)
    try:
        started = cluster.start()
        log(f"failover [{front}]: private cluster up in {started:.1f}s on port {args.port}")
        url = cluster.multi_host_url()
        with SessionStore(cluster.url(0)) as setup:
            sid = setup.create_session(APP, "writer", {"n": 0}).id
        writer = WriterLog()
        if front == "sync":
            thread = threading.Thread(
                target=_sync_writer, args=(url, sid, writer, args.connect_timeout), daemon=True
            )
        else:
            thread = threading.Thread(
                target=lambda: asyncio.run(
                    _async_writer(url, sid, writer, args.connect_timeout)
                ),
                daemon=True,
            )  # fmt: skip
        thread.start()
        time.sleep(args.warmup)
        t_kill = time.perf_counter()
        cluster.crash(0)
        writer.mark = time.perf_counter()  # calls started from here on cannot reach pg0
        time.sleep(args.detect)
        t_promote0 = time.perf_counter()
        steps = cluster.promote(1)
        t_promoted = time.perf_counter()
        log(f"failover [{front}]: primary killed; promotion took {t_promoted - t_promote0:.2f}s")
        deadline = t_promoted + args.timeout
        while writer.first_ok_after is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        recovered = writer.first_ok_after
        time.sleep(args.after)
        writer.stop.set()
        thread.join(args.timeout)
        hung = thread.is_alive()
        counter = int(
            cluster.admin(
                1, f"SELECT (state::jsonb->>'n')::int FROM sessions WHERE id = '{sid}'", DB
            )[0][0]
        )
    finally:
        cluster.close()
    calls = writer.calls
    failed = [c for c in calls if c.outcome != "ok"]
    acked = sum(c.outcome == "ok" for c in calls)
    unknown = sum(c.outcome == OutcomeUnknownError.__name__ for c in calls)
    lost = max(0, acked - counter)
    result = {
        "front_end": front,
        "calls": len(calls),
        "acknowledged": acked,
        "failed": len(failed),
        "outcome_unknown": unknown,
        "errors": dict(Counter(c.outcome for c in failed)),
        "counter_on_new_primary": counter,
        "acknowledged_writes_lost": lost,
        "counter_within_bounds": acked <= counter <= acked + unknown,
        "seconds_with_failed_calls": (failed[-1].end - failed[0].start) if failed else 0.0,
        "outage_kill_to_first_ok": (recovered - t_kill) if recovered else None,
        "promote_to_first_ok": (recovered - t_promoted) if recovered else None,
        "detect_delay": args.detect,
        "promote_seconds": t_promoted - t_promote0,
        "promote_steps": steps,
        "slowest_failed_call": max((c.end - c.start for c in failed), default=0.0),
        "writer_hung": hung,
    }
    log(
        f"failover [{front}]: {acked} acknowledged, {len(failed)} failed "
        f"({result['errors']}), lost {lost}; failed calls for "
        f"{result['seconds_with_failed_calls']:.2f}s, outage {result['outage_kill_to_first_ok']}"
    )
    return result


# -- 2. reads on replicas ------------------------------------------------------------------------


#: read set-ups: label -> the nodes in read_urls (0 = the primary itself: the router's own cost)
READ_SETUPS: dict[str, tuple[int, ...]] = {"0": (), "1": (1,), "2": (1, 2), "primary": (0,)}


def _store_for(cluster: PrivateCluster, nodes: tuple[int, ...], front: str, args: Any) -> Any:
    options: dict[str, Any] = {"pool_size": args.threads}
    if nodes:
        options["read_urls"] = [cluster.url(n) for n in nodes]
        options["read_consistency"] = args.read_consistency
    cls = SessionStore if front == "sync" else AsyncSessionStore
    return cls(cluster.url(0), **options)


def _sync_reads(store: SessionStore, ids: list[str], threads: int, seconds: float) -> int:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        rnd = random.Random(i)
        while time.perf_counter() < stop:
            got = store.get_session(APP, "reader", rnd.choice(ids))
            assert got is not None
            counts[i] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts)


async def _async_reads(store: AsyncSessionStore, ids: list[str], tasks: int, seconds: float) -> int:
    stop = time.perf_counter() + seconds

    async def loop(i: int) -> int:
        rnd, n = random.Random(i), 0
        while time.perf_counter() < stop:
            got = await store.get_session(APP, "reader", rnd.choice(ids))
            assert got is not None
            n += 1
        return n

    return sum(await asyncio.gather(*(loop(i) for i in range(tasks))))


async def _reads_one_front(
    cluster: PrivateCluster, front: str, ids: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every set-up on its own store, measured in alternating rounds (load drifts on a shared
    machine hit them alike); the sync stores run in threads, the async ones as tasks."""
    labels = list(READ_SETUPS)
    stores = {k: _store_for(cluster, READ_SETUPS[k], front, args) for k in labels}

    async def measure(k: str, seconds: float) -> int:
        if front == "sync":
            return await asyncio.to_thread(_sync_reads, stores[k], ids, args.threads, seconds)
        return await _async_reads(stores[k], ids, args.threads, seconds)

    ops = dict.fromkeys(labels, 0)
    wall = dict.fromkeys(labels, 0.0)
    xacts = {k: [0, 0, 0] for k in labels}
    try:
        for k in labels:
            await measure(k, 0.5)  # warm the pools (and the replicas' replay positions)
        for r in range(args.rounds):
            shift = r % len(labels)
            for k in labels[shift:] + labels[:shift]:
                before = [cluster.xacts(n) for n in range(3)]
                t0 = time.perf_counter()
                ops[k] += await measure(k, args.seconds / args.rounds)
                wall[k] += time.perf_counter() - t0
                after = [cluster.xacts(n) for n in range(3)]
                xacts[k] = [x + a - b for x, a, b in zip(xacts[k], after, before, strict=True)]
    finally:
        for store in stores.values():
            closed = store.close()
            if asyncio.iscoroutine(closed):
                await closed
    rows = []
    for k in labels:
        row = {
            "front_end": front,
            "read_urls": k,
            "read_consistency": args.read_consistency if READ_SETUPS[k] else None,
            "workers": args.threads,
            "ops": ops[k],
            "ops_per_s": ops[k] / wall[k],
            "transactions_per_server": xacts[k],
        }
        rows.append(row)
        log(
            f"reads [{front}] read_urls={k}: {row['ops_per_s']:.0f} get_session/s, "
            f"transactions on primary/s1/s2 {row['transactions_per_server']}"
        )
    return rows


def reads(cluster: PrivateCluster, args: argparse.Namespace) -> list[dict[str, Any]]:
    with SessionStore(cluster.url(0)) as setup:
        state = {"text": "x" * 250, "n": 0}
        ids = [setup.create_session(APP, "reader", state).id for _ in range(args.sessions)]
    wait_until(cluster.caught_up, "the standbys to replay the seed")
    results = []
    for front in ("sync", "async"):
        results += asyncio.run(_reads_one_front(cluster, front, ids, args))
    return results


# -- 3. replica lag ------------------------------------------------------------------------------


def lag(cluster: PrivateCluster, args: argparse.Namespace) -> dict[str, Any]:
    with SessionStore(cluster.url(0)) as setup:
        ids = [setup.create_session(APP, f"w{i}", {"n": 0}).id for i in range(args.threads)]
    samples: dict[str, dict[str, list[float]]] = {
        "s1": {"bytes": [], "replay_lag_ms": []},
        "s2": {"bytes": [], "replay_lag_ms": []},
    }
    stop = threading.Event()
    writes = [0] * args.threads
    blob = "y" * 1000

    def writer(i: int) -> None:
        with SessionStore(cluster.url(0)) as store:
            while not stop.is_set():
                store.patch_state(ids[i], increment={"n": 1})
                store.append_event(ids[i], "user", {"text": blob})
                writes[i] += 2

    def sampler() -> None:
        with cluster.connect(0) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
                    " extract(epoch FROM replay_lag) FROM pg_stat_replication"
                ).fetchall()
                for name, distance, replay in rows:
                    if name in samples:
                        samples[name]["bytes"].append(float(distance or 0))
                        if replay is not None:
                            samples[name]["replay_lag_ms"].append(float(replay) * 1000)
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(args.threads)]
    threads.append(threading.Thread(target=sampler))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    catch_up = wait_until(cluster.caught_up, "the standbys to catch up")
    result: dict[str, Any] = {
        "writers": args.threads,
        "writes_per_s": sum(writes) / wall,
        "catch_up_after_stop_s": catch_up,
    }
    for name, series in samples.items():
        result[name] = {
            key: {
                "p50": pct(values, 50),
                "p95": pct(values, 95),
                "max": max(values, default=float("nan")),
                "samples": len(values),
            }
            for key, values in series.items()
        }
    s1, s2 = result["s1"], result["s2"]
    log(
        f"lag: {result['writes_per_s']:.0f} writes/s; replay lag p50/max s1 (sync) "
        f"{s1['replay_lag_ms']['p50']:.1f}/{s1['replay_lag_ms']['max']:.1f} ms, "
        f"{s1['bytes']['max']:.0f} B max; s2 (async) "
        f"{s2['replay_lag_ms']['p50']:.1f}/{s2['replay_lag_ms']['max']:.1f} ms, "
        f"{s2['bytes']['max']:.0f} B max; caught up {catch_up:.2f}s after the writes"
    )
    return result


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--parts", default="failover,reads,lag", help="comma list")
    parser.add_argument("--port", type=int, default=5591, help="private primary's port (+1, +2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="writes before the kill (s)")
    parser.add_argument("--detect", type=float, default=1.0, help="kill to promotion (s)")
    parser.add_argument("--after", type=float, default=2.0, help="writes after recovery (s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up waiting (s)")
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--sessions", type=int, default=500, help="sessions seeded for reads")
    parser.add_argument("--threads", type=int, default=8, help="readers / writers")
    parser.add_argument("--seconds", type=float, default=5.0, help="each read / lag phase (s)")
    parser.add_argument("--runs", type=int, default=3, help="failovers per front end")
    parser.add_argument("--rounds", type=int, default=3, help="alternating read rounds")
    parser.add_argument(
        "--read-consistency", default="read_your_writes", help="the replicas' read_consistency"
    )
    parser.add_argument("--quick", action="store_true", help="1 s phases, 100 sessions")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.after, args.seconds, args.sessions = 1.0, 1.0, 1.0, 100
        args.rounds = args.runs = 1
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - {"failover", "reads", "lag"}:
        parser.error(f"unknown parts: {sorted(unknown)}")
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": os.getloadavg()[0],
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
    }
    ok = True
    if "failover" in parts:
        runs = [failover(front, args) for _ in range(args.runs) for front in ("sync", "async")]
        results["failover"] = runs
        for front in ("sync", "async"):
            mine = [r for r in runs if r["front_end"] == front]
            gaps = [r["seconds_with_failed_calls"] for r in mine]
            log(
                f"failover [{front}] over {len(mine)} runs: failed calls for "
                f"{statistics.median(gaps):.2f}s median ({min(gaps):.2f}-{max(gaps):.2f}s) with "
                f"{args.detect:.1f}s to detect; acknowledged writes lost: "
                f"{sum(r['acknowledged_writes_lost'] for r in mine)}"
            )
        ok = all(
            r["acknowledged_writes_lost"] == 0
            and r["counter_within_bounds"]
            and not r["writer_hung"]
            for r in results["failover"]
        )
    if "reads" in parts or "lag" in parts:
        cluster = PrivateCluster(args.port)
        try:
            cluster.start()
            if "reads" in parts:
                results["reads"] = reads(cluster, args)
            if "lag" in parts:
                results["lag"] = lag(cluster, args)
        finally:
            cluster.close()
    results["meta"]["load_end"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
