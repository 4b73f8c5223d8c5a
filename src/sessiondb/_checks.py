"""Argument checks shared by the operations: counts, durations, titles and labels.

Ids are checked by :func:`sessiondb._ids.check_id`, states by :mod:`sessiondb._json`. Each check
returns the value it accepts, or raises the :class:`~sessiondb.errors.InvalidArgumentError`
(or subclass) that names the argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from ._ids import check_id
from .errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "MAX_LABELS",
    "is_int_at_least",
    "labels",
    "non_negative_int",
    "positive_int",
    "seconds",
    "title",
]

MAX_LABELS = 64
MAX_TITLE = 256


def is_int_at_least(value: Any, minimum: int) -> bool:
    """True for an ``int`` (not a ``bool``) of at least ``minimum``: the one count check."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an int >= 1 (a limit, a batch size), else InvalidArgumentError."""
    if not is_int_at_least(value, 1):
        raise InvalidArgumentError(f"{name} must be a positive int, not {value!r}")
    checked: int = value
    return checked


def non_negative_int(value: Any, name: str) -> int:
    """``value`` if it is an int >= 0 (a sequence bound), else InvalidArgumentError."""
    if not is_int_at_least(value, 0):
        raise InvalidArgumentError(f"{name} must be a non-negative int, not {value!r}")
    checked: int = value
    return checked


def seconds(value: Any, what: str) -> float:
    """A duration (timedelta or seconds) as positive seconds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(
            f"{what} must be a positive timedelta or number of seconds, not {value!r}"
        )
    return float(value)


def title(value: Any) -> str | None:
    """A session title: None, or a str of at most 256 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TITLE:
        raise InvalidArgumentError(f"title must be a str of at most {MAX_TITLE} characters")
    return value


def labels(value: Any) -> list[str]:
    """Session labels: an iterable of ids (not a single str), as a sorted list without repeats."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ArgumentTypeError("labels must be an iterable of str, not a single str")
    result = sorted({check_id(label, "label") for label in value})
    if len(result) > MAX_LABELS:
        raise InvalidArgumentError(f"at most {MAX_LABELS} labels per session")
    return result
