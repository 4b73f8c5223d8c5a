"""Issue 10 §5: one AsyncSessionStore used from several event loops and threads.

The guide's pattern (a store made once, then ``asyncio.run()`` called again and again) and web
servers running one loop per thread both end up there. Whatever the store does about it, no
call may hang and no untyped error may escape; the second test asks that every call works.

The scenario runs in a child process (``_loops.py``): today it can crash the interpreter
(asyncpg's protocol fed from two loops segfaults), which must fail these tests, not kill the
test run. The child is killed by pid when it outlives its bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BOUND = 90.0
_RESULTS: dict[str, tuple[int, list[dict[str, Any]], str]] = {}


def results_for(dbms: str, request: pytest.FixtureRequest) -> tuple[int, list[dict[str, Any]], str]:
    """Run the scenario once per backend (both tests read the same run)."""
    if dbms not in _RESULTS:
        if dbms == "sqlite":
            path = request.getfixturevalue("tmp_path_factory").mktemp("loops") / "loops.db"
            url = f"sqlite:///{path}"
        else:
            url = str(request.getfixturevalue("db").url())
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "tests.faults._loops", url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(
                f"the scenario hung for {BOUND:.0f} s:\n{err.decode()[-3000:]}"
            ) from None
        lines = out.decode().splitlines()
        records = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else []
        _RESULTS[dbms] = (proc.returncode, records, err.decode()[-3000:])
    return _RESULTS[dbms]


def check(dbms: str, request: pytest.FixtureRequest, bad: str) -> None:
    code, records, err = results_for(dbms, request)
    assert code == 0, f"the scenario's process ended with {code} (negative: a signal):\n{err}"
    problems = [f"{r['where']}: {r['outcome']}" for r in records if r[bad]]
    assert records, f"no result from the scenario:\n{err}"
    assert not problems, "\n".join(problems)


LOOPS = ["sqlite", "postgresql", "mysql"]


@pytest.mark.parametrize("dbms", LOOPS)
def test_several_loops_never_hang_and_fail_typed(dbms: str, request: pytest.FixtureRequest) -> None:
    """From any loop or thread: every call answers in time, with a result or a sessiondb error."""
    check(dbms, request, "untyped_or_hung")


@pytest.mark.parametrize("dbms", LOOPS)
def test_several_loops_work(dbms: str, request: pytest.FixtureRequest) -> None:
    """From any loop or thread, every call of one AsyncSessionStore succeeds."""
    check(dbms, request, "failed")
