"""Real Python processes, spawned once and given work many times (a helper module: no tests).

Spawning a process and importing sessiondb, SQLAlchemy and the drivers in it costs seconds on a
busy machine; the multi-process tests need the processes, not their start-up, so a module
starts its processes once (the ``process_pool`` fixture) and runs each test's work in them. Every
run starts in all processes at once, on a barrier; a process that fails reports its traceback.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable, Sequence
from typing import Any

TIMEOUT = 300.0


def _serve(index: int, inbox: Any, results: Any, barrier: Any) -> None:
    """A pool process: run each ``(fn, args)`` from ``inbox`` after the barrier; ``None`` ends."""
    while True:
        task = inbox.get()
        if task is None:
            return
        fn, args = task
        try:
            barrier.wait(TIMEOUT)  # every process of the pool starts the run together
            if fn is not None:
                fn(*args)
            results.put((index, None))
        except BaseException:  # report everything: the parent asserts on it
            results.put((index, traceback.format_exc()))


class ProcessPool:
    """``size`` spawned processes; ``run`` gives each its share of one piece of work."""

    def __init__(self, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.size = size
        self.barrier = ctx.Barrier(size)
        self.results = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(size)]
        self.procs = [
            ctx.Process(target=_serve, args=(n, inbox, self.results, self.barrier))
            for n, inbox in enumerate(self.inboxes)
        ]
        for p in self.procs:
            p.start()
        self.broken = False

    def run(self, fn: Callable[..., Any], argsets: Sequence[tuple[Any, ...]]) -> dict[int, Any]:
        """Call ``fn(*argsets[n])`` in process n, all at once; ``{n: None or traceback}``.

        Processes beyond ``len(argsets)`` only pass the barrier. A process that never reports
        is missing from the result (and the pool is then broken: the fixture replaces it).
        """
        assert not self.broken and len(argsets) <= self.size
        for n, inbox in enumerate(self.inboxes):
            inbox.put((fn, tuple(argsets[n])) if n < len(argsets) else (None, ()))
        reports: dict[int, Any] = {}
        try:
            for _ in range(self.size):
                n, report = self.results.get(timeout=TIMEOUT)
                reports[n] = report
        except queue.Empty:
            self.broken = True
        if any(report is not None for report in reports.values()):
            self.broken = True  # a failed barrier or task: start afresh
        return {n: report for n, report in reports.items() if n < len(argsets)}

    def close(self) -> list[int | None]:
        """Stop the processes; return their exit codes (0 each when all went well)."""
        for inbox in self.inboxes:
            inbox.put(None)
        for p in self.procs:
            p.join(TIMEOUT if not self.broken else 10)
            if p.is_alive():
                p.kill()
                p.join()
        return [p.exitcode for p in self.procs]
