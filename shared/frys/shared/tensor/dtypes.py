"""Element types a tensor frame carries, and the unsigned lanes their bits travel in.

Every element travels as its little-endian bit pattern, one unsigned integer lane per element,
or two for complex types (one per component). Working on lanes rather than values keeps every
transformation exact: NaN payloads, -0.0 and subnormals come back bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class ElementType:
    """One supported element type: its wire code, numpy dtype and lane layout."""

    code: int
    dtype: np.dtype[Any]
    """Little-endian numpy dtype the decoder returns."""
    lane: np.dtype[Any]
    """Unsigned integer dtype of one lane."""
    lanes: int
    """Lanes per element: 2 for complex types, otherwise 1."""

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"


def _lane(size: int) -> np.dtype[Any]:
    return np.dtype(f"<u{size}")


def _element(code: int, name: str) -> ElementType:
    dtype = np.dtype(name)
    dtype = dtype if dtype.kind == "b" else dtype.newbyteorder("<")
    lanes = 2 if dtype.kind == "c" else 1
    return ElementType(code, dtype, _lane(dtype.itemsize // lanes), lanes)


ELEMENT_TYPES: tuple[ElementType, ...] = tuple(
    _element(code, name)
    for code, name in enumerate(
        (
            "bool",
            "int8",
            "uint8",
            "int16",
            "uint16",
            "int32",
            "uint32",
            "int64",
            "uint64",
            "float16",
            "float32",
            "float64",
            "complex64",
            "complex128",
        ),
        start=1,
    )
)
"""Wire codes 1-14, in the order of ``docs/tensor-frames.md``."""

BY_CODE: dict[int, ElementType] = {t.code: t for t in ELEMENT_TYPES}
_BY_KIND_SIZE: dict[tuple[str, int], ElementType] = {
    (t.dtype.kind, t.itemsize): t for t in ELEMENT_TYPES
}


def element_type(dtype: np.dtype[Any]) -> ElementType:
    """The element type of ``dtype`` in either byte order; raises ``TypeError`` if unsupported."""
    found = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if found is None or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"tensor frames do not carry dtype {dtype}")
    return found
