"""Encoding strategies ("arms") a tensor stream can be sent with, one per data pattern.

The frame format leaves the payload codec to the encoder (``docs/tensor-frames.md`` §7).
Which one serves a stream best depends on its data and on the link it travels: sparse
updates want a sparse index, dense drift wants shuffled zstd, smooth images a byte-delta
filter, and a same-host link wants no compression at all because CPU then costs more than
bytes. An :class:`Arm` fixes one such strategy for keyframes and deltas; the protocol
optimiser measures them and picks one per stream and link class. Every arm is lossless and
falls back to RAW when its form would be larger, so no arm ever sends more than the raw
lanes plus the header.

Everything here is pure computation on numpy lanes; :class:`ArmCoder` keeps the zstd
contexts an encoder reuses (one per level, made on first use).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import zstandard

from frys.shared.tensor.codecs import (
    compressor,
    encode_byte_delta,
    encode_dense,
    encode_lz4,
    encode_zstd,
    sparse_payload,
)
from frys.shared.tensor.frame import Codec

MAX_BYTE_DELTA_STRIDE: Final = 16
"""Innermost dimensions up to this size are taken as interleaved channels (RGB, RGBA, …):
the byte-delta filter then predicts each channel from the same channel one pixel before."""


class Method(enum.Enum):
    """How an arm codes dense lanes (keyframes, or deltas that are not sparse)."""

    RAW = "raw"
    SHUFFLE_ZSTD = "shuffle-zstd"
    ZSTD = "zstd"
    LZ4 = "lz4"
    BYTE_DELTA = "bytedelta"
    SPARSE = "sparse"
    """Deltas only: the changed elements and a gap or bitmap index (the shorter)."""
    SMALLEST = "smallest"
    """Deltas only: the smaller of the sparse and the dense shuffled form (the dense one
    is not tried when the sparse one is at most a quarter of the raw size): what the
    encoder does without an arm."""


@dataclass(frozen=True, slots=True)
class Arm:
    """One fixed encoding strategy: how keyframes and deltas are coded, at which zstd level."""

    name: str
    keyframe: Method
    delta: Method
    level: int = 1
    lossless: bool = True
    """Always true for the arms here: lossy precision is a publisher's choice (opt-in),
    never one the optimiser makes."""


ARMS: Final[tuple[Arm, ...]] = (
    Arm("raw", Method.RAW, Method.RAW),
    Arm("lz4", Method.LZ4, Method.LZ4),
    Arm("sparse-z1", Method.SHUFFLE_ZSTD, Method.SPARSE, 1),
    Arm("smallest-z1", Method.SHUFFLE_ZSTD, Method.SMALLEST, 1),
    Arm("shuffle-z1", Method.SHUFFLE_ZSTD, Method.SHUFFLE_ZSTD, 1),
    Arm("bytedelta-z1", Method.BYTE_DELTA, Method.SMALLEST, 1),
    Arm("plain-z1", Method.ZSTD, Method.ZSTD, 1),
    Arm("shuffle-z3", Method.SHUFFLE_ZSTD, Method.SHUFFLE_ZSTD, 3),
    Arm("shuffle-z9", Method.SHUFFLE_ZSTD, Method.SHUFFLE_ZSTD, 9),
)
"""The arms the optimiser chooses among, cheapest to probe first."""
SPARSE_ONLY_RATIO: Final = 4
"""SMALLEST skips the dense form when the raw sparse form is at most this fraction of it."""
BY_NAME: Final[dict[str, Arm]] = {arm.name: arm for arm in ARMS}


def stride_for(shape: tuple[int, ...]) -> int:
    """The byte-delta stride (in lanes) the encoder uses for an array of ``shape``: the
    innermost dimension when it looks like interleaved channels, else the previous lane."""
    if len(shape) >= 3 and 1 <= shape[-1] <= MAX_BYTE_DELTA_STRIDE:
        return shape[-1]
    return 1


class ArmCoder:
    """Codes lanes the way an arm says, reusing one zstd context per level."""

    __slots__ = ("_contexts",)

    def __init__(self) -> None:
        self._contexts: dict[int, zstandard.ZstdCompressor] = {}

    def warm(self, arms: tuple[Arm, ...] | list[Arm]) -> None:
        """Make the contexts ``arms`` use now (so that timing a first use times the coding,
        not the making of a context)."""
        for arm in arms:
            self._cctx(arm.level)

    def _cctx(self, level: int) -> zstandard.ZstdCompressor:
        cctx = self._contexts.get(level)
        if cctx is None:
            cctx = self._contexts[level] = compressor(level)
        return cctx

    def dense(
        self, method: Method, lanes: npt.NDArray[Any], level: int, stride: int = 1
    ) -> tuple[Codec, bytes]:
        """Dense lanes (a keyframe's, or a delta's XOR lanes) coded by ``method``."""
        if method in (Method.SHUFFLE_ZSTD, Method.SPARSE, Method.SMALLEST):
            return encode_dense(lanes, self._cctx(level))
        if method is Method.ZSTD:
            return encode_zstd(lanes, self._cctx(level))
        if method is Method.LZ4:
            return encode_lz4(lanes)
        if method is Method.BYTE_DELTA:
            return encode_byte_delta(lanes, stride, self._cctx(level))
        return Codec.RAW, lanes.tobytes()

    def keyframe(
        self, arm: Arm, lanes: npt.NDArray[Any], shape: tuple[int, ...], lanes_per_element: int
    ) -> tuple[Codec, bytes]:
        stride = stride_for(shape) * lanes_per_element
        return self.dense(arm.keyframe, lanes, arm.level, stride)

    def delta(
        self,
        arm: Arm,
        xor: npt.NDArray[Any],
        changed: npt.NDArray[np.bool_],
        changes: int,
        lanes_per_element: int,
    ) -> tuple[Codec, bytes]:
        """A delta's payload (at least one element changed): sparse or dense as the arm
        says, RAW whenever that form would not be smaller."""
        if arm.delta is not Method.SPARSE and arm.delta is not Method.SMALLEST:
            return self.dense(arm.delta, xor, arm.level)
        count = changed.size
        element_size = xor.dtype.itemsize * lanes_per_element
        index_size = min(changes + 4, -(-count // 8))
        sparse_size = index_size + changes * element_size
        best: tuple[Codec, bytes] = (Codec.RAW, b"")
        best_size = xor.nbytes
        if sparse_size < xor.nbytes:
            codec, body = sparse_payload(xor, np.flatnonzero(changed), count, lanes_per_element)
            packed: bytes = self._cctx(arm.level).compress(body.data)
            if len(packed) < best_size:
                best, best_size = (codec, packed), len(packed)
        if arm.delta is Method.SMALLEST and sparse_size * SPARSE_ONLY_RATIO > xor.nbytes:
            codec, packed = encode_dense(xor, self._cctx(arm.level))
            if codec is not Codec.RAW and len(packed) < best_size:
                best, best_size = (codec, packed), len(packed)
        if best[0] is Codec.RAW:
            return Codec.RAW, xor.tobytes()
        return best
