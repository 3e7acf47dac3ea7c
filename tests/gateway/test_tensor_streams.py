"""Tensors end to end: publisher → NATS → gateway relay → clients, fast and slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from frys.client import Client
from frys.client.backend import Backend
from frys.client.errors import BadRequest
from frys.runtime.nats_process import NatsProcess
from frys.shared.tensor import TensorEncoder
from tests.conftest import GatewayFactory, RunningGateway, pause_reading, token

ClientFactory = Callable[..., Awaitable[Client]]


def ticks(n: int, shape: tuple[int, ...] = (256, 256), seed: int = 7) -> list[npt.NDArray[Any]]:
    """A float32 state where 5 % of elements change per tick."""
    rng = np.random.default_rng(seed)
    state = rng.standard_normal(shape).astype(np.float32)
    out = [state.copy()]
    for _ in range(n - 1):
        mask = rng.random(shape) < 0.05
        state[mask] += rng.normal(0, 0.1, int(mask.sum())).astype(np.float32)
        out.append(state.copy())
    return out


def same_bits(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


async def latest(
    stream: Any,
    expected: npt.NDArray[Any],
    timeout: float = 15.0,
    history: list[bytes] | None = None,
) -> int:
    """Read until the stream holds ``expected``; returns how many arrays were read."""
    deadline = time.monotonic() + timeout
    count = 0
    while True:
        _, array = await stream.next(max(0.1, deadline - time.monotonic()))
        count += 1
        if history is not None:
            history.append(array.tobytes())
        if same_bits(array, expected):
            return count


def in_publish_order(seen: list[bytes], frames: list[npt.NDArray[Any]]) -> bool:
    """Every array seen is one that was published, never an older one after a newer one."""
    index = {f.tobytes(): i for i, f in enumerate(frames)}
    order = [index.get(b, -1) for b in seen]
    return -1 not in order and order == sorted(order)


async def test_fast_and_slow_subscribers_end_with_the_exact_latest_array(
    gateways: GatewayFactory, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    gw = await gateways(queue_bytes=256 * 1024)
    fast = await clients(gw.url, token=token("fast"))
    slow = await clients(gw.url, token=token("slow"))
    fast_stream = await fast.tensors("wf:tn:state").start()
    slow_stream = await slow.tensors("wf:tn:state").start()
    frames = ticks(60, (1024, 1024))  # ~200 KB deltas: more than the socket buffers hold
    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        await backend.publish_tensor("wf:tn:state", frames[0])
        first_fast = await fast_stream.next(10)
        first_slow = await slow_stream.next(10)
        assert same_bits(first_fast[1], frames[0]) and same_bits(first_slow[1], frames[0])
        transport = pause_reading(slow)
        for array in frames[1:]:
            await backend.publish_tensor("wf:tn:state", array)
        fast_seen: list[bytes] = []
        await latest(fast_stream, frames[-1], history=fast_seen)
        transport.resume_reading()
        slow_seen: list[bytes] = []
        slow_count = await latest(slow_stream, frames[-1], history=slow_seen)
    assert in_publish_order(fast_seen, frames)  # exact arrays, never out of order
    assert in_publish_order(slow_seen, frames)
    relay_stats = (await fast.tensor_stats("wf:tn:state"))["streams"]["0"]
    assert relay_stats["keyframes"] == 1, relay_stats  # the publisher sent one, then deltas
    assert relay_stats["ratio"] > 5
    assert gw.gateway.metrics.conflated > 0  # the slow one was conflated ...
    assert slow_count < len(frames) - 1  # ... so it skipped ticks
    assert relay_stats["keyframes_served"] >= 1  # and was resynchronised with a keyframe
    assert slow.reconnects == 0
    assert relay_stats["latency_ms"] is not None and relay_stats["latency_ms"] >= 0
    metrics = gw.gateway.telemetry.prometheus_text().decode()
    frames_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("frys_tensor_total{") and 'figure="frames"' in line
    )
    assert float(frames_line.rsplit(" ", 1)[1]) == relay_stats["frames"]


async def test_late_joiner_starts_at_once_from_the_relay(
    gateway: RunningGateway, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    early = await clients(gateway.url, token=token("early"))
    early_stream = await early.tensors("wf:lj:collab").start()
    frames = ticks(10, (64, 32))
    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        for array in frames:
            await backend.publish_tensor("wf:lj:collab", array)
        await latest(early_stream, frames[-1])
        requests_before = backend.nc.stats["in_msgs"]
        late = await clients(gateway.url, token=token("late"))
        stream_id, array = await late.tensors("wf:lj:collab").next(5)
        assert stream_id == 0 and same_bits(array, frames[-1])
        # Served by the gateway's replica: the publisher was not asked for anything.
        assert backend.nc.stats["in_msgs"] == requests_before


async def test_gateway_without_state_asks_the_publisher_for_a_keyframe(
    gateways: GatewayFactory, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    gw_a = await gateways()
    gw_b = await gateways()
    frames = ticks(8, (32, 32))
    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        watcher = await clients(gw_a.url, token=token("watcher"))
        stream_a = await watcher.tensors("wf:kf:state").start()
        for array in frames[:5]:
            await backend.publish_tensor("wf:kf:state", array)
        await latest(stream_a, frames[4])
        # gw_b has never seen this stream: its first subscriber makes it ask the publisher,
        # which answers with a keyframe of the current state at once.
        newcomer = await clients(gw_b.url, token=token("newcomer"))
        stream_b = await newcomer.tensors("wf:kf:state").start()
        _, array = await stream_b.next(10)
        assert same_bits(array, frames[4])
        await backend.publish_tensor("wf:kf:state", frames[5])
        _, array = await stream_b.next(10)
        assert same_bits(array, frames[5])
        for array in frames[6:]:
            await backend.publish_tensor("wf:kf:state", array)
        await latest(stream_b, frames[-1])


async def test_client_to_client_tensors_and_keyframe_requests_to_a_websocket_publisher(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    gw_a = await gateways()
    gw_b = await gateways()
    publisher = await clients(gw_a.url, token=token("agent-p", kind="agent"))
    reader_a = await clients(gw_a.url, token=token("reader-a"))
    stream_a = await reader_a.tensors("agent:sink").start()
    frames = ticks(6, (16, 16, 4))
    for array in frames[:3]:
        await publisher.send_tensor("agent:sink", array)
    await latest(stream_a, frames[2])
    reader_b = await clients(gw_b.url, token=token("reader-b"))
    stream_b = await reader_b.tensors("agent:sink").start()
    await publisher.send_tensor("agent:sink", frames[3])
    # gw_b asked the publishing client (on gw_a) for a keyframe; it answered by itself.
    assert await latest(stream_b, frames[3], timeout=10) >= 1
    for array in frames[4:]:
        await publisher.send_tensor("agent:sink", array)
    await latest(stream_b, frames[-1])
    await latest(stream_a, frames[-1])


async def test_large_tensor_is_chunked_and_does_not_hold_up_small_messages(
    gateway: RunningGateway, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    big = np.random.default_rng(3).standard_normal((1024, 4096)).astype(np.float32)  # 16 MiB
    reader = await clients(gateway.url, token=token("reader"), max_frame_bytes=4 * 1024 * 1024)
    tensor_stream = await reader.tensors("wf:big:state").start()
    events = await reader.subscribe("wf:big:collab")
    order: list[str] = []

    async def read_tensor() -> None:
        _, array = await tensor_stream.next(60)
        order.append("tensor")
        assert same_bits(array, big)

    async def read_event() -> None:
        msg = await events.next(60)
        order.append("event")
        assert msg.data == "small"

    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        readers = asyncio.gather(read_tensor(), read_event())
        sending = asyncio.get_running_loop().create_task(
            backend.publish_tensor("wf:big:state", big)
        )
        while not sending.done() and backend.nc.stats["out_msgs"] < 3:  # noqa: ASYNC110
            await asyncio.sleep(0)  # until the first chunks are out
        await backend.publish("wf:big:collab", "small")  # sent while chunks are in flight
        await sending
        await readers
    assert order == ["event", "tensor"]
    stats = (await reader.tensor_stats("wf:big:state"))["streams"]["0"]
    assert stats["chunks"] >= 10  # ~14 MB compressed, in 1 MiB chunks


@pytest.mark.parametrize(
    ("data", "enc", "channel", "reason"),
    [
        ([1, 2], "tensor", "wf:b:state", "a tensor frame is binary data"),
        (b"\xf1not a frame", "tensor", "wf:b:state", "not a tensor frame"),
        (b"\x00" * 64, "tensor", "wf:b:collab", "not a tensor frame"),
        (b"abc", "zip", "wf:b:collab", "unknown enc 'zip'"),
        (b"", "tensor", "wf:b:events", "events carry whole tensors (keyframes) only"),
    ],
)
async def test_bad_tensor_publishes_get_documented_errors(
    gateway: RunningGateway,
    clients: ClientFactory,
    data: Any,
    enc: str,
    channel: str,
    reason: str,
) -> None:
    c = await clients(gateway.url)
    if channel.endswith(":events"):
        encoder = TensorEncoder(1)
        encoder.encode(np.zeros(4, np.float32))
        data = encoder.encode(np.ones(4, np.float32))[0]  # a delta
    with pytest.raises(BadRequest) as err:
        await c.publish(channel, data, enc=enc)
    assert err.value.code == 400
    assert err.value.reason.startswith(reason)
    assert (await c.publish("wf:b:collab", "still fine")).seq is None
