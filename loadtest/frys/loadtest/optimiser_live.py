"""The optimiser live: a real NATS, a gateway, subscribers, the workflow event mix.

Two gateways on one NATS run side by side, the optimiser off (today: plain MessagePack) and
on (learnt dictionaries for readers that declare ``zstd-dict``), each with the same number
of subscribers (Python SDK clients); a backend publishes every event of the workflow mix to
both, back to back at a fixed rate (the order alternates), so a busy moment of the machine
hits both alike. The gateway treats its loopback readers as remote ones
(``optimiser_loopback_local=False``): on one host every reader is on the loopback, and a
same-host reader is one compressing does not serve. Each run first publishes a warm-up
(the optimiser learns its dictionaries then), and measures afterwards:

- **bytes per delivered event**: what the gateway wrote to its sockets (WebSocket framing
  included) over the deliveries it made, from its own counters;
- **delivery latency**: publish (just before the backend's publish) to the subscriber's
  ``next()``, every event, p50/p99/max.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
import uuid
from typing import Any

from aiohttp import web

from frys.client import Client, connect
from frys.client.backend import Backend
from frys.gateway.auth import mint_token
from frys.gateway.config import GatewayConfig
from frys.gateway.node import Gateway
from frys.gateway.server import build_app
from frys.loadtest.optimiser_grid import EventMix
from frys.runtime.nats_process import NatsProcess
from frys.shared.telemetry import telemetry_from_env

SECRET = "optimiser-live-secret-0123456789abcdef"
CHANNELS = 4
GRANTS = {"wf:*:*": ["subscribe", "publish"]}


@dataclasses.dataclass
class LiveResult:
    mode: str
    events: int
    deliveries: int
    bytes_out: int
    latencies_ms: list[float]
    compressed_frames: int

    @property
    def bytes_per_delivery(self) -> float:
        return self.bytes_out / self.deliveries if self.deliveries else 0.0

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(q * len(data)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "events": self.events,
            "deliveries": self.deliveries,
            "bytes_per_delivery": round(self.bytes_per_delivery, 1),
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "max_ms": round(max(self.latencies_ms, default=0.0), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else 0,
            "compressed_frames": self.compressed_frames,
        }


async def _gateway(nats_url: str, prefix: str, optimiser: bool) -> tuple[Gateway, web.AppRunner]:
    config = GatewayConfig(
        nats_url=nats_url,
        host="127.0.0.1",
        port=0,
        gateway_id=f"gw-{uuid.uuid4().hex[:6]}",
        subject_prefix=prefix,
        jwt_secret=SECRET,
        optimiser=optimiser,
        optimiser_loopback_local=False,
        drain_s=2.0,
        reconnect_spread_ms=100,
    ).validate()
    gateway = Gateway(config, telemetry_from_env("frys-gateway", env={}))
    runner = web.AppRunner(build_app(gateway), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway.config = dataclasses.replace(config, port=port, public_url=f"ws://127.0.0.1:{port}/ws")
    await asyncio.wait_for(gateway.started.wait(), 30)
    return gateway, runner


@dataclasses.dataclass
class _Side:
    """One gateway (optimiser off or on), its subscribers, its publisher."""

    optimiser: bool
    gateway: Gateway
    runner: web.AppRunner
    backend: Backend
    clients: list[Client]
    received: list[dict[int, float]]
    readers: list[asyncio.Task[None]]
    measured: dict[int, float] = dataclasses.field(default_factory=dict)
    bytes_before: int = 0
    deliveries_before: int = 0
    compressed_before: int = 0

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await self.backend.close()
        await self.gateway.drain()
        await self.runner.cleanup()

    def mark(self) -> None:
        metrics = self.gateway.metrics
        self.bytes_before, self.deliveries_before = metrics.bytes_out, metrics.deliveries
        self.compressed_before = sum(c.compressed_frames for c in self.clients)

    def done(self) -> bool:
        return all(all(seq in seen for seq in self.measured) for seen in self.received)

    def result(self) -> LiveResult:
        metrics = self.gateway.metrics
        latencies = [
            (seen[seq] - t0) * 1e3
            for seen in self.received
            for seq, t0 in self.measured.items()
            if seq in seen
        ]
        return LiveResult(
            "optimiser on" if self.optimiser else "optimiser off (plain)",
            len(self.measured),
            metrics.deliveries - self.deliveries_before,
            metrics.bytes_out - self.bytes_before,
            latencies,
            sum(c.compressed_frames for c in self.clients) - self.compressed_before,
        )


async def _side(nats: NatsProcess, optimiser: bool, subscribers: int) -> _Side:
    prefix = f"live{uuid.uuid4().hex[:8]}"
    gateway, runner = await _gateway(nats.url, prefix, optimiser)
    url = gateway.config.advertised_url
    clients: list[Client] = []
    received: list[dict[int, float]] = []
    readers: list[asyncio.Task[None]] = []
    for i in range(subscribers):
        tok = mint_token(SECRET, f"reader-{i}", GRANTS, ttl_s=3600)
        client = await connect(url, token=tok)
        clients.append(client)
        seen: dict[int, float] = {}
        received.append(seen)
        for c in range(CHANNELS):
            sub = await client.subscribe(f"wf:live{c}:events")
            readers.append(asyncio.get_running_loop().create_task(_read(sub, seen)))
    backend = await Backend.connect(nats.url, prefix=prefix, name="engine")
    return _Side(optimiser, gateway, runner, backend, clients, received, readers)


async def _round(
    nats: NatsProcess, subscribers: int, warmup: int, events: int, rate: float, flip: bool
) -> tuple[LiveResult, LiveResult]:
    """Both gateways at once, each event published to both back to back (in an order that
    alternates), so a busy moment of the machine hits both alike."""
    off = await _side(nats, False, subscribers)
    on = await _side(nats, True, subscribers)
    try:
        mix = EventMix(seed=7)
        await _publish([off, on], mix, warmup, rate * 4, measure=False, flip=flip)
        await asyncio.sleep(1.0)  # the dictionaries of the warm-up are learnt meanwhile
        off.mark()
        on.mark()
        await _publish([off, on], mix, events, rate, measure=True, flip=flip)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (off.done() and on.done()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return off.result(), on.result()
    finally:
        await off.close()
        await on.close()


async def _read(sub: Any, seen: dict[int, float]) -> None:
    while True:
        message = await sub.next()
        if message.seq is not None:
            seen[message.seq] = time.perf_counter()


async def _publish(
    sides: list[_Side], mix: EventMix, count: int, rate: float, measure: bool, flip: bool
) -> None:
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        _, data = mix.next()
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        order = sides if (i % 2 == 0) != flip else sides[::-1]
        for side in order:
            t0 = time.perf_counter()
            seq = await side.backend.publish(f"wf:live{i % CHANNELS}:events", data)
            assert seq is not None
            if measure:
                side.measured[seq] = t0


async def _live(seconds: float, subscribers: int, rate: float, rounds: int) -> dict[str, Any]:
    events = max(100, int(seconds * rate))
    warmup = 3000
    nats = NatsProcess(name=f"frys-live-{uuid.uuid4().hex[:6]}").start()
    runs: list[LiveResult] = []
    try:
        for r in range(rounds):
            off_run, on_run = await _round(nats, subscribers, warmup, events, rate, r % 2 == 1)
            runs += [off_run, on_run]
    finally:
        nats.close()
    off = [r for r in runs[0::2]]
    on = [r for r in runs[1::2]]

    def median(results: list[LiveResult], q: float) -> float:
        return statistics.median(r.percentile(q) for r in results)

    off_bytes = statistics.median(r.bytes_per_delivery for r in off)
    on_bytes = statistics.median(r.bytes_per_delivery for r in on)
    return {
        "subscribers": subscribers,
        "rate_per_s": rate,
        "rounds": rounds,
        "runs": [r.as_dict() for r in runs],
        "bytes_share": on_bytes / off_bytes if off_bytes else None,
        "p50_off_ms": median(off, 0.5),
        "p50_on_ms": median(on, 0.5),
        "p99_off_ms": median(off, 0.99),
        "p99_on_ms": median(on, 0.99),
        "p99_delta_ms": median(on, 0.99) - median(off, 0.99),
    }


def run_live(
    seconds: float = 8.0, subscribers: int = 8, rate: float = 500.0, rounds: int = 3
) -> dict[str, Any]:
    """``rounds`` × (optimiser off, then on); a JSON-ready result."""
    return asyncio.run(_live(seconds, subscribers, rate, rounds))


def format_live(result: dict[str, Any]) -> str:
    header = ("mode", "events", "deliveries", "bytes/delivery", "p50 ms", "p99 ms", "max ms",
              "compressed")  # fmt: skip
    rows = [
        (
            r["mode"],
            str(r["events"]),
            str(r["deliveries"]),
            f"{r['bytes_per_delivery']:.1f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['max_ms']:.3f}",
            str(r["compressed_frames"]),
        )
        for r in result["runs"]
    ]
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, tuple("-" * w for w in widths), *rows]]  # fmt: skip
    share = result["bytes_share"]
    lines.append("")
    lines.append(
        f"{result['subscribers']} subscribers × {CHANNELS} events channels, "
        f"{result['rate_per_s']:.0f} events/s to each gateway, {result['rounds']} rounds of both "
        f"gateways at once (each event to both, back to back); medians "
        f"over the rounds: bytes per delivered event with the optimiser {100 * share:.1f} % "
        f"of plain; p50 {result['p50_off_ms']:.3f} → {result['p50_on_ms']:.3f} ms, p99 "
        f"{result['p99_off_ms']:.3f} → {result['p99_on_ms']:.3f} ms "
        f"({result['p99_delta_ms']:+.3f} ms). Latency: publish to the subscriber's next(), "
        f"gateway and subscribers in one process on this machine."
    )
    return "\n".join(lines)
