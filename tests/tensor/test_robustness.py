"""Hostile input: anything that is not a valid frame raises the documented error type, nothing
is allocated or decompressed beyond the limits, and the decoder keeps its state."""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frys.shared.tensor import (
    ChunkHeader,
    Codec,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorError,
    TensorFrameError,
    TensorGapError,
    TensorLimitError,
    TensorLimits,
    TensorReplica,
    read_header,
    split_frame,
)
from frys.shared.tensor.frame import HEADER_SIZE, Kind, crc_of, pack_delta, pack_keyframe

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
MIB = 1 << 20
EPOCH = 0x5EED0003
"""Epoch of the publisher in :func:`stream`, so that forged deltas can name its state."""


def reseal(frame: bytes) -> bytes:
    """The frame with a correct CRC, so checks past the CRC are exercised."""
    out = bytearray(frame)
    if len(out) >= HEADER_SIZE:
        struct.pack_into("<I", out, 16, crc_of(out))
    return bytes(out)


def stream(
    decoder: type[TensorDecoder] = TensorDecoder,
) -> tuple[TensorEncoder, TensorDecoder, list[bytes], list[npt.NDArray[Any]]]:
    """A decoder (or replica) part way through a stream, and the frames that got it there."""
    rng = np.random.default_rng(7)
    enc, dec = TensorEncoder(3, epoch=EPOCH), decoder(3)
    values = [rng.standard_normal((40, 30)).astype(np.float32)]
    frames = [enc.encode(values[0])[0]]
    for fraction in (0.01, 0.3, 1.0):
        nxt = values[-1].copy()
        idx = rng.choice(nxt.size, int(nxt.size * fraction), replace=False)
        nxt.flat[idx] += np.float32(0.5)
        values.append(nxt)
        frames.append(enc.encode(nxt)[0])
    for frame in frames:
        dec.feed(frame)
    return enc, dec, frames, values


def snapshot(dec: TensorDecoder) -> tuple[Any, ...]:
    """Everything a decoder holds; for a replica, also the keyframe it serves (which it then
    keeps as its latest, so that is read second)."""
    value = dec.current()
    served = (dec.keyframe(), dec.latest_keyframe) if isinstance(dec, TensorReplica) else None
    held = None if value is None else value.tobytes()
    return dec.epoch, dec.sequence, dec.describe(), dec.representation, held, served


def assert_still_usable(dec: TensorDecoder, enc: TensorEncoder, before: Any) -> None:
    assert snapshot(dec) == before
    value = dec.current()
    assert value is not None
    nxt = value.copy()
    nxt.flat[0] += 1
    assert dec.feed(enc.encode(nxt)[0]).tobytes() == nxt.tobytes()


@SETTINGS
@given(
    st.binary(max_size=300),
    st.sampled_from([b"", b"\xf2", b"\xf2\x01", b"\xf2\x02", b"\xf2\x03", b"\xf1\x01"]),
)
def test_arbitrary_bytes_only_raise_the_documented_error(junk: bytes, prefix: bytes) -> None:
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    with pytest.raises(TensorFrameError):
        dec.feed(prefix + junk)
    assert_still_usable(dec, enc, before)


@st.composite
def forged_frames(draw: st.DrawFn) -> bytes:
    """Frames with a valid CRC and plausible headers around arbitrary or zstd payloads."""
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        body = zstandard.ZstdCompressor(write_content_size=draw(st.booleans())).compress(body)
    codec = draw(st.integers(0, 6))
    flags = draw(st.sampled_from([0, 1, 2, 3, 4, 8, 0x80]))
    if draw(st.booleans()):
        shape = tuple(draw(st.lists(st.integers(0, 70), max_size=3)))
        dtype_code = draw(st.integers(0, 16))
        exponent = draw(st.sampled_from([0, -3, 2000]))
        frame = pack_keyframe(
            3, 9, Codec.RAW, Precision.EXACT, False, 1, 0, shape, body, epoch=EPOCH
        )
        head = bytearray(frame)
        head[2], head[3], head[12] = codec, flags, dtype_code
        struct.pack_into("<h", head, 14, exponent)
        return reseal(bytes(head))
    epoch = draw(st.sampled_from([EPOCH, EPOCH ^ 1]))
    delta = bytearray(pack_delta(3, 4, 3, Codec.RAW, Precision.EXACT, body, epoch=epoch))
    delta[2], delta[3] = codec, flags
    return reseal(bytes(delta))


@SETTINGS
@given(forged_frames())
def test_forged_frames_raise_only_tensor_errors_and_keep_state(frame: bytes) -> None:
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    try:
        out = dec.feed(frame)
    except TensorError:
        assert_still_usable(dec, enc, before)
        return
    # A forged frame that happens to be valid: the decoder must still be coherent.
    assert dec.sequence == read_header(frame).sequence
    assert isinstance(out, np.ndarray)
    resync = np.arange(5.0)
    assert dec.feed(enc.encode(resync, keyframe=True)[0]).tobytes() == resync.tobytes()


def test_every_single_byte_corruption_is_detected() -> None:
    _enc, _dec, frames, _ = stream()
    target = TensorDecoder(3)
    target.feed(frames[0])
    for frame in [*frames[1:], frames[0]]:
        before = snapshot(target)
        for pos in range(len(frame)):
            bad = bytearray(frame)
            bad[pos] ^= 0x41
            with pytest.raises(TensorFrameError):
                target.feed(bytes(bad))
            assert snapshot(target) == before
        target.feed(frame)


def test_truncated_frames_are_rejected_at_every_length() -> None:
    _enc, _dec, frames, _ = stream()
    target = TensorDecoder(3)
    target.feed(frames[0])
    for frame in frames[1:]:
        before = snapshot(target)
        for cut in range(len(frame)):
            with pytest.raises(TensorFrameError):
                target.feed(frame[:cut])
        assert snapshot(target) == before
        target.feed(frame)


def test_each_codec_was_exercised_by_the_corruption_tests() -> None:
    _, _, frames, _ = stream()
    assert [codec_of(f) for f in frames] == [
        Codec.SHUFFLE_ZSTD,
        Codec.SPARSE_GAPS,
        Codec.SPARSE_BITMAP,
        Codec.SHUFFLE_ZSTD,
    ]


def codec_of(frame: bytes) -> Codec:
    header = read_header(frame)
    assert not isinstance(header, ChunkHeader)
    return header.codec


def peak_while(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def forged_keyframe(
    shape: tuple[int, ...], payload: bytes, codec: Codec = Codec.RAW, code: int = 12
) -> bytes:
    return pack_keyframe(3, 50, codec, Precision.EXACT, False, code, 0, shape, payload, epoch=EPOCH)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ((1 << 16, 1 << 16), "elements exceed"),
        ((1 << 20, 16), "bytes exceed"),
        ((1,) * 33, "dimensions exceed"),
    ],
)
def test_oversized_headers_fail_before_any_allocation(shape: tuple[int, ...], reason: str) -> None:
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    frame = forged_keyframe(shape, b"\0" * 64)

    def feed() -> None:
        with pytest.raises(TensorLimitError, match=reason):
            dec.feed(frame)

    assert peak_while(feed) < 64 * 1024
    assert_still_usable(dec, enc, before)


def test_decompression_bomb_is_refused_from_the_zstd_header() -> None:
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(32 * MIB))
    assert len(bomb) < 4096
    keyframe = forged_keyframe((16,), bomb, Codec.SHUFFLE_ZSTD, code=3)
    base = dec.sequence or 0
    delta = pack_delta(3, 99, base, Codec.SPARSE_BITMAP, Precision.EXACT, bomb, epoch=EPOCH)
    dense = pack_delta(3, 99, base, Codec.SHUFFLE_ZSTD, Precision.EXACT, bomb, epoch=EPOCH)

    def feed() -> None:
        for frame in (keyframe, delta, dense):
            with pytest.raises(TensorLimitError, match="expand"):
                dec.feed(frame)

    assert peak_while(feed) < 256 * 1024
    assert_still_usable(dec, enc, before)


def test_zstd_payload_must_declare_its_size_and_match_it() -> None:
    enc, dec, _, _ = stream()
    snapshot(dec)
    data = bytes(range(64)) * 4
    cctx = zstandard.ZstdCompressor()
    cases = [
        ((32,), zstandard.ZstdCompressor(write_content_size=False).compress(data), "declare"),
        ((40,), cctx.compress(data), "at least"),
        ((32,), cctx.compress(data) + b"\0", "corrupt zstd"),
        ((32,), cctx.compress(data)[:-3], "corrupt zstd"),
        ((32,), b"\x28\xb5\x2f\xfd" + b"\xff" * 8, "zstd"),
    ]
    for shape, payload, reason in cases:
        with pytest.raises(TensorFrameError, match=reason):
            dec.feed(forged_keyframe(shape, payload, Codec.SHUFFLE_ZSTD))
    dec.feed(forged_keyframe((32,), cctx.compress(data), Codec.SHUFFLE_ZSTD))  # the control
    assert dec.sequence == 50
    dec.feed(enc.encode(np.zeros(1), keyframe=True)[0])


def test_frames_over_the_size_limit_are_refused_unread() -> None:
    limits = TensorLimits(max_bytes=4096, max_frame_bytes=1024)
    a = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)
    frame = TensorEncoder(1, limits=TensorLimits()).encode(a)[0]
    dec = TensorDecoder(1, limits=limits)
    with pytest.raises(TensorLimitError, match="frame exceeds"):
        dec.feed(frame)
    assert dec.sequence is None
    with pytest.raises(ValueError, match="exceed"):
        TensorEncoder(1, limits=TensorLimits(max_bytes=1000)).encode(a)


def test_encoder_limit_errors_leave_it_unchanged() -> None:
    enc = TensorEncoder(1, limits=TensorLimits(max_elements=100))
    dec = TensorDecoder(1)
    dec.feed(enc.encode(np.zeros(10))[0])
    with pytest.raises(ValueError, match="elements exceed"):
        enc.encode(np.zeros(101))
    with pytest.raises(TypeError):
        enc.encode(np.array(["x"]))
    frame = enc.encode(np.ones(10))[0]
    assert read_header(frame).sequence == 1
    assert dec.feed(frame).tolist() == [1.0] * 10


def test_gap_is_typed_and_resync_recovers() -> None:
    enc, _dec, frames, values = stream()
    late = TensorDecoder(3)
    with pytest.raises(TensorGapError) as none_yet:
        late.feed(frames[1])
    assert none_yet.value.held is None
    assert none_yet.value.base == 0
    late.feed(frames[0])
    with pytest.raises(TensorGapError) as gap:
        late.feed(frames[2])
    assert (gap.value.held, gap.value.base) == (0, 1)
    assert late.sequence == 0
    assert late.feed(frames[1]).tobytes() == values[1].tobytes()
    assert late.feed(frames[2]).tobytes() == values[2].tobytes()
    with pytest.raises(TensorGapError):
        late.feed(frames[2])  # a replayed delta no longer applies
    resync = enc.encode(values[3], keyframe=True)[0]
    assert late.feed(resync).tobytes() == values[3].tobytes()


def test_frames_of_other_streams_and_chunks_are_refused() -> None:
    _enc, dec, frames, _ = stream()
    before = snapshot(dec)
    other = TensorEncoder(4).encode(np.zeros(3))[0]
    with pytest.raises(TensorFrameError, match="stream 4"):
        dec.feed(other)
    chunk = split_frame(frames[0], 256)[0]
    assert isinstance(read_header(chunk), ChunkHeader)
    with pytest.raises(TensorFrameError, match="reassemble"):
        dec.feed(chunk)
    assert snapshot(dec) == before


def test_header_fields_are_validated() -> None:
    dec = TensorDecoder()
    good = TensorEncoder(1).encode(np.zeros((2, 2), np.int16))[0]
    cases = {
        "version 1": (0, 0xF1),
        "version 3": (0, 0xF3),
        "not a tensor frame": (0, 0x01),
        "kind": (1, 9),
        "codec": (2, 9),
        "reserved flag": (3, 0x10),
        "precision FLOAT16": (3, 1),
        "dtype code": (12, 99),
        "not quantised": (14, 1),
    }
    for reason, (pos, value) in cases.items():
        bad = bytearray(good)
        bad[pos] = value
        with pytest.raises(TensorFrameError, match=reason):
            dec.feed(reseal(bytes(bad)))
    assert int(Kind.KEYFRAME) == good[1]


@pytest.mark.parametrize(
    ("codec", "body", "reason"),
    [
        (Codec.SPARSE_BITMAP, b"\x01\x04" + b"\x07\x07", "past the end"),
        (Codec.SPARSE_BITMAP, b"\x00\x00" + b"\x07", "marks no element"),
        (Codec.SPARSE_BITMAP, b"\x03\x00" + b"\x07", "value bytes for 2 elements"),
        (Codec.SPARSE_GAPS, b"\x02\x00\x00\x00\x00\xff" + b"\x07", "must end"),
        (Codec.SPARSE_GAPS, b"\x01\x00\x00\x00\x14" + b"\x07", "reaches element 20"),
        (Codec.SPARSE_GAPS, b"\x64\x00\x00\x00\x00" + b"\x07", "runs past"),
        (Codec.UNCHANGED, None, "UNCHANGED delta with a payload"),
        (Codec.RAW, b"\x00" * 9, "raw payload has 9 bytes"),
    ],
)
def test_inconsistent_sparse_payloads_are_rejected(
    codec: Codec, body: bytes | None, reason: str
) -> None:
    enc, dec = TensorEncoder(2), TensorDecoder(2)
    dec.feed(enc.encode(np.zeros(10, np.uint8))[0])
    payload = b"\x07" if body is None else body
    if codec in (Codec.SPARSE_BITMAP, Codec.SPARSE_GAPS):
        payload = zstandard.ZstdCompressor().compress(body or b"")
    with pytest.raises(TensorFrameError, match=reason):
        dec.feed(pack_delta(2, 1, 0, codec, Precision.EXACT, payload, epoch=enc.epoch))
    assert dec.sequence == 0
    good = np.zeros(10, np.uint8)
    good[9] = 1
    assert dec.feed(enc.encode(good)[0]).tolist() == good.tolist()


REPRODUCTION = bytes.fromhex("f101000001000000050000000b0300008cde47d000000000ffffffffffffffff")
"""A version 1 keyframe of float32, shape [0, 2**32 - 1, 2**32 - 1]: no elements, but no array."""


def keyframe_of_shape(shape: tuple[int, ...], code: int = 11) -> bytes:
    return pack_keyframe(3, 5, Codec.RAW, Precision.EXACT, False, code, 0, shape, b"", epoch=1)


@pytest.mark.parametrize("decoder", [TensorDecoder, TensorReplica])
def test_zero_dimension_does_not_hide_huge_ones(decoder: type[TensorDecoder]) -> None:
    enc, dec, _, _ = stream(decoder)
    before = snapshot(dec)
    for frame in (REPRODUCTION, keyframe_of_shape((0, 0xFFFFFFFF, 0xFFFFFFFF))):
        with pytest.raises(TensorError):
            dec.feed(frame)
        assert snapshot(dec) == before
    assert_still_usable(dec, enc, before)


@pytest.mark.parametrize(
    ("shape", "code", "reason"),
    [
        ((0, 0xFFFFFFFF, 0xFFFFFFFF), 11, "elements exceed"),
        ((0xFFFFFFFF, 0), 3, "elements exceed"),
        ((0, (1 << 26) + 1), 1, "elements exceed"),
        ((1 << 13, 0, 1 << 13, 2), 3, "elements exceed"),
        ((0, 1 << 24, 2), 12, "bytes exceed"),
        ((0,) * 65, 3, "dimensions exceed"),
    ],
)
def test_shape_limits_count_the_non_zero_dimensions(
    shape: tuple[int, ...], code: int, reason: str
) -> None:
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    limits = TensorLimits(max_ndim=255)  # numpy's own maximum still applies
    for target in (dec, TensorDecoder(3, limits=limits), TensorReplica(3)):
        with pytest.raises(TensorLimitError, match=reason):
            target.feed(keyframe_of_shape(shape, code))
    assert_still_usable(dec, enc, before)


def test_empty_arrays_within_the_limits_still_travel() -> None:
    enc, dec = TensorEncoder(3), TensorDecoder(3)
    for shape in [(0,), (0, 5), (3, 0, 1 << 20), (0, 1 << 26)]:
        value = np.zeros(shape, np.uint8)
        out = dec.feed(enc.encode(value)[0])
        assert out.shape == shape
    assert dec.feed(enc.encode(np.zeros((0, 1 << 26), np.uint8))[0]).shape == (0, 1 << 26)


def test_encoder_refuses_what_a_decoder_would() -> None:
    enc = TensorEncoder(3)
    for value in (np.empty((0, (1 << 26) + 1), np.uint8), np.empty((0, 1 << 24, 2), np.float64)):
        with pytest.raises(ValueError, match="exceed"):
            enc.encode(value)
    assert enc.sequence is None


def zstd_with_window(data: bytes, window_log: int) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=window_log, write_content_size=1
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def test_zstd_window_over_8_mib_is_refused_before_decompressing() -> None:
    size = 16 * MIB + 1
    data = bytes(size)
    wide, narrow = zstd_with_window(data, 24), zstd_with_window(data, 23)
    assert zstandard.get_frame_parameters(wide).window_size == 16 * MIB
    assert zstandard.get_frame_parameters(narrow).window_size == 8 * MIB
    enc, dec, _, _ = stream()
    before = snapshot(dec)
    refused = forged_keyframe((size,), wide, Codec.SHUFFLE_ZSTD, code=3)

    def feed_keyframe() -> None:
        with pytest.raises(TensorLimitError, match="window"):
            dec.feed(refused)

    assert peak_while(feed_keyframe) < 256 * 1024
    assert_still_usable(dec, enc, before)
    # The same content within the window decodes; a delta needing the wide window does not.
    dec.feed(forged_keyframe((size,), narrow, Codec.SHUFFLE_ZSTD, code=3))
    assert dec.sequence == 50
    delta = pack_delta(3, 51, 50, Codec.SHUFFLE_ZSTD, Precision.EXACT, wide, epoch=EPOCH)
    with pytest.raises(TensorLimitError, match="window"):
        dec.feed(delta)
    assert dec.sequence == 50
    accepted = pack_delta(3, 51, 50, Codec.SHUFFLE_ZSTD, Precision.EXACT, narrow, epoch=EPOCH)
    assert dec.feed(accepted).shape == (size,)


DIMS = st.sampled_from([0, 0, 1, 2, 3, 7, 70, 1 << 16, (1 << 26) + 1, 1 << 31, 0xFFFFFFFF])


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Mostly well-formed headers around hostile fields and payloads, sometimes mangled."""
    kind = draw(st.sampled_from(["keyframe", "keyframe", "delta", "delta", "junk"]))
    body = draw(st.binary(max_size=120))
    if draw(st.booleans()):
        body = zstandard.ZstdCompressor(write_content_size=draw(st.booleans())).compress(body)
    epoch = draw(st.sampled_from([EPOCH, EPOCH, 0, EPOCH ^ 0x80000000]))
    codec = draw(st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5]))
    precision = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
    if kind == "junk":
        frame = draw(st.sampled_from([b"", b"\xf1", b"\xf2", b"\xf2\x01", b"\xf2\x02"])) + body
    elif kind == "keyframe":
        shape = tuple(draw(st.lists(DIMS, max_size=4)))
        code = draw(st.sampled_from([1, 3, 4, 11, 12, 13, 14, 0, 15]))
        fortran = draw(st.booleans()) and len(shape) > 1
        frame = pack_keyframe(
            3, draw(st.integers(0, 9)), Codec.RAW, Precision.EXACT, fortran, code, 0, shape, body,
            epoch=epoch,
        )  # fmt: skip
        head = bytearray(frame)
        head[2], head[3] = codec, precision | (head[3] & 0x04)
        if precision == Precision.QUANTIZED:
            struct.pack_into("<h", head, 14, draw(st.sampled_from([-3, 0, 2000])))
        frame = bytes(head)
    else:
        base = draw(st.sampled_from([3, 3, 2, 4]))
        frame = pack_delta(3, 4, base, Codec.RAW, Precision.EXACT, body, epoch=epoch)
        head = bytearray(frame)
        head[2], head[3] = codec, precision
        frame = bytes(head)
    frame = reseal(frame) if draw(st.booleans()) or kind == "junk" else frame
    if frame and draw(st.integers(0, 3)) == 0:
        mangled = bytearray(frame)
        mangled[draw(st.integers(0, len(frame) - 1))] ^= draw(st.integers(1, 255))
        frame = bytes(mangled)
    return frame


@SETTINGS
@given(st.lists(hostile_frames(), min_size=1, max_size=4), st.booleans())
def test_hostile_frames_raise_only_tensor_errors_and_keep_state(
    frames: list[bytes], replica: bool
) -> None:
    """Whatever the bytes, a decoder or relay replica raises only ``TensorError`` and keeps
    exactly what it held; whatever it accepts leaves it coherent and resynchronisable."""
    enc, dec, _, _ = stream(TensorReplica if replica else TensorDecoder)
    for frame in frames:
        before = snapshot(dec)
        try:
            dec.feed(frame)
        except TensorError:
            assert snapshot(dec) == before
            continue
        header = read_header(frame)
        assert dec.sequence == header.sequence
        snapshot(dec)  # the state accepted is a usable array
    resync = np.arange(5.0)
    assert dec.feed(enc.encode(resync, keyframe=True)[0]).tobytes() == resync.tobytes()
    assert_still_usable(dec, enc, snapshot(dec))
