"""Small measurements for ``benchmarks.round2``, each in a process of its own.

``python -m benchmarks.probe KIND --out FILE [options]`` imports whichever sessiondb comes first
on ``PYTHONPATH`` (round2 runs it once on the current tree and once on the baseline), measures,
and writes JSON to ``FILE``. Kinds:

* ``trips``: database round trips per call, counted by the proxy of ``proxy.py``, of the calls
  issue 14's target 3 names, on both front ends, with the owner given (``app_name=``,
  ``user_id=``) and by id alone. Each call runs 6 times uncounted first (psycopg prepares a
  statement on its 5th execution, asyncpg on its first), then 5 times counted.
* ``json``: target 4, sessiondb's check + encode of a state (``sessiondb._json.dumps``, the
  text form and PostgreSQL's) against ``orjson.dumps`` alone, at 1 KB, 100 KB and 5 MB; the two
  are called in turn, and each sample's ratio is kept (round2 takes the median).
* ``tasks``: target 2's concurrent case, 64 tasks on one ``AsyncSessionStore`` (default
  options), each doing ``get_session`` + ``patch_state`` on a session of its own; ops/s.

A call that raises is recorded as that op's ``error``; the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import string
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .targets import drop_prefixed, host_port

APP = "r2"
USER = "probe"
WARM = 6
COUNTED = 5


async def _done(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _origin() -> str:
    import sessiondb

    return str(Path(sessiondb.__file__ or "?").parent)


# -- trips ---------------------------------------------------------------------------------------


def _ops(store: Any, sid: str, owner: dict[str, str]) -> dict[str, Callable[[int], Any]]:
    """Each op as ``i -> prepare`` where ``prepare`` (awaited, uncounted) returns the counted
    call (a thunk)."""

    async def create(i: int) -> Callable[[], Any]:
        return lambda: store.create_session(APP, USER, {"i": i, "topic": "x"})

    async def get(i: int) -> Callable[[], Any]:
        return lambda: store.get_session(APP, USER, sid)

    async def patch(i: int) -> Callable[[], Any]:
        return lambda: store.patch_state(sid, set={"k": i}, **owner)

    async def append_event(i: int) -> Callable[[], Any]:
        return lambda: store.append_event(
            sid, "user", {"text": f"message {i}"}, state_delta={"k": i}, **owner
        )

    async def append_events(i: int) -> Callable[[], Any]:
        events = [
            {"author": "user", "content": {"text": f"question {i}"}},
            {"author": "agent", "content": {"text": f"answer {i}"}, "state_delta": {"k": i}},
        ]
        return lambda: store.append_events(sid, events, **owner)

    def whole_state(changes: Callable[[int], dict[str, Any]]) -> Callable[[int], Any]:
        async def prepare(i: int) -> Callable[[], Any]:
            session = await _done(store.get_session(APP, USER, sid))  # uncounted: the app's read
            state = {**session.state, **changes(i)}
            return lambda: store.update_session_state(sid, state, **owner)

        return prepare

    async def transform(i: int) -> Callable[[], Any]:
        return lambda: store.transform_state(sid, lambda s: {**s, "k": i, "app:n": i}, **owner)

    ops: dict[str, Callable[[int], Any]] = {
        "patch_state": patch,
        "append_event": append_event,
        "append_events(2)": append_events,
        "update_session_state(app: key)": whole_state(lambda i: {"k": i, "app:n": i}),
        "update_session_state(scoped keys)": whole_state(
            lambda i: {"k": i, "app:n": i, "user:n": i}
        ),
        "transform_state": transform,
    }
    if owner:  # these take no owner: counted once
        ops = {"create_session": create, "get_session": get, **ops}
    return ops


async def _count_ops(store: Any, counter: Callable[[], int], owner: bool) -> dict[str, Any]:
    made = await _done(store.create_session(APP, USER, {"k": 0, "app:n": 0, "user:n": 0}))
    given = {"app_name": APP, "user_id": USER} if owner else {}
    out: dict[str, Any] = {}
    for name, prepare in _ops(store, made.id, given).items():
        counts: list[int] = []
        try:
            for i in range(WARM + COUNTED):
                call = await prepare(i)
                before = counter()
                await _done(call())
                if i >= WARM:
                    counts.append(counter() - before)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        ordered = sorted(counts)
        out[name] = {"counts": counts, "median": ordered[len(ordered) // 2], "max": ordered[-1]}
    return out


async def trips(url: str, prefix: str) -> dict[str, Any]:
    import sessiondb

    from .proxy import CountingProxy
    from .targets import with_host

    out: dict[str, Any] = {"sessiondb": _origin()}
    drop_prefixed(url, prefix)
    try:
        with CountingProxy(*host_port(url)) as proxy:
            via = with_host(url, proxy.host, proxy.port)
            for front in ("sync", "async"):
                try:
                    if front == "sync":
                        store: Any = sessiondb.SessionStore(via, table_prefix=prefix)
                    else:
                        store = sessiondb.AsyncSessionStore(via, table_prefix=prefix)
                    await _done(store.list_sessions(APP, "setup"))  # the schema, uncounted
                    try:
                        out[front] = {
                            "owner": await _count_ops(store, proxy.count, owner=True),
                            "by_id": await _count_ops(store, proxy.count, owner=False),
                        }
                    finally:
                        await _done(store.close())
                except Exception as exc:
                    out[front] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        drop_prefixed(url, prefix)
    return out


# -- json ----------------------------------------------------------------------------------------

SIZES = {"1KB": 1_000, "100KB": 100_000, "5MB": 5_000_000}


def make_state(target_bytes: int, seed: int = 14) -> dict[str, Any]:
    """A conversation-like state whose compact JSON is about ``target_bytes`` long: messages
    with text, numbers, flags and nested metadata, plus a few scalars (non-ASCII included)."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(300)]
    words += ["café", "naïve", "日本語", "emoji😀"]
    state: dict[str, Any] = {"user_name": "Ada", "turns": 0, "score": 0.5, "active": True}
    history: list[dict[str, Any]] = []
    state["conversation_history"] = history
    size = 80
    n = 0
    while size < target_bytes:
        text = " ".join(rng.choices(words, k=rng.randint(5, 40)))
        message = {
            "role": "user" if n % 2 == 0 else "assistant",
            "content": text,
            "ts": 1_700_000_000 + n * 1.5,
            "tokens": rng.randint(1, 4000),
            "meta": {"lang": "en", "flags": [n % 3 == 0, None], "score": rng.random()},
        }
        history.append(message)
        size += len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        n += 1
    state["turns"] = n
    return state


def _time_calls(fn: Callable[[], Any], seconds: float) -> float:
    """Seconds per call of ``fn``, over as many calls as fit in about ``seconds``."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        fn()
        calls += 1
        took = time.perf_counter() - t0
        if took >= seconds:
            return took / calls


def json_costs(samples: int, seconds: float) -> dict[str, Any]:
    import orjson

    from sessiondb import _json

    out: dict[str, Any] = {"sessiondb": _origin(), "orjson": orjson.__version__}
    for label, size in SIZES.items():
        state = make_state(size)
        text = _json.dumps(state)
        row: dict[str, Any] = {"bytes": len(text.encode())}
        forms: dict[str, Callable[[], Any]] = {
            "text": partial(_json.dumps, state),
            "pg": partial(_json.dumps, state, pg=True),
        }
        plain = partial(orjson.dumps, state)
        for form, fn in forms.items():
            per: list[float] = []
            ours_s: list[float] = []
            theirs_s: list[float] = []
            for k in range(samples):
                if k % 2:
                    theirs = _time_calls(plain, seconds)
                    ours = _time_calls(fn, seconds)
                else:
                    ours = _time_calls(fn, seconds)
                    theirs = _time_calls(plain, seconds)
                ours_s.append(ours)
                theirs_s.append(theirs)
                per.append(ours / theirs)
            row[form] = {
                "ratio_per_sample": per,
                "ratio": sorted(per)[len(per) // 2],
                "sessiondb_ms": sorted(ours_s)[len(ours_s) // 2] * 1e3,
                "orjson_ms": sorted(theirs_s)[len(theirs_s) // 2] * 1e3,
            }
        out[label] = row
    return out


# -- tasks ---------------------------------------------------------------------------------------


async def tasks(url: str, prefix: str, n_tasks: int, rounds: int) -> dict[str, Any]:
    import sessiondb

    if not url.startswith("sqlite"):
        drop_prefixed(url, prefix)
    try:
        async with sessiondb.AsyncSessionStore(url, table_prefix=prefix) as store:
            made = [
                await store.create_session(APP, f"t{n}", {"k": 0}) for n in range(n_tasks)
            ]  # untimed

            async def work(n: int) -> int:
                sid = made[n].id
                for i in range(rounds):
                    got = await store.get_session(APP, f"t{n}", sid)
                    if got is None:
                        raise LookupError(f"session of task {n} vanished")
                    await store.patch_state(sid, set={"k": i + 1}, app_name=APP, user_id=f"t{n}")
                return 2 * rounds

            t0 = time.perf_counter()
            done = await asyncio.gather(*(work(n) for n in range(n_tasks)))
            wall = time.perf_counter() - t0
            final = [await store.get_session(APP, f"t{n}", made[n].id) for n in range(n_tasks)]
            if any(f is None or f.state.get("k") != rounds for f in final):
                raise AssertionError("a task's last patch is not in its session")
    finally:
        if not url.startswith("sqlite"):
            drop_prefixed(url, prefix)
    return {"sessiondb": _origin(), "tasks": n_tasks, "ops": sum(done), "seconds": wall,
            "ops_s": sum(done) / wall}  # fmt: skip


# -- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__)
    p.add_argument("kind", choices=("trips", "json", "tasks"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--url", help="database URL (trips, tasks); 'sqlite' makes a temp file")
    p.add_argument("--prefix", default="r2_", help="table prefix (default r2_)")
    p.add_argument("--samples", type=int, default=5, help="json: samples per size (default 5)")
    p.add_argument("--seconds", type=float, default=0.2, help="json: seconds per sample")
    p.add_argument("--tasks", type=int, default=64, help="tasks: concurrent tasks (default 64)")
    p.add_argument("--rounds", type=int, default=20, help="tasks: get+patch rounds per task")
    args = p.parse_args(argv)
    try:
        if args.kind == "trips":
            result = asyncio.run(trips(args.url, args.prefix))
        elif args.kind == "json":
            result = json_costs(args.samples, args.seconds)
        else:
            url = args.url
            with tempfile.TemporaryDirectory(prefix="sessiondb-probe-") as tmp:
                if url == "sqlite":
                    url = f"sqlite:///{tmp}/tasks.db"
                result = asyncio.run(tasks(url, args.prefix, args.tasks, args.rounds))
        result = {"status": "ok", **result}
    except Exception as exc:
        result = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    args.out.write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
