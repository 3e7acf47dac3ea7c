"""Connections are admitted with limits and must finish their request in time: slow and
numerous clients are refused clearly and leave the gateway serving everyone else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from tests.conftest import GatewayFactory, RunningGateway


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def trickle(gw: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that starts an upgrade request and never finishes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg")
    await writer.drain()
    return reader, writer


async def healthy(gw: RunningGateway) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/healthz") as resp:
        return resp.status


async def test_an_unfinished_request_is_cut_at_the_handshake_deadline(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways(handshake_timeout_s=0.5)
    slow = [await trickle(gw) for _ in range(20)]
    started = time.monotonic()
    for reader, _ in slow:
        assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by the gateway
    assert time.monotonic() - started < 3.0
    assert gw.gateway.guard.timed_out >= 20
    assert gw.gateway.guard.total == 0
    assert await healthy(gw) == 200  # a complete request is served as before
    for _, writer in slow:
        writer.close()


async def test_connections_over_the_limits_get_503_before_any_parsing(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways(max_connections_per_ip=5, handshake_timeout_s=30.0)
    held = [await trickle(gw) for _ in range(5)]
    await eventually(lambda: gw.gateway.guard.total == 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    answer = await asyncio.wait_for(reader.read(), 5.0)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After" in answer
    writer.close()
    for _, w in held:
        w.close()
    await eventually(lambda: gw.gateway.guard.total == 0)
    assert await healthy(gw) == 200  # the address is admitted again once it holds fewer


async def test_the_global_limit_holds(gateways: GatewayFactory) -> None:
    gw = await gateways(max_connections=3, handshake_timeout_s=30.0)
    held = [await trickle(gw) for _ in range(3)]
    await eventually(lambda: gw.gateway.guard.total == 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert (await asyncio.wait_for(reader.read(), 5.0)).startswith(b"HTTP/1.1 503 ")
    assert gw.gateway.guard.refused == 1
    writer.close()
    for _, w in held:
        w.close()
