"""Lossy representations a publisher may opt into, and their exact error bounds.

A lossy stream carries, for each element, the bits of a *wire value* instead of the source
value; everything after that (deltas, shuffling, compression) stays exact, so a decoder holds
exactly the wire values the encoder holds and errors never accumulate along a delta chain.

* ``FLOAT16``: float32/float64 elements rounded to the nearest float16 (ties to even); values
  beyond ±65504 become ±inf.
* ``BFLOAT16``: float32/float64 elements rounded to the nearest bfloat16, the top 16 bits of a
  float32 (ties to even; float64 is first rounded to float32). NaN stays NaN.
* ``QUANTIZED``: float elements rounded to the nearest multiple of ``2**exponent``, the largest
  power of two not above twice the requested bound, so ``|decoded - source| <= bound`` holds
  exactly for every finite element. NaN and ±inf pass unchanged.

Modes that would not shrink an element type (integers, bool, complex, and float16 under
``FLOAT16``/``BFLOAT16``) leave it exact, and the frame says so.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from frys.shared.tensor.dtypes import ElementType

MIN_EXPONENT: Final = -1100
MAX_EXPONENT: Final = 1100
"""Quantisation exponents outside this range are rejected (they are exact or meaningless)."""

_SIGNIFICAND_BITS: Final = {2: 11, 4: 24, 8: 53}
_U16: Final = np.dtype("<u2")


class Precision(enum.IntEnum):
    """How elements are represented on the wire; the frame flags carry it."""

    EXACT = 0
    FLOAT16 = 1
    BFLOAT16 = 2
    QUANTIZED = 3


@dataclass(frozen=True, slots=True)
class Representation:
    """How one stream's elements travel: element type, precision and lane layout."""

    element: ElementType
    precision: Precision
    exponent: int
    """Quantisation step is ``2**exponent``; 0 unless ``precision`` is ``QUANTIZED``."""

    @property
    def lane(self) -> np.dtype[Any]:
        if self.precision in (Precision.FLOAT16, Precision.BFLOAT16):
            return _U16
        return self.element.lane

    @property
    def lanes(self) -> int:
        return self.element.lanes

    @property
    def lane_size(self) -> int:
        return self.lane.itemsize

    @property
    def element_size(self) -> int:
        """Bytes one element takes on the wire."""
        return self.lane.itemsize * self.element.lanes

    @property
    def max_abs_error(self) -> float:
        """Bound on ``|decoded - source|`` for finite elements of a ``QUANTIZED`` stream, else 0."""
        if self.precision is not Precision.QUANTIZED:
            return 0.0
        return math.ldexp(1.0, self.exponent - 1)


def applies(element: ElementType, precision: Precision) -> bool:
    """Whether ``precision`` changes elements of this type (otherwise they travel exactly)."""
    if precision is Precision.QUANTIZED:
        return element.is_float
    if precision in (Precision.FLOAT16, Precision.BFLOAT16):
        return element.is_float and element.itemsize > 2
    return precision is Precision.EXACT


def representation(
    element: ElementType, precision: Precision, max_abs_error: float = 0.0
) -> Representation:
    """The representation an encoder uses for ``element`` under the requested precision."""
    if precision is Precision.EXACT or not applies(element, precision):
        return Representation(element, Precision.EXACT, 0)
    if precision is Precision.QUANTIZED:
        return Representation(element, precision, quantum_exponent(max_abs_error))
    return Representation(element, precision, 0)


def quantum_exponent(max_abs_error: float) -> int:
    """Exponent of the largest power of two not above ``2 * max_abs_error``."""
    if not (math.isfinite(max_abs_error) and max_abs_error > 0):
        raise ValueError("max_abs_error must be a positive finite number")
    _, exp = math.frexp(max_abs_error)  # max_abs_error = m * 2**exp, 0.5 <= m < 1
    return max(MIN_EXPONENT, min(MAX_EXPONENT, exp))


def to_lanes(flat: npt.NDArray[Any], rep: Representation) -> npt.NDArray[Any]:
    """Wire lanes of a contiguous 1-D array of the source dtype (a view when exact)."""
    if rep.precision is Precision.EXACT:
        return flat.view(rep.element.lane)
    with np.errstate(over="ignore", invalid="ignore"):
        if rep.precision is Precision.FLOAT16:
            return flat.astype("<f2").view(_U16)
        if rep.precision is Precision.BFLOAT16:
            return _bfloat16_bits(flat.astype("<f4", copy=False))
        return _quantize(flat, rep)


def from_lanes(lanes: npt.NDArray[Any], rep: Representation) -> npt.NDArray[Any]:
    """A fresh 1-D array of the source dtype from wire lanes."""
    dtype = rep.element.dtype
    if rep.precision is Precision.FLOAT16:
        return lanes.view("<f2").astype(dtype)
    if rep.precision is Precision.BFLOAT16:
        return (lanes.astype("<u4") << 16).view("<f4").astype(dtype)
    return lanes.copy().view(dtype)


def _bfloat16_bits(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    bits = values.view("<u4")
    rounded = bits + (((bits >> 16) & 1) + 0x7FFF).astype("<u4")
    out: npt.NDArray[Any] = (rounded >> 16).astype(_U16)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        # Keep NaN a NaN even when its payload sits in the dropped bits.
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(_U16)
    return out


def _quantize(flat: npt.NDArray[Any], rep: Representation) -> npt.NDArray[Any]:
    exponent = rep.exponent
    itemsize = rep.element.itemsize
    # Scaling by a power of two is exact, so float16/float32 work in float32.
    work = np.dtype("<f8" if itemsize == 8 else "<f4")
    values = flat.astype(work, copy=False)
    # Elements at least 2**(exponent + significand - 1) in magnitude are already multiples of
    # the step; so are NaN and inf. Keeping them also keeps the scaling below from overflowing.
    top = exponent + _SIGNIFICAND_BITS[itemsize] - 1
    limit = math.ldexp(1.0, top) if top < 1024 else math.inf
    change = np.abs(values) < limit
    if abs(exponent) < np.finfo(work).maxexp - 1:
        # Both powers are normal numbers: multiplying by them is as exact as ldexp, and faster.
        down, up = work.type(2.0**-exponent), work.type(2.0**exponent)
        rounded = np.rint(values * down) * up
    else:
        rounded = np.ldexp(np.rint(np.ldexp(values, -exponent)), exponent)
    lane = rep.element.lane
    bits: npt.NDArray[Any] = rounded.astype(rep.element.dtype, copy=False).view(lane)
    if change.all():
        return bits
    return np.where(change, bits, flat.view(lane))
