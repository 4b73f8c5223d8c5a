"""Aggregation (medians over runs, ratios pair by pair within a run) and the printed tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .contenders import REGISTRY
from .measure import median

OPS = ("create", "update", "get", "list", "delete")
CONV = "naive"  # the conversation variant shown in the tables

# (numerator, denominator): ops/s of A divided by ops/s of B, so > 1 means A is faster.
RATIO_PAIRS = (
    ("sessiondb-sync", "floor"),
    ("sessiondb-async", "floor"),
    ("sessiondb-sync", "floor-wal-normal"),  # SQLite: the same durability (the default)
    ("sessiondb-sync-full", "floor"),  # SQLite: the same strict durability
    ("sessiondb-sync-fast", "floor-wal-normal"),
    ("sessiondb-sync", "adk"),
    ("sessiondb-async", "adk"),
)

# every sessiondb contender (each has a baseline twin with --baseline)
SESSIONDB = tuple(name for name in REGISTRY if name.startswith("sessiondb"))

Results = dict[str, dict[str, dict[str, Any]]]  # backend -> contender -> worker result


def pairs(baseline: bool) -> tuple[tuple[str, str], ...]:
    """The ratio pairs of the report: with a baseline, each sessiondb contender over its
    ``@before`` twin too, and async over sync on both sides (issue 14's targets 2 and 7)."""
    out = [*RATIO_PAIRS, ("sessiondb-async", "sessiondb-sync")]
    if baseline:
        out += [(name, f"{name}@before") for name in SESSIONDB]
        out.append(("sessiondb-async@before", "sessiondb-sync@before"))
    return tuple(out)


# -- aggregation --------------------------------------------------------------------------------


def _median_of(values: Iterable[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    numbers = [v for v in numbers if not (isinstance(v, float) and math.isnan(v))]
    return median(numbers) if numbers else None


def _median_dicts(dicts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Field-by-field median of dicts of numbers (non-numbers taken from the first dict)."""
    if not dicts:
        return {}
    out: dict[str, Any] = {}
    for key, first in dicts[0].items():
        if isinstance(first, dict):
            out[key] = _median_dicts([d[key] for d in dicts if isinstance(d.get(key), dict)])
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = _median_of(d.get(key) for d in dicts)
        else:
            out[key] = first
    return out


def summarize(runs: list[Results]) -> Results:
    """Per backend and contender: the median over runs of every figure."""
    summary: Results = {}
    keys = {(b, c) for run in runs for b, by in run.items() for c in by}
    for backend, name in sorted(keys):
        ok = [
            run[backend][name]
            for run in runs
            if run.get(backend, {}).get(name, {}).get("status") == "ok"
        ]
        if not ok:
            continue
        entry = {
            "runs": len(ok),
            "info": ok[0].get("info", {}),
            "ops": _median_dicts([r["ops"] for r in ok]),
            "memory": _median_dicts([r["memory"] for r in ok]),
            "conversation": _median_dicts([r.get("conversation", {}) for r in ok]),
            "elapsed_s": _median_of(r.get("elapsed_s") for r in ok),
            "others_cpu_pct": _median_of(r.get("others_cpu_pct") for r in ok),
        }
        summary.setdefault(backend, {})[name] = entry
    return summary


def _conv_total(result: dict[str, Any]) -> float | None:
    conv = result.get("conversation", {}).get(CONV, {})
    total = conv.get("total_s")
    return float(total) if isinstance(total, (int, float)) and total > 0 else None


def ratios(
    runs: list[Results], pairs: Sequence[tuple[str, str]] = RATIO_PAIRS
) -> dict[str, dict[str, dict[str, Any]]]:
    """backend -> "a/b" -> op -> {"median": x, "per_run": [...]} (ops/s of a over ops/s of b)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for a, b in pairs:
        for backend in sorted({k for run in runs for k in run}):
            per_op: dict[str, list[float]] = {}
            for run in runs:
                ra = run.get(backend, {}).get(a, {})
                rb = run.get(backend, {}).get(b, {})
                if ra.get("status") != "ok" or rb.get("status") != "ok":
                    continue
                for op in OPS:
                    fa, fb = ra["ops"][op]["ops_s"], rb["ops"][op]["ops_s"]
                    if fa and fb:
                        per_op.setdefault(op, []).append(fa / fb)
                ta, tb = _conv_total(ra), _conv_total(rb)
                if ta and tb:
                    per_op.setdefault("conversation", []).append(tb / ta)
            if per_op:
                out.setdefault(backend, {})[f"{a}/{b}"] = {
                    op: {"median": median(values), "per_run": values}
                    for op, values in per_op.items()
                }
    return out


# -- printing -----------------------------------------------------------------------------------


def fmt_rate(value: Any) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ms(value: Any) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_num(value: Any, digits: int = 2) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def fmt_mib(kib: Any) -> str:
    return "-" if not isinstance(kib, (int, float)) else f"{kib / 1024:.1f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """A plain-text table: the first ``left`` columns left-aligned, the rest right-aligned."""
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *[line(r) for r in rows], ""])


def _rows(summary: Results, order: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = []
    for backend in ("sqlite", "postgresql", "mysql"):
        for name in order:
            if name in summary.get(backend, {}):
                rows.append((backend, name, summary[backend][name]))
    return rows


def _label(name: str, entry: dict[str, Any]) -> str:
    mode = entry.get("info", {}).get("update_mode", "")
    return name + (" (*)" if mode.startswith("fallback") else "")


def render(
    summary: Results,
    counts: Results,
    ratio_table: dict[str, dict[str, dict[str, Any]]],
    order: Sequence[str],
    runs: int,
    detail: bool = True,
) -> str:
    """Every table of the report, as text."""
    out: list[str] = []
    rows = _rows(summary, order)
    head = ("backend", "contender")
    out.append(
        table(
            f"Throughput, ops/s (median of {runs} run{'s' if runs != 1 else ''}; "
            "count / wall time of the whole phase)",
            [*head, *OPS, "conv turns/s"],
            [
                [
                    b,
                    _label(n, e),
                    *(fmt_rate(e["ops"][op]["ops_s"]) for op in OPS),
                    fmt_rate(
                        e["conversation"].get(CONV, {}).get("turns", math.nan)
                        / (e["conversation"].get(CONV, {}).get("total_s") or math.nan)
                    ),
                ]
                for b, n, e in rows
            ],
        )
    )
    if any(_label(n, e) != n for _, n, e in rows):
        out.append(
            "(*) update = get + merge + update_session_state: the store has no patch_state\n"
        )
    out.append(
        table(
            "Latency p50 / p99 ms (nearest rank) and CPU ms/op of the benchmark process",
            [*head, *(f"{op} p50/p99" for op in OPS), "CPU ms/op c/u/g/l/d"],
            [
                [
                    b,
                    n,
                    *(
                        f"{fmt_ms(e['ops'][op]['p50_ms'])}/{fmt_ms(e['ops'][op]['p99_ms'])}"
                        for op in OPS
                    ),
                    "/".join(fmt_ms(e["ops"][op]["cpu_ms_per_op"]) for op in OPS),
                ]
                for b, n, e in rows
            ],
        )
    )
    if detail:
        out.append(
            table(
                "Mean / max ms",
                [*head, *(f"{op} mean/max" for op in OPS)],
                [
                    [
                        b,
                        n,
                        *(
                            f"{fmt_ms(e['ops'][op]['mean_ms'])}/{fmt_ms(e['ops'][op]['max_ms'])}"
                            for op in OPS
                        ),
                    ]
                    for b, n, e in rows
                ],
            )
        )
    count_rows = []
    for backend in ("sqlite", "postgresql", "mysql"):
        for name in order:
            result = counts.get(backend, {}).get(name)
            if not result or result.get("status") != "ok":
                continue
            per_op = result["counts"]
            cells = [
                fmt_num(per_op.get(op, {}).get("mean"), 1)
                for op in (*OPS, f"conv_read[{CONV}]", f"conv_write[{CONV}]")
            ]
            count_rows.append([backend, name, result.get("unit", ""), *cells])
    out.append(
        table(
            "Database round trips per op (servers: counted by a TCP proxy) / SQL statements per "
            "op (SQLite: trace callback), mean of the counting pass",
            [*head, "unit", *OPS, "conv read", "conv write"],
            count_rows,
            left=3,
        )
    )
    out.append(
        table(
            "Memory, MiB (one process per contender); CPU used by everything else meanwhile "
            "(database server included), % of one core",
            [*head, "RSS after setup", "peak after CRUD", "peak at end", "others' CPU %"],
            [
                [
                    b,
                    n,
                    fmt_mib(e["memory"].get("rss_after_setup_kib")),
                    fmt_mib(e["memory"].get("hwm_after_crud_kib")),
                    fmt_mib(e["memory"].get("hwm_end_kib")),
                    fmt_num(e.get("others_cpu_pct"), 0),
                ]
                for b, n, e in rows
            ],
        )
    )
    conv_rows = []
    for b, n, e in rows:
        conv = e["conversation"].get(CONV)
        if not conv:
            continue
        conv_rows.append(
            [
                b,
                n,
                fmt_num(conv.get("total_s"), 2),
                fmt_ms(conv.get("first10_p50_ms")),
                fmt_ms(conv.get("last10_p50_ms")),
                fmt_ms(conv.get("last10_read_p50_ms")),
                fmt_ms(conv.get("last10_write_p50_ms")),
                fmt_num(conv.get("growth_exponent"), 2),
                f"{conv.get('stored_bytes', 0):,.0f}",
                f"{conv.get('messages_checked', 0):.0f} ok",
            ]
        )
    out.append(
        table(
            "Conversation (naive: read, append 2 messages, write the whole history back); ms",
            [*head, "total s", "first10 p50", "last10 p50", "read", "write", "e", "bytes", "check"],
            conv_rows,
        )
    )
    ratio_rows = []
    for backend in ("sqlite", "postgresql", "mysql"):
        for pair, per_op in ratio_table.get(backend, {}).items():
            ratio_rows.append(
                [
                    backend,
                    pair,
                    *(fmt_num(per_op.get(op, {}).get("median"), 2) for op in OPS),
                    fmt_num(per_op.get("conversation", {}).get("median"), 2),
                ]
            )
    out.append(
        table(
            "Ratios of ops/s, a/b (> 1: a is faster), computed within each run, median over runs",
            ["backend", "a/b", *OPS, "conv"],
            ratio_rows,
        )
    )
    if detail:
        out.append(
            table(
                "Contender settings and how an update is applied",
                [*head, "settings", "update"],
                [
                    [b, n, e["info"].get("settings", ""), e["info"].get("update_mode", "")]
                    for b, n, e in rows
                ],
                left=4,
            )
        )
    return "\n".join(part for part in out if part)
