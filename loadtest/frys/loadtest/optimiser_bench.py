"""``frys-ws loadtest optimiser``: the protocol optimiser's benchmark, printed as tables.

1. **Tensor grid** (:func:`frys.loadtest.optimiser_grid.run_tensor_grid`): data patterns ×
   link classes; per cell the optimiser's total cost against the hindsight-best fixed arm,
   today's codec and zstd-3 on whole values, the arm it settled on, how fast it re-converged
   after a change of regime, and its probe CPU as a share of the relay's.
2. **Small messages** (:func:`frys.loadtest.optimiser_grid.run_event_grid`): the workflow
   event mix, plain vs zstd-3 vs a hindsight dictionary vs the online learner, per link
   class; ratio, encode and decode time per message.
3. **Live** (``--live``, :mod:`frys.loadtest.optimiser_live`): NATS, a gateway, subscribers
   declaring ``zstd-dict`` or nothing; bytes on the wire per delivered event and delivery
   p99 with the optimiser on and off.

Not a timed test: run it by hand (``--quick`` for a short pass).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from frys.gateway.optimiser.cost import CostWeights
from frys.loadtest.optimiser_grid import run_event_grid, run_tensor_grid


def _n(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _table(header: tuple[str, ...], lines: Sequence[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(r[c]) for r in [header, *lines]) for c in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(
        [render(header), render(tuple("-" * w for w in widths)), *(render(x) for x in lines)]
    )


def format_tensor(rows: list[dict[str, Any]]) -> str:
    header = (
        "pattern", "link", "optimiser ms", "best fixed", "ms", "x best", "worst x",
        "today ms", "zstd-3 ms", "x zstd-3", "arm", "settle", "probe %", "ratio",
    )  # fmt: skip
    lines = [
        (
            str(r["pattern"]),
            str(r["link"]),
            _n(r["optimiser_cost_ms"]),
            str(r["best_arm"]),
            _n(r["best_cost_ms"]),
            _n(r["vs_best"]),
            _n(r["worst_vs_best"]),
            _n(r["today_cost_ms"]),
            _n(r["zstd3_cost_ms"]),
            _n(r["vs_zstd3"]),
            str(r["arm"]),
            "-" if r["settle_frames"] is None else str(r["settle_frames"]),
            _n(100 * r["probe_share"], 1),
            _n(r["ratio"]),
        )
        for r in rows
    ]
    ratios = [r["vs_best"] for r in rows]
    out = [_table(header, lines, {2, 4, 5, 6, 7, 8, 9, 11, 12, 13})]
    out.append("")
    out.append(
        f"x best: optimiser cost / hindsight-best fixed arm of the cell (median of the repeated "
        f"runs; worst x: the worst run). Median {statistics.median(ratios):.3f}, "
        f"max {max(ratios):.3f}. Cost = w_cpu·(t_enc + t_dec) + bytes·8/bandwidth, probes "
        f"and bookkeeping included. settle: frames after the change of regime until the arm "
        f"stays within 10 % of the new regime's best. probe %: probe CPU / relay CPU "
        f"(apply + encode)."
    )
    return "\n".join(out)


def format_events(result: dict[str, Any]) -> str:
    header = ("pattern", "link", "optimiser ms", "best fixed", "ms", "x best", "zstd-3 ms",
              "x zstd-3", "bytes vs plain")  # fmt: skip
    lines = [
        (
            str(r["pattern"]),
            str(r["link"]),
            _n(r["optimiser_cost_ms"], 3),
            str(r["best_arm"]),
            _n(r["best_cost_ms"], 3),
            _n(r["vs_best"]),
            _n(r["zstd3_cost_ms"], 3),
            _n(r["vs_zstd3"]),
            f"{100 * r['bytes_share']:.1f} %",
        )
        for r in result["rows"]
    ]
    out = [_table(header, lines, {2, 4, 5, 6, 7, 8}), ""]
    for name, s in result["summary"].items():
        out.append(
            f"{name}: {s['messages']} messages, {s['schemas']} schemas, mean msgpack frame "
            f"{s['mean_msgpack_frame_bytes']:.0f} B (payload {s['mean_payload_bytes']:.0f} B); "
            f"learnt dictionaries {s['dictionaries_learnt']}, plain for the first "
            f"{s['plain_until']} messages; once learnt {_n(s['steady_ratio'])}:1 "
            f"(mean {_n(s['steady_mean_bytes'], 1)} B), hindsight dictionary "
            f"{_n(s['hindsight_ratio'])}:1, zstd-3 {_n(s['zstd3_ratio'])}:1; encode "
            f"{_n(s['encode_us'])} µs, decode {_n(s['decode_us'])} µs per message "
            f"(zstd-3: {_n(s['zstd3_encode_us'])} / {_n(s['zstd3_decode_us'])} µs); "
            f"training {_n(s['training_ms'], 0)} ms in all."
        )
    out.append(
        "Small messages are sent compressed to a reader when that pays on its link class "
        "(on the same host the plain frame is cheaper)."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="frys-ws loadtest optimiser",
        description="The protocol optimiser against fixed choices, and live through NATS.",
    )
    parser.add_argument("--ticks", type=int, default=120, help="frames per tensor pattern")
    parser.add_argument("--messages", type=int, default=40000, help="events per message mix")
    parser.add_argument("--repeats", type=int, default=3, help="optimiser runs per cell")
    parser.add_argument("--pattern", action="append", dest="patterns", help="only this pattern")
    parser.add_argument("--w-cpu", type=float, default=1.0, help="weight of a CPU second")
    parser.add_argument("--quick", action="store_true", help="short pass (ticks 40, 8000 events)")
    parser.add_argument("--no-tensor", action="store_true")
    parser.add_argument("--no-events", action="store_true")
    parser.add_argument("--live", action="store_true", help="also run NATS + a gateway")
    parser.add_argument("--live-seconds", type=float, default=8.0)
    parser.add_argument("--live-subscribers", type=int, default=8)
    parser.add_argument("--live-rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--live-rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.ticks, args.messages, args.repeats = 40, 8000, 1
    weights = CostWeights(w_cpu=args.w_cpu)
    result: dict[str, Any] = {}
    if not args.no_tensor:
        result["tensor"] = run_tensor_grid(
            args.ticks, weights=weights, names=args.patterns, repeats=args.repeats
        )
    if not args.no_events:
        result["events"] = run_event_grid(args.messages, weights=weights)
    if args.live:
        from frys.loadtest.optimiser_live import run_live

        result["live"] = run_live(
            args.live_seconds, args.live_subscribers, args.live_rate, args.live_rounds
        )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    if "tensor" in result:
        print("Tensor streams: optimiser vs fixed arms\n")
        print(format_tensor(result["tensor"]))
        print()
    if "events" in result:
        print("Small messages: learnt dictionaries vs fixed choices\n")
        print(format_events(result["events"]))
        print()
    if "live" in result:
        from frys.loadtest.optimiser_live import format_live

        print("Live: NATS + a gateway, optimiser off and on\n")
        print(format_live(result["live"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
