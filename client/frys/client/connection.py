"""The asyncio client: one WebSocket to a gateway that survives disconnects by itself.

A supervisor task owns the socket. When the connection drops it decides from the close
code (one table, :func:`frys.shared.protocol.errors.reconnect_policy`) whether to come back,
waits with capped exponential backoff and full jitter (or the delay a draining gateway asked
for, or not at all after ``migrate``), reconnects, resubscribes every channel from its last
position and re-sends what can be re-sent safely: publishes carrying a message id (the
stream deduplicates them) and control requests (the command id makes them idempotent).
The application sees each events channel as one in-order, duplicate-free stream, with
``Message.gap`` marking the one place where history could not be recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
from opentelemetry import trace as otel_trace
from opentelemetry.propagate import inject as otel_inject

from frys.client.errors import ClientError, ConnectionClosed, ConnectionLost, error_for
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind, parse_channel
from frys.shared.protocol.codec import CODECS, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, WireCodec
from frys.shared.protocol.errors import CloseCode, Reconnect, reconnect_policy
from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorError,
    TensorGapError,
    read_header,
)

log = logging.getLogger("frys.client")

TokenProvider = Callable[[], Awaitable[str]]


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery. ``seq`` is set on events and state channels. ``gap`` is true on the
    first events message after history could not be recovered (explicit discontinuity)."""

    channel: str
    data: Any
    seq: int | None = None
    from_: str | None = None
    gap: bool = False
    enc: str | None = None
    """``tensor`` when ``data`` is a tensor frame (read those with :meth:`Client.tensors`)."""


@dataclass(frozen=True, slots=True)
class PublishAck:
    seq: int | None
    duplicate: bool


class _End:
    def __init__(self, error: BaseException | None):
        self.error = error


class Subscription:
    """Deliveries of one channel, as an async iterator."""

    def __init__(self, client: Client, channel: str, since: f.Position | None):
        self.client = client
        self.channel = channel
        self.kind = parse_channel(channel).kind
        self.position: f.Position | None = since
        self.gaps = 0
        self._gap_pending = False
        self._last_state_seq: int | None = None
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self.active = True

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends too
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def next(self, timeout: float | None = None) -> Message:
        """The next message, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def pending(self) -> int:
        return self._queue.qsize()

    async def unsubscribe(self) -> None:
        await self.client._unsubscribe(self)

    # --- fed by the client -------------------------------------------------------------
    def _on_ack(self, ack: f.Ack) -> None:
        if self.kind is ChannelKind.EVENTS and ack.epoch is not None:
            if ack.recovered is False:
                self.gaps += 1
                self._gap_pending = self.position is not None
                self.position = f.Position(ack.seq or 0, ack.epoch)
            elif self.position is None or self.position.epoch != ack.epoch:
                self.position = f.Position(ack.seq or 0, ack.epoch)
        elif self.kind is ChannelKind.STATE and ack.epoch is not None:
            if self.position is not None and self.position.epoch != ack.epoch:
                self._last_state_seq = None
            self.position = f.Position(ack.seq or 0, ack.epoch)

    def _on_message(self, frame: f.Message) -> None:
        seq = frame.seq
        if self.kind is ChannelKind.EVENTS and seq is not None:
            if self.position is not None:
                if seq <= self.position.seq:
                    return  # already delivered
                self.position = f.Position(seq, self.position.epoch)
            gap, self._gap_pending = self._gap_pending, False
            self._queue.put_nowait(
                Message(self.channel, frame.data, seq, frame.from_, gap, frame.enc)
            )
            return
        if self.kind is ChannelKind.STATE and seq is not None:
            if self._last_state_seq is not None and seq <= self._last_state_seq:
                return
            self._last_state_seq = seq
        self._queue.put_nowait(Message(self.channel, frame.data, seq, frame.from_, enc=frame.enc))

    def _end(self, error: BaseException | None) -> None:
        if self.active:
            self.active = False
            self._queue.put_nowait(_End(error))


class Retry(enum.Enum):
    """What happens to an operation in flight when the connection drops."""

    RESEND = "resend"
    FAIL = "fail"


@dataclass(slots=True)
class _Pending:
    frame: f.Frame
    future: asyncio.Future[Any]
    retry: Retry
    on_ack: Callable[[f.Frame], Any] | None = None


@dataclass
class ClientOptions:
    token: str | None = None
    token_provider: TokenProvider | None = None
    name: str = ""
    caps: tuple[str, ...] = ()
    codec: str = SUBPROTOCOL_MSGPACK
    reconnect: bool = True
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 10.0
    connect_timeout_s: float = 10.0
    heartbeat_s: float | None = 20.0
    max_frame_bytes: int = 64 * 1024 * 1024
    headers: dict[str, str] = field(default_factory=dict)


class Client:
    """A connection to a Frys gateway. Create with :func:`connect`."""

    def __init__(self, url: str | Sequence[str], options: ClientOptions):
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("at least one gateway URL is required")
        self._url_index = 0
        self.options = options
        self.codec: WireCodec = CODECS[
            {"msgpack": SUBPROTOCOL_MSGPACK, "json": SUBPROTOCOL_JSON}.get(
                options.codec, options.codec
            )
        ]
        self.state = ConnState.CONNECTING
        self.session_id: str | None = None
        self.gateway_id: str | None = None
        self.limits: dict[str, int] = {}
        self.reconnects = 0
        self.reconnect_times: list[float] = []
        """Seconds from each connection loss to the next successful connect."""
        self._lost_at: float | None = None
        self.last_close: tuple[int | None, str] = (None, "")
        self._token = options.token
        self._resume = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[str, Subscription] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[ConnState], None]] = []
        self._next_url: str | None = None
        self._migrate_delay_s = 0.0
        self._closing = False
        self._final_error: BaseException | None = None
        self._tensor_senders: dict[tuple[str, int], TensorSender] = {}

    # --- lifecycle -----------------------------------------------------------------------
    def on_state(self, listener: Callable[[ConnState], None]) -> None:
        """Call ``listener`` on every connection state change."""
        self._listeners.append(listener)

    def _set_state(self, state: ConnState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is ConnState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("state listener failed")

    async def start(self) -> Client:
        """Connect; raises if the first connection cannot be made within the timeout."""
        loop = asyncio.get_running_loop()
        self._http = aiohttp.ClientSession()
        self._first = loop.create_future()
        self._supervisor = loop.create_task(self._supervise())
        try:
            await asyncio.wait_for(asyncio.shield(self._first), self.options.connect_timeout_s)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close for good: pending operations fail, subscriptions end."""
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.close(code=CloseCode.NORMAL)
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        self._finish(ConnectionClosed(CloseCode.NORMAL, "closed by the application"))
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _finish(self, error: BaseException) -> None:
        self._final_error = error
        self._set_state(ConnState.CLOSED)
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
        self._pending.clear()
        for sub in list(self._subs.values()):
            sub._end(None if isinstance(error, ConnectionClosed) and self._closing else error)
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- supervisor ---------------------------------------------------------------------
    async def _supervise(self) -> None:
        attempt = 0
        delay_s = 0.0
        try:
            while not self._stopped():
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                migrating = self._next_url is not None
                url = self._next_url or self.urls[self._url_index]
                self._next_url = None
                try:
                    await self._open(url, migrating)
                except _Fatal as exc:
                    self._finish(exc.error)
                    return
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.debug("connect to %s failed: %s", url, exc)
                    # Try the next gateway URL (behind a load balancer there is only one).
                    self._url_index = (self._url_index + 1) % len(self.urls)
                    if not self.options.reconnect:
                        self._finish(ConnectionClosed(None, f"cannot connect: {exc}"))
                        return
                    attempt += 1
                    delay_s = self._backoff(attempt)
                    self._set_state(
                        ConnState.RECONNECTING
                        if self.session_id is not None
                        else ConnState.CONNECTING
                    )
                    continue
                attempt = 0
                if self._lost_at is not None:
                    self.reconnect_times.append(time.monotonic() - self._lost_at)
                    self._lost_at = None
                code, reason = await self._read_loop()
                self._lost_at = time.monotonic()
                self.last_close = (code, reason)
                if self._stopped():
                    return
                policy = reconnect_policy(code if code is not None else 1006)
                if policy is Reconnect.WITH_NEW_TOKEN and self.options.token_provider is not None:
                    try:
                        self._token = await self.options.token_provider()
                    except Exception as exc:
                        self._finish(ConnectionClosed(code, f"no new token: {exc}"))
                        return
                    policy = Reconnect.YES
                if policy is not Reconnect.YES or not self.options.reconnect:
                    self._finish(ConnectionClosed(code, reason))
                    return
                self.reconnects += 1
                self._set_state(ConnState.RECONNECTING)
                self._fail_unretryable()
                if code == CloseCode.MIGRATED and self._migration_target() is not None:
                    delay_s = self._migrate_delay_s
                elif code == CloseCode.SERVICE_RESTART:
                    delay_s = _delay_from_reason(reason) + random.uniform(0, 0.05)
                elif code == CloseCode.SLOW_CONSUMER:
                    delay_s = random.uniform(0, self.options.backoff_base_s)
                else:
                    attempt = 1
                    delay_s = self._backoff(attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("client supervisor failed")
            self._finish(ConnectionClosed(None, f"internal error: {exc}"))

    @property
    def url(self) -> str:
        """The gateway URL in use (or tried next)."""
        return self.urls[self._url_index]

    def _stopped(self) -> bool:
        return self._closing

    def _migration_target(self) -> str | None:
        return self._next_url

    def _backoff(self, attempt: int) -> float:
        o = self.options
        return random.uniform(0, min(o.backoff_cap_s, o.backoff_base_s * (2 ** min(attempt, 30))))

    async def _open(self, url: str, migrating: bool = False) -> None:
        assert self._http is not None
        headers = dict(self.options.headers)
        try:
            ws = await self._http.ws_connect(
                url,
                protocols=(self.codec.subprotocol,),
                heartbeat=self.options.heartbeat_s,
                max_msg_size=self.options.max_frame_bytes,
                autoping=True,
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if migrating:
                raise  # a migrate target that refuses: fall back to the usual URLs
            if exc.status == 401 and self.options.token_provider is not None:
                self._token = await self.options.token_provider()
                raise
            if exc.status in (400, 401, 403, 404):
                raise _Fatal(
                    ConnectionClosed(None, f"refused by gateway: {exc.status} {exc.message}")
                ) from None
            raise
        self._ws = ws
        await self._send_now(
            f.Connect(
                id=0,
                token=self._token,
                name=self.options.name or None,
                resume=self._resume or None,
                caps=self.options.caps,
            )
        )
        msg = await ws.receive(timeout=self.options.connect_timeout_s)
        if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            frame = self.codec.decode(msg.data)
            if isinstance(frame, f.Connected):
                self._on_connected(frame)
                return
            raise _Fatal(ConnectionClosed(None, f"unexpected first frame {frame.OP}"))
        code = ws.close_code
        reason = ws.exception() or (msg.extra or "")
        await ws.close()
        policy = reconnect_policy(code if code is not None else 1006)
        if policy is Reconnect.YES:
            raise aiohttp.ClientError(f"closed during connect ({code}: {reason})")
        if policy is Reconnect.WITH_NEW_TOKEN and self.options.token_provider is not None:
            self._token = await self.options.token_provider()
            raise aiohttp.ClientError(f"token refused ({code}: {reason}); retrying with a new one")
        raise _Fatal(ConnectionClosed(code, str(reason)))

    def _on_connected(self, frame: f.Connected) -> None:
        self.session_id = frame.sid
        self.gateway_id = frame.gw
        self.limits = dict(frame.limits)
        self._resume = frame.resume
        self._set_state(ConnState.CONNECTED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        # Resubscribe every channel from its position, then re-send what may be re-sent.
        for sub in list(self._subs.values()):
            if sub.active:
                self._send_subscribe(sub)
        for pending in list(self._pending.values()):
            if pending.retry is Retry.RESEND:
                self._send_nowait(pending.frame)

    def _fail_unretryable(self) -> None:
        for ref, pending in list(self._pending.items()):
            if pending.retry is Retry.FAIL:
                del self._pending[ref]
                if not pending.future.done():
                    pending.future.set_exception(
                        ConnectionLost(
                            f"{pending.frame.OP} was in flight when the connection dropped"
                        )
                    )

    async def _read_loop(self) -> tuple[int | None, str]:
        ws = self._ws
        assert ws is not None
        reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    try:
                        frame = self.codec.decode(msg.data)
                    except Exception as exc:
                        log.warning("undecodable frame from gateway: %s", exc)
                        continue
                    self._on_frame(frame)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                    break
                else:
                    if msg.type is aiohttp.WSMsgType.ERROR:
                        reason = str(msg.data)
                    break
        except Exception as exc:
            reason = str(exc)
        with contextlib.suppress(Exception):
            await ws.close()
        return ws.close_code, reason

    def _on_frame(self, frame: f.Frame) -> None:
        match frame:
            case f.Message():
                sub = self._subs.get(frame.ch)
                if sub is not None:
                    sub._on_message(frame)
            case f.Ack() | f.Reply():
                self._resolve(frame.id, frame)
            case f.Error():
                if frame.ref is not None and frame.ref in self._pending:
                    pending = self._pending.pop(frame.ref)
                    if not pending.future.done():
                        pending.future.set_exception(error_for(frame.code, frame.reason))
                else:
                    log.warning("gateway error %s: %s", frame.code, frame.reason)
            case f.Migrate():
                self._next_url = frame.url
                self._migrate_delay_s = (frame.delay_ms or 0) / 1000
            case f.Unsubscribed():
                sub = self._subs.pop(frame.ch, None)
                if sub is not None:
                    sub._end(error_for(frame.code, frame.reason))
            case f.KeyframeWanted():
                sender = self._tensor_senders.get((frame.ch, frame.stream))
                if sender is not None:
                    sender.keyframe_wanted()
            case f.Pong():
                self._resolve(frame.id, frame) if frame.id is not None else None
            case _:
                pass

    def _resolve(self, ref: int | None, frame: f.Frame) -> None:
        if ref is None:
            return
        pending = self._pending.pop(ref, None)
        if pending is None:
            return
        if pending.on_ack is not None:
            try:
                result = pending.on_ack(frame)
            except Exception as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)
                return
        else:
            result = frame
        if not pending.future.done():
            pending.future.set_result(result)

    # --- sending ------------------------------------------------------------------------
    async def _send_now(self, frame: f.Frame) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        payload = self.codec.encode(frame)
        if isinstance(payload, str):
            await ws.send_str(payload)
        else:
            await ws.send_bytes(payload)

    def _send_nowait(self, frame: f.Frame) -> None:
        asyncio.get_running_loop().create_task(self._send_quietly(frame))

    async def _send_quietly(self, frame: f.Frame) -> None:
        with contextlib.suppress(Exception):
            await self._send_now(frame)

    async def _call(
        self,
        make: Callable[[int], f.Frame],
        retry: Retry,
        on_ack: Callable[[f.Frame], Any] | None = None,
        timeout: float | None = 30.0,
    ) -> Any:
        if self.state is ConnState.CLOSED:
            raise self._final_error or ConnectionClosed(None, "closed")
        ref = next(self._ids)
        frame = make(ref)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ref] = _Pending(frame, future, retry, on_ack)
        try:
            if self.state is ConnState.CONNECTED:
                await self._send_now(frame)
            elif retry is Retry.FAIL:
                await asyncio.wait_for(self._connected.wait(), timeout)
                await self._send_now(frame)
            # RESEND operations are sent by _on_connected once the connection is back.
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except ConnectionLost:
            if retry is Retry.RESEND and not self._closing:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            raise
        finally:
            self._pending.pop(ref, None)

    # --- operations ---------------------------------------------------------------------
    async def subscribe(self, channel: str, *, since: f.Position | None = None) -> Subscription:
        """Subscribe; for events, ``since`` resumes after a known position."""
        parse_channel(channel)
        if channel in self._subs:
            raise error_for(409, f"already subscribed to {channel}")
        sub = Subscription(self, channel, since)
        self._subs[channel] = sub
        try:
            await self._call(
                lambda ref: f.Subscribe(id=ref, ch=channel, since=self._since(sub)),
                Retry.FAIL,
                on_ack=lambda frame: sub._on_ack(frame) if isinstance(frame, f.Ack) else None,
            )
        except BaseException:
            if self._subs.get(channel) is sub:
                del self._subs[channel]
            raise
        return sub

    def _since(self, sub: Subscription) -> f.Position | None:
        return sub.position if sub.kind is ChannelKind.EVENTS else None

    def _send_subscribe(self, sub: Subscription) -> None:
        ref = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(frame: f.Frame) -> None:
            if isinstance(frame, f.Ack):
                sub._on_ack(frame)

        def on_done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if isinstance(exc, ClientError):
                self._subs.pop(sub.channel, None)
                sub._end(exc)

        future.add_done_callback(on_done)
        frame = f.Subscribe(id=ref, ch=sub.channel, since=self._since(sub))
        self._pending[ref] = _Pending(frame, future, Retry.FAIL, on_ack)
        self._send_nowait(frame)

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is not sub:
            return
        del self._subs[sub.channel]
        sub._end(None)
        if self.state is ConnState.CONNECTED:
            with contextlib.suppress(ClientError, ConnectionLost, asyncio.TimeoutError):
                await self._call(lambda ref: f.Unsubscribe(id=ref, ch=sub.channel), Retry.FAIL)

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        mid: str | None = None,
        timeout: float = 30.0,
        trace: f.TraceContext | None = None,
        enc: str | None = None,
    ) -> PublishAck:
        """Publish and wait for the gateway's ack. On events and state channels a message
        id is added when missing, so a publish in flight across a reconnect is re-sent and
        stored once."""
        kind = parse_channel(channel).kind
        stored = kind is ChannelKind.EVENTS or (kind is ChannelKind.STATE and enc is None)
        if stored and mid is None:
            mid = uuid.uuid4().hex
        tc = trace or current_trace_context()
        ack = await self._call(
            lambda ref: f.Publish(id=ref, ch=channel, data=data, mid=mid, enc=enc, tc=tc),
            Retry.RESEND if stored else Retry.FAIL,
            timeout=timeout,
        )
        assert isinstance(ack, f.Ack)
        return PublishAck(seq=ack.seq, duplicate=bool(ack.dup))

    async def request(
        self,
        channel: str,
        data: Any,
        *,
        timeout: float = 5.0,
        cid: str | None = None,
        trace: f.TraceContext | None = None,
    ) -> Any:
        """Send a control command and return the engine's reply. The command id (generated
        when missing) makes retries safe: the command executes at most once."""
        cid = cid or uuid.uuid4().hex
        tc = trace or current_trace_context()
        reply = await self._call(
            lambda ref: f.Request(
                id=ref, ch=channel, data=data, cid=cid, timeout_ms=int(timeout * 1000), tc=tc
            ),
            Retry.RESEND,
            timeout=timeout + 5.0,
        )
        assert isinstance(reply, f.Reply)
        return reply.data

    async def outcome(self, channel: str, cid: str) -> Any:
        """The recorded reply of command ``cid`` (raises NotFound when none is recorded)."""
        ack = await self._call(lambda ref: f.Outcome(id=ref, ch=channel, cid=cid), Retry.FAIL)
        assert isinstance(ack, f.Ack)
        return ack.data

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """Members of a workflow, from its ``wf:{id}:presence`` channel."""
        ack = await self._call(lambda ref: f.PresenceQuery(id=ref, ch=channel), Retry.FAIL)
        assert isinstance(ack, f.Ack)
        return [dict(m) for m in ack.members or ()]

    async def refresh(self, token: str) -> int | None:
        """Extend the session with a new token; returns its expiry (unix seconds)."""
        ack = await self._call(lambda ref: f.Refresh(id=ref, token=token), Retry.FAIL)
        assert isinstance(ack, f.Ack)
        self._token = token
        return ack.exp

    # --- tensors ------------------------------------------------------------------------
    async def send_tensor(
        self,
        channel: str,
        array: Any,
        *,
        stream: int = 0,
        keyframe: bool = False,
        precision: Precision = Precision.EXACT,
        max_abs_error: float = 0.0,
    ) -> PublishAck:
        """Send a numpy array on ``channel`` as a tensor frame: a keyframe first, then
        deltas (whatever changed since the previous array of the same ``stream``), chunked
        when large. On events channels every array travels whole (a keyframe). Lossless
        unless ``precision`` asks otherwise."""
        key = (channel, stream)
        sender = self._tensor_senders.get(key)
        if sender is None:
            sender = self._tensor_senders[key] = TensorSender(
                self, channel, stream, precision, max_abs_error
            )
        return await sender.send(array, keyframe)

    def tensors(self, channel: str, *, stream: int | None = None) -> TensorStream:
        """The arrays of a channel's tensor streams, decoded, as an async iterator of
        ``(stream, array)``; gaps are repaired with a keyframe from the gateway."""
        return TensorStream(self, channel, stream)

    async def tensor_stats(self, channel: str) -> dict[str, Any]:
        """The gateway's quality figures for a subscribed channel's tensor streams."""
        ack = await self._call(lambda ref: f.Stats(id=ref, ch=channel), Retry.FAIL)
        assert isinstance(ack, f.Ack)
        return dict(ack.data or {})

    async def _resync(self, channel: str, stream: int) -> None:
        with contextlib.suppress(ClientError, ConnectionLost, asyncio.TimeoutError):
            await self._call(
                lambda ref: f.Resync(id=ref, ch=channel, stream=stream), Retry.FAIL, timeout=10
            )

    async def ping(self, timeout: float = 5.0) -> None:
        await self._call(lambda ref: f.Ping(id=ref), Retry.FAIL, timeout=timeout)


def current_trace_context() -> f.TraceContext | None:
    """The application's current OpenTelemetry span as an envelope trace context, so a
    message published inside a span continues that trace through Frys."""
    span_context = otel_trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    carrier: dict[str, str] = {}
    otel_inject(carrier)
    parent = carrier.get("traceparent")
    return f.TraceContext(parent, carrier.get("tracestate")) if parent else None


class TensorSender:
    """One outgoing tensor stream: its encoder and the last array (for keyframe requests)."""

    def __init__(
        self,
        client: Client,
        channel: str,
        stream: int,
        precision: Precision,
        max_abs_error: float,
    ):
        self.client = client
        self.channel = channel
        self.events = parse_channel(channel).kind is ChannelKind.EVENTS
        self.encoder = TensorEncoder(stream, precision=precision, max_abs_error=max_abs_error)
        self.last: Any = None
        self._want_keyframe = False
        self._lock = asyncio.Lock()

    def keyframe_wanted(self) -> None:
        """A relay asked for a keyframe: send one now from the last array."""
        self._want_keyframe = True
        if self.last is not None and not self._lock.locked():
            asyncio.get_running_loop().create_task(self._send_quietly())

    async def _send_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.send(self.last, True)

    async def send(self, array: Any, keyframe: bool) -> PublishAck:
        async with self._lock:
            whole = keyframe or self._want_keyframe or self.events
            self._want_keyframe = False
            frames = self.encoder.encode(array, keyframe=whole)
            self.last = array
            acks = []
            for frame in frames:
                acks.append(
                    asyncio.ensure_future(
                        self.client.publish(self.channel, frame, enc=f.ENC_TENSOR)
                    )
                )
                await asyncio.sleep(0)  # let other traffic interleave with large tensors
            done = await asyncio.gather(*acks)
            return done[-1]


class TensorStream:
    """Decoded arrays of a channel's tensor streams."""

    def __init__(self, client: Client, channel: str, stream: int | None):
        self.client = client
        self.channel = channel
        self.stream = stream
        self.subscription: Subscription | None = None
        self.assembler = ChunkAssembler()
        self.decoders: dict[int, TensorDecoder] = {}
        self.gaps = 0

    def __aiter__(self) -> AsyncIterator[tuple[int, Any]]:
        return self._iterate()

    async def start(self) -> TensorStream:
        """Subscribe now (iterating subscribes too, on first use)."""
        if self.subscription is None:
            self.subscription = await self.client.subscribe(self.channel)
        return self

    async def _iterate(self) -> AsyncIterator[tuple[int, Any]]:
        await self.start()
        assert self.subscription is not None
        async for msg in self.subscription:
            if msg.enc != f.ENC_TENSOR or not isinstance(msg.data, bytes):
                continue
            decoded = self._decode(msg.data)
            if decoded is not None:
                yield decoded

    async def next(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next ``(stream, array)``, waiting at most ``timeout`` seconds."""
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self._iterate()
        return await asyncio.wait_for(anext(iterator), timeout)

    _iterator: AsyncIterator[tuple[int, Any]] | None = None

    def _decode(self, data: bytes) -> tuple[int, Any] | None:
        try:
            header = read_header(data)
            frame: bytes | None = data
            if isinstance(header, ChunkHeader):
                frame = self.assembler.feed(data, time.monotonic())
            if frame is None:
                return None
            header = read_header(frame)
            stream_id = header.stream_id
            if self.stream is not None and stream_id != self.stream:
                return None
            decoder = self.decoders.get(stream_id)
            if decoder is None:
                decoder = self.decoders[stream_id] = TensorDecoder(stream_id)
            return stream_id, decoder.feed(frame)
        except TensorGapError as exc:
            self.gaps += 1
            log.debug("tensor gap on %s: %s; asking for a keyframe", self.channel, exc)
            asyncio.get_running_loop().create_task(
                self.client._resync(self.channel, read_header(data).stream_id)
            )
            return None
        except TensorError as exc:
            log.warning("bad tensor frame on %s: %s", self.channel, exc)
            return None

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.unsubscribe()


class _Fatal(Exception):
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _delay_from_reason(reason: str) -> float:
    """Delay a draining gateway asked for: close reason ``delay_ms=N``."""
    for part in reason.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "delay_ms" and value.isdigit():
            return int(value) / 1000
    return 0.0


class _Connector:
    """``await connect(...)`` or ``async with connect(...) as client``."""

    def __init__(self, url: str | Sequence[str], options: ClientOptions):
        self._client = Client(url, options)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._client.start().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()


def connect(
    url: str | Sequence[str],
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    name: str = "",
    caps: tuple[str, ...] | list[str] = (),
    codec: str = "msgpack",
    reconnect: bool = True,
    **options: Any,
) -> _Connector:
    """Connect to a gateway's ``/ws`` endpoint (or the first reachable of several URLs).

    ``token`` authenticates the session; ``token_provider`` is awaited for a fresh token when
    the gateway reports an expired or refused one. ``codec`` is ``msgpack`` or ``json``.
    """
    return _Connector(
        url,
        ClientOptions(
            token=token,
            token_provider=token_provider,
            name=name,
            caps=tuple(caps),
            codec=codec,
            reconnect=reconnect,
            **options,
        ),
    )
