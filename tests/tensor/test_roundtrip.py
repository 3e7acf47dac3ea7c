"""Exact round trips: every dtype, shape, layout and bit pattern survives keyframes and deltas."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frys.shared.tensor import (
    ChunkHeader,
    Codec,
    DeltaHeader,
    KeyframeHeader,
    Kind,
    TensorDecoder,
    TensorEncoder,
    read_header,
)
from frys.shared.tensor.frame import HEADER_SIZE

DTYPES = [
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
]
SPECIAL_BITS = {
    2: [0x7E01, 0xFC00, 0x7C00, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0x7D55],
    4: [0x7FC00001, 0xFFC00000, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001,
        0x807FFFFF, 0x7F7FFFFF],
    8: [0x7FF8000000000001, 0xFFF0000000000001, 0x7FF0000000000000, 0xFFF0000000000000,
        0x8000000000000000, 0x0000000000000001, 0x800FFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF],
}  # fmt: skip
"""NaNs with payloads (quiet and signalling), ±inf, -0.0, subnormals, extremes."""

settings.register_profile(
    "tensor", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=80
)
SETTINGS = settings.get_profile("tensor")


def lane_of(dtype: np.dtype[Any]) -> np.dtype[Any]:
    size = dtype.itemsize // (2 if dtype.kind == "c" else 1)
    return np.dtype(f"<u{size}")


def elements(dtype: np.dtype[Any]) -> st.SearchStrategy[Any]:
    """Bit patterns for one lane: arbitrary, plus the special values of float types."""
    lane = lane_of(dtype)
    anything = st.integers(0, 2 ** (8 * lane.itemsize) - 1)
    if dtype.kind in "fc":
        return st.one_of(anything, st.sampled_from(SPECIAL_BITS[lane.itemsize]))
    return anything


@st.composite
def tensors(draw: st.DrawFn, max_dims: int = 4) -> npt.NDArray[Any]:
    """Arrays of any supported dtype, built from raw bits, in assorted layouts."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if dtype.kind == "b":
        a = draw(hnp.arrays(np.bool_, shape))
    else:
        lanes = 2 if dtype.kind == "c" else 1
        flat = draw(
            hnp.arrays(lane_of(dtype), (int(np.prod(shape)) * lanes,), elements=elements(dtype))
        )
        a = flat.view(dtype).reshape(shape)
    return draw(layouts(a))


@st.composite
def layouts(draw: st.DrawFn, a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The same values as C, Fortran, transposed, strided, reversed or big-endian arrays."""
    how = draw(st.sampled_from(["c", "f", "transpose", "stride", "reverse", "swap"]))
    if how == "f":
        return np.array(a, order="F")
    if how == "transpose":
        return np.array(a.T, order="C").T
    if how == "stride" and a.ndim:
        axis = draw(st.integers(0, a.ndim - 1))
        wide = np.repeat(a, 2, axis=axis)
        index = [slice(None)] * a.ndim
        index[axis] = slice(None, None, 2)
        return wide[tuple(index)]
    if how == "reverse" and a.ndim:
        return np.array(a[..., ::-1], order="C")[..., ::-1]
    if how == "swap" and a.dtype.itemsize > 1:
        return a.astype(a.dtype.newbyteorder(">"))
    return a


def c_bytes(a: npt.NDArray[Any]) -> bytes:
    """Little-endian element bits in C order, whatever the layout or byte order."""
    dtype = a.dtype if a.dtype.kind == "b" else a.dtype.newbyteorder("<")
    return a.astype(dtype).tobytes(order="C")


def assert_same(out: npt.NDArray[Any], expected: npt.NDArray[Any]) -> None:
    assert out.shape == expected.shape
    assert out.dtype.kind == expected.dtype.kind
    assert out.dtype.itemsize == expected.dtype.itemsize
    assert out.dtype.isnative
    assert c_bytes(out) == c_bytes(expected)


def codec_of(frame: bytes) -> Codec:
    header = read_header(frame)
    assert not isinstance(header, ChunkHeader)
    return header.codec


def raw_limit(frame: bytes, a: npt.NDArray[Any]) -> int:
    """Size of the frame had its payload been stored raw."""
    header = read_header(frame)
    head = HEADER_SIZE + (4 * a.ndim if isinstance(header, KeyframeHeader) else 0)
    return head + a.size * a.dtype.itemsize


def round_trip(enc: TensorEncoder, dec: TensorDecoder, a: npt.NDArray[Any]) -> bytes:
    frames = enc.encode(a)
    assert len(frames) == 1
    out = dec.feed(frames[0])
    assert_same(out, a)
    assert len(frames[0]) <= raw_limit(frames[0], a)
    return frames[0]


@SETTINGS
@given(tensors())
def test_keyframe_round_trip_is_bit_exact(a: npt.NDArray[Any]) -> None:
    enc, dec = TensorEncoder(5), TensorDecoder(5)
    frame = round_trip(enc, dec, a)
    header = read_header(frame)
    assert isinstance(header, KeyframeHeader)
    assert header.shape == a.shape


@SETTINGS
@given(tensors())
def test_decoded_memory_order_follows_the_source(a: npt.NDArray[Any]) -> None:
    out = TensorDecoder().feed(TensorEncoder(1).encode(a)[0])
    fortran_only = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
    assert out.flags.f_contiguous if fortran_only else out.flags.c_contiguous


@st.composite
def chains(draw: st.DrawFn) -> list[npt.NDArray[Any]]:
    """A tensor and successors that change none, some or all of its elements' bits."""
    first = draw(tensors(max_dims=3))
    base = np.array(first, order="C")
    lanes = base.reshape(-1).view(lane_of(base.dtype) if base.dtype.kind != "b" else np.uint8)
    out = [first]
    for _ in range(draw(st.integers(1, 5))):
        nxt = lanes.copy()
        if nxt.size:
            mode = draw(st.sampled_from(["same", "few", "many", "all"]))
            if mode != "same":
                count = {"few": 1, "many": max(1, nxt.size // 2), "all": nxt.size}[mode]
                where = draw(st.lists(st.integers(0, nxt.size - 1), min_size=count, max_size=count))
                pattern = draw(elements(base.dtype)) if base.dtype.kind != "b" else 1
                nxt[where] ^= np.array(pattern or 1, nxt.dtype)
        lanes = nxt
        value = nxt.view(base.dtype).reshape(base.shape)
        out.append(draw(layouts(value)) if draw(st.booleans()) else value)
    return out


@SETTINGS
@given(chains())
def test_delta_chains_are_bit_exact(chain: list[npt.NDArray[Any]]) -> None:
    enc, dec = TensorEncoder(9), TensorDecoder(9)
    for i, a in enumerate(chain):
        frame = round_trip(enc, dec, a)
        header = read_header(frame)
        assert isinstance(header, KeyframeHeader if i == 0 else DeltaHeader)
        assert header.sequence == i
        if isinstance(header, DeltaHeader):
            assert header.base == i - 1


def test_every_delta_codec_is_used_and_exact() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal(4096).astype(np.float32)
    enc, dec = TensorEncoder(1), TensorDecoder(1)
    round_trip(enc, dec, base)
    seen = []
    for fraction in (0.0, 0.001, 0.3, 1.0):
        nxt = base.copy()
        idx = rng.choice(base.size, int(base.size * fraction), replace=False)
        nxt[idx] += np.float32(1e-3)
        seen.append(codec_of(round_trip(enc, dec, nxt)))
        base = nxt
    noise = rng.integers(0, 2**32, base.size, dtype=np.uint32).view(np.float32)
    seen.append(codec_of(round_trip(enc, dec, noise)))
    assert seen == [
        Codec.UNCHANGED,
        Codec.SPARSE_GAPS,
        Codec.SPARSE_BITMAP,
        Codec.SHUFFLE_ZSTD,
        Codec.RAW,
    ]


def test_sparse_gaps_escape_long_runs_of_unchanged_elements() -> None:
    base = np.zeros(100_000, np.uint16)
    enc, dec = TensorEncoder(1), TensorDecoder(1)
    round_trip(enc, dec, base)
    nxt = base.copy()
    nxt[[0, 254, 255, 509, 70_000, 99_999]] = [1, 2, 3, 4, 5, 6]
    assert codec_of(round_trip(enc, dec, nxt)) is Codec.SPARSE_GAPS


def test_incompressible_frames_are_raw_plus_header() -> None:
    rng = np.random.default_rng(0)
    enc, dec = TensorEncoder(1), TensorDecoder(1)
    for _ in range(3):
        a = rng.integers(0, 256, (300, 7), dtype=np.uint8)
        frame = round_trip(enc, dec, a)
        assert len(frame) <= raw_limit(frame, a)
        assert codec_of(frame) is Codec.RAW


def test_keyframes_when_asked_on_shape_or_dtype_change() -> None:
    enc, dec = TensorEncoder(2), TensorDecoder(2)
    kinds = []
    steps: list[tuple[npt.NDArray[Any], bool]] = [
        (np.zeros((2, 3), np.float32), False),
        (np.ones((2, 3), np.float32), False),
        (np.ones((2, 3), np.float32), True),
        (np.ones((3, 2), np.float32), False),
        (np.ones((3, 2), np.float64), False),
        (np.ones((3, 2), np.float64), False),
    ]
    for value, force in steps:
        frame = enc.encode(value, keyframe=force)[0]
        assert_same(dec.feed(frame), value)
        kinds.append(
            Kind.KEYFRAME if isinstance(read_header(frame), KeyframeHeader) else Kind.DELTA
        )
    assert kinds == [
        Kind.KEYFRAME,
        Kind.DELTA,
        Kind.KEYFRAME,
        Kind.KEYFRAME,
        Kind.KEYFRAME,
        Kind.DELTA,
    ]
    assert enc.sequence == dec.sequence == 5


def test_decoded_arrays_belong_to_the_caller() -> None:
    enc, dec = TensorEncoder(1), TensorDecoder(1)
    source = np.arange(6, dtype=np.int32)
    out = dec.feed(enc.encode(source)[0])
    out[:] = -1
    source[:] = 7  # the encoder must not alias the caller's array either
    again = dec.current()
    assert again is not None
    assert again.tolist() == [0, 1, 2, 3, 4, 5]
    assert dec.feed(enc.encode(np.arange(6, dtype=np.int32))[0]).tolist() == [0, 1, 2, 3, 4, 5]


def test_sequences_wrap_at_32_bits() -> None:
    enc, dec = TensorEncoder(1, first_sequence=2**32 - 2), TensorDecoder(1)
    values = [np.array([i], np.int8) for i in range(4)]
    sequences = [read_header(round_trip(enc, dec, v)).sequence for v in values]
    assert sequences == [2**32 - 2, 2**32 - 1, 0, 1]


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a"]),
        np.array([object()]),
        np.array([1], "datetime64[s]"),
        np.zeros(2, np.longdouble),
    ],
)
def test_unsupported_dtypes_are_refused(value: npt.NDArray[Any]) -> None:
    if value.dtype.kind == "f" and value.dtype.itemsize == 8:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError):
        TensorEncoder(1).encode(value)
