"""Every arm round-trips exactly, never sends more than raw lanes plus the header, and the new
payload codecs (ZSTD, SHUFFLE_LZ4, BYTE_DELTA_ZSTD) are refused where the format forbids them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frys.shared.tensor import (
    Codec,
    DeltaHeader,
    KeyframeHeader,
    TensorDecoder,
    TensorEncoder,
    TensorFrameError,
    read_header,
)
from frys.shared.tensor.arms import ARMS, Arm, stride_for
from frys.shared.tensor.codecs import byte_delta, undo_byte_delta
from frys.shared.tensor.frame import HEADER_SIZE, crc_of, pack_delta, pack_keyframe
from frys.shared.tensor.precision import Precision

FAST = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["bool", "uint8", "int16", "float16", "float32", "float64", "complex64", "uint64"]


def arrays(dtype: str) -> st.SearchStrategy[npt.NDArray[Any]]:
    return hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3, max_side=9))


@FAST
@given(
    arm=st.sampled_from(ARMS),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_every_arm_round_trips_keyframes_and_deltas_bit_for_bit(
    arm: Arm, dtype: str, data: st.DataObject
) -> None:
    first = data.draw(arrays(dtype))
    enc = TensorEncoder(1, arm=arm)
    dec = TensorDecoder(1)
    frames = [first]
    for _ in range(3):
        nxt = first.copy()
        if nxt.size:
            flat = nxt.reshape(-1)
            k = data.draw(st.integers(0, flat.size))
            idx = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=k, max_size=k))
            new = data.draw(arrays(dtype).filter(lambda a: a.size >= 1))
            flat[idx] = new.reshape(-1)[0]
        frames.append(nxt)
        first = nxt
    for value in frames:
        (frame,) = enc.encode(value)
        out = dec.feed(frame)
        assert out.dtype == value.dtype.newbyteorder("=")
        assert out.tobytes() == np.ascontiguousarray(value).tobytes()
        lanes = value.nbytes
        header = HEADER_SIZE + 4 * value.ndim
        assert len(frame) <= header + lanes + 4  # RAW fallback (+4: a byte-delta stride)


@pytest.mark.parametrize("arm", ARMS, ids=lambda a: a.name)
def test_arm_frames_name_the_codecs_they_promise(arm: Arm) -> None:
    rng = np.random.default_rng(3)
    _, x = np.mgrid[0:64, 0:64]
    image = np.stack([x, x // 2, 3 * x], axis=-1).astype(np.uint8)  # every row alike
    enc = TensorEncoder(1, arm=arm)
    (key,) = enc.encode(image)
    sparse = image.copy()
    sparse.flat[rng.choice(image.size, 10, replace=False)] ^= 1
    (delta,) = enc.encode(sparse)
    key_header, delta_header = read_header(key), read_header(delta)
    assert isinstance(key_header, KeyframeHeader) and isinstance(delta_header, DeltaHeader)
    key_codec, delta_codec = key_header.codec, delta_header.codec
    expected_key = {
        "raw": Codec.RAW,
        "lz4": Codec.SHUFFLE_LZ4,
        "plain-z1": Codec.ZSTD,
        "bytedelta-z1": Codec.BYTE_DELTA_ZSTD,
    }.get(arm.name, Codec.SHUFFLE_ZSTD)
    assert key_codec is expected_key
    if arm.name in ("sparse-z1", "smallest-z1", "bytedelta-z1"):
        assert delta_codec in (Codec.SPARSE_GAPS, Codec.SPARSE_BITMAP)


def test_byte_delta_compresses_smooth_images_well() -> None:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    base = np.stack([128 + 100 * np.sin(x / 53) * np.cos(y / 71), x, 255 - (x + y) / 2], -1)
    image = np.clip(np.rint(base + rng.normal(0, 2.0, base.shape)), 0, 255).astype(np.uint8)
    (frame,) = TensorEncoder(1, arm=next(a for a in ARMS if a.name == "bytedelta-z1")).encode(image)
    header = read_header(frame)
    assert isinstance(header, KeyframeHeader) and header.codec is Codec.BYTE_DELTA_ZSTD
    assert image.nbytes / len(frame) >= 1.8
    assert stride_for(image.shape) == 3


@FAST
@given(
    planes=hnp.arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(0, 50))),
    stride=st.integers(1, 60),
)
def test_byte_delta_filter_is_inverted_exactly(planes: npt.NDArray[np.uint8], stride: int) -> None:
    assert np.array_equal(undo_byte_delta(byte_delta(planes, stride), stride), planes)


def _delta(codec: Codec, payload: bytes) -> bytes:
    return pack_delta(1, 1, 0, codec, Precision.EXACT, payload, epoch=7)


def test_a_delta_with_the_keyframe_only_codec_is_refused() -> None:
    with pytest.raises(TensorFrameError, match="not valid in a delta"):
        read_header(_delta(Codec.BYTE_DELTA_ZSTD, b"\x01\x00\x00\x00"))


def _keyframe(codec: Codec, payload: bytes, shape: tuple[int, ...] = (8,)) -> bytes:
    return pack_keyframe(1, 0, codec, Precision.EXACT, False, 3, 0, shape, payload, epoch=7)


@pytest.mark.parametrize(
    ("codec", "payload", "match"),
    [
        (Codec.SHUFFLE_LZ4, b"\xff\xff\xff", "LZ4"),
        (Codec.ZSTD, b"not zstd", "zstd"),
        (Codec.BYTE_DELTA_ZSTD, b"\x00\x00", "stride"),
        (Codec.BYTE_DELTA_ZSTD, b"\x00\x00\x00\x00", "stride"),
        (Codec.BYTE_DELTA_ZSTD, b"\x09\x00\x00\x00", "stride"),
    ],
)
def test_corrupt_payloads_of_the_new_codecs_are_frame_errors(
    codec: Codec, payload: bytes, match: str
) -> None:
    dec = TensorDecoder(1)
    with pytest.raises(TensorFrameError, match=match):
        dec.feed(_keyframe(codec, payload))
    assert dec.current() is None


def test_lz4_payload_expanding_to_another_size_is_refused() -> None:
    import lz4.block

    payload = lz4.block.compress(bytes(16), store_size=False)  # 16 bytes, header says 8
    with pytest.raises(TensorFrameError):
        TensorDecoder(1).feed(_keyframe(Codec.SHUFFLE_LZ4, payload))


def test_crc_still_covers_the_new_codecs() -> None:
    frame = bytearray(_keyframe(Codec.RAW, bytes(range(8))))
    assert crc_of(frame) == int.from_bytes(frame[16:20], "little")
