"""Every per-session structure has a bound, enforced before the work is done: one client
asking without reading, or sending oversized strings, costs only itself."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import pytest

from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import decode_msgpack
from frys.shared.protocol.errors import CloseCode
from tests.conftest import GatewayFactory, RunningGateway, token

Raw = aiohttp.ClientWebSocketResponse


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


async def recv(ws: Raw, timeout: float = 5.0) -> f.Frame:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
    return decode_msgpack(msg.data)


async def answer(ws: Raw, ref: int) -> f.Frame:
    while True:
        frame = await recv(ws)
        if getattr(frame, "id", None) == ref or getattr(frame, "ref", None) == ref:
            return frame


@pytest.fixture
async def raw(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_ws(gw: RunningGateway, **kw: Any) -> Raw:
        ws: Raw = await http.ws_connect(gw.url, protocols=("frys.v1.msgpack",), **kw)
        opened.append(ws)
        return ws

    yield open_ws
    for ws in opened:
        await ws.close()


async def connected(raw: Callable[..., Awaitable[Raw]], gw: RunningGateway, sub: str) -> Raw:
    ws = await raw(gw)
    await ws.send_bytes(pack({"op": "connect", "id": 1, "token": token(sub)}))
    assert isinstance(await recv(ws), f.Connected)
    return ws


def unsent_bytes(gw: RunningGateway) -> int:
    return sum(s.writer.transport.get_write_buffer_size() for s in gw.gateway.sessions)


async def test_snapshots_asked_for_and_never_read_are_conflated_or_cut(
    gateways: GatewayFactory, raw: Callable[..., Awaitable[Raw]]
) -> None:
    queue = 64 * 1024
    gw = await gateways(queue_bytes=queue)
    writer = await connected(raw, gw, "writer")
    value = "v" * 300_000
    await writer.send_bytes(pack({"op": "publish", "id": 2, "ch": "wf:big:state", "data": value}))
    assert isinstance(await answer(writer, 2), f.Ack)
    greedy = await connected(raw, gw, "greedy")
    transport = greedy._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.pause_reading()  # asks, never reads
    peak = 0
    for n in range(60):
        await greedy.send_bytes(pack({"op": "subscribe", "id": 10 + 2 * n, "ch": "wf:big:state"}))
        await greedy.send_bytes(pack({"op": "unsubscribe", "id": 11 + 2 * n, "ch": "wf:big:state"}))
        await asyncio.sleep(0.005)
        peak = max(peak, unsent_bytes(gw))
    # 60 snapshots of 300 KB would be 18 MB; at most one is pending per channel, and a
    # session past the hard limit is cut.
    assert peak <= 4 * queue + 2 * len(value), peak
    bystander = await connected(raw, gw, "bystander")
    await bystander.send_bytes(pack({"op": "ping", "id": 5}))
    assert await answer(bystander, 5) == f.Pong(id=5)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"name": "n" * 129}, "name longer than 128"),
        ({"caps": ["c"] * 17}, "caps"),
        ({"caps": ["c" * 65]}, "caps"),
    ],
)
async def test_oversized_connect_strings_are_refused(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]], extra: dict[str, Any], reason: str
) -> None:
    ws = await raw(gateway)
    await ws.send_bytes(pack({"op": "connect", "id": 1, "token": token(), **extra}))
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == CloseCode.BAD_CONNECT
    assert reason in str(msg.extra)


@pytest.mark.parametrize(
    "bad",
    [
        {"mid": "m" * 66_000},
        {"mid": "line\r\nbreak"},
        {"tc": {"traceparent": "x" * 70_000}},
        {"tc": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "s" * 600}},
    ],
)
async def test_header_strings_are_bounded_before_the_broker(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]], bad: dict[str, Any]
) -> None:
    ws = await connected(raw, gateway, "attacker")
    for n in range(50):
        msg = {"op": "publish", "id": 100 + n, "ch": "wf:h:events", "data": 1, **bad}
        await ws.send_bytes(pack(msg))
    replies = [await answer(ws, 100 + n) for n in range(50)]
    assert all(isinstance(r, f.Error) and r.code == 400 for r in replies), replies[0]
    # Stored publishing still works for everyone, at once.
    other = await connected(raw, gateway, "other")
    await other.send_bytes(pack({"op": "publish", "id": 2, "ch": "wf:h:events", "data": 2}))
    ack = await asyncio.wait_for(answer(other, 2), 2.0)
    assert isinstance(ack, f.Ack) and ack.seq is not None


async def test_a_slow_reader_is_cut_before_the_kernel_hides_megabytes(
    gateways: GatewayFactory, raw: Callable[..., Awaitable[Raw]]
) -> None:
    """The kernel's send queue counts towards ``queue_bytes``: a reader on a small receive
    buffer is cut after about ``queue_bytes``, not after the megabytes an autotuned
    kernel buffer would take first."""
    gw = await gateways(queue_bytes=64 * 1024)
    slow = await connected(raw, gw, "slow")
    transport = slow._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await slow.send_bytes(pack({"op": "subscribe", "id": 2, "ch": "wf:slow:collab"}))
    assert isinstance(await answer(slow, 2), f.Ack)
    transport.pause_reading()
    writer = await connected(raw, gw, "writer")
    metrics = gw.gateway.metrics
    sent = 0
    while metrics.slow_disconnects == 0 and sent < 2000:
        sent += 1
        msg = {"op": "publish", "id": 10 + sent, "ch": "wf:slow:collab", "data": "x" * 10_000}
        await writer.send_bytes(pack(msg))
        await answer(writer, 10 + sent)
    assert metrics.slow_disconnects == 1
    assert sent * 10_000 < 2 * 1024 * 1024, f"cut after {sent} messages of 10 KB"
