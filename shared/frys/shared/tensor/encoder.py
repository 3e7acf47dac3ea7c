"""Stateful encoder of one tensor stream: keyframes, XOR deltas, chunking.

The encoder keeps the wire lanes of the last frame it emitted. A keyframe is sent at first
use, when asked, and whenever the shape or dtype changes; otherwise the XOR of the new lanes
with the previous ones travels in whichever delta form is smallest (nothing changed, sparse,
dense, or raw). Per-stream zstd contexts and scratch buffers are reused across frames.

Each encoder instance draws a random 32-bit *epoch* that every frame it writes carries.
Sequences restart with a new instance (a restarted publisher) and collide between two
instances on one stream id; the epoch tells those states apart, so a decoder refuses a delta
of another instance as a gap instead of applying it to the wrong base.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from frys.shared.tensor.arms import Arm, ArmCoder
from frys.shared.tensor.chunks import MIN_CHUNK_SIZE, split_frame
from frys.shared.tensor.codecs import compressor, encode_dense, sparse_payload
from frys.shared.tensor.dtypes import element_type
from frys.shared.tensor.frame import (
    MAX_DIM,
    MAX_EPOCH,
    MAX_STREAM_ID,
    SEQUENCE_MODULUS,
    Codec,
    pack_delta,
    pack_keyframe,
)
from frys.shared.tensor.limits import DEFAULT_CHUNK_SIZE, DEFAULT_LIMITS, TensorLimits
from frys.shared.tensor.precision import (
    Precision,
    Representation,
    quantum_exponent,
    representation,
    to_lanes,
)

SPARSE_ONLY_RATIO = 4
"""The dense form is not tried when the raw sparse form is at most this fraction of it."""


class LastInput(NamedTuple):
    """The input of the last payload an encoder coded (see :meth:`TensorEncoder.last_input`)."""

    keyframe: bool
    lanes: npt.NDArray[Any]
    """Keyframe: the wire lanes; delta: the XOR lanes."""
    changed: npt.NDArray[np.bool_] | None
    """Delta: which elements changed."""
    changes: int
    lanes_per_element: int
    shape: tuple[int, ...]


class _State:
    __slots__ = ("fortran", "lanes", "mask", "rep", "sequence", "shape", "xor")

    def __init__(
        self,
        rep: Representation,
        shape: tuple[int, ...],
        fortran: bool,
        lanes: npt.NDArray[Any],
        sequence: int,
    ) -> None:
        self.rep = rep
        self.shape = shape
        self.fortran = fortran
        self.lanes = lanes
        self.sequence = sequence
        self.xor = np.empty_like(lanes)
        self.mask = np.empty(math.prod(shape), np.bool_)


class TensorEncoder:
    """Encodes successive values of one tensor stream into tensor frames.

    ``precision`` opts into a lossy representation (see :mod:`frys.shared.tensor.precision`);
    ``max_abs_error`` is the bound for ``Precision.QUANTIZED``. Frames larger than
    ``chunk_size`` are returned as chunk frames.

    ``epoch`` is drawn from the operating system's random source unless given: a seeded
    ``random`` module would hand two publisher processes the same one. Give it only to
    reproduce exact bytes (tests, golden vectors); two live encoders of one stream must not
    share it.

    ``arm`` fixes the payload codecs (see :mod:`frys.shared.tensor.arms`); without one the
    encoder keeps the smallest of the sparse, dense and raw forms. It may be changed between
    frames (:attr:`arm`): the frames stay valid whatever the arm.
    """

    def __init__(
        self,
        stream_id: int,
        *,
        precision: Precision = Precision.EXACT,
        max_abs_error: float = 0.0,
        level: int = 1,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        limits: TensorLimits = DEFAULT_LIMITS,
        first_sequence: int = 0,
        epoch: int | None = None,
        arm: Arm | None = None,
    ) -> None:
        if not 0 <= stream_id <= MAX_STREAM_ID:
            raise ValueError("stream_id must fit in 32 bits")
        if epoch is None:
            epoch = secrets.randbits(32)
        elif not 0 <= epoch <= MAX_EPOCH:
            raise ValueError("epoch must fit in 32 bits")
        if not 0 <= first_sequence < SEQUENCE_MODULUS:
            raise ValueError("first_sequence must fit in 32 bits")
        precision = Precision(precision)
        if precision is Precision.QUANTIZED:
            quantum_exponent(max_abs_error)
        if chunk_size < MIN_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE}")
        self.stream_id = stream_id
        self._epoch = epoch
        self.precision = precision
        self.max_abs_error = max_abs_error
        self.chunk_size = chunk_size
        self.limits = limits
        self._cctx = compressor(level)
        self._next = first_sequence
        self._state: _State | None = None
        self.arm = arm
        self._arms: ArmCoder | None = None
        self._last: LastInput | None = None

    def last_input(self) -> LastInput | None:
        """What the last frame's payload coded (a keyframe's lanes, or a delta's XOR lanes
        and changed elements), valid until the next :meth:`encode`: the optimiser encodes
        it again with other arms, off the wire, to measure them."""
        return self._last

    def _coder(self) -> ArmCoder:
        if self._arms is None:
            self._arms = ArmCoder()
        return self._arms

    @property
    def epoch(self) -> int:
        """This instance's epoch, carried by every frame it writes (fixed for its lifetime)."""
        return self._epoch

    @property
    def sequence(self) -> int | None:
        """Sequence of the last frame emitted, ``None`` before the first."""
        return None if self._state is None else self._state.sequence

    @property
    def representation(self) -> Representation | None:
        return None if self._state is None else self._state.rep

    def reset(self) -> None:
        """Forget the previous value: the next frame is a keyframe (same epoch, next sequence)."""
        self._state = None

    def encode(self, array: npt.ArrayLike, keyframe: bool = False) -> list[bytes]:
        """Encode the stream's next value; returns one frame, or its chunk frames.

        Raises ``TypeError`` for an unsupported dtype and ``ValueError`` for an array over the
        limits; the encoder's state is then unchanged.
        """
        a = np.asarray(array)
        element = element_type(a.dtype)
        self._check_limits(a, element.itemsize)
        state = self._state
        key = (
            keyframe or state is None or a.shape != state.shape or state.rep.element is not element
        )
        if key or state is None:
            fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
            rep = representation(element, self.precision, self.max_abs_error)
        else:
            fortran, rep = state.fortran, state.rep
        if a.dtype != element.dtype:
            a = a.astype(element.dtype)
        lanes = to_lanes(np.ascontiguousarray(a.reshape(-1, order="F" if fortran else "C")), rep)
        if key or state is None:
            return self._keyframe(lanes, rep, a.shape, fortran)
        return self._delta(lanes, state)

    def _check_limits(self, a: npt.NDArray[Any], itemsize: int) -> None:
        """The decoder's own check, so nothing is sent that a decoder would refuse."""
        limits = self.limits
        violation = limits.shape_violation(a.shape, itemsize)
        if violation is not None:
            raise ValueError(violation)
        # A dimension over max_elements is refused above; the header's 32-bit bound on
        # dimensions matters only with larger limits.
        if limits.max_elements > MAX_DIM and any(d > MAX_DIM for d in a.shape):
            raise ValueError(f"a dimension of {a.shape} does not fit in 32 bits")

    def _split(self, frame: bytes) -> list[bytes]:
        """The frames to send, checked before the encoder's state moves on."""
        if len(frame) > self.limits.max_frame_bytes:
            raise ValueError(f"{len(frame)}-byte frame exceeds max_frame_bytes")
        return split_frame(frame, self.chunk_size)

    def _keyframe(
        self, lanes: npt.NDArray[Any], rep: Representation, shape: tuple[int, ...], fortran: bool
    ) -> list[bytes]:
        sequence = self._next
        if self.arm is None:
            codec, payload = encode_dense(lanes, self._cctx)
        else:
            codec, payload = self._coder().keyframe(self.arm, lanes, shape, rep.lanes)
        frames = self._split(
            pack_keyframe(
                self.stream_id,
                sequence,
                codec,
                rep.precision,
                fortran,
                rep.element.code,
                rep.exponent,
                shape,
                payload,
                epoch=self._epoch,
            )
        )
        self._state = _State(rep, shape, fortran, lanes.copy(), sequence)
        self._last = LastInput(True, self._state.lanes, None, 0, rep.lanes, shape)
        self._next = (sequence + 1) % SEQUENCE_MODULUS
        return frames

    def _delta(self, lanes: npt.NDArray[Any], state: _State) -> list[bytes]:
        sequence = self._next
        codec, payload = self._delta_payload(lanes, state)
        frames = self._split(
            pack_delta(
                self.stream_id,
                sequence,
                state.sequence,
                codec,
                state.rep.precision,
                payload,
                epoch=self._epoch,
            )
        )
        np.copyto(state.lanes, lanes)
        state.sequence = sequence
        self._next = (sequence + 1) % SEQUENCE_MODULUS
        return frames

    def _delta_payload(self, lanes: npt.NDArray[Any], state: _State) -> tuple[Codec, bytes]:
        xor = np.bitwise_xor(lanes, state.lanes, out=state.xor)
        count = state.mask.size
        per = state.rep.lanes
        if per == 1:
            changed = np.not_equal(xor, 0, out=state.mask)
        else:
            pairs = xor.reshape(count, per)
            changed = np.not_equal(pairs[:, 0] | pairs[:, 1], 0, out=state.mask)
        changes = int(np.count_nonzero(changed))
        self._last = LastInput(False, xor, changed, changes, per, state.shape)
        if changes == 0:
            return Codec.UNCHANGED, b""
        if self.arm is not None:
            return self._coder().delta(self.arm, xor, changed, changes, per)
        raw_size = xor.nbytes
        element_size = state.rep.element_size
        index_size = min(changes + 4, -(-count // 8))
        sparse_size = index_size + changes * element_size
        best: tuple[Codec, bytes] = (Codec.RAW, b"")
        best_size = raw_size
        if sparse_size < raw_size:
            positions = np.flatnonzero(changed)
            codec, body = sparse_payload(xor, positions, count, per)
            packed: bytes = self._cctx.compress(body.data)
            if len(packed) < best_size:
                best, best_size = (codec, packed), len(packed)
        if sparse_size * SPARSE_ONLY_RATIO > raw_size:
            codec, packed = encode_dense(xor, self._cctx)
            if codec is not Codec.RAW and len(packed) < best_size:
                best, best_size = (codec, packed), len(packed)
        if best[0] is Codec.RAW:
            return Codec.RAW, xor.tobytes()
        return best
