"""A minimal WebSocket client on a raw asyncio protocol, built to receive at millions of
messages per second without parsing them.

A connection does a real HTTP upgrade, then parses frames one by one while it connects,
authenticates and subscribes (a handful of frames, answering pings). Once subscribed it
switches to *counting*: every benchmark message has the same size on the wire (a
fixed-width timestamp inside fixed-size data), so the number of messages is the number of
received bytes divided by that size, and only the last complete message of each read is
looked at, for one latency sample. Targets whose server frames a byte stream rather than
messages (NATS over WebSocket coalesces many ``MSG`` lines into one frame) are counted on
the frame payloads instead, parsing frame headers only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

TS_WIDTH = 20
"""Digits of the zero-padded ``time.monotonic_ns()`` at the start of every payload."""

_LEN2 = struct.Struct("!H")
_LEN8 = struct.Struct("!Q")


def make_payload(size: int, now_ns: int | None = None) -> bytes:
    """A benchmark payload: the send time as 20 ASCII digits, then filler to ``size``."""
    if size < TS_WIDTH:
        raise ValueError(f"payload must be at least {TS_WIDTH} bytes")
    stamp = b"%020d" % (time.monotonic_ns() if now_ns is None else now_ns)
    return stamp + b"x" * (size - TS_WIDTH)


def mask_frame(payload: bytes, opcode: int) -> bytes:
    """One final, masked client frame (RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + _LEN2.pack(n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + _LEN8.pack(n)
    key = os.urandom(4)
    if n == 0:
        return head + key
    reps = key * (n // 4 + 1)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(reps[:n], "big")).to_bytes(n, "big")
    return head + key + masked


class WsClosed(ConnectionError):
    """The connection closed (or failed) before the expected frame arrived."""


@dataclass(slots=True)
class Counting:
    """How to count a target's messages once subscribed."""

    unit: int
    """Bytes per message on the counted stream."""
    ts_from_end: int
    """Offset of the timestamp, counted back from the end of a message."""
    framed: bool = False
    """Count frame payloads (the target coalesces messages into frames) instead of raw
    bytes (the target sends every message in frames of its own)."""


class RawWs(asyncio.Protocol):
    """One client WebSocket; see the module docstring."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handshaken = False
        self._handshake_key = ""
        self._opened: asyncio.Future[None] | None = None
        self._frames: deque[tuple[int, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._frag_op = 0
        self._frag: list[bytes] = []
        self.closed = False
        self.close_reason = ""
        self.flags: set[str] = set()
        """Protocol state a dialect keeps on the connection."""
        self.on_text: Callable[[RawWs, int, bytes], bool] | None = None
        """Called for every data frame while parsing; returns True when it consumed it
        (engine.io heartbeats, for instance) so that it is not queued."""
        # counting
        self.counting: Counting | None = None
        self.nbytes = 0
        self.sample: Callable[[int], None] | None = None
        self._frem = 0
        self._fhead = b""
        self.waker: asyncio.Event | None = None
        """Set on every read while counting (a publisher paces itself on it)."""

    # --- asyncio protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.close_reason:
            self.close_reason = f"connection lost: {exc}" if exc else "connection closed"
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(WsClosed(self.close_reason))
        self._wake()

    def data_received(self, data: bytes) -> None:
        counting = self.counting
        if counting is not None:
            if counting.framed:
                self._count_framed(data)
            else:
                self._count(data, counting)
            if self.waker is not None:
                self.waker.set()
            return
        self._buf += data
        if not self._handshaken:
            self._parse_handshake()
            if not self._handshaken:
                return
        self._parse_frames()

    # --- handshake --------------------------------------------------------------------------
    def start_handshake(self, host: str, port: int, path: str, subprotocol: str | None) -> None:
        assert self.transport is not None
        self._handshake_key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._handshake_key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self._opened = asyncio.get_running_loop().create_future()
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _parse_handshake(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > 16384:
                self._fail("handshake response too long")
            return
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " ":
            self._fail(f"upgrade refused: {status}")
            return
        self._handshaken = True
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    async def opened(self) -> None:
        assert self._opened is not None
        await self._opened

    def _fail(self, reason: str) -> None:
        self.close_reason = reason
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(WsClosed(reason))
        if self.transport is not None:
            self.transport.abort()

    # --- frames while connecting ------------------------------------------------------------
    def _parse_frames(self) -> None:
        buf = self._buf
        while True:
            n = len(buf)
            if n < 2:
                return
            b0, b1 = buf[0], buf[1]
            length = b1 & 0x7F
            pos = 2
            if length == 126:
                if n < 4:
                    return
                length = _LEN2.unpack_from(buf, 2)[0]
                pos = 4
            elif length == 127:
                if n < 10:
                    return
                length = _LEN8.unpack_from(buf, 2)[0]
                pos = 10
            if b1 & 0x80:  # a masked server frame: tolerated, unmasked here
                if n < pos + 4:
                    return
                key = bytes(buf[pos : pos + 4])
                pos += 4
            else:
                key = b""
            if n < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            if key:
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            self._on_frame(b0 & 0x80 != 0, b0 & 0x0F, payload)
            if self.counting is not None:
                # Switched to counting inside a callback: the rest of the buffer is stream.
                rest, self._buf = bytes(buf), bytearray()
                if rest:
                    self.data_received(rest)
                return

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(payload, OP_PONG)
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            code = _LEN2.unpack_from(payload)[0] if len(payload) >= 2 else 1005
            self.close_reason = f"closed by server: {code} {payload[2:].decode(errors='replace')}"
            self.closed = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(mask_frame(payload[:2], OP_CLOSE))
                self.transport.close()
            self._wake()
            return
        if opcode == OP_CONT:
            self._frag.append(payload)
            if not fin:
                return
            opcode, payload = self._frag_op, b"".join(self._frag)
            self._frag = []
        elif not fin:
            self._frag_op, self._frag = opcode, [payload]
            return
        if self.on_text is not None and self.on_text(self, opcode, payload):
            return
        self._frames.append((opcode, payload))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self, timeout_s: float = 10.0) -> tuple[int, bytes]:
        """The next data frame (opcode, payload); raises :class:`WsClosed` or TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while not self._frames:
            if self.closed:
                raise WsClosed(self.close_reason)
            self._waiter = asyncio.get_running_loop().create_future()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            try:
                await asyncio.wait_for(self._waiter, remaining)
            finally:
                self._waiter = None
        return self._frames.popleft()

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(payload, opcode))

    def send_text(self, text: str) -> None:
        self.send(text.encode(), OP_TEXT)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if not self.closed:
                self.transport.write(mask_frame(_LEN2.pack(1000), OP_CLOSE))
            self.transport.close()

    # --- counting ----------------------------------------------------------------------------
    def start_counting(self, counting: Counting, sample: Callable[[int], None] | None) -> None:
        """From now on count messages; bytes already received after the last parsed frame
        are the start of the stream."""
        self.sample = sample
        self.nbytes = 0
        self._frem = 0
        self._fhead = b""
        self.counting = counting
        rest, self._buf = bytes(self._buf), bytearray()
        if rest:
            self.data_received(rest)

    @property
    def messages(self) -> int:
        c = self.counting
        return 0 if c is None else self.nbytes // c.unit

    def _count(self, data: bytes | memoryview, c: Counting) -> None:
        prev = self.nbytes
        n = prev + len(data)
        self.nbytes = n
        end = n - n % c.unit
        at = end - c.ts_from_end - prev
        if at >= 0 and self.sample is not None:
            try:
                stamp = int(bytes(data[at : at + TS_WIDTH]))
            except ValueError:
                return
            self.sample(time.monotonic_ns() - stamp)

    def _count_framed(self, data: bytes) -> None:
        """Strip frame headers and count the payload bytes (headers are parsed, payloads
        are not)."""
        c = self.counting
        assert c is not None
        view = memoryview(data)
        if self._fhead:
            view = memoryview(self._fhead + data)
            self._fhead = b""
        pos, n = 0, len(view)
        while pos < n:
            if self._frem:
                take = min(self._frem, n - pos)
                self._count(view[pos : pos + take], c)
                self._frem -= take
                pos += take
                continue
            if n - pos < 2:
                self._fhead = bytes(view[pos:])
                return
            b1 = view[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                head = 4
                if n - pos < head:
                    self._fhead = bytes(view[pos:])
                    return
                length = _LEN2.unpack_from(view, pos + 2)[0]
            elif length == 127:
                head = 10
                if n - pos < head:
                    self._fhead = bytes(view[pos:])
                    return
                length = _LEN8.unpack_from(view, pos + 2)[0]
            pos += head
            self._frem = length


async def open_ws(
    host: str,
    port: int,
    path: str,
    subprotocol: str | None = None,
    *,
    local_host: str | None = None,
    timeout_s: float = 10.0,
) -> RawWs:
    """TCP connect and WebSocket upgrade; returns the open connection."""
    loop = asyncio.get_running_loop()
    local_addr = (local_host, 0) if local_host else None
    _transport, proto = await asyncio.wait_for(
        loop.create_connection(RawWs, host, port, local_addr=local_addr), timeout_s
    )
    proto.start_handshake(host, port, path, subprotocol)
    try:
        await asyncio.wait_for(proto.opened(), timeout_s)
    except BaseException:
        proto.close()
        raise
    return proto
