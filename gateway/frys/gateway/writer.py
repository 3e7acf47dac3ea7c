"""Everything a gateway sends one client goes through its :class:`ClientWriter`.

One object owns the outbound bytes of a connection, so one place enforces the rules of
``docs/protocol.md`` §5.5 and RFC 6455 §5.5.1:

- **nothing after Close**: once :meth:`ClientWriter.close` has been called (the close frame
  is being sent), every later write is refused, whatever path it comes from (replies,
  deliveries, paced tensor chunks, conflated state values);
- **bounded**: at most ``queue_bytes`` of unsent data (the transport's buffer); beyond it the
  session is *backlogged*: deliveries on state channels are conflated to the newest value,
  tensor frames are skipped and resynchronised with a keyframe later, and any other
  delivery cuts the session (4000) so that the client resumes from its position;
- **batched**: deliveries of one event-loop tick are gathered and written with one
  ``transport.write`` at the end of the tick, whatever the number of channels;
- **paced**: large tensor frames wait in a queue of their own, at most
  :data:`BULK_WATERMARK` bytes ahead of later traffic in the socket.

The writer never waits on aiohttp internals: a backlogged writer polls the transport's
public buffer size with a short, growing sleep (only backlogged writers do this).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import socket
import sys
import termios
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from frys.gateway.metrics import Metrics
from frys.gateway.optimiser.cost import LinkClass
from frys.gateway.optimiser.links import LinkEstimator
from frys.gateway.wire import PLAIN_JSON, PLAIN_MSGPACK, WireClass
from frys.gateway.wsframe import binary_frame, text_frame
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind
from frys.shared.protocol.codec import WireCodec

log = logging.getLogger("frys.gateway.writer")

BULK_WATERMARK = 256 * 1024
"""Bytes of large frames allowed to wait in a socket buffer ahead of later traffic."""

KERNEL_CHECK_EVERY = 32
"""Writes between two reads of the kernel's send queue (one ``ioctl``). Left to
autotuning the kernel buffer grows to megabytes that the transport's buffer never shows:
a reader on a slow link would sit behind seconds of stale data before the slow-reader
policy noticed anything, so the kernel's unsent bytes count towards ``queue_bytes`` too."""

HARD_LIMIT_FACTOR = 4
"""Replies are never dropped, but a session whose unsent bytes pass this many times
``queue_bytes`` (a client that asks and never reads) is cut like a slow reader."""

_POLL_FIRST_S = 0.001
_POLL_MAX_S = 0.02


class Source(Protocol):
    """What the writer needs of a channel's fan-out to conflate and resynchronise."""

    @property
    def kind(self) -> ChannelKind: ...

    def snapshot_frame(self, binary: bool) -> bytes | None: ...

    def has_subscriber(self, sub: object) -> bool: ...

    def tensor_stale_for(self, sub: object) -> bool: ...

    def tensor_resync(self, sub: object) -> bool: ...


class WriterState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    """A close frame was sent (or the transport is gone): nothing more is written."""


class ClientWriter:
    """The outbound side of one connection (see the module docstring).

    Slotted and lazy: an idle connection holds only this object and its transport."""

    __slots__ = (
        "_backlog_at",
        "_bulk",
        "_bulk_bytes",
        "_drain_task",
        "_fd",
        "_metrics",
        "_out",
        "_pump_task",
        "_schedule",
        "_writes",
        "backlogged",
        "binary",
        "codec",
        "link",
        "on_slow",
        "queue_bytes",
        "stale",
        "state",
        "transport",
        "wire",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        codec: WireCodec,
        metrics: Metrics,
        schedule_flush: Callable[[ClientWriter], None],
        queue_bytes: int,
        on_slow: Callable[[], None],
    ):
        self.transport = transport
        self.codec = codec
        self.binary = codec.binary
        self.wire: WireClass = PLAIN_MSGPACK if codec.binary else PLAIN_JSON
        """What this connection decodes and where it sits: the hub hands the same bytes to
        every writer of a class (set from ``connect.codecs``, :mod:`frys.gateway.wire`)."""
        self.link: LinkEstimator | None = None
        """The link's estimates, from how fast this writer's backlogs drain."""
        self._backlog_at: tuple[float, int] | None = None
        self._metrics = metrics
        self._schedule = schedule_flush
        self.queue_bytes = queue_bytes
        self.on_slow = on_slow
        """Called once when a delivery cannot be taken and cannot be conflated."""
        self.state = WriterState.OPEN
        self.backlogged = False
        self.stale: set[Source] | None = None
        self._out: list[bytes] | None = None
        self._bulk: deque[bytes] | None = None
        self._bulk_bytes = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._fd = -2
        """The socket's descriptor, looked up on first need (-2: not yet, -1: none)."""
        self._writes = 0
        with contextlib.suppress(Exception):
            transport.set_write_buffer_limits(high=queue_bytes)

    # --- state ---------------------------------------------------------------------------
    def close(self) -> bool:
        """The close frame goes next: refuse everything from now on. True the first time."""
        if self.state is WriterState.CLOSED:
            return False
        self.state = WriterState.CLOSED
        self._out = None
        self._bulk = None
        self._bulk_bytes = 0
        self.stale = None
        return True

    def release(self) -> None:
        """The connection is gone: stop the writer's tasks."""
        self.close()
        for task in (self._pump_task, self._drain_task):
            if task is not None and not task.done():
                task.cancel()
        self._pump_task = self._drain_task = None

    def abort(self) -> None:
        """Drop the connection without a close handshake (a reader that reads nothing)."""
        self.close()
        if not self.transport.is_closing():
            self.transport.abort()

    # --- replies -------------------------------------------------------------------------
    def send(self, frame: f.Frame) -> None:
        """Encode and write one frame now (replies, acks, errors)."""
        if self.state is not WriterState.OPEN:
            return
        payload = self.codec.encode(frame)
        if isinstance(payload, str):
            self.write(text_frame(payload))
        else:
            self.write(binary_frame(payload))

    def write(self, data: bytes, paced: bool = False) -> None:
        """Write framed bytes now (replies, history). Beyond the hard limit the session is
        cut: its client asks without reading. ``paced`` writes (tensor frames, bounded by
        :data:`BULK_WATERMARK` before they are written) are exempt."""
        if self.state is not WriterState.OPEN or self.transport.is_closing():
            return
        self.transport.write(data)
        pending = self.transport.get_write_buffer_size()
        if pending > self.queue_bytes:
            if not self.backlogged:
                self._on_backlog()
            if not paced and pending > self.queue_bytes * HARD_LIMIT_FACTOR:
                self.on_slow()

    def write_state(self, source: Source) -> None:
        """The current value of a state channel (a joiner's snapshot): conflated like any
        state delivery, so a backlogged session holds at most one pending value per
        channel however often it asks."""
        if self.state is not WriterState.OPEN:
            return
        if self.backlogged:
            self._mark_stale(source)
            return
        frame = source.snapshot_frame(self.binary)
        if frame is not None:
            self.write(frame)

    async def drained(self, size: int) -> bool:
        """Wait until at most ``size`` bytes are unsent (paced replies such as history);
        False if the writer closed meanwhile."""
        return await self._wait_below(size)

    # --- deliveries (the hub's hot path) -------------------------------------------------
    def deliver(self, blob: bytes, source: Source) -> None:
        """The same framed bytes go to every subscriber of ``source``: gather them for the
        end of this tick (:meth:`flush_out`)."""
        if self.state is not WriterState.OPEN:
            return
        if self.backlogged:
            if source.kind is ChannelKind.STATE:
                self._mark_stale(source)
                self._metrics.conflated += 1
            else:
                self.on_slow()
            return
        out = self._out
        if out is None:
            self._out = [blob]
            self._schedule(self)
        else:
            out.append(blob)

    def flush_out(self) -> None:
        out, self._out = self._out, None
        if not out or self.state is not WriterState.OPEN:
            return
        transport = self.transport
        if transport.is_closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        transport.write(data)
        metrics = self._metrics
        metrics.writes += 1
        metrics.bytes_out += len(data)
        pending = transport.get_write_buffer_size()
        self._writes += 1
        if self._writes >= KERNEL_CHECK_EVERY:
            self._writes = 0
            pending += kernel_unsent(self.fd)
        if pending > self.queue_bytes:
            self._on_backlog()

    def _mark_stale(self, source: Source) -> None:
        if self.stale is None:
            self.stale = set()
        self.stale.add(source)

    def forget(self, source: Source) -> None:
        """``source`` was unsubscribed: no conflated value of it is owed any more."""
        if self.stale is not None:
            self.stale.discard(source)

    # --- tensors -------------------------------------------------------------------------
    def tensor_ready(self) -> bool:
        """Whether a new tensor frame can be queued (the relay asks at each frame's start;
        the chunks of a frame once started are all sent)."""
        return (
            self.state is WriterState.OPEN
            and not self.backlogged
            and self._bulk_bytes <= self.queue_bytes
        )

    def tensor_conflated(self, source: Source) -> None:
        """A tensor frame was skipped: resynchronise with a keyframe once caught up."""
        if self.state is not WriterState.OPEN:
            return
        self._mark_stale(source)
        self._metrics.conflated += 1
        if not self.backlogged:
            self._on_backlog()

    def deliver_tensor(self, frame: bytes, source: Source) -> None:
        """A tensor frame or chunk for this subscriber alone, paced behind
        :data:`BULK_WATERMARK` so a 64 MB tensor does not hold up a small event."""
        if self.state is not WriterState.OPEN:
            return
        metrics = self._metrics
        metrics.writes += 1
        metrics.bytes_out += len(frame)
        if not self._bulk and self.transport.get_write_buffer_size() <= BULK_WATERMARK:
            self.write(frame, paced=True)
            return
        if self._bulk is None:
            self._bulk = deque()
        self._bulk.append(frame)
        self._bulk_bytes += len(frame)
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.get_running_loop().create_task(self._pump_bulk())
            self._pump_task.add_done_callback(_log_failure)

    async def _pump_bulk(self) -> None:
        transport = self.transport
        with contextlib.suppress(Exception):
            transport.set_write_buffer_limits(high=BULK_WATERMARK, low=BULK_WATERMARK // 4)
            # The kernel's own send buffer (autotuned up to megabytes) would otherwise sit
            # ahead of every later small message too.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BULK_WATERMARK)
        try:
            while self._bulk and self.state is WriterState.OPEN:
                if not await self._wait_below(BULK_WATERMARK):
                    return
                bulk = self._bulk
                if not bulk:
                    return
                frame = bulk.popleft()
                self._bulk_bytes -= len(frame)
                self.write(frame, paced=True)
        finally:
            with contextlib.suppress(Exception):
                transport.set_write_buffer_limits(high=self.queue_bytes)

    async def _wait_below(self, size: int) -> bool:
        """Wait until the transport holds at most ``size`` unsent bytes; False if the
        writer closed meanwhile."""
        delay = _POLL_FIRST_S
        while self.unsent() > size:
            if self.state is not WriterState.OPEN or self.transport.is_closing():
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        return self.state is WriterState.OPEN and not self.transport.is_closing()

    def unsent(self) -> int:
        """Bytes written and not yet sent: the transport's buffer and the kernel's queue."""
        return self.transport.get_write_buffer_size() + kernel_unsent(self.fd)

    @property
    def fd(self) -> int:
        """The socket's file descriptor (-1 when the transport has none)."""
        if self._fd == -2:
            self._fd = -1
            with contextlib.suppress(Exception):
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    self._fd = sock.fileno()
        return self._fd

    # --- backlog -------------------------------------------------------------------------
    def _on_backlog(self) -> None:
        self.backlogged = True
        if self.link is not None and self._backlog_at is None:
            self._backlog_at = (time.monotonic(), self.transport.get_write_buffer_size())
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._wait_drained())
            self._drain_task.add_done_callback(_log_failure)

    def _drained(self) -> None:
        """A backlog drained: what left the buffer, and how fast, tells the link."""
        started, self._backlog_at = self._backlog_at, None
        if started is None or self.link is None:
            return
        at, size = started
        left = size - self.transport.get_write_buffer_size()
        self.wire = _relinked(self.wire, self.link.drained(left, time.monotonic() - at))

    async def _wait_drained(self) -> None:
        """Wait until the socket takes data again, then send each conflated state value
        and a keyframe of each tensor stream skipped meanwhile."""
        while True:
            if not await self._wait_below(self.queue_bytes // 4):
                return
            if not self._bulk:
                break
            await asyncio.sleep(_POLL_MAX_S)
        self.backlogged = False
        self._drained()
        stale, self.stale = self.stale or set(), None
        for source in stale:
            if self.state is not WriterState.OPEN:
                return
            if not source.has_subscriber(self):
                continue
            frame = source.snapshot_frame(self.binary)
            if frame is not None:
                self.write(frame)
            if source.tensor_stale_for(self):
                source.tensor_resync(self)


def kernel_unsent(fd: int) -> int:
    """Bytes in the kernel's send queue of socket ``fd`` not yet sent (Linux
    ``SIOCOUTQ``); 0 where the platform cannot tell."""
    if fd < 0 or _SIOCOUTQ is None:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, _SIOCOUTQ, b"\0\0\0\0"), sys.byteorder)
    except OSError:
        return 0


_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
"""Linux's ``SIOCOUTQ`` has the number of ``TIOCOUTQ``."""


def _relinked(wire: WireClass, link: LinkClass) -> WireClass:
    return wire if wire.link is None or wire.link is link else wire._replace(link=link)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("writer task failed", exc_info=task.exception())
