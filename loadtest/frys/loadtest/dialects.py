"""The client side of every benchmarked server's protocol: connect, subscribe, ping, and
the exact wire size of one benchmark message (so that received bytes count messages).

* ``frys``: protocol v1 over ``frys.v1.msgpack`` (``connect`` → ``connected``,
  ``subscribe`` → ``ack``, ``ping`` → ``pong``); messages are ``message`` frames carrying
  the payload as msgpack ``bin``, published by the engine (``from`` is set).
* ``plain``: the small text protocol of the aiohttp and Node ``ws`` peers (``hello`` →
  ``ok``, ``sub:CH`` → ``ok``, ``ping`` → ``pong``); messages are the bare payload in one
  binary frame; a publisher sends ``[len(ch)][ch][payload]``.
* ``socketio``: Socket.IO v5 over Engine.IO v4, WebSocket transport only (``40`` →
  ``40{sid}``, ``join`` and ``echo`` events with acks); messages are the event
  ``["m", payload]`` with the payload as a string.
* ``nats``: the NATS text protocol over nats-server's WebSocket listener (``CONNECT`` +
  ``PING`` → ``PONG``, ``SUB``); messages are ``MSG`` lines, coalesced into frames by the
  server, so they are counted on frame payloads.

Every dialect is a plain picklable value, so load processes build their own.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field

from frys.gateway.wsframe import binary_frame
from frys.loadtest.wsraw import OP_BINARY, OP_TEXT, Counting, RawWs, WsClosed, mask_frame
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.codec import decode_msgpack, encode_msgpack, pack_data
from frys.shared.protocol.delivery import MessageTemplate
from frys.shared.protocol.subjects import Subjects

PUBLISHER_NAME = "engine"
"""``from`` of every Frys benchmark message: the backend helper's default name."""

FRYS_SEQ_EXAMPLE = 1 << 20
"""Stored channels carry the stream sequence in every frame; the benchmark starts the
stream above 65,535 so that every sequence has the same msgpack width (5 bytes)."""


NATS_FIRST_PING_WAIT_S = 3.0
MAX_SETUP_FRAMES = 10_000
"""Frames a connection may receive while waiting for one answer before giving up."""


class ProtocolError(RuntimeError):
    """The server answered something other than what the protocol says."""


@dataclass(frozen=True)
class Dialect:
    """How to talk to one benchmarked server. ``kind`` picks the protocol."""

    kind: str
    token: str = ""
    stored: bool = False
    """Frys only: the channels are stored (state), so frames carry a sequence."""
    nats_prefix: str = "bench"
    _ids: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)

    # --- endpoints ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        if self.kind == "frys":
            return "/ws"
        if self.kind == "socketio":
            return "/socket.io/?EIO=4&transport=websocket"
        if self.kind == "nats":
            return "/"
        return "/ws"

    @property
    def subprotocol(self) -> str | None:
        return "frys.v1.msgpack" if self.kind == "frys" else None

    def _next_id(self) -> int:
        self._ids[0] += 1
        return self._ids[0]

    def prepare(self, ws: RawWs) -> None:
        """Install per-protocol housekeeping (Engine.IO heartbeats, NATS pings)."""
        if self.kind == "socketio":
            ws.on_text = _engineio_heartbeat
        elif self.kind == "nats":
            ws.on_text = _nats_heartbeat

    # --- operations ---------------------------------------------------------------------------
    async def hello(self, ws: RawWs, timeout_s: float = 10.0) -> None:
        """Connect and authenticate (Frys ``connect`` → ``connected`` and equivalents)."""
        if self.kind == "frys":
            ws.send(encode_msgpack(f.Connect(id=self._next_id(), token=self.token)))
            frame = decode_msgpack((await ws.recv(timeout_s))[1])
            if not isinstance(frame, f.Connected):
                raise ProtocolError(f"expected connected, got {frame}")
        elif self.kind == "plain":
            await _ask(ws, b"hello", b"ok", timeout_s)
        elif self.kind == "socketio":
            _op, data = await ws.recv(timeout_s)
            if not data.startswith(b"0"):
                raise ProtocolError(f"expected an Engine.IO open packet, got {data[:40]!r}")
            ws.send(b"40", OP_TEXT)
            _op, data = await ws.recv(timeout_s)
            if not data.startswith(b"40"):
                raise ProtocolError(f"expected a Socket.IO connect, got {data[:40]!r}")
        elif self.kind == "nats":
            _op, data = await ws.recv(timeout_s)
            if not data.startswith(b"INFO "):
                raise ProtocolError(f"expected INFO, got {data[:40]!r}")
            # protocol 0: no asynchronous INFO updates that would land among the messages.
            options = {"verbose": False, "pedantic": False, "protocol": 0, "headers": False}
            ws.send(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
            await _nats_pong(ws, timeout_s)
        else:
            raise ValueError(f"unknown dialect {self.kind!r}")

    async def subscribe(self, ws: RawWs, channel: str, timeout_s: float = 10.0) -> None:
        """Subscribe to ``channel`` and wait until the server confirms it."""
        if self.kind == "frys":
            ident = self._next_id()
            ws.send(encode_msgpack(f.Subscribe(id=ident, ch=channel)))
            for _ in range(MAX_SETUP_FRAMES):
                frame = decode_msgpack((await ws.recv(timeout_s))[1])
                if isinstance(frame, f.Ack) and frame.id == ident:
                    return
                if isinstance(frame, f.Error):
                    raise ProtocolError(f"subscribe refused: {frame.reason}")
            raise ProtocolError("no ack to subscribe")
        elif self.kind == "plain":
            await _ask(ws, b"sub:" + channel.encode(), b"ok", timeout_s)
        elif self.kind == "socketio":
            ident = self._next_id()
            ws.send(f'42{ident}["join",{json.dumps(channel)}]'.encode(), OP_TEXT)
            await _socketio_ack(ws, ident, timeout_s)
        elif self.kind == "nats":
            ws.send(f"SUB {self.subject(channel)} 1\r\nPING\r\n".encode())
            await _nats_pong(ws, timeout_s)
            if "pinged" not in ws.flags:
                # The server pings a new client once, early: take that ping now, before
                # counting starts, so that it does not land among the messages.
                await _nats_wait_ping(ws, NATS_FIRST_PING_WAIT_S)

    async def ping(self, ws: RawWs, timeout_s: float = 10.0) -> None:
        """One application-level round trip."""
        if self.kind == "frys":
            ident = self._next_id()
            ws.send(encode_msgpack(f.Ping(id=ident)))
            for _ in range(MAX_SETUP_FRAMES):
                frame = decode_msgpack((await ws.recv(timeout_s))[1])
                if isinstance(frame, f.Pong) and frame.id == ident:
                    return
            raise ProtocolError("no pong")
        elif self.kind == "plain":
            await _ask(ws, b"ping", b"pong", timeout_s)
        elif self.kind == "socketio":
            ident = self._next_id()
            ws.send(f'42{ident}["echo"]'.encode(), OP_TEXT)
            await _socketio_ack(ws, ident, timeout_s)
        elif self.kind == "nats":
            ws.send(b"PING\r\n")
            await _nats_pong(ws, timeout_s)

    # --- message sizes ------------------------------------------------------------------------
    def subject(self, channel: str) -> str:
        """The NATS subject of a benchmark channel (Frys's own mapping)."""
        return Subjects(self.nats_prefix).channel(parse_channel(channel))

    def counting(self, channel: str, payload_size: int) -> Counting:
        """Wire size of one message on ``channel`` and where its timestamp sits."""
        payload = b"0" * payload_size
        if self.kind == "frys":
            seq = FRYS_SEQ_EXAMPLE if self.stored else None
            body = MessageTemplate(channel).msgpack(pack_data(payload), seq, PUBLISHER_NAME)
            return Counting(len(binary_frame(body)), payload_size)
        if self.kind == "plain":
            return Counting(len(binary_frame(payload)), payload_size)
        if self.kind == "socketio":
            text = socketio_event("m", payload.decode())
            return Counting(len(binary_frame(text)), payload_size + 2)
        if self.kind == "nats":
            line = f"MSG {self.subject(channel)} 1 {payload_size}\r\n".encode()
            return Counting(len(line) + payload_size + 2, payload_size + 2, framed=True)
        raise ValueError(f"unknown dialect {self.kind!r}")

    def publish_frame(self, channel: str, payload: bytes) -> bytes:
        """A publisher connection's frame asking the server to broadcast ``payload``."""
        if self.kind == "plain":
            name = channel.encode()
            return mask_frame(bytes((len(name),)) + name + payload, OP_BINARY)
        if self.kind == "socketio":
            return mask_frame(socketio_event("pub", channel, payload.decode()), OP_TEXT)
        raise ValueError(f"{self.kind} servers are not published to over WebSocket")


def socketio_event(*args: str) -> bytes:
    """A Socket.IO EVENT packet (``42[...]``) on the default namespace."""
    return b"42" + json.dumps(list(args), separators=(",", ":")).encode()


async def _ask(ws: RawWs, question: bytes, answer: bytes, timeout_s: float) -> None:
    ws.send(question, OP_TEXT)
    _op, data = await ws.recv(timeout_s)
    if data != answer:
        raise ProtocolError(f"expected {answer!r}, got {data[:40]!r}")


async def _socketio_ack(ws: RawWs, ident: int, timeout_s: float) -> None:
    prefix = f"43{ident}[".encode()
    for _ in range(MAX_SETUP_FRAMES):
        _op, data = await ws.recv(timeout_s)
        if data.startswith(prefix):
            return
        if data.startswith(b"44"):
            raise ProtocolError(f"Socket.IO error: {data[:80]!r}")
    raise ProtocolError("no Socket.IO ack")


def _engineio_heartbeat(ws: RawWs, opcode: int, data: bytes) -> bool:
    if data == b"2":
        ws.send(b"3", OP_TEXT)
        return True
    return False


def _nats_heartbeat(ws: RawWs, opcode: int, data: bytes) -> bool:
    if data == b"PING\r\n":
        ws.flags.add("pinged")
        ws.send(b"PONG\r\n")
        return True
    return False


async def _nats_pong(ws: RawWs, timeout_s: float) -> None:
    """Wait for our PONG, answering the server's pings."""
    for _ in range(MAX_SETUP_FRAMES):
        _op, data = await ws.recv(timeout_s)
        if data.startswith(b"-ERR"):
            raise ProtocolError(data.decode(errors="replace").strip())
        if b"PING\r\n" in data:
            ws.flags.add("pinged")
            ws.send(b"PONG\r\n")
        if b"PONG\r\n" in data:
            return
    raise ProtocolError("no PONG")


async def _nats_wait_ping(ws: RawWs, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the server's first ping has been answered."""
    deadline = time.monotonic() + timeout_s
    while "pinged" not in ws.flags and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            _op, data = await ws.recv(0.05)
            if b"PING\r\n" in data:
                ws.flags.add("pinged")
                ws.send(b"PONG\r\n")


__all__ = ["Dialect", "ProtocolError", "WsClosed", "socketio_event"]
