"""``holdup``: how long a large tensor holds up a small event on the same connection.

A gateway process relays a 64 MiB tensor (chunked) to a subscriber that also follows a
collab channel, while another process publishes a small event every few milliseconds with
its send time inside. The subscriber reads without decoding the tensor, so the figure is the
gateway's interleaving: small-event latency during the transfer against the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from frys.client import connect
from frys.client.backend import Backend
from frys.gateway.auth import mint_token
from frys.runtime.cluster import SECRET, LocalCluster


@dataclass
class HoldupReport:
    tensor_mib: float
    chunks: int
    transfer_ms: float
    baseline_p50_ms: float
    baseline_max_ms: float
    during_p50_ms: float
    during_p99_ms: float
    during_max_ms: float
    events_during: int
    holdup_ms: float
    """Worst small-event latency during the transfer minus the baseline median."""
    other_connection_max_ms: float = 0.0
    """The same events on another connection of the gateway (no tensor on it): separates
    the gateway's own delay from the receiving connection's."""


def _tensor_publisher(nats_url: str, prefix: str, mib: int, start: mp.synchronize.Event) -> None:
    async def run() -> None:
        backend = await Backend.connect(nats_url, prefix=prefix, name="tensor-publisher")
        side = int((mib * 1024 * 1024 / 4) ** 0.5)
        array = np.random.default_rng(5).standard_normal((side, side)).astype(np.float32)
        start.wait()
        await backend.publish_tensor("wf:holdup:state", array, keyframe=True)
        await backend.nc.flush()
        await backend.close()

    asyncio.run(run())


def _event_publisher(nats_url: str, prefix: str, seconds: float, interval_s: float) -> None:
    async def run() -> None:
        backend = await Backend.connect(nats_url, prefix=prefix, name="event-publisher")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await backend.publish("wf:holdup:collab", {"t": time.time_ns()})
            await asyncio.sleep(interval_s)
        await backend.close()

    asyncio.run(run())


async def run_holdup(
    mib: int = 64, baseline_s: float = 1.0, interval_ms: float = 2.0
) -> HoldupReport:
    ctx = mp.get_context("spawn")
    prefix = f"h{uuid.uuid4().hex[:8]}"
    async with LocalCluster(1, 1, prefix) as cluster:
        token = mint_token(SECRET, "reader", {"wf:holdup:*": ["subscribe"]})
        client = await connect(cluster.urls[0], token=token, max_frame_bytes=4 * 1024 * 1024)
        tensor_sub = await client.subscribe("wf:holdup:state")
        events = await client.subscribe("wf:holdup:collab")
        other = await connect(cluster.urls[0], token=token)
        other_events = await other.subscribe("wf:holdup:collab")
        other_samples: list[tuple[float, float]] = []

        async def read_other() -> None:
            async for msg in other_events:
                other_samples.append((time.monotonic(), (time.time_ns() - msg.data["t"]) / 1e6))

        start = ctx.Event()
        tensor_proc = ctx.Process(
            target=_tensor_publisher, args=(cluster.nats_url, prefix, mib, start)
        )
        event_proc = ctx.Process(
            target=_event_publisher,
            args=(cluster.nats_url, prefix, baseline_s + 30.0, interval_ms / 1000),
        )
        tensor_proc.start()
        event_proc.start()
        samples: list[tuple[float, float]] = []  # (receive time, latency ms)
        chunks: list[float] = []
        done = asyncio.Event()

        async def read_events() -> None:
            async for msg in events:
                now = time.time_ns()
                samples.append((time.monotonic(), (now - msg.data["t"]) / 1e6))
                if done.is_set():
                    return

        async def read_tensor() -> None:
            expected = None
            async for msg in tensor_sub:
                chunks.append(time.monotonic())
                from frys.shared.tensor import ChunkHeader, read_header

                header = read_header(msg.data)
                expected = header.count if isinstance(header, ChunkHeader) else 1
                if len(chunks) >= expected:
                    return

        reader = asyncio.get_running_loop().create_task(read_events())
        other_reader = asyncio.get_running_loop().create_task(read_other())
        await asyncio.sleep(baseline_s)  # the baseline: events alone
        begun = time.monotonic()
        start.set()
        await asyncio.wait_for(read_tensor(), 120)
        done.set()
        await asyncio.sleep(0.2)
        reader.cancel()
        other_reader.cancel()
        tensor_proc.join(30)
        event_proc.terminate()
        await client.close()
        await other.close()
    first, last = chunks[0], chunks[-1]
    baseline = [lat for t, lat in samples if t < begun]
    during = sorted(lat for t, lat in samples if first <= t <= last)
    base_sorted = sorted(baseline)
    return HoldupReport(
        tensor_mib=mib,
        chunks=len(chunks),
        transfer_ms=round((last - first) * 1000, 1),
        baseline_p50_ms=round(statistics.median(base_sorted), 2),
        baseline_max_ms=round(max(base_sorted), 2),
        during_p50_ms=round(statistics.median(during), 2) if during else 0.0,
        during_p99_ms=round(during[min(len(during) - 1, int(0.99 * len(during)))], 2)
        if during
        else 0.0,
        during_max_ms=round(max(during), 2) if during else 0.0,
        events_during=len(during),
        holdup_ms=round(max(during) - statistics.median(base_sorted), 2) if during else 0.0,
        other_connection_max_ms=round(
            max((lat for t, lat in other_samples if first <= t <= last), default=0.0), 2
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest holdup")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    report = asyncio.run(run_holdup(args.mib, interval_ms=args.interval_ms))
    print(json.dumps(asdict(report), indent=2))
    return 0
