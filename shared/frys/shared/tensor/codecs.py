"""Payload codecs: raw, shuffled zstd, the two sparse delta forms, and the dense forms the
protocol optimiser chooses among (unshuffled zstd, shuffled LZ4, byte-delta zstd).

Encoding picks the smallest form it can justify and never returns a payload larger than the
raw lanes. Decoding checks every size against what the header and the stream state allow
*before* decompressing (zstd must declare its content size and a window of at most 8 MiB, and
is asked for exactly that much), and raises :class:`TensorFrameError` /
:class:`TensorLimitError` for anything else.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import lz4.block
import numpy as np
import numpy.typing as npt
import zstandard

from frys.shared.tensor.errors import TensorFrameError, TensorLimitError
from frys.shared.tensor.frame import Codec
from frys.shared.tensor.shuffle import shuffle, shuffle_into, unshuffle

MAX_WINDOW_SIZE: Final = 1 << 23
"""zstd window a decoder accepts (levels 1-19 never need more).

The decompressor is configured with it, but one-shot decompression ignores that setting
(zstd applies it to streaming only), so :func:`decompress` also checks the frame header."""
GAP_ESCAPE: Final = 255
"""In a gap-coded index, a byte of 255 skips 255 unchanged elements without marking one."""
_U32 = struct.Struct("<I")


def compressor(level: int) -> zstandard.ZstdCompressor:
    if not -7 <= level <= 19:
        raise ValueError("zstd level must be between -7 and 19")
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)


def decompressor() -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)


# --- encoding ------------------------------------------------------------------------------


def encode_dense(lanes: npt.NDArray[Any], cctx: zstandard.ZstdCompressor) -> tuple[Codec, bytes]:
    """Keyframe lanes or dense XOR lanes: shuffled zstd, or raw when that is not smaller."""
    if lanes.size == 0:
        return Codec.RAW, b""
    packed: bytes = cctx.compress(shuffle(lanes).data)
    if len(packed) < lanes.nbytes:
        return Codec.SHUFFLE_ZSTD, packed
    return Codec.RAW, lanes.tobytes()


def encode_zstd(lanes: npt.NDArray[Any], cctx: zstandard.ZstdCompressor) -> tuple[Codec, bytes]:
    """Dense lanes as they are (no shuffle), zstd; raw when that is not smaller."""
    if lanes.size == 0:
        return Codec.RAW, b""
    packed: bytes = cctx.compress(np.ascontiguousarray(lanes).data)
    if len(packed) < lanes.nbytes:
        return Codec.ZSTD, packed
    return Codec.RAW, lanes.tobytes()


def encode_lz4(lanes: npt.NDArray[Any]) -> tuple[Codec, bytes]:
    """Dense lanes shuffled, one LZ4 block (its size is the header's); raw when not smaller."""
    if lanes.size == 0:
        return Codec.RAW, b""
    packed: bytes = lz4.block.compress(shuffle(lanes).data, store_size=False)
    if len(packed) < lanes.nbytes:
        return Codec.SHUFFLE_LZ4, packed
    return Codec.RAW, lanes.tobytes()


def byte_delta(planes: npt.NDArray[np.uint8], stride: int) -> npt.NDArray[np.uint8]:
    """PNG's Sub filter on each byte plane (rows of ``planes``): every byte minus the byte
    ``stride`` lanes before it, modulo 256; the first ``stride`` bytes stay."""
    out = planes.copy()
    if stride < planes.shape[1]:
        np.subtract(planes[:, stride:], planes[:, :-stride], out=out[:, stride:])
    return out


def undo_byte_delta(filtered: npt.NDArray[np.uint8], stride: int) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`byte_delta`: running sums modulo 256 along each stride class."""
    rows, count = filtered.shape
    if stride >= count:
        return filtered.copy()
    groups = -(-count // stride)
    padded = np.zeros((rows, groups * stride), np.uint8)
    padded[:, :count] = filtered
    summed = np.cumsum(padded.reshape(rows, groups, stride), axis=1, dtype=np.uint8)
    return np.ascontiguousarray(summed.reshape(rows, groups * stride)[:, :count])


def encode_byte_delta(
    lanes: npt.NDArray[Any], stride: int, cctx: zstandard.ZstdCompressor
) -> tuple[Codec, bytes]:
    """Keyframe lanes shuffled, Sub-filtered at ``stride`` lanes, zstd; raw when not smaller."""
    if lanes.size == 0:
        return Codec.RAW, b""
    stride = max(1, min(stride, lanes.size))
    planes = shuffle(lanes).reshape(lanes.dtype.itemsize, lanes.size)
    packed: bytes = cctx.compress(byte_delta(planes, stride).data)
    if len(packed) + _U32.size < lanes.nbytes:
        return Codec.BYTE_DELTA_ZSTD, _U32.pack(stride) + packed
    return Codec.RAW, lanes.tobytes()


def gap_code(positions: npt.NDArray[np.intp]) -> npt.NDArray[np.uint8]:
    """Gap-coded index of strictly increasing element positions."""
    gaps = np.empty_like(positions)
    if positions.size == 0:
        return gaps.astype(np.uint8)
    gaps[0] = positions[0]
    np.subtract(positions[1:], positions[:-1], out=gaps[1:])
    gaps[1:] -= 1
    if gaps.max() < GAP_ESCAPE:
        return gaps.astype(np.uint8)
    escapes = gaps // GAP_ESCAPE
    out = np.full(positions.size + int(escapes.sum()), GAP_ESCAPE, np.uint8)
    out[np.cumsum(escapes + 1) - 1] = gaps % GAP_ESCAPE
    return out


def sparse_payload(
    xor: npt.NDArray[Any], positions: npt.NDArray[np.intp], count: int, lanes: int
) -> tuple[Codec, npt.NDArray[np.uint8]]:
    """Uncompressed sparse payload for the changed ``positions`` of a delta.

    The index is gap-coded or a bitmap, whichever is shorter; the changed XOR lanes follow,
    shuffled.
    """
    values = xor[positions] if lanes == 1 else xor.reshape(count, lanes)[positions]
    gaps = gap_code(positions)
    bitmap_size = -(-count // 8)
    if gaps.size + _U32.size < bitmap_size:
        head = gaps.size + _U32.size
        out = np.empty(head + values.nbytes, np.uint8)
        out[: _U32.size] = np.frombuffer(_U32.pack(gaps.size), np.uint8)
        out[_U32.size : head] = gaps
        codec = Codec.SPARSE_GAPS
    else:
        head = bitmap_size
        out = np.empty(head + values.nbytes, np.uint8)
        mask = np.zeros(count, np.bool_)
        mask[positions] = True
        out[:head] = np.packbits(mask, bitorder="little")
        codec = Codec.SPARSE_BITMAP
    shuffle_into(values, out[head:])
    return codec, out


# --- decoding ------------------------------------------------------------------------------


def decompress(
    dctx: zstandard.ZstdDecompressor, payload: memoryview, low: int, high: int
) -> npt.NDArray[np.uint8]:
    """Decompress a zstd payload whose declared content size must lie in ``[low, high]``.

    Everything is checked from the zstd frame header first: the declared size (so at most
    ``high`` bytes are ever allocated, and exactly the declared size is asked for) and the
    window, which the format caps at :data:`MAX_WINDOW_SIZE` (a single-segment frame's window
    is its content size).
    """
    try:
        params = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError:
        raise TensorFrameError("payload is not a zstd frame") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        raise TensorFrameError("zstd payload does not declare its content size")
    if size > high:
        raise TensorLimitError(f"payload would expand to {size} bytes, at most {high} allowed")
    if size < low:
        raise TensorFrameError(f"payload expands to {size} bytes, at least {low} expected")
    if params.window_size > MAX_WINDOW_SIZE:
        raise TensorLimitError(
            f"zstd window of {params.window_size} bytes exceeds {MAX_WINDOW_SIZE} bytes"
        )
    try:
        out = dctx.decompress(payload, max_output_size=max(size, 1), allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise TensorFrameError(f"corrupt zstd payload ({exc})") from None
    if len(out) != size:
        raise TensorFrameError("zstd payload does not match its declared size")
    return np.frombuffer(out, np.uint8)


def decode_dense(
    codec: Codec,
    payload: memoryview,
    lane_count: int,
    lane: np.dtype[Any],
    dctx: zstandard.ZstdDecompressor,
    copy: bool = True,
) -> npt.NDArray[Any]:
    """Lanes from a dense payload (RAW, SHUFFLE_ZSTD, ZSTD, SHUFFLE_LZ4, BYTE_DELTA_ZSTD) of
    exactly ``lane_count`` lanes.

    The result is fresh unless ``copy`` is false, when RAW lanes may be a read-only view of
    the payload.
    """
    expected = lane_count * lane.itemsize
    if codec is Codec.RAW:
        if len(payload) != expected:
            raise TensorFrameError(f"raw payload has {len(payload)} bytes, {expected} expected")
        view = np.frombuffer(payload, lane)
        return view.copy() if copy else view
    if codec is Codec.SHUFFLE_ZSTD:
        return unshuffle(decompress(dctx, payload, expected, expected), lane)
    if codec is Codec.ZSTD:
        return decompress(dctx, payload, expected, expected).copy().view(lane)
    if codec is Codec.SHUFFLE_LZ4:
        return unshuffle(_lz4_block(payload, expected), lane)
    if codec is Codec.BYTE_DELTA_ZSTD:
        if len(payload) < _U32.size:
            raise TensorFrameError("byte-delta payload has no stride")
        stride = _U32.unpack_from(payload)[0]
        if not 1 <= stride <= max(lane_count, 1):
            raise TensorFrameError(f"byte-delta stride {stride} outside 1..{lane_count}")
        data = decompress(dctx, payload[_U32.size :], expected, expected)
        if lane_count == 0:
            return data.view(lane)
        planes = undo_byte_delta(data.reshape(lane.itemsize, lane_count), stride)
        return unshuffle(planes.reshape(-1), lane)
    raise TensorFrameError(f"codec {codec.name} is not a dense payload")


def _lz4_block(payload: memoryview, expected: int) -> npt.NDArray[np.uint8]:
    """An LZ4 block that must expand to exactly ``expected`` bytes (what the header says,
    already checked against the limits), never more: LZ4 blocks declare no size."""
    if expected == 0:
        raise TensorFrameError("LZ4 payload for an empty tensor")
    try:
        out = lz4.block.decompress(payload, uncompressed_size=expected)
    except lz4.block.LZ4BlockError as exc:
        raise TensorFrameError(f"corrupt LZ4 payload ({exc})") from None
    if len(out) != expected:
        raise TensorFrameError("LZ4 payload does not expand to the size of the tensor")
    return np.frombuffer(out, np.uint8)


def decode_sparse(
    codec: Codec,
    payload: memoryview,
    count: int,
    lanes: int,
    lane: np.dtype[Any],
    dctx: zstandard.ZstdDecompressor,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[Any]]:
    """Changed positions and their XOR lanes (shape ``(changed, lanes)``) of a sparse delta."""
    element_size = lanes * lane.itemsize
    if codec is Codec.SPARSE_BITMAP:
        head = -(-count // 8)
        low, high = head + element_size, head + count * element_size
    else:
        head = 0
        low = _U32.size + 1 + element_size
        high = _U32.size + count + count // GAP_ESCAPE + count * element_size
    if count == 0:
        raise TensorFrameError("sparse delta for an empty tensor")
    data = decompress(dctx, payload, low, high)
    if codec is Codec.SPARSE_BITMAP:
        positions = _bitmap_positions(data[:head], count)
    else:
        head = int.from_bytes(data[: _U32.size].tobytes(), "little")
        head += _U32.size
        if head > len(data):
            raise TensorFrameError("sparse index runs past the payload")
        positions = _gap_positions(data[_U32.size : head], count)
    if len(data) - head != positions.size * element_size:
        raise TensorFrameError(
            f"sparse payload carries {len(data) - head} value bytes for {positions.size} elements"
        )
    values = unshuffle(data[head:], lane).reshape(positions.size, lanes)
    return positions, values


def _bitmap_positions(bitmap: npt.NDArray[np.uint8], count: int) -> npt.NDArray[np.intp]:
    if count % 8 and bitmap[-1] >> (count % 8):
        raise TensorFrameError("bitmap marks elements past the end of the tensor")
    positions = np.flatnonzero(np.unpackbits(bitmap, count=count, bitorder="little"))
    if positions.size == 0:
        raise TensorFrameError("sparse delta marks no element")
    return positions


def _gap_positions(gaps: npt.NDArray[np.uint8], count: int) -> npt.NDArray[np.intp]:
    if gaps.size == 0 or gaps[-1] == GAP_ESCAPE:
        raise TensorFrameError("gap-coded index must end with a changed element")
    marks = gaps != GAP_ESCAPE
    ends = np.cumsum(gaps.astype(np.intp) + marks)
    positions: npt.NDArray[np.intp] = ends[marks] - 1
    if positions[-1] >= count:
        raise TensorFrameError(f"sparse index reaches element {positions[-1]} of {count}")
    return positions
