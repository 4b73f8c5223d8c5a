"""Issue 14's report: every target's measured value, goal, verdict and before value, in one run.

    python -m benchmarks.round2                                  # 3 runs, sqlite,postgresql,mysql
    python -m benchmarks.round2 --quick                          # small sizes, 1 run (CI)
    python -m benchmarks.round2 --db sqlite --baseline v0.9.0    # another "before"

"Before" is the sessiondb of ``--baseline`` (a git ref, default the commit before round two,
or a directory holding ``sessiondb/``), extracted with ``git archive`` and run beside the
current tree in the same invocation: as ``NAME@before`` contenders interleaved in the
workload's runs, and as the other half of each probe and ADK Runner pair (the two sides take
turns going first). Parts, each skippable with ``--skip``:

* ``workload``: ``python -m benchmarks --baseline`` (every contender, ``--runs`` runs):
  T1 (SQLite create/update/delete against ADK and the bare ``sqlite3`` floor in WAL mode,
  ``floor-wal-normal``), T2 (async/sync per op), T5 (PostgreSQL list after the update phase
  against the floor), T7 (each sessiondb contender against its ``@before`` twin, every op and
  the guide's conversation).
* ``trips``: round trips per call through the counting proxy (``benchmarks/probe.py``), T3.
* ``json``: check + encode against ``orjson.dumps`` at 1 KB, 100 KB and 5 MB, T4.
* ``tasks``: 64 concurrent tasks on one ``AsyncSessionStore``, ops/s (T2, reported).
* ``adk``: ``benchmarks/adk_runner.py`` once per side and run: sessiondb's share of a Runner
  turn over ADK's ``DatabaseSessionService``'s, both net of ``InMemorySessionService``, of the
  mean turn as adk_runner prints it (T6; the note has the median turn's).

Every ratio is taken within one run (a pair measured side by side), then the median over runs.
A part or contender that fails is reported in the table and the JSON and the rest goes on; the
exit status is 1 when something on the current tree failed (the baseline's failures are only
reported: an old sessiondb may lack what a probe asks), never because a target was missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import cli, report, targets
from .measure import median

RESULTS = Path(__file__).resolve().parent / "results" / "round2.json"
PARTS = ("workload", "trips", "json", "tasks", "adk")
SIDES = ("now", "before")
OPS = report.OPS
CONV = "conv"  # the conversation as an op: turns/s, from its total time
T1_OPS = ("create", "update", "delete")
T1_FLOOR = "floor-wal-normal"  # the bare sqlite3 floor in WAL mode (no fsync per commit)
# T3: the most round trips a call may take (owner given), per server backend
T3_GOALS: dict[str, dict[str, float]] = {
    "append_event": {"postgresql": 1, "mysql": 2},
    "append_events(2)": {"postgresql": 1, "mysql": 2},
    "update_session_state(app: key)": {"postgresql": 2, "mysql": 2},
    "update_session_state(scoped keys)": {"postgresql": 2, "mysql": 2},
    "transform_state": {"postgresql": 2, "mysql": 2},
}
T6_BACKENDS = ("sqlite", "postgresql")
ADK_PREFIX = {"now": "bench_adk_", "before": "bench_adkb_"}
PROBE_PREFIX = {"now": "r2_", "before": "r2b_"}


# -- verdicts (pure: tested in tests/test_bench_round2.py) ---------------------------------------


@dataclass
class Row:
    """One line of the report: a target's measure on one backend."""

    target: str  # "T1".."T7"
    backend: str
    measure: str
    value: float | None
    goal: float | None  # None: reported, no goal
    cmp: str = ">="  # value cmp goal means met
    before: float | None = None
    note: str = ""
    verdict: str = field(default="")

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = verdict(self.value, self.goal, self.cmp)


def verdict(value: float | None, goal: float | None, cmp: str) -> str:
    """``met`` / ``MISSED`` / ``report`` (no goal) / ``no data`` (nothing measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if goal is None:
        return "report"
    if cmp == ">=":
        return "met" if value >= goal else "MISSED"
    if cmp == "<=":
        return "met" if value <= goal else "MISSED"
    raise ValueError(f"unknown comparison {cmp!r}")


def med(values: Sequence[float | None]) -> float | None:
    """The median of the known values, None if there is none."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    return median(known) if known else None


def pair_ratio(runs: list[report.Results], backend: str, a: str, b: str, op: str) -> float | None:
    """Median over runs of ops/s of ``a`` over ops/s of ``b`` for ``op``, each run's ratio
    taken within that run; runs where either side failed are left out."""
    per_run: list[float | None] = []
    for run in runs:
        ra, rb = run.get(backend, {}).get(a, {}), run.get(backend, {}).get(b, {})
        if ra.get("status") != "ok" or rb.get("status") != "ok":
            continue
        if op == CONV:  # turns/s: b's total time over a's
            fa, fb = _conv_seconds(rb), _conv_seconds(ra)
        else:
            fa = ra.get("ops", {}).get(op, {}).get("ops_s")
            fb = rb.get("ops", {}).get(op, {}).get("ops_s")
        if fa and fb:
            per_run.append(fa / fb)
    return med(per_run)


def _conv_seconds(result: dict[str, Any]) -> float | None:
    """Total seconds of the guide's conversation (the naive variant), None if it did not run."""
    total = result.get("conversation", {}).get(report.CONV, {}).get("total_s")
    return float(total) if isinstance(total, (int, float)) and total > 0 else None


def share(runner: dict[str, Any], stat: str = "mean") -> float | None:
    """T6 from one ``adk_runner`` result of one backend: sessiondb's share of a turn over ADK's,
    each its time per turn minus the in-memory service's (the Runner's own cost), of the mean
    turn (as adk_runner prints it; ``stat="p50"``: of the median turn). None when ADK's turn is
    not above the in-memory one (nothing to compare against)."""
    s = runner.get("summary", {})
    try:
        ours, adk, memory = s["sessiondb"][stat], s["adk"][stat], s["memory"][stat]
    except KeyError:
        return None
    if adk - memory <= 0:
        return None
    return float((ours - memory) / (adk - memory))


def fmt(value: float | None, goal: float | None = None) -> str:
    """A figure for the table: counts whole, small ratios against a small goal with 3 digits."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    if goal is not None and goal < 1 and abs(value) < 1:
        return f"{value:.3f}"
    return f"{value:.2f}"


def fmt_goal(row: Row) -> str:
    if row.goal is None:
        return "report"
    sign = "≥" if row.cmp == ">=" else "≤"
    if row.goal == 1 / 3:
        return f"{sign} 1/3"
    if row.goal == 1 / 8:
        return f"{sign} 1/8"
    return f"{sign} {row.goal:g}"


def render(rows: list[Row]) -> str:
    header = ["target", "backend", "measure", "now", "goal", "verdict", "before", "note"]
    body = [
        [
            r.target,
            r.backend,
            r.measure,
            fmt(r.value, r.goal),
            fmt_goal(r),
            r.verdict,
            fmt(r.before, r.goal),
            r.note,
        ]
        for r in rows
    ]
    return report.table(
        "Issue 14, round two: every target, now and before (ratios within one run, medians)",
        header,
        body,
        left=3,
    )


# -- rows from the parts' results ----------------------------------------------------------------


def workload_rows(doc: dict[str, Any]) -> list[Row]:
    """T1, T2 (per op), T5 and T7 from the JSON of ``python -m benchmarks --baseline``."""
    runs: list[report.Results] = doc.get("runs", [])
    backends = sorted({b for run in runs for b in run}, key=targets.BACKENDS.index)
    rows: list[Row] = []

    def ratio(backend: str, a: str, b: str, op: str) -> float | None:
        return pair_ratio(runs, backend, a, b, op)

    if "sqlite" in backends:
        for op in T1_OPS:
            for other, goal, label in (("adk", 20.0, "ADK"), (T1_FLOOR, 1 / 3, "floor WAL")):
                rows.append(
                    Row(
                        "T1",
                        "sqlite",
                        f"{op}: sessiondb/{label}",
                        ratio("sqlite", "sessiondb-sync", other, op),
                        goal,
                        before=ratio("sqlite", "sessiondb-sync@before", other, op),
                    )
                )
    for backend in backends:
        now = {op: ratio(backend, "sessiondb-async", "sessiondb-sync", op) for op in OPS}
        then = {
            op: ratio(backend, "sessiondb-async@before", "sessiondb-sync@before", op) for op in OPS
        }
        for op in OPS:
            rows.append(Row("T2", backend, f"{op}: async/sync", now[op], 0.8, before=then[op]))
    if "postgresql" in backends:
        for name in ("sessiondb-sync", "sessiondb-async"):
            rows.append(
                Row(
                    "T5",
                    "postgresql",
                    f"list after updates: {name.split('-')[1]}/floor",
                    ratio("postgresql", name, "floor", "list"),
                    0.8,
                    before=ratio("postgresql", f"{name}@before", "floor", "list"),
                )
            )
    for backend in backends:
        for name in report.SESSIONDB:
            per_op = {op: ratio(backend, name, f"{name}@before", op) for op in (*OPS, CONV)}
            known = {op: v for op, v in per_op.items() if v is not None}
            if not known:
                continue
            worst = min(known, key=lambda op: known[op])
            note = f"worst {worst}; " + " ".join(f"{op}={v:.2f}" for op, v in known.items())
            rows.append(
                Row(
                    "T7",
                    backend,
                    f"{name.removeprefix('sessiondb-')}: now/before, min over ops + conv",
                    known[worst],
                    0.95,
                    note=note,
                )
            )
    return rows


def trips_rows(trips: dict[str, dict[str, Any]]) -> list[Row]:
    """T3 from the trips probe of each side: side -> backend -> probe result."""
    rows: list[Row] = []
    for backend in ("postgresql", "mysql"):
        sides = {side: trips.get(side, {}).get(backend) for side in SIDES}
        if sides["now"] is None:
            continue
        for op, goals in T3_GOALS.items():
            values = {side: _trip_count(r, op) for side, r in sides.items()}
            now, fronts = values["now"]
            by_id, _ = _trip_count(sides["now"], op, "by_id")
            note = fronts + (f"; by id alone {by_id:g}" if by_id is not None else "")
            rows.append(
                Row(
                    "T3",
                    backend,
                    f"round trips: {op}",
                    now,
                    goals[backend],
                    "<=",
                    before=values["before"][0],
                    note=note,
                )
            )
    return rows


def _trip_count(
    result: dict[str, Any] | None, op: str, variant: str = "owner"
) -> tuple[float | None, str]:
    """(the larger of the two front ends' median counts, "sync x, async y" or the error)."""
    if not result or result.get("status") != "ok":
        return None, (result or {}).get("error", "not measured")
    counts: dict[str, float] = {}
    errors: list[str] = []
    for front in ("sync", "async"):
        got = result.get(front, {})
        figures = got.get(variant, {}).get(op, {}) if "error" not in got else got
        if "median" in figures:
            counts[front] = figures["median"]
        else:
            errors.append(f"{front}: {figures.get('error', 'not measured')}")
    if not counts:
        return None, "; ".join(errors)
    text = ", ".join(f"{front} {n:g}" for front, n in counts.items())
    return max(counts.values()), "; ".join([text, *errors])


def json_rows(json_runs: dict[str, list[dict[str, Any]]]) -> list[Row]:
    """T4 from the json probe's runs of each side (median over runs of each run's ratio)."""
    rows: list[Row] = []
    from .probe import SIZES

    def ratios(side: str, size: str, form: str) -> float | None:
        return med(
            [
                r.get(size, {}).get(form, {}).get("ratio")
                for r in json_runs.get(side, [])
                if r.get("status") == "ok"
            ]
        )

    for size in SIZES:
        for form in ("text", "pg"):
            now_runs = [r for r in json_runs.get("now", []) if r.get("status") == "ok"]
            ms = med([r.get(size, {}).get(form, {}).get("sessiondb_ms") for r in now_runs])
            orj = med([r.get(size, {}).get(form, {}).get("orjson_ms") for r in now_runs])
            note = f"{report.fmt_ms(ms)} ms, orjson {report.fmt_ms(orj)} ms" if ms else ""
            failed = [r["error"] for r in json_runs.get("now", []) if r.get("status") != "ok"]
            rows.append(
                Row(
                    "T4",
                    "-",
                    f"JSON {size} ({form}): check+encode/orjson",
                    ratios("now", size, form),
                    1.5,
                    "<=",
                    before=ratios("before", size, form),
                    note=note or "; ".join(failed[:1]),
                )
            )
    return rows


def tasks_rows(task_runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[Row]:
    """T2's concurrent case: ops/s of 64 tasks, median over runs, per backend."""
    rows: list[Row] = []
    for backend in targets.BACKENDS:
        sides = {side: task_runs.get(side, {}).get(backend, []) for side in SIDES}
        if not sides["now"]:
            continue
        value = {
            s: med([r.get("ops_s") for r in rs if r.get("status") == "ok"])
            for s, rs in sides.items()
        }
        failed = [r.get("error", "") for r in sides["now"] if r.get("status") != "ok"]
        rows.append(
            Row(
                "T2",
                backend,
                "64 async tasks, get+patch ops/s",
                value["now"],
                None,
                before=value["before"],
                note="; ".join(failed[:1]),
            )
        )
    return rows


def adk_rows(adk_runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[Row]:
    """T6 from the ADK Runner's runs of each side: median over runs of each run's share."""
    rows: list[Row] = []
    for backend in T6_BACKENDS:
        sides = {side: adk_runs.get(side, {}).get(backend, []) for side in SIDES}
        if not sides["now"]:
            continue
        value = {s: med([share(r) for r in rs if "error" not in r]) for s, rs in sides.items()}
        ok = [r for r in sides["now"] if "error" not in r]
        note = ""
        if ok:
            mean = {
                c: med([r["summary"].get(c, {}).get("mean") for r in ok])
                for c in ("sessiondb", "adk", "memory")
            }
            note = "mean ms/turn " + ", ".join(f"{c} {fmt(v)}" for c, v in mean.items())
            by_p50 = med([share(r, "p50") for r in ok])
            note += f"; share of the p50 turn {fmt(by_p50, 1 / 8)}"
        else:
            note = sides["now"][0].get("error", "failed")
        rows.append(
            Row(
                "T6",
                backend,
                "ADK Runner mean turn: sessiondb share/ADK share",
                value["now"],
                1 / 8,
                "<=",
                before=value["before"],
                note=note,
            )
        )
    return rows


# -- running the parts ---------------------------------------------------------------------------


def git_state(source: Path) -> dict[str, Any]:
    """The commit a sessiondb source directory is checked out at, and whether it has changes
    (empty when it is not in a git checkout)."""
    git = ["git", "-C", str(source)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()  # fmt: skip
        changed = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True,
                                 text=True, check=True, timeout=30).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "uncommitted_changes": bool(changed)}


class Round2:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
        self.backends = [b.strip() for b in args.db.split(",") if b.strip()]
        bad = [b for b in self.backends if b not in targets.BACKENDS]
        if bad:
            raise SystemExit(f"unknown --db value(s): {', '.join(bad)}")
        skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
        if skip - set(PARTS):
            raise SystemExit(f"unknown --skip part(s): {', '.join(sorted(skip - set(PARTS)))}")
        self.parts = [p for p in PARTS if p not in skip]
        self.tmp = Path(tempfile.mkdtemp(prefix="sessiondb-round2-"))
        self.paths: dict[str, Path] = {}  # side -> directory holding sessiondb/
        self.notes: list[str] = []
        self.failures: list[str] = []  # the current tree's: they make the exit status 1
        self.meta: dict[str, Any] = {}
        self.servers: dict[str, str] = {}

    def say(self, text: str) -> None:
        print(text, flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(f"note: {text}")

    def fail(self, side: str, text: str) -> None:
        (self.failures if side == "now" else self.notes).append(f"{side}: {text}")
        self.say(f"FAILED ({side}): {text}")

    def sides(self, run: int) -> list[str]:
        """The sides present, the baseline first in even runs."""
        present = [s for s in SIDES if s in self.paths]
        return present if run % 2 else list(reversed(present))

    # -- set-up ----------------------------------------------------------------------------

    def prepare(self) -> None:
        import importlib.util

        spec = importlib.util.find_spec("sessiondb")
        if spec is None or spec.origin is None:
            raise SystemExit("sessiondb is not importable")
        source = Path(spec.origin).parent.parent
        self.meta["now"] = cli.extract_baseline(str(source), self.tmp / "now")
        self.meta["now"].update(git_state(source))
        self.paths["now"] = self.tmp / "now"
        if self.args.baseline:
            try:
                self.meta["before"] = cli.extract_baseline(self.args.baseline, self.tmp / "before")
            except cli.BaselineError as exc:
                self.note(f"no baseline: {exc}")
            else:
                self.paths["before"] = self.tmp / "before"
        for backend in self.backends:
            if backend == "sqlite":
                continue
            url = targets.server_url(backend)
            ok, detail = targets.reachable(backend, url)
            if ok:
                self.servers[backend] = url
            else:
                self.note(f"skipping {backend}: {detail}")

    def env(self, side: str) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(self.paths[side]), str(cli.ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        for backend in ("postgresql", "mysql"):  # the ADK Runner: the run's own database too
            adk_env = f"SESSIONDB_ADKBENCH_{backend.upper()}_URL"
            if backend in self.servers and not env.get(adk_env):
                env[adk_env] = self.servers[backend]
        return env

    def subprocess(self, side: str, argv: list[str], out: Path) -> dict[str, Any] | None:
        """Run ``python argv`` on ``side``'s sessiondb; the JSON it wrote to ``out``, or None
        (the failure recorded)."""
        out.unlink(missing_ok=True)
        try:
            proc = subprocess.run(
                [sys.executable, *argv],
                cwd=cli.ROOT,
                env=self.env(side),
                capture_output=True,
                text=True,
                timeout=self.args.timeout,
                check=False,
            )
            stderr, code = proc.stderr, proc.returncode
        except subprocess.TimeoutExpired:
            stderr, code = f"timed out after {self.args.timeout}s", -1
        if out.exists():
            try:
                loaded: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
                if code != 0:
                    loaded.setdefault("exit_status", code)
                return loaded
            except ValueError:
                pass
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        self.fail(side, f"{' '.join(argv[:3])}: {tail[0]}")
        return None

    # -- parts -----------------------------------------------------------------------------

    def workload(self) -> dict[str, Any]:
        out = self.tmp / "workload.json"
        argv = ["--db", ",".join(self.backends), "--json", str(out), "--runs", str(self.runs)]
        if self.args.quick:
            argv.append("--quick")
        if "before" in self.paths:
            argv += ["--baseline", str(self.paths["before"])]
        if self.args.sqlite_dir:
            argv += ["--sqlite-dir", self.args.sqlite_dir]
        argv += shlex.split(self.args.workload_args or "")
        self.say(f"== workload: python -m benchmarks {' '.join(argv)}")
        try:
            status = cli.main(argv)
        except (Exception, SystemExit) as exc:
            self.fail("now", f"workload: {type(exc).__name__}: {exc}")
            return {}
        if not out.exists():
            self.fail("now", "workload: no results written")
            return {}
        doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        for failure in doc.get("failures", []):
            name = str(failure.get("contender", ""))
            side = "before" if name.endswith(cli.BEFORE) else "now"
            self.fail(side, f"workload {failure.get('backend')}/{name}: {failure.get('error')}")
        if status and not doc.get("failures"):
            self.fail("now", f"workload exited with {status}")
        return doc

    def probe(self, side: str, kind: str, extra: list[str]) -> dict[str, Any]:
        out = self.tmp / f"probe-{kind}-{side}.json"
        got = self.subprocess(
            side, ["-m", "benchmarks.probe", kind, "--out", str(out), *extra], out
        )
        if got is None:
            return {"status": "failed", "error": "the probe crashed"}
        if got.get("status") != "ok":
            self.fail(side, f"probe {kind} {' '.join(extra[:2])}: {got.get('error')}")
        return got

    def trips(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for backend in ("postgresql", "mysql"):
            if backend not in self.servers:
                continue
            for side in self.sides(1):
                self.say(f"== trips {backend} ({side})")
                out.setdefault(side, {})[backend] = self.probe(
                    side, "trips", ["--url", self.servers[backend], "--prefix", PROBE_PREFIX[side]]
                )
        return out

    def json_costs(self) -> dict[str, list[dict[str, Any]]]:
        samples, seconds = ("3", "0.02") if self.args.quick else ("5", "0.2")
        out: dict[str, list[dict[str, Any]]] = {}
        for r in range(1, self.runs + 1):
            for side in self.sides(r):
                self.say(f"== json run {r}/{self.runs} ({side})")
                got = self.probe(side, "json", ["--samples", samples, "--seconds", seconds])
                out.setdefault(side, []).append(got)
        return out

    def tasks(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        rounds = "5" if self.args.quick else "50"
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in range(1, self.runs + 1):
            for backend in self.backends:
                url = "sqlite" if backend == "sqlite" else self.servers.get(backend)
                if url is None:
                    continue
                for side in self.sides(r):
                    self.say(f"== 64 tasks {backend} run {r}/{self.runs} ({side})")
                    got = self.probe(
                        side,
                        "tasks",
                        ["--url", url, "--prefix", PROBE_PREFIX[side], "--rounds", rounds],
                    )
                    out.setdefault(side, {}).setdefault(backend, []).append(got)
        return out

    def adk(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if not targets.installed("google.adk"):
            self.note("T6 skipped: google-adk is not installed (pip install 'google-adk[db]')")
            return out
        turns = str(self.args.turns or (5 if self.args.quick else 30))
        reachable = ["sqlite", *self.servers]
        backends = [b for b in T6_BACKENDS if b in self.backends and b in reachable]
        for r in range(1, self.runs + 1):
            for backend in backends:
                for side in self.sides(r):
                    self.say(f"== ADK Runner {backend} run {r}/{self.runs} ({side})")
                    out_file = self.tmp / f"adk-{backend}-{side}.json"
                    argv = [
                        "-m",
                        "benchmarks.adk_runner",
                        "--db",
                        backend,
                        "--runs",
                        "1",
                        "--turns",
                        turns,
                        "--contenders",
                        "sessiondb,adk,memory",
                        "--prefix",
                        ADK_PREFIX[side],
                        "--json",
                        str(out_file),
                    ]
                    if self.args.sqlite_dir:
                        argv += ["--sqlite-dir", self.args.sqlite_dir]
                    got = self.subprocess(side, argv, out_file)
                    result = (got or {}).get("backends", {}).get(backend)
                    if result is None:
                        result = {"error": "adk_runner wrote no result"}
                    elif "error" in result:
                        self.fail(side, f"ADK Runner {backend}: {result['error']}")
                    out.setdefault(side, {}).setdefault(backend, []).append(result)
        return out

    # -- the whole report ------------------------------------------------------------------

    def run(self) -> int:
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        load = os.getloadavg()
        self.say(
            f"round two report: --db {','.join(self.backends)}, {self.runs} run(s), parts "
            f"{','.join(self.parts)}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        self.prepare()
        for side, info in self.meta.items():
            dirty = " + uncommitted changes" if info.get("uncommitted_changes") else ""
            self.say(
                f"sessiondb {side}: {info.get('source') or info.get('ref')} at "
                f"{info.get('commit', '?')[:12]}{dirty} (sha256 {info['sha256']})"
            )
        results: dict[str, Any] = {}
        rows: list[Row] = []
        steps: list[tuple[str, Callable[[], Any], Callable[[Any], list[Row]]]] = [
            ("workload", self.workload, workload_rows),
            ("trips", self.trips, trips_rows),
            ("json", self.json_costs, json_rows),
            ("tasks", self.tasks, tasks_rows),
            ("adk", self.adk, adk_rows),
        ]
        for name, step, to_rows in steps:
            if name not in self.parts:
                continue
            try:
                results[name] = step()
                rows += to_rows(results[name])
            except Exception as exc:  # a broken part is reported; the others still run
                self.fail("now", f"{name}: {type(exc).__name__}: {exc}")
        rows.sort(key=lambda r: r.target)
        end_load = os.getloadavg()
        self.say("")
        self.say(render(rows))
        busy = max(load[0], end_load[0]) / (os.cpu_count() or 1)
        if busy > 0.5:  # printed with the other notes below
            self.notes.append(
                f"the machine was busy (load {load[0]:.1f} at the start, {end_load[0]:.1f} at "
                f"the end, on {os.cpu_count()} CPUs): timed figures are noisy; a run with "
                "--baseline pointing at this tree (e.g. --baseline src) shows how noisy"
            )
        if self.args.quick:
            self.say(
                "--quick: sizes too small for the verdicts to mean anything; this run only "
                "shows that every part works"
            )
        self.say(
            f"load average at start {load[0]:.2f}, at end {end_load[0]:.2f} on "
            f"{os.cpu_count()} CPUs; {time.perf_counter() - t0:.0f}s"
        )
        for text in self.notes:
            self.say(f"note: {text}")
        workload = results.get("workload", {})
        document = {
            "meta": {
                "started": started.isoformat(timespec="seconds"),
                "duration_s": time.perf_counter() - t0,
                "argv": sys.argv[1:],
                "runs": self.runs,
                "quick": self.args.quick,
                "backends": self.backends,
                "parts": self.parts,
                "sessiondb": self.meta,
                "load_average_start": load,
                "load_average_end": end_load,
                "cpus": os.cpu_count(),
                "servers": {b: targets.safe(u) for b, u in self.servers.items()},
                "versions": cli.versions(),
            },
            "rows": [asdict(r) for r in rows],
            "notes": self.notes,
            "failures": self.failures,
            "parts": {
                **{k: v for k, v in results.items() if k != "workload"},
                "workload": {
                    k: workload.get(k)
                    for k in ("meta", "summary", "ratios", "counts", "failures", "notes")
                },
            },
        }
        self.args.json.parent.mkdir(parents=True, exist_ok=True)
        self.args.json.write_text(json.dumps(document, indent=1, default=str) + "\n")
        self.say(f"results written to {self.args.json}")
        if self.failures:
            self.say(f"{len(self.failures)} failure(s) on the current tree: see above")
            return 1
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.round2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default="sqlite,postgresql,mysql", help="comma list of backends")
    p.add_argument("--runs", type=int, help="runs; medians over them (default 3, 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes and 1 run (CI)")
    p.add_argument(
        "--baseline",
        default=cli.DEFAULT_BASELINE,
        help=f"git ref or directory of the 'before' sessiondb (default {cli.DEFAULT_BASELINE})",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_const",
        const=None,
        help="measure the current tree alone",
    )
    p.add_argument("--skip", help=f"comma list of parts to leave out: {', '.join(PARTS)}")
    p.add_argument(
        "--workload-args",
        help="more options for the workload part, e.g. '--sessions 300 --updates 600 --turns 0' "
        "(see python -m benchmarks --help)",
    )
    p.add_argument("--turns", type=int, help="ADK Runner turns per run (default 30, 5 quick)")
    p.add_argument("--json", type=Path, default=RESULTS, help="where the results go")
    p.add_argument("--sqlite-dir", help="directory for the SQLite files (default: the temp dir)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    r2 = Round2(parse_args(argv))
    try:
        return r2.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(r2.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
