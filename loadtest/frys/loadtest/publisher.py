"""Publishing benchmark messages into a target, at a fixed rate or as fast as it delivers.

Frys and nats-server are published to straight over NATS (nats-py), the way the engine's
backend helper publishes; the peers through one publisher WebSocket that the server
broadcasts from. At "maximum" rate a *pacer* — one of the subscribers, held in this
process and subscribed last — bounds the messages in flight to a window, so the publisher
runs exactly as fast as the server delivers instead of filling queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import nats
from nats.aio.client import Client as NatsClient

from frys.loadtest.dialects import PUBLISHER_NAME, Dialect
from frys.loadtest.loadgen import Endpoint
from frys.loadtest.wsraw import RawWs, make_payload, open_ws
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.codec import pack_data

PAYLOAD_SIZE = 100


class Publisher(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class NatsPublisher:
    """Publishes on a channel's subject: the msgpack payload, with the engine's ``from``
    header when ``engine_headers`` (Frys), bare otherwise (NATS subscribers)."""

    def __init__(self, nc: NatsClient, dialect: Dialect, engine_headers: bool):
        self.nc = nc
        self.dialect = dialect
        self.headers = {hdr.FROM: PUBLISHER_NAME} if engine_headers else None
        self.pack = engine_headers
        self._subjects: dict[str, str] = {}

    @classmethod
    async def connect(cls, url: str, dialect: Dialect, engine_headers: bool) -> NatsPublisher:
        nc = await nats.connect(url, name="frys-bench-publisher", pending_size=64 * 1024 * 1024)
        return cls(nc, dialect, engine_headers)

    async def publish(self, channel: str, payload: bytes) -> None:
        subject = self._subjects.get(channel)
        if subject is None:
            subject = self._subjects[channel] = self.dialect.subject(channel)
        data = pack_data(payload) if self.pack else payload
        await self.nc.publish(subject, data, headers=self.headers)

    async def flush(self) -> None:
        await self.nc.flush(timeout=10)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()


class WsPublisher:
    """One WebSocket connection whose messages the server broadcasts to a room."""

    def __init__(self, ws: RawWs, dialect: Dialect):
        self.ws = ws
        self.dialect = dialect

    @classmethod
    async def connect(cls, endpoint: Endpoint) -> WsPublisher:
        d = endpoint.dialect
        ws = await open_ws(endpoint.host, endpoint.port, d.path, d.subprotocol)
        d.prepare(ws)
        await d.hello(ws)
        return cls(ws, d)

    async def publish(self, channel: str, payload: bytes) -> None:
        transport = self.ws.transport
        if transport is None or self.ws.closed:
            raise ConnectionError(f"publisher connection closed: {self.ws.close_reason}")
        transport.write(self.dialect.publish_frame(channel, payload))
        if transport.get_write_buffer_size() > 1 << 20:
            await self.flush(1 << 18)

    async def flush(self, below: int = 1) -> None:
        """Wait until less than ``below`` bytes wait in the socket's buffer."""
        transport = self.ws.transport
        for _ in range(60_000):  # at most a minute
            if transport is None or self.ws.closed or transport.get_write_buffer_size() < below:
                return
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        self.ws.close()


@dataclass
class Pacer:
    """A subscriber in this process, subscribed to ``channels[0]``: each message it gets
    stands for ``stride`` published messages (the publisher cycles through the channels)."""

    ws: RawWs
    stride: int
    event: asyncio.Event

    @property
    def delivered(self) -> int:
        return self.ws.messages * self.stride


@dataclass
class PublishStats:
    sent: int
    seconds: float
    per_channel: dict[str, int]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


async def run_publisher(
    pub: Publisher,
    channels: Sequence[str],
    *,
    rate: float | None,
    duration_s: float,
    pacer: Pacer | None,
    window: int,
    payload_size: int = PAYLOAD_SIZE,
    stop: asyncio.Event | None = None,
    stats: PublishStats | None = None,
) -> PublishStats:
    """Publish round-robin over ``channels`` for ``duration_s`` (or until ``stop``).

    ``rate`` messages/s, or ``None`` for as fast as ``pacer`` shows the server delivers,
    with at most ``window`` messages in flight.
    ``stats`` (when given) is kept current while publishing.
    """
    k = len(channels)
    stats = stats if stats is not None else PublishStats(0, 0.0, {})
    sent = 0
    t0 = time.monotonic()
    end = t0 + duration_s
    batch_cap = 256
    while True:
        now = time.monotonic()
        if now >= end or (stop is not None and stop.is_set()):
            break
        if rate is not None:
            due = int((now - t0) * rate) - sent
            if due <= 0:
                await asyncio.sleep(max(0.0005, min(0.002, (sent + 1) / rate - (now - t0))))
                continue
            n = min(due, batch_cap)
        else:
            assert pacer is not None
            n = min(window - (sent - pacer.delivered), batch_cap)
            if n <= 0:
                pacer.event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pacer.event.wait(), 0.05)
                continue
        for _ in range(n):
            await pub.publish(channels[sent % k], make_payload(payload_size))
            sent += 1
        stats.sent = sent
        if rate is None:
            # Let the pacer's reads in between batches.
            await asyncio.sleep(0)
    await pub.flush()
    stats.seconds = time.monotonic() - t0
    stats.per_channel = {
        ch: sent // k + (1 if i < sent % k else 0) for i, ch in enumerate(channels)
    }
    return stats
