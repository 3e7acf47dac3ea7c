"""A protocol client for the durability harness that keeps the wire's own record.

The SDK is made for applications: it drops an events message whose ``seq`` is not above its
position, so a duplicate or an older message after a newer one, sent by a gateway, never
reaches the code that would count it. This client speaks protocol v1 itself (on
:class:`~frys.loadtest.wsraw.RawWs`) and records every frame of every subscription, grouped
by subscribe (a :class:`Round`), as it arrived. Otherwise it behaves as a client should
(docs/protocol.md §5.4): it reconnects with the close code's rule (the delay of a 1012, at
once after a 4000, capped backoff with jitter otherwise), presents its resume token,
subscribes again from its positions, and it times each publish and request from the frame
leaving to its answer arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgpack

from frys.loadtest.wsraw import OP_BINARY, RawWs, WsClosed
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind, parse_channel
from frys.shared.protocol.codec import MSGPACK

LOST = -1
"""Pseudo error code: the connection dropped before the answer came."""


@dataclass
class Round:
    """One subscribe (first, resumed by hand, or after a reconnect) and what followed."""

    channel: str
    since: int | None
    """``since.seq`` sent, or None for a live subscribe."""
    ack_seq: int | None
    recovered: bool | None
    got: list[tuple[int, Any]] = field(default_factory=list)
    """``(seq, data)`` of each message, in arrival order."""


@dataclass
class Sub:
    channel: str
    kind: ChannelKind
    position: f.Position | None = None
    """Events: the last accepted message (what a resume asks to continue after)."""
    rounds: list[Round] = field(default_factory=list)
    current: Round | None = None
    last: tuple[int, Any] | None = None
    """State: the newest value accepted ``(seq, data)``."""
    wanted: bool = True


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one request: an ack or reply, an error, or nothing (connection lost)."""

    frame: f.Frame | None
    code: int
    """0 for a positive answer, the error code, or :data:`LOST`."""
    took_s: float


class ProbeClient:
    """One client session, kept up across reconnects; see the module docstring."""

    def __init__(self, urls: list[str], token: str, name: str = ""):
        self.urls = urls
        self.token = token
        self.name = name
        self.subs: dict[str, Sub] = {}
        self.reconnects = 0
        self.reconnect_s: list[float] = []
        """Per reconnect: from losing the connection to the next ``connected``, less the
        delay the gateway asked for (a 1012's ``delay_ms``)."""
        self.closes: list[tuple[int, str]] = []
        self.refusals: Counter[int] = Counter()
        """Subscribes refused (and retried), by error code."""
        self.paused = False
        self.gateway = ""
        """The gateway serving the current (or last) connection."""
        self._url = 0
        self._ws: RawWs | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[f.Frame]] = {}
        self._opening: dict[int, str] = {}
        self._resume = ""
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.changed = asyncio.Event()
        """Set whenever a message is accepted (a waiter clears it and waits)."""

    # --- connection ----------------------------------------------------------------------
    async def start(self) -> ProbeClient:
        self._first = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await asyncio.wait_for(self._first, 30)
        return self

    def _stopped(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, timeout_s: float = 30.0) -> None:
        await asyncio.wait_for(self._up.wait(), timeout_s)

    async def _supervise(self) -> None:
        attempt = 0
        delay = 0.0
        lost_at: float | None = None
        asked_s = 0.0
        while not self._stopped():
            if delay:
                await asyncio.sleep(delay)
            url = self.urls[self._url % len(self.urls)]
            try:
                await self._open(url)
            except (OSError, TimeoutError, WsClosed, ConnectionError):
                self._url += 1
                attempt += 1
                delay = random.uniform(0, min(2.0, 0.05 * 2**attempt))
                continue
            attempt = 0
            if lost_at is not None:
                self.reconnect_s.append(max(0.0, time.monotonic() - lost_at - asked_s))
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            self._resubscribe_all()
            await self._down.wait()
            lost_at = time.monotonic()
            self._lost()
            if self._stopped():
                return
            code, reason = self._close_of()
            self.closes.append((code, reason))
            self.reconnects += 1
            if code == 1012:
                asked_s = _delay_ms(reason) / 1000
                delay = asked_s
            elif code == 4000:
                asked_s = delay = 0.0
            else:
                asked_s = 0.0
                self._url += 1
                delay = random.uniform(0, 0.1)

    async def _open(self, url: str) -> None:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        _transport, ws = await asyncio.wait_for(loop.create_connection(_ProbeWs, host, port), 5)
        assert isinstance(ws, _ProbeWs)
        ws.start_handshake(host, port, parts.path or "/ws", MSGPACK.subprotocol)
        try:
            await asyncio.wait_for(ws.opened(), 5)
            ws.send(_encode(f.Connect(id=0, token=self.token, resume=self._resume or None)))
            opcode, payload = await ws.recv(5)
            frame = MSGPACK.decode(payload)
            if opcode != OP_BINARY or not isinstance(frame, f.Connected):
                raise ConnectionError(f"connect answered with {frame}")
        except BaseException:
            ws.close()
            raise
        self._resume = frame.resume
        self.gateway = frame.gw
        self._down = ws.down
        ws.on_text = self._on_raw
        self._ws = ws
        self._up.set()
        # Frames that came right behind `connected` are already queued: dispatch them.
        while ws.queued():
            op, data = ws.take()
            self._on_raw(ws, op, data)

    def _close_of(self) -> tuple[int, str]:
        ws = self._ws
        text = ws.close_reason if ws is not None else ""
        prefix = "closed by server: "
        if text.startswith(prefix):
            code, _, reason = text[len(prefix) :].partition(" ")
            with contextlib.suppress(ValueError):
                return int(code), reason
        return 1006, text

    def _lost(self) -> None:
        self._up.clear()
        for sub in self.subs.values():
            sub.current = None
        waiting, self._waiting = self._waiting, {}
        self._opening.clear()
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            self._ws.close()
        self._down.set()
        for task in [self._supervisor, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def kill_connection(self) -> None:
        """Drop the socket (a network failure: the gateway sees no close)."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    def pause_reading(self) -> None:
        """Stop reading the socket, as a stalled browser tab does."""
        if self._ws is not None and self._ws.transport is not None:
            self.paused = True
            self._ws.transport.pause_reading()

    def resume_reading(self) -> None:
        self.paused = False
        self.gateway = ""
        """The gateway serving the current (or last) connection."""
        if self._ws is not None and self._ws.transport is not None:
            with contextlib.suppress(Exception):
                self._ws.transport.resume_reading()

    # --- frames ----------------------------------------------------------------------------
    def _on_raw(self, ws: RawWs, opcode: int, payload: bytes) -> bool:
        if ws is not self._ws or opcode != OP_BINARY:
            return True
        # Deliveries are most frames: read them without building a frame object.
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        if isinstance(obj, dict) and obj.get("op") == "message":
            sub = self.subs.get(obj.get("ch", ""))
            seq = obj.get("seq")
            if sub is not None and sub.current is not None and isinstance(seq, int):
                self._accept(sub, seq, obj.get("data"))
            return True
        frame = MSGPACK.decode(payload)
        ref = frame.ref if isinstance(frame, f.Error) else getattr(frame, "id", None)
        if isinstance(ref, int):
            channel = self._opening.pop(ref, None)
            if channel is not None and isinstance(frame, f.Ack):
                self._opened(channel, frame)
            waiter = self._waiting.pop(ref, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        elif isinstance(frame, f.Unsubscribed):
            sub = self.subs.get(frame.ch)
            if sub is not None and sub.wanted and frame.code == 503:
                sub.current = None
                self._background(self._subscribe_again(sub))
        return True

    def _opened(self, channel: str, ack: f.Ack) -> None:
        sub = self.subs.get(channel)
        if sub is None:
            return
        since = (
            sub.position.seq
            if sub.position is not None and sub.kind is ChannelKind.EVENTS
            else None
        )
        rnd = Round(channel, since, ack.seq, ack.recovered)
        sub.rounds.append(rnd)
        sub.current = rnd
        if ack.epoch is None or sub.kind is not ChannelKind.EVENTS:
            return
        if ack.recovered is False or sub.position is None or sub.position.epoch != ack.epoch:
            sub.position = f.Position(ack.seq or 0, ack.epoch)

    def _accept(self, sub: Sub, seq: int, data: Any) -> None:
        assert sub.current is not None
        sub.current.got.append((seq, data))
        self.changed.set()
        if sub.kind is ChannelKind.EVENTS:
            pos = sub.position
            if pos is not None and seq > pos.seq:
                sub.position = f.Position(seq, pos.epoch)
        elif sub.last is None or seq > sub.last[0]:
            sub.last = (seq, data)

    # --- requests ----------------------------------------------------------------------------
    async def call(self, make: Any, timeout_s: float = 30.0, channel: str | None = None) -> Answer:
        """Send one request on the current connection and wait for its answer."""
        ws = self._ws
        started = time.monotonic()
        if ws is None or not self._up.is_set():
            return Answer(None, LOST, 0.0)
        ref = next(self._ids)
        waiter: asyncio.Future[f.Frame] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = waiter
        if channel is not None:
            self._opening[ref] = channel
        ws.send(_encode(make(ref)))
        try:
            frame = await asyncio.wait_for(waiter, timeout_s)
        except (ConnectionError, TimeoutError):
            self._waiting.pop(ref, None)
            self._opening.pop(ref, None)
            return Answer(None, LOST, time.monotonic() - started)
        took = time.monotonic() - started
        if isinstance(frame, f.Error):
            return Answer(frame, frame.code, took)
        return Answer(frame, 0, took)

    async def subscribe(self, channel: str) -> Sub:
        kind = parse_channel(channel).kind
        sub = self.subs.setdefault(channel, Sub(channel, kind))
        sub.wanted = True
        await self._subscribe_again(sub)
        return sub

    async def _subscribe_again(self, sub: Sub) -> Answer:
        """Subscribe from the position; a refusal the client should retry (503: the stream
        is unavailable for now) is retried shortly, as long as the connection lasts."""
        while True:
            since = sub.position if sub.kind is ChannelKind.EVENTS else None
            answer = await self.call(
                lambda ref, since=since: f.Subscribe(id=ref, ch=sub.channel, since=since),
                channel=sub.channel,
            )
            if answer.code in (0, LOST, 409) or not sub.wanted or self._stopped():
                return answer
            self.refusals[answer.code] += 1
            await asyncio.sleep(0.2)

    def _resubscribe_all(self) -> None:
        for sub in self.subs.values():
            if sub.wanted:
                self._background(self._subscribe_again(sub))

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resubscribe(self, channel: str) -> bool:
        """Unsubscribe and subscribe again from the position (a client coming back); True
        when both were answered."""
        sub = self.subs[channel]
        answer = await self.call(lambda ref: f.Unsubscribe(id=ref, ch=channel))
        if answer.code not in (0, 404):  # 404: not subscribed (a subscribe was refused)
            return False
        sub.current = None
        again = await self._subscribe_again(sub)
        return again.code == 0

    async def publish(self, channel: str, data: Any, mid: str) -> Answer:
        return await self.call(lambda ref: f.Publish(id=ref, ch=channel, data=data, mid=mid))

    async def request(self, channel: str, data: Any, cid: str, timeout_ms: int) -> Answer:
        return await self.call(
            lambda ref: f.Request(id=ref, ch=channel, data=data, cid=cid, timeout_ms=timeout_ms),
            timeout_s=timeout_ms / 1000 + 10,
        )


class _ProbeWs(RawWs):
    """A :class:`RawWs` that says when its connection is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.down = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.down.set()

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        super()._on_frame(fin, opcode, payload)
        if self.closed:
            self.down.set()

    def queued(self) -> bool:
        return bool(self._frames)

    def take(self) -> tuple[int, bytes]:
        return self._frames.popleft()


def _encode(frame: f.Frame) -> bytes:
    data = MSGPACK.encode(frame)
    assert isinstance(data, bytes)
    return data


def _delay_ms(reason: str) -> int:
    for item in reason.split(";"):
        key, _, value = item.strip().partition("=")
        if key == "delay_ms" and value.isdigit():
            return int(value)
    return 0
