"""The tensor relay holds bounded state whatever publishers and subscribers send: streams
per channel and per session, replica memory across the gateway, resync requests, idle
streams; and it returns everything once the channel has no subscriber left."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import numpy as np
import pytest

from frys.gateway.hub import Fanout
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.codec import decode_msgpack
from frys.shared.tensor import TensorEncoder
from tests.conftest import GatewayFactory, RunningGateway, token

Raw = aiohttp.ClientWebSocketResponse
MIB = 1024 * 1024


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class Peer:
    def __init__(self, ws: Raw) -> None:
        self.ws = ws
        self.ref = 0

    async def call(self, obj: dict[str, Any]) -> f.Frame:
        self.ref += 1
        await self.ws.send_bytes(pack({**obj, "id": self.ref}))
        while True:
            msg = await self.ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.extra)
            frame = decode_msgpack(msg.data)
            if getattr(frame, "id", None) == self.ref or getattr(frame, "ref", None) == self.ref:
                return frame


@pytest.fixture
async def peer(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    opened: list[Raw] = []

    async def open_peer(gw: RunningGateway, sub: str = "someone") -> Peer:
        ws = await http.ws_connect(gw.url, protocols=("frys.v1.msgpack",))
        opened.append(ws)
        p = Peer(ws)
        assert isinstance(await p.call({"op": "connect", "token": token(sub)}), f.Connected)
        return p

    yield open_peer
    for ws in opened:
        await ws.close()


def keyframe(stream: int, shape: tuple[int, ...]) -> bytes:
    frames = TensorEncoder(stream_id=stream).encode(np.zeros(shape, np.float32), keyframe=True)
    assert len(frames) == 1  # zeros compress to one small frame
    return frames[0]


def fanout(gw: RunningGateway, ch: str) -> Fanout:
    return gw.gateway.hub.fanouts[parse_channel(ch)]


async def test_resync_of_unknown_streams_creates_nothing_and_is_rate_limited(
    gateways: GatewayFactory, peer: Callable[..., Awaitable[Peer]]
) -> None:
    gw = await gateways(publish_burst=100, publish_rate_per_s=10)
    p = await peer(gw)
    assert isinstance(await p.call({"op": "subscribe", "ch": "wf:rs:state"}), f.Ack)
    answers = [await p.call({"op": "resync", "ch": "wf:rs:state", "stream": n}) for n in range(150)]
    assert all(isinstance(a, f.Ack) and a.recovered is False for a in answers[:100])
    refused = [a for a in answers[100:] if isinstance(a, f.Error) and a.code == 429]
    assert len(refused) >= 40  # the burst is spent; a few tokens come back meanwhile
    assert fanout(gw, "wf:rs:state").relay.streams == {}


async def test_streams_per_channel_and_per_session_are_bounded(
    gateways: GatewayFactory, peer: Callable[..., Awaitable[Peer]]
) -> None:
    gw = await gateways(relay_max_streams_per_channel=4, max_tensor_streams_per_session=6)
    watcher = await peer(gw, "watcher")
    await watcher.call({"op": "subscribe", "ch": "wf:sb:state"})
    publisher = await peer(gw, "publisher")
    replies = [
        await publisher.call(
            {"op": "publish", "ch": "wf:sb:state", "enc": "tensor", "data": keyframe(n, (4,))}
        )
        for n in range(8)
    ]
    assert all(isinstance(r, f.Ack) for r in replies[:6])
    assert all(isinstance(r, f.Error) and r.code == 429 for r in replies[6:])
    relay = fanout(gw, "wf:sb:state").relay
    await eventually(lambda: relay.refused >= 2)
    assert len(relay.streams) == 4


async def test_replica_memory_is_budgeted_and_returned(
    gateways: GatewayFactory, peer: Callable[..., Awaitable[Peer]]
) -> None:
    gw = await gateways(relay_memory_bytes=64 * MIB, max_frame_bytes=4 * MIB)
    budget = gw.gateway.hub.relay_budget
    watcher = await peer(gw, "watcher")
    await watcher.call({"op": "subscribe", "ch": "wf:mem:state"})
    publisher = await peer(gw, "publisher")
    for n in range(10):  # each a few KB on the wire, 16 MiB once decoded
        reply = await publisher.call(
            {
                "op": "publish",
                "ch": "wf:mem:state",
                "enc": "tensor",
                "data": keyframe(n, (4 * MIB,)),
            }
        )
        assert isinstance(reply, f.Ack)
    relay = fanout(gw, "wf:mem:state").relay
    await eventually(lambda: relay.refused >= 7)
    # Each decode needs twice the state for a moment: 16 + 16 + 16 MiB fit, with room for it.
    assert budget.used <= 64 * MIB
    assert sum(1 for s in relay.streams.values() if s.reserved) == 3
    await watcher.call({"op": "unsubscribe", "ch": "wf:mem:state"})
    await eventually(lambda: parse_channel("wf:mem:state") not in gw.gateway.hub.fanouts)
    assert budget.used == 0  # every replica freed with the channel
    assert relay.fanout is None  # and the fanout ↔ relay link broken


async def test_idle_streams_expire(
    gateways: GatewayFactory, peer: Callable[..., Awaitable[Peer]]
) -> None:
    gw = await gateways(relay_idle_s=1.0)
    watcher = await peer(gw, "watcher")
    await watcher.call({"op": "subscribe", "ch": "wf:idle:state"})
    publisher = await peer(gw, "publisher")
    await publisher.call(
        {"op": "publish", "ch": "wf:idle:state", "enc": "tensor", "data": keyframe(1, (1024,))}
    )
    relay = fanout(gw, "wf:idle:state").relay
    await eventually(lambda: 1 in relay.streams and relay.streams[1].reserved > 0)
    gw.gateway.hub.expire(time.monotonic() + 2.0)
    assert relay.streams == {}
    assert gw.gateway.hub.relay_budget.used == 0
