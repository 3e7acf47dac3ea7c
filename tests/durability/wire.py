"""A protocol session that records every frame as it arrived, for checking delivery.

The SDK drops an events message whose ``seq`` is not above its position, which is right for
an application and hides exactly what a delivery check must see: a duplicate, or an older
message after a newer one, sent by the gateway. This session keeps each subscription's
frames verbatim, grouped per subscribe (a *round*), and leaves judging them to the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import MSGPACK


class WireError(Exception):
    """The gateway answered a request with ``error``."""

    def __init__(self, frame: f.Error):
        super().__init__(f"{frame.code}: {frame.reason}")
        self.code = frame.code


@dataclass
class Round:
    """One subscribe and what it delivered until unsubscribed."""

    channel: str
    since: f.Position | None
    ack: f.Ack
    got: list[tuple[int, Any]] = field(default_factory=list)
    """``(seq, data)`` of every ``message`` frame, in arrival order."""

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.got]


class WireSession:
    """One WebSocket session: requests are answered by id, messages recorded per round."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._http = http
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[f.Frame]] = {}
        self._rounds: dict[str, Round] = {}
        self._opening: dict[int, tuple[str, f.Position | None]] = {}
        """Subscribes in flight: their round opens when the reader meets the ack."""
        self._arrived = asyncio.Event()
        """Set whenever a message arrives (see :meth:`until`)."""
        self.strays = 0
        """Messages on a channel with no open round: after its unsubscribe was acked, a
        delivery the gateway had gathered earlier in the same tick may still follow (acks
        are written at once, deliveries at the end of the tick). Not part of any round."""
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str) -> WireSession:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, protocols=(MSGPACK.subprotocol,))
            await ws.send_bytes(MSGPACK.encode(f.Connect(id=0, token=token)))  # type: ignore[arg-type]
            first = MSGPACK.decode((await ws.receive(timeout=10)).data)
            if not isinstance(first, f.Connected):
                raise ConnectionError(f"connect answered with {first}")
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    continue
                frame = MSGPACK.decode(msg.data)
                if isinstance(frame, f.Message):
                    current = self._rounds.get(frame.ch)
                    if current is None or frame.seq is None:
                        self.strays += 1
                    else:
                        current.got.append((frame.seq, frame.data))
                        self._arrived.set()
                    continue
                ref = frame.ref if isinstance(frame, f.Error) else getattr(frame, "id", None)
                opening = self._opening.pop(ref, None) if isinstance(ref, int) else None
                if opening is not None and isinstance(frame, f.Ack):
                    # Opened here, synchronously: the frames right behind the ack are its.
                    self._rounds[opening[0]] = Round(opening[0], opening[1], frame)
                waiter = self._waiting.pop(ref, None) if isinstance(ref, int) else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("session closed"))

    async def call(
        self, make: Callable[[int], f.Frame], timeout_s: float = 15.0, ref: int | None = None
    ) -> f.Frame:
        ref = next(self._ids) if ref is None else ref
        waiter: asyncio.Future[f.Frame] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = waiter
        await self._ws.send_bytes(MSGPACK.encode(make(ref)))  # type: ignore[arg-type]
        answer = await asyncio.wait_for(waiter, timeout_s)
        if isinstance(answer, f.Error):
            raise WireError(answer)
        return answer

    async def until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``done()`` holds, re-checked as messages arrive; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not done():
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    async def subscribe(self, channel: str, since: f.Position | None = None) -> Round:
        """Subscribe and open a round; every message after the ack lands in it."""
        ref = next(self._ids)
        self._opening[ref] = (channel, since)
        try:
            await self.call(lambda _: f.Subscribe(id=ref, ch=channel, since=since), ref=ref)
        finally:
            self._opening.pop(ref, None)
        return self._rounds[channel]

    async def unsubscribe(self, channel: str) -> Round:
        """End the channel's round once the gateway acknowledged the unsubscribe (it sends
        nothing more for the channel after that ack)."""
        await self.call(lambda ref: f.Unsubscribe(id=ref, ch=channel))
        return self._rounds.pop(channel)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self._http.close()
