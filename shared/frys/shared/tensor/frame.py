"""Tensor frame headers: byte layout, packing, parsing and the CRC that seals a frame.

``docs/tensor-frames.md`` is the normative description; this module is its executable form.
All integers are little-endian. Every frame starts with the same 12 bytes::

    0  u8   magic/version  0xF2: high nibble 0xF marks a tensor frame, low nibble is version 2
    1  u8   kind           1 keyframe, 2 delta, 3 chunk
    2  u8   codec          payload codec (0 in chunk frames)
    3  u8   flags          bits 0-1 precision, bit 2 Fortran order (keyframes), others 0
    4  u32  stream id
    8  u32  sequence

Keyframes and deltas then carry four kind-specific bytes, the CRC at 16 and the encoder
epoch at 20. The epoch names the encoder instance that produced the state, so a delta is
matched to its base by (epoch, sequence) rather than by a sequence alone, which a restarted
publisher or a second publisher on the same stream would reuse.

Parsing checks structure only; :func:`check_crc` checks integrity. Neither allocates more
than the header.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from frys.shared.tensor.errors import TensorFrameError
from frys.shared.tensor.precision import Precision

FORMAT_VERSION: Final = 2
MAGIC_VERSION: Final = 0xF0 | FORMAT_VERSION
HEADER_SIZE: Final = 24
"""Fixed header of keyframes (followed by the shape) and deltas."""
CHUNK_HEADER_SIZE: Final = 24
MAX_STREAM_ID: Final = 0xFFFFFFFF
SEQUENCE_MODULUS: Final = 1 << 32
"""Sequences count frames modulo 2**32; decoders compare them only for equality."""
MAX_DIM: Final = 0xFFFFFFFF
MAX_EPOCH: Final = 0xFFFFFFFF
MAX_CHUNKS: Final = 0xFFFF

FLAG_PRECISION_MASK: Final = 0x03
FLAG_FORTRAN: Final = 0x04

_KEYFRAME = struct.Struct("<BBBBIIBBhII")
_DELTA = struct.Struct("<BBBBIIIII")
_CHUNK = struct.Struct("<BBBBIIHHII")
_CRC_AT: Final = 16
_CRC_END: Final = 20
_U32 = struct.Struct("<I")


class Kind(enum.IntEnum):
    KEYFRAME = 1
    DELTA = 2
    CHUNK = 3


class Codec(enum.IntEnum):
    """How a payload is coded: keyframes take :data:`KEYFRAME_CODECS`, deltas
    :data:`DELTA_CODECS`."""

    RAW = 0
    """Wire lanes (keyframe) or XOR lanes (delta), uncompressed."""
    SHUFFLE_ZSTD = 1
    """Byte-shuffled lanes, then zstd."""
    SPARSE_BITMAP = 2
    """Delta: bitmap of changed elements + their shuffled XOR lanes, then zstd."""
    SPARSE_GAPS = 3
    """Delta: gap-coded changed positions + their shuffled XOR lanes, then zstd."""
    UNCHANGED = 4
    """Delta: nothing changed; empty payload."""
    ZSTD = 5
    """Lanes unshuffled, then zstd (data whose bytes repeat whole, such as small integers)."""
    SHUFFLE_LZ4 = 6
    """Byte-shuffled lanes, then one LZ4 block: for fast links, where CPU costs more than bytes."""
    BYTE_DELTA_ZSTD = 7
    """Keyframe: byte-shuffled lanes, each byte plane differenced at a stride (PNG's Sub
    filter), then zstd: smooth images and fields, where neighbours differ by little."""


KEYFRAME_CODECS: Final = frozenset(
    {Codec.RAW, Codec.SHUFFLE_ZSTD, Codec.ZSTD, Codec.SHUFFLE_LZ4, Codec.BYTE_DELTA_ZSTD}
)
DELTA_CODECS: Final = frozenset(set(Codec) - {Codec.BYTE_DELTA_ZSTD})


@dataclass(frozen=True, slots=True)
class KeyframeHeader:
    stream_id: int
    epoch: int
    """Identity of the encoder instance whose state this keyframe starts (or, from a relay,
    carries on); deltas name it so that they never apply to another encoder's state."""
    sequence: int
    codec: Codec
    precision: Precision
    fortran: bool
    dtype_code: int
    exponent: int
    shape: tuple[int, ...]
    crc: int
    payload_offset: int


@dataclass(frozen=True, slots=True)
class DeltaHeader:
    stream_id: int
    epoch: int
    """Epoch of the encoder that wrote the delta: with ``base`` it names the state it applies
    to."""
    sequence: int
    codec: Codec
    precision: Precision
    base: int
    crc: int
    payload_offset: int = HEADER_SIZE


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    stream_id: int
    sequence: int
    index: int
    count: int
    frame_crc: int
    """CRC of the frame being carried: with stream id and sequence it names the chunk set."""
    total_length: int
    payload_offset: int = CHUNK_HEADER_SIZE


FrameHeader = KeyframeHeader | DeltaHeader | ChunkHeader


def crc_of(frame: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a keyframe or delta: every byte except the CRC field itself (bytes 16-19)."""
    view = memoryview(frame)
    return zlib.crc32(view[_CRC_END:], zlib.crc32(view[:_CRC_AT]))


def pack_keyframe(
    stream_id: int,
    sequence: int,
    codec: Codec,
    precision: Precision,
    fortran: bool,
    dtype_code: int,
    exponent: int,
    shape: tuple[int, ...],
    payload: bytes | bytearray | memoryview,
    *,
    epoch: int,
) -> bytes:
    """A sealed keyframe; ``epoch`` is the encoder's (see :class:`KeyframeHeader`)."""
    flags = int(precision) | (FLAG_FORTRAN if fortran else 0)
    head = _KEYFRAME.pack(
        MAGIC_VERSION,
        Kind.KEYFRAME,
        codec,
        flags,
        stream_id,
        sequence,
        dtype_code,
        len(shape),
        exponent,
        0,
        epoch,
    ) + struct.pack(f"<{len(shape)}I", *shape)
    crc = zlib.crc32(payload, zlib.crc32(head[_CRC_END:], zlib.crc32(head[:_CRC_AT])))
    return head[:_CRC_AT] + _U32.pack(crc) + head[_CRC_END:] + bytes(payload)


def pack_delta(
    stream_id: int,
    sequence: int,
    base: int,
    codec: Codec,
    precision: Precision,
    payload: bytes | bytearray | memoryview,
    *,
    epoch: int,
) -> bytes:
    """A sealed delta from the state (``epoch``, ``base``) to ``sequence``."""
    head = _DELTA.pack(
        MAGIC_VERSION, Kind.DELTA, codec, precision, stream_id, sequence, base, 0, epoch
    )
    crc = zlib.crc32(payload, zlib.crc32(head[_CRC_END:], zlib.crc32(head[:_CRC_AT])))
    return head[:_CRC_AT] + _U32.pack(crc) + head[_CRC_END:] + bytes(payload)


def pack_chunk(
    stream_id: int,
    sequence: int,
    index: int,
    count: int,
    frame_crc: int,
    total_length: int,
    payload: bytes | bytearray | memoryview,
) -> bytes:
    head = _CHUNK.pack(
        MAGIC_VERSION, Kind.CHUNK, 0, 0, stream_id, sequence, index, count, frame_crc, total_length
    )
    return head + bytes(payload)


def read_header(frame: bytes | bytearray | memoryview) -> FrameHeader:
    """Parse and structurally check a frame's header; raises :class:`TensorFrameError`.

    The CRC is not checked here (see :func:`check_crc`), so a relay can route on the header
    cheaply.
    """
    view = memoryview(frame)
    if len(view) < 12:
        raise TensorFrameError(f"truncated frame: {len(view)} bytes, a header needs at least 12")
    magic, kind = view[0], view[1]
    if magic >> 4 != MAGIC_VERSION >> 4:
        raise TensorFrameError(f"not a tensor frame (first byte 0x{magic:02x})")
    if magic != MAGIC_VERSION:
        raise TensorFrameError(
            f"unsupported tensor frame version {magic & 0x0F} (version {FORMAT_VERSION} expected)"
        )
    if kind == Kind.KEYFRAME:
        return _read_keyframe(view)
    if kind == Kind.DELTA:
        return _read_delta(view)
    if kind == Kind.CHUNK:
        return _read_chunk(view)
    raise TensorFrameError(f"unknown frame kind {kind}")


def _flags(flags: int, fortran_allowed: bool) -> tuple[Precision, bool]:
    allowed = FLAG_PRECISION_MASK | (FLAG_FORTRAN if fortran_allowed else 0)
    if flags & ~allowed:
        raise TensorFrameError(f"reserved flag bits set (flags 0x{flags:02x})")
    return Precision(flags & FLAG_PRECISION_MASK), bool(flags & FLAG_FORTRAN)


def _codec(value: int) -> Codec:
    try:
        return Codec(value)
    except ValueError:
        raise TensorFrameError(f"unknown codec {value}") from None


def _read_keyframe(view: memoryview) -> KeyframeHeader:
    if len(view) < HEADER_SIZE:
        raise TensorFrameError(f"truncated keyframe: {len(view)} bytes, header needs {HEADER_SIZE}")
    _, _, codec, flags, stream_id, seq, dtype_code, ndim, exponent, crc, epoch = (
        _KEYFRAME.unpack_from(view)
    )
    offset = HEADER_SIZE + 4 * ndim
    if len(view) < offset:
        raise TensorFrameError(f"truncated keyframe: {len(view)} bytes, shape ends at {offset}")
    coded = _codec(codec)
    if coded not in KEYFRAME_CODECS:
        raise TensorFrameError(f"codec {coded.name} is not valid in a keyframe")
    precision, fortran = _flags(flags, fortran_allowed=True)
    shape = struct.unpack_from(f"<{ndim}I", view, HEADER_SIZE)
    return KeyframeHeader(
        stream_id, epoch, seq, coded, precision, fortran, dtype_code, exponent, shape, crc, offset
    )


def _read_delta(view: memoryview) -> DeltaHeader:
    if len(view) < HEADER_SIZE:
        raise TensorFrameError(f"truncated delta: {len(view)} bytes, header needs {HEADER_SIZE}")
    _, _, codec, flags, stream_id, seq, base, crc, epoch = _DELTA.unpack_from(view)
    precision, _ = _flags(flags, fortran_allowed=False)
    coded = _codec(codec)
    if coded not in DELTA_CODECS:
        raise TensorFrameError(f"codec {coded.name} is not valid in a delta")
    return DeltaHeader(stream_id, epoch, seq, coded, precision, base, crc)


def _read_chunk(view: memoryview) -> ChunkHeader:
    if len(view) < CHUNK_HEADER_SIZE:
        raise TensorFrameError(
            f"truncated chunk: {len(view)} bytes, header needs {CHUNK_HEADER_SIZE}"
        )
    _, _, codec, flags, stream_id, seq, index, count, frame_crc, total = _CHUNK.unpack_from(view)
    if codec or flags:
        raise TensorFrameError("chunk frames have codec and flags 0")
    if not 0 <= index < count:
        raise TensorFrameError(f"chunk index {index} outside a set of {count}")
    if total < count:
        raise TensorFrameError(f"{count} chunks cannot carry {total} bytes")
    size = -(-total // count)
    if (count - 1) * size >= total:
        raise TensorFrameError(f"{count} chunks of {size} bytes overrun {total} bytes")
    return ChunkHeader(stream_id, seq, index, count, frame_crc, total)


def chunk_span(header: ChunkHeader) -> tuple[int, int]:
    """Start and length of this chunk's bytes in the frame it carries."""
    size = -(-header.total_length // header.count)
    start = header.index * size
    return start, min(size, header.total_length - start)


def check_crc(frame: bytes | bytearray | memoryview, header: KeyframeHeader | DeltaHeader) -> None:
    if crc_of(frame) != header.crc:
        raise TensorFrameError("CRC mismatch: the frame is corrupt")
