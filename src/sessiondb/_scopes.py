"""Scoped state, the convention ADK users know: ``app:``, ``user:`` and ``temp:`` keys.

``app:x`` is shared by every session of the app, ``user:x`` by all of one user's sessions in
that app, ``temp:x`` is never stored. Scoped keys are stored without their prefix in the
``app_states`` and ``user_states`` tables, and merged back into ``session.state`` on reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidStateError

__all__ = ["APP", "TEMP", "USER", "Change", "is_plain", "merge_into", "split"]

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
