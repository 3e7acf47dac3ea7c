"""The gateway's one way onto the bus: a WebSocket ``publish`` and ``POST /api/publish``
both go through :class:`Publisher`.

Subject and storage come from :func:`frys.shared.protocol.publish.route` (the rule shared
with the backend helper and the client); this module adds what every entry point owes the
bus and the operator alike: the size check against the broker's limit (payload and headers
together), the headers (sender, message id, trace context, sampled publish time), the
publish span, the counters, and the count of stored publishes still waiting for their ack
(a draining gateway waits for them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from frys.gateway.bus import Bus
from frys.gateway.metrics import Metrics
from frys.gateway.telemetry import TS_SAMPLE_EVERY, GatewayTelemetry
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel
from frys.shared.protocol.errors import ErrorCode
from frys.shared.protocol.frames import ENC_TENSOR, TraceContext
from frys.shared.protocol.publish import message_id, route
from frys.shared.protocol.subjects import Subjects

DATA_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError, RecursionError)
"""What packing a client's data may raise: an integer beyond 64 bits, a lone surrogate in
a string, nesting deeper than the packer allows. The sender gets 400, nobody else notices."""

_HEADER_OVERHEAD = 12
"""``NATS/1.0\\r\\n`` and the final ``\\r\\n`` around the header lines."""


class PublishError(Exception):
    """A publish that was not carried out, with the protocol's error code."""

    def __init__(self, code: ErrorCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Published:
    seq: int | None = None
    """The stored sequence (stored kinds only)."""
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish, whoever sent it."""

    channel: Channel
    payload: bytes
    """The data, already MessagePack."""
    sender: str
    """``Frys-From``: the token's ``sub``, or ``api`` for the HTTP API."""
    mid: str | None = None
    tc: TraceContext | None = None
    tensor: bool = False
    source: str = "ws"


def headers_size(headers: dict[str, str]) -> int:
    """Bytes the NATS header block of ``headers`` takes on the wire."""
    return _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())


class Publisher:
    def __init__(
        self,
        bus: Bus,
        subjects: Subjects,
        metrics: Metrics,
        telemetry: GatewayTelemetry,
        on_publish: Callable[[str, Channel], None] | None = None,
        ack_timeout_s: float = 5.0,
    ):
        self._bus = bus
        self._ack_timeout_s = ack_timeout_s
        self._subjects = subjects
        self._metrics = metrics
        self._telemetry = telemetry
        self._on_publish = on_publish
        self._count = 0
        self.in_flight = 0
        """Stored publishes sent and not yet acknowledged by the stream."""

    async def publish(
        self, message: Message, attributes: dict[str, Any] | None = None
    ) -> asyncio.Future[Published]:
        """Send ``message``; the returned future resolves when the bus has it (stored
        kinds: with the stream's ack) or fails with :class:`PublishError`. Raises
        :class:`PublishError` at once for what cannot be sent at all."""
        channel = message.channel
        where = route(self._subjects, channel, message.tensor)
        headers = {hdr.FROM: message.sender}
        tc = message.tc
        if tc is not None:
            headers[hdr.TRACEPARENT] = tc.traceparent
            if tc.tracestate:
                headers[hdr.TRACESTATE] = tc.tracestate
        if message.mid is not None:
            # Scoped to sender and channel: one stream's duplicate window spans them all.
            headers[hdr.MSG_ID] = message_id(channel, message.sender, message.mid)
        if message.tensor:
            headers[hdr.ENC] = ENC_TENSOR
        self._count += 1
        if self._count % TS_SAMPLE_EVERY == 0:
            headers[hdr.TS] = str(time.time_ns())
        size = len(message.payload) + headers_size(headers)
        limit = self._bus.max_payload
        if size > limit:
            raise PublishError(
                ErrorCode.TOO_LARGE,
                f"{size} bytes exceed the broker's {limit}; send smaller chunks",
            )
        span: Span | None = None
        tel = self._telemetry
        if tel.tracing:
            span = tel.publish_span(
                f"publish {channel.kind.value}",
                tc,
                headers,
                {
                    "frys.channel": channel.name,
                    "frys.source": message.source,
                    "frys.from": message.sender,
                    "messaging.system": "nats",
                    "messaging.destination.name": where.subject,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    **(attributes or {}),
                },
            )
        metrics = self._metrics
        metrics.publishes += 1
        metrics.publishes_by_kind[channel.kind.value] += 1
        if self._on_publish is not None:
            self._on_publish(message.sender, channel)
        loop = asyncio.get_running_loop()
        if where.stored:
            try:
                ack = await self._bus.publish_stored(where.subject, message.payload, headers)
            except Exception as exc:
                _end(span)
                raise PublishError(
                    ErrorCode.UNAVAILABLE, f"not stored: {type(exc).__name__}"
                ) from None
            self.in_flight += 1
            result: asyncio.Future[Published] = loop.create_future()
            ack.add_done_callback(lambda fut: self._stored(fut, result, span))
            # Every stored publish is answered in bounded time, and the broker client's
            # slot it holds is freed even if the stream's answer never comes.
            deadline = loop.call_later(self._ack_timeout_s, _expire, ack)
            result.add_done_callback(lambda _: deadline.cancel())
            return result
        try:
            if not self._bus.ready:
                raise PublishError(ErrorCode.UNAVAILABLE, "broker unavailable")
            await self._bus.publish(where.subject, message.payload, headers)
        finally:
            _end(span)
        done: asyncio.Future[Published] = loop.create_future()
        done.set_result(Published())
        return done

    def _stored(
        self, ack: asyncio.Future[Any], result: asyncio.Future[Published], span: Span | None
    ) -> None:
        self.in_flight -= 1
        if ack.cancelled():
            _end(span)
            reason = f"storage not confirmed within {self._ack_timeout_s:g} s"
            _settle(result, PublishError(ErrorCode.TIMEOUT, reason))
            return
        exc = ack.exception()
        if exc is not None:
            _end(span)
            code = (
                ErrorCode.TIMEOUT
                if isinstance(exc, asyncio.TimeoutError)
                else ErrorCode.UNAVAILABLE
            )
            _settle(result, PublishError(code, f"not stored: {type(exc).__name__}"))
            return
        pub = ack.result()
        if span is not None:
            span.set_attribute("frys.seq", int(pub.seq))
        _end(span)
        if not result.done():
            result.set_result(Published(int(pub.seq), bool(pub.duplicate)))


def _expire(ack: asyncio.Future[Any]) -> None:
    if not ack.done():
        ack.cancel()


def _settle(result: asyncio.Future[Published], exc: PublishError) -> None:
    if not result.done():
        result.set_exception(exc)


def _end(span: Span | None) -> None:
    if span is not None:
        span.end()
