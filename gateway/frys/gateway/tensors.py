"""Tensor relay: a gateway's copy of each tensor stream it forwards, and who is in sync.

Tensor frames (``enc: tensor``) pass through a channel's fanout like any message, but a
delta only helps a subscriber that holds the state it applies to. Per stream the relay keeps
a :class:`~frys.shared.tensor.TensorReplica` that applies every frame, and the set of
subscribers in sync. A keyframe goes to everyone (and brings them in sync); a delta goes
only to subscribers in sync. A subscriber that joins, or falls behind and is conflated, gets
a keyframe of the replica's current state, made on demand; when the relay itself holds no
state yet (or lost a frame), it asks the publishers for a keyframe instead of waiting for a
timer. Chunks are forwarded as they arrive, so a large tensor never blocks other traffic
for long; the replica applies the frame once its chunks are assembled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    DeltaHeader,
    KeyframeHeader,
    TensorError,
    TensorReplica,
    read_header,
    split_frame,
)
from frys.shared.tensor.dtypes import BY_CODE
from frys.shared.tensor.limits import ChunkLimits


class Subscriber(Protocol):
    """What the relay needs of a subscriber (a session's writer)."""

    def tensor_ready(self) -> bool: ...

    def tensor_conflated(self, source: Any) -> None: ...


class RelayHost(Protocol):
    """The channel fan-out a relay belongs to."""

    @property
    def subscribers(self) -> Container[Any]: ...

    def send_tensor(self, sub: Any, frames: list[bytes]) -> None: ...

    def request_keyframe(self, stream_id: int | None) -> None: ...


log = logging.getLogger("frys.gateway.tensors")

KEYFRAME_REQUEST_INTERVAL_S = 0.2
TOTAL_FIGURES = (
    "frames",
    "keyframes",
    "chunks",
    "bytes_wire",
    "bytes_raw",
    "conflated",
    "keyframes_served",
    "keyframe_requests",
    "errors",
)
"""Stream figures summed per gateway on ``/metrics``."""
RELAY_CHUNK_TIMEOUT_S = 10.0
"""A relay's chunks come from NATS at its speed: a set still incomplete after this long lost
a chunk, and its parts are dropped (with the periodic sweep, within 15 s)."""
APPLY_IN_THREAD_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Bounds of what one gateway's relays hold (docs/protocol.md §14.3): whatever
    publishers and subscribers send, replica memory, streams and requests stay bounded."""

    max_streams_per_channel: int = 64
    memory_bytes: int = 64 * 1024 * 1024
    """Decoded replica state across every stream of the gateway. Decoding a keyframe needs
    about twice its decoded size for a moment, so one replica takes at most half of it: with
    the default, tensors up to 32 MiB are replicated and larger ones forwarded without a
    replica (their joiners get keyframes from the publishers)."""
    idle_s: float = 300.0
    """A stream without frames for this long is forgotten (its replica freed)."""


class RelayBudget:
    """Replica bytes held across a gateway, reserved before a keyframe is decoded, and the
    bytes declared by incomplete chunk sets (counted against the same limit)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.chunks = 0
        self.released = 0
        """Bytes released since the gateway last gave memory back to the system."""

    def reserve(self, nbytes: int) -> bool:
        if self.used + self.chunks + nbytes > self.limit:
            return False
        self.used += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.used = max(0, self.used - nbytes)
        self.released += nbytes


"""Frames larger than this are applied to the replica in a worker thread."""


def unwrap_bin(packed: bytes) -> memoryview | None:
    """The bytes inside a msgpack ``bin`` value, without copying; ``None`` if not a bin."""
    if not packed:
        return None
    tag = packed[0]
    if tag == 0xC4 and len(packed) >= 2:
        start, size = 2, packed[1]
    elif tag == 0xC5 and len(packed) >= 3:
        start, size = 3, int.from_bytes(packed[1:3], "big")
    elif tag == 0xC6 and len(packed) >= 5:
        start, size = 5, int.from_bytes(packed[1:5], "big")
    else:
        return None
    if start + size != len(packed):
        return None
    return memoryview(packed)[start:]


@dataclass
class StreamStats:
    """Quality figures of one stream, as this relay sees it."""

    frames: int = 0
    keyframes: int = 0
    chunks: int = 0
    bytes_wire: int = 0
    bytes_raw: int = 0
    apply_s: float = 0.0
    conflated: int = 0
    keyframes_served: int = 0
    keyframe_requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    latency_samples: int = 0
    """Publish → this relay, on frames that carry their publish time."""
    shape: tuple[int, ...] = ()
    dtype: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "keyframes": self.keyframes,
            "chunks": self.chunks,
            "bytes_wire": self.bytes_wire,
            "bytes_raw": self.bytes_raw,
            "ratio": round(self.bytes_raw / self.bytes_wire, 3) if self.bytes_wire else None,
            "apply_ms": round(self.apply_s * 1000, 3),
            "conflated": self.conflated,
            "keyframes_served": self.keyframes_served,
            "keyframe_requests": self.keyframe_requests,
            "errors": self.errors,
            "latency_ms": (
                round(self.latency_ms_sum / self.latency_samples, 3)
                if self.latency_samples
                else None
            ),
            "shape": list(self.shape),
            "dtype": self.dtype,
        }


@dataclass
class StreamRelay:
    stream_id: int
    replica: TensorReplica = field(default_factory=TensorReplica)
    assembler: ChunkAssembler = field(
        default_factory=lambda: ChunkAssembler(ChunkLimits(timeout=RELAY_CHUNK_TIMEOUT_S))
    )
    in_sync: set[Subscriber] = field(default_factory=set)
    frame_targets: dict[tuple[int, int], set[Subscriber]] = field(default_factory=dict)
    """(sequence, frame CRC) of a chunked frame in flight → who receives its chunks."""
    synced: bool = False
    """Whether the replica holds the publisher's current state."""
    last_request: float = 0.0
    stats: StreamStats = field(default_factory=StreamStats)
    apply_queue: deque[tuple[list[bytes], set[Subscriber]]] = field(default_factory=deque)
    """Large frames waiting for the worker thread, with who fell behind on each."""
    applying: bool = False
    waiting: set[Subscriber] = field(default_factory=set)
    """Subscribers to resynchronise once the worker has caught up."""
    reserved: int = 0
    """Replica bytes reserved in the gateway's budget for this stream's state."""
    over_budget: bool = False
    """The last keyframe did not fit the budget: frames are forwarded, state not kept."""
    last_frame: float = field(default_factory=time.monotonic)


class TensorRelay:
    """The tensor streams of one channel."""

    def __init__(
        self,
        fanout: RelayHost,
        limits: RelayLimits | None = None,
        budget: RelayBudget | None = None,
    ):
        self.fanout: RelayHost | None = fanout
        self.limits = limits or RelayLimits()
        self.budget = budget or RelayBudget(self.limits.memory_bytes)
        self.streams: dict[int, StreamRelay] = {}
        self.refused = 0
        """Frames dropped: beyond the stream limit or the memory budget."""
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> RelayHost:
        assert self.fanout is not None, "relay used after close"
        return self.fanout

    def _stream(self, stream_id: int) -> StreamRelay | None:
        relay = self.streams.get(stream_id)
        if relay is None:
            if len(self.streams) >= self.limits.max_streams_per_channel:
                self.refused += 1
                return None
            relay = self.streams[stream_id] = StreamRelay(stream_id)
        return relay

    def close(self) -> None:
        """The channel has no subscriber left here: free every replica and drop the link
        to the fanout (the two refer to each other)."""
        for relay in self.streams.values():
            self._free(relay)
        self.streams.clear()
        for task in self._tasks:
            task.cancel()
        self.fanout = None

    def _free(self, relay: StreamRelay) -> None:
        pending = relay.assembler.pending_bytes
        relay.assembler.expire(float("inf"))
        self.budget.chunks -= pending - relay.assembler.pending_bytes
        self.budget.released += pending - relay.assembler.pending_bytes
        self.budget.release(relay.reserved)
        relay.reserved = 0
        relay.replica.reset()
        relay.synced = False

    def expire(self, now: float) -> int:
        """Forget streams idle for ``idle_s`` and incomplete chunk sets past their time;
        the number of streams forgotten."""
        idle = [
            sid
            for sid, relay in self.streams.items()
            if now - relay.last_frame > self.limits.idle_s and not relay.applying
        ]
        for sid in idle:
            self._free(self.streams.pop(sid))
        for relay in self.streams.values():
            pending = relay.assembler.pending_bytes
            relay.assembler.expire(now)
            self.budget.chunks -= pending - relay.assembler.pending_bytes
            self.budget.released += pending - relay.assembler.pending_bytes
        return len(idle)

    def _admit_keyframe(self, relay: StreamRelay, header: KeyframeHeader) -> bool:
        """Reserve the memory a keyframe's state takes, before it is decoded."""
        element = BY_CODE.get(header.dtype_code)
        if element is None:
            return False
        nbytes = element.itemsize
        for dim in header.shape:
            nbytes *= dim
        if nbytes == relay.reserved:
            return True
        self.budget.release(relay.reserved)
        relay.reserved = 0
        if 2 * nbytes > self.budget.limit - self.budget.used or not self.budget.reserve(nbytes):
            self.refused += 1
            relay.replica.reset()
            relay.synced = False
            relay.over_budget = True
            return False
        relay.reserved = nbytes
        relay.over_budget = False
        return True

    # --- frames from NATS ----------------------------------------------------------------
    def route(
        self, packed: bytes, live: Sequence[Subscriber], published_ns: int | None = None
    ) -> set[Subscriber]:
        """Decide who receives this frame (or chunk), and apply it to the replica."""
        data = unwrap_bin(packed)
        if data is None:
            return set(live)  # not a tensor frame after all: deliver it as it came
        try:
            header = read_header(data)
        except TensorError:
            return set()
        relay = self._stream(header.stream_id)
        if relay is None:
            return set()
        relay.last_frame = time.monotonic()
        relay.stats.bytes_wire += len(data)
        if published_ns is not None:
            relay.stats.latency_ms_sum += (time.time_ns() - published_ns) / 1e6
            relay.stats.latency_samples += 1
        if isinstance(header, ChunkHeader):
            relay.stats.chunks += 1
            budget = self.budget
            if (
                header.index == 0
                and budget.used + budget.chunks + header.total_length > budget.limit
            ):
                self.refused += 1  # an incomplete set would pass the gateway's budget
                return set()
            key = (header.sequence, header.frame_crc)
            if header.index == 0:
                candidates = self._targets(relay, data[header.payload_offset :], live)
                relay.frame_targets[key] = self._ready(relay, candidates)
            targets = relay.frame_targets.get(key, set())
            pending = relay.assembler.pending_bytes
            try:
                frame = relay.assembler.feed_parts(data, time.monotonic())
            except TensorError as exc:
                relay.stats.errors += 1
                log.debug("chunk of stream %s dropped: %s", header.stream_id, exc)
                return set()
            finally:
                budget.chunks += relay.assembler.pending_bytes - pending
            if frame is not None:
                relay.frame_targets.pop(key, None)
                self._apply(relay, frame, targets)
            return targets & set(live)
        targets = self._ready(relay, self._targets(relay, data, live))
        self._apply(relay, data, targets)
        return targets

    def _ready(self, relay: StreamRelay, candidates: set[Subscriber]) -> set[Subscriber]:
        """Subscribers that can take a whole new frame now; the others are conflated (and
        get a keyframe of the then-current state once they have caught up)."""
        ready = {sub for sub in candidates if sub.tensor_ready()}
        for sub in candidates - ready:
            if sub in relay.in_sync:
                relay.stats.conflated += 1
            relay.in_sync.discard(sub)
            sub.tensor_conflated(self.host)
        return ready

    def _targets(
        self, relay: StreamRelay, frame_head: memoryview, live: Sequence[Subscriber]
    ) -> set[Subscriber]:
        try:
            header = read_header(frame_head)
        except TensorError:
            return set()
        if isinstance(header, KeyframeHeader):
            return set(live)
        return relay.in_sync & set(live)

    def _apply(
        self,
        relay: StreamRelay,
        frame: bytes | memoryview | list[bytes],
        targets: set[Subscriber],
    ) -> None:
        """A whole frame went to ``targets``: note who now holds the state, then apply it
        to the replica, in a worker thread when it is large (a 64 MiB keyframe takes longer
        to decode than any small message should wait behind it)."""
        pieces = frame if isinstance(frame, list) else [frame]
        size = sum(len(p) for p in pieces)
        try:
            header = read_header(pieces[0])
        except TensorError:
            return
        if isinstance(header, ChunkHeader):
            return
        if isinstance(header, KeyframeHeader) and not self._admit_keyframe(relay, header):
            # Forwarded, but not kept: joiners get a keyframe from the publishers instead.
            relay.in_sync = set(targets)
            return
        if not relay.reserved:
            # No state held here: a delta can only be forwarded. Unless the memory budget
            # refused this stream, the publishers are asked for a keyframe.
            relay.in_sync &= targets
            if not relay.over_budget:
                self.request_keyframe(relay)
            return
        behind = relay.in_sync - targets
        if isinstance(header, KeyframeHeader):
            relay.in_sync = set(targets)
        else:
            relay.in_sync &= targets
        if relay.applying or size > APPLY_IN_THREAD_BYTES:
            relay.apply_queue.append(([bytes(p) for p in pieces], behind))
            if not relay.applying:
                relay.applying = True
                task = asyncio.get_running_loop().create_task(self._apply_worker(relay))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        started = time.perf_counter()
        try:
            applied = relay.replica.apply(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        except TensorError as exc:
            self._lost_sync(relay, exc)
            return
        self._applied(relay, applied, time.perf_counter() - started, behind)

    async def _apply_worker(self, relay: StreamRelay) -> None:
        try:
            while relay.apply_queue:
                frame, behind = relay.apply_queue.popleft()
                started = time.perf_counter()
                try:
                    applied = await asyncio.to_thread(_join_and_apply, relay.replica, frame)
                except TensorError as exc:
                    self._lost_sync(relay, exc)
                    continue
                self._applied(relay, applied, time.perf_counter() - started, behind)
        finally:
            relay.applying = False
            waiting, relay.waiting = relay.waiting, set()
            for sub in waiting:
                if self.fanout is not None and sub in self.fanout.subscribers:
                    self.resync(sub, relay.stream_id)

    def _lost_sync(self, relay: StreamRelay, exc: Exception) -> None:
        """This gateway missed a frame (or the first frames it saw were deltas): nobody here
        can be trusted to hold the state; ask the publishers for a keyframe."""
        relay.stats.errors += 1
        relay.synced = False
        relay.in_sync.clear()
        log.debug("stream %s out of sync: %s", relay.stream_id, exc)
        self.request_keyframe(relay)

    def _applied(
        self,
        relay: StreamRelay,
        header: KeyframeHeader | DeltaHeader,
        seconds: float,
        behind: set[Subscriber],
    ) -> None:
        stats = relay.stats
        stats.apply_s += seconds
        stats.frames += 1
        current = relay.replica.describe()
        if current is not None:
            stats.shape, stats.dtype, nbytes = current
            stats.bytes_raw += nbytes
        if isinstance(header, KeyframeHeader):
            stats.keyframes += 1
            relay.synced = True
        # Whoever did not receive this frame whole no longer holds the current state
        # (say, it joined while the frame's chunks were in flight): resynchronise it.
        host = self.fanout
        if host is None:
            return
        for sub in behind:
            if sub not in host.subscribers:
                continue
            if sub.tensor_ready():
                self.resync(sub, relay.stream_id)
            else:
                sub.tensor_conflated(host)

    # --- subscribers ---------------------------------------------------------------------
    def joined(self, sub: Subscriber) -> None:
        """A new subscriber: hand it a keyframe of every stream (or ask for one)."""
        for relay in self.streams.values():
            self.resync(sub, relay.stream_id)

    def left(self, sub: Subscriber) -> None:
        for relay in self.streams.values():
            relay.in_sync.discard(sub)
            for targets in relay.frame_targets.values():
                targets.discard(sub)

    def stale_for(self, sub: Subscriber) -> bool:
        return any(sub not in relay.in_sync for relay in self.streams.values())

    def resync(self, sub: Subscriber, stream_id: int | None = None) -> bool:
        """Send ``sub`` a keyframe of the current state; False when none is held (the
        publishers have then been asked for one, and ``sub`` gets it as it passes)."""
        relays = (
            list(self.streams.values())
            if stream_id is None
            else [self.streams[stream_id]]
            if stream_id in self.streams
            else []
        )
        if stream_id is not None and not relays:
            return False  # a stream this gateway has not seen: nothing to serve or to ask
        served = True
        for relay in relays:
            if relay.applying:
                relay.waiting.add(sub)  # served once the replica has caught up
                served = False
                continue
            keyframe = relay.replica.keyframe() if relay.synced else None
            if keyframe is None:
                self.request_keyframe(relay)
                served = False
                continue
            relay.stats.keyframes_served += 1
            self.host.send_tensor(sub, split_frame(keyframe))
            relay.in_sync.add(sub)
        return served

    def request_keyframe(self, relay: StreamRelay) -> None:
        now = time.monotonic()
        if now - relay.last_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        relay.last_request = now
        relay.stats.keyframe_requests += 1
        if self.fanout is not None:
            self.fanout.request_keyframe(relay.stream_id)

    def totals(self) -> dict[str, int]:
        """This channel's figures summed over its streams (for ``/metrics``)."""
        out: dict[str, int] = {}
        for relay in self.streams.values():
            st = relay.stats
            for key in TOTAL_FIGURES:
                out[key] = out.get(key, 0) + int(getattr(st, key))
        return out

    def stats(self) -> dict[str, Any]:
        return {str(sid): relay.stats.as_dict() for sid, relay in sorted(self.streams.items())}


def _join_and_apply(replica: TensorReplica, pieces: list[bytes]) -> KeyframeHeader | DeltaHeader:
    """Worker-thread side of a large frame: join its pieces and apply it (both release
    the interpreter for most of their time: copies, zstd, numpy)."""
    return replica.apply(pieces[0] if len(pieces) == 1 else b"".join(pieces))


class TensorPublishers:
    """The local sessions publishing each (channel, tensor stream): when a relay anywhere
    asks for a keyframe (over NATS), they are the ones told. At most one entry per stream a
    session published on, removed when the session ends."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[Any, int], set[Any]] = {}

    def add(self, channel: Any, stream: int, publisher: Any) -> None:
        self._by_key.setdefault((channel, stream), set()).add(publisher)

    def remove(self, channel: Any, stream: int, publisher: Any) -> None:
        publishers = self._by_key.get((channel, stream))
        if publishers is not None:
            publishers.discard(publisher)
            if not publishers:
                del self._by_key[(channel, stream)]

    def asked(self, channel: Any, wanted: int | None) -> list[tuple[Any, int]]:
        """(publisher, stream) pairs a keyframe request for ``channel`` concerns."""
        return [
            (publisher, stream)
            for (ch, stream), publishers in list(self._by_key.items())
            if ch == channel and (wanted is None or wanted == stream)
            for publisher in list(publishers)
        ]
