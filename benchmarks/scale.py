"""Scale benchmark: latency at N sessions against 1,000, and purging N expired sessions.

Run from the repository root::

    python -m benchmarks.scale --db sqlite,postgresql            # 1,000,000 sessions, 100,000 users
    python -m benchmarks.scale --db sqlite --quick                # 20,000 / 2,000: a smoke run

Per backend:

1. **Seed.** Two stores of their own (table prefixes ``scale1k_`` and ``scale_``; on SQLite two
   files in a temp dir) get their schema from sessiondb, then rows are bulk inserted with
   SQLAlchemy Core straight into sessiondb's ``sessions`` table: 1,000 sessions over
   1,000 * U / N users (the same sessions per user as the big one), and N sessions over U
   users. Each state is about 300 bytes of JSON. Then ANALYZE (VACUUM ANALYZE on PostgreSQL).
2. **Latency.** ``get_session``, ``patch_state(sid, {"k": i})`` and the first page of a user's
   listing (``list_sessions(app, user, limit=20)``), on random existing sessions and users,
   one op at a time. The two sizes are measured in alternating rounds (so machine load drifts
   hit both alike) after an untimed warm-up; p50 / p99 / mean / max in ms, and the ratio
   N / 1k of p50 and p99 (target: <= 1.5).
3. **Purge.** Every one of the N sessions is made expired (one UPDATE, untimed), 1,000 live
   sessions are added, and ``purge_expired(batch_size=...)`` runs in one thread while another
   thread (with a store of its own) alternates ``get_session`` and ``patch_state`` on the live
   sessions until the purge returns. Reported: purge time and rate, and p50 / p99 / max
   latency of the concurrent ops (target: max <= ~100 ms), next to the same ops without purge.

Every table made is dropped at the end (and before, if a previous run left one behind).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from sessiondb import SessionStore
from sessiondb._schema import tables
from sessiondb._urls import resolve_url

from .targets import create_database, drop_database, drop_sessiondb

APP = "scale-app"
PREFIX_K = "scale1k_"
PREFIX_N = "scale_"
BASE_SESSIONS = 1_000
SEED_BATCH = 10_000
PAGE = 20
TARGET_RATIO = 1.5
TARGET_BLOCK_MS = 100.0
SERVER_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test_scale",
    "mysql": "mysql://root@127.0.0.1:3306/test_scale",
}
URL_ENV = {"postgresql": "SESSIONDB_SCALE_POSTGRESQL_URL", "mysql": "SESSIONDB_SCALE_MYSQL_URL"}
RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
OPS = ("get", "update", "list")


# -- small helpers -------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def stats(ms: list[float]) -> dict[str, float]:
    """Nearest-rank p50 / p99, mean and max of latencies in ms."""
    if not ms:
        return {
            "n": 0,
            "p50": float("nan"),
            "p99": float("nan"),
            "mean": float("nan"),
            "max": float("nan"),
        }
    s = sorted(ms)

    def rank(q: float) -> float:
        return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]

    return {
        "n": len(s),
        "p50": round(rank(0.50), 3),
        "p99": round(rank(0.99), 3),
        "mean": round(sum(s) / len(s), 3),
        "max": round(s[-1], 3),
    }


def session_id(namespace: str, i: int) -> str:
    """A UUID4-shaped id, random-looking but derived from (namespace, i)."""
    digest = hashlib.blake2b(f"{namespace}:{i}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def user_id(i: int, users: int) -> str:
    return f"user-{i % users:07d}"


@dataclass
class Population:
    """Sessions ``0 .. count-1`` of one store: ids from ``namespace``, users round robin."""

    namespace: str
    count: int
    users: int

    def sid(self, i: int) -> str:
        return session_id(self.namespace, i)

    def user(self, i: int) -> str:
        return user_id(i, self.users)


# -- databases -----------------------------------------------------------------------------------


@dataclass
class Backend:
    """Where one backend's stores live, and the untimed admin work on it."""

    name: str
    url_k: str  # the 1,000-session store
    url_n: str  # the N-session store
    tmpdir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def admin_engine(self, url: str) -> sa.Engine:
        return sa.create_engine(resolve_url(url).sync_url, poolclass=NullPool)

    def drop(self, url: str, prefix: str) -> None:
        drop_sessiondb(url, prefix)

    def checkpoint(self, url: str) -> None:
        """Flush the server's (or SQLite's) write-ahead log, so a phase starts clean."""
        engine = self.admin_engine(url)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                if self.name == "postgresql":
                    conn.execute(sa.text("CHECKPOINT"))
                elif self.name == "sqlite":
                    conn.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)")).fetchall()
        finally:
            engine.dispose()

    def analyze(self, url: str, prefix: str) -> None:
        name = tables(prefix).sessions.name
        engine = self.admin_engine(url)
        try:
            if self.name == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
            elif self.name == "mysql":
                with engine.begin() as conn:
                    conn.execute(sa.text(f"ANALYZE TABLE {name}")).fetchall()
            else:
                with engine.begin() as conn:
                    conn.execute(sa.text("ANALYZE"))
                with engine.connect() as conn:
                    conn.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)")).fetchall()
        finally:
            engine.dispose()


@contextmanager
def open_backend(name: str, sqlite_dir: str | None) -> Iterator[Backend]:
    if name == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="sessiondb-scale-", dir=sqlite_dir))
        try:
            yield Backend(name, f"sqlite:///{tmp / 'k.db'}", f"sqlite:///{tmp / 'n.db'}", tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    url = os.environ.get(URL_ENV[name]) or SERVER_URLS[name]
    made = create_database(name, url)
    try:
        yield Backend(name, url, url)
    finally:
        if made:
            drop_database(name, url)


# -- seeding -------------------------------------------------------------------------------------

_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def make_state(rng: random.Random, i: int) -> str:
    """About 300 bytes of JSON, a little different for every session."""
    state = {
        "topic": rng.choice(_WORDS),
        "turns": rng.randrange(50),
        "lang": "en",
        "profile": {"tier": rng.choice(["free", "pro", "team"]), "seat": i % 97},
        "notes": " ".join(rng.choice(_WORDS) for _ in range(18)),
        "recent": [rng.randrange(10_000) for _ in range(10)],
    }
    return json.dumps(state, separators=(",", ":"))


def seed(
    backend: Backend,
    url: str,
    prefix: str,
    pop: Population,
    *,
    start: int = 0,
    expired: bool = False,
    rng_seed: int = 1,
) -> float:
    """Bulk insert sessions ``start .. pop.count-1`` into the store's table; returns seconds."""
    t0 = time.perf_counter()
    table = tables(prefix).sessions
    # untyped columns: values go to the driver as they are (ISO text for SQLite's timestamps)
    names = [
        "id",
        "app_name",
        "user_id",
        "state",
        "created_at",
        "updated_at",
        "version",
        "expires_at",
    ]
    target = sa.table(table.name, *(sa.column(n) for n in names))
    insert = sa.insert(target)
    rng = random.Random(rng_seed)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    past = now - timedelta(days=1)

    def ts(dt: datetime) -> Any:
        return dt.isoformat(" ", "microseconds") if backend.name == "sqlite" else dt

    engine = backend.admin_engine(url)
    try:
        for lo in range(start, pop.count, SEED_BATCH):
            rows = []
            for i in range(lo, min(pop.count, lo + SEED_BATCH)):
                created = now - timedelta(days=30, seconds=-rng.randrange(30 * 86400))
                updated = created + timedelta(seconds=rng.randrange(86400))
                rows.append(
                    {
                        "id": pop.sid(i),
                        "app_name": APP,
                        "user_id": pop.user(i),
                        "state": make_state(rng, i),
                        "created_at": ts(created),
                        "updated_at": ts(min(updated, now)),
                        "version": 1,
                        "expires_at": ts(past) if expired else None,
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert, rows)
            done = min(pop.count, lo + SEED_BATCH)
            if done % 100_000 == 0 or done == pop.count:
                rate = (done - start) / (time.perf_counter() - t0)
                log(f"  seeded {done:,}/{pop.count:,} {prefix}sessions ({rate:,.0f} rows/s)")
    finally:
        engine.dispose()
    return time.perf_counter() - t0


# -- latency at 1k and at N ----------------------------------------------------------------------


def op_fn(store: SessionStore, pop: Population, op: str, rng: random.Random) -> Callable[[], None]:
    """One random op on an existing session (or user) of ``pop``."""
    counter = [0]

    def get() -> None:
        i = rng.randrange(pop.count)
        if store.get_session(APP, pop.user(i), pop.sid(i)) is None:
            raise AssertionError(f"session {i} of {pop.namespace} is missing")

    def update() -> None:
        counter[0] += 1
        store.patch_state(pop.sid(rng.randrange(pop.count)), {"k": counter[0]})

    def listing() -> None:
        user = user_id(rng.randrange(pop.users), pop.users)
        if not store.list_sessions(APP, user, limit=PAGE):
            raise AssertionError(f"{user} of {pop.namespace} has no sessions")

    return {"get": get, "update": update, "list": listing}[op]


def timed(fn: Callable[[], None], n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        fn()
        out.append((clock() - t) * 1000)
    return out


def measure_latency(
    stores: dict[str, tuple[SessionStore, Population]], ops: int, rounds: int, seed_: int
) -> dict[str, Any]:
    """Every op on both sizes, in alternating rounds; stats per op and size, and ratios."""
    out: dict[str, Any] = {}
    per_round = max(1, ops // rounds)
    for op in OPS:
        samples: dict[str, list[float]] = {size: [] for size in stores}
        fns = {
            size: op_fn(store, pop, op, random.Random(f"{seed_}:{op}:{size}"))
            for size, (store, pop) in stores.items()
        }
        for fn in fns.values():
            timed(fn, min(200, max(20, ops // 10)))  # warm-up: statement caches, connections
        load0 = load()
        for r in range(rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for size in order:
                samples[size].extend(timed(fns[size], per_round))
        result: dict[str, Any] = {size: stats(ms) for size, ms in samples.items()}
        k, n = result["1k"], result["N"]
        result["ratio_p50"] = round(n["p50"] / k["p50"], 3)
        result["ratio_p99"] = round(n["p99"] / k["p99"], 3)
        result["ratio_mean"] = round(n["mean"] / k["mean"], 3)
        result["load"] = [load0, load()]
        out[op] = result
        log(
            f"  {op:6s} 1k p50 {k['p50']:.3f} ms, N p50 {n['p50']:.3f} ms: "
            f"x{result['ratio_p50']:.2f} (p99 x{result['ratio_p99']:.2f})"
        )
    return out


# -- purge under load ----------------------------------------------------------------------------


def mixed_load(
    store: SessionStore, live: Population, stop: threading.Event, seed_: int
) -> dict[str, list[tuple[float, float]]]:
    """Alternate get_session and patch_state on live sessions until ``stop``; (t, ms) per op."""
    rng = random.Random(seed_)
    out: dict[str, list[tuple[float, float]]] = {"get": [], "update": []}
    clock = time.perf_counter
    n = 0
    while not stop.is_set():
        i = rng.randrange(live.count)
        n += 1
        t = clock()
        if n % 2:
            if store.get_session(APP, live.user(i), live.sid(i)) is None:
                raise AssertionError(f"live session {i} is missing")
            out["get"].append((t, (clock() - t) * 1000))
        else:
            store.patch_state(live.sid(i), {"k": n})
            out["update"].append((t, (clock() - t) * 1000))
    return out


def summarize_load(samples: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    both = [ms for kind in samples.values() for _, ms in kind]
    return {
        "get": stats([ms for _, ms in samples["get"]]),
        "update": stats([ms for _, ms in samples["update"]]),
        "all": stats(both),
        "over_100ms": sum(ms > TARGET_BLOCK_MS for ms in both),
    }


def slowest(
    during: dict[str, list[tuple[float, float]]], statements: dict[str, list[float]], t1: float
) -> dict[str, list[list[Any]]]:
    """The 5 slowest concurrent ops and DELETE batches: [seconds into the purge, ms(, op)]."""
    ops: list[list[Any]] = [
        [round(t - t1, 3), round(ms, 1), kind] for kind, v in during.items() for t, ms in v
    ]
    starts = [round(t - t1, 3) for t in statements["delete_at"]]
    deletes: list[list[Any]] = [
        [t, round(ms, 1)] for t, ms in zip(starts, statements["delete"], strict=True)
    ]
    return {
        "ops": sorted(ops, key=lambda x: float(-x[1]))[:5],
        "deletes": sorted(deletes, key=lambda x: float(-x[1]))[:5],
    }


def run_load(store: SessionStore, live: Population, seconds: float, seed_: int) -> dict[str, Any]:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        return summarize_load(mixed_load(store, live, stop, seed_))
    finally:
        timer.cancel()


@contextmanager
def statement_timer() -> Iterator[dict[str, list[float]]]:
    """Time the purge's own statements (this thread only): SELECT of a batch's ids ("pick")
    and its DELETE. A diagnostic that wraps sessiondb's private ``Cx.all`` / ``Cx.run``."""
    from sessiondb import _runner

    times: dict[str, list[float]] = {"pick": [], "delete": [], "delete_at": []}
    me = threading.get_ident()
    orig_all, orig_run = _runner.Cx.all, _runner.Cx.run
    clock = time.perf_counter

    def timed_call(orig: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def wrapper(self: Any, stmt: Any, params: dict[str, Any], **kw: Any) -> Any:
            if threading.get_ident() != me:
                return orig(self, stmt, params, **kw)
            t = clock()
            try:
                return orig(self, stmt, params, **kw)
            finally:
                times[kind].append((clock() - t) * 1000)
                if kind == "delete":
                    times["delete_at"].append(t)

        return wrapper

    _runner.Cx.all = timed_call(orig_all, "pick")  # type: ignore[method-assign]
    _runner.Cx.run = timed_call(orig_run, "delete")  # type: ignore[method-assign]
    try:
        yield times
    finally:
        _runner.Cx.all = orig_all  # type: ignore[method-assign]
        _runner.Cx.run = orig_run  # type: ignore[method-assign]


def measure_purge(
    backend: Backend, pop: Population, users: int, batch_size: int, seed_: int
) -> dict[str, Any]:
    url = backend.url_n
    sessions = tables(PREFIX_N).sessions
    engine = backend.admin_engine(url)
    t0 = time.perf_counter()
    past = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    value: Any = past.isoformat(" ", "microseconds") if backend.name == "sqlite" else past
    try:
        with engine.begin() as conn:
            marked = conn.execute(
                sa.table(sessions.name, sa.column("expires_at")).update().values(expires_at=value)
            ).rowcount
    finally:
        engine.dispose()
    log(f"  marked {marked:,} sessions expired in {time.perf_counter() - t0:.1f} s")
    live = Population("live", 1_000, min(users, 1_000))
    seed(backend, url, PREFIX_N, live, rng_seed=seed_ + 7)
    backend.analyze(url, PREFIX_N)
    backend.checkpoint(url)  # the preparation's WAL is not the purge's to flush
    prep_s = time.perf_counter() - t0

    purger = SessionStore(url, table_prefix=PREFIX_N)
    worker = SessionStore(url, table_prefix=PREFIX_N)
    try:
        expired = purger.purge_expired(dry_run=True)
        # the same mixed ops with nothing else going on, for comparison
        run_load(worker, live, 0.5, seed_)  # warm-up
        idle = run_load(worker, live, 5.0, seed_ + 1)
        log(f"  idle get/update: p50 {idle['all']['p50']:.2f} ms, max {idle['all']['max']:.1f} ms")

        stop = threading.Event()
        box: dict[str, Any] = {}

        def load_thread() -> None:
            try:
                box["samples"] = mixed_load(worker, live, stop, seed_ + 2)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=load_thread, name="scale-load")
        load0 = load()
        thread.start()
        time.sleep(0.2)  # the load is running before the purge starts
        t1 = time.perf_counter()
        try:
            with statement_timer() as statements:
                purged = purger.purge_expired(batch_size=batch_size)
        finally:
            purge_s = time.perf_counter() - t1
            stop.set()
            thread.join()
        if "error" in box:
            raise box["error"]
        during = {k: [(t, ms) for t, ms in v if t >= t1] for k, v in box["samples"].items()}
        concurrent = summarize_load(during)
        left = purger.purge_expired(dry_run=True)
        still_live = purger.count_sessions(APP)
        result = {
            "batch_size": batch_size,
            "expired_before": expired,
            "purged": purged,
            "expired_after": left,
            "live_after": still_live,
            "seconds": round(purge_s, 3),
            "rate_per_s": round(purged / purge_s, 1),
            "mean_batch_ms": round(purge_s * 1000 / max(1, -(-purged // batch_size)), 2),
            "prepare_seconds": round(prep_s, 1),
            "pick_ms": stats(statements["pick"]),
            "delete_ms": stats(statements["delete"]),
            "slowest": slowest(during, statements, t1),
            "idle": idle,
            "concurrent": concurrent,
            "load": [load0, load()],
            "max_ms_met": concurrent["all"]["max"] <= TARGET_BLOCK_MS,
        }
        log(
            f"  purged {purged:,} in {purge_s:.1f} s ({purged / purge_s:,.0f}/s); concurrent "
            f"{concurrent['all']['n']} ops: p50 {concurrent['all']['p50']:.2f} ms, "
            f"p99 {concurrent['all']['p99']:.1f} ms, max {concurrent['all']['max']:.1f} ms; "
            f"per batch: pick p50 {result['pick_ms']['p50']:.1f} ms, DELETE p50 "
            f"{result['delete_ms']['p50']:.1f} / max {result['delete_ms']['max']:.1f} ms"
        )
        if left or still_live != live.count:
            raise AssertionError(f"after the purge: {left} expired left, {still_live} live")
        return result
    finally:
        purger.close()
        worker.close()


# -- one backend ---------------------------------------------------------------------------------


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    n, users = args.sessions, args.users
    k_users = max(1, round(BASE_SESSIONS * users / n))
    pop_k = Population("k", BASE_SESSIONS, k_users)
    pop_n = Population("n", n, users)
    result: dict[str, Any] = {"sessions": n, "users": users, "base_users": k_users}
    with open_backend(name, args.sqlite_dir) as backend:
        made = [(backend.url_k, PREFIX_K), (backend.url_n, PREFIX_N)]
        for url, prefix in made:
            backend.drop(url, prefix)
        try:
            measure_backend(backend, args, pop_k, pop_n, result)
        finally:
            if backend.tmpdir is None:  # SQLite files go with their temp dir
                for url, prefix in made:
                    backend.drop(url, prefix)
        result["server"] = server_version(backend)
    return result


def measure_backend(
    backend: Backend,
    args: argparse.Namespace,
    pop_k: Population,
    pop_n: Population,
    result: dict[str, Any],
) -> None:
    name, n = backend.name, pop_n.count
    store_k = SessionStore(backend.url_k, table_prefix=PREFIX_K)
    store_n = SessionStore(backend.url_n, table_prefix=PREFIX_N)
    try:
        for store in (store_k, store_n):
            store.list_sessions("x", "y")  # sessiondb creates its schema
        log(f"{name}: seeding {BASE_SESSIONS:,} + {n:,} sessions")
        seed_s = seed(backend, backend.url_k, PREFIX_K, pop_k, rng_seed=args.seed)
        seed_s += seed(backend, backend.url_n, PREFIX_N, pop_n, rng_seed=args.seed + 1)
        t = time.perf_counter()
        backend.analyze(backend.url_k, PREFIX_K)
        backend.analyze(backend.url_n, PREFIX_N)
        result["seed_seconds"] = round(seed_s, 1)
        result["analyze_seconds"] = round(time.perf_counter() - t, 1)
        if name == "sqlite":
            result["file_mib"] = round(Path(backend.url_n[10:]).stat().st_size / 2**20, 1)
        log(f"{name}: latency, {args.ops} ops per op and size, {args.rounds} rounds")
        result["latency"] = measure_latency(
            {"1k": (store_k, pop_k), "N": (store_n, pop_n)}, args.ops, args.rounds, args.seed
        )
    finally:
        store_k.close()
        store_n.close()
    if not args.no_purge:
        log(f"{name}: purge of {n:,} expired sessions under load")
        result["purge"] = measure_purge(backend, pop_n, pop_n.users, args.batch_size, args.seed)


def server_version(backend: Backend) -> str:
    if backend.name == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    engine = backend.admin_engine(backend.url_n)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version()")).scalar())
    finally:
        engine.dispose()


# -- output --------------------------------------------------------------------------------------


def print_tables(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print()
    print(
        f"sessiondb scale: {meta['sessions']:,} sessions over {meta['users']:,} users "
        f"(baseline {BASE_SESSIONS:,}); {meta['ops']} ops per op and size; "
        f"load avg {meta['load_start']} -> {meta['load_end']} on {meta['cpus']} CPUs"
    )
    print()
    print("latency ms (p50 / p99)     1k p50   1k p99    N p50    N p99  N/1k p50  N/1k p99  <=1.5")
    for backend, res in results["backends"].items():
        if "error" in res:
            print(f"{backend:10s} error: {res['error']}")
            continue
        for op in OPS:
            r = res["latency"][op]
            ok = "yes" if r["ratio_p50"] <= TARGET_RATIO else "NO"
            print(
                f"{backend:10s} {op:15s} {r['1k']['p50']:8.3f} {r['1k']['p99']:8.3f} "
                f"{r['N']['p50']:8.3f} {r['N']['p99']:8.3f} {r['ratio_p50']:9.2f} "
                f"{r['ratio_p99']:9.2f}  {ok}"
            )
    print()
    print(
        "purge        expired      s  rows/s | per batch ms: pick DELETE  max | "
        "get+update ms idle: p50   p99   max | during purge: ops   p50    p99    max >100ms"
        " <=100"
    )
    for backend, res in results["backends"].items():
        p = res.get("purge")
        if not p:
            continue
        i, c = p["idle"]["all"], p["concurrent"]["all"]
        pk, dl = p["pick_ms"], p["delete_ms"]
        print(
            f"{backend:10s} {p['purged']:9,} {p['seconds']:6.1f} {p['rate_per_s']:7,.0f} | "
            f"{pk['p50']:17.1f} {dl['p50']:6.1f} {dl['max']:4.0f} | "
            f"{i['p50']:23.2f} {i['p99']:5.2f} {i['max']:5.1f} | "
            f"{c['n']:17,} {c['p50']:5.2f} {c['p99']:6.1f} {c['max']:6.1f} "
            f"{p['concurrent']['over_100ms']:6d}  {'yes' if p['max_ms_met'] else 'NO'}"
        )
    for backend, res in results["backends"].items():
        p = res.get("purge")
        if p:
            g, u = p["concurrent"]["get"], p["concurrent"]["update"]
            print(
                f"{backend:10s} during purge: get p50/p99/max {g['p50']:.2f}/{g['p99']:.1f}/"
                f"{g['max']:.1f} ms, update p50/p99/max {u['p50']:.2f}/{u['p99']:.1f}/"
                f"{u['max']:.1f} ms"
            )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", default="sqlite", help="comma list: sqlite, postgresql, mysql")
    parser.add_argument("--sessions", type=int, default=None, help="N (default 1,000,000)")
    parser.add_argument("--users", type=int, default=None, help="U (default 100,000)")
    parser.add_argument("--ops", type=int, default=None, help="timed ops per op and size (2000)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per op")
    parser.add_argument("--batch-size", type=int, default=1000, help="purge_expired batch size")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-purge", action="store_true", help="skip the purge part")
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite files go")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--quick", action="store_true", help="20,000 sessions, 2,000 users")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sessions = args.sessions or (20_000 if quick else 1_000_000)
    args.users = args.users or (2_000 if quick else 100_000)
    args.ops = args.ops or (500 if quick else 2_000)
    if args.sessions < BASE_SESSIONS or not 0 < args.users <= args.sessions:
        parser.error("need --sessions >= 1000 and 0 < --users <= --sessions")
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    for d in dbs:
        if d not in ("sqlite", "postgresql", "mysql"):
            parser.error(f"unknown --db {d!r}")

    import sqlalchemy

    import sessiondb

    results: dict[str, Any] = {
        "meta": {
            "sessions": args.sessions,
            "users": args.users,
            "ops": args.ops,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "quick": quick,
            "started": datetime.now().isoformat(timespec="seconds"),
            "load_start": load(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "sessiondb": getattr(sessiondb, "__version__", "?"),
            "sqlalchemy": sqlalchemy.__version__,
        },
        "backends": {},
    }
    failed = False
    for d in dbs:
        t = time.perf_counter()
        try:
            results["backends"][d] = run_backend(d, args)
        except Exception as exc:
            failed = True
            log(f"{d}: FAILED: {type(exc).__name__}: {exc}")
            results["backends"][d] = {"error": f"{type(exc).__name__}: {exc}"}
        results["backends"][d]["wall_seconds"] = round(time.perf_counter() - t, 1)
    results["meta"]["load_end"] = load()
    print_tables(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
