"""``frys-ws loadtest idle``: memory per idle connection and event-loop stalls while ramping.

Opens ``--connections`` authenticated connections (Frys: WebSocket + ``connect`` →
``connected``; optionally a subscription each) in ``--steps`` steps, reading the server's
resident memory (VmRSS of every server process) before, after each step and at the end,
while a probe client in a process of its own pings the server every 10 ms and keeps the
longest round trip: a stall of the server's event loop (a long garbage collection, say)
shows up there. Past ~25,000 connections the load spreads over several 127.0.0.x source
addresses; ``--workers`` runs that many Frys gateway processes on one port.

    frys-ws loadtest idle --connections 10000 --vs ws
    frys-ws loadtest idle --connections 100000 --workers 4 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from frys.loadtest import report
from frys.loadtest.loadgen import LoadGen, OpenSpec, merge_hist, percentiles, source_hosts, split
from frys.loadtest.procinfo import rss_kb
from frys.loadtest.runner import Run, Usage, add_common, each_target, start_run
from frys.loadtest.targets import Target
from frys.runtime.eventloop import install_uvloop

COLUMNS = [
    report.Column("bytes_per_connection", "bytes/conn", False),
    report.Column("connections", "connections"),
    report.Column("rss_before_mb", "rss before MB", False, 1),
    report.Column("rss_after_mb", "rss after MB", False, 1),
    report.Column("probe.max_ms", "max stall ms", False, 1),
    report.Column("probe.p99_ms", "probe p99 ms", False, 2),
    report.Column("ramp_connections_per_s", "ramp conn/s"),
    report.Column("failed", "failed", False),
]


async def measure_idle(
    run: Run, target: Target, loadgen: LoadGen, probe: LoadGen, args: argparse.Namespace
) -> dict[str, Any]:
    name = target.name
    ep = target.endpoint
    channel = "wf:idle:collab" if args.subscribe else ""
    # Warm the server's code paths and allocators with a few connections first.
    warm = split((channel,) * min(200, args.connections), loadgen.size)
    await loadgen.each("open", [(OpenSpec(ep, part, count=False),) for part in warm])
    await loadgen.all("close")
    await asyncio.sleep(1.0)
    pids = target.server_pids()
    rss0 = rss_kb(pids)
    await probe.all("probe_start", OpenSpec(ep, ()), 0.010)
    sources = source_hosts(args.connections)
    total = args.connections
    steps = max(1, args.steps)
    done = failed = 0
    curve: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    usage = Usage(target, loadgen.pids)
    t0 = time.monotonic()
    for step in range(steps):
        n = total * (step + 1) // steps - done
        chans = split((channel,) * n, loadgen.size)
        res = await loadgen.open_idle(ep, chans, sources, args.concurrency)
        done += n
        failed += sum(r["failed"] for r in res)
        for r in res:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        rss = rss_kb(target.server_pids())
        curve.append({"connections": done - failed, "rss_mb": round(rss / 1024, 1)})
        run.say(f"{name}: {done - failed:,} connections open, server RSS {rss / 1024:,.0f} MB")
    ramp_s = time.monotonic() - t0
    used = usage.read()
    stall = await probe.all("probe_stop")
    await asyncio.sleep(args.settle)
    rss1 = rss_kb(target.server_pids())
    snaps = await loadgen.all("snap")
    still_open = sum(s["open"] for s in snaps)
    opened = done - failed
    m = await target.metrics()
    hist = merge_hist([s["hist"] for s in stall])
    out: dict[str, Any] = {
        "connections": opened,
        "failed": failed,
        "errors": errors,
        "still_open_after_settle": still_open,
        "server_processes": len(target.server_pids()),
        "rss_before_mb": round(rss0 / 1024, 1),
        "rss_after_mb": round(rss1 / 1024, 1),
        "bytes_per_connection": round((rss1 - rss0) * 1024 / opened) if opened else None,
        "ramp_seconds": round(ramp_s, 2),
        "ramp_connections_per_s": round(opened / ramp_s, 1) if ramp_s > 0 else None,
        "ramp_usage": used,
        "rss_curve": curve,
        "probe": {
            **percentiles(hist),
            "max_ms": stall[0]["max_us"] / 1000,
            "errors": stall[0]["errors"],
            "interval_ms": 10,
        },
        "subscribed": bool(args.subscribe),
    }
    if m:
        out["server_connections_gauge"] = m.get("frys_connections")
    run.say(
        f"{name}: {out['bytes_per_connection']} bytes/connection, "
        f"longest stall {out['probe']['max_ms']:.1f} ms"
    )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="frys-ws loadtest idle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=5, help="ramp steps (RSS read after each)")
    p.add_argument("--concurrency", type=int, default=256, help="connects in flight")
    p.add_argument("--subscribe", action="store_true", help="each connection subscribes too")
    p.add_argument("--workers", type=int, default=1, help="Frys gateway worker processes")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before the last RSS read")
    add_common(p)
    args = p.parse_args(argv)
    install_uvloop()
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    run = start_run("idle", args, args.connections)
    per_process = args.connections // max(1, run.processes) + 1024
    if run.nofile and per_process > run.nofile:
        need = -(-args.connections // max(1, run.nofile - 1024))
        raise SystemExit(
            f"{args.connections:,} connections need {per_process:,} open files per load "
            f"process but the limit here is {run.nofile:,}: use --processes {need} or more"
        )
    if run.nofile and args.connections // max(1, args.workers) > 0.8 * run.nofile:
        run.say(
            f"warning: {args.connections:,} connections over {args.workers} Frys worker(s) "
            f"come close to the {run.nofile:,} open-files limit of each: raise --workers"
        )
    probe = LoadGen(1, run.cores.load, nice=-5)

    async def measure(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        return await measure_idle(run, target, loadgen, probe, args)

    try:
        results = await each_target(
            run, measure, workers=args.workers, nofile_per_process=per_process
        )
    finally:
        probe.close()
    report.write(
        run.out_dir,
        "idle",
        {
            "connections": args.connections,
            "steps": args.steps,
            "subscribe": args.subscribe,
            "workers": args.workers,
            "processes": run.processes,
            "targets": list(results),
        },
        run.machine,
        results,
        COLUMNS,
        title=f"idle: {args.connections:,} connections, server memory and loop stalls",
        latency_key="probe",
        latency_label="probe round trip every 10 ms (ms)",
    )
