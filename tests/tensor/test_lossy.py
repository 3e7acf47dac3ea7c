"""Lossy precisions: flagged in the header, within their documented bounds, no drift."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frys.shared.tensor import (
    KeyframeHeader,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorReplica,
    read_header,
)

SETTINGS = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
FLOATS = ["float16", "float32", "float64"]


@st.composite
def float_arrays(draw: st.DrawFn, dtypes: list[str] = FLOATS) -> npt.NDArray[Any]:
    """Float arrays from raw bits: every finite, subnormal, infinite and NaN pattern."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    lane = np.dtype(f"<u{dtype.itemsize}")
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    bits = draw(hnp.arrays(lane, shape, elements=st.integers(0, 2 ** (8 * dtype.itemsize) - 1)))
    scale = draw(st.sampled_from([None, 1.0, 1e-3, 1e6]))
    if scale is None:
        return bits.view(dtype)
    # Also plain magnitudes, where the rounding (not the range) matters.
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1, width=64)))
    with np.errstate(over="ignore"):
        return (values * scale).astype(dtype)


def decode(precision: Precision, a: npt.NDArray[Any], **kw: Any) -> npt.NDArray[Any]:
    frame = TensorEncoder(1, precision=precision, **kw).encode(a)[0]
    dec = TensorDecoder(1)
    out = dec.feed(frame)
    rep = dec.representation
    assert rep is not None
    header = read_header(frame)
    assert isinstance(header, KeyframeHeader)
    assert header.precision is rep.precision
    assert out.dtype == a.dtype.newbyteorder("=")
    assert out.shape == a.shape
    return out


def fraction(x: float) -> Fraction:
    return Fraction(float(x))


@SETTINGS
@given(
    float_arrays(),
    st.one_of(st.floats(1e-30, 1e30), st.sampled_from([5e-324, 1e-300, 1e300, 1.7e308])),
)
def test_quantized_error_is_within_the_bound(a: npt.NDArray[Any], bound: float) -> None:
    out = decode(Precision.QUANTIZED, a, max_abs_error=bound)
    finite = np.isfinite(a)
    # Non-finite values pass bit for bit.
    lane = f"<u{a.dtype.itemsize}"
    assert (out.view(lane)[~finite] == a.view(lane)[~finite]).all()
    for x, y in zip(a[finite].tolist(), out[finite].tolist(), strict=True):
        assert abs(fraction(y) - fraction(x)) <= Fraction(bound)


def test_quantized_header_declares_the_step() -> None:
    dec = TensorDecoder()
    dec.feed(TensorEncoder(1, precision=Precision.QUANTIZED, max_abs_error=0.01).encode(
        np.linspace(0, 1, 50, dtype=np.float32))[0])  # fmt: skip
    rep = dec.representation
    assert rep is not None
    assert rep.precision is Precision.QUANTIZED
    assert rep.exponent == -6  # step 1/64 <= 0.02
    assert rep.max_abs_error == 2.0**-7 <= 0.01


def reference_bfloat16(x: float) -> float:
    """Round a float32 value to bfloat16 with Python integers (ties to even)."""
    bits = int(np.float32(x).view(np.uint32))
    if math.isnan(x):
        return x
    upper, lower = bits >> 16, bits & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return float(np.uint32(upper << 16).view(np.float32))


@SETTINGS
@given(float_arrays(["float32", "float64"]))
def test_bfloat16_rounds_to_nearest_even(a: npt.NDArray[Any]) -> None:
    out = decode(Precision.BFLOAT16, a)
    with np.errstate(over="ignore"):
        as32 = a.astype(np.float32)
    for x, y in zip(as32.reshape(-1).tolist(), out.reshape(-1).tolist(), strict=True):
        expected = reference_bfloat16(x)
        assert (math.isnan(y) and math.isnan(expected)) or y == expected
        assert math.copysign(1, y) == math.copysign(1, expected) or math.isnan(y)


def test_bfloat16_ties_go_to_even_and_nan_stays_nan() -> None:
    bits = np.array(
        [
            0x3F808000,  # tie, even upper half: stays 0x3F80
            0x3F818000,  # tie, odd upper half: rounds up to 0x3F82
            0x3F808001,  # just above a tie: rounds up
            0xBF817FFF,  # just below a tie: rounds down
            0x7F7FFFFF,  # largest float32: rounds to inf
            0x7F800001,  # NaN whose payload sits in the dropped bits
            0x80000000,  # -0.0
        ],
        np.uint32,
    )
    out = decode(Precision.BFLOAT16, bits.view(np.float32)).view(np.uint32)
    expected = [0x3F800000, 0x3F820000, 0x3F810000, 0xBF810000, 0x7F800000, None, 0x80000000]
    for got, want in zip(out.tolist(), expected, strict=True):
        if want is None:
            assert got & 0x7F800000 == 0x7F800000
            assert got & 0x007FFFFF
        else:
            assert got == want


@SETTINGS
@given(float_arrays(["float32", "float64"]))
def test_float16_rounds_like_a_float16_cast(a: npt.NDArray[Any]) -> None:
    out = decode(Precision.FLOAT16, a)
    with np.errstate(over="ignore"):
        expected = a.astype(np.float16).astype(a.dtype)
    nan = np.isnan(expected)
    assert (np.isnan(out) == nan).all()
    assert (
        out.view(f"<u{a.dtype.itemsize}")[~nan] == expected.view(f"<u{a.dtype.itemsize}")[~nan]
    ).all()


def test_relative_error_of_half_precisions_on_normal_values() -> None:
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(10_000) * 100).astype(np.float32)
    for precision, bound in [(Precision.FLOAT16, 2.0**-11), (Precision.BFLOAT16, 2.0**-8)]:
        out = decode(precision, a)
        rel = np.abs(out.astype(np.float64) - a) / np.abs(a.astype(np.float64))
        assert rel.max() <= bound
        assert rel.max() > bound / 4  # really lossy: the representation is the half one


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [
        (precision, dtype)
        for precision in (Precision.FLOAT16, Precision.BFLOAT16, Precision.QUANTIZED)
        for dtype in ("int32", "uint8", "bool", "complex64", "float16")
        if not (dtype == "float16" and precision is Precision.QUANTIZED)
    ],
)
def test_lossy_modes_leave_other_types_exact(precision: Precision, dtype: str) -> None:
    a = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    out = decode(precision, a, max_abs_error=0.5)
    assert out.tobytes() == a.tobytes()
    header = read_header(TensorEncoder(1, precision=precision, max_abs_error=0.5).encode(a)[0])
    assert isinstance(header, KeyframeHeader)
    assert header.precision is Precision.EXACT


@pytest.mark.parametrize(
    ("precision", "bound"),
    [(Precision.FLOAT16, 0.0), (Precision.BFLOAT16, 0.0), (Precision.QUANTIZED, 1e-3)],
)
def test_lossy_deltas_do_not_drift(precision: Precision, bound: float) -> None:
    rng = np.random.default_rng(2)
    state = rng.standard_normal((64, 32))
    enc = TensorEncoder(4, precision=precision, max_abs_error=bound)
    dec, replica = TensorDecoder(4), TensorReplica(4)
    for tick in range(30):
        state = state + rng.standard_normal(state.shape) * 1e-4 * (tick % 3)
        frame = enc.encode(state)[0]
        replica.apply(frame)
        out = dec.feed(frame)
        # Each value is what a keyframe of the same tick would give: errors never accumulate.
        alone = TensorDecoder().feed(
            TensorEncoder(4, precision=precision, max_abs_error=bound).encode(state)[0]
        )
        assert out.tobytes() == alone.tobytes()
    late = TensorDecoder(4)
    keyframe = replica.keyframe()
    assert keyframe is not None
    assert late.feed(keyframe).tobytes() == out.tobytes()
    rep = late.representation
    assert rep is not None
    assert rep.precision is precision


def test_invalid_quantisation_bound_is_refused() -> None:
    for bound in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="max_abs_error"):
            TensorEncoder(1, precision=Precision.QUANTIZED, max_abs_error=bound)
