"""JSON for state: strict checking with key paths, and a text form every backend keeps intact.

``dumps`` refuses what JSON cannot hold faithfully (sets, bytes, objects, NaN, Infinity,
non-str keys, integers beyond 64 bits, lone surrogates such as ``"\\ud800"``) and nesting deeper
than :data:`MAX_DEPTH` levels, and names the key path. On PostgreSQL, JSONB cannot hold
``"\\u0000"`` and turns ``1e16`` into an integer, so the ``pg`` form escapes NUL characters and
writes large floats in positional notation; ``loads(..., pg=True)`` undoes the escape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .errors import InvalidStateError, StateTypeError

_orjson: Any
try:  # optional speed-up: `pip install sessiondb[speed]`
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised when orjson is absent
    _orjson = None

__all__ = ["MAX_DEPTH", "check", "dumps", "loads", "same"]

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
#: The deepest nesting of objects and arrays a JSON value may have (``{"a": {"b": 1}}`` is 2),
#: on every backend: well below what Python's encoder and every database handle, and
#: documented in docs/state.md.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")

# Private-use escape character for PostgreSQL: ESC+"0" is NUL, ESC+"e" is ESC itself.
_ESC = "\ue000"
_PG_FLOAT = re.compile(r'("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?[eE]\+?\d+)')
_PG_FLOAT_HINT = re.compile(r"\d[eE]\+?\d")
_PG_UNESCAPE = re.compile(_ESC + "(.)", re.DOTALL)


def _path(node: tuple[Any, ...] | None, root: str) -> str:
    parts: list[str] = []
    while node is not None:
        parent, key = node
        parts.append(f"[{key!r}]")
        node = parent
    return root + "".join(reversed(parts))


def _too_deep(node: tuple[Any, ...] | None, root: str) -> InvalidStateError:
    where = _path(node, root)
    if len(where) > 120:
        where = where[:60] + "..." + where[-40:]
    return InvalidStateError(
        f"{where} is nested deeper than {MAX_DEPTH} levels of objects and arrays, "
        "the limit for JSON values"
    )


def check(value: Any, root: str = "state", depth: int = 0) -> None:
    """Raise :class:`InvalidStateError` / :class:`StateTypeError` unless ``value`` is plain JSON.

    ``depth`` is how deep ``value`` itself sits in the stored document (0: it is the document).
    The walk is iterative, so deep nesting cannot overflow the Python stack.
    """
    stack: list[tuple[Any, tuple[Any, ...] | None, int]] = [(value, None, depth)]
    pop = stack.pop
    push = stack.append
    while stack:
        obj, node, level = pop()
        t = type(obj)
        if t is str or obj is None or t is bool:
            continue
        if t is dict or isinstance(obj, dict):
            if level >= MAX_DEPTH:
                raise _too_deep(node, root)
            for k, v in obj.items():
                if type(k) is not str and not isinstance(k, str):
                    raise StateTypeError(
                        f"{_path(node, root)} has the key {k!r} of type {type(k).__name__}: "
                        "JSON object keys must be str"
                    )
                t2 = type(v)
                if t2 is str or v is None or t2 is bool:
                    continue
                push((v, (node, k), level + 1))
        elif t is list or t is tuple or isinstance(obj, (list, tuple)):
            if level >= MAX_DEPTH:
                raise _too_deep(node, root)
            for i, v in enumerate(obj):
                push((v, (node, i), level + 1))
        elif t is int or (isinstance(obj, int) and not isinstance(obj, bool)):
            if not INT_MIN <= obj <= INT_MAX:
                raise InvalidStateError(
                    f"{_path(node, root)} = {obj} does not fit in 64 bits; store it as a string"
                )
        elif t is float or isinstance(obj, float):
            if not math.isfinite(obj):
                raise InvalidStateError(
                    f"{_path(node, root)} = {obj!r}: JSON has no NaN or Infinity"
                )
        elif isinstance(obj, str):
            continue
        else:
            raise StateTypeError(
                f"{_path(node, root)} is a {type(obj).__name__}, which JSON cannot hold "
                "(use dict, list, str, int, float, bool or None)"
            )


def _surrogate_error(value: Any, root: str) -> InvalidStateError:
    """The error naming where in ``value`` a lone surrogate is (a key or a string value)."""
    stack: list[tuple[Any, tuple[Any, ...] | None]] = [(value, None)]
    while stack:
        obj, node = stack.pop()
        if isinstance(obj, str):
            if _SURROGATE.search(obj):
                return InvalidStateError(
                    f"{_path(node, root)} holds a lone surrogate ({obj!r}), which UTF-8 cannot "
                    "encode"
                )
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if _SURROGATE.search(k):
                    return InvalidStateError(
                        f"{_path(node, root)} has the key {k!r}, holding a lone surrogate, "
                        "which UTF-8 cannot encode"
                    )
                stack.append((v, (node, k)))
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, (node, i)) for i, v in enumerate(obj))
    return InvalidStateError(f"{root} holds a lone surrogate, which UTF-8 cannot encode")


def _dumps_std(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


if _orjson is not None:
    _orjson_dumps = _orjson.dumps
    _orjson_loads = _orjson.loads

    def _dumps_fast(value: Any) -> str:
        try:
            return str(_orjson_dumps(value).decode())
        except _orjson.JSONEncodeError:  # a lone surrogate (checked values have no other
            return _dumps_std(value)  # fault orjson refuses): the caller finds it

    def _loads_fast(text: str | bytes) -> Any:
        try:
            return _orjson_loads(text)
        except _orjson.JSONDecodeError:  # deeper than orjson's limit
            return json.loads(text)

    _dumps: Callable[[Any], str] = _dumps_fast
    _loads: Callable[[str | bytes], Any] = _loads_fast
else:  # pragma: no cover
    _dumps = _dumps_std
    _loads = json.loads


def _positional(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(0)
    text = format(Decimal(match.group(2)), "f")
    return text if "." in text else text + ".0"


def _escape_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_ESC, _ESC + "e").replace("\x00", _ESC + "0")
    if isinstance(value, dict):
        return {_escape_nul(k): _escape_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_nul(v) for v in value]
    return value


def _unescape_nul(value: Any) -> Any:
    if isinstance(value, str):
        if _ESC not in value:
            return value
        return _PG_UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else _ESC, value)
    if isinstance(value, dict):
        return {_unescape_nul(k): _unescape_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape_nul(v) for v in value]
    return value


def dumps(value: Any, *, pg: bool = False, root: str = "state") -> str:
    """Check ``value`` and return its compact JSON text (the PostgreSQL-safe form if ``pg``)."""
    check(value, root)
    text = _dumps(value)
    if not text.isascii() and _SURROGATE.search(text):
        raise _surrogate_error(value, root)
    if pg:
        if "\\u0000" in text or _ESC in text:
            text = _dumps(_escape_nul(value))
        if _PG_FLOAT_HINT.search(text):
            text = _PG_FLOAT.sub(_positional, text)
    return text


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells types apart: ``1``, ``1.0`` and ``True`` differ; a tuple
    equals the list it is stored as. Both values are checked JSON (depth-limited)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(k in b and same(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, (dict, list, tuple)):
        return False
    return type(a) is type(b) and bool(a == b)


def loads(text: str | bytes, *, pg: bool = False) -> Any:
    """Decode JSON text written by :func:`dumps`."""
    value = _loads(text)
    if pg and _ESC in (text if isinstance(text, str) else text.decode()):
        value = _unescape_nul(value)
    return value
