"""One client connection: its state machine, its operations and its outbound path.

The lifecycle is one explicit :class:`State` with its allowed transitions in
:data:`TRANSITIONS`; nothing else decides whether a session may act. Inbound frames are
decoded by the shared codec and dispatched by op. Outbound, replies are written at once and
deliveries arrive from the hub already framed; the session only decides whether it can take
them (bounded by ``queue_bytes`` of unsent data) and what to do when it cannot: conflate
state channels, close with 4000 otherwise so the client resumes from its position.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from opentelemetry.trace import Span

from frys.gateway.auth import AuthError, Identity
from frys.gateway.hub import Fanout
from frys.gateway.telemetry import TS_SAMPLE_EVERY
from frys.gateway.wsframe import binary_frame, text_frame
from frys.shared.protocol import frames as f
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel
from frys.shared.protocol.codec import WireCodec, pack_data
from frys.shared.protocol.control import valid_cid
from frys.shared.protocol.errors import (
    ChannelError,
    CloseCode,
    DecodeError,
    ErrorCode,
)
from frys.shared.protocol.frames import ENC_TENSOR
from frys.shared.protocol.grants import Right
from frys.shared.tensor import KeyframeHeader, TensorError, read_header

if TYPE_CHECKING:
    from frys.gateway.node import Gateway

log = logging.getLogger("frys.gateway.session")


def _close_reason(reason: str) -> bytes:
    """A close reason within the 123 bytes a close frame allows, cut on a character."""
    data = reason.encode()
    if len(data) <= 120:
        return data
    return data[:120].decode("utf-8", "ignore").encode()


BULK_WATERMARK = 256 * 1024
"""Bytes of large frames allowed to wait in a socket buffer ahead of later traffic."""


class State(enum.Enum):
    AWAITING_CONNECT = "awaiting_connect"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.AWAITING_CONNECT: frozenset({State.CONNECTED, State.CLOSING, State.CLOSED}),
    State.CONNECTED: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class SubPhase(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"


@dataclass(slots=True)
class SubRecord:
    channel: Channel
    phase: SubPhase
    task: asyncio.Task[None] | None = None
    fanout: Fanout | None = None
    in_presence: bool = False
    """Whether this subscription counted the session as a member of its workflow."""


class RateLimiter:
    """Token bucket: ``rate`` per second, bursts up to ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int):
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Session:
    """A client connected over one WebSocket.

    Slotted, and its containers made on first use: an idle session is mostly this object,
    and a gateway holds tens of thousands of them."""

    __slots__ = (
        "_bulk",
        "_bulk_bytes",
        "_close_task",
        "_deadline",
        "_expiry",
        "_out",
        "_pump",
        "_tensor_streams",
        "backlogged",
        "binary",
        "caps",
        "close_code",
        "codec",
        "gw",
        "header_identity",
        "identity",
        "invalid_frames",
        "limiter",
        "name",
        "protocol",
        "queue_bytes",
        "sid",
        "stale",
        "state",
        "subs",
        "tasks",
        "transport",
        "ws",
    )

    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        request: web.Request,
        codec: WireCodec,
        header_identity: Identity | None,
    ):
        self.gw = gateway
        self.ws = ws
        self.codec = codec
        self.binary = codec.binary
        transport = request.transport
        assert transport is not None
        self.transport: asyncio.Transport = transport
        self.protocol: Any = request.protocol
        self.header_identity = header_identity
        self.identity: Identity | None = None
        self.sid = uuid.uuid4().hex
        self.state = State.AWAITING_CONNECT
        self.name = ""
        self.caps: tuple[str, ...] = ()
        self.subs: dict[Channel, SubRecord] = {}
        self.tasks: set[asyncio.Task[Any]] | None = None
        self.backlogged = False
        self.stale: set[Fanout] | None = None
        self.invalid_frames = 0
        self.close_code: int | None = None
        self.queue_bytes = gateway.config.queue_bytes
        self.limiter: RateLimiter | None = None
        self._close_task: asyncio.Task[Any] | None = None
        self._out: list[bytes] | None = None
        self._bulk: deque[bytes] | None = None
        self._bulk_bytes = 0
        self._pump: asyncio.Task[Any] | None = None
        self._tensor_streams: set[tuple[Channel, int]] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        with contextlib.suppress(Exception):
            self.transport.set_write_buffer_limits(high=self.queue_bytes)

    # --- state ---------------------------------------------------------------------------
    def _enter(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"session {self.sid}: {self.state.value} → {new.value}")
        self.state = new

    # --- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.gw.config.connect_timeout_s, self._connect_deadline)
        try:
            async for msg in self.ws:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    self.gw.metrics.frames_in += 1
                    self.gw.metrics.bytes_in += len(msg.data)
                    await self._on_frame(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
                if self.state in (State.CLOSING, State.CLOSED):
                    break
        finally:
            await self._cleanup()

    async def _on_frame(self, data: str | bytes) -> None:
        try:
            frame = self.codec.decode_client(data)
        except DecodeError as exc:
            if self.state is State.AWAITING_CONNECT:
                self.close_soon(CloseCode.BAD_CONNECT, exc.reason)
                return
            self._bad_frame(exc.code, exc.reason, exc.ref)
            return
        if self.state is State.AWAITING_CONNECT:
            if not isinstance(frame, f.Connect):
                self.close_soon(CloseCode.BAD_CONNECT, "first frame must be connect")
                return
            self._on_connect(frame)
            return
        if self.state is not State.CONNECTED:
            return
        try:
            await self._dispatch(frame)
        except Exception:
            log.exception("session %s: %s failed", self.sid, type(frame).__name__)
            self.error(ErrorCode.INTERNAL, "internal error", getattr(frame, "id", None))

    async def _dispatch(self, frame: f.Frame) -> None:
        match frame:
            case f.Publish():
                await self._on_publish(frame)
            case f.Subscribe():
                self._on_subscribe(frame)
            case f.Unsubscribe():
                await self._on_unsubscribe(frame)
            case f.Request():
                self._on_request(frame)
            case f.Ping():
                self.send(f.Pong(id=frame.id))
            case f.Refresh():
                await self._on_refresh(frame)
            case f.PresenceQuery():
                self._spawn(self.gw.presence.query(self, frame))
            case f.Outcome():
                self._spawn(self.gw.control.outcome(self, frame))
            case f.Resync():
                self._on_resync(frame)
            case f.Stats():
                self._on_stats(frame)
            case f.Connect():
                self.error(ErrorCode.BAD_REQUEST, "already connected", frame.id)
            case _:
                self.error(ErrorCode.UNKNOWN_OP, f"{frame.OP} is not a client op", None)

    def _bad_frame(self, code: ErrorCode, reason: str, ref: int | None) -> None:
        self.invalid_frames += 1
        self.error(code, reason, ref)
        if self.invalid_frames > self.gw.config.max_invalid_frames:
            self.close_soon(CloseCode.POLICY_VIOLATION, "too many invalid frames")

    # --- connect, refresh, expiry ------------------------------------------------------
    def _on_connect(self, frame: f.Connect) -> None:
        try:
            if frame.token:
                identity = self.gw.verifier.verify(frame.token)
            elif self.header_identity is not None:
                identity = self.header_identity
            else:
                raise AuthError("token required")
        except AuthError as exc:
            self.close_soon(CloseCode.UNAUTHORIZED, exc.reason)
            return
        if frame.resume:
            resumed = self.gw.resume_tokens.check(frame.resume, identity.sub)
            if resumed is not None:
                self.sid = resumed
        self.identity = identity
        self.name = frame.name or ""
        self.caps = frame.caps
        self._enter(State.CONNECTED)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._schedule_expiry()
        cfg = self.gw.config
        self.send(
            f.Connected(
                id=frame.id,
                sid=self.sid,
                gw=cfg.gateway_id,
                limits={
                    "max_frame_bytes": cfg.max_frame_bytes,
                    "queue_bytes": cfg.queue_bytes,
                    "max_subscriptions": cfg.max_subscriptions,
                    "publish_rate_per_s": int(cfg.publish_rate_per_s),
                    "ping_interval_ms": int(cfg.ping_interval_s * 1000),
                    "request_timeout_ms": cfg.request_timeout_ms,
                    "max_request_timeout_ms": cfg.max_request_timeout_ms,
                },
                resume=self.gw.resume_tokens.issue(self.sid, identity.sub),
                exp=identity.exp,
            )
        )
        self.gw.on_connected(self)

    def _connect_deadline(self) -> None:
        if self.state is State.AWAITING_CONNECT:
            self.close_soon(CloseCode.CONNECT_TIMEOUT, "no connect frame in time")

    def _schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        assert self.identity is not None
        if self.identity.exp is not None:
            delay = max(0.0, self.identity.exp + self.gw.config.jwt_leeway_s - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        if self.state is State.CONNECTED:
            self.close_soon(CloseCode.TOKEN_EXPIRED, "token expired")

    async def _on_refresh(self, frame: f.Refresh) -> None:
        assert self.identity is not None
        try:
            identity = self.gw.verifier.verify(frame.token)
        except AuthError as exc:
            self.error(ErrorCode.UNAUTHORIZED, exc.reason, frame.id)
            return
        if identity.sub != self.identity.sub:
            self.error(ErrorCode.UNAUTHORIZED, "refresh token is for another subject", frame.id)
            return
        self.identity = identity
        self._schedule_expiry()
        for channel in list(self.subs):
            if not identity.grants.allows(channel, Right.SUBSCRIBE):
                await self._drop_subscription(channel)
                self.send(
                    f.Unsubscribed(
                        ch=channel.name, code=ErrorCode.FORBIDDEN, reason="right revoked"
                    )
                )
        self.send(f.Ack(id=frame.id, exp=identity.exp))

    # --- channels ------------------------------------------------------------------------
    def _channel(self, name: str, right: Right, ref: int) -> Channel | None:
        try:
            channel = parse_channel(name)
        except ChannelError as exc:
            self.error(ErrorCode.INVALID_CHANNEL, str(exc), ref)
            return None
        assert self.identity is not None
        if not self.identity.grants.allows(channel, right):
            self.error(ErrorCode.FORBIDDEN, f"no {right.value} right on {channel}", ref)
            return None
        return channel

    def _on_subscribe(self, frame: f.Subscribe) -> None:
        channel = self._channel(frame.ch, Right.SUBSCRIBE, frame.id)
        if channel is None:
            return
        if channel.kind is ChannelKind.CONTROL:
            self.error(ErrorCode.NOT_ALLOWED, "control channels take requests only", frame.id)
            return
        if channel in self.subs:
            self.error(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel}", frame.id)
            return
        if len(self.subs) >= self.gw.config.max_subscriptions:
            self.error(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions", frame.id)
            return
        record = SubRecord(channel, SubPhase.PENDING)
        self.subs[channel] = record
        self.gw.metrics.subscriptions += 1
        record.task = self._spawn(self._subscribe(record, frame))

    async def _subscribe(self, record: SubRecord, frame: f.Subscribe) -> None:
        channel = record.channel
        gw = self.gw
        catch_up = channel.kind is ChannelKind.EVENTS and frame.since is not None
        try:
            fan = await gw.hub.join(channel, self, catching_up=catch_up)
        except Exception as exc:
            self._forget_sub(channel)
            self.error(ErrorCode.UNAVAILABLE, f"cannot subscribe: {exc}", frame.id)
            return
        record.fanout = fan
        if self.subs.get(channel) is not record or self.state is not State.CONNECTED:
            await gw.hub.leave(channel, self)
            return
        if channel.kind is ChannelKind.EVENTS:
            if not await self._subscribe_events(record, fan, frame):
                return
        elif channel.kind is ChannelKind.STATE:
            record.phase = SubPhase.ACTIVE
            self.send(f.Ack(id=frame.id, seq=fan.last_seq, epoch=gw.bus.epochs.get(channel.kind)))
            snapshot = fan.snapshot_frame(self.binary)
            if snapshot is not None:
                self._write(snapshot)
            fan.tensor_joined(self)
        else:
            record.phase = SubPhase.ACTIVE
            self.send(f.Ack(id=frame.id))
            fan.tensor_joined(self)
        if channel.workflow is not None and self.subs.get(channel) is record:
            record.in_presence = True
            await gw.presence.joined(self, channel)

    async def _subscribe_events(self, record: SubRecord, fan: Fanout, frame: f.Subscribe) -> bool:
        """Answer an events subscription, replaying history after ``since``; False when
        the subscription did not go through."""
        gw = self.gw
        epoch = gw.bus.epochs.get(ChannelKind.EVENTS, "")
        since = frame.since
        if since is None:
            record.phase = SubPhase.ACTIVE
            self.send(f.Ack(id=frame.id, seq=fan.last_seq, epoch=epoch))
            return True
        try:
            first, _last, epoch = await gw.bus.stream_bounds(gw.subjects.events_stream)
            gw.bus.epochs[ChannelKind.EVENTS] = epoch
            recovered = since.epoch == epoch and since.seq + 1 >= first
            replay = []
            if recovered:
                replay = await gw.bus.stored_after(
                    gw.subjects.events_stream, gw.subjects.channel(record.channel), since.seq
                )
        except Exception as exc:
            # Not _drop_subscription: that would cancel this very task before answering.
            if self.subs.get(record.channel) is record:
                self._forget_sub(record.channel)
                await gw.hub.leave(record.channel, self)
            self.error(ErrorCode.UNAVAILABLE, f"history unavailable: {exc}", frame.id)
            return False
        if self.subs.get(record.channel) is not record:
            return False
        after = since.seq if recovered else fan.last_seq
        if replay:
            after = replay[-1].seq
        # Everything up to `after` is either replayed now or deliberately skipped
        # (recovered=false); the fanout then hands over from `after`.
        self.send(
            f.Ack(
                id=frame.id, seq=after if not recovered else None, epoch=epoch, recovered=recovered
            )
        )
        if replay:
            from frys.gateway.hub import _entry_of

            self._write(fan.frames([_entry_of(m) for m in replay], self.binary))
        record.phase = SubPhase.ACTIVE
        fan.go_live(self, after)
        return True

    async def _on_unsubscribe(self, frame: f.Unsubscribe) -> None:
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            self.error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)
            return
        if channel not in self.subs:
            self.error(ErrorCode.NOT_FOUND, f"not subscribed to {channel}", frame.id)
            return
        await self._drop_subscription(channel)
        self.send(f.Ack(id=frame.id))

    def _forget_sub(self, channel: Channel) -> SubRecord | None:
        record = self.subs.pop(channel, None)
        if record is not None:
            self.gw.metrics.subscriptions -= 1
        return record

    async def _drop_subscription(self, channel: Channel) -> None:
        record = self._forget_sub(channel)
        if record is None:
            return
        if record.task is not None and not record.task.done():
            record.task.cancel()
        if record.fanout is not None and self.stale is not None:
            self.stale.discard(record.fanout)
        await self.gw.hub.leave(channel, self)
        if record.in_presence:
            await self.gw.presence.left(self, channel)

    # --- publish and request -------------------------------------------------------------
    def _headers(self, tc: f.TraceContext | None) -> dict[str, str]:
        assert self.identity is not None
        headers = {hdr.FROM: self.identity.sub}
        if tc is not None:
            headers[hdr.TRACEPARENT] = tc.traceparent
            if tc.tracestate:
                headers[hdr.TRACESTATE] = tc.tracestate
        return headers

    async def _on_publish(self, frame: f.Publish) -> None:
        channel = self._channel(frame.ch, Right.PUBLISH, frame.id)
        if channel is None:
            return
        if channel.kind in (ChannelKind.CONTROL, ChannelKind.PRESENCE):
            self.error(
                ErrorCode.NOT_ALLOWED, f"{channel.kind.value} channels take no publish", frame.id
            )
            return
        if not self._rate_ok():
            self.error(ErrorCode.LIMIT_EXCEEDED, "publish rate exceeded", frame.id)
            return
        tensor_stream: int | None = None
        if frame.enc is not None:
            tensor_stream = self._tensor_stream(channel, frame)
            if tensor_stream is None:
                return
        payload = pack_data(frame.data)
        gw = self.gw
        if len(payload) > gw.bus.max_payload:
            self.error(
                ErrorCode.TOO_LARGE,
                f"{len(payload)} bytes exceed the broker's {gw.bus.max_payload}; send smaller "
                "chunks",
                frame.id,
            )
            return
        headers = self._headers(frame.tc)
        if frame.mid is not None:
            headers[hdr.MSG_ID] = frame.mid
        gw.publish_count += 1
        if gw.publish_count % TS_SAMPLE_EVERY == 0:
            headers[hdr.TS] = str(time.time_ns())
        subject = gw.subjects.channel(channel)
        span = None
        tel = gw.telemetry
        if tel.tracing:
            span = tel.publish_span(
                f"publish {channel.kind.value}",
                frame.tc,
                headers,
                {
                    "frys.channel": channel.name,
                    "frys.session": self.sid,
                    "frys.from": headers[hdr.FROM],
                    "messaging.system": "nats",
                    "messaging.destination.name": subject,
                },
            )
        gw.metrics.publishes += 1
        gw.metrics.publish_bytes += len(payload)
        gw.metrics.publishes_by_kind[channel.kind.value] += 1
        gw.on_publish(self, channel)
        if tensor_stream is not None:
            headers[hdr.ENC] = ENC_TENSOR
            if self._tensor_streams is None:
                self._tensor_streams = set()
            self._tensor_streams.add((channel, tensor_stream))
            gw.tensor_publishers[(channel, tensor_stream)].add(self)
            if channel.kind is not ChannelKind.EVENTS:
                # Live tensor frames pass the stores: subscribers get them from relays.
                subject = gw.subjects.bulk(channel)
        if channel.kind is ChannelKind.EVENTS or (
            channel.kind is ChannelKind.STATE and tensor_stream is None
        ):
            try:
                future = await gw.bus.publish_stored(subject, payload, headers)
            except Exception as exc:
                self.error(ErrorCode.UNAVAILABLE, f"not stored: {type(exc).__name__}", frame.id)
                if span is not None:
                    span.end()
                return
            gw.pending_acks += 1
            future.add_done_callback(lambda fut: self._stored_ack(fut, frame.id, span))
            return
        try:
            if not gw.bus.ready:
                self.error(ErrorCode.UNAVAILABLE, "broker unavailable", frame.id)
                return
            await gw.bus.publish(subject, payload, headers)
            self.send(f.Ack(id=frame.id))
        finally:
            if span is not None:
                span.end()

    def _rate_ok(self) -> bool:
        limiter = self.limiter
        if limiter is None:
            cfg = self.gw.config
            limiter = self.limiter = RateLimiter(cfg.publish_rate_per_s, cfg.publish_burst)
        return limiter.take()

    def _mark_stale(self, fanout: Fanout) -> None:
        if self.stale is None:
            self.stale = set()
        self.stale.add(fanout)

    def _tensor_stream(self, channel: Channel, frame: f.Publish) -> int | None:
        """Check a tensor publish; its stream id, or ``None`` after answering an error."""
        if frame.enc != ENC_TENSOR:
            self.error(ErrorCode.BAD_REQUEST, f"unknown enc {frame.enc!r}", frame.id)
            return None
        if not isinstance(frame.data, bytes):
            self.error(ErrorCode.BAD_REQUEST, "a tensor frame is binary data", frame.id)
            return None
        try:
            header = read_header(frame.data)
        except TensorError as exc:
            self.error(ErrorCode.BAD_REQUEST, f"not a tensor frame: {exc}", frame.id)
            return None
        if channel.kind is ChannelKind.EVENTS and not isinstance(header, KeyframeHeader):
            self.error(
                ErrorCode.BAD_REQUEST, "events carry whole tensors (keyframes) only", frame.id
            )
            return None
        return header.stream_id

    def _on_resync(self, frame: f.Resync) -> None:
        record = self._active(frame.ch, frame.id)
        if record is None or record.fanout is None:
            return
        served = record.fanout.tensor_resync(self, frame.stream)
        self.send(f.Ack(id=frame.id, recovered=served))

    def _on_stats(self, frame: f.Stats) -> None:
        record = self._active(frame.ch, frame.id)
        if record is None or record.fanout is None:
            return
        self.send(f.Ack(id=frame.id, data={"streams": record.fanout.relay.stats()}))

    def _active(self, name: str, ref: int) -> SubRecord | None:
        try:
            channel = parse_channel(name)
        except ChannelError as exc:
            self.error(ErrorCode.INVALID_CHANNEL, str(exc), ref)
            return None
        record = self.subs.get(channel)
        if record is None or record.phase is not SubPhase.ACTIVE:
            self.error(ErrorCode.NOT_FOUND, f"not subscribed to {channel}", ref)
            return None
        return record

    def _stored_ack(self, future: asyncio.Future[Any], ref: int, span: Span | None) -> None:
        self.gw.pending_acks -= 1
        if span is not None:
            if not future.cancelled() and future.exception() is None:
                span.set_attribute("frys.seq", int(future.result().seq))
            span.end()
        if self.state is not State.CONNECTED:
            return
        if future.cancelled():
            self.error(ErrorCode.UNAVAILABLE, "not stored: cancelled", ref)
            return
        exc = future.exception()
        if exc is not None:
            code = (
                ErrorCode.TIMEOUT
                if isinstance(exc, asyncio.TimeoutError)
                else ErrorCode.UNAVAILABLE
            )
            self.error(code, f"not stored: {type(exc).__name__}", ref)
            return
        ack = future.result()
        self.send(f.Ack(id=ref, seq=int(ack.seq), dup=True if ack.duplicate else None))

    def _on_request(self, frame: f.Request) -> None:
        channel = self._channel(frame.ch, Right.CONTROL, frame.id)
        if channel is None:
            return
        if channel.kind is not ChannelKind.CONTROL:
            self.error(ErrorCode.NOT_ALLOWED, "requests go to wf:{id}:control", frame.id)
            return
        if frame.cid is not None and not valid_cid(frame.cid):
            self.error(ErrorCode.BAD_REQUEST, "cid must match [A-Za-z0-9_=-]{1,128}", frame.id)
            return
        if not self._rate_ok():
            self.error(ErrorCode.LIMIT_EXCEEDED, "request rate exceeded", frame.id)
            return
        self.gw.metrics.requests += 1
        self._spawn(self.gw.control.request(self, channel, frame, self._headers(frame.tc)))

    # --- outbound -----------------------------------------------------------------------
    def send(self, frame: f.Frame) -> None:
        """Encode and write one frame now (replies, acks, errors)."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        payload = self.codec.encode(frame)
        if isinstance(payload, str):
            self._write(text_frame(payload))
        else:
            self._write(binary_frame(payload))

    def error(self, code: ErrorCode, reason: str, ref: int | None, ch: str | None = None) -> None:
        self.gw.metrics.errors[int(code)] += 1
        self.send(f.Error(code=int(code), reason=reason, ref=ref, ch=ch))

    def _write(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > self.queue_bytes and not self.backlogged:
            self._on_backlog()

    def deliver(self, blob: bytes, fanout: Fanout) -> None:
        """Hub hot path: the same framed bytes go to every subscriber of ``fanout``.

        Deliveries of one event-loop tick are gathered per session and written with one
        ``transport.write`` at the end of the tick (:meth:`flush_out`), however many
        channels they came from."""
        if self.state is not State.CONNECTED:
            return
        if self.backlogged:
            if fanout.kind is ChannelKind.STATE:
                self._mark_stale(fanout)
                self.gw.metrics.conflated += 1
            else:
                self._slow_close()
            return
        out = self._out
        if out is None:
            self._out = [blob]
            self.gw.hub.add_writer(self)
        else:
            out.append(blob)

    def flush_out(self) -> None:
        out, self._out = self._out, None
        if not out or self.state is not State.CONNECTED:
            return
        transport = self.transport
        if transport.is_closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        transport.write(data)
        metrics = self.gw.metrics
        metrics.writes += 1
        metrics.bytes_out += len(data)
        if transport.get_write_buffer_size() > self.queue_bytes:
            self._on_backlog()

    def tensor_ready(self) -> bool:
        """Whether a new tensor frame can be queued (the relay asks at each frame's start;
        the chunks of a frame once started are all sent)."""
        return (
            self.state is State.CONNECTED
            and not self.backlogged
            and self._bulk_bytes <= self.queue_bytes
        )

    def tensor_conflated(self, fanout: Fanout) -> None:
        """A tensor frame was skipped: resynchronise with a keyframe once caught up."""
        self._mark_stale(fanout)
        self.gw.metrics.conflated += 1
        if not self.backlogged and self.state is State.CONNECTED:
            self._on_backlog()

    def deliver_tensor(self, frame: bytes, fanout: Fanout) -> None:
        """A tensor frame or chunk for this subscriber alone. Large frames are paced: at
        most :data:`BULK_WATERMARK` bytes wait in the socket ahead of anything sent later,
        so a 64 MB tensor does not hold up a small event."""
        if self.state is not State.CONNECTED:
            return
        metrics = self.gw.metrics
        metrics.writes += 1
        metrics.bytes_out += len(frame)
        if not self._bulk and self.transport.get_write_buffer_size() <= BULK_WATERMARK:
            self._write(frame)
            return
        if self._bulk is None:
            self._bulk = deque()
        self._bulk.append(frame)
        self._bulk_bytes += len(frame)
        if self._pump is None or self._pump.done():
            self._pump = self._spawn(self._pump_bulk())

    async def _pump_bulk(self) -> None:
        transport = self.transport
        protocol = self.protocol
        bulk = self._bulk
        assert bulk is not None
        with contextlib.suppress(Exception):
            transport.set_write_buffer_limits(high=BULK_WATERMARK, low=BULK_WATERMARK // 4)
            # The kernel's own send buffer (autotuned up to megabytes) would otherwise sit
            # ahead of every later small message too.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BULK_WATERMARK)
        try:
            while bulk:
                while transport.get_write_buffer_size() > BULK_WATERMARK:
                    if transport.is_closing():
                        return
                    if getattr(protocol, "_paused", False):
                        await protocol._drain_helper()
                    else:
                        await asyncio.sleep(0.001)
                frame = bulk.popleft()
                self._bulk_bytes -= len(frame)
                self._write(frame)
        finally:
            with contextlib.suppress(Exception):
                transport.set_write_buffer_limits(high=self.queue_bytes)

    def on_fanout_failed(self, fanout: Fanout, reason: str) -> None:
        """The channel's stream went away under the subscription (recreated): tell the
        client, which resubscribes and learns from ``recovered`` what it missed."""
        if fanout.channel in self.subs:
            self.send(
                f.Unsubscribed(ch=fanout.channel.name, code=ErrorCode.UNAVAILABLE, reason=reason)
            )
            self._spawn(self._drop_subscription(fanout.channel))

    def _on_backlog(self) -> None:
        self.backlogged = True
        self._spawn(self._wait_drained())

    async def _wait_drained(self) -> None:
        """Wait until the socket takes data again, then send each conflated state value."""
        protocol = self.protocol
        while self.transport.get_write_buffer_size() > self.queue_bytes // 4 or self._bulk:
            if self.transport.is_closing():
                return
            if getattr(protocol, "_paused", False):
                await protocol._drain_helper()
            else:
                await asyncio.sleep(0.005)
        self.backlogged = False
        stale, self.stale = self.stale or set(), None
        for fan in stale:
            if fan.channel not in self.subs:
                continue
            frame = fan.snapshot_frame(self.binary)
            if frame is not None:
                self._write(frame)
            if fan._relay is not None and fan._relay.stale_for(self):
                fan.tensor_resync(self)

    def _slow_close(self) -> None:
        if self.state is State.CONNECTED:
            self.gw.metrics.slow_disconnects += 1
            self.close_soon(CloseCode.SLOW_CONSUMER, "outbound queue full")
            # The close frame sits behind a full buffer; do not wait for the reader.
            asyncio.get_running_loop().call_later(1.0, self._abort)

    def _abort(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    # --- closing -------------------------------------------------------------------------
    def close_soon(self, code: CloseCode | int, reason: str) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self._enter(State.CLOSING)
        self.close_code = int(code)
        self.gw.metrics.closes[int(code)] += 1
        self._close_task = asyncio.get_running_loop().create_task(
            self.ws.close(code=int(code), message=_close_reason(reason))
        )

    def migrate(self, url: str, reason: str, delay_ms: int | None = None) -> None:
        if self.state is not State.CONNECTED:
            return
        self.gw.metrics.migrations += 1
        self.send(f.Migrate(url=url, reason=reason, delay_ms=delay_ms))
        self.close_soon(CloseCode.MIGRATED, reason)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self.tasks is not None:
            self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s task failed", self.sid, exc_info=task.exception())

    async def _cleanup(self) -> None:
        if self.state is not State.CLOSED:
            if self.state is not State.CLOSING:
                self._enter(State.CLOSING)
            self._enter(State.CLOSED)
        if self._deadline is not None:
            self._deadline.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        current = asyncio.current_task()
        for task in list(self.tasks or ()):
            if task is not current and not task.done():
                task.cancel()
        for channel in list(self.subs):
            with contextlib.suppress(Exception):
                await self._drop_subscription(channel)
        for key in self._tensor_streams or ():
            publishers = self.gw.tensor_publishers.get(key)
            if publishers is not None:
                publishers.discard(self)
                if not publishers:
                    del self.gw.tensor_publishers[key]
        self._bulk = None
        close = self._close_task or asyncio.get_running_loop().create_task(self.ws.close())
        # The close handshake waits for the client's reply; never longer than this.
        await asyncio.wait({close}, timeout=2.0)
        if not close.done():
            close.cancel()
            self._abort()
        elif not close.cancelled() and close.exception() is not None:
            log.debug("session %s close failed: %s", self.sid, close.exception())
        self.gw.on_closed(self)
