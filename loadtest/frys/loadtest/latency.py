"""``frys-ws loadtest latency``: end-to-end latency p50/p99/p99.9 at a fixed rate well below
saturation (default 1,000 msg/s to 1,000 subscribers), the same measurement as
``fanout --rate R``.

``--rate R1,R2,...`` measures every target at each of the rates in one run, one table per
rate: the same machine load and the same targets, so the rows compare. ``--fraction-of-max
F`` instead first finds each target's maximum rate with a short ``fanout`` at maximum, then
measures latency at F times that rate (for instance 0.5: half load).

    frys-ws loadtest latency --rate 1000 --subscribers 1000 --vs ws
    frys-ws loadtest latency --rate 50,500,2000 --vs all
    frys-ws loadtest latency --fraction-of-max 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from frys.loadtest import fanout, report
from frys.loadtest.loadgen import LoadGen
from frys.loadtest.runner import Run, each_target, start_run
from frys.loadtest.targets import Target
from frys.runtime.eventloop import install_uvloop

COLUMNS = [
    report.Column("latency.p50_ms", "p50 ms", False, 2),
    report.Column("latency.p99_ms", "p99 ms", False, 2),
    report.Column("latency.p99_9_ms", "p99.9 ms", False, 2),
    report.Column("latency.max_ms", "max ms", False, 2),
    report.Column("rate_target", "rate msg/s"),
    report.Column("deliveries_per_s", "deliveries/s"),
    report.Column("usage.server_cpu_pct", "server cpu %", False, 0),
    report.Column("lost", "lost", False),
]


def rates_of(text: str) -> list[float]:
    """``--rate``: one rate or several, comma separated (messages per second, each > 0)."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not rates or any(not rate > 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def main(argv: list[str]) -> int:
    parser = fanout.build_parser("frys-ws loadtest latency", rate_type=rates_of)
    parser.set_defaults(rate=[1000.0])
    parser.add_argument(
        "--fraction-of-max",
        type=float,
        default=0.0,
        help="measure at this fraction of each target's maximum rate (found first)",
    )
    parser.add_argument(
        "--max-duration", type=float, default=2.0, help="seconds of the maximum-rate probe"
    )
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(_run(args))
    return 0


async def _run(args: Any) -> None:
    rates: list[float] = list(args.rate)
    args.rate = rates[0]
    cfg = fanout.config_of(args)
    fraction = float(args.fraction_of_max)
    run = start_run("latency", args, cfg.connections)

    async def at_fraction(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        probe_cfg = dataclasses.replace(
            cfg, rate=None, duration_s=args.max_duration, warmup_s=0.5, profile=False
        )
        probe = await fanout.measure_fanout(run, target, loadgen, probe_cfg)
        await loadgen.all("close")
        rate = max(1.0, round(probe["ingest_per_s"] * fraction))
        run.say(f"{target.name}: maximum {probe['ingest_per_s']:,.0f} msg/s; measuring at {rate:,}")
        result = await fanout.measure_fanout(
            run, target, loadgen, dataclasses.replace(cfg, rate=float(rate))
        )
        result["max_rate_probe"] = {
            "ingest_per_s": probe["ingest_per_s"],
            "deliveries_per_s": probe["deliveries_per_s"],
            "latency": probe["latency"],
        }
        result["fraction_of_max"] = fraction
        return result

    async def at_rates(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        """Every rate on one start of the target; the first rate's figures are the row of
        the main table, every rate's under ``by_rate``."""
        by_rate: dict[str, dict[str, Any]] = {}
        for i, rate in enumerate(rates):
            if i:
                await loadgen.all("close")
            run.say(f"{target.name}: {rate:,.0f} msg/s")
            by_rate[_key(rate)] = await fanout.measure_fanout(
                run, target, loadgen, dataclasses.replace(cfg, rate=rate)
            )
        return {**by_rate[_key(rates[0])], "by_rate": by_rate}

    measure = at_fraction if fraction > 0 else at_rates
    results = await each_target(
        run, measure, stored=cfg.kind == "state", frys_env={"FRYS_PING_INTERVAL_S": "0"}
    )
    several = fraction <= 0 and len(rates) > 1
    extra: dict[str, Any] = {}
    if several:
        per_rate = {
            _key(rate): {
                name: result["by_rate"][_key(rate)] if "by_rate" in result else result
                for name, result in results.items()
            }
            for rate in rates
        }
        extra["frys_advantage_by_rate"] = {
            key: report.ratios(rows, COLUMNS) for key, rows in per_rate.items()
        }
        for key, rows in per_rate.items():
            print(f"at {float(key):,.0f} msg/s:")
            print(report.table(rows, COLUMNS))
            print()
    if fraction > 0:
        at = f"{fraction:.0%} of each target's maximum"
    else:
        at = ", ".join(f"{rate:,.0f}" for rate in rates) + " msg/s"
    report.write(
        run.out_dir,
        "latency",
        {
            **{k: v for k, v in vars(cfg).items() if k != "extra"},
            "rates": rates if fraction <= 0 else None,
            "fraction_of_max": fraction,
            "processes": run.processes,
            "targets": list(results),
        },
        run.machine,
        results,
        COLUMNS,
        title=f"latency: {cfg.connections:,} subscribers, {at}, {cfg.payload_size} B payloads",
        latency_key="latency",
        latency_label="end-to-end latency (ms)",
        extra=extra,
    )
    if several:
        print(f"(the table above is at {rates[0]:,.0f} msg/s; every rate is in report.json)")


def _key(rate: float) -> str:
    """A rate as a report key: ``"50"``, ``"2000"``, ``"12.5"``."""
    return f"{rate:g}"
