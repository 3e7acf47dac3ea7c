"""No client holds the gateway's shared publishing capacity: a hung broker answers every
stored publish in bounded time, one session holds a bounded share of the broker client's
publish slots, and everyone publishes again as soon as the broker is back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgpack

from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import decode_msgpack
from tests.conftest import GatewayFactory, token


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


async def test_a_hung_broker_answers_every_publish_and_frees_its_slots(
    gateways: GatewayFactory, fresh_nats: NatsProcess, http: aiohttp.ClientSession
) -> None:
    gw = await gateways(nats_url=fresh_nats.url, publish_ack_timeout_s=2.0)
    ws = await http.ws_connect(gw.url, protocols=("frys.v1.msgpack",))
    await ws.send_bytes(pack({"op": "connect", "id": 1, "token": token("greedy")}))
    assert isinstance(decode_msgpack((await ws.receive(timeout=5)).data), f.Connected)
    fresh_nats.pause()
    try:
        started = time.monotonic()
        total = 700
        for n in range(total):
            msg = {"op": "publish", "id": 10 + n, "ch": "wf:cap:events", "data": n, "mid": f"m{n}"}
            await ws.send_bytes(pack(msg))
        codes: dict[int, int] = {}
        while len(codes) < total:
            frame = decode_msgpack((await ws.receive(timeout=10)).data)
            assert isinstance(frame, f.Error), frame
            assert frame.ref is not None
            codes[frame.ref] = frame.code
        elapsed = time.monotonic() - started
    finally:
        fresh_nats.resume()
    counts = {code: sum(1 for c in codes.values() if c == code) for code in set(codes.values())}
    assert counts.get(504, 0) <= 512 and counts.get(429, 0) >= total - 512, counts
    assert set(counts) <= {504, 429}, counts
    assert elapsed < 6.0  # every publish answered within the deadline, none left hanging
    # The broker is back: publishing works at once, for this session and everyone else.
    deadline = time.monotonic() + 10
    while True:
        await ws.send_bytes(pack({"op": "publish", "id": 5, "ch": "wf:cap:events", "data": 1}))
        reply = decode_msgpack((await ws.receive(timeout=10)).data)
        if isinstance(reply, f.Ack) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert isinstance(reply, f.Ack) and reply.seq is not None
    await ws.close()
