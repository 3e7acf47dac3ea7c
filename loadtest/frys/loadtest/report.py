"""Benchmark reports: one JSON file, one PNG plot and a printed table per run."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORTS_DIR = Path(__file__).resolve().parents[2] / "reports"


@dataclass(frozen=True)
class Column:
    """One figure of a result row: ``key`` is a dotted path into the target's result."""

    key: str
    label: str
    higher_is_better: bool = True
    digits: int = 0


def default_out(scenario: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPORTS_DIR / f"{stamp}-{scenario}"


def lookup(result: Mapping[str, Any], key: str) -> Any:
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def ratios(results: Mapping[str, Mapping[str, Any]], columns: Sequence[Column]) -> dict[str, Any]:
    """For every peer and figure: how many times better Frys is (> 1: Frys better)."""
    frys = results.get("frys")
    if not frys or "error" in frys:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for name, result in results.items():
        if name == "frys" or "error" in result:
            continue
        row: dict[str, float | None] = {}
        for col in columns:
            a, b = _number(lookup(frys, col.key)), _number(lookup(result, col.key))
            if a is None or b is None or a <= 0 or b <= 0:
                row[col.key] = None
            else:
                row[col.key] = round(a / b if col.higher_is_better else b / a, 3)
        out[name] = row
    return out


def _fmt(value: Any, digits: int) -> str:
    n = _number(value)
    if n is None:
        return "-" if value is None else str(value)
    if digits == 0:
        return f"{n:,.0f}"
    return f"{n:,.{digits}f}"


def table(results: Mapping[str, Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A fixed-width table, one row per target, with the Frys advantage on the first
    column for each peer."""
    head = ["target", *[c.label for c in columns]]
    if "frys" in results and len(results) > 1 and columns:
        head.append(f"frys vs ({columns[0].label})")
    rows = [head]
    adv = ratios(results, columns)
    for name, result in results.items():
        if "error" in result:
            rows.append([name, f"error: {str(result['error'])[:70]}"])
            continue
        row = [name, *[_fmt(lookup(result, c.key), c.digits) for c in columns]]
        if len(head) > len(columns) + 1:
            r = adv.get(name, {}).get(columns[0].key)
            row.append("" if name == "frys" else ("-" if r is None else f"{r:.2f}x"))
        rows.append(row)
    sized = [r for r in rows if len(r) > 2 or len(rows) == 1]
    widths = [max(len(r[i]) for r in sized if i < len(r)) for i in range(len(head))]
    lines = []
    for j, r in enumerate(rows):
        if len(r) == 2 and len(head) > 2:
            lines.append(f"{r[0].ljust(widths[0])}  {r[1]}")
            continue
        cells = [(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(
    path: Path,
    title: str,
    results: Mapping[str, Mapping[str, Any]],
    bar: Column,
    latency_key: str | None,
    latency_label: str = "latency (ms)",
) -> None:
    """Left: ``bar`` per target. Right: p50/p99/p99.9 of ``latency_key`` per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in results.items() if "error" not in r]
    fig, axes = plt.subplots(1, 2 if latency_key else 1, figsize=(13 if latency_key else 7, 4.8))
    ax0 = axes[0] if latency_key else axes
    values = [_number(lookup(results[n], bar.key)) or 0.0 for n in names]
    colors = ["#d9480f" if n == "frys" else "#495057" for n in names]
    ax0.bar(names, values, color=colors)
    ax0.set_title(bar.label)
    ax0.tick_params(axis="x", rotation=30)
    for i, v in enumerate(values):
        ax0.annotate(_fmt(v, bar.digits), (i, v), ha="center", va="bottom", fontsize=8)
    if latency_key:
        ax1 = axes[1]
        width = 0.27
        for j, (pct, label) in enumerate(
            (("p50_ms", "p50"), ("p99_ms", "p99"), ("p99_9_ms", "p99.9"))
        ):
            ys = [_number(lookup(results[n], f"{latency_key}.{pct}")) or 0.0 for n in names]
            ax1.bar([i + (j - 1) * width for i in range(len(names))], ys, width, label=label)
        ax1.set_xticks(range(len(names)), names, rotation=30)
        ax1.set_yscale("log")
        ax1.set_ylabel(latency_label)
        ax1.set_title("latency percentiles (log scale)")
        ax1.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(
    out_dir: Path,
    scenario: str,
    params: Mapping[str, Any],
    machine: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    title: str,
    latency_key: str | None,
    latency_label: str = "latency (ms)",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``report.json`` and ``report.png`` into ``out_dir``; print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "scenario": scenario,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": dict(params),
        "machine": dict(machine),
        "targets": {k: dict(v) for k, v in results.items()},
        "frys_advantage": ratios(results, columns),
        "frys_advantage_meaning": "per figure: Frys's value over the peer's (throughput) or "
        "the peer's over Frys's (latency, memory, time); above 1 means Frys is better",
        **dict(extra or {}),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    if columns:
        plot(out_dir / "report.png", title, results, columns[0], latency_key, latency_label)
    print(table(results, columns))
    print(f"\nreport: {out_dir / 'report.json'}\nplot:   {out_dir / 'report.png'}")
    return report
