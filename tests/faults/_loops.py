"""The several-event-loops scenario, run in a child process: ``python -m tests.faults._loops URL``.

Prints one JSON line: a record per call (where it ran, what happened).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from sessiondb import AsyncSessionStore

from ._harness import APP, CONNECT_TIMEOUT, Outcome, attempt, in_thread, new_user

THREADS = 3
CALLS = 10  # per loop
OP_BOUND = 5.0


async def use(store: AsyncSessionStore, user: str, sid: str) -> list[Outcome]:
    """CALLS reads and writes in the running loop, each bounded."""
    outcomes = []
    for i in range(CALLS):
        if i % 2:
            aw: Any = store.patch_state(sid, increment={"n": 1})
        else:
            aw = store.get_session(APP, user, sid)
        outcomes.append(await attempt(aw, OP_BOUND))
    return outcomes


def in_new_loop(store: AsyncSessionStore, user: str, sid: str) -> list[Outcome]:
    return asyncio.run(use(store, user, sid))


async def across_loops(url: str) -> list[tuple[str, Outcome]]:
    """Store made in this loop and used here; then from loops run one after another on a thread
    (the guide's repeated asyncio.run); then from THREADS threads at once, beside this loop."""
    user = new_user()
    results: list[tuple[str, Outcome]] = []
    store = AsyncSessionStore(url, connect_timeout=CONNECT_TIMEOUT)
    try:
        created = await attempt(store.create_session(APP, user, {"n": 0}), OP_BOUND)
        if not created.ok:
            return [("create in the store's own loop", created)]
        sid = created.value.id
        results += [("own loop", o) for o in await use(store, user, sid)]
        for k in range(2):
            one = await attempt(in_thread(in_new_loop, store, user, sid), OP_BOUND * CALLS)
            results += [(f"sequential loop {k}", o) for o in (one.value if one.ok else [one])]
        many = await asyncio.gather(
            use(store, user, sid),
            *(attempt(in_thread(in_new_loop, store, user, sid), OP_BOUND * CALLS)
              for _ in range(THREADS)),
        )  # fmt: skip
        results += [("own loop, concurrently", o) for o in many[0]]
        for k, one in enumerate(many[1:]):
            results += [(f"thread {k}", o) for o in (one.value if one.ok else [one])]
    finally:
        await attempt(store.close(), OP_BOUND)
    return results


def main(url: str) -> None:
    results = asyncio.run(across_loops(url))
    records = [
        {
            "where": where,
            "outcome": str(o),
            "failed": not o.ok,
            "untyped_or_hung": o.hung or not o.typed,
        }
        for where, o in results
    ]
    print(json.dumps(records), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
