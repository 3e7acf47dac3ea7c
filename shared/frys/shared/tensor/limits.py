"""Size limits a receiver enforces from frame headers, before allocating or decompressing.

Encoders apply the same limits to what they send, so a decoder with the same limits never
refuses what an encoder sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

MIB: Final = 1 << 20


def _array_max_ndim() -> int:
    """Most dimensions this numpy can give an array (32 before numpy 2, 64 since)."""
    try:
        np.empty((1,) * 64, np.uint8)
    except ValueError:
        return 32
    return 64


ARRAY_MAX_NDIM: Final = _array_max_ndim()
"""A shape with more dimensions cannot become an array here, whatever the limits say."""

DEFAULT_CHUNK_SIZE: Final = MIB
"""Largest frame an encoder emits whole; bigger frames travel as chunk frames."""


@dataclass(frozen=True, slots=True)
class TensorLimits:
    """What one stream may carry. Defaults suit state tensors of up to 64 MiB."""

    max_bytes: int = 64 * MIB
    """Largest decoded array, in bytes (elements times item size, see :meth:`shape_violation`)."""
    max_elements: int = 1 << 26
    """Largest element count, zero dimensions aside (see :meth:`shape_violation`)."""
    max_ndim: int = 32
    """Most dimensions."""
    max_frame_bytes: int = 64 * MIB + 4096
    """Largest encoded frame, header included (a raw frame of ``max_bytes`` fits)."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_elements", "max_ndim", "max_frame_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_ndim > 255:
            raise ValueError("max_ndim cannot exceed 255, the most a header can declare")

    def shape_violation(self, shape: tuple[int, ...], itemsize: int) -> str | None:
        """Why an array of ``shape`` and ``itemsize`` is beyond these limits, or ``None``.

        The element count and byte size are taken over the *non-zero* dimensions: an array
        with a zero dimension has no elements, but numpy still refuses a shape whose other
        dimensions multiply past its address space, so a zero must not let huge dimensions
        through. That covers every dimension too: each non-zero one divides the product.
        Encoders and decoders share this check, so an encoder never emits a frame that a
        decoder with the same limits refuses.
        """
        ndim = len(shape)
        if ndim > self.max_ndim or ndim > ARRAY_MAX_NDIM:
            return f"{ndim} dimensions exceed the limit of {min(self.max_ndim, ARRAY_MAX_NDIM)}"
        extent = 1
        for dim in shape:
            if dim:
                extent *= dim
        if extent > self.max_elements:
            return f"{extent} elements exceed the limit of {self.max_elements}{_aside(shape)}"
        if extent * itemsize > self.max_bytes:
            return f"{extent * itemsize} bytes exceed the limit of {self.max_bytes}{_aside(shape)}"
        return None


def _aside(shape: tuple[int, ...]) -> str:
    return "" if all(shape) else f" (counting the non-zero dimensions of {shape})"


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """Bounds on reassembly of chunked frames; incomplete sets are evicted, oldest first."""

    max_frame_bytes: int = 64 * MIB + 4096
    """Largest frame a chunk set may declare."""
    max_pending_sets: int = 16
    """Most incomplete sets held at once."""
    max_pending_bytes: int = 128 * MIB
    """Most bytes the incomplete sets may declare in total."""
    timeout: float = 30.0
    """Seconds after its first chunk an incomplete set is dropped."""

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1 or self.max_pending_sets < 1 or self.max_pending_bytes < 1:
            raise ValueError("chunk limits must be positive")
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")


DEFAULT_LIMITS: Final = TensorLimits()
DEFAULT_CHUNK_LIMITS: Final = ChunkLimits()
