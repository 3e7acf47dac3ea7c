"""The asyncio client: one WebSocket to a gateway that survives disconnects by itself.

This is the I/O shell around the protocol core (:mod:`frys.client.core`), which decides
what is sent again and what a frame means. A supervisor task owns the socket. When the
connection drops it decides from the close code (one table,
:func:`frys.shared.protocol.errors.reconnect_policy`) whether to come back, waits with
capped exponential backoff and full jitter (or the delay a draining gateway asked for, or
not at all after ``migrate``), reconnects, and sends what the core says: every channel
resubscribed from its last position, then what can be re-sent safely (publishes carrying a
message id, which the stream deduplicates, and control requests, whose command id makes
them idempotent). The application sees each events channel as one in-order,
duplicate-free stream, with ``Message.gap`` marking the one place where history could not
be recovered.

Every task the client starts is kept until it ends (the event loop holds tasks weakly, so
an unreferenced one can vanish mid-flight) and its failure is logged, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from opentelemetry import trace as otel_trace
from opentelemetry.propagate import inject as otel_inject

from frys.client.core import (
    ClientCore,
    ConnState,
    GatewayError,
    KeyframeRequested,
    Message,
    MigrateTo,
    PublishAck,
    Retry,
    SubscriptionState,
    new_message_id,
    publish_retry,
)
from frys.client.dicts import CompressedInbox, Received
from frys.client.errors import ClientError, ConnectionClosed, ConnectionLost
from frys.client.tensors import TensorSender, TensorStream
from frys.shared.protocol import frames as f
from frys.shared.protocol import zdict
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.codec import CODECS, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, WireCodec
from frys.shared.protocol.errors import CloseCode, FrysError, Reconnect, reconnect_policy
from frys.shared.tensor import Precision

__all__ = [
    "Client",
    "ClientOptions",
    "ConnState",
    "Message",
    "PublishAck",
    "Retry",
    "Subscription",
    "TensorSender",
    "TensorStream",
    "connect",
    "current_trace_context",
]

log = logging.getLogger("frys.client")

TokenProvider = Callable[[], Awaitable[str]]
T = TypeVar("T")


class _End:
    def __init__(self, error: BaseException | None):
        self.error = error


class Subscription(SubscriptionState):
    """Deliveries of one channel, as an async iterator."""

    def __init__(self, client: Client, channel: str, since: f.Position | None):
        super().__init__(channel, since)
        self.client = client
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()

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

    def _deliver(self, message: Message) -> None:
        self._queue.put_nowait(message)

    def _ended(self, error: BaseException | None) -> None:
        self._queue.put_nowait(_End(error))


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
    codecs: tuple[str, ...] | None = None
    """Payload codecs to declare (docs/protocol.md §15); ``None``: every codec this SDK
    decodes on ``msgpack`` (``zstd-dict``, ``tensor-ext``), none on ``json``."""
    max_dict_bytes: int = zdict.DEFAULT_MAX_DICT_BYTES
    ssl_context: ssl.SSLContext | None = None
    """TLS for ``wss://`` gateways whose certificate a private CA signed; the system's
    trust store when ``None``."""


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
        self.reconnects = 0
        self.reconnect_times: list[float] = []
        """Seconds from each connection loss to the next successful connect."""
        self._lost_at: float | None = None
        self.last_close: tuple[int | None, str] = (None, "")
        self._token = options.token
        self._core = ClientCore()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        """Background tasks nobody awaits: cancelled on close."""
        self._awaited: set[asyncio.Task[Any]] = set()
        """Tasks an operation awaits: they end with it (failed by close, not cancelled)."""
        self._connected = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[ConnState], None]] = []
        self._next_url: str | None = None
        self._migrate_delay_s = 0.0
        self._closing = False
        self._final_error: BaseException | None = None
        self._tensor_senders: dict[tuple[str, int], TensorSender] = {}
        self._inbox = CompressedInbox(options.max_frame_bytes, options.max_dict_bytes)
        self._conn_url = self.urls[0]
        self._plain_only = False
        """Set when a dictionary could not be had: later connections declare no codec."""
        self._degrade: str | None = None
        """Why the current connection is being dropped to come back without codecs."""
        self.dictionary_failures = 0
        """Times compressed delivery had to stop (docs/protocol.md §15.6)."""

    @property
    def session_id(self) -> str | None:
        return self._core.session_id

    @property
    def gateway_id(self) -> str | None:
        """The gateway serving this client (changes when it moves)."""
        return self._core.gateway_id

    @property
    def limits(self) -> dict[str, int]:
        return self._core.limits

    @property
    def codecs(self) -> tuple[str, ...]:
        """The payload codecs this client declares on its next ``connect``."""
        if self._plain_only or not self.codec.binary:
            return ()
        if self.options.codecs is not None:
            return tuple(self.options.codecs)
        return (zdict.CODEC_ZSTD_DICT, "tensor-ext")

    @property
    def compressed_frames(self) -> int:
        """Compressed frames this client decoded."""
        return self._inbox.compressed

    # --- tasks ---------------------------------------------------------------------------
    def _spawn(
        self, coro: Coroutine[Any, Any, T], what: str, *, detached: bool = True
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a task the client holds until it ends. A ``detached`` task's
        failure is logged here (nobody awaits it); an awaited one reports to its awaiter."""
        task = asyncio.get_running_loop().create_task(coro, name=f"frys-client {what}")
        held = self._tasks if detached else self._awaited
        held.add(task)

        def done(finished: asyncio.Task[T]) -> None:
            held.discard(finished)
            if finished.cancelled():
                return
            exc = finished.exception()  # retrieved: never "exception was never retrieved"
            if exc is None or not detached:
                return
            if isinstance(exc, FrysError | aiohttp.ClientError | OSError | TimeoutError):
                log.debug("client %s failed: %r", what, exc)
            else:
                log.error("client %s failed", what, exc_info=exc)

        task.add_done_callback(done)
        return task

    async def _cancel_tasks(self) -> None:
        """Stop the background work; operations in flight were failed already and end
        with their own error rather than a cancellation their caller did not ask for."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        self._supervisor = self._spawn(self._supervise(), "supervisor")
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
        await self._cancel_tasks()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _finish(self, error: BaseException) -> None:
        self._final_error = error
        self._set_state(ConnState.CLOSED)
        closed_by_app = isinstance(error, ConnectionClosed) and self._closing
        self._core.close(error, None if closed_by_app else error)
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
                if self._degrade is not None:
                    # A dictionary could not be had: come back at once, declaring no codec,
                    # and resume every subscription from its position (§15.6).
                    self._degrade = None
                    self.reconnects += 1
                    self._set_state(ConnState.RECONNECTING)
                    self._core.connection_lost()
                    delay_s = 0.0
                    continue
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
                self._core.connection_lost()
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
                ssl=self.options.ssl_context if self.options.ssl_context is not None else True,
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
        self._conn_url = url
        self._inbox.reset()
        await self._send_now(
            f.Connect(
                id=0,
                token=self._token,
                name=self.options.name or None,
                codecs=self.codecs,
                resume=self._core.resume or None,
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
        resend = self._core.connected(frame)
        self._set_state(ConnState.CONNECTED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if resend:
            self._spawn(self._send_in_order(resend), "resubscribe and resend")

    async def _read_loop(self) -> tuple[int | None, str]:
        ws = self._ws
        assert ws is not None
        reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._received(self._inbox.receive(msg.data))
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    self._decode_frame(msg.data)
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

    def _decode_frame(self, data: str | bytes) -> None:
        try:
            frame = self.codec.decode(data)
        except Exception as exc:
            log.warning("undecodable frame from gateway: %s", exc)
            return
        self._on_frame(frame)

    # --- compressed frames (docs/protocol.md §15) ---------------------------------------
    def _received(self, out: Received) -> None:
        for frame in out.frames:
            self._decode_frame(frame)
        if out.fetch is not None:
            self._spawn(self._fetch_dictionary(out.fetch, self._ws), "dictionary fetch")
        if out.failure is not None:
            self._stop_compressed(out.failure)

    def _stop_compressed(self, reason: str) -> None:
        """Compressed delivery cannot go on: reconnect at once without codecs."""
        if self._plain_only:
            return
        self.dictionary_failures += 1
        self._plain_only = True
        log.warning("compressed frames cannot be decoded (%s): reconnecting without codecs", reason)
        ws = self._ws
        if ws is not None and not ws.closed:
            self._degrade = reason
            self._spawn(ws.close(), "close for plain delivery")

    def dictionary_url(self, dict_id: int) -> str:
        """Where the gateway of the current connection serves dictionary ``dict_id``."""
        parts = urlsplit(self._conn_url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return urlunsplit((scheme, parts.netloc, f"/dict/{zdict.format_id(dict_id)}", "", ""))

    async def _fetch_dictionary(self, dict_id: int, ws: Any) -> None:
        """Fetch a dictionary (one retry), then release what waited for it."""
        reason = "unavailable"
        for attempt in range(2):
            try:
                content = await self._get_dictionary(dict_id)
            except _DictionaryRefused as exc:
                reason = str(exc)
                break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempt == 0:
                    await asyncio.sleep(0.05)
                continue
            if ws is self._ws:
                self._received(self._inbox.dictionary(content))
            return
        if ws is self._ws:
            self._received(
                self._inbox.fetch_failed(f"dictionary {zdict.format_id(dict_id)}: {reason}")
            )

    async def _get_dictionary(self, dict_id: int) -> bytes:
        assert self._http is not None
        headers = dict(self.options.headers)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        limit = self.options.max_dict_bytes
        async with self._http.get(
            self.dictionary_url(dict_id), headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            if resp.status in (400, 401, 403, 404):
                raise _DictionaryRefused(f"HTTP {resp.status}: {(await resp.text())[:120]}")
            if resp.status != 200:
                raise aiohttp.ClientError(f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > limit:
                raise _DictionaryRefused(f"{resp.content_length} bytes exceed {limit}")
            content = await resp.content.read(limit + 1)
            if len(content) > limit:
                raise _DictionaryRefused(f"more than {limit} bytes")
            return content

    def _on_frame(self, frame: f.Frame) -> None:
        match self._core.receive(frame):
            case MigrateTo(url, delay_s):
                self._next_url = url
                self._migrate_delay_s = delay_s
            case KeyframeRequested(channel, stream):
                sender = self._tensor_senders.get((channel, stream))
                if sender is not None:
                    sender.keyframe_wanted()
            case GatewayError(code, reason):
                log.warning("gateway error %s: %s", code, reason)
            case None:
                pass

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

    async def _send_in_order(self, frames: list[f.ClientFrame]) -> None:
        """Frames nobody awaits the sending of: a failed send leaves the call pending,
        answered by the next connection (or failed when the drop is noticed)."""
        for frame in frames:
            with contextlib.suppress(Exception):
                await self._send_now(frame)

    async def _call(
        self,
        make: Callable[[int], f.ClientFrame],
        retry: Retry,
        on_ack: Callable[[f.Frame], Any] | None = None,
        timeout: float | None = 30.0,
    ) -> Any:
        if self.state is ConnState.CLOSED:
            raise self._final_error or ConnectionClosed(None, "closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = self._core.call(make, future, retry, on_ack)
        try:
            if self.state is ConnState.CONNECTED:
                await self._send_now(call.frame)
            elif retry is Retry.FAIL:
                await asyncio.wait_for(self._connected.wait(), timeout)
                await self._send_now(call.frame)
            # RESEND operations are sent by _on_connected once the connection is back.
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except ConnectionLost:
            if retry is Retry.RESEND and not self._closing:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            raise
        finally:
            self._core.forget(call.ref)

    # --- operations ---------------------------------------------------------------------
    async def subscribe(self, channel: str, *, since: f.Position | None = None) -> Subscription:
        """Subscribe; for events, ``since`` resumes after a known position."""
        parse_channel(channel)
        sub = Subscription(self, channel, since)
        self._core.add_subscription(sub)
        try:
            await self._call(
                lambda ref: f.Subscribe(id=ref, ch=channel, since=sub.since()),
                Retry.FAIL,
                on_ack=sub.acked,
            )
        except BaseException:
            self._core.remove_subscription(sub)
            raise
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if not self._core.remove_subscription(sub):
            return
        sub.end(None)
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
        """Publish and wait for the gateway's ack. Where the stream stores the message
        (events, and state values other than live tensor frames) a message id is added
        when missing, so a publish in flight across a reconnect is re-sent and stored
        once."""
        retry = publish_retry(channel, enc)
        if retry is Retry.RESEND and mid is None:
            mid = new_message_id()
        tc = trace or current_trace_context()
        ack = await self._call(
            lambda ref: f.Publish(id=ref, ch=channel, data=data, mid=mid, enc=enc, tc=tc),
            retry,
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


class _DictionaryRefused(Exception):
    """The gateway will not serve the dictionary (unknown, malformed id, too large)."""


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
