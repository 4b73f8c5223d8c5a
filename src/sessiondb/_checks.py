"""Argument checks shared by the operations: counts, versions, durations, titles, labels and
the store's options.

Ids are checked by :func:`sessiondb._ids.check_id`, states by :mod:`sessiondb._json`. Each check
returns the value it accepts, or raises the :class:`~sessiondb.errors.InvalidArgumentError`
(or subclass) that names the argument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from ._ids import check_id
from .errors import ArgumentTypeError, ConfigurationError, InvalidArgumentError

__all__ = [
    "MAX_COUNT",
    "MAX_LABELS",
    "MAX_SECONDS",
    "is_int_at_least",
    "labels",
    "non_negative_int",
    "positive_int",
    "seconds",
    "store_options",
    "title",
    "version",
]

MAX_LABELS = 64
MAX_TITLE = 256
#: The largest count, sequence number or version an argument may hold: a signed 64-bit
#: integer, what every backend's BIGINT stores.
MAX_COUNT = 2**63 - 1
#: The longest duration (ttl, older_than): 1,000 years, so that "now" plus or minus it is a
#: date every backend stores.
MAX_SECONDS = 1000 * 365.25 * 86400
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_int_at_least(value: Any, minimum: int) -> bool:
    """True for an ``int`` (not a ``bool``) of at least ``minimum``: the one count check."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def _int_in(value: Any, name: str, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be {what} int, not {type(value).__name__} {value!r}")
    if not minimum <= value <= MAX_COUNT:
        raise InvalidArgumentError(
            f"{name} must be {what} int of at most 2**63 - 1 (64 bits), not {value!r}"
        )
    return int(value)


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an int in 1..2**63-1 (a limit, a batch size), else
    InvalidArgumentError (ArgumentTypeError if it is no int, a bool included)."""
    return _int_in(value, name, 1, "a positive")


def non_negative_int(value: Any, name: str) -> int:
    """``value`` if it is an int in 0..2**63-1 (a sequence bound), else InvalidArgumentError
    (ArgumentTypeError if it is no int, a bool included)."""
    return _int_in(value, name, 0, "a non-negative")


def version(value: Any, name: str = "expected_version") -> int | None:
    """An ``expected_version``: None, or an int in 1..2**63-1 (never a bool, float or str)."""
    if value is None:
        return None
    return _int_in(value, name, 1, "a positive")


def seconds(value: Any, what: str) -> float:
    """A duration (timedelta or seconds) as positive seconds, at most :data:`MAX_SECONDS`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(
            f"{what} must be a positive timedelta or number of seconds, not {value!r}"
        )
    if not 0 < value <= MAX_SECONDS:  # NaN fails both comparisons
        raise InvalidArgumentError(
            f"{what} must be a positive timedelta or number of seconds of at most 1,000 "
            f"years, not {value!r}"
        )
    return float(value)


def title(value: Any) -> str | None:
    """A session title: None, or a str of at most 256 characters (no lone surrogates)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TITLE:
        raise InvalidArgumentError(f"title must be a str of at most {MAX_TITLE} characters")
    if _SURROGATE.search(value):
        raise InvalidArgumentError(
            f"title {value!r} holds a lone surrogate: UTF-8 cannot encode it"
        )
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


def _option_number(name: str, value: Any, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{name} must be a number of seconds, not {type(value).__name__} {value!r}"
        )
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise ConfigurationError(f"{name} must be more than 0 and at most {maximum:g} seconds")


def store_options(
    *,
    connect_timeout: Any,
    busy_timeout: Any,
    pool_size: Any,
    flags: dict[str, Any],
    engine_options: Any,
) -> None:
    """Check a store's options; :class:`ConfigurationError` names the first bad one."""
    _option_number("connect_timeout", connect_timeout, 86400)
    # SQLite takes the busy timeout in milliseconds, as a C int
    _option_number("busy_timeout", busy_timeout, 2**31 // 1000 - 1)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int):
        raise ConfigurationError(
            f"pool_size must be an int, not {type(pool_size).__name__} {pool_size!r}"
        )
    if not 1 <= pool_size <= 1000:
        raise ConfigurationError(f"pool_size must be from 1 to 1000, not {pool_size}")
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{name} must be True or False, not {flag!r}")
    if engine_options is not None and not isinstance(engine_options, dict):
        raise ConfigurationError(
            f"engine_options must be a dict, not {type(engine_options).__name__}"
        )
