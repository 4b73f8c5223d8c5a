"""SQLite durability: the default (``"normal"``), ``"full"`` and ``"fast"``.

The default writes with WAL's ``synchronous=NORMAL`` and folds the WAL into the main file once
writes pause (a thread of the store's own) and at close: a copy of the idle file is a backup,
and every acknowledged write survives ``kill -9`` of the writing process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sessiondb import AsyncSessionStore, SessionStore
from sessiondb._engine import Checkpointer
from sessiondb.errors import ConfigurationError

pytestmark = pytest.mark.sqlite

IDLE = 30.0  # seconds a test waits for the checkpoint that follows a pause (it takes ms)


def checkpointer(store: Any) -> Checkpointer:
    ck = store._backend.runner.checkpointer
    assert isinstance(ck, Checkpointer)
    return ck


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sessiondb-checkpoint"]


def copy_rows(path: Path, tmp_path: Path) -> dict[str, Any]:
    """Copy only the main file (as the guide does) and read every session's state from it."""
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT id, state FROM sessions").fetchall()
    copy.unlink()
    return {sid: json.loads(state) for sid, state in rows}


def pragma(path: Path, name: str) -> Any:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_default_is_normal_and_a_copy_of_the_idle_file_holds_every_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.db"
    with SessionStore(f"sqlite:///{path}") as store:
        report = store.doctor()
        assert report["pragmas"]["synchronous"] == 1  # NORMAL
        assert report["pragmas"]["journal_mode"] == "wal"
        expected = {}
        for n in range(30):
            expected[store.create_session("app", f"u{n % 3}", {"n": n}).id] = {"n": n}
        for sid in list(expected)[::2]:
            store.patch_state(sid, set={"more": "é" * 40})
            expected[sid]["more"] = "é" * 40
        ck = checkpointer(store)
        # no call after the last write: the store's own thread checkpoints once writes pause
        assert ck.wait_idle(IDLE)
        assert ck.runs >= 1
        assert Path(f"{path}-wal").stat().st_size == 0  # TRUNCATE: the WAL is left empty
        assert copy_rows(path, tmp_path) == expected  # the service is still open, and idle


def test_writes_after_a_checkpoint_are_checkpointed_too(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with SessionStore(f"sqlite:///{path}") as store:
        ck = checkpointer(store)
        expected = {}
        for round_ in range(3):
            made = store.create_session("app", "u", {"round": round_})
            expected[made.id] = {"round": round_}
            assert ck.wait_idle(IDLE)
            assert copy_rows(path, tmp_path) == expected


def test_a_reader_holding_old_frames_delays_the_checkpoint_until_it_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.db"
    with SessionStore(f"sqlite:///{path}") as store:
        first = store.create_session("app", "u", {"n": 0})
        ck = checkpointer(store)
        assert ck.wait_idle(IDLE)
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
            second = store.create_session("app", "u", {"n": 1})  # after the reader's snapshot
            deadline = time.monotonic() + IDLE
            while ck.incomplete == 0:  # the reader keeps the new frames out of the main file
                assert time.monotonic() < deadline, "no checkpoint was tried"
                time.sleep(0.01)
            assert copy_rows(path, tmp_path) == {first.id: {"n": 0}}
            reader.execute("COMMIT")  # the snapshot goes: the next try completes
        finally:
            reader.close()
        assert ck.wait_idle(IDLE)
        assert copy_rows(path, tmp_path) == {first.id: {"n": 0}, second.id: {"n": 1}}


def test_close_checkpoints_and_ends_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    before = set(checkpoint_threads())
    other = sqlite3.connect(path)  # holds the file open: SQLite's own checkpoint at the last
    try:  # connection's close cannot be what empties the WAL
        store = SessionStore(f"sqlite:///{path}")
        made = store.create_session("app", "u", {"n": 1})
        assert set(checkpoint_threads()) - before
        store.close()  # well within the pause: close itself checkpoints
        assert set(checkpoint_threads()) == before
        assert copy_rows(path, tmp_path) == {made.id: {"n": 1}}
    finally:
        other.close()


def test_a_store_dropped_without_close_ends_its_thread(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    before = set(checkpoint_threads())
    store = SessionStore(f"sqlite:///{path}")
    made = store.create_session("app", "u", {"n": 1})
    mine = set(checkpoint_threads()) - before
    assert mine
    del store
    gc.collect()
    for thread in mine:
        thread.join(IDLE)
        assert not thread.is_alive()
    assert copy_rows(path, tmp_path) == {made.id: {"n": 1}}


async def test_async_store_checkpoints_once_idle_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    before = set(checkpoint_threads())
    store = AsyncSessionStore(f"sqlite:///{path}")
    try:
        made = await store.create_session("app", "u", {"n": 1})
        await store.patch_state(made.id, set={"m": 2})
        assert await asyncio.to_thread(checkpointer(store).wait_idle, IDLE)
        assert copy_rows(path, tmp_path) == {made.id: {"n": 1, "m": 2}}
        last = await store.create_session("app", "u", {"n": 3})
    finally:
        await store.close()
    assert set(checkpoint_threads()) == before
    assert copy_rows(path, tmp_path) == {made.id: {"n": 1, "m": 2}, last.id: {"n": 3}}


@pytest.mark.parametrize("durability", ["full", "fast"])
def test_other_durabilities_start_no_thread(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "live.db"
    before = set(checkpoint_threads())
    with SessionStore(f"sqlite:///{path}", sqlite_durability=durability) as store:  # type: ignore[arg-type]
        store.create_session("app", "u", {"n": 1})
        assert store._backend.runner.checkpointer is None
        assert set(checkpoint_threads()) == before
        report = store.doctor()
        assert report["pragmas"]["synchronous"] == (2 if durability == "full" else 1)
        if durability == "full":  # checkpointed by the commit itself
            assert copy_rows(path, tmp_path) != {}


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'normal', 'full' or 'fast'"):
        SessionStore(f"sqlite:///{tmp_path / 'x.db'}", sqlite_durability="safe")  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()  # nothing made


_WRITER = textwrap.dedent(
    """
    import sys
    from sessiondb import SessionStore

    store = SessionStore(sys.argv[1], sqlite_durability=sys.argv[2])
    n = 0
    while True:  # until killed: each id is printed once its create has returned
        made = store.create_session("app", "u", {"n": n, "pad": "x" * 200})
        store.patch_state(made.id, set={"patched": n})
        print(made.id, n, flush=True)
        n += 1
    """
)

_ASYNC_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from sessiondb import AsyncSessionStore

    async def main():
        store = AsyncSessionStore(sys.argv[1], sqlite_durability=sys.argv[2])
        n = 0
        while True:  # until killed: each id is printed once its create has returned
            made = await store.create_session("app", "u", {"n": n, "pad": "x" * 200})
            await store.patch_state(made.id, set={"patched": n})
            print(made.id, n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("durability", "front"),
    [("normal", "sync"), ("full", "sync"), ("fast", "sync"), ("normal", "async"),
     ("full", "async")],
)  # fmt: skip
def test_every_acknowledged_write_survives_kill_9_of_the_writer(
    tmp_path: Path, durability: str, front: str
) -> None:
    """Async writes at "normal" commit on the event loop's thread; at "full", in a worker."""
    path = tmp_path / "killed.db"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER if front == "sync" else _ASYNC_WRITER, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), f"sqlite:///{path}", durability],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(acknowledged) < 300:
            line = proc.stdout.readline()
            assert line, f"the writer ended early (status {proc.poll()})"
            sid, n = line.split()
            acknowledged[sid] = int(n)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: nothing is closed or flushed
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with SessionStore(f"sqlite:///{path}") as store:
        for sid, n in acknowledged.items():
            found = store.get_session("app", "u", sid)
            assert found is not None, f"acknowledged session {n} lost"
            assert found.state == {"n": n, "pad": "x" * 200, "patched": n}


def test_the_sqlite_writes_benchmark_runs() -> None:
    from benchmarks import sqlite_writes

    result = sqlite_writes.measure(20, rounds=1)
    assert set(result["ops"]) == {"floor", "schema", "sessiondb"}
    assert all(v > 0 for per in result["ops"].values() for v in per.values())
