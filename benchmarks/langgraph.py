"""``python -m benchmarks.langgraph``: sessiondb's LangGraph checkpointer beside LangGraph's own.

The same graph (a three-node tool loop per turn, no model: the nodes are plain Python, so the
time is the graph's and the checkpointer's) runs on:

- ``sessiondb`` (``SessiondbSaver``) on SQLite (at the default durability and at ``"full"``)
  and PostgreSQL (and MariaDB, which LangGraph has no saver for);
- LangGraph's ``SqliteSaver`` (one ``sqlite3`` connection) and ``PostgresSaver`` (on a
  ``psycopg_pool.ConnectionPool`` of 16 connections, as its docs show for concurrent use).

Measured: **per-turn latency** on one thread (one ``graph.invoke`` = 4 checkpoints and their
writes), median of ``--turns`` turns after a warm-up; and **throughput** with 16 Python
threads, each running its own LangGraph thread, on one saver (turns per second). A backend's
contenders are all open at once and measured in ``--rounds`` interleaved rounds (the order
rotating), so a passing load falls on each alike; each sessiondb line ends with its ratio
against LangGraph's own saver on that backend (the issue's target: at least 1.00 on one
thread, at least 2 under 16 threads on PostgreSQL).

    python -m benchmarks.langgraph                       # sqlite,postgresql
    python -m benchmarks.langgraph --db sqlite,postgresql,mysql --turns 200 --concurrent-turns 40

Needs ``pip install -e '.[dev]' langgraph-checkpoint-postgres langgraph-checkpoint-sqlite``.
Every contender gets a new database (PostgreSQL/MariaDB: created and dropped; SQLite: a new
file), so each starts from empty tables.
"""

from __future__ import annotations

import argparse
import operator
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

from .proxy import DelayProxy
from .targets import host_port, scratch_database, with_host

THREADS = 16


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    calls: int


def build(checkpointer: Any) -> Any:
    """The graph: agent -> tool -> agent (reply), 4 checkpoints per turn."""
    from langgraph.graph import END, START, StateGraph

    def agent(state: State) -> dict[str, Any]:
        last = state["messages"][-1]
        if last.startswith("tool:"):
            return {"messages": [f"reply to {last}"]}
        return {"messages": [f"call weather({last})"], "calls": state.get("calls", 0) + 1}

    def tool(state: State) -> dict[str, Any]:
        return {"messages": [f"tool: sunny ({state['messages'][-1]})"]}

    def route(state: State) -> str:
        return "tool" if state["messages"][-1].startswith("call ") else END

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tool", END])
    g.add_edge("tool", "agent")
    return g.compile(checkpointer=checkpointer)


@contextmanager
def server_database(backend: str) -> Iterator[str]:
    """A new database on ``backend``'s server, dropped afterwards."""
    with scratch_database(backend, "sdb_bench_lg") as url:
        yield url


# -- contenders: each a context manager yielding a checkpointer -----------------------------


@contextmanager
def sessiondb_saver(url: str, **options: Any) -> Iterator[Any]:
    from sessiondb.langgraph import SessiondbSaver

    with SessiondbSaver(url, pool_size=THREADS, **options) as saver:
        saver.setup()
        yield saver


@contextmanager
def in_memory() -> Iterator[Any]:
    """LangGraph's in-memory saver: the graph's own cost, no database."""
    from langgraph.checkpoint.memory import InMemorySaver

    yield InMemorySaver()


@contextmanager
def langgraph_sqlite(path: str) -> Iterator[Any]:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield saver
    finally:
        conn.close()


@contextmanager
def langgraph_postgres(url: str) -> Iterator[Any]:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    with ConnectionPool(
        url, min_size=THREADS, max_size=THREADS, open=True,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    ) as pool:  # fmt: skip
        saver = PostgresSaver(pool)  # type: ignore[arg-type]
        saver.setup()
        yield saver


def round_trip(url: str) -> float:
    """Median milliseconds of ``SELECT 1`` on one connection to ``url``."""
    import sqlalchemy as sa

    from sessiondb._urls import resolve_url

    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            times = []
            for _ in range(21):
                start = time.perf_counter()
                conn.exec_driver_sql("SELECT 1").scalar()
                times.append(time.perf_counter() - start)
    finally:
        engine.dispose()
    return statistics.median(times) * 1000


def contenders(
    backend: str, workdir: Path, rtt: float = 0.0
) -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory of a context manager around a fresh database's saver); with ``rtt``
    (seconds), the savers reach a server through a :class:`DelayProxy` of that round trip."""

    @contextmanager
    def on_server(make: Callable[[str], Any]) -> Iterator[Any]:
        with server_database(backend) as url:
            if not rtt:
                with make(url) as saver:
                    yield saver
                return
            with DelayProxy(*host_port(url), rtt) as proxy:
                through = with_host(url, proxy.host, proxy.port)
                print(f"{backend:<11} round trip through the proxy: {round_trip(through):.2f} ms")
                with make(through) as saver:
                    yield saver

    def sqlite_file() -> str:
        return str(workdir / f"lg-{secrets.token_hex(4)}.db")

    floor = ("InMemorySaver (floor)", in_memory)
    if backend == "sqlite":
        return [
            floor,
            ("sessiondb", lambda: sessiondb_saver(f"sqlite:///{sqlite_file()}")),
            (
                "sessiondb (full)",
                lambda: sessiondb_saver(f"sqlite:///{sqlite_file()}", sqlite_durability="full"),
            ),
            ("langgraph SqliteSaver", lambda: langgraph_sqlite(sqlite_file())),
        ]
    if backend == "postgresql":
        return [
            ("sessiondb", lambda: on_server(sessiondb_saver)),
            ("langgraph PostgresSaver", lambda: on_server(langgraph_postgres)),
        ]
    return [("sessiondb", lambda: on_server(sessiondb_saver))]


# -- measurements ---------------------------------------------------------------------------


def one_turn(graph: Any, thread: str, i: int) -> None:
    config = {"configurable": {"thread_id": thread}}
    out = graph.invoke({"messages": [f"city {i}"]}, config)
    if out["messages"][-1] != f"reply to tool: sunny (call weather(city {i}))":
        raise AssertionError(f"wrong state: {out['messages'][-3:]}")


def timed_turns(graph: Any, thread: str, first: int, turns: int) -> list[float]:
    """Seconds of each of ``turns`` turns on one thread."""
    times = []
    for i in range(first, first + turns):
        start = time.perf_counter()
        one_turn(graph, thread, i)
        times.append(time.perf_counter() - start)
    return times


def throughput(graph: Any, turns_each: int) -> float:
    """Turns per second with THREADS threads, each on its own LangGraph thread."""
    barrier = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        thread = f"conc-{n}-{secrets.token_hex(4)}"
        one_turn(graph, thread, 0)  # warm
        barrier.wait()
        try:
            for i in range(turns_each):
                one_turn(graph, thread, 1 + i)
        except BaseException as exc:
            errors.append(exc)
        barrier.wait()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    barrier.wait()
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return THREADS * turns_each / elapsed


#: what each backend's sessiondb contenders are held to: LangGraph's own saver (issue 13)
TARGETS = {"sqlite": "langgraph SqliteSaver", "postgresql": "langgraph PostgresSaver"}


def measure(
    backend: str, workdir: Path, turns: int, concurrent_turns: int, rounds: int, rtt: float = 0.0
) -> dict[str, tuple[float, float]]:
    """name -> (median seconds per turn on one thread, turns/s with THREADS threads), every
    contender of ``backend`` open at once and measured in interleaved rounds (the order
    rotating), so a load that comes and goes falls on all of them alike."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        graphs: dict[str, Any] = {}
        for name, make in contenders(backend, workdir, rtt):
            try:
                graphs[name] = build(stack.enter_context(make()))
            except ImportError as exc:
                print(f"{backend:<11} {name:<25} skipped: {exc}")
        threads = {name: f"single-{secrets.token_hex(4)}" for name in graphs}
        for name, graph in graphs.items():  # warm-up
            timed_turns(graph, threads[name], 0, 5)
        times: dict[str, list[float]] = {name: [] for name in graphs}
        rates: dict[str, list[float]] = {name: [] for name in graphs}
        names = list(graphs)
        per_round = max(1, turns // rounds)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name] += timed_turns(
                    graphs[name], threads[name], 5 + r * per_round, per_round
                )
            for name in order:
                rates[name].append(throughput(graphs[name], max(1, concurrent_turns // rounds)))
        return {
            name: (statistics.median(times[name]), statistics.median(rates[name])) for name in names
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.langgraph")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--turns", type=int, default=100, help="single-thread timed turns")
    parser.add_argument(
        "--concurrent-turns", type=int, default=20, help="turns per thread, 16 threads"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--rtt", type=float, default=0.0, metavar="MS",
        help="servers are reached through a proxy adding this round trip (a network's)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rtt:
        print(f"servers reached through a proxy adding a {args.rtt} ms round trip")
    print(
        f"per-turn latency (median, 1 thread; a turn = 4 checkpoints) and throughput "
        f"({THREADS} threads x {args.concurrent_turns} turns), {args.rounds} interleaved rounds"
    )
    print("vs target: LangGraph's saver's ms/turn over this one's (>= 1.00: at least as fast)")
    print(f"{'backend':<11} {'checkpointer':<25} {'ms/turn':>8} {'ms/ckpt':>8} {'turns/s':>8} "
          f"{'vs target':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.db.split(","):
            found = measure(
                backend, Path(tmp), args.turns, args.concurrent_turns, args.rounds,
                args.rtt / 1000 if backend != "sqlite" else 0.0,
            )  # fmt: skip
            target = found.get(TARGETS.get(backend, ""))
            for name, (single, many) in found.items():
                ratio = ""
                if target is not None and name.startswith("sessiondb"):
                    ratio = (
                        f"{target[0] / single:.2f}x 1 thr, {many / target[1]:.2f}x {THREADS} thr"
                    )
                print(
                    f"{backend:<11} {name:<25} {single * 1000:8.2f} {single * 250:8.2f} "
                    f"{many:8.1f} {ratio:>10}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
