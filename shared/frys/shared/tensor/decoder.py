"""Stateful decoder of one tensor stream, and the replica a relay keeps of it.

The decoder holds the wire lanes of the last frame applied, with the epoch of the encoder that
wrote them and their sequence; a delta applies only to that exact (epoch, sequence). Every
check (limits, CRC, sizes, epoch, sequence) runs before the state is touched, so a frame that
raises leaves the decoder exactly as it was and the stream goes on after a resync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from frys.shared.tensor.codecs import (
    compressor,
    decode_dense,
    decode_sparse,
    decompressor,
    encode_dense,
)
from frys.shared.tensor.dtypes import BY_CODE
from frys.shared.tensor.errors import TensorFrameError, TensorGapError, TensorLimitError
from frys.shared.tensor.frame import (
    MAX_STREAM_ID,
    ChunkHeader,
    Codec,
    DeltaHeader,
    KeyframeHeader,
    check_crc,
    pack_keyframe,
    read_header,
)
from frys.shared.tensor.limits import DEFAULT_LIMITS, TensorLimits
from frys.shared.tensor.precision import (
    MAX_EXPONENT,
    MIN_EXPONENT,
    Precision,
    Representation,
    applies,
    from_lanes,
)

Buffer = bytes | bytearray | memoryview
DENSE_DELTA_CODECS = frozenset({Codec.RAW, Codec.SHUFFLE_ZSTD, Codec.ZSTD, Codec.SHUFFLE_LZ4})


@dataclass(slots=True)
class _State:
    rep: Representation
    shape: tuple[int, ...]
    fortran: bool
    lanes: npt.NDArray[Any]
    epoch: int
    sequence: int


class TensorDecoder:
    """Applies the frames of one tensor stream and returns its current value.

    ``stream_id`` binds the decoder to one stream; when ``None`` it adopts the stream of the
    first keyframe. Chunk frames must be reassembled first (:class:`ChunkAssembler`).
    """

    def __init__(self, stream_id: int | None = None, *, limits: TensorLimits = DEFAULT_LIMITS):
        if stream_id is not None and not 0 <= stream_id <= MAX_STREAM_ID:
            raise ValueError("stream_id must fit in 32 bits")
        self._stream_id = stream_id
        self.limits = limits
        self._dctx = decompressor()
        self._state: _State | None = None

    @property
    def stream_id(self) -> int | None:
        return self._stream_id

    @property
    def sequence(self) -> int | None:
        """Sequence of the state held, ``None`` before the first keyframe."""
        return None if self._state is None else self._state.sequence

    @property
    def epoch(self) -> int | None:
        """Epoch of the encoder whose state is held, ``None`` before the first keyframe."""
        return None if self._state is None else self._state.epoch

    @property
    def representation(self) -> Representation | None:
        """Element type and precision of the state held: tells whether values are exact."""
        return None if self._state is None else self._state.rep

    def reset(self) -> None:
        """Drop the state held; only a keyframe applies next."""
        self._state = None

    def describe(self) -> tuple[tuple[int, ...], str, int] | None:
        """Shape, dtype name and decoded size in bytes of the value held (no copy)."""
        state = self._state
        if state is None:
            return None
        count = 1
        for dim in state.shape:
            count *= dim
        element = state.rep.element
        return state.shape, str(element.dtype), count * element.itemsize

    def feed(self, frame: Buffer) -> npt.NDArray[Any]:
        """Apply ``frame`` and return the stream's value as a fresh, caller-owned array.

        Raises :class:`TensorFrameError` for invalid bytes and :class:`TensorGapError` for a
        delta that does not follow the state held; the state is then unchanged.
        """
        self.apply(frame)
        value = self.current()
        assert value is not None
        return value

    def current(self) -> npt.NDArray[Any] | None:
        """The value held, as a fresh array, or ``None`` before the first keyframe."""
        state = self._state
        if state is None:
            return None
        flat = from_lanes(state.lanes, state.rep)
        return flat.reshape(state.shape, order="F" if state.fortran else "C")

    def apply(self, frame: Buffer) -> KeyframeHeader | DeltaHeader:
        """Apply ``frame`` to the state without building an array; returns its header."""
        view = memoryview(frame)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        if len(view) > self.limits.max_frame_bytes:
            raise TensorLimitError(
                f"{len(view)}-byte frame exceeds the limit of {self.limits.max_frame_bytes}"
            )
        header = read_header(view)
        if isinstance(header, ChunkHeader):
            raise TensorFrameError("chunk frame: reassemble it with a ChunkAssembler first")
        if self._stream_id is not None and header.stream_id != self._stream_id:
            raise TensorFrameError(
                f"frame of stream {header.stream_id} fed to the decoder of stream {self._stream_id}"
            )
        if isinstance(header, KeyframeHeader):
            state = self._keyframe(view, header)
            self._state = state
            self._stream_id = header.stream_id
        else:
            self._delta(view, header)
        return header

    def _keyframe(self, view: memoryview, header: KeyframeHeader) -> _State:
        element = BY_CODE.get(header.dtype_code)
        if element is None:
            raise TensorFrameError(f"unknown dtype code {header.dtype_code}")
        precision = header.precision
        if precision is not Precision.EXACT and not applies(element, precision):
            raise TensorFrameError(f"precision {precision.name} does not apply to {element.dtype}")
        if precision is Precision.QUANTIZED:
            if not MIN_EXPONENT <= header.exponent <= MAX_EXPONENT:
                raise TensorFrameError(f"quantisation exponent {header.exponent} out of range")
        elif header.exponent:
            raise TensorFrameError("exponent set on a frame that is not quantised")
        shape = header.shape
        if header.fortran and len(shape) < 2:
            raise TensorFrameError("Fortran order flag on a tensor of fewer than 2 dimensions")
        violation = self.limits.shape_violation(shape, element.itemsize)
        if violation is not None:
            raise TensorLimitError(violation)
        count = math.prod(shape)
        check_crc(view, header)
        rep = Representation(element, precision, header.exponent)
        lanes = decode_dense(
            header.codec,
            view[header.payload_offset :],
            count * rep.lanes,
            rep.lane,
            self._dctx,
        )
        return _State(rep, shape, header.fortran, lanes, header.epoch, header.sequence)

    def _delta(self, view: memoryview, header: DeltaHeader) -> None:
        check_crc(view, header)
        state = self._state
        if state is None:
            raise TensorGapError(None, header.base, epoch=header.epoch)
        if header.precision is not state.rep.precision:
            raise TensorFrameError(
                f"delta precision {header.precision.name} differs from the stream's "
                f"{state.rep.precision.name}"
            )
        if header.base != state.sequence or header.epoch != state.epoch:
            raise TensorGapError(
                state.sequence, header.base, held_epoch=state.epoch, epoch=header.epoch
            )
        payload = view[header.payload_offset :]
        lanes = state.lanes
        codec = header.codec
        if codec is Codec.UNCHANGED:
            if len(payload):
                raise TensorFrameError("UNCHANGED delta with a payload")
        elif codec in DENSE_DELTA_CODECS:
            xor = decode_dense(codec, payload, lanes.size, lanes.dtype, self._dctx, copy=False)
            np.bitwise_xor(lanes, xor, out=lanes)
        else:
            per = state.rep.lanes
            count = lanes.size // per
            positions, values = decode_sparse(codec, payload, count, per, lanes.dtype, self._dctx)
            if per == 1:
                lanes[positions] ^= values.reshape(-1)
            else:
                pairs = lanes.reshape(count, per)
                pairs[positions] ^= values
        state.sequence = header.sequence


class TensorReplica(TensorDecoder):
    """A decoder that can also re-encode its state: what a relay keeps per stream.

    A relay applies every frame it forwards; for a late joiner or a subscriber that fell
    behind it hands out :meth:`keyframe`, a keyframe of the current state with the current
    sequence, so the publisher's next delta applies on top of it.
    """

    def __init__(
        self,
        stream_id: int | None = None,
        *,
        limits: TensorLimits = DEFAULT_LIMITS,
        level: int = 1,
    ):
        super().__init__(stream_id, limits=limits)
        self._cctx = compressor(level)
        self._latest: bytes | None = None
        self._latest_state: tuple[int, int] | None = None
        """(epoch, sequence) of the state ``_latest`` carries."""

    @property
    def latest_keyframe(self) -> bytes | None:
        """The last keyframe received or produced (it may be older than the state)."""
        return self._latest

    def reset(self) -> None:
        super().reset()
        self._latest = self._latest_state = None

    def apply(self, frame: Buffer) -> KeyframeHeader | DeltaHeader:
        header = super().apply(frame)
        if isinstance(header, KeyframeHeader):
            self._latest = bytes(frame)
            self._latest_state = (header.epoch, header.sequence)
        return header

    def keyframe(self) -> bytes | None:
        """A keyframe of the current state (``None`` before the first keyframe).

        It carries the epoch of the publisher whose state is held, so that publisher's next
        delta applies on top of it and no other encoder's does.
        """
        state = self._state
        if state is None or self._stream_id is None:
            return None
        key = (state.epoch, state.sequence)
        if self._latest is not None and self._latest_state == key:
            return self._latest
        codec, payload = encode_dense(state.lanes, self._cctx)
        frame = pack_keyframe(
            self._stream_id,
            state.sequence,
            codec,
            state.rep.precision,
            state.fortran,
            state.rep.element.code,
            state.rep.exponent,
            state.shape,
            payload,
            epoch=state.epoch,
        )
        self._latest, self._latest_state = frame, key
        return frame
