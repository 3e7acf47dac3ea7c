"""Re-encoding a relayed tensor stream for one link class, with the arm that serves it.

A relay forwards the publisher's frames; a reader that declared ``tensor-ext`` may instead
get each whole frame re-encoded with the arm chosen for its link class: the same stream,
sequence, base and epoch, the same lanes (a keyframe's wire lanes, a delta's XOR lanes),
another payload codec. The state the reader holds after it is the same, bit for bit, so it
stays in sync whatever mix of relayed and re-encoded frames it gets, and a relay keyframe
(``resync``) applies as before. What cannot be re-encoded is passed through as it came:
chunk frames (a large frame travels in pieces), a delta before any keyframe, an unchanged
delta, anything that does not decode.

The choice, the probes and their budget are :class:`~.tensor.ArmOptimiser`'s; the stream's
CPU is the decoding of the publisher's payload plus the encoding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from frys.gateway.optimiser.tensor import ArmOptimiser
from frys.shared.tensor import TensorError
from frys.shared.tensor.codecs import decode_dense, decode_sparse
from frys.shared.tensor.decoder import DENSE_DELTA_CODECS
from frys.shared.tensor.dtypes import BY_CODE
from frys.shared.tensor.encoder import LastInput
from frys.shared.tensor.frame import (
    ChunkHeader,
    Codec,
    KeyframeHeader,
    check_crc,
    pack_delta,
    pack_keyframe,
    read_header,
)
from frys.shared.tensor.limits import DEFAULT_LIMITS, TensorLimits
from frys.shared.tensor.precision import Representation


class FrameTranscoder(ArmOptimiser):
    """One stream's frames re-encoded for one link class (see the module docstring)."""

    def __init__(self, *args: Any, limits: TensorLimits = DEFAULT_LIMITS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._layout: tuple[Representation, tuple[int, ...], int] | None = None
        """The stream's element representation, shape and lane count (from its keyframe)."""
        self.passed = 0
        """Frames passed through as they came."""

    def transcode(self, frame: bytes | memoryview, other_seconds: float = 0.0) -> bytes | None:
        """The frame re-encoded with the arm in use, or ``None`` to send it as it came."""
        start = self._clock()
        try:
            out = self._transcode(memoryview(frame))
        except (TensorError, ValueError):
            out = None
        if out is None:
            self.passed += 1
            return None
        packed, last = out
        spent = self._clock() - start
        self._after(last, len(packed), spent, other_seconds, start)
        return packed

    def _transcode(self, view: memoryview) -> tuple[bytes, LastInput] | None:
        header = read_header(view)
        if isinstance(header, ChunkHeader) or len(view) > self.limits.max_frame_bytes:
            return None
        check_crc(view, header)
        payload = view[header.payload_offset :]
        arm = self.arms[self.selector.current]
        if isinstance(header, KeyframeHeader):
            element = BY_CODE.get(header.dtype_code)
            if element is None:
                return None
            rep = Representation(element, header.precision, header.exponent)
            if self.limits.shape_violation(header.shape, element.itemsize) is not None:
                return None
            count = math.prod(header.shape) * rep.lanes
            lanes = decode_dense(header.codec, payload, count, rep.lane, self._dctx)
            self._layout = (rep, header.shape, count)
            codec, body = self._coder.keyframe(arm, lanes, header.shape, rep.lanes)
            packed = pack_keyframe(
                header.stream_id,
                header.sequence,
                codec,
                header.precision,
                header.fortran,
                header.dtype_code,
                header.exponent,
                header.shape,
                body,
                epoch=header.epoch,
            )
            return packed, LastInput(True, lanes, None, 0, rep.lanes, header.shape)
        layout = self._layout
        if layout is None or header.codec is Codec.UNCHANGED:
            return None
        rep, shape, count = layout
        per = rep.lanes
        if header.codec in DENSE_DELTA_CODECS:
            xor = decode_dense(header.codec, payload, count, rep.lane, self._dctx, copy=True)
        else:
            positions, values = decode_sparse(
                header.codec, payload, count // per, per, rep.lane, self._dctx
            )
            xor = np.zeros(count, rep.lane)
            xor.reshape(-1, per)[positions] = values
        if per == 1:
            changed = xor != 0
        else:
            pairs = xor.reshape(-1, per)
            changed = (pairs != 0).any(axis=1)
        changes = int(np.count_nonzero(changed))
        if changes == 0:
            return None
        codec, body = self._coder.delta(arm, xor, changed, changes, per)
        packed = pack_delta(
            header.stream_id,
            header.sequence,
            header.base,
            codec,
            header.precision,
            body,
            epoch=header.epoch,
        )
        return packed, LastInput(False, xor, changed, changes, per, shape)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["passed_through"] = self.passed
        return out
