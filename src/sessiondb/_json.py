"""JSON for state: strict checking with key paths, and a text form every backend keeps intact.

``dumps`` refuses what JSON cannot hold faithfully (sets, bytes, objects, NaN, Infinity,
non-str keys, integers beyond 64 bits, lone surrogates such as ``"\\ud800"``) and nesting deeper
than :data:`MAX_DEPTH` levels, and names the key path. On PostgreSQL, JSONB cannot hold
``"\\u0000"`` and turns ``1e16`` into an integer, so the ``pg`` form escapes NUL characters and
writes large floats in positional notation; ``loads(..., pg=True)`` undoes the escape.
"""

from __future__ import annotations

import gc
import json
import math
import re
import sys
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
_ESC_B = _ESC.encode()
_PG_FLOAT = re.compile(rb'("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?[eE]\+?\d+)')
_PG_FLOAT_HINT = re.compile(rb"\d[eE]\+?\d")
_PG_ESCAPES = re.compile(rb"\\(?:u0000|.)", re.DOTALL)  # every escape, left to right
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


_SCALARS = frozenset({str, int, bool, type(None)})
_NOT_PLAIN = 0  # what _plain answers
_PLAIN = 1
_PLAIN_BIG = 2  # plain, with a float written with a positive exponent (|x| >= 1e16)
_BIG = 1e16


def _plain(value: Any) -> int:
    """Whether ``value``, which orjson encoded, is plain JSON as far as orjson cannot tell.

    orjson refuses non-str keys, integers beyond 64 bits, lone surrogates and most foreign
    types itself; it writes NaN and Infinity as ``null``, ``UUID`` and ``Enum`` members as
    their values, and nests up to 254 levels. :data:`_NOT_PLAIN` when ``value`` holds one of
    those, or a subclass of a JSON type (:func:`check` then decides, and names the path);
    :data:`_PLAIN_BIG` when it holds a float JSON writes as ``1e+16``. The walk goes level by
    level and looks only at types, and at floats.
    """
    scalars = _SCALARS
    big = False
    level = [value]
    depth = -1
    t = type(value)
    if t is not dict and t is not list and t is not tuple:
        if t in scalars:
            return _PLAIN
        if t is not float or value - value:
            return _NOT_PLAIN
        return _PLAIN_BIG if value >= _BIG or value <= -_BIG else _PLAIN
    while level:
        depth += 1
        if depth >= MAX_DEPTH:
            return _NOT_PLAIN
        below: list[Any] = []
        add = below.append
        for obj in level:
            for v in obj.values() if type(obj) is dict else obj:
                t = type(v)
                if t in scalars:
                    continue
                if t is float:
                    if not -_BIG < v < _BIG:  # large, or NaN (it compares false)
                        if v - v:  # NaN or an infinity (x - x is NaN for both, else 0.0)
                            return _NOT_PLAIN
                        big = True
                elif t is dict or t is list or t is tuple:
                    add(v)
                else:
                    return _NOT_PLAIN
        level = below
    return _PLAIN_BIG if big else _PLAIN


_JSON_TYPES = frozenset({dict, list, tuple, str, int, float, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})
_referents = gc.get_referents
_isfinite = math.isfinite
_hypot = math.hypot
#: Below this many bytes of JSON, :func:`_plain` (a Python walk) is cheaper than
#: :func:`_scan` (a few C calls per level of nesting, each with a fixed cost).
_SCAN_FROM = 3072
#: ``gc.get_referents`` lists a dict's values and a list's or tuple's items on CPython; other
#: interpreters may list other things, so they walk in Python.
_CAN_SCAN = sys.implementation.name == "cpython"


def _scan(value: Any) -> int:
    """:func:`_plain`'s answer, found level by level with C calls instead of a Python loop.

    Each level of nesting is one list. Its types (``set(map(type, level))``) must all be
    exact JSON types; its floats, if any, go to ``math.hypot``, which is NaN or infinite if one
    of them is, and at least the largest magnitude (a norm beyond the float range stops the
    scan too: :func:`check` then decides). Only then does ``gc.get_referents`` give the next
    level: the values of every dict, the items of every list and tuple, nothing for a str,
    int, float, bool or None (a dict whose keys are not all exact ``str`` also gives its keys;
    orjson has already refused keys that are not str). The scan so never looks inside an
    object of another type: an ``Enum`` member, a ``UUID``, an ``orjson.Fragment`` or a
    subclass of a JSON type stops it with :data:`_NOT_PLAIN`, and :func:`check` decides.
    :data:`_PLAIN_BIG` may be a false alarm (a norm of 1e16 or more from smaller floats): it
    only costs the PostgreSQL form a regex search.
    """
    json_types = _JSON_TYPES
    level = [value]
    depth = 0
    big = False
    while level:
        types = set(map(type, level))
        if not types <= json_types:
            return _NOT_PLAIN
        if float in types:
            # hypot is NaN or infinite if a float is, and at least the largest magnitude
            norm = _hypot(*[v for v in level if type(v) is float])
            if not _isfinite(norm):
                return _NOT_PLAIN  # NaN or an infinity (or a norm beyond the float range)
            big = big or norm >= _BIG
        if depth >= MAX_DEPTH and not types.isdisjoint(_CONTAINERS):
            return _NOT_PLAIN
        depth += 1
        level = _referents(*level)
    return _PLAIN_BIG if big else _PLAIN


if _orjson is not None:
    _orjson_dumps = _orjson.dumps
    _orjson_loads = _orjson.loads
    _orjson_error = _orjson.JSONEncodeError
    # datetimes and dataclasses go to the (absent) default: refused, as check() refuses them
    _STRICT = _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS

    def _encode(value: Any, root: str) -> tuple[bytes, bool]:
        """Check and encode ``value`` with one orjson pass (and a walk for what it lets by);
        also whether the text may hold a number with a positive exponent."""
        try:
            raw: bytes = _orjson_dumps(value, option=_STRICT)
        except _orjson_error:  # refused: say why, with the path (or encode what it refused)
            return _encode_std(value, root)
        plain = _scan(value) if _CAN_SCAN and len(raw) >= _SCAN_FROM else _plain(value)
        if plain == _NOT_PLAIN:
            check(value, root)  # raises, unless only a subclass of a JSON type stopped the walk
            return raw, _PG_FLOAT_HINT.search(raw) is not None
        return raw, plain == _PLAIN_BIG

    def _loads_fast(text: str | bytes) -> Any:
        try:
            return _orjson_loads(text)
        except _orjson.JSONDecodeError:  # deeper than orjson's limit
            return json.loads(text)

    _loads: Callable[[str | bytes], Any] = _loads_fast
else:  # pragma: no cover

    def _encode(value: Any, root: str) -> tuple[bytes, bool]:
        return _encode_std(value, root)

    _loads = json.loads


def _encode_std(value: Any, root: str) -> tuple[bytes, bool]:
    """Check ``value`` in Python, then encode it with the standard library."""
    check(value, root)
    try:
        raw = _dumps_std(value).encode()
    except UnicodeEncodeError:
        raise _surrogate_error(value, root) from None
    return raw, _PG_FLOAT_HINT.search(raw) is not None


def _positional(match: re.Match[bytes]) -> bytes:
    if match.group(1) is not None:
        return match.group(0)
    text = format(Decimal(match.group(2).decode()), "f")
    return (text if "." in text else text + ".0").encode()


def _escape_nul(raw: bytes) -> bytes:
    """Encoded JSON with every NUL character (``\\u0000`` in it) written as ESC "0" and ESC
    itself as ESC "e" (both only ever inside strings, keys included)."""
    raw = raw.replace(_ESC_B, _ESC_B + b"e")
    return _PG_ESCAPES.sub(_escape_one, raw)


def _escape_one(match: re.Match[bytes]) -> bytes:
    escape = match.group(0)
    return _ESC_B + b"0" if escape == b"\\u0000" else escape


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
    """Check ``value`` and return its compact JSON text (the PostgreSQL-safe form if ``pg``).

    One encoding pass: orjson's (when installed) does most of the checking, a walk that only
    looks at types and floats does the rest; a value it refuses is checked again in Python,
    to name the path in the error.
    """
    raw, exponent = _encode(value, root)
    if pg:
        # one-byte searches first (memchr): a backslash or ESC's first byte is rare
        if (b"\\" in raw and b"\\u0000" in raw) or (b"\xee" in raw and _ESC_B in raw):
            raw = _escape_nul(raw)
        if exponent:
            raw = _PG_FLOAT.sub(_positional, raw)
    return raw.decode()


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


def _loads_pg(text: str | bytes) -> Any:
    value = _loads(text)
    if _ESC in text if isinstance(text, str) else _ESC_B in text:
        value = _unescape_nul(value)
    return value


def loader(pg: bool) -> Callable[[str | bytes], Any]:
    """``loads`` for one dialect, as a one-argument function (for per-row readers)."""
    return _loads_pg if pg else _loads
