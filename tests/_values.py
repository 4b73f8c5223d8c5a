"""Values shared by the state tests (a helper module: it holds no tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Any JSON value sessiondb must keep exactly: 64-bit integers, finite floats, any text.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def typed(value: Any) -> Any:
    """``value`` with each scalar paired with its type (-0.0 equals 0.0 but stays a float)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return (type(value).__name__, value)
