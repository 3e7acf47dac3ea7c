"""One client connection: the aiohttp glue around a :class:`~frys.gateway.core.SessionCore`.

The core decides; this module does. It reads WebSocket messages, decodes them with the
shared codec, feeds them to the core and carries out the actions it returns, in order:
frames go to the connection's :class:`~frys.gateway.writer.ClientWriter` (the only path
to the socket), subscriptions to the hub and the history reader, publishes to the
publisher, commands to control, presence to presence. Each collaborator is handed over on
its own in :class:`Services`; no part of the session sees the whole gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from frys.gateway import core as c
from frys.gateway.auth import Identity, ResumeTokens
from frys.gateway.broker import History
from frys.gateway.control import Control
from frys.gateway.hub import Fanout, Hub
from frys.gateway.metrics import Metrics
from frys.gateway.optimiser.links import LinkEstimator
from frys.gateway.placement import GatewayPlacement
from frys.gateway.presence import Presence, member_record
from frys.gateway.publisher import DATA_ERRORS, Message, Published, Publisher, PublishError
from frys.gateway.tensors import TensorPublishers
from frys.gateway.wire import wire_class
from frys.gateway.writer import ClientWriter
from frys.shared.protocol import frames as f
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.codec import WireCodec, pack_data
from frys.shared.protocol.errors import CloseCode, DecodeError, ErrorCode

log = logging.getLogger("frys.gateway.session")

FINAL_CLOSES = frozenset(
    {
        int(WSCloseCode.OK),
        int(CloseCode.POLICY_VIOLATION),
        int(CloseCode.BAD_CONNECT),
        int(CloseCode.UNAUTHORIZED),
        int(CloseCode.TOKEN_EXPIRED),
        1002,
        1007,
        1009,
    }
)
"""Closes after which a session does not come back (docs/protocol.md §8.2): its presence
ends at once. After any other, it may resume, and its leave waits for the grace."""


_last_failure_log = 0.0


def valid_close_code(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a close frame (RFC 6455 §7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


FRAMES_PER_TURN = 16
"""Frames one session handles before yielding to the event loop."""

MAX_IN_FLIGHT = 512
"""Stored publishes one session may have awaiting the stream's confirmation."""

SLOW_CLOSE_GRACE_S = 0.5
"""How long a slow reader whose backlog reached the kernel gets to read the close frame."""


def _on_loopback(transport: asyncio.Transport) -> bool:
    """Whether the peer is on this host (a loopback address)."""
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


def _close_reason(reason: str) -> bytes:
    """A close reason within the 123 bytes a close frame allows, cut on a character."""
    data = reason.encode()
    if len(data) <= 120:
        return data
    return data[:120].decode("utf-8", "ignore").encode()


class Expiries:
    """When the sessions' tokens expire, by whole second of the event loop's clock.

    One timer per second in which some token expires instead of one per session: with
    uvloop a timer handle costs about half a kilobyte, a set entry a few dozen bytes, and
    tokens minted together (a deploy, a reconnect wave) share their second. A session is
    closed up to one second after its ``exp`` (plus the configured leeway).
    """

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[asyncio.TimerHandle, set[Session]]] = {}

    def add(self, session: Session, delay_s: float) -> int:
        """Expire ``session`` ``delay_s`` from now; the key to :meth:`remove` it with."""
        loop = asyncio.get_running_loop()
        key = math.ceil(loop.time() + delay_s)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = (loop.call_at(key, self._fire, key), set())
        bucket[1].add(session)
        return key

    def remove(self, session: Session, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        bucket[1].discard(session)
        if not bucket[1]:
            bucket[0].cancel()
            del self._buckets[key]

    def _fire(self, key: int) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is not None:
            for session in bucket[1]:
                session.token_expired()


@dataclass(frozen=True, slots=True)
class Services:
    """The gateway's parts a session uses, each on its own."""

    limits: c.CoreLimits
    verify: Callable[[str], Identity]
    resume: ResumeTokens
    metrics: Metrics
    hub: Hub
    history: History
    publisher: Publisher
    control: Control
    presence: Presence
    placement: GatewayPlacement
    tensor_publishers: TensorPublishers
    connect_timeout_s: float
    on_closed: Callable[[Session], None]
    expiries: Expiries = field(default_factory=Expiries)


class Session:
    """A client connected over one WebSocket (see the module docstring)."""

    __slots__ = (
        "_close_task",
        "_deadline",
        "_expiry",
        "_svc",
        "core",
        "fanouts",
        "in_flight",
        "in_presence",
        "pending",
        "remote_close",
        "tasks",
        "tensor_keys",
        "writer",
        "ws",
    )

    def __init__(
        self,
        services: Services,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        codec: WireCodec,
        header_identity: Identity | None,
    ):
        self._svc = services
        self.ws = ws
        self.core = c.SessionCore(
            services.limits, services.verify, services.resume, header_identity
        )
        self.writer = ClientWriter(
            transport,
            codec,
            services.metrics,
            services.hub.add_writer,
            services.limits.queue_bytes,
            self._slow,
        )
        self.fanouts: dict[Channel, Fanout] = {}
        self.in_flight = 0
        """Stored publishes of this session sent and not yet confirmed."""
        self.pending: dict[Channel, asyncio.Task[Any]] | None = None
        """Subscriptions being joined (cancelled by an unsubscribe or the end)."""
        self.in_presence: set[Channel] | None = None
        self.tasks: set[asyncio.Task[Any]] | None = None
        self.tensor_keys: set[tuple[Channel, int]] | None = None
        self.remote_close: int | None = None
        self._close_task: asyncio.Task[Any] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._expiry: int | None = None
        """This session's key in :class:`Expiries`."""

    # --- what other parts read -----------------------------------------------------------
    @property
    def sid(self) -> str:
        return self.core.sid

    @property
    def identity(self) -> Identity | None:
        return self.core.identity

    @property
    def state(self) -> c.State:
        return self.core.state

    def channels(self) -> Iterable[Channel]:
        return self.core.subs.keys()

    # --- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._svc.connect_timeout_s, self._connect_deadline)
        burst = 0
        try:
            while True:
                msg = await self.ws.receive()
                kind = msg.type
                if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
                    burst += 1
                    if burst >= FRAMES_PER_TURN:
                        # Frames already buffered are taken without a pause: a client
                        # sending thousands at once lets every other session have a turn.
                        burst = 0
                        await asyncio.sleep(0)
                    await self._frame(msg.data)
                    # An idle connection waits in receive() for hours: its last message
                    # (a connect carries the whole token) is not kept alive meanwhile.
                    del msg
                elif kind is WSMsgType.CLOSE:
                    await self._closed_by_client(msg.data)
                    break
                elif kind in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                else:
                    del msg
                if self.core.state in (c.State.CLOSING, c.State.CLOSED):
                    break
        finally:
            if self.remote_close is None:
                self.remote_close = self.ws.close_code
            await self._cleanup()

    async def _frame(self, data: str | bytes) -> None:
        """One text or binary message: decode it, let the core decide, carry it out."""
        metrics = self._svc.metrics
        metrics.frames_in += 1
        metrics.bytes_in += len(data)
        try:
            frame: f.Frame | DecodeError = self.writer.codec.decode_client(data)
        except DecodeError as exc:
            frame = exc
        try:
            await self._apply(self.core.receive(frame))
        except Exception:
            self._failed(frame)

    async def _closed_by_client(self, code: object) -> None:
        """The client sent a close frame: answer it with its own code (RFC 6455 §5.5.1),
        or 1002 for a code no endpoint may send (1005, 1006, 1015, reserved ranges)."""
        given = code if isinstance(code, int) else 0
        self.remote_close = given or int(WSCloseCode.OK)
        if not self.writer.close():
            return
        if given == 0:
            reply = int(WSCloseCode.OK)
        elif valid_close_code(given):
            reply = given
        else:
            reply = int(WSCloseCode.PROTOCOL_ERROR)
        self._close_task = asyncio.get_running_loop().create_task(self.ws.close(code=reply))

    def _failed(self, frame: f.Frame | DecodeError) -> None:
        """An unexpected failure on one frame: 500 to the client, one log line at most a
        second (a client can trigger it at will; the log must not grow with it)."""
        global _last_failure_log
        now = time.monotonic()
        if now - _last_failure_log >= 1.0:
            _last_failure_log = now
            log.exception("session %s: %s failed", self.sid, type(frame).__name__)
        ref = getattr(frame, "id", None)
        if self.core.state is c.State.CONNECTED:
            self.send(f.Error(code=int(ErrorCode.INTERNAL), reason="internal error", ref=ref))

    async def _apply(self, actions: list[c.Action]) -> None:
        for action in actions:
            match action:
                case c.Send(frame):
                    self.send(frame)
                case c.Close(code, reason):
                    self._close(code, reason)
                case c.Connected():
                    self._connected(action)
                case c.Refreshed(expires_at):
                    self._schedule_expiry(expires_at)
                case c.StartSubscription(channel):
                    if self.pending is None:
                        self.pending = {}
                    self.pending[channel] = self._spawn(self._subscribe(action))
                case c.StopSubscription(channel):
                    await self._drop(channel, final=True)
                case c.Publish():
                    await self._publish(action)
                case c.Request():
                    self._svc.metrics.requests += 1
                    self._spawn(self._request(action))
                case c.FetchOutcome(channel, frame):
                    sub = self.identity.sub if self.identity is not None else ""
                    self._spawn(self._answer(self._svc.control.outcome(channel, frame, sub)))
                case c.QueryPresence(channel, ref):
                    self._spawn(self._presence(channel, ref))
                case c.Resync(channel, stream, ref):
                    fan = self.fanouts.get(channel)
                    if fan is not None:
                        served = fan.tensor_resync(self.writer, stream)
                        self.send(f.Ack(id=ref, recovered=served))
                case c.Stats(channel, ref):
                    fan = self.fanouts.get(channel)
                    if fan is not None:
                        data: dict[str, Any] = {"streams": fan.relay.stats()}
                        optimiser = self._svc.hub.optimiser
                        if optimiser is not None:
                            data["optimiser"] = optimiser.describe_channel(
                                channel, self.writer.wire, self.writer.link
                            )
                        self.send(f.Ack(id=ref, data=data))

    # --- outbound ------------------------------------------------------------------------
    def send(self, frame: f.Frame) -> None:
        if isinstance(frame, f.Error):
            self._svc.metrics.errors[frame.code] += 1
        self.writer.send(frame)

    def _close(self, code: int, reason: str) -> None:
        """Send the close frame; nothing is written after it (the writer refuses)."""
        if not self.writer.close():
            return
        self._svc.metrics.closes[code] += 1
        self._close_task = asyncio.get_running_loop().create_task(
            self.ws.close(code=code, message=_close_reason(reason))
        )

    def close_soon(self, code: CloseCode | int, reason: str) -> None:
        """The gateway ends this session (drain, slow reader)."""
        for action in self.core.close(code, reason):
            if isinstance(action, c.Close):
                self._close(action.code, action.reason)

    def migrate(self, url: str, reason: str, delay_ms: int | None = None) -> None:
        if self.core.state is not c.State.CONNECTED:
            return
        self._svc.metrics.migrations += 1
        self.send(f.Migrate(url=url, reason=reason, delay_ms=delay_ms))
        self.close_soon(CloseCode.MIGRATED, reason)

    def _slow(self) -> None:
        """A delivery the writer could neither take nor conflate: cut the session so the
        client resumes from its position (docs/protocol.md §5.5)."""
        if self.core.state is not c.State.CONNECTED:
            return
        self._svc.metrics.slow_disconnects += 1
        backlog = self.writer.transport.get_write_buffer_size()
        self.close_soon(CloseCode.SLOW_CONSUMER, "outbound queue full")
        if backlog:
            # The close frame would wait behind the backlog the reader is not reading:
            # cut at once, so the client notices now, reconnects and resumes.
            self.writer.abort()
        else:
            asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_S, self.writer.abort)

    # --- connect and expiry ------------------------------------------------------------
    def _connect_deadline(self) -> None:
        for action in self.core.connect_deadline():
            if isinstance(action, c.Close):
                self._close(action.code, action.reason)

    def _connected(self, action: c.Connected) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._schedule_expiry(action.expires_at)
        self._svc.placement.on_connected(self)
        self._set_wire()

    def _set_wire(self) -> None:
        """What the client decodes (``connect.codecs``) and where it sits decide the bytes
        it shares with other subscribers (:mod:`frys.gateway.wire`)."""
        optimiser = self._svc.hub.optimiser
        if optimiser is None or not self.core.codecs:
            return
        writer = self.writer
        local = optimiser.loopback_local and _on_loopback(writer.transport)
        writer.link = LinkEstimator(loopback=local)
        writer.wire = wire_class(writer.binary, self.core.codecs, writer.link.link)

    def _schedule_expiry(self, expires_at: float | None) -> None:
        expiries = self._svc.expiries
        if self._expiry is not None:
            expiries.remove(self, self._expiry)
            self._expiry = None
        if expires_at is not None:
            self._expiry = expiries.add(self, max(0.0, expires_at - time.time()))

    def token_expired(self) -> None:
        """The token's ``exp`` (and leeway) passed without a refresh."""
        self._expiry = None
        for action in self.core.expired():
            if isinstance(action, c.Close):
                self._close(action.code, action.reason)

    # --- subscriptions -------------------------------------------------------------------
    async def _subscribe(self, action: c.StartSubscription) -> None:
        try:
            await self._join(action)
        finally:
            if (
                self.pending is not None
                and self.pending.get(action.channel) is asyncio.current_task()
            ):
                del self.pending[action.channel]

    async def _join(self, action: c.StartSubscription) -> None:
        channel = action.channel
        svc = self._svc
        catch_up = action.since is not None
        try:
            fan = await svc.hub.join(
                channel,
                self.writer,
                catching_up=catch_up,
                on_failed=lambda reason: self._fanout_failed(channel, reason),
            )
        except Exception as exc:
            self.core.subscribe_failed(channel, action.sub)
            self.send(
                f.Error(
                    code=ErrorCode.UNAVAILABLE, reason=f"cannot subscribe: {exc}", ref=action.ref
                )
            )
            return
        if not self.core.current(channel, action.sub):
            await svc.hub.leave(channel, self.writer)
            return
        self.fanouts[channel] = fan
        if action.since is not None:
            if not await self._catch_up(action, fan, action.since):
                return
        else:
            self.core.subscribed(channel, action.sub)
            epoch = svc.history.epoch(channel.kind) if fan.stored else None
            self.send(
                f.Ack(
                    id=action.ref,
                    seq=fan.last_seq if fan.stored else None,
                    epoch=epoch,
                )
            )
            if channel.kind is ChannelKind.STATE:
                self.writer.write_state(fan)
            if channel.kind is not ChannelKind.EVENTS:
                fan.tensor_joined(self.writer)
        identity = self.core.identity
        if channel.workflow is not None and self.core.current(channel, action.sub) and identity:
            if self.in_presence is None:
                self.in_presence = set()
            self.in_presence.add(channel)
            member = member_record(
                self.sid, identity, self.core.name, self.core.caps, svc.limits.gateway_id
            )
            await svc.presence.joined(member, channel)

    async def _catch_up(self, action: c.StartSubscription, fan: Fanout, since: f.Position) -> bool:
        """Answer an events subscription with ``since``: history, then live, gap-free."""
        channel = action.channel
        svc = self._svc
        try:
            result = await svc.history.catch_up(channel, since, fan.floor(self.writer))
        except Exception as exc:
            if self.core.current(channel, action.sub):
                self.core.subscribe_failed(channel, action.sub)
                self.fanouts.pop(channel, None)
                await svc.hub.leave(channel, self.writer)
            self.send(
                f.Error(
                    code=ErrorCode.UNAVAILABLE, reason=f"history unavailable: {exc}", ref=action.ref
                )
            )
            return False
        if not self.core.subscribed(channel, action.sub):
            return False
        # Everything up to `after` is replayed now or deliberately skipped (recovered:
        # false); the fanout then hands over from `after`.
        self.send(
            f.Ack(
                id=action.ref,
                seq=None if result.recovered else result.after,
                epoch=result.epoch,
                recovered=result.recovered,
            )
        )
        # History goes out in batches paced by the socket, so a long replay never holds
        # more than about queue_bytes in memory on its way to a slow reader.
        writer = self.writer
        batch_bytes = max(1, svc.limits.queue_bytes // 2)
        replay = result.replay
        start = 0
        while start < len(replay):
            end, size = start, 0
            while end < len(replay) and (end == start or size < batch_bytes):
                size += len(replay[end].data)
                end += 1
            writer.write(fan.stored_frames(replay[start:end], writer.binary))
            start = end
            if start < len(replay) and not await writer.drained(svc.limits.queue_bytes // 2):
                return False
        fan.go_live(writer, result.after)
        return True

    async def _drop(self, channel: Channel, final: bool) -> None:
        """Release ``channel``: leave its fanout and, with its last channel of a workflow,
        the workflow's presence."""
        if self.pending is not None:
            joining = self.pending.pop(channel, None)
            if joining is not None and joining is not asyncio.current_task():
                joining.cancel()
        fan = self.fanouts.pop(channel, None)
        if fan is not None:
            self.writer.forget(fan)
        await self._svc.hub.leave(channel, self.writer)
        if self.in_presence is not None and channel in self.in_presence:
            self.in_presence.discard(channel)
            await self._svc.presence.left(self.sid, channel, final=final)

    def _fanout_failed(self, channel: Channel, reason: str) -> None:
        """The channel's stream went away under the subscription: tell the client, which
        subscribes again and learns from ``recovered`` what it missed."""
        if not self.core.drop(channel):
            return
        self.send(f.Unsubscribed(ch=channel.name, code=ErrorCode.UNAVAILABLE, reason=reason))
        self._spawn(self._drop(channel, final=True))

    # --- publish, request, presence ----------------------------------------------------
    async def _publish(self, action: c.Publish) -> None:
        frame = action.frame
        identity = self.core.identity
        assert identity is not None
        channel = action.channel
        if action.tensor_stream is not None:
            if self.tensor_keys is None:
                self.tensor_keys = set()
            key = (channel, action.tensor_stream)
            if key not in self.tensor_keys:
                self.tensor_keys.add(key)
                self._svc.tensor_publishers.add(channel, action.tensor_stream, self)
        if self.in_flight >= MAX_IN_FLIGHT:
            # The broker client's publish slots are shared by every session of the
            # gateway: one session never holds more than a bounded share of them.
            reason = f"{MAX_IN_FLIGHT} publishes await storage; wait for their acks"
            self.send(f.Error(code=int(ErrorCode.LIMIT_EXCEEDED), reason=reason, ref=frame.id))
            return
        try:
            payload = pack_data(frame.data)
        except DATA_ERRORS as exc:
            reason = f"data cannot be carried: {exc}"[:200]
            self.send(f.Error(code=int(ErrorCode.BAD_REQUEST), reason=reason, ref=frame.id))
            return
        message = Message(
            channel,
            payload,
            identity.sub,
            mid=frame.mid,
            tc=frame.tc,
            tensor=action.tensor_stream is not None,
        )
        try:
            done = await self._svc.publisher.publish(message, {"frys.session": self.sid})
        except PublishError as exc:
            self.send(f.Error(code=int(exc.code), reason=exc.reason, ref=frame.id))
            return
        if done.done():
            self._published(done, frame.id)
        else:
            self.in_flight += 1
            done.add_done_callback(lambda fut: self._stored(fut, frame.id))

    def _stored(self, done: asyncio.Future[Published], ref: int) -> None:
        self.in_flight -= 1
        self._published(done, ref)

    def _published(self, done: asyncio.Future[Published], ref: int) -> None:
        exc = done.exception()
        if isinstance(exc, PublishError):
            self.send(f.Error(code=int(exc.code), reason=exc.reason, ref=ref))
            return
        if exc is not None:
            self.send(f.Error(code=int(ErrorCode.INTERNAL), reason="internal error", ref=ref))
            return
        result = done.result()
        self.send(f.Ack(id=ref, seq=result.seq, dup=True if result.duplicate else None))

    async def _request(self, action: c.Request) -> None:
        identity = self.core.identity
        assert identity is not None
        frame = action.frame
        headers = {hdr.FROM: identity.sub}
        if frame.tc is not None:
            headers[hdr.TRACEPARENT] = frame.tc.traceparent
            if frame.tc.tracestate:
                headers[hdr.TRACESTATE] = frame.tc.tracestate
        await self._answer(self._svc.control.request(action.channel, frame, headers, self.sid))

    async def _answer(self, work: Coroutine[Any, Any, f.Frame]) -> None:
        self.send(await work)

    async def _presence(self, channel: Channel, ref: int) -> None:
        assert channel.workflow is not None
        members = await self._svc.presence.members(channel.workflow)
        self.send(f.Ack(id=ref, members=tuple(members)))

    def keyframe_wanted(self, channel: Channel, stream: int) -> None:
        self.send(f.KeyframeWanted(ch=channel.name, stream=stream))

    # --- tasks and the end ---------------------------------------------------------------
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
            if self.core.state is c.State.CONNECTED:
                self.send(f.Error(code=int(ErrorCode.INTERNAL), reason="internal error", ref=None))

    async def _cleanup(self) -> None:
        code = self.core.close_code if self.core.close_code is not None else self.remote_close
        final = code is not None and code in FINAL_CLOSES
        channels = set(self.core.subs) | set(self.fanouts)
        self.core.lost()
        self.writer.close()
        if self._deadline is not None:
            self._deadline.cancel()
        if self._expiry is not None:
            self._svc.expiries.remove(self, self._expiry)
            self._expiry = None
        current = asyncio.current_task()
        for task in list(self.tasks or ()):
            if task is not current and not task.done():
                task.cancel()
        for channel in channels:
            with contextlib.suppress(Exception):
                await self._drop(channel, final=final)
        for channel, stream in self.tensor_keys or ():
            self._svc.tensor_publishers.remove(channel, stream, self)
        close = self._close_task or asyncio.get_running_loop().create_task(self.ws.close())
        # The close handshake waits for the client's reply; never longer than this.
        await asyncio.wait({close}, timeout=2.0)
        if not close.done():
            close.cancel()
            self.writer.abort()
        elif not close.cancelled() and close.exception() is not None:
            log.debug("session %s close failed: %s", self.sid, close.exception())
        self.writer.release()
        self._svc.on_closed(self)
