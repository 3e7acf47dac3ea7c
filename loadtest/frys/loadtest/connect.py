"""``frys-ws loadtest connect``: connection storms and connect+auth latency.

*Sequential*: one client opens ``--sequential`` connections one at a time and times each
from TCP connect through the WebSocket handshake to Frys's ``connected`` (``connect`` with
a JWT → ``connected``; the peers' equivalent hello). *Storm*: every load process opens its
share of ``--storm`` connections at once (``--concurrency`` in flight per process) and the
figure is connections per second from the first attempt to the last ``connected``.

    frys-ws loadtest connect --storm 5000 --sequential 500 --vs ws,socket.io
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from frys.loadtest import report
from frys.loadtest.fanout import start_profiler, summarize_profile
from frys.loadtest.loadgen import LoadGen, OpenSpec, merge_hist, percentiles, source_hosts, split
from frys.loadtest.runner import Run, Usage, add_common, each_target, start_run
from frys.loadtest.targets import FrysTarget, Target
from frys.runtime.eventloop import install_uvloop

COLUMNS = [
    report.Column("storm.connections_per_s", "storm conn/s"),
    report.Column("sequential.p50_ms", "1-by-1 p50 ms", False, 3),
    report.Column("sequential.p99_ms", "1-by-1 p99 ms", False, 3),
    report.Column("storm.latency.p50_ms", "storm p50 ms", False, 1),
    report.Column("storm.latency.p99_ms", "storm p99 ms", False, 1),
    report.Column("storm.usage.server_cpu_pct", "server cpu %", False, 0),
    report.Column("storm.connections_per_server_cpu_s", "conn/cpu-s"),
    report.Column("storm.failed", "failed", False),
]


async def measure_connect(
    run: Run, target: Target, loadgen: LoadGen, args: argparse.Namespace
) -> dict[str, Any]:
    name = target.name
    ep = target.endpoint
    out: dict[str, Any] = {}
    if args.sequential > 0:
        run.say(f"{name}: {args.sequential} connections one at a time")
        spec = OpenSpec(ep, ("",) * args.sequential, count=False, timeout_s=10.0)
        res = await loadgen.each(
            "sequential", [(spec,)] + [(OpenSpec(ep, ()),)] * (loadgen.size - 1)
        )
        first = res[0]
        out["sequential"] = {
            "connections": first["ok"],
            "failed": first["failed"],
            "errors": first["errors"],
            **percentiles(merge_hist([first["setup_hist"]])),
        }
        await loadgen.all("close")
        await asyncio.sleep(0.5)
    if args.storm > 0:
        run.say(f"{name}: storm of {args.storm} connections")
        parts = split(("",) * args.storm, loadgen.size)
        sources = source_hosts(args.storm, per_host=10_000)
        usage = Usage(target, loadgen.pids)
        profile_path = run.out_dir / f"{name}-connect-profile.txt"
        profiler = None
        if args.profile and isinstance(target, FrysTarget):
            run.out_dir.mkdir(parents=True, exist_ok=True)
            profiler = start_profiler(target, 120, profile_path)
        res = await loadgen.open_idle(ep, parts, sources, args.concurrency)
        used = usage.read()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.to_thread(profiler.communicate, None, 60)
        ok = sum(r["ok"] for r in res)
        seconds = (max(r["t1_ns"] for r in res) - min(r["t0_ns"] for r in res)) / 1e9
        errors: dict[str, int] = {}
        for r in res:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        out["storm"] = {
            "connections": ok,
            "failed": sum(r["failed"] for r in res),
            "errors": errors,
            "seconds": round(seconds, 3),
            "connections_per_s": round(ok / seconds, 1) if seconds > 0 else None,
            "connections_per_server_cpu_s": round(ok / used["server_cpu_s"], 1)
            if used["server_cpu_s"] > 0
            else None,
            "latency": percentiles(merge_hist([r["setup_hist"] for r in res])),
            "usage": used,
        }
        if profile_path.exists():
            out["storm"]["profile"] = {
                "file": profile_path.name,
                **summarize_profile(profile_path),
            }
        snaps = await loadgen.all("snap")
        out["storm"]["still_open"] = sum(s["open"] for s in snaps)
        m = await target.metrics()
        if m:
            out["storm"]["server_connections_gauge"] = m.get("frys_connections")
        await loadgen.all("close")
    storm = out.get("storm", {})
    seq = out.get("sequential", {})
    run.say(
        f"{name}: storm {storm.get('connections_per_s', '-')} conn/s, "
        f"one-by-one p99 {seq.get('p99_ms', '-')} ms"
    )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="frys-ws loadtest connect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storm", type=int, default=5000, help="connections opened at once")
    p.add_argument("--sequential", type=int, default=500, help="connections one at a time")
    p.add_argument("--concurrency", type=int, default=500, help="storm attempts in flight")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway during the storm")
    add_common(p)
    args = p.parse_args(argv)
    install_uvloop()
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    run = start_run("connect", args, max(args.storm, args.sequential))

    async def measure(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        return await measure_connect(run, target, loadgen, args)

    results = await each_target(run, measure)
    report.write(
        run.out_dir,
        "connect",
        {
            "storm": args.storm,
            "sequential": args.sequential,
            "concurrency": args.concurrency,
            "processes": run.processes,
            "targets": list(results),
        },
        run.machine,
        results,
        COLUMNS,
        title=f"connect: storm of {args.storm:,}, {args.sequential:,} one at a time",
        latency_key="sequential",
        latency_label="connect+auth, one at a time (ms)",
    )
