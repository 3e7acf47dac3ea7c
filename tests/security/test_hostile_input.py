"""Hostile input gets its documented answer — never a 500, a crash or a silent acceptance —
and the session or server goes on serving."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import msgpack
import numpy as np
import pytest

from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import decode_json, decode_msgpack
from frys.shared.protocol.errors import CloseCode
from frys.shared.tensor import TensorEncoder
from tests.conftest import API_KEY, SECRET, RunningGateway, token

Raw = aiohttp.ClientWebSocketResponse


@pytest.fixture
async def raw(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_ws(gw: RunningGateway, protocol: str = "frys.v1.msgpack") -> Raw:
        ws: Raw = await http.ws_connect(gw.url, protocols=(protocol,), autoclose=False)
        opened.append(ws)
        return ws

    yield open_ws
    for ws in opened:
        await ws.close()


async def recv(ws: Raw) -> f.Frame:
    msg = await ws.receive(timeout=5)
    if msg.type is aiohttp.WSMsgType.TEXT:
        return decode_json(msg.data)
    assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
    return decode_msgpack(msg.data)


def signed(claims: dict[str, Any]) -> str:
    return jwt.encode({"sub": "u", **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("exp", ["9999999999", 2**70, 1e300])
async def test_an_exp_that_is_not_a_numeric_date_is_refused(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]], exp: Any
) -> None:
    ws = await raw(gateway)
    await ws.send_bytes(msgpack.packb({"op": "connect", "id": 1, "token": signed({"exp": exp})}))
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == CloseCode.UNAUTHORIZED, (msg.data, msg.extra)


async def connected(raw: Callable[..., Awaitable[Raw]], gw: RunningGateway, protocol: str) -> Raw:
    ws = await raw(gw, protocol)
    hello = {"op": "connect", "id": 1, "token": token()}
    if protocol.endswith("json"):
        await ws.send_str(json.dumps(hello))
    else:
        await ws.send_bytes(msgpack.packb(hello))
    assert isinstance(await recv(ws), f.Connected)
    return ws


async def test_json_frames_that_cannot_be_carried_get_400_with_their_ref(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]]
) -> None:
    ws = await connected(raw, gateway, "frys.v1.json")
    cases = [
        '{"op":"publish","id":5,"ch":"wf:h:collab","data":{"$bytes":"!!not base64"}}',
        '{"op":"publish","id":6,"ch":"wf:h:collab","data":1180591620717411303424}',
        '{"op":"publish","id":7,"ch":"wf:h:collab","data":"\\ud800"}',
        '{"op":"publish","id":8,"ch":"wf:h:collab","data":' + "[" * 100_000 + "]" * 100_000 + "}",
    ]
    for text in cases:
        await ws.send_str(text)
        reply = await recv(ws)
        assert isinstance(reply, f.Error) and reply.code == 400, (text[:60], reply)
    refs = [5, 6, 7]
    assert [r.ref for r in [await _again(ws, c) for c in cases[:3]]] == refs
    await ws.send_str('{"op":"ping","id":9}')
    assert await recv(ws) == f.Pong(id=9)  # the session goes on


async def _again(ws: Raw, text: str) -> f.Error:
    await ws.send_str(text)
    reply = await recv(ws)
    assert isinstance(reply, f.Error)
    return reply


async def test_http_publish_of_uncarriable_data_is_400(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.http}/api/publish"
    headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
    bodies = [
        '{"channel":"wf:h:collab","data":1180591620717411303424}',
        '{"channel":"wf:h:collab","data":"\\ud800"}',
        '{"channel":"wf:h:collab","data":' + "[" * 100_000 + "]" * 100_000 + "}",
    ]
    for body in bodies:
        async with http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 400, (body[:50], resp.status, await resp.text())
    for key in ("clé-non-ascii", "\u2603"):
        async with http.post(
            url,
            data=b'{"channel":"wf:h:collab","data":1}',
            headers={"X-Api-Key": key.encode().decode("latin-1")},
        ) as resp:
            assert resp.status == 401


async def test_a_corrupt_tensor_frame_is_refused_at_publish(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]]
) -> None:
    ws = await connected(raw, gateway, "frys.v1.msgpack")
    good = TensorEncoder(stream_id=1).encode(np.arange(16, dtype=np.float32), keyframe=True)[0]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    bad_dtype = bytearray(good)
    bad_dtype[12] = 99  # no such element type
    for n, data in enumerate((bytes(bad_crc), bytes(bad_dtype))):
        await ws.send_bytes(
            msgpack.packb(
                {"op": "publish", "id": 10 + n, "ch": "wf:t:state", "enc": "tensor", "data": data}
            )
        )
        reply = await recv(ws)
        assert isinstance(reply, f.Error) and reply.code == 400, reply
    await ws.send_bytes(
        msgpack.packb(
            {"op": "publish", "id": 20, "ch": "wf:t:state", "enc": "tensor", "data": good}
        )
    )
    assert isinstance(await recv(ws), f.Ack)


@pytest.mark.parametrize(
    ("sent", "answered"), [(1006, 1002), (1005, 1002), (4000, 4000), (1000, 1000)]
)
async def test_a_client_close_is_answered_per_rfc_6455(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]], sent: int, answered: int
) -> None:
    ws = await connected(raw, gateway, "frys.v1.msgpack")
    # A close frame built by hand: the client library refuses to send reserved codes.
    payload = struct.pack("!H", sent)
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.write(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
    started = time.monotonic()
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == answered
    assert time.monotonic() - started < 3


async def test_an_unmasked_client_frame_closes_with_1002(
    gateway: RunningGateway, raw: Callable[..., Awaitable[Raw]]
) -> None:
    ws = await connected(raw, gateway, "frys.v1.msgpack")
    # A masked ping in two pieces first (headers split across reads are followed) ...
    payload = msgpack.packb({"op": "ping", "id": 3})
    mask = b"\x05\x06\x07\x08"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame = bytes([0x82, 0x80 | len(payload)]) + mask + masked
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.write(frame[:1])
    await asyncio.sleep(0.05)
    transport.write(frame[1:])
    assert await recv(ws) == f.Pong(id=3)
    # ... then the same frame unmasked: a protocol error.
    transport.write(bytes([0x82, len(payload)]) + payload)
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == 1002
