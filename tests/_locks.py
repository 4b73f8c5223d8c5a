"""A thread holding a store's SQLite write lock (a helper module: no tests)."""

from __future__ import annotations

import threading
from typing import Any

TIMEOUT = 60.0


def holding_the_write_lock(runner: Any) -> tuple[threading.Thread, threading.Event]:
    """A thread whose operation, run by ``runner`` (a store's ``_backend.runner``), holds the
    store's SQLite write lock (an open ``BEGIN IMMEDIATE``, and the store's write gate) until
    the returned event is set; returns once the lock is held."""
    ready, go = threading.Event(), threading.Event()

    def hold(cx: Any) -> None:
        cx.begin()
        ready.set()
        go.wait(TIMEOUT)
        cx.commit()

    holder = threading.Thread(target=runner.call, args=(hold,))
    holder.start()
    assert ready.wait(TIMEOUT), "the holder never took the write lock"
    return holder, go
