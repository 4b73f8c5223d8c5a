"""The logic of issue 14's report harness (benchmarks/round2.py, cli --baseline): verdicts,
ratios within runs, rows from results (failures included), the order of baseline twins, the
extraction of a baseline, and the round-trip probe on real servers. Nothing here is timed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from benchmarks import cli, conversation, probe, round2, targets, worker
from benchmarks.contenders import REGISTRY
from benchmarks.workload import Sizes, generate

ROOT = Path(__file__).resolve().parent.parent


def result(
    ops_s: dict[str, float], status: str = "ok", conv_s: float | None = None
) -> dict[str, Any]:
    """A worker result with these ops/s (100 for every op not named) and conversation time."""
    if status != "ok":
        return {"status": status, "error": "boom"}
    out: dict[str, Any] = {
        "status": "ok",
        "ops": {op: {"ops_s": ops_s.get(op, 100.0)} for op in round2.OPS},
    }
    if conv_s is not None:
        out["conversation"] = {"naive": {"total_s": conv_s, "turns": 200}}
    return out


def test_verdicts() -> None:
    assert round2.verdict(20.0, 20.0, ">=") == "met"
    assert round2.verdict(19.9, 20.0, ">=") == "MISSED"
    assert round2.verdict(1.0, 1.0, "<=") == "met"
    assert round2.verdict(2.0, 1.0, "<=") == "MISSED"
    assert round2.verdict(5.0, None, ">=") == "report"
    assert round2.verdict(None, 1.0, "<=") == "no data"
    assert round2.verdict(float("nan"), 1.0, "<=") == "no data"
    with pytest.raises(ValueError):
        round2.verdict(1.0, 1.0, "==")
    row = round2.Row("T3", "postgresql", "x", 5, 1, "<=", before=5)
    assert row.verdict == "MISSED"


def test_pair_ratio_is_the_median_of_ratios_within_runs_and_skips_failed_runs() -> None:
    runs = [
        {"sqlite": {"a": result({"get": 300}), "b": result({"get": 100})}},  # 3.0
        {"sqlite": {"a": result({"get": 100}), "b": result({"get": 100})}},  # 1.0
        {"sqlite": {"a": result({"get": 500}), "b": result({"get": 250})}},  # 2.0
        {"sqlite": {"a": result({}, "failed"), "b": result({"get": 1})}},  # left out
    ]
    assert round2.pair_ratio(runs, "sqlite", "a", "b", "get") == 2.0
    assert round2.pair_ratio(runs, "sqlite", "a", "missing", "get") is None
    assert round2.pair_ratio(runs, "postgresql", "a", "b", "get") is None


def workload_doc(*, failed: str | None = None) -> dict[str, Any]:
    sqlite = {
        "sessiondb-sync": result({"create": 6000, "update": 4000, "delete": 3000}, conv_s=2.5),
        "sessiondb-sync@before": result({"create": 1000, "update": 1000, "delete": 1000}, conv_s=2),
        "sessiondb-async": result({"create": 5000, "get": 50}),
        "sessiondb-async@before": result({"get": 100}),
        "adk": result({"create": 300, "update": 200, "delete": 100}),
        "floor-wal-normal": result({"create": 18000, "update": 16000, "delete": 9000}),
    }
    if failed:
        sqlite[failed] = result({}, "failed")
    return {"runs": [{"sqlite": sqlite}]}


def rows_by(rows: list[round2.Row], target: str) -> dict[str, round2.Row]:
    return {r.measure: r for r in rows if r.target == target}


def test_workload_rows_give_every_target_its_verdict_and_before() -> None:
    rows = round2.workload_rows(workload_doc())
    t1 = rows_by(rows, "T1")
    assert t1["create: sessiondb/ADK"].value == 20.0
    assert t1["create: sessiondb/ADK"].verdict == "met"
    assert t1["create: sessiondb/ADK"].before == pytest.approx(1000 / 300)
    assert t1["update: sessiondb/floor WAL"].value == 0.25
    assert t1["update: sessiondb/floor WAL"].verdict == "MISSED"
    assert t1["delete: sessiondb/floor WAL"].verdict == "met"  # 3000/9000 is exactly 1/3
    t2 = rows_by(rows, "T2")
    assert t2["get: async/sync"].value == 0.5
    assert t2["get: async/sync"].verdict == "MISSED"
    assert t2["create: async/sync"].value == pytest.approx(5000 / 6000)
    assert t2["create: async/sync"].before == 0.1  # 100 over 1,000
    t7 = rows_by(rows, "T7")
    sync = t7["sync: now/before, min over ops + conv"]
    assert sync.value == 0.8  # the conversation: 2.5 s against 2 s before
    assert sync.verdict == "MISSED"
    assert sync.note.startswith("worst conv;")
    assert "get=1.00" in sync.note
    async_ = t7["async: now/before, min over ops + conv"]
    assert async_.value == 0.5
    assert async_.verdict == "MISSED"
    assert async_.note.startswith("worst get")
    assert not rows_by(rows, "T5")  # no PostgreSQL in this run


def test_a_failed_contender_leaves_no_data_not_a_crash() -> None:
    rows = round2.workload_rows(workload_doc(failed="adk"))
    t1 = rows_by(rows, "T1")
    assert t1["create: sessiondb/ADK"].verdict == "no data"
    assert t1["create: sessiondb/floor WAL"].value == pytest.approx(1 / 3)  # the floor ran
    rows = round2.workload_rows(workload_doc(failed="sessiondb-sync@before"))
    assert rows_by(rows, "T1")["create: sessiondb/ADK"].before is None
    assert "sync: now/before, min over ops + conv" not in rows_by(rows, "T7")


def trips_result(sync: int, async_: int, error: str | None = None) -> dict[str, Any]:
    def front(n: int) -> dict[str, Any]:
        ops = {op: {"median": n, "max": n} for op in round2.T3_GOALS}
        return {"owner": ops, "by_id": {op: {"median": n + 1} for op in ops}}

    out: dict[str, Any] = {"status": "ok", "sync": front(sync), "async": front(async_)}
    if error:
        out["async"] = {"error": error}
    return out


def test_trips_rows_take_the_worse_front_end_and_the_backends_goal() -> None:
    trips = {
        "now": {"postgresql": trips_result(1, 2), "mysql": trips_result(2, 2)},
        "before": {"postgresql": trips_result(5, 5)},
    }
    rows = round2.trips_rows(trips)
    pg = {r.measure: r for r in rows if r.backend == "postgresql"}
    my = {r.measure: r for r in rows if r.backend == "mysql"}
    append = pg["round trips: append_event"]
    assert (append.value, append.goal, append.before, append.verdict) == (2, 1, 5, "MISSED")
    assert "sync 1, async 2" in append.note
    assert my["round trips: append_event"].verdict == "met"  # 2 <= 2 on MariaDB
    assert my["round trips: append_event"].before is None
    assert pg["round trips: transform_state"].verdict == "met"
    failed = round2.trips_rows({"now": {"postgresql": trips_result(1, 1, error="Boom: no")}})
    assert failed[0].value == 1
    assert "async: Boom: no" in failed[0].note
    crashed = round2.trips_rows({"now": {"postgresql": {"status": "failed", "error": "x"}}})
    assert {r.verdict for r in crashed} == {"no data"}


def test_json_tasks_and_adk_rows() -> None:
    def json_run(ratio: float) -> dict[str, Any]:
        form = {"ratio": ratio, "sessiondb_ms": 1.0, "orjson_ms": 1.0 / ratio}
        return {"status": "ok", **{size: {"text": form, "pg": form} for size in probe.SIZES}}

    rows = round2.json_rows(
        {"now": [json_run(1.2), json_run(1.8), json_run(1.4)], "before": [json_run(20.0)]}
    )
    assert len(rows) == 2 * len(probe.SIZES)
    assert {(r.value, r.before, r.verdict) for r in rows} == {(1.4, 20.0, "met")}
    rows = round2.json_rows({"now": [{"status": "failed", "error": "ImportError: orjson"}]})
    assert {r.verdict for r in rows} == {"no data"}
    assert "orjson" in rows[0].note

    tasks = round2.tasks_rows(
        {"now": {"sqlite": [{"status": "ok", "ops_s": 900.0}, {"status": "failed"}]}}
    )
    assert (tasks[0].value, tasks[0].verdict, tasks[0].before) == (900.0, "report", None)

    def runner(ours: float, adk: float, memory: float) -> dict[str, Any]:
        def turn(mean: float) -> dict[str, float]:
            return {"mean": mean, "p50": mean / 2}

        return {"summary": {"sessiondb": turn(ours), "adk": turn(adk), "memory": turn(memory)}}

    assert round2.share(runner(11.0, 90.0, 10.0)) == 1 / 80
    assert round2.share(runner(11.0, 90.0, 10.0), "p50") == 1 / 80
    assert round2.share(runner(9.0, 90.0, 10.0)) == -1 / 80  # under the floor: noise, shown
    assert round2.share(runner(11.0, 9.0, 10.0)) is None  # ADK at the floor: no ratio
    assert round2.share({"error": "x"}) is None
    adk = round2.adk_rows(
        {"now": {"sqlite": [runner(11.0, 90.0, 10.0)]},
         "before": {"sqlite": [runner(40.0, 90.0, 10.0)]}}
    )  # fmt: skip
    assert (adk[0].value, adk[0].verdict, adk[0].before) == (1 / 80, "met", 30 / 80)
    adk = round2.adk_rows({"now": {"postgresql": [{"error": "OSError: refused"}]}})
    assert (adk[0].verdict, adk[0].note) == ("no data", "OSError: refused")


def test_baseline_twins_follow_their_contender_and_go_first_every_other_run() -> None:
    entries = cli.with_baseline(list(REGISTRY.values()))
    names = [e.name for e in entries]
    for name in ("sessiondb-sync", "sessiondb-sync-fast", "sessiondb-async"):
        assert names[names.index(name) + 1] == f"{name}@before"
    assert not any(n.endswith("@before") for n in names if not n.startswith("sessiondb"))
    assert cli.base_name("sessiondb-async@before") == "sessiondb-async"
    plan = [(b, e, {}) for b in ("sqlite", "postgresql") for e in entries[:3]]
    first = [(b, e.name) for b, e, _ in cli.run_order(plan, 1)]
    second = [(b, e.name) for b, e, _ in cli.run_order(plan, 2)]
    assert first == [(b, e.name) for b, e, _ in plan]
    assert second[:3] == [
        ("sqlite", "sessiondb-sync@before"), ("sqlite", "sessiondb-sync"),
        ("sqlite", "sessiondb-sync-fast"),
    ]  # fmt: skip
    assert sorted(first) == sorted(second)


def _wal_frames(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return max(0, wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_empty_wal_checkpoints_and_truncates_a_wal_file(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    keep = sqlite3.connect(db, isolation_level=None)  # open: the WAL outlives its commits
    keep.execute("PRAGMA journal_mode=WAL")
    keep.execute("CREATE TABLE t (v TEXT)")
    for i in range(50):
        keep.execute("INSERT INTO t VALUES (?)", ("x" * 5000 + str(i),))
    assert _wal_frames(db) > 50
    got = targets.empty_wal(f"sqlite:///{db}")
    assert got is not None and got["frames"] > 50 and got["busy"] == 0
    assert Path(f"{db}-wal").stat().st_size == 0
    assert keep.execute("SELECT count(*) FROM t").fetchone()[0] == 50
    keep.close()
    rollback = tmp_path / "delete.db"
    sqlite3.connect(rollback, isolation_level=None).execute("CREATE TABLE t (v)").connection.close()
    assert targets.empty_wal(f"sqlite:///{rollback}") is None


def test_a_conversation_starts_on_an_empty_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CRUD phases' WAL is checkpointed before each conversation, so that whether the
    conversation meets the autocheckpoint does not depend on where the earlier phases left it."""
    db = tmp_path / "bench.db"
    url = f"sqlite:///{db}"
    contender = REGISTRY["sessiondb-sync-fast"].load()(targets.Target("sqlite", url, url))
    at_start: dict[str, int] = {}
    turns_sync = conversation.turns_sync

    def spy(c: Any, handle: Any, messages: Any, *args: Any) -> Any:
        at_start[args[-1]] = _wal_frames(db)
        return turns_sync(c, handle, messages, *args)

    monkeypatch.setattr(conversation, "turns_sync", spy)
    sizes = Sizes(sessions=40, users=4, updates=80, gets=10, lists=10, turns=3, warmup=5)
    got = asyncio.run(worker.Runner(contender, generate(sizes, 42), None).run())
    naive = got["conversation"]["naive"]
    assert naive["wal_emptied"]["busy"] == 0
    assert naive["wal_emptied"]["frames"] > 100  # what the CRUD phases left
    events = got["conversation"]["sessiondb-events"]["wal_emptied"]
    assert events["frames"] > 0 and events["busy"] == 0  # the naive conversation's
    # the conversation's session only: its create restarted the emptied WAL
    assert 0 < at_start["naive"] <= 5 and 0 < at_start["sessiondb-events"] <= 5


def test_extract_baseline_from_a_directory_and_from_git(tmp_path: Path) -> None:
    info = cli.extract_baseline(str(ROOT / "src"), tmp_path / "dir")
    assert (tmp_path / "dir" / "sessiondb" / "__init__.py").is_file()
    assert info["source"] == str((ROOT / "src" / "sessiondb").resolve())
    assert "commit" not in info
    with pytest.raises(cli.BaselineError, match="neither a directory"):
        cli.extract_baseline("no-such-ref-anywhere", tmp_path / "bad")
    inside = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if inside.returncode != 0:
        pytest.skip("not a git checkout")
    info = cli.extract_baseline("HEAD", tmp_path / "git")
    assert info["commit"] == inside.stdout.strip()
    assert (tmp_path / "git" / "sessiondb" / "_migrations").is_dir()
    assert not (tmp_path / "git" / "src").exists()
    assert info["sha256"] == cli.tree_digest(tmp_path / "git" / "sessiondb")


async def test_trips_probe_counts_round_trips(backend: str, make_db_url: Any) -> None:
    if backend == "sqlite":
        pytest.skip("round trips are counted on the servers (a TCP proxy)")
    got = await probe.trips(make_db_url(backend), "r2test_")
    for front in ("sync", "async"):
        owner, by_id = got[front]["owner"], got[front]["by_id"]
        assert owner["get_session"]["median"] == 1  # one statement, one round trip
        for op in round2.T3_GOALS:
            counts = owner[op]["counts"]
            assert len(counts) == probe.COUNTED and min(counts) >= 1
            assert by_id[op]["median"] >= owner[op]["median"]


def test_round2_runs_a_part_and_reports_a_bad_baseline_and_a_missing_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SESSIONDB_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:1/x")
    out = tmp_path / "round2.json"
    argv = ["--db", "sqlite,postgresql", "--quick", "--skip", "workload,trips,json,adk",
            "--baseline", "no-such-ref-anywhere", "--json", str(out)]  # fmt: skip
    assert round2.main(argv) == 0  # neither is a failure of the current tree
    doc = json.loads(out.read_text())
    assert any("no baseline" in n for n in doc["notes"])
    assert any("skipping postgresql" in n for n in doc["notes"])
    (row,) = doc["rows"]
    assert (row["target"], row["backend"], row["verdict"]) == ("T2", "sqlite", "report")
    assert row["value"] > 0 and row["before"] is None
    assert doc["parts"]["tasks"]["now"]["sqlite"][0]["tasks"] == 64
    assert "64 async tasks" in capsys.readouterr().out
