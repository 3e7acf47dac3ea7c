"""What every client-load scenario shares: common options, core assignment, the load
processes, and running the same measurement against each target in turn."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frys.loadtest import machine, report
from frys.loadtest.loadgen import LoadGen, pin, raise_nofile
from frys.loadtest.procinfo import (
    cpu_seconds,
    rss_kb,
    runqueue_wait_seconds,
    sys_cpu_seconds,
)
from frys.loadtest.targets import Target, TargetUnavailable, make_target, parse_targets


def add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("common")
    g.add_argument(
        "--vs",
        default="",
        help="peers to run against in the same run, comma separated: aiohttp, aiohttp-once, "
        "python-socketio, ws, socket.io, nats-ws, or all",
    )
    g.add_argument("--no-frys", action="store_true", help="run the peers only")
    g.add_argument("--out", type=Path, default=None, help="report folder")
    g.add_argument(
        "--processes",
        type=int,
        default=0,
        help="client load processes (default: one per core not given to the server)",
    )
    g.add_argument("--server-cpus", default="", help="cores for the server, e.g. 0")
    g.add_argument("--load-cpus", default="", help="cores for the load, e.g. 1")
    g.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


@dataclass
class Cores:
    server: list[int]
    load: list[int]


def assign_cores(args: argparse.Namespace) -> Cores:
    """One core for the server, the rest for the load, when there are at least two."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.no_pin or len(usable) < 2:
        return Cores([], [])
    server = [int(c) for c in args.server_cpus.split(",") if c.strip()] or usable[:1]
    load = (
        [int(c) for c in args.load_cpus.split(",") if c.strip()]
        or [c for c in usable if c not in server]
        or usable
    )
    return Cores(server, load)


def default_processes(args: argparse.Namespace, cores: Cores) -> int:
    if args.processes > 0:
        return int(args.processes)
    if cores.load:
        return max(1, len(cores.load))
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class Run:
    """One scenario invocation: targets, cores, load processes, progress output."""

    scenario: str
    args: argparse.Namespace
    cores: Cores
    processes: int
    nofile: int
    quiet: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        if not self.quiet:
            stamp = time.monotonic() - self.started
            print(f"[{stamp:7.1f}s] {text}", file=sys.stderr, flush=True)

    @property
    def out_dir(self) -> Path:
        return Path(self.args.out) if self.args.out else report.default_out(self.scenario)


Measure = Callable[[Run, Target, LoadGen], Awaitable[dict[str, Any]]]


def start_run(scenario: str, args: argparse.Namespace, connections: int) -> Run:
    cores = assign_cores(args)
    pin(cores.load)
    nofile = raise_nofile(connections + 4096)
    run = Run(
        scenario,
        args,
        cores,
        default_processes(args, cores),
        nofile,
        quiet=bool(args.quiet),
        machine=machine.facts(),
    )
    run.machine["cores_assigned"] = {"server": cores.server, "load": cores.load}
    run.machine["open_files_limit"] = nofile
    return run


async def each_target(
    run: Run,
    measure: Measure,
    *,
    stored: bool = False,
    workers: int = 1,
    frys_env: dict[str, str] | None = None,
    nofile_per_process: int = 0,
) -> dict[str, dict[str, Any]]:
    """Start each target in turn, measure it with the same load, stop it."""
    names = parse_targets(run.args.vs, include_frys=not run.args.no_frys)
    results: dict[str, dict[str, Any]] = {}
    loadgen = LoadGen(run.processes, run.cores.load, nofile=nofile_per_process or run.nofile)
    try:
        for name in names:
            target = make_target(
                name,
                run.cores.server,
                run.cores.load,
                stored=stored,
                workers=workers,
                frys_env=frys_env,
            )
            run.say(f"{name}: starting")
            try:
                await target.start()
                run.say(f"{name}: listening on 127.0.0.1:{target.port}")
                results[name] = await measure(run, target, loadgen)
                results[name].setdefault("notes", []).extend(target.notes)
            except TargetUnavailable as exc:
                run.say(f"{name}: skipped: {exc}")
                results[name] = {"error": f"unavailable: {exc}"}
            except Exception as exc:
                run.say(f"{name}: failed: {type(exc).__name__}: {exc}")
                if not run.quiet:
                    traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "log": target.log_text()}
            finally:
                with contextlib.suppress(Exception):
                    await loadgen.all("close")
                await target.stop()
    finally:
        loadgen.close()
    return results


class Usage:
    """CPU seconds and memory of a target's server and helper processes over a window."""

    def __init__(self, target: Target, load_pids: Sequence[int] = ()):
        self.target = target
        self.load_pids = [os.getpid(), *load_pids]
        self.t0 = time.monotonic()
        self.server0 = cpu_seconds(target.server_pids())
        self.wait0 = runqueue_wait_seconds(target.server_pids())
        self.sys0 = sys_cpu_seconds(target.server_pids())
        self.aux0 = cpu_seconds(target.aux_pids())
        self.load0 = cpu_seconds(self.load_pids)

    def read(self) -> dict[str, float]:
        dt = max(1e-9, time.monotonic() - self.t0)
        server = cpu_seconds(self.target.server_pids()) - self.server0
        wait = runqueue_wait_seconds(self.target.server_pids()) - self.wait0
        kernel = sys_cpu_seconds(self.target.server_pids()) - self.sys0
        aux = cpu_seconds(self.target.aux_pids()) - self.aux0
        load = cpu_seconds(self.load_pids) - self.load0
        out: dict[str, Any] = {
            "seconds": round(dt, 3),
            "server_cpu_s": round(server, 3),
            "server_cpu_pct": round(100 * server / dt, 1),
            "server_waiting_for_cpu_pct": round(100 * wait / dt, 1),
            "server_kernel_share_pct": round(100 * kernel / server, 1) if server > 0 else None,
            "server_rss_mb": round(rss_kb(self.target.server_pids()) / 1024, 1),
            "load_cpu_pct": round(100 * load / dt, 1),
        }
        if self.target.aux_pids():
            out["nats_cpu_s"] = round(aux, 3)
            out["nats_cpu_pct"] = round(100 * aux / dt, 1)
        cores = max(1, len(self.target.server_cpus))
        if out["server_cpu_pct"] + out["server_waiting_for_cpu_pct"] < 85 * cores:
            out["bound"] = (
                "the server was idle part of the time: at a fixed rate it kept up; at "
                "maximum rate the figure is bounded by the load or the pacing window"
            )
        elif out["server_waiting_for_cpu_pct"] > 10 * cores:
            out["bound"] = (
                "the server was busy but shared its core with other work: per-CPU-second "
                "figures hold, per-second figures are low"
            )
        return out
