"""``frys-ws loadtest fanout``: deliveries per second and end-to-end latency of a broadcast.

N subscribers on one channel (or K channels × S subscribers each), a publisher at a fixed
rate (``--rate``) or as fast as the server delivers (default: a pacer subscriber bounds the
messages in flight to ``--window``), 100-byte payloads with the send time inside. Reports
deliveries/s counted by the clients, latency p50/p99/p99.9 from HdrHistograms, the server's
CPU and memory, and for Frys the gateway's own counters (frames per write, messages in).

    frys-ws loadtest fanout --subscribers 1000 --duration 5 --vs aiohttp,ws
    frys-ws loadtest fanout --rate 1000                      # latency at a fixed rate
    frys-ws loadtest fanout --channels 10000 --subscribers-per-channel 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frys.loadtest import report
from frys.loadtest.loadgen import (
    LoadGen,
    OpenSpec,
    merge_hist,
    percentiles,
    source_hosts,
    split,
)
from frys.loadtest.publisher import PAYLOAD_SIZE, Pacer, PublishStats, run_publisher
from frys.loadtest.runner import Run, Usage, add_common, each_target, start_run
from frys.loadtest.targets import FrysTarget, Target
from frys.loadtest.wsraw import RawWs, open_ws
from frys.runtime.eventloop import install_uvloop

COLUMNS = [
    report.Column("deliveries_per_s", "deliveries/s"),
    report.Column("ingest_per_s", "msgs in/s"),
    report.Column("latency.p50_ms", "p50 ms", False, 2),
    report.Column("latency.p99_ms", "p99 ms", False, 2),
    report.Column("latency.p99_9_ms", "p99.9 ms", False, 2),
    report.Column("usage.server_cpu_pct", "server cpu %", False, 0),
    report.Column("usage.server_waiting_for_cpu_pct", "waited %", False, 0),
    report.Column("deliveries_per_server_cpu_s", "deliveries/cpu-s"),
    report.Column("frames_per_write", "frames/write", True, 1),
    report.Column("lost", "lost", False),
    report.Column("bytes_check.equal", "bytes = written", False),
]


@dataclass
class FanoutConfig:
    subscribers: int = 1000
    channels: int = 1
    per_channel: int = 0
    rate: float | None = None
    duration_s: float = 5.0
    warmup_s: float = 1.0
    window: int = 0
    payload_size: int = PAYLOAD_SIZE
    kind: str = "collab"
    concurrency: int = 256
    profile: bool = False
    drain_timeout_s: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subs_per_channel(self) -> int:
        if self.per_channel > 0:
            return self.per_channel
        return max(1, self.subscribers // max(1, self.channels))

    @property
    def connections(self) -> int:
        return self.channels * self.subs_per_channel

    @property
    def in_flight(self) -> int:
        return self.window or max(100, 2 * self.channels)


BYTES_OUT = "frys_sent_bytes_total"
"""The gateway's ``bytes_out`` counter: delivery bytes written, frame headers included."""


def channel_names(count: int, kind: str) -> list[str]:
    """``wf:bench:KIND`` for one channel; fixed-width ids for many (same wire size)."""
    if count == 1:
        return [f"wf:bench:{kind}"]
    width = len(str(count - 1))
    return [f"wf:c{i:0{width}d}:{kind}" for i in range(count)]


def assignments(channels: list[str], per_channel: int) -> list[str]:
    """The channel of every load connection: ``per_channel`` per channel, less the pacer's
    place on the first channel."""
    out: list[str] = []
    for i, ch in enumerate(channels):
        out += [ch] * (per_channel - (1 if i == 0 else 0))
    return out


async def _snap(loadgen: LoadGen, pacer: RawWs) -> tuple[int, int]:
    snaps = await loadgen.all("snap")
    return sum(s["messages"] for s in snaps) + pacer.messages, time.monotonic_ns()


async def _open_pacer(target: Target, channel: str, cfg: FanoutConfig) -> RawWs:
    ep = target.endpoint
    d = ep.dialect
    ws = await open_ws(ep.host, ep.port, d.path, d.subprotocol)
    d.prepare(ws)
    await d.hello(ws)
    await d.subscribe(ws, channel)
    ws.start_counting(d.counting(channel, cfg.payload_size), None)
    return ws


def start_profiler(target: Target, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy over the gateway for the measurement window (collapsed stacks)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pids = target.server_pids()
    if not pids or not Path(pyspy).exists():
        target.notes.append("profile skipped: py-spy not installed (pip install py-spy)")
        return None
    return subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(pids[-1]),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _frame_name(frame: str, keep_line: bool) -> str:
    """``func (path/file.py:123)`` → ``func (path/file.py)``, or with the line kept."""
    if " (" not in frame or keep_line:
        return frame
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rstrip(')')})"


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function (and self per line) from py-spy's
    collapsed stacks. Time in C code (socket writes, for one) counts as the calling
    Python line's self time."""
    self_n: Counter[str] = Counter()
    line_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_n[_frame_name(frames[-1], False)] += n
        line_n[_frame_name(frames[-1], True)] += n
        for fr in {_frame_name(x, False) for x in frames}:
            incl_n[fr] += n
    if total == 0:
        return {"samples": 0}

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)]

    return {
        "samples": total,
        "self_pct": share(self_n),
        "self_lines_pct": share(line_n),
        "inclusive_pct": share(incl_n),
    }


async def measure_fanout(
    run: Run, target: Target, loadgen: LoadGen, cfg: FanoutConfig
) -> dict[str, Any]:
    name = target.name
    channels = channel_names(cfg.channels, cfg.kind)
    per = cfg.subs_per_channel
    conns = assignments(channels, per)
    parts = split(conns, loadgen.size)
    sources = source_hosts(len(conns))
    t0 = time.monotonic()
    run.say(
        f"{name}: opening {len(conns) + 1} subscriber connections on {len(channels)} channel(s)"
    )
    opened = await loadgen.each(
        "open",
        [
            (
                OpenSpec(
                    target.endpoint,
                    part,
                    cfg.payload_size,
                    True,
                    sources,
                    max(1, cfg.concurrency // loadgen.size),
                ),
            )
            for part in parts
        ],
    )
    failed = sum(o["failed"] for o in opened)
    if failed:
        errors = [e for o in opened for e in o["errors"]]
        raise RuntimeError(f"{failed} subscribers failed to connect: {errors[:3]}")
    pacer_ws = await _open_pacer(target, channels[0], cfg)
    setup_s = time.monotonic() - t0
    run.say(f"{name}: {len(conns) + 1} subscribed in {setup_s:.1f}s")
    pacer = Pacer(pacer_ws, len(channels), asyncio.Event())
    pacer_ws.waker = pacer.event
    pub = await target.publisher()
    frys = target if isinstance(target, FrysTarget) else None
    m0 = await frys.metrics() if frys else {}
    stats = PublishStats(0, 0.0, {})
    stop = asyncio.Event()
    total_s = cfg.warmup_s + cfg.duration_s
    publishing = asyncio.get_running_loop().create_task(
        run_publisher(
            pub,
            channels,
            rate=cfg.rate,
            duration_s=total_s + 30,
            pacer=pacer,
            window=cfg.in_flight,
            payload_size=cfg.payload_size,
            stop=stop,
            stats=stats,
        )
    )
    profiler: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.sleep(cfg.warmup_s)
        if publishing.done():
            publishing.result()
        await loadgen.all("reset_hist")
        n_a, t_a = await _snap(loadgen, pacer_ws)
        sent_a = stats.sent
        ma = await frys.metrics() if frys else {}
        usage = Usage(target, loadgen.pids)
        profile_path = run.out_dir / f"{name}-profile.txt"
        if cfg.profile and frys is not None:
            run.out_dir.mkdir(parents=True, exist_ok=True)
            profiler = start_profiler(target, cfg.duration_s, profile_path)
        last_n, last_t = n_a, t_a
        end = time.monotonic() + cfg.duration_s
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            if publishing.done():
                publishing.result()
            n, t = await _snap(loadgen, pacer_ws)
            rate = (n - last_n) / max(1e-9, (t - last_t) / 1e9)
            run.say(f"{name}: {rate:,.0f} deliveries/s, {stats.sent:,} published")
            last_n, last_t = n, t
        n_b, t_b = last_n, last_t
        sent_b = stats.sent
        used = usage.read()
        mb = await frys.metrics() if frys else {}
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await publishing
        await pub.close()
    published = stats.sent
    expected = sum(n * per for n in stats.per_channel.values())
    deadline = time.monotonic() + cfg.drain_timeout_s
    delivered, prev, stable_since = 0, -1, time.monotonic()
    while time.monotonic() < deadline:
        delivered, _ = await _snap(loadgen, pacer_ws)
        if delivered >= expected:
            break
        if delivered != prev:
            prev, stable_since = delivered, time.monotonic()
        elif time.monotonic() - stable_since > 2.0:
            break
        await asyncio.sleep(0.1)
    results = await loadgen.all("result")
    bytes_received = sum(r["bytes"] for r in results) + pacer_ws.nbytes
    hist = merge_hist([r["hist"] for r in results])
    window_s = (t_b - t_a) / 1e9
    out: dict[str, Any] = {
        "connections": len(conns) + 1,
        "channels": len(channels),
        "subscribers_per_channel": per,
        "rate_target": cfg.rate if cfg.rate is not None else "max",
        "in_flight_window": None if cfg.rate is not None else cfg.in_flight,
        "setup_s": round(setup_s, 2),
        "window_s": round(window_s, 3),
        "published": published,
        "publish_rate": round(stats.rate, 1),
        "ingest_per_s": round((sent_b - sent_a) / window_s, 1),
        "deliveries_per_s": round((n_b - n_a) / window_s, 1),
        "expected_deliveries": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "per_connection_min": min([r["per_conn_min"] for r in results] + [pacer_ws.messages]),
        "per_connection_max": max([r["per_conn_max"] for r in results] + [pacer_ws.messages]),
        "misaligned_connections": sum(r["misaligned"] for r in results),
        "bytes_received_by_clients": bytes_received,
        "latency": percentiles(hist),
        "usage": used,
        "deliveries_per_server_cpu_s": round((n_b - n_a) / max(1e-9, used["server_cpu_s"])),
    }
    closed = [c for r in results for c in r["closed"]]
    if closed or pacer_ws.closed:
        out["closed_connections"] = closed[:5] + (
            [pacer_ws.close_reason] if pacer_ws.closed else []
        )
    pacer_ws.close()
    if frys is not None:
        mend = await frys.metrics()
        d_deliv = mb.get("frys_deliveries_total", 0) - ma.get("frys_deliveries_total", 0)
        d_writes = mb.get("frys_writes_total", 0) - ma.get("frys_writes_total", 0)
        d_in = mb.get("frys_messages_in_total", 0) - ma.get("frys_messages_in_total", 0)
        d_flush = mb.get("frys_flushes_total", 0) - ma.get("frys_flushes_total", 0)
        out["frames_per_write"] = round(d_deliv / d_writes, 2) if d_writes else None
        out["gateway"] = {
            "deliveries_per_s": round(d_deliv / window_s, 1),
            "messages_in_per_s": round(d_in / window_s, 1),
            "writes_per_s": round(d_writes / window_s, 1),
            "flushes_per_s": round(d_flush / window_s, 1),
            "messages_per_flush": round(d_in / d_flush, 2) if d_flush else None,
            "deliveries_counted_by_gateway": int(
                mend.get("frys_deliveries_total", 0) - m0.get("frys_deliveries_total", 0)
            ),
            "slow_disconnects": int(mend.get("frys_slow_disconnects_total", 0)),
        }
        # The clients' byte count against what the gateway wrote (frame headers included):
        # a delivery the gateway counted but never wrote, or wrote twice, shows up here,
        # where a count of deliveries computed the same way on both sides would agree.
        written = int(mend.get(BYTES_OUT, 0) - m0.get(BYTES_OUT, 0))
        out["bytes_check"] = {
            "written_by_gateway": written,
            "received_by_clients": bytes_received,
            "equal": written == bytes_received,
        }
        if profiler is not None:
            _out, err = await asyncio.to_thread(profiler.communicate, None, cfg.duration_s + 30)
            if profile_path.exists():
                out["profile"] = {"file": profile_path.name, **summarize_profile(profile_path)}
            else:
                out["profile"] = {"error": err.decode(errors="replace")[-500:]}
    run.say(
        f"{name}: {out['deliveries_per_s']:,.0f} deliveries/s, "
        f"p99 {out['latency'].get('p99_ms', '-')} ms, lost {out['lost']}"
    )
    return out


def build_parser(
    prog: str = "frys-ws loadtest fanout", rate_type: Callable[[str], Any] = float
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--subscribers", type=int, default=1000, help="subscribers in all")
    p.add_argument("--channels", type=int, default=1, help="channels (publisher cycles them)")
    p.add_argument(
        "--subscribers-per-channel",
        type=int,
        default=0,
        help="subscribers on each channel (default: subscribers / channels)",
    )
    p.add_argument(
        "--rate",
        type=rate_type,
        default=None,
        help="messages/s (default: maximum)"
        + (
            "; several, comma separated, are measured one after the other"
            if rate_type is not float
            else ""
        ),
    )
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument(
        "--window", type=int, default=0, help="messages in flight at maximum rate (default auto)"
    )
    p.add_argument("--payload-bytes", type=int, default=PAYLOAD_SIZE)
    p.add_argument(
        "--kind",
        choices=("collab", "state"),
        default="collab",
        help="Frys channel kind: collab (not stored) or state (stored, sequenced)",
    )
    p.add_argument("--concurrency", type=int, default=256, help="connections opened at once")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway while measuring")
    add_common(p)
    return p


def config_of(args: argparse.Namespace) -> FanoutConfig:
    return FanoutConfig(
        subscribers=args.subscribers,
        channels=args.channels,
        per_channel=args.subscribers_per_channel,
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        window=args.window,
        payload_size=args.payload_bytes,
        kind=args.kind,
        concurrency=args.concurrency,
        profile=args.profile,
    )


async def run_fanout(scenario: str, args: argparse.Namespace, cfg: FanoutConfig) -> dict[str, Any]:
    run = start_run(scenario, args, cfg.connections)

    async def measure(run: Run, target: Target, loadgen: LoadGen) -> dict[str, Any]:
        return await measure_fanout(run, target, loadgen, cfg)

    results = await each_target(
        run, measure, stored=cfg.kind == "state", frys_env={"FRYS_PING_INTERVAL_S": "0"}
    )
    what = "maximum rate" if cfg.rate is None else f"{cfg.rate:,.0f} msg/s"
    title = (
        f"{scenario}: {cfg.connections:,} subscribers on {cfg.channels:,} channel(s), "
        f"{cfg.payload_size} B payloads, {what}"
    )
    params = {
        **{k: v for k, v in vars(cfg).items() if k != "extra"},
        "connections": cfg.connections,
        "window_in_flight": cfg.in_flight,
        "processes": run.processes,
        "targets": list(results),
        **cfg.extra,
    }
    return report.write(
        run.out_dir,
        scenario,
        params,
        run.machine,
        results,
        COLUMNS,
        title=title,
        latency_key="latency",
        latency_label="end-to-end latency (ms)",
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    install_uvloop()
    asyncio.run(run_fanout("fanout", args, config_of(args)))
    return 0
