"""Scoped state, the convention ADK users know: ``app:``, ``user:`` and ``temp:`` keys.

``app:x`` is shared by every session of the app, ``user:x`` by all of one user's sessions in
that app, ``temp:x`` is never stored. Scoped keys are stored without their prefix in the
``app_states`` and ``user_states`` tables, and merged back into ``session.state`` on reads.

A whole-state write (``update_session_state``) writes only the scoped keys the caller changed:
:class:`Reads` remembers what each read handed out, and :func:`decide` compares (see
docs/state.md, "Whole-state writes and shared keys").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidStateError

__all__ = [
    "APP",
    "NOTHING_SEEN",
    "TEMP",
    "USER",
    "Change",
    "Decision",
    "Reads",
    "Seen",
    "decide",
    "is_plain",
    "merge_into",
    "seen_in",
    "split",
]

APP = "app:"
USER = "user:"
TEMP = "temp:"
_PREFIXES = (APP, USER, TEMP)


def is_plain(keys: Iterable[str]) -> bool:
    """True when no key is scoped (the common case, checked before any routing)."""
    return not any(k.startswith(_PREFIXES) for k in keys)


@dataclass
class Change:
    """What one write does to one scope: keys to set, remove and increment."""

    set: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    increment: dict[str, int | float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.set or self.remove or self.increment)

    def apply(self, state: dict[str, Any], scope: str = "") -> dict[str, Any]:
        """Apply to ``state`` in place (remove, then set, then increment) and return it."""
        for key in self.remove:
            state.pop(key, None)
        state.update(self.set)
        for key, by in self.increment.items():
            current = state.get(key, 0)
            if isinstance(current, bool) or not isinstance(current, (int, float)):
                raise InvalidStateError(
                    f"cannot increment state[{scope + key!r}]: it holds {current!r}, not a number"
                )
            state[key] = current + by
        return state


def split(
    set_: Mapping[str, Any] | None = None,
    remove: Iterable[str] = (),
    increment: Mapping[str, int | float] | None = None,
) -> tuple[Change, Change, Change]:
    """Route keys to the (session, app, user) scopes; ``temp:`` keys are dropped."""
    scopes = {"": Change(), APP: Change(), USER: Change()}

    def route(key: str) -> tuple[Change | None, str]:
        for prefix in (APP, USER):
            if key.startswith(prefix):
                return scopes[prefix], key[len(prefix) :]
        if key.startswith(TEMP):
            return None, key
        return scopes[""], key

    for key, value in (set_ or {}).items():
        target, name = route(key)
        if target is not None:
            target.set[name] = value
    for key in remove:
        target, name = route(key)
        if target is not None:
            target.remove.append(name)
    for key, by in (increment or {}).items():
        target, name = route(key)
        if target is not None:
            target.increment[name] = by
    return scopes[""], scopes[APP], scopes[USER]


def merge_into(
    state: dict[str, Any], app: dict[str, Any] | None, user: dict[str, Any] | None
) -> dict[str, Any]:
    """Add the scoped states to a session state, with their prefixes, and return it."""
    if app:
        for key, value in app.items():
            state[APP + key] = value
    if user:
        for key, value in user.items():
            state[USER + key] = value
    return state


# -- whole-state writes: which scoped keys the caller changed ------------------------------------

_MISSING: Any = object()


class Seen:
    """The ``app:``/``user:`` values one read (or whole-state write) handed to the caller.

    ``handed`` maps each scoped key (with its prefix) to the very object placed in
    ``session.state``; the stored texts give the values as they were, should the caller
    change a dict or list in place. Parsed on first use only.
    """

    __slots__ = ("_values", "app_text", "handed", "user_text")

    def __init__(self, app_text: Any, user_text: Any, handed: dict[str, Any]) -> None:
        self.app_text = app_text
        self.user_text = user_text
        self.handed = handed
        self._values: dict[str, Any] | None = None

    def values(self, loads: Callable[[Any], Any]) -> dict[str, Any]:
        """The scoped values as read (prefixed keys), freshly decoded."""
        if self._values is None:
            self._values = merge_into({}, loads(self.app_text), loads(self.user_text))
        return self._values


NOTHING_SEEN = Seen(None, None, {})


#: A session's key: (app_name, user_id, id).
SessionKey = tuple[str, str, str]


class Reads:
    """A small bounded memo, per store: the last reads of the most recently read sessions
    (by key: ids are per app and user).

    At most ``sessions`` sessions (least recently read dropped first) and ``per_session``
    reads of each. Thread-safe; every operation is O(1).
    """

    def __init__(self, sessions: int = 4096, per_session: int = 8) -> None:
        self._memo: OrderedDict[SessionKey, list[Seen]] = OrderedDict()
        self._lock = threading.Lock()
        self._sessions = sessions
        self._per_session = per_session

    def add(self, session_id: SessionKey, seen: Seen) -> None:
        memo = self._memo
        with self._lock:
            reads = memo.get(session_id)
            if reads is None:
                memo[session_id] = [seen]
                if len(memo) > self._sessions:
                    memo.popitem(last=False)
                return
            memo.move_to_end(session_id)
            if reads[-1] is not seen:
                reads.append(seen)
                if len(reads) > self._per_session:
                    del reads[0]

    def add_many(self, reads: Iterable[tuple[SessionKey, Seen]]) -> None:
        """:meth:`add` for each pair (a listing's sessions), under one lock."""
        memo, limit, per_session = self._memo, self._sessions, self._per_session
        with self._lock:
            for session_id, seen in reads:
                known = memo.get(session_id)
                if known is None:
                    memo[session_id] = [seen]
                    if len(memo) > limit:
                        memo.popitem(last=False)
                    continue
                memo.move_to_end(session_id)
                if known[-1] is not seen:
                    known.append(seen)
                    if len(known) > per_session:
                        del known[0]

    def of(self, session_id: SessionKey) -> list[Seen] | None:
        """This session's remembered reads, oldest first (a copy), or None."""
        with self._lock:
            reads = self._memo.get(session_id)
            return None if reads is None else list(reads)

    def forget(self, session_id: SessionKey) -> None:
        with self._lock:
            self._memo.pop(session_id, None)


def seen_in(state: Mapping[str, Any], app_text: Any, user_text: Any) -> Seen:
    """What a session state handed out of its scopes (its ``app:``/``user:`` items)."""
    handed = {k: v for k, v in state.items() if k.startswith((APP, USER))}
    return Seen(app_text, user_text, handed) if handed or app_text or user_text else NOTHING_SEEN


def _shared(value: Any) -> bool:
    """True for values Python may hand out as one shared object whatever their origin
    (None, bools, small ints, empty and one-character strings): identity tells nothing."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -5 <= value <= 256
    return isinstance(value, str) and len(value) <= 1


@dataclass
class Decision:
    """How a whole-state write treats its scoped keys (prefixed keys)."""

    write: dict[str, Any] = field(default_factory=dict)
    """Changed by the caller: written."""
    unknown: dict[str, Any] = field(default_factory=dict)
    """Not known to have been read: must equal the stored value, else nothing is written."""
    ambiguous: list[str] = field(default_factory=list)
    """An older read's value, not the latest: a stale copy or a change back. Refused."""
    held: dict[str, Any] = field(default_factory=dict)
    """Every scoped key of the state: what the caller holds once the write is made."""


def decide(
    state: Mapping[str, Any], reads: list[Seen] | None, loads: Callable[[Any], Any]
) -> Decision:
    """Compare each ``app:``/``user:`` key of a whole state with what the caller read.

    A key whose value is an object a remembered read handed out is compared with that read's
    value (unchanged unless edited in place). Otherwise it is unchanged if it equals the
    latest read's value, changed if it equals no remembered read's value, and ambiguous if
    it equals only an older one. Without any remembered read every key is "unknown".
    """
    from ._json import same

    decision = Decision()
    for key, value in state.items():
        if not key.startswith((APP, USER)):
            continue
        decision.held[key] = value
        if reads is None:
            decision.unknown[key] = value
            continue
        shared = _shared(value)
        verdict = None
        if not shared:
            for seen in reversed(reads):
                if seen.handed.get(key, _MISSING) is value:
                    base = seen.values(loads).get(key, _MISSING)
                    verdict = base is not _MISSING and same(value, base)
                    break
        if verdict is None:
            bases = [seen.values(loads).get(key, _MISSING) for seen in reads]
            matches = [b is not _MISSING and same(value, b) for b in bases]
            if matches[-1]:
                verdict = True
            elif not any(matches):
                verdict = False
            else:
                decision.ambiguous.append(key)
                continue
        if not verdict:
            decision.write[key] = value
    return decision
