"""The gateway's listening socket: admission and the handshake deadline, before aiohttp.

aiohttp parses HTTP and upgrades WebSockets, but it bounds neither how many connections
it holds nor how long a client may take to send its request: a thousand clients sending
an upgrade at one byte a second would hold a thousand sockets for ever. Each accepted
connection therefore passes :class:`Guard` first:

- **global and per-address limits**: over either, the connection gets a plain
  ``503 Service Unavailable`` with ``Retry-After`` and is closed, before any parsing;
- **handshake deadline**: a connection whose first request has not reached a handler
  within ``handshake_timeout_s`` (TLS handshake included) is aborted.

The guard sits between the event loop and aiohttp's protocol as an ordinary asyncio
protocol that forwards every callback, so it relies on no private part of aiohttp.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 21\r\n"
    b"\r\n"
    b"too many connections\n"
)


@dataclass(frozen=True, slots=True)
class Admission:
    max_connections: int = 0
    """Connections this gateway holds at most (0: no limit)."""
    max_connections_per_ip: int = 0
    """Connections from one address (0: no limit; behind a load balancer every client
    shares its address)."""
    handshake_timeout_s: float = 10.0


SWEEP_S = 0.25
"""How often handshake deadlines are checked (a deadline is late by at most this)."""


class Guard:
    """Counts connections and enforces :class:`Admission`."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.total = 0
        self.per_ip: defaultdict[str, int] = defaultdict(int)
        self.refused = 0
        self.timed_out = 0
        self._deadlines: dict[asyncio.BaseTransport, float] = {}
        """Connections that have not completed a request yet, with their deadline."""
        self._sweeper: asyncio.TimerHandle | None = None

    def admit(self, ip: str) -> bool:
        adm = self.admission
        if adm.max_connections and self.total >= adm.max_connections:
            self.refused += 1
            return False
        if adm.max_connections_per_ip and self.per_ip[ip] >= adm.max_connections_per_ip:
            self.refused += 1
            return False
        self.total += 1
        if adm.max_connections_per_ip:
            self.per_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.total -= 1
        if self.admission.max_connections_per_ip:
            left = self.per_ip[ip] - 1
            if left > 0:
                self.per_ip[ip] = left
            else:
                self.per_ip.pop(ip, None)

    def watch(self, transport: asyncio.BaseTransport) -> None:
        """Start ``transport``'s handshake deadline. A sweep four times a second checks them all
        (a timer per connection would cost every connect a heap push and a cancel)."""
        self._deadlines[transport] = time.monotonic() + self.admission.handshake_timeout_s
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def handshake_done(self, transport: asyncio.BaseTransport | None) -> None:
        """A request reached a handler: the deadline no longer applies."""
        if transport is not None:
            self._deadlines.pop(transport, None)

    def forget(self, transport: asyncio.BaseTransport) -> None:
        self._deadlines.pop(transport, None)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        expired = [t for t, deadline in self._deadlines.items() if deadline <= now]
        for transport in expired:
            del self._deadlines[transport]
            self.timed_out += 1
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
        if self._deadlines:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def guarded(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``handler`` ending the handshake deadline of the connection it serves.

        A per-route wrapper rather than an application middleware: with any middleware,
        aiohttp runs every request through two more coroutines (the middleware's and its own
        ``current_app`` one), and for a WebSocket both stay suspended, holding their frames,
        for the whole life of the connection. The WebSocket handler calls
        :meth:`handshake_done` itself."""
        guard = self

        async def handshake_done(request: web.Request) -> web.StreamResponse:
            guard.handshake_done(request.transport)
            return await handler(request)

        return handshake_done


CLOSE_PROTOCOL_ERROR = b"\x88\x02\x03\xea"
"""A close frame with code 1002, as a server sends it (unmasked)."""


class GuardedProtocol(asyncio.Protocol):
    """Forwards every callback to aiohttp's protocol once the guard admitted the
    connection. After the WebSocket upgrade it also checks that every frame from the client
    is masked (RFC 6455 §5.1: a server MUST close the connection on an unmasked frame),
    reading only frame headers and skipping payloads."""

    __slots__ = ("_guard", "_head", "_inner", "_ip", "_refused", "_skip", "_transport", "_ws")

    def __init__(self, inner: asyncio.Protocol, guard: Guard):
        self._inner = inner
        self._guard = guard
        self._ip = ""
        self._refused = False
        self._transport: asyncio.BaseTransport | None = None
        self._ws = False
        self._skip = 0
        self._head = b""

    def websocket(self) -> None:
        """The connection was upgraded: from now on its bytes are WebSocket frames."""
        self._ws = True

    def _masked(self, data: bytes) -> bool:
        """Whether every frame header in ``data`` (continuing earlier chunks) has its mask
        bit set; partial headers are kept for the next chunk."""
        if self._head:
            data = self._head + data
            self._head = b""
        n = len(data)
        i = 0
        skip = self._skip
        while True:
            if skip >= n - i:
                self._skip = skip - (n - i)
                return True
            i += skip
            skip = 0
            if n - i < 2:
                self._head = data[i:]
                self._skip = 0
                return True
            second = data[i + 1]
            if not second & 0x80:
                return False
            length = second & 0x7F
            size = 4 if length == 126 else 10 if length == 127 else 2
            if n - i < size + 4:
                self._head = data[i:]
                self._skip = 0
                return True
            if length >= 126:
                length = int.from_bytes(data[i + 2 : i + size], "big")
            i += size + 4
            skip = length

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.admission.max_connections_per_ip:
            peer = transport.get_extra_info("peername")
            self._ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(self._ip):
            self._refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSAL)
            transport.close()
            return
        self._transport = transport
        self._guard.watch(transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._ws and not self._masked(data):
            self._refused = True  # nothing more reaches the session
            transport = self._transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(CLOSE_PROTOCOL_ERROR)
            if transport is not None:
                transport.close()
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused and self._transport is None:
            return
        if self._transport is not None:
            self._guard.forget(self._transport)
        self._guard.release(self._ip)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class CannotListen(OSError):
    """The listening address could not be taken (in use, not ours, not allowed); the
    message says which and why."""

    exit_code = 1


class Listener:
    """One listening socket serving an aiohttp runner through a :class:`Guard`.

    :meth:`bind` takes the address before anything else starts, so that a gateway that
    cannot listen fails before it connects to NATS or announces itself to its peers;
    :meth:`start` then serves on that socket (or binds now, when :meth:`bind` was not
    called)."""

    def __init__(self, runner: web.BaseRunner, guard: Guard):
        self._runner = runner
        self.guard = guard
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    def bind(
        self, host: str, port: int, reuse_port: bool | None = None, backlog: int = 4096
    ) -> int:
        """Take ``host:port`` now; the port the system chose when ``port`` is 0."""
        any_v6 = host in ("", "::")
        family = socket.AF_INET6 if any_v6 or ":" in host else socket.AF_INET
        try:
            self._sock = socket.create_server(
                (host, port),
                family=family,
                backlog=backlog,
                reuse_port=bool(reuse_port),
                dualstack_ipv6=any_v6 and socket.has_dualstack_ipv6(),
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CannotListen(f"cannot listen on {host or '*'}:{port}: {reason}") from None
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        return self.port

    async def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool | None = None,
        backlog: int = 4096,
    ) -> int:
        server = self._runner.server
        assert server is not None, "runner not set up"
        guard = self.guard

        def factory() -> asyncio.Protocol:
            return GuardedProtocol(server(), guard)

        loop = asyncio.get_running_loop()
        handshake_timeout_s = guard.admission.handshake_timeout_s if ssl_context else None
        if self._sock is not None:
            sock, self._sock = self._sock, None
            self._server = await loop.create_server(
                factory,
                sock=sock,
                ssl=ssl_context,
                ssl_handshake_timeout=handshake_timeout_s,
                backlog=backlog,
            )
        else:
            self._server = await loop.create_server(
                factory,
                host,
                port,
                ssl=ssl_context,
                ssl_handshake_timeout=handshake_timeout_s,
                reuse_port=reuse_port,
                backlog=backlog,
                family=socket.AF_INET if host and ":" not in host else socket.AF_UNSPEC,
            )
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def close(self) -> None:
        """Stop accepting (open connections are the runner's to close)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._server is not None:
            self._server.close()
            self._server = None
