"""Chunking: large frames travel as chunk frames that may interleave with other traffic.

A chunk set is named by (stream id, sequence, CRC of the carried frame). Every chunk but the
last carries ``ceil(total / count)`` bytes, so a chunk's place follows from its index. The
assembler is pure: callers pass the current time in, and incomplete sets are dropped after a
timeout or, oldest first, when the pending limits would be exceeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frys.shared.tensor.errors import TensorFrameError, TensorLimitError
from frys.shared.tensor.frame import (
    CHUNK_HEADER_SIZE,
    MAX_CHUNKS,
    ChunkHeader,
    chunk_span,
    pack_chunk,
    read_header,
)
from frys.shared.tensor.limits import DEFAULT_CHUNK_LIMITS, DEFAULT_CHUNK_SIZE, ChunkLimits

MIN_CHUNK_SIZE = 64

_Key = tuple[int, int, int, int, int]


def split_frame(
    frame: bytes | bytearray | memoryview, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[bytes]:
    """``[frame]`` if it fits in ``chunk_size`` bytes, else chunk frames of at most that size."""
    if chunk_size < MIN_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE}")
    view = memoryview(frame)
    if len(view) <= chunk_size:
        return [bytes(view)]
    header = read_header(view)
    if isinstance(header, ChunkHeader):
        raise ValueError("a chunk frame cannot be chunked again")
    total = len(view)
    count = -(-total // (chunk_size - CHUNK_HEADER_SIZE))
    if count > MAX_CHUNKS or total > 0xFFFFFFFF:
        raise ValueError(f"a {total}-byte frame needs more than {MAX_CHUNKS} chunks")
    size = -(-total // count)
    return [
        pack_chunk(
            header.stream_id,
            header.sequence,
            index,
            count,
            header.crc,
            total,
            view[index * size : (index + 1) * size],
        )
        for index in range(count)
    ]


@dataclass(slots=True)
class _Pending:
    count: int
    total: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)


class ChunkAssembler:
    """Reassembles chunk frames into whole frames, within :class:`ChunkLimits`."""

    def __init__(self, limits: ChunkLimits = DEFAULT_CHUNK_LIMITS) -> None:
        self._limits = limits
        self._sets: dict[_Key, _Pending] = {}
        self._declared = 0
        self.evicted = 0
        """Incomplete sets dropped so far, by timeout or to make room."""

    @property
    def pending(self) -> int:
        """Incomplete sets held."""
        return len(self._sets)

    @property
    def pending_bytes(self) -> int:
        """Bytes declared by the incomplete sets held."""
        return self._declared

    def feed(self, chunk: bytes | bytearray | memoryview, now: float) -> bytes | None:
        """Take one chunk frame; returns the whole frame once its last chunk arrives."""
        parts = self.feed_parts(chunk, now)
        return None if parts is None else b"".join(parts)

    def feed_parts(self, chunk: bytes | bytearray | memoryview, now: float) -> list[bytes] | None:
        """As :meth:`feed`, but returns the frame's pieces in order, unjoined: a relay joins
        a large frame away from its event loop.

        Raises :class:`TensorFrameError` (or :class:`TensorLimitError`) for a malformed or
        oversized chunk, which is then ignored: the sets already held are kept. A completed set
        whose frame does not carry the CRC its chunks name is dropped with the same error.
        """
        self.expire(now)
        view = memoryview(chunk)
        header = read_header(view)
        if not isinstance(header, ChunkHeader):
            raise TensorFrameError("not a chunk frame")
        limits = self._limits
        if header.total_length > limits.max_frame_bytes:
            raise TensorLimitError(
                f"chunked frame of {header.total_length} bytes exceeds {limits.max_frame_bytes}"
            )
        if header.total_length > limits.max_pending_bytes:
            raise TensorLimitError(
                f"chunked frame of {header.total_length} bytes exceeds the pending budget"
            )
        _, length = chunk_span(header)
        if len(view) - CHUNK_HEADER_SIZE != length:
            raise TensorFrameError(
                f"chunk {header.index} carries {len(view) - CHUNK_HEADER_SIZE} bytes, "
                f"{length} expected"
            )
        key = (
            header.stream_id,
            header.sequence,
            header.frame_crc,
            header.total_length,
            header.count,
        )
        pending = self._sets.get(key)
        if pending is None:
            self._make_room(header.total_length)
            pending = _Pending(header.count, header.total_length, now)
            self._sets[key] = pending
            self._declared += header.total_length
        if header.index in pending.parts:
            return None
        pending.parts[header.index] = bytes(view[CHUNK_HEADER_SIZE:])
        if len(pending.parts) < pending.count:
            return None
        del self._sets[key]
        self._declared -= pending.total
        parts = [pending.parts[i] for i in range(pending.count)]
        # Every chunk but the last carries at least 40 bytes, so the CRC (bytes 16-19 of the
        # frame) lies in the first part.
        if int.from_bytes(parts[0][16:20], "little") != header.frame_crc:
            raise TensorFrameError("reassembled frame does not carry the CRC its chunks name")
        return parts

    def expire(self, now: float) -> int:
        """Drop incomplete sets older than the timeout; returns how many were dropped."""
        stale = [k for k, p in self._sets.items() if now - p.started >= self._limits.timeout]
        for key in stale:
            self._drop(key)
        return len(stale)

    def _make_room(self, size: int) -> None:
        limits = self._limits
        while self._sets and (
            len(self._sets) >= limits.max_pending_sets
            or self._declared + size > limits.max_pending_bytes
        ):
            self._drop(next(iter(self._sets)))

    def _drop(self, key: _Key) -> None:
        self._declared -= self._sets.pop(key).total
        self.evicted += 1
