"""``frys-ws loadtest latency``: end-to-end latency p50/p99/p99.9 at a fixed rate well below
saturation (default 1,000 msg/s to 1,000 subscribers), the same measurement as
``fanout --rate R``.

``--fraction-of-max F`` first finds each target's maximum rate with a short ``fanout`` at
maximum, then measures latency at F times that rate (for instance 0.5: half load).

    frys-ws loadtest latency --rate 1000 --subscribers 1000 --vs ws
    frys-ws loadtest latency --fraction-of-max 0.5
"""

from __future__ import annotations

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


def main(argv: list[str]) -> int:
    parser = fanout.build_parser("frys-ws loadtest latency")
    parser.set_defaults(rate=1000.0)
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
    cfg = fanout.config_of(args)
    fraction = float(args.fraction_of_max)
    run = start_run("latency", args, cfg.connections)

    async def measure(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        if fraction <= 0:
            return await fanout.measure_fanout(run, target, loadgen, cfg)
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

    results = await each_target(
        run, measure, stored=cfg.kind == "state", frys_env={"FRYS_PING_INTERVAL_S": "0"}
    )
    at = f"{fraction:.0%} of each target's maximum" if fraction > 0 else f"{cfg.rate:,.0f} msg/s"
    report.write(
        run.out_dir,
        "latency",
        {
            **{k: v for k, v in vars(cfg).items() if k != "extra"},
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
    )
