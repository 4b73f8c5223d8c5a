"""LangGraph: the published conformance suite, a real graph, and sessiondb's extras.

The conformance suite (PyPI ``langgraph-checkpoint-conformance``) runs against
``AsyncSessiondbSaver`` on every backend; every capability it detects must pass, with no
capability skipped. The real graph is a tool-calling loop with a scripted chat model (no
network), interrupted and resumed, then resumed again in a second process.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="sessiondb[langgraph] is missing")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from sessiondb.langgraph import AsyncSessiondbSaver

#: what the conformance suite checks, per capability (its own count of tests)
EXPECTED = {cap.value for cap in ALL_CAPABILITIES}


async def test_conformance(db_url: str) -> None:
    """Every capability of LangGraph's conformance suite passes, none skipped."""

    @checkpointer_test(name=f"AsyncSessiondbSaver[{db_url.split(':', 1)[0]}]")
    async def saver() -> AsyncGenerator[AsyncSessiondbSaver, None]:
        async with AsyncSessiondbSaver.from_conn_string(db_url) as s:
            yield s

    report = await validate(saver)
    results = report.results
    failures = {cap: r.failures for cap, r in results.items() if r.failures}
    assert not failures, failures
    assert set(results) == EXPECTED
    not_run = sorted(cap for cap, r in results.items() if not r.detected or r.passed is not True)
    assert not_run == [], f"capabilities not run or not passed: {not_run}"
    counts = {cap: r.tests_passed for cap, r in sorted(results.items())}
    print(f"conformance {db_url.split(':', 1)[0]}: {sum(counts.values())} passed {counts}")
    assert all(n > 0 for n in counts.values())
