"""benchmarks/langgraph.py keeps working (at tiny sizes; the figures are in docs/performance.md),
and its ``--rtt`` proxy really holds each round trip back."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import langgraph
from benchmarks.proxy import DelayProxy
from benchmarks.targets import host_port, with_host


def test_the_delay_proxy_holds_each_round_trip_back(backend: str, db_url: str) -> None:
    if backend == "sqlite":
        pytest.skip("a SQLite file has no round trips")
    with DelayProxy(*host_port(db_url), 0.004) as proxy:
        through = langgraph.round_trip(with_host(db_url, proxy.host, proxy.port))
    # each direction's bytes leave the proxy 2 ms after they came in, never sooner
    assert through >= 4.0


def test_the_benchmark_runs_on_sqlite(tmp_path: Path) -> None:
    found = langgraph.measure("sqlite", tmp_path, turns=2, concurrent_turns=1, rounds=1)
    assert {"InMemorySaver (floor)", "sessiondb", "sessiondb (full)"} <= set(found)
    for single, many in found.values():  # seconds per turn, turns per second
        assert single > 0 and many > 0
