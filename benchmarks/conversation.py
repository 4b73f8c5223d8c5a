"""The conversation scenario: one session receives T turns of a naive chat bot.

Each turn reads the session, appends a user and an assistant message to
``state["conversation_history"]`` and writes ``{"conversation_history": history,
"message_count": len(history)}`` back. The whole history is rewritten every turn.

Variants
--------
``naive`` is the pattern above, run by every contender. ``sessiondb-events`` is the pattern
sessiondb recommends: each turn reads the session with its last 10 events (the bot's context,
not the whole log) and appends the two messages as events, with ``message_count`` as the
assistant event's state delta, in one transaction. Its cost per turn must stay flat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .contenders.base import AsyncContender, Handle, SyncContender
from .measure import median


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    implemented: bool


VARIANTS: dict[str, Variant] = {
    "naive": Variant(
        "naive",
        "read the session, append 2 messages to conversation_history, write the state back",
        True,
    ),
    "sessiondb-events": Variant(
        "sessiondb-events",
        "read the session with its last 10 events, append the 2 messages as events",
        True,
    ),
}

INITIAL_STATE: dict[str, Any] = {"message_count": 0, "conversation_history": []}


@dataclass
class Turns:
    """Per-turn times (seconds) of one conversation, and per-turn counts in the counting pass."""

    turn: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    read_counts: list[int] = field(default_factory=list)
    write_counts: list[int] = field(default_factory=list)


Messages = list[tuple[dict[str, str], dict[str, str]]]


def _next(state: dict[str, Any], pair: tuple[dict[str, str], dict[str, str]]) -> dict[str, Any]:
    history = [*state["conversation_history"], pair[0], pair[1]]
    return {"conversation_history": history, "message_count": len(history)}


def _steps(contender: Any, variant: str) -> tuple[Any, Any, Any]:
    """(read, prepare, write) of one turn for a conversation variant."""
    if variant == "sessiondb-events":
        return contender.conv_events_read, lambda state, pair: pair, contender.conv_events_append
    return contender.conv_read, _next, contender.conv_write


def turns_sync(
    contender: SyncContender,
    handle: Handle,
    messages: Messages,
    counter: Callable[[], int] | None = None,
    variant: str = "naive",
) -> Turns:
    """Run every turn on a blocking contender, timing the read and write halves."""
    conv_read, prepare, conv_write = _steps(contender, variant)
    out = Turns()
    clock = time.perf_counter
    cpu0 = time.process_time()
    start = clock()
    for pair in messages:
        c0 = counter() if counter else 0
        t0 = clock()
        read, state = conv_read(handle)
        t1 = clock()
        c1 = counter() if counter else 0
        delta = prepare(state, pair)
        c2 = counter() if counter else 0
        t2 = clock()
        conv_write(handle, read, delta)
        t3 = clock()
        if counter:
            out.read_counts.append(c1 - c0)
            out.write_counts.append(counter() - c2)
        out.turn.append(t3 - t0)
        out.read.append(t1 - t0)
        out.write.append(t3 - t2)
    out.wall = clock() - start
    out.cpu = time.process_time() - cpu0
    return out


async def turns_async(
    contender: AsyncContender,
    handle: Handle,
    messages: Messages,
    counter: Callable[[], int] | None = None,
    variant: str = "naive",
) -> Turns:
    """:func:`turns_sync` for a contender whose calls are coroutines."""
    conv_read, prepare, conv_write = _steps(contender, variant)
    out = Turns()
    clock = time.perf_counter
    cpu0 = time.process_time()
    start = clock()
    for pair in messages:
        c0 = counter() if counter else 0
        t0 = clock()
        read, state = await conv_read(handle)
        t1 = clock()
        c1 = counter() if counter else 0
        delta = prepare(state, pair)
        c2 = counter() if counter else 0
        t2 = clock()
        await conv_write(handle, read, delta)
        t3 = clock()
        if counter:
            out.read_counts.append(c1 - c0)
            out.write_counts.append(counter() - c2)
        out.turn.append(t3 - t0)
        out.read.append(t1 - t0)
        out.write.append(t3 - t2)
    out.wall = clock() - start
    out.cpu = time.process_time() - cpu0
    return out


def growth_exponent(turn_times: list[float]) -> float | None:
    """e in time(turn n) ~ n**e, from the medians of the 10 turns around T/2 and the last 10.

    None when T < 40 (the two windows would be too close to say anything).
    """
    total = len(turn_times)
    if total < 40:
        return None
    mid_start = total // 2 - 5  # 0-based; turns mid_start+1 .. mid_start+10 (1-based)
    mid = median(turn_times[mid_start : mid_start + 10])
    last = median(turn_times[-10:])
    n_mid = mid_start + 5.5
    n_last = total - 4.5
    if mid <= 0 or last <= 0:
        return None
    return math.log(last / mid) / math.log(n_last / n_mid)


def summarize(turns: Turns, total_turns: int) -> dict[str, Any]:
    """The report's figures for one conversation (times in ms)."""
    first = turns.turn[:10]
    last = slice(max(0, total_turns - 10), total_turns)
    mid_start = max(0, total_turns // 2 - 5)
    return {
        "turns": total_turns,
        "total_s": turns.wall,
        "cpu_s": turns.cpu,
        "first10_p50_ms": median(first) * 1e3,
        "mid10_p50_ms": median(turns.turn[mid_start : mid_start + 10]) * 1e3,
        "last10_p50_ms": median(turns.turn[last]) * 1e3,
        "last10_read_p50_ms": median(turns.read[last]) * 1e3,
        "last10_write_p50_ms": median(turns.write[last]) * 1e3,
        "growth_exponent": growth_exponent(turns.turn),
    }


def expected_history(messages: Messages) -> list[dict[str, str]]:
    return [m for pair in messages for m in pair]
