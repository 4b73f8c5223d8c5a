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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiondb import _json
from sessiondb.errors import InvalidStateError, StateTypeError

from ._values import json_values, typed

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


class Tag(str, enum.Enum):
    A = "a"


class Plain(dict[str, Any]):
    pass


class Items(list[Any]):
    pass


class Big(int):
    pass


def nest(levels: int, inner: Any = 0, wrap: Any = lambda v: [v]) -> Any:
    value: Any = inner
    for _ in range(levels):
        value = wrap(value)
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
    {"deep": nest(98, [])},  # an empty list at level 99 (the root is level 0)
    {"deep": nest(49, {}, lambda v: {"k": (v,)})},  # a dict at level 99
    {"bool": [True, False, 1, 0, 1.0, 0.0], "neg": [-0.0, -1, -1.5]},
    {"int": [2**63, 2**64 - 1, -(2**63), Big(2**63)], "tuple": ((1, (2.5, None)), ())},
    {"mixin": [Tag.A, Level.HIGH], Tag.A: "key", "subs": Plain(x=Items([Ratio(-0.0)]))},
    {"norm": [1.5e308, 1.5e308], "pg": [9e15] * 4 + [-9.9e15]},  # a norm beyond 1e16
    "a string",
    [1, 2],
    3.5,
    None,
]

BAD: list[tuple[Any, type[Exception], str]] = [
    ({"n": math.nan}, InvalidStateError, "state['n'] = nan: JSON has no NaN or Infinity"),
    ({"l": [1, -math.inf]}, InvalidStateError, "state['l'][1] = -inf"),
    ({"a": {"b": [1.0, 2, math.nan]}}, InvalidStateError, "state['a']['b'][2] = nan"),
    ({"a": ({"b": math.inf},)}, InvalidStateError, "state['a'][0]['b'] = inf"),
    ({"r": Ratio(math.nan)}, InvalidStateError, "state['r'] = nan"),
    ({"r": [Ratio(math.inf)]}, InvalidStateError, "state['r'][0] = inf"),
    ({"x": {1: "v"}}, StateTypeError, "state['x'] has the key 1 of type int"),
    ({"b": 2**64}, InvalidStateError, "state['b'] = 18446744073709551616 does not fit"),
    ({"b": -(2**63) - 1}, InvalidStateError, "does not fit in 64 bits"),
    ({"b": [10**30]}, InvalidStateError, "state['b'][0] = 10000000000000000000000000000"),
    ({"b": Big(2**64)}, InvalidStateError, "state['b'] = 18446744073709551616 does not fit"),
    ({"u": uuid.UUID(int=1)}, StateTypeError, "state['u'] is a UUID"),
    ({"e": Color.RED}, StateTypeError, "state['e'] is a Color"),
    ({"l": [1, {"u": [uuid.UUID(int=2)]}]}, StateTypeError, "state['l'][1]['u'][0] is a UUID"),
    ({"k": {"e": (Tag.A, Color.RED)}}, StateTypeError, "state['k']['e'][1] is a Color"),
    ({"x": Plain(y=[Color.RED])}, StateTypeError, "state['x']['y'][0] is a Color"),
    ({"t": datetime(2026, 1, 1)}, StateTypeError, "state['t'] is a datetime"),
    ({"p": Point(1)}, StateTypeError, "state['p'] is a Point"),
    ({"s": {1}}, StateTypeError, "state['s'] is a set"),
    ({"d": Decimal("1.5")}, StateTypeError, "state['d'] is a Decimal"),
    ({"y": b"x"}, StateTypeError, "state['y'] is a bytes"),
    ({"deep": nest(100)}, InvalidStateError, "nested deeper than 100 levels"),
    ({"deep": nest(300)}, InvalidStateError, "nested deeper than 100 levels"),
    ({"deep": nest(99, [])}, InvalidStateError, "nested deeper than 100 levels"),
    ({"deep": nest(99, {}, lambda v: {"k": v})}, InvalidStateError, "nested deeper than 100"),
    ({"s": ["a\ud800"]}, InvalidStateError, "state['s'][0] holds a lone surrogate"),
    ({"\udfff": 1}, InvalidStateError, "has the key '\\udfff', holding a lone surrogate"),
    ({"a": [{"x\ud800y": 1}]}, InvalidStateError, "state['a'][0] has the key 'x\\ud800y'"),
    ({"a": {"b": ("ok", "\udc00")}}, InvalidStateError, "state['a']['b'][1] holds a lone"),
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
        assert typed(decoded) == typed(expected)  # True is not 1, 1.0 is not 1
        return
    assert not re.search(r"(?<!\\)(?:\\\\)*\\u0000", text)  # no NUL escape left
    assert [n for n in numbers if re.search(r"[eE]\+?\d", n)] == []
    assert _json.loads(text, pg=True) == expected


@pytest.fixture(params=["walk", "scan"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """After orjson, values of any size go through the Python walk (``_plain``) or the
    level scan (``_scan``, used for texts of ``_SCAN_FROM`` bytes or more)."""
    if request.param == "scan" and not _json._CAN_SCAN:
        pytest.skip("the level scan needs CPython")
    monkeypatch.setattr(_json, "_SCAN_FROM", 0 if request.param == "scan" else 2**62)
    return str(request.param)


@pytest.mark.parametrize("pg", [False, True], ids=["text", "pg"])
@pytest.mark.parametrize("value", GOOD, ids=range(len(GOOD)))
def test_good_values_encode_to_the_expected_text(value: Any, pg: bool, way: str) -> None:
    check_text(value, _json.dumps(value, pg=pg), pg)


@pytest.mark.parametrize("pg", [False, True], ids=["text", "pg"])
@pytest.mark.parametrize("bad, kind, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_values_raise_the_same_error(
    bad: Any, kind: type[Exception], message: str, pg: bool, way: str
) -> None:
    with pytest.raises(kind) as info:
        _json.dumps(bad, pg=pg)
    assert type(info.value) is kind
    assert message in str(info.value)


def test_an_orjson_fragment_is_refused(way: str) -> None:
    """orjson writes a ``Fragment``'s bytes as they are; sessiondb refuses it as any other
    foreign type, at any depth."""
    orjson = pytest.importorskip("orjson")
    fragment = orjson.Fragment
    for value, where in [
        ({"f": fragment(b"[1]")}, "state['f']"),
        ({"l": [{"f": fragment(b"NaN")}]}, "state['l'][0]['f']"),
    ]:
        with pytest.raises(StateTypeError, match=re.escape(f"{where} is a Fragment")):
            _json.dumps(value)


def test_the_level_scan_answers_as_the_walk() -> None:
    """``_scan`` is at least as cautious as ``_plain`` on every value above: it may say a
    float is big when none is (its floats' norm is 1e16 or more: the PostgreSQL form then
    runs a regex for nothing), or not plain when the norm overflows (``check`` decides)."""
    if not _json._CAN_SCAN:
        pytest.skip("the level scan needs CPython")
    for value in GOOD + [bad for bad, _, _ in BAD]:
        walk, scan = _json._plain(value), _json._scan(value)
        if walk == _json._NOT_PLAIN or scan == _json._PLAIN:
            assert scan == walk, value
    assert _json._scan({"norm": [1.5e308, 1.5e308]}) == _json._NOT_PLAIN
    assert _json._scan([9e15] * 4) == _json._PLAIN_BIG


_foreign = st.sampled_from(
    [math.nan, -math.inf, uuid.UUID(int=3), Color.RED, Tag.A, Level.HIGH, Ratio(1.5), Name("n"),
     Big(7), Big(2**64), 2**64, -(2**63) - 1, 1e300, (), Plain(), Items([1]), b"b", {1}]
)  # fmt: skip
_values = st.recursive(
    json_values | _foreign,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=4) | st.sampled_from([Name("k"), 1]), children, max_size=4
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values)
def test_scan_and_walk_give_the_same_text_or_error(value: Any) -> None:
    """Any value, good or bad: the level scan and the Python walk give the same text, or the
    same error (type and message), in both forms."""
    if not _json._CAN_SCAN:
        pytest.skip("the level scan needs CPython")
    results = []
    for scan_from in (0, 2**62):
        _json._SCAN_FROM, saved = scan_from, _json._SCAN_FROM
        try:
            out: list[Any] = []
            for pg in (False, True):
                try:
                    out.append(_json.dumps(value, pg=pg))
                except (InvalidStateError, StateTypeError) as exc:
                    out.append((type(exc), str(exc)))
            results.append(out)
        finally:
            _json._SCAN_FROM = saved
    assert results[0] == results[1]


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
