"""``python -m benchmarks``: plan the runs, start one worker process per contender, report.

Order: a short counting pass per contender and backend (round trips or statements per op, also a
smoke test), then ``--runs`` timed runs; inside a run every backend, and on each backend every
contender in the registry's order, so ratios compare figures taken minutes apart at most.

With ``--baseline REF`` every sessiondb contender gets a twin, ``NAME@before``, that imports
sessiondb from ``git archive REF src/sessiondb`` (or from a directory holding ``sessiondb/``),
runs right beside it in the same run (before it in every other run) and keeps its tables
under a prefix of its own.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import report, targets
from .contenders import REGISTRY, Entry
from .conversation import VARIANTS
from .workload import Sizes

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the package
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
PACKAGES = (
    "sessiondb", "sqlalchemy", "google-adk", "psycopg", "asyncpg", "pymysql", "aiomysql",
    "aiosqlite", "orjson", "pydantic",
)  # fmt: skip


# The commit before round two of the performance work (issue 14): what "before" means.
DEFAULT_BASELINE = "9e5295d"
BEFORE = "@before"  # suffix of a baseline twin's name
BASELINE_PREFIX = "bbench_"  # the twins' table prefix (the current tree's is "bench_")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The sessiondb benchmark (workload: shared/bench/workload.md).",
    )
    p.add_argument("--db", default="sqlite", help="comma list of sqlite,postgresql,mysql")
    d = Sizes()
    p.add_argument("--sessions", type=int, help=f"N sessions (default {d.sessions})")
    p.add_argument("--users", type=int, help=f"U users (default {d.users})")
    p.add_argument("--updates", type=int, help=f"M state updates (default {d.updates})")
    p.add_argument("--gets", type=int, help=f"G get_session calls (default {d.gets})")
    p.add_argument("--lists", type=int, help=f"L list_sessions calls (default {d.lists})")
    p.add_argument("--turns", type=int, help=f"T conversation turns, 0 skips (default {d.turns})")
    p.add_argument("--warmup", type=int, help=f"W warm-up sessions (default {d.warmup})")
    p.add_argument("--seed", type=int, default=42, help="seed of all data (default 42)")
    p.add_argument("--runs", type=int, help="timed runs; medians are reported (default 3)")
    p.add_argument(
        "--contenders",
        help="comma list of contender names or globs (default: all). Known: " + ", ".join(REGISTRY),
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and 1 run (40 sessions, 8 users, 40 ops, 10 turns, 5 warm-up); for CI",
    )
    p.add_argument("--no-count", action="store_true", help="skip the counting pass")
    p.add_argument(
        "--no-snapshot",
        action="store_true",
        help="import sessiondb from where it is installed in every worker, instead of from a "
        "copy taken at the start (the copy keeps edits made during a run out of it)",
    )
    p.add_argument("--sqlite-dir", help="directory for the SQLite files (default: the temp dir)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker (default 3600)")
    p.add_argument(
        "--baseline",
        nargs="?",
        const=DEFAULT_BASELINE,
        metavar="REF",
        help="also run every sessiondb contender as NAME@before, on the sessiondb of git ref REF "
        f"(or of a directory holding sessiondb/), interleaved (default REF: {DEFAULT_BASELINE})",
    )
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = Sizes.quick() if args.quick else Sizes()
    given = {k: getattr(args, k) for k in base.to_dict() if getattr(args, k, None) is not None}
    return replace(base, **given)


def pick(patterns: str | None) -> list[Entry]:
    if not patterns:
        return list(REGISTRY.values())
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    unknown = [w for w in wanted if not any(fnmatch.fnmatchcase(n, w) for n in REGISTRY)]
    if unknown:
        raise SystemExit(
            f"unknown contender(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}"
        )
    return [e for n, e in REGISTRY.items() if any(fnmatch.fnmatchcase(n, w) for w in wanted)]


def with_baseline(entries: list[Entry]) -> list[Entry]:
    """``entries`` with a ``NAME@before`` twin right after every sessiondb contender."""
    out: list[Entry] = []
    for entry in entries:
        out.append(entry)
        if entry.name.startswith("sessiondb"):
            out.append(
                replace(
                    entry, name=entry.name + BEFORE, description=entry.description + " (baseline)"
                )
            )
    return out


def base_name(name: str) -> str:
    """The registry name of a contender (``sessiondb-sync@before`` -> ``sessiondb-sync``)."""
    return name.removesuffix(BEFORE)


def run_order(plan: list[Any], run: int) -> list[Any]:
    """The plan of timed run number ``run`` (1-based): in even runs every baseline twin goes
    before its current contender, so neither side always runs first on a warmer machine."""
    out = list(plan)
    if run % 2:
        return out
    i = 0
    while i < len(out) - 1:
        here, after = out[i][1].name, out[i + 1][1].name
        if after == here + BEFORE and out[i][0] == out[i + 1][0]:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


class BaselineError(Exception):
    """The baseline's sessiondb could not be extracted."""


def extract_baseline(ref: str, dest: Path, repo: Path = ROOT) -> dict[str, Any]:
    """Put the sessiondb package of ``ref`` under ``dest`` (as ``dest/sessiondb``).

    ``ref`` is a git ref of ``repo`` (its ``src/sessiondb`` is extracted with ``git archive``),
    or a directory holding ``sessiondb/`` or ``src/sessiondb/`` (copied). Returns what was used:
    ``ref``, ``commit`` (git only) and ``sha256`` of the files. Raises :class:`BaselineError`.
    """
    given = Path(ref)
    info: dict[str, Any] = {"ref": ref}
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for candidate in (given / "sessiondb", given / "src" / "sessiondb"):
        if (candidate / "__init__.py").is_file():
            shutil.copytree(candidate, dest / "sessiondb",
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
            info["source"] = str(candidate.resolve())
            break
    else:
        git = ["git", "-C", str(repo)]
        try:
            commit = subprocess.run(
                [*git, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout.strip()  # fmt: skip
            archive = dest / "baseline.tar"
            with archive.open("wb") as out:
                subprocess.run(
                    [*git, "archive", "--format=tar", commit, "src/sessiondb"],
                    stdout=out, stderr=subprocess.PIPE, check=True, timeout=120,
                )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or ""
            detail = detail.decode() if isinstance(detail, bytes) else detail
            raise BaselineError(
                f"{ref!r} is neither a directory holding sessiondb/ nor a commit of {repo}"
                + (f": {detail.strip()}" if detail.strip() else "")
            ) from exc
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("src/sessiondb/")]
            for member in members:
                member.name = member.name.removeprefix("src/")
            if hasattr(tarfile, "data_filter"):  # Python 3.12, and recent 3.10/3.11
                tar.extractall(dest, members=members, filter="data")
            else:  # the archive is this repository's own
                tar.extractall(dest, members=members)
        archive.unlink()
        info["commit"] = commit
    if not (dest / "sessiondb" / "__init__.py").is_file():
        raise BaselineError(f"{ref!r} holds no sessiondb package")
    info["sha256"] = tree_digest(dest / "sessiondb")
    return info


def tree_digest(package: Path) -> str:
    """sha256 prefix of every file under ``package`` (paths and contents)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    out["sqlite (library)"] = sqlite3.sqlite_version
    return out


_SMOKE = """
import sys, sessiondb
url = "sqlite:///" + sys.argv[1]
with sessiondb.SessionStore(url) as store:
    made = store.create_session("smoke", "u", {"k": 1})
    assert store.get_session("smoke", "u", made.id).state == {"k": 1}
"""


def _smoke_test(snapshot: Path, tmp: Path) -> str | None:
    """None if the sessiondb copy in ``snapshot`` imports and works, else what went wrong."""
    db = tmp / "smoke.db"
    for leftover in tmp.glob("smoke.db*"):
        leftover.unlink()
    env = dict(os.environ, PYTHONPATH=str(snapshot))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SMOKE, str(db)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _machine_cpu() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds of our finished children).

    Their difference over a worker's run is the CPU that everything else used meanwhile: the
    database server, and whatever else runs on the machine. Linux only.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / os.sysconf("SC_CLK_TCK"), children.ru_utime + children.ru_stime


class Orchestrator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = sizes_from(args)
        self.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
        self.notes: list[str] = []
        self.failures: list[dict[str, Any]] = []
        self.servers: dict[str, dict[str, Any]] = {}
        self.backends = [b.strip() for b in args.db.split(",") if b.strip()]
        bad = [b for b in self.backends if b not in targets.BACKENDS]
        if bad:
            raise SystemExit(f"unknown --db value(s): {', '.join(bad)}; use {targets.BACKENDS}")
        if self.runs < 1:
            raise SystemExit("--runs must be at least 1")
        self.entries = pick(args.contenders)
        self.sizes.check()
        self.tmp = Path(tempfile.mkdtemp(prefix="sessiondb-bench-jobs-"))
        self.pythonpath = [str(ROOT)]
        self.snapshot: dict[str, Any] = {}
        self.baseline: dict[str, Any] = {}
        self.baseline_path: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(f"note: {text}")

    # -- planning --------------------------------------------------------------------------

    def plan(self) -> list[tuple[str, Entry, dict[str, Any]]]:
        entries = self.entries
        plan = []
        for backend in self.backends:
            where: dict[str, Any] = {}
            if backend != "sqlite":
                url = targets.server_url(backend)
                ok, detail = targets.reachable(backend, url)
                if not ok:
                    self.note(f"skipping {backend}: {detail}")
                    continue
                where["url"] = url
                self.servers[backend] = {"url": targets.safe(url), "version": detail}
                self.say(f"{backend}: {targets.safe(url)} ({detail})")
            for entry in entries:
                if backend not in entry.backends:
                    continue
                missing = entry.missing(backend)
                if missing:
                    self.note(
                        f"skipping {entry.name} on {backend}: {', '.join(missing)} not installed"
                    )
                    continue
                job = dict(where)
                if entry.name == "adk" and backend != "sqlite":
                    job["adk_database"] = targets.ensure_adk_database(where["url"])
                    if job["adk_database"] is None:
                        self.note(f"adk on {backend}: no database of its own; sharing the main one")
                plan.append((backend, entry, job))
        return plan

    def take_snapshot(self, attempts: int = 6, pause: float = 10.0) -> None:
        """Copy the sessiondb package so that every worker of this run imports the same code.

        A copy taken while files are half edited may not work: each copy must pass a smoke test
        (import, create, get) in a fresh process; a failing one is retaken after ``pause``.
        """
        spec = importlib.util.find_spec("sessiondb")
        if spec is None or not spec.submodule_search_locations:
            return
        source = Path(next(iter(spec.submodule_search_locations)))
        dest = self.tmp / "snapshot"
        for attempt in range(1, attempts + 1):
            shutil.rmtree(dest, ignore_errors=True)
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source, dest / "sessiondb", ignore=ignore)
            problem = _smoke_test(dest, self.tmp)
            if problem is None:
                break
            self.say(f"sessiondb snapshot {attempt}/{attempts} does not work: {problem}")
            if attempt < attempts:
                time.sleep(pause)
        else:
            self.note("no working copy of sessiondb could be taken; using the last one")
        self.pythonpath.insert(0, str(dest))
        self.snapshot = {"source": str(source), "sha256": tree_digest(dest / "sessiondb")}
        self.say(f"sessiondb: snapshot of {source} (sha256 {self.snapshot['sha256']})")

    def take_baseline(self, ref: str) -> None:
        """Extract the baseline's sessiondb and add the ``@before`` twins (a failure is noted,
        and the run goes on without them)."""
        dest = self.tmp / "baseline"
        try:
            self.baseline = extract_baseline(ref, dest)
        except BaselineError as exc:
            self.note(f"no baseline: {exc}")
            return
        problem = _smoke_test(dest, self.tmp)
        if problem is not None:
            self.note(f"no baseline: the sessiondb of {ref!r} does not work: {problem}")
            self.baseline = {}
            return
        self.baseline_path = [str(dest), str(ROOT)]
        self.entries = with_baseline(self.entries)
        where = self.baseline.get("commit", self.baseline.get("source", ref))
        self.say(f"baseline: sessiondb of {ref} ({where}, sha256 {self.baseline['sha256']})")

    # -- workers ---------------------------------------------------------------------------

    def work(self, mode: str, backend: str, entry: Entry, job: dict[str, Any]) -> dict[str, Any]:
        sizes = self.sizes.for_counting() if mode == "count" else self.sizes
        out = self.tmp / f"{mode}-{backend}-{entry.name}.json"
        out.unlink(missing_ok=True)
        before = entry.name.endswith(BEFORE)
        spec = {
            **job,
            "table_prefix": BASELINE_PREFIX if before else None,
            "mode": mode,
            "contender": entry.name,
            "backend": backend,
            "sizes": sizes.to_dict(),
            "seed": self.args.seed,
            "out": str(out),
            "sqlite_dir": self.args.sqlite_dir,
        }
        job_file = self.tmp / f"job-{mode}-{backend}-{entry.name}.json"
        job_file.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ)
        path = self.baseline_path if before else self.pythonpath
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*path, env.get("PYTHONPATH")]))
        started = time.perf_counter()
        machine_before = _machine_cpu()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.worker", str(job_file)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.args.timeout,
                check=False,
            )
            stderr, code = proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stderr, code = f"timed out after {exc.timeout}s", -1
        took = time.perf_counter() - started
        machine_after = _machine_cpu()
        if code == 0 and out.exists():
            result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        else:
            result = {
                "status": "failed",
                "kind": "internal",
                "error": f"worker exited with {code}",
                "stderr": stderr[-4000:],
                "contender": entry.name,
                "backend": backend,
                "mode": mode,
            }
        result["wall_s"] = took
        if machine_before and machine_after and took > 0:
            busy = machine_after[0] - machine_before[0]
            own = machine_after[1] - machine_before[1]
            result["others_cpu_pct"] = max(0.0, busy - own) / took * 100
        if result["status"] != "ok":
            self.failures.append(result)
            self.say(f"  FAILED ({result.get('kind')}): {result.get('error')}")
            if result.get("traceback"):
                self.say("  " + result["traceback"].rstrip().replace("\n", "\n  "))
            if result.get("stderr"):
                self.say("  stderr: " + result["stderr"].rstrip()[-2000:].replace("\n", "\n  "))
        return result

    def progress(self, label: str, backend: str, name: str) -> None:
        print(f"{label} {backend:<10} {name:<20} ", end="", flush=True)

    def done(self, result: dict[str, Any]) -> None:
        if result["status"] == "ok":
            extra = ""
            if result.get("mode") == "time":
                ops = result["ops"]
                extra = "  " + " ".join(f"{op}={ops[op]['ops_s']:,.0f}/s" for op in report.OPS)
            others = result.get("others_cpu_pct")
            if others is not None:
                extra += f"  (others' CPU {others:.0f}%)"
            self.say(f"ok {result['wall_s']:.1f}s{extra}")

    # -- the whole benchmark ---------------------------------------------------------------

    def run(self) -> int:
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        s = self.sizes
        self.say(
            f"sessiondb benchmark: N={s.sessions} U={s.users} M={s.updates} G={s.gets} "
            f"L={s.lists} T={s.turns} W={s.warmup} seed={self.args.seed} runs={self.runs}"
        )
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        if load is not None:
            self.say(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            if load[0] > 0.5:
                self.note(
                    f"the machine was busy at the start (load {load[0]:.2f}): figures may be noisy"
                )
        if not self.args.no_snapshot:
            self.take_snapshot()
        if self.args.baseline:
            self.take_baseline(self.args.baseline)
        plan = self.plan()
        if not plan:
            self.note("nothing to run")
        counts: report.Results = {}
        if plan and not self.args.no_count:
            self.say(f"counting pass (sizes {self.sizes.for_counting().to_dict()}):")
            kept = []
            for backend, entry, job in plan:
                self.progress("  count", backend, entry.name)
                result = self.work("count", backend, entry, job)
                counts.setdefault(backend, {})[entry.name] = result
                self.done(result)
                if result["status"] == "ok":
                    kept.append((backend, entry, job))
                else:
                    self.note(f"{entry.name} on {backend} failed its counting pass: not timed")
            plan = kept
        runs: list[report.Results] = []
        for r in range(1, self.runs + 1 if plan else 1):
            self.say(f"run {r}/{self.runs}:")
            results: report.Results = {}
            for backend, entry, job in run_order(plan, r):
                self.progress("  time ", backend, entry.name)
                result = self.work("time", backend, entry, job)
                results.setdefault(backend, {})[entry.name] = result
                self.done(result)
            runs.append(results)
        summary = report.summarize(runs)
        ratio_table = report.ratios(runs, report.pairs(bool(self.baseline)))
        duration = time.perf_counter() - t0
        order = [e.name for e in with_baseline(list(REGISTRY.values()))]
        self.say("")
        self.say(report.render(summary, counts, ratio_table, order, self.runs))
        vers = versions()
        self.say(
            f"google-adk {vers.get('google-adk') or 'not installed'}; sessiondb "
            f"{vers.get('sessiondb')}; SQLAlchemy {vers.get('sqlalchemy')}; "
            f"SQLite {vers['sqlite (library)']}; total time {duration:.0f}s"
        )
        for n in self.notes:
            self.say(f"note: {n}")
        document = {
            "meta": {
                "started": started.isoformat(timespec="seconds"),
                "duration_s": duration,
                "sizes": self.sizes.to_dict(),
                "counting_sizes": self.sizes.for_counting().to_dict(),
                "seed": self.args.seed,
                "runs": self.runs,
                "argv": sys.argv[1:],
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "processor": platform.processor(),
                },
                "versions": vers,
                "load_average_start": load,
                "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "servers": self.servers,
                "sessiondb_snapshot": self.snapshot or None,
                "baseline": self.baseline or None,
                "contenders": {
                    e.name: {"description": e.description, "backends": list(e.backends)}
                    for e in REGISTRY.values()
                },
                "conversation_variants": {
                    v.name: {"description": v.description, "implemented": v.implemented}
                    for v in VARIANTS.values()
                },
            },
            "notes": self.notes,
            "failures": self.failures,
            "summary": summary,
            "ratios": ratio_table,
            "counts": counts,
            "runs": runs,
        }
        path = self.args.json
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
        self.say(f"results written to {path}")
        if self.failures:
            self.say(f"{len(self.failures)} failure(s): see above and 'failures' in the JSON")
            return 1
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    orchestrator = Orchestrator(args)
    try:
        return orchestrator.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(orchestrator.tmp, ignore_errors=True)
