"""``sessiondb._json.dumps``: one orjson pass plus a walk, or the standard library without
orjson; the same text, the same errors (types, messages, paths) either way."""

from __future__ import annotations

import enum
import json
import math
import re
import subprocess
import sys
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from sessiondb import _json
from sessiondb.errors import InvalidStateError, StateTypeError

ESC = "\ue000"


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


class Ratio(float):
    pass


@dataclass
class Point:
    x: int


def nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


GOOD: list[Any] = [
    {},
    {"a": 1, "b": [1.5, None, True, "é😀"], "c": {"d": (1, 2)}},
    {"big": 1e16, "small": -1.5e300, "tiny": 1e-7, "in text": "1e16 and 2E+5"},
    {"nul": "a\x00b", ESC: ESC + "0", "k\x00": [f"{ESC}e", "\\u0000", "\\\\u0000"]},
    {"edge": [2**64 - 1, -(2**63), 0, -0.0]},
    {"sub": Name("x"), Name("key"): Level.HIGH, "f": Ratio(0.5)},
    OrderedDict(a=1),
    {"deep": nest(99)},
    "a string",
    [1, 2],
    3.5,
    None,
]

BAD: list[tuple[Any, type[Exception], str]] = [
    ({"n": math.nan}, InvalidStateError, "state['n'] = nan: JSON has no NaN or Infinity"),
    ({"l": [1, -math.inf]}, InvalidStateError, "state['l'][1] = -inf"),
    ({"x": {1: "v"}}, StateTypeError, "state['x'] has the key 1 of type int"),
    ({"b": 2**64}, InvalidStateError, "state['b'] = 18446744073709551616 does not fit"),
    ({"b": -(2**63) - 1}, InvalidStateError, "does not fit in 64 bits"),
    ({"u": uuid.UUID(int=1)}, StateTypeError, "state['u'] is a UUID"),
    ({"e": Color.RED}, StateTypeError, "state['e'] is a Color"),
    ({"t": datetime(2026, 1, 1)}, StateTypeError, "state['t'] is a datetime"),
    ({"p": Point(1)}, StateTypeError, "state['p'] is a Point"),
    ({"s": {1}}, StateTypeError, "state['s'] is a set"),
    ({"d": Decimal("1.5")}, StateTypeError, "state['d'] is a Decimal"),
    ({"y": b"x"}, StateTypeError, "state['y'] is a bytes"),
    ({"deep": nest(100)}, InvalidStateError, "nested deeper than 100 levels"),
    ({"deep": nest(300)}, InvalidStateError, "nested deeper than 100 levels"),
    ({"s": ["a\ud800"]}, InvalidStateError, "state['s'][0] holds a lone surrogate"),
    ({"\udfff": 1}, InvalidStateError, "has the key '\\udfff', holding a lone surrogate"),
    (math.inf, InvalidStateError, "state = inf"),
]


def check_text(value: Any, text: str, pg: bool) -> None:
    """``text`` is JSON holding ``value``; the PostgreSQL form holds no NUL escape and no
    number with a positive exponent (JSONB would make it an integer), and reads back."""
    numbers: list[str] = []

    def keep(literal: str) -> float:
        numbers.append(literal)
        return float(literal)

    decoded = json.loads(text, parse_float=keep)
    expected = json.loads(json.dumps(value))
    if not pg:
        assert decoded == expected
        return
    assert not re.search(r"(?<!\\)(?:\\\\)*\\u0000", text)  # no NUL escape left
    assert [n for n in numbers if re.search(r"[eE]\+?\d", n)] == []
    assert _json.loads(text, pg=True) == expected


@pytest.mark.parametrize("pg", [False, True], ids=["text", "pg"])
@pytest.mark.parametrize("value", GOOD, ids=range(len(GOOD)))
def test_good_values_encode_to_the_expected_text(value: Any, pg: bool) -> None:
    check_text(value, _json.dumps(value, pg=pg), pg)


@pytest.mark.parametrize("pg", [False, True], ids=["text", "pg"])
@pytest.mark.parametrize("bad, kind, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_values_raise_the_same_error(
    bad: Any, kind: type[Exception], message: str, pg: bool
) -> None:
    with pytest.raises(kind) as info:
        _json.dumps(bad, pg=pg)
    assert type(info.value) is kind
    assert message in str(info.value)


def test_without_orjson_the_standard_library_gives_the_same_text_and_errors() -> None:
    """The ``[speed]`` extra is optional: in a process where orjson cannot be imported, every
    value above encodes to the same text and every bad one raises the same error."""
    code = f"""
import sys
sys.modules["orjson"] = None  # import orjson raises ImportError
sys.path.insert(0, {str(__file__.rsplit("/", 2)[0])!r})
from tests import test_json as t
from sessiondb import _json
assert _json._orjson is None
for value in t.GOOD:
    for pg in (False, True):
        t.check_text(value, _json.dumps(value, pg=pg), pg)
for bad, kind, message in t.BAD:
    try:
        _json.dumps(bad)
    except kind as exc:
        assert type(exc) is kind and message in str(exc), (exc, message)
    else:
        raise AssertionError(f"no error for {{bad!r}}")
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


def test_the_json_cost_benchmark_runs() -> None:
    from benchmarks import json_cost

    results = json_cost.measure({"1KB": 1_000}, rounds=1, seconds=0.001, baseline=None)
    ratios = results["1KB"]["ratios"]
    assert set(ratios) == {"orjson", "orjson+str", "walk", "sessiondb", "sessiondb pg"}
    assert ratios["orjson"] == 1.0
