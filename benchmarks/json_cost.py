"""Issue 14 §4: what checking and encoding a state costs, against ``orjson.dumps`` alone.

    python -m benchmarks.json_cost                      # 1 KB, 100 KB, 5 MB; 5 rounds
    python -m benchmarks.json_cost --baseline 9e5295d   # and the _json.py of another commit
    python -m benchmarks.json_cost --quick              # small and short (CI)

The states are ``benchmarks.probe.make_state``'s (the ones ``round2``'s T4 uses): a
conversation history of messages with text (non-ASCII included), numbers, flags, ``None`` and
nested metadata. Each round times every contender in turn (the order rotates), and each ratio
is taken within its round over orjson's time of the same round; the median over rounds is
printed. Contenders:

* ``orjson``: ``orjson.dumps(state)``, bytes, no check: the 1.0 of every ratio;
* ``orjson+str``: the same decoded to ``str``, the form every driver is given the state in;
* ``walk``: sessiondb's check after orjson alone, as ``dumps`` runs it for that size
  (``_json._scan`` from ``_json._SCAN_FROM`` bytes of JSON, else ``_json._plain``: types,
  NaN/Infinity, depth);
* ``sessiondb``: ``_json.dumps(state)``, checked and encoded; ``sessiondb pg``: PostgreSQL's
  form (NUL escapes, positional floats);
* with ``--baseline``: ``before`` and ``before pg``, the ``_json.dumps`` of that commit.

The target is ``sessiondb`` ≤ 1.5 at every size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .probe import SIZES, make_state

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.5


def _per_call(fn: Callable[[], Any], seconds: float) -> float:
    """Seconds per call of ``fn``, over as many calls as fit in about ``seconds``."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        took = time.perf_counter() - start
        if took >= seconds:
            return took / calls


def _walk(module: Any, size: int) -> Any:
    """The check ``module.dumps`` runs after orjson on a text of ``size`` bytes."""
    scan_from = getattr(module, "_SCAN_FROM", None)
    if scan_from is not None and module._CAN_SCAN and size >= scan_from:
        return module._scan
    return module._plain


def _baseline(ref: str) -> types.ModuleType:
    """``src/sessiondb/_json.py`` as it was at ``ref``, importable beside today's."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:src/sessiondb/_json.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("sessiondb_json_before")
    module.__dict__["__package__"] = "sessiondb"  # its relative imports: today's errors
    exec(compile(source, f"{ref}:_json.py", "exec"), module.__dict__)
    return module


def measure(
    sizes: dict[str, int], rounds: int, seconds: float, baseline: str | None
) -> dict[str, dict[str, Any]]:
    """label -> {"bytes", "orjson_ms", "ratios": {contender: median ratio}}."""
    import orjson

    from sessiondb import _json

    before = _baseline(baseline) if baseline else None
    out: dict[str, dict[str, Any]] = {}
    for label, size in sizes.items():
        state = make_state(size)
        text = _json.dumps(state)
        if before is not None:
            assert before.dumps(state) == text, "the baseline writes another text"
        contenders: dict[str, Callable[[], Any]] = {
            "orjson": partial(orjson.dumps, state),
            "orjson+str": lambda s=state: orjson.dumps(s).decode(),
            "walk": partial(_walk(_json, len(text.encode())), state),
            "sessiondb": partial(_json.dumps, state),
            "sessiondb pg": partial(_json.dumps, state, pg=True),
        }
        if before is not None:
            contenders["before"] = partial(before.dumps, state)
            contenders["before pg"] = partial(before.dumps, state, pg=True)
        names = list(contenders)
        ratios: dict[str, list[float]] = {name: [] for name in names}
        base_times: list[float] = []
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            took = {name: _per_call(contenders[name], seconds) for name in order}
            base_times.append(took["orjson"])
            for name in names:
                ratios[name].append(took[name] / took["orjson"])
        out[label] = {
            "bytes": len(text.encode()),
            "orjson_ms": sorted(base_times)[len(base_times) // 2] * 1e3,
            "ratios": {n: sorted(v)[len(v) // 2] for n, v in ratios.items()},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.json_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--seconds", type=float, default=0.2, help="seconds per contender and round")
    p.add_argument("--baseline", help="a git ref whose _json.dumps runs beside today's")
    p.add_argument("--quick", action="store_true", help="1 KB and 100 KB, 1 round, 0.02 s")
    args = p.parse_args(argv)
    sizes = dict(SIZES)
    if args.quick:
        sizes = {k: v for k, v in SIZES.items() if v <= 100_000}
        args.rounds, args.seconds = 1, 0.02
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            print(f"load average: {' '.join(f.read().split()[:3])}")
    except OSError:
        pass
    results = measure(sizes, args.rounds, args.seconds, args.baseline)
    names = list(next(iter(results.values()))["ratios"])
    print(f"time / orjson.dumps time, median of {args.rounds} rounds (goal: sessiondb <= {GOAL})")
    print(f"{'size':>6} {'bytes':>9} {'orjson ms':>10} " + " ".join(f"{n:>12}" for n in names))
    for label, row in results.items():
        cells = " ".join(f"{row['ratios'][n]:>12.2f}" for n in names)
        print(f"{label:>6} {row['bytes']:>9,} {row['orjson_ms']:>10.3f} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
