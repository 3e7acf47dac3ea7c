"""Behaviour at the gateway's centre, checked with raw WebSocket frames against the spec:
one flush per tick, presence across gateways, resume without flapping, the HTTP publish
path, streams that are deleted under their subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import nats
import pytest

from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import decode_msgpack
from frys.shared.protocol.subjects import Subjects
from tests.conftest import API_KEY, GatewayFactory, RunningGateway, token


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Peer:
    """A client speaking raw ``frys.v1.msgpack`` frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ref = 0
        self.frames: list[f.Frame] = []

    async def send(self, obj: dict[str, Any]) -> int:
        self.ref += 1
        obj.setdefault("id", self.ref)
        await self.ws.send_bytes(msgpack.packb(obj, use_bin_type=True))
        return int(obj["id"])

    async def recv(self, timeout: float = 5.0) -> f.Frame:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
        frame = decode_msgpack(msg.data)
        self.frames.append(frame)
        return frame

    async def answer(self, ref: int, timeout: float = 5.0) -> f.Frame:
        """The reply to ``ref`` (other frames arriving meanwhile are kept)."""
        while True:
            frame = await self.recv(timeout)
            if getattr(frame, "id", None) == ref or getattr(frame, "ref", None) == ref:
                return frame

    async def next_message(self, timeout: float = 5.0) -> f.Message:
        while True:
            frame = await self.recv(timeout)
            if isinstance(frame, f.Message):
                return frame

    async def connect(self, tok: str, resume: str | None = None) -> f.Connected:
        msg: dict[str, Any] = {"op": "connect", "token": tok}
        if resume:
            msg["resume"] = resume
        frame = await self.answer(await self.send(msg))
        assert isinstance(frame, f.Connected), frame
        return frame

    async def subscribe(self, ch: str, **extra: Any) -> f.Frame:
        return await self.answer(await self.send({"op": "subscribe", "ch": ch, **extra}))

    def abort(self) -> None:
        """Drop the connection without a close handshake (a lost network)."""
        transport = self.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()


PeerFactory = Callable[[RunningGateway], Awaitable[Peer]]


@pytest.fixture
async def peer(http: aiohttp.ClientSession) -> AsyncIterator[PeerFactory]:
    opened: list[Peer] = []

    async def open_peer(gw: RunningGateway) -> Peer:
        ws = await http.ws_connect(gw.url, protocols=("frys.v1.msgpack",))
        p = Peer(ws)
        opened.append(p)
        return p

    yield open_peer
    for p in opened:
        with contextlib.suppress(Exception):
            await p.ws.close()


async def test_one_tick_is_flushed_once(gateway: RunningGateway, peer: PeerFactory) -> None:
    sub = await peer(gateway)
    await sub.connect(token())
    assert isinstance(await sub.subscribe("wf:tick:collab"), f.Ack)
    pub = await peer(gateway)
    await pub.connect(token())
    metrics = gateway.gateway.metrics
    before = metrics.flushes
    await pub.answer(await pub.send({"op": "publish", "ch": "wf:tick:collab", "data": 1}))
    assert (await sub.next_message()).data == 1
    await asyncio.sleep(0.05)  # a second, empty flush would have run by now
    assert metrics.flushes - before == 1


async def test_presence_lists_members_of_every_gateway(
    gateways: GatewayFactory, peer: PeerFactory
) -> None:
    gw_a, gw_b = await gateways(), await gateways()
    on_a, on_b = await peer(gw_a), await peer(gw_b)
    sid_a = (await on_a.connect(token("ann"))).sid
    sid_b = (await on_b.connect(token("bob"))).sid
    await on_a.subscribe("wf:both:state")
    await on_b.subscribe("wf:both:collab")

    async def members_seen_by_b() -> set[str]:
        ack = await on_b.answer(await on_b.send({"op": "presence", "ch": "wf:both:presence"}))
        assert isinstance(ack, f.Ack)
        return {str(m["sid"]) for m in ack.members or ()}

    deadline = time.monotonic() + 5
    seen: set[str] = set()
    while seen != {sid_a, sid_b} and time.monotonic() < deadline:
        seen = await members_seen_by_b()
    assert seen == {sid_a, sid_b}


async def test_a_resumed_session_shows_neither_leave_nor_join(
    gateways: GatewayFactory, peer: PeerFactory
) -> None:
    gw_a = await gateways(presence_resume_grace_s=1.0)
    gw_b = await gateways(presence_resume_grace_s=1.0)
    watcher = await peer(gw_b)
    await watcher.connect(token("watcher"))
    await watcher.subscribe("wf:res:presence")
    mover = await peer(gw_a)
    tok = token("mover")
    hello = await mover.connect(tok)
    await mover.subscribe("wf:res:collab")

    async def next_notice() -> Any:
        while True:
            notice = (await watcher.next_message()).data
            if notice["member"]["sid"] == hello.sid:
                return notice

    join = await next_notice()
    assert join["type"] == "join"

    # The connection drops; the session resumes on the same gateway ...
    mover.abort()
    again = await peer(gw_a)
    back = await again.connect(tok, resume=hello.resume)
    assert back.sid == hello.sid
    await again.subscribe("wf:res:collab")
    # ... drops again and resumes on the other gateway.
    again.abort()
    moved = await peer(gw_b)
    there = await moved.connect(tok, resume=back.resume)
    assert there.sid == hello.sid
    await moved.subscribe("wf:res:collab")
    presence_a = gw_a.gateway.presence
    await eventually(lambda: not presence_a._leaving and not presence_a.local)
    # Leaving for good is announced once, by the gateway the session is on now.
    await moved.answer(await moved.send({"op": "unsubscribe", "ch": "wf:res:collab"}))
    leave = await next_notice()
    assert leave["type"] == "leave" and leave["member"]["gw"] == gw_b.gateway.config.gateway_id
    notices = [
        fr.data["type"]
        for fr in watcher.frames
        if isinstance(fr, f.Message) and fr.data["member"]["sid"] == hello.sid
    ]
    assert notices == ["join", "leave"]


async def test_http_publish_keeps_bytes_objects_and_refuses_oversized_bodies(
    gateway: RunningGateway, peer: PeerFactory, http: aiohttp.ClientSession
) -> None:
    sub = await peer(gateway)
    await sub.connect(token())
    await sub.subscribe("wf:api:events")
    headers = {"X-Api-Key": API_KEY}
    body = {"channel": "wf:api:events", "data": {"$bytes": "aGk="}}
    async with http.post(f"{gateway.http}/api/publish", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    message = await sub.next_message()
    assert message.data == {"$bytes": "aGk="}  # plain JSON: an ordinary object
    published = gateway.gateway.metrics.publishes
    big = {"channel": "wf:api:events", "data": "x" * (gateway.gateway.bus.max_payload + 10)}
    async with http.post(f"{gateway.http}/api/publish", json=big, headers=headers) as resp:
        assert resp.status == 413, await resp.text()
    assert gateway.gateway.metrics.publishes == published  # refused before it counted


async def test_a_deleted_stream_ends_subscriptions_and_comes_back_with_a_new_epoch(
    gateway: RunningGateway, peer: PeerFactory, nats_server: NatsProcess, prefix: str
) -> None:
    sub = await peer(gateway)
    await sub.connect(token())
    first = await sub.subscribe("wf:gone:events")
    assert isinstance(first, f.Ack) and first.epoch
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().delete_stream(Subjects(prefix).events_stream)
    finally:
        await nc.close()
    while True:
        frame = await sub.recv(timeout=10)
        if isinstance(frame, f.Unsubscribed):
            break
    assert frame.ch == "wf:gone:events" and frame.code == 503
    again = await sub.subscribe("wf:gone:events")
    assert isinstance(again, f.Ack) and again.epoch and again.epoch != first.epoch
    pub = await peer(gateway)
    await pub.connect(token())
    ack = await pub.answer(
        await pub.send({"op": "publish", "ch": "wf:gone:events", "data": "after", "mid": "m1"})
    )
    assert isinstance(ack, f.Ack) and ack.seq == 1
    assert (await sub.next_message()).data == "after"
