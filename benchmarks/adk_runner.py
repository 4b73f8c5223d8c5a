"""ADK Runner-level comparison: sessiondb's ADK service against ADK's DatabaseSessionService.

Run from the repository root::

    python -m benchmarks.adk_runner --db sqlite,postgresql          # 30 turns, 3 runs
    python -m benchmarks.adk_runner --db sqlite --quick              # 5 turns, 1 run

The same conversation goes through a real ``google.adk.runners.Runner`` with an ``LlmAgent``
whose model is a scripted ``BaseLlm`` (no network: canned responses). Every third user message
makes the model call a tool that writes session, ``user:`` and ``app:`` state; every final
reply is saved with ``output_key``. One session, T turns; each ``runner.run_async(...)`` is
timed until its event stream is fully consumed.

Contenders, per backend and run, each on fresh storage:

* ``sessiondb``: ``sessiondb.adk.SessiondbSessionService(url, table_prefix="bench_adk_")``.
* ``adk``: ``google.adk.sessions.DatabaseSessionService`` with its defaults
  (``sqlite+aiosqlite``, ``postgresql+asyncpg``), in a SQLite file / a database of its own.
* ``memory``: ADK's ``InMemorySessionService``, the Runner's own cost with free storage: a
  floor for both (the ratio adk/sessiondb cannot exceed what storage costs beyond it).

Before the timed session, each service runs an untimed warm-up conversation of 3 turns on
another session. Reported per turn: p50, mean and total (ms), the ratio adk/sessiondb of p50
and mean per run, and the medians over runs (target: >= 5). Then each service's own *share*
of a turn, its time per turn minus ``memory``'s, as sessiondb's share over ADK's (issue 14's
target 6: at most 1/8), of the mean turn (the target) and of the median turn; the same of the
process's CPU per turn, and of the CPU spent inside the service's own calls (``get_session``,
``append_event``, ``create_session``, which the Runner awaits: the steadiest of the four on a
loaded machine; it leaves out the database server's work). After each
run the stored session is read back and must hold the same events and state for every
contender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .targets import adk_database, create_database, drop_database, drop_sessiondb

APP = "adkbench"
USER = "ada"
PREFIX = "bench_adk_"
ADK_TABLES = ("events", "sessions", "app_states", "user_states", "adk_internal_metadata")
TOOL_EVERY = 3
WARMUP_TURNS = 3
TARGET = 5.0
#: issue 14, target 6: sessiondb's own share of a turn at most 1/8 of ADK's
SHARE_TARGET = 1 / 8
SERVER_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test_scale",
    "mysql": "mysql://root@127.0.0.1:3306/test_scale",
}
URL_ENV = {
    "postgresql": "SESSIONDB_ADKBENCH_POSTGRESQL_URL",
    "mysql": "SESSIONDB_ADKBENCH_MYSQL_URL",
}
ASYNC_DRIVER = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
}
RESULTS = Path(__file__).resolve().parent / "results" / "adk_runner.json"
CONTENDERS = ("sessiondb", "sessiondb-fast", "adk", "memory")
SQLITE_ONLY = ("sessiondb-fast",)
OURS = ("sessiondb", "sessiondb-fast")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the agent: a scripted model and a state-writing tool ---------------------------------------


def user_message(turn: int) -> str:
    if turn % TOOL_EVERY == TOOL_EVERY - 1:
        return f"remember item-{turn}"
    return f"Turn {turn}: could you look at my order and tell me where the parcel is now? " * 2


def build_agent() -> Any:
    """An ``LlmAgent`` on a scripted model, with a ``remember`` tool and an ``output_key``."""
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.tools.tool_context import ToolContext
    from google.genai import types

    class ScriptedModel(BaseLlm):
        """``remember X`` makes it call the tool; anything else gets a canned reply."""

        model: str = "scripted"

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            last = llm_request.contents[-1]
            part = last.parts[0] if last.parts else types.Part(text="")
            if part.function_response is not None:
                text = f"Noted: {part.function_response.response}. Anything else?"
            elif part.text and part.text.startswith("remember "):
                call = types.FunctionCall(name="remember", args={"item": part.text[9:]})
                yield LlmResponse(
                    content=types.Content(role="model", parts=[types.Part(function_call=call)])
                )
                return
            else:
                text = (
                    f"Your parcel (asked: {len(part.text or '')} chars) left the depot this "
                    "morning and is due tomorrow between 9 and 12. " * 3
                )
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))

    def remember(item: str, tool_context: ToolContext) -> dict[str, Any]:
        """Remember an item for the user."""
        state = tool_context.state
        state["items"] = [*state.get("items", []), item]
        state["user:last_item"] = item
        state["app:remembered"] = state.get("app:remembered", 0) + 1
        state["temp:scratch"] = f"working on {item}"
        return {"saved": item, "count": len(state["items"])}

    return LlmAgent(
        name="assistant",
        model=ScriptedModel(),
        instruction="You are a helpful parcel assistant.",
        tools=[remember],
        output_key="last_reply",
    )


# -- contenders ----------------------------------------------------------------------------------


def _admin_engine(url: str) -> sa.Engine:
    from sessiondb._urls import resolve_url

    return sa.create_engine(resolve_url(url).sync_url, poolclass=NullPool)


def drop_adk(url: str) -> None:
    engine = _admin_engine(url)
    try:
        with engine.begin() as conn:
            for name in ADK_TABLES:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        engine.dispose()


@dataclass
class Place:
    """Where a contender keeps its data for one run: a URL and how to clean it."""

    url: str
    clean: Callable[[], None]


def place(contender: str, backend: str, tmp: Path) -> Place:
    """Fresh storage for one run of ``contender`` (SQLite: a new file)."""
    if contender == "memory":
        return Place("", lambda: None)
    if backend == "sqlite":
        path = tmp / f"{contender}-{time.monotonic_ns()}.db"
        url = f"sqlite:///{path}"
        if contender == "adk":
            url = f"sqlite+aiosqlite:///{path}"
        return Place(url, lambda: None)
    base = sa.engine.make_url(os.environ.get(URL_ENV[backend]) or SERVER_URLS[backend])
    if contender in OURS:
        url = base.render_as_string(hide_password=False)
        made = create_database(backend, url)
        drop_sessiondb(url, PREFIX)
        return Place(url, _cleaner(backend, url, made, lambda: drop_sessiondb(url, PREFIX)))
    adk_url = base.set(database=adk_database(str(base))).render_as_string(hide_password=False)
    made = create_database(backend, adk_url)
    drop_adk(adk_url)
    driver_url = (
        sa.engine.make_url(adk_url)
        .set(drivername=ASYNC_DRIVER[backend])
        .render_as_string(hide_password=False)
    )
    return Place(driver_url, _cleaner(backend, adk_url, made, lambda: drop_adk(adk_url)))


def _cleaner(
    backend: str, url: str, made: bool, drop_tables: Callable[[], None]
) -> Callable[[], None]:
    """Drop the tables a run made, and the database too when the run created it."""

    def clean() -> None:
        drop_tables()
        if made:
            drop_database(backend, url)

    return clean


async def open_service(contender: str, url: str) -> Any:
    if contender in OURS:
        from sessiondb.adk import SessiondbSessionService

        if contender == "sessiondb-fast":  # WAL + synchronous=NORMAL (SQLite only)
            return SessiondbSessionService(url, table_prefix=PREFIX, sqlite_durability="fast")
        return SessiondbSessionService(url, table_prefix=PREFIX)
    if contender == "adk":
        from google.adk.sessions import DatabaseSessionService

        svc = DatabaseSessionService(url)
        await svc.prepare_tables()
        return svc
    from google.adk.sessions import InMemorySessionService

    return InMemorySessionService()


async def close_service(svc: Any) -> None:
    close = getattr(svc, "close", None)
    if close is not None:
        await close()


# -- one conversation ----------------------------------------------------------------------------


async def converse(runner: Any, session_id: str, turns: int, first: int = 0) -> list[float]:
    """Run ``turns`` turns; the wall time of each, in ms."""
    from google.genai import types

    out = []
    clock = time.perf_counter
    for turn in range(first, first + turns):
        message = types.Content(role="user", parts=[types.Part(text=user_message(turn))])
        t0 = clock()
        async for _event in runner.run_async(
            user_id=USER, session_id=session_id, new_message=message
        ):
            pass
        out.append((clock() - t0) * 1000)
    return out


def count_service_cpu(svc: Any) -> list[float]:
    """Wrap the service calls a Runner awaits (on this instance) so that each adds the process
    CPU it took to the one-item list returned: the service's own cost, which the Runner waits
    for with nothing else running; steadier than wall time minus ``memory``'s on a loaded
    machine. It leaves out the database server's own work."""
    spent = [0.0]
    for name in ("get_session", "append_event", "create_session"):
        call = getattr(svc, name)

        async def counted(*args: Any, _call: Any = call, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return await _call(*args, **kwargs)
            finally:
                spent[0] += time.process_time() - start

        setattr(svc, name, counted)
    return spent


async def run_one(contender: str, backend: str, turns: int, tmp: Path) -> dict[str, Any]:
    from google.adk.runners import Runner

    where = place(contender, backend, tmp)
    try:
        svc = await open_service(contender, where.url)
        try:
            runner = Runner(agent=build_agent(), app_name=APP, session_service=svc)
            warm = await svc.create_session(app_name=APP, user_id=USER, state={"warm": True})
            await converse(runner, warm.id, WARMUP_TURNS, first=10_000)
            session = await svc.create_session(
                app_name=APP, user_id=USER, state={"topic": "parcel", "items": []}
            )
            service_cpu = count_service_cpu(svc)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            ms = await converse(runner, session.id, turns)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            in_service = service_cpu[0]  # the read-back below is not part of a turn
            final = await svc.get_session(app_name=APP, user_id=USER, session_id=session.id)
        finally:
            await close_service(svc)
    finally:
        where.clean()
    if final is None:
        raise AssertionError(f"{contender}: the session is gone after the conversation")
    return {
        "turn_ms": [round(x, 3) for x in ms],
        "p50": round(statistics.median(ms), 3),
        "mean": round(statistics.fmean(ms), 3),
        "total_ms": round(wall * 1000, 1),
        "cpu_ms_per_turn": round(cpu * 1000 / turns, 3),
        "service_cpu_ms_per_turn": round(in_service * 1000 / turns, 3),
        "check": {
            "events": len(final.events),
            "items": final.state.get("items"),
            "last_reply": final.state.get("last_reply"),
            "user:last_item": final.state.get("user:last_item"),
        },
    }


# -- the benchmark -------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def ratios_of(this: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """adk over each sessiondb variant in one run: per-turn p50 and mean, and the p50 net of
    ``memory`` (storage's own share of a turn: (adk - memory) / (sessiondb - memory); None
    when sessiondb is within noise of the floor)."""
    out: dict[str, dict[str, float | None]] = {}
    if "adk" not in this:
        return out
    a = this["adk"]
    for ours in OURS:
        if ours not in this:
            continue
        s = this[ours]
        r: dict[str, float | None] = {"p50": a["p50"] / s["p50"], "mean": a["mean"] / s["mean"]}
        if "memory" in this:
            floor = this["memory"]["p50"]
            net = s["p50"] - floor
            r["storage_p50"] = (a["p50"] - floor) / net if net > 0.05 * floor else None
            r["adk_over_memory_p50"] = a["p50"] / floor
            # the share of a turn each service adds over the Runner's own cost (memory):
            # sessiondb's over ADK's, of the mean and of the median turn
            m = this["memory"]
            for k in ("mean", "p50"):
                r[f"share_{k}"] = (s[k] - m[k]) / (a[k] - m[k]) if a[k] > m[k] else None
            # the same of this process's CPU time per turn (steadier on a loaded machine; it
            # leaves out the database server's own work)
            k = "cpu_ms_per_turn"
            r["share_cpu"] = (s[k] - m[k]) / (a[k] - m[k]) if a[k] > m[k] else None
            # and of the CPU spent inside the service's calls alone
            k = "service_cpu_ms_per_turn"
            r["share_service_cpu"] = (s[k] - m[k]) / (a[k] - m[k]) if a[k] > m[k] else None
        out[ours] = r
    return out


def median_or_none(xs: list[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return round(statistics.median(known), 3) if known else None


async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sessiondb-adkbench-", dir=args.sqlite_dir))
    contenders = [c for c in args.contenders if backend == "sqlite" or c not in SQLITE_ONLY]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    per_run: list[dict[str, dict[str, float | None]]] = []
    loads = [round(os.getloadavg()[0], 2)]
    try:
        for r in range(args.runs):
            order = contenders if r % 2 == 0 else list(reversed(contenders))
            this: dict[str, dict[str, Any]] = {}
            for contender in order:
                this[contender] = res = await run_one(contender, backend, args.turns, tmp)
                runs[contender].append(res)
                log(
                    f"{backend} run {r + 1}/{args.runs} {contender:14s}: per turn p50 "
                    f"{res['p50']:.2f} ms, mean {res['mean']:.2f} ms, "
                    f"{res['check']['events']} events"
                )
            checks = {c: this[c]["check"] for c in this}
            if len({json.dumps(v, sort_keys=True) for v in checks.values()}) != 1:
                raise AssertionError(f"contenders stored different sessions: {checks}")
            per_run.append(ratios_of(this))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loads.append(round(os.getloadavg()[0], 2))
    summary = {
        c: {
            "p50": median([x["p50"] for x in rs]),
            "mean": median([x["mean"] for x in rs]),
            "total_ms": median([x["total_ms"] for x in rs]),
            "cpu_ms_per_turn": median([x["cpu_ms_per_turn"] for x in rs]),
            "service_cpu_ms_per_turn": median([x["service_cpu_ms_per_turn"] for x in rs]),
            "first5_p50": median([statistics.median(x["turn_ms"][:5]) for x in rs]),
            "last5_p50": median([statistics.median(x["turn_ms"][-5:]) for x in rs]),
            "events": rs[0]["check"]["events"],
        }
        for c, rs in runs.items()
    }
    ratios: dict[str, Any] = {}
    for ours in per_run[0] if per_run else {}:
        ratios[ours] = {
            k: {
                "median": median_or_none([run[ours][k] for run in per_run]),
                "per_run": [
                    None if (x := run[ours][k]) is None else round(x, 3) for run in per_run
                ],
            }
            for k in per_run[0][ours]
        }
    return {"summary": summary, "ratio_adk_over": ratios, "runs": runs, "load": loads}


def print_table(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print()
    print(
        f"ADK Runner, {meta['turns']} turns on one session, median of {meta['runs']} run(s); "
        f"google-adk {meta['google_adk']}; load avg {meta['load_start']} -> "
        f"{meta['load_end']} on {meta['cpus']} CPUs"
    )
    print()
    print(
        "backend    contender       p50 ms/turn  mean ms/turn  total ms  first5 p50  last5 p50"
        "  CPU ms/turn  in service"
    )
    for backend, res in results["backends"].items():
        if "error" in res:
            print(f"{backend:10s} error: {res['error']}")
            continue
        for c, s in res["summary"].items():
            print(
                f"{backend:10s} {c:14s} {s['p50']:12.2f} {s['mean']:13.2f} {s['total_ms']:9.1f} "
                f"{s['first5_p50']:11.2f} {s['last5_p50']:10.2f} {s['cpu_ms_per_turn']:12.2f}"
                f" {s['service_cpu_ms_per_turn']:11.2f}"
            )
    print()
    print(
        "ratio adk/x per turn (median of runs)   p50    mean  target>=5 | "
        "p50 net of memory  adk/memory"
    )
    for backend, res in results["backends"].items():
        for ours, ratio in res.get("ratio_adk_over", {}).items():
            p50, mean = ratio["p50"]["median"], ratio["mean"]["median"]
            ok = "met" if min(p50, mean) >= TARGET else "NOT met"
            net = ratio.get("storage_p50", {}).get("median")
            floor = ratio.get("adk_over_memory_p50", {}).get("median")
            print(
                f"{backend:10s} adk/{ours:14s} {p50:15.2f} {mean:7.2f}  {ok:9s} | "
                f"{'n/a' if net is None else f'{net:.2f}':>17s} "
                f"{'n/a' if floor is None else f'{floor:.2f}':>11s}"
            )
    print()
    print(
        "share of a turn over the Runner's own cost (memory), x/adk, median of runs:"
        f"   mean    p50    CPU in-service CPU  target<={SHARE_TARGET:.3f} (mean)"
    )
    for backend, res in results["backends"].items():
        for ours, ratio in res.get("ratio_adk_over", {}).items():
            shares = [
                ratio.get(f"share_{k}", {}).get("median")
                for k in ("mean", "p50", "cpu", "service_cpu")
            ]
            mean = shares[0]
            ok = "n/a" if mean is None else "met" if mean <= SHARE_TARGET else "NOT met"
            shown = " ".join("   n/a" if x is None else f"{x:6.3f}" for x in shares)
            print(f"{backend:10s} {ours:14s} over adk{'':42s}{shown}  {ok}")
    print()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("sessiondb", "google-adk", "sqlalchemy", "aiosqlite", "asyncpg", "psycopg"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def set_prefix(prefix: str) -> None:
    """sessiondb's table prefix for this process (read by ``place`` and ``open_service``)."""
    global PREFIX
    PREFIX = prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.adk_runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", default="sqlite", help="comma list: sqlite, postgresql, mysql")
    parser.add_argument("--turns", type=int, default=None, help="turns per conversation (30)")
    parser.add_argument("--runs", type=int, default=None, help="runs; medians over them (3)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma list")
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite files go")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--quick", action="store_true", help="5 turns, 1 run")
    parser.add_argument(
        "--prefix", default=PREFIX, help=f"sessiondb's table prefix on servers (default {PREFIX})"
    )
    args = parser.parse_args(argv)
    set_prefix(args.prefix)
    args.turns = args.turns or (5 if args.quick else 30)
    args.runs = args.runs or (1 if args.quick else 3)
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    for d in dbs:
        if d not in ASYNC_DRIVER:
            parser.error(f"unknown --db {d!r}")
    for c in args.contenders:
        if c not in CONTENDERS:
            parser.error(f"unknown contender {c!r}")
    logging.getLogger("google_adk").setLevel(logging.ERROR)
    v = versions()
    results: dict[str, Any] = {
        "meta": {
            "turns": args.turns,
            "runs": args.runs,
            "warmup_turns": WARMUP_TURNS,
            "tool_every": TOOL_EVERY,
            "contenders": args.contenders,
            "started": datetime.now().isoformat(timespec="seconds"),
            "load_start": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "google_adk": v["google-adk"],
            "versions": v,
        },
        "backends": {},
    }
    failed = False
    for d in dbs:
        try:
            results["backends"][d] = asyncio.run(run_backend(d, args))
        except Exception as exc:
            failed = True
            log(f"{d}: FAILED: {type(exc).__name__}: {exc}")
            results["backends"][d] = {"error": f"{type(exc).__name__}: {exc}"}
    results["meta"]["load_end"] = round(os.getloadavg()[0], 2)
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
