"""Size limits a receiver enforces from frame headers, before allocating or decompressing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MIB: Final = 1 << 20

DEFAULT_CHUNK_SIZE: Final = MIB
"""Largest frame an encoder emits whole; bigger frames travel as chunk frames."""


@dataclass(frozen=True, slots=True)
class TensorLimits:
    """What one stream may carry. Defaults suit state tensors of up to 64 MiB."""

    max_bytes: int = 64 * MIB
    """Largest decoded array, in bytes (elements times item size)."""
    max_elements: int = 1 << 26
    """Largest element count."""
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
