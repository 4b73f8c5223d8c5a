"""What bounds a SQLite write: sessiondb's schema, or sessiondb's Python (issue 14 §1).

    python -m benchmarks.sqlite_writes                  # 1,500 sessions, 3 rounds
    python -m benchmarks.sqlite_writes --quick          # 100 sessions, 1 round (CI)

Three contenders create, update (a two-key ``json_patch``) and delete the same sessions on a
fresh file each, at the same durability (WAL + ``synchronous=NORMAL``), interleaved in rounds:

* ``floor``: the bare ``sqlite3`` floor's table (``benchmarks/contenders/floor.py``: a primary
  key and one index) and its statements;
* ``schema``: the same statements by hand with ``sqlite3`` on sessiondb's own ``sessions``
  table (made by sessiondb: its primary key and secondary indexes), owner given;
* ``sessiondb``: ``SessionStore`` at its default durability, ``patch_state(id, set=...)`` and
  ``delete_session(id, app_name=, user_id=)`` as the workload calls them.

``schema/floor`` is what the table costs SQLite; ``sessiondb/schema`` what the library adds.
Ratios are taken within each round, then the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

OPS = ("create", "update", "delete")
STATE: dict[str, Any] = {
    "user": {"id": "user-0007", "name": "User 0007", "locale": "de-DE", "tz": "Asia/Tokyo"},
    "prefs": {"model": "gemini-2.5-flash", "temperature": 0.64, "max_output_tokens": 1024,
              "tools": ["search", "calculator", "calendar"], "theme": "dark"},
    "counters": {"message_count": 0, "tokens_in": 0, "tokens_out": 0},
    "flags": {"onboarded": True, "beta": False},
    "topic": "lorem ipsum dolor sit amet consectetur ad",
}  # fmt: skip
DELTA = {"last_intent": "check_the_weather", "turn": 1234}


def _raw(path: Path, floor: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if floor:
        conn.execute(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, app_name TEXT NOT NULL, user_id TEXT "
            "NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL)"
        )
        conn.execute("CREATE INDEX floor_user ON sessions (app_name, user_id, updated_at)")
    return conn


def run_floor(path: Path, n: int) -> dict[str, float]:
    cur = _raw(path, floor=True).cursor()
    ids = [(str(uuid.uuid4()), f"u{i % 100}") for i in range(n)]
    out: dict[str, float] = {}
    start = time.perf_counter()
    for sid, user in ids:
        now = time.time()
        cur.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (sid, "app", user, json.dumps(STATE), now, now),
        )
    out["create"] = time.perf_counter() - start
    start = time.perf_counter()
    for sid, user in ids:
        cur.execute(
            "UPDATE sessions SET state = json_patch(state, ?), updated_at = ? "
            "WHERE id = ? AND app_name = ? AND user_id = ?",
            (json.dumps(DELTA), time.time(), sid, "app", user),
        )
    out["update"] = time.perf_counter() - start
    start = time.perf_counter()
    for sid, user in ids:
        cur.execute(
            "DELETE FROM sessions WHERE id = ? AND app_name = ? AND user_id = ?",
            (sid, "app", user),
        )
    out["delete"] = time.perf_counter() - start
    cur.connection.close()
    return out


def _sessiondb_file(path: Path) -> None:
    from sessiondb import SessionStore

    with SessionStore(f"sqlite:///{path}") as store:
        store.count_sessions()  # the schema, made by sessiondb


def run_schema(path: Path, n: int) -> dict[str, float]:
    _sessiondb_file(path)
    cur = _raw(path, floor=False).cursor()
    ids = [(str(uuid.uuid4()), f"u{i % 100}") for i in range(n)]
    out: dict[str, float] = {}
    start = time.perf_counter()
    for sid, user in ids:
        now = datetime.now().isoformat(" ")
        cur.execute(
            "INSERT INTO sessions (id, app_name, user_id, state, created_at, updated_at, "
            "version) VALUES (?, ?, ?, ?, ?, ?, 1)",
            (sid, "app", user, json.dumps(STATE), now, now),
        )
    out["create"] = time.perf_counter() - start
    start = time.perf_counter()
    for sid, user in ids:
        cur.execute(
            "UPDATE sessions SET state = json_patch(state, ?), updated_at = ?, "
            "version = version + 1 WHERE app_name = ? AND user_id = ? AND id = ?",
            (json.dumps(DELTA), datetime.now().isoformat(" "), "app", user, sid),
        )
    out["update"] = time.perf_counter() - start
    start = time.perf_counter()
    for sid, user in ids:
        cur.execute(
            "DELETE FROM sessions WHERE app_name = ? AND user_id = ? AND id = ?",
            ("app", user, sid),
        )
    out["delete"] = time.perf_counter() - start
    cur.connection.close()
    return out


def run_sessiondb(path: Path, n: int) -> dict[str, float]:
    from sessiondb import SessionStore

    out: dict[str, float] = {}
    with SessionStore(f"sqlite:///{path}") as store:
        store.count_sessions()
        users = [f"u{i % 100}" for i in range(n)]
        start = time.perf_counter()
        made = [(store.create_session("app", user, STATE).id, user) for user in users]
        out["create"] = time.perf_counter() - start
        start = time.perf_counter()
        for sid, _ in made:
            store.patch_state(sid, set=DELTA)
        out["update"] = time.perf_counter() - start
        start = time.perf_counter()
        for sid, user in made:
            store.delete_session(sid, app_name="app", user_id=user)
        out["delete"] = time.perf_counter() - start
    return out


CONTENDERS: dict[str, Callable[[Path, int], dict[str, float]]] = {
    "floor": run_floor,
    "schema": run_schema,
    "sessiondb": run_sessiondb,
}
PAIRS = (("schema", "floor"), ("sessiondb", "schema"), ("sessiondb", "floor"))


def measure(n: int, rounds: int) -> dict[str, Any]:
    ops: dict[str, dict[str, list[float]]] = {c: {op: [] for op in OPS} for c in CONTENDERS}
    ratios: dict[str, dict[str, list[float]]] = {
        f"{a}/{b}": {op: [] for op in OPS} for a, b in PAIRS
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            names = list(CONTENDERS)
            names = names[r % len(names) :] + names[: r % len(names)]
            took = {name: CONTENDERS[name](Path(tmp) / f"{name}-{r}.db", n) for name in names}
            for name in CONTENDERS:
                for op in OPS:
                    ops[name][op].append(n / took[name][op])
            for a, b in PAIRS:
                for op in OPS:
                    ratios[f"{a}/{b}"][op].append(took[b][op] / took[a][op])

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    return {
        "ops": {c: {op: med(v) for op, v in per.items()} for c, per in ops.items()},
        "ratios": {p: {op: med(v) for op, v in per.items()} for p, per in ratios.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sqlite_writes", description=__doc__)
    p.add_argument("--sessions", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="100 sessions, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.sessions, args.rounds = 100, 1
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            print(f"load average: {' '.join(f.read().split()[:3])}")
    except OSError:
        pass
    result = measure(args.sessions, args.rounds)
    print(f"ops/s, median of {args.rounds} rounds of {args.sessions} sessions")
    print(f"{'':>20} " + " ".join(f"{op:>9}" for op in OPS))
    for name, per in result["ops"].items():
        print(f"{name:>20} " + " ".join(f"{per[op]:>9,.0f}" for op in OPS))
    print("ratios of ops/s within each round (> 1: the first is faster)")
    for pair, per in result["ratios"].items():
        print(f"{pair:>20} " + " ".join(f"{per[op]:>9.2f}" for op in OPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
