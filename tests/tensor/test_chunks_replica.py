"""Chunked delivery and relay replicas: interleaving, limits, eviction, late joiners."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    ChunkLimits,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorFrameError,
    TensorGapError,
    TensorLimitError,
    TensorReplica,
    read_header,
    split_frame,
)
from frys.shared.tensor.frame import pack_chunk

SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def noise(size: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def test_encoder_chunks_large_frames_within_the_chunk_size() -> None:
    enc = TensorEncoder(8, chunk_size=1000)
    frames = enc.encode(noise(10_000))
    assert len(frames) == 11
    assert all(len(f) <= 1000 for f in frames)
    headers = [read_header(f) for f in frames]
    assert all(isinstance(h, ChunkHeader) for h in headers)
    assembler, dec = ChunkAssembler(), TensorDecoder(8)
    whole = [assembler.feed(f, now=0.0) for f in frames]
    assert whole[:-1] == [None] * 10
    frame = whole[-1]
    assert frame is not None
    assert dec.feed(frame).tobytes() == noise(10_000).tobytes()
    assert assembler.pending == 0
    assert assembler.pending_bytes == 0


def test_a_frame_needing_too_many_chunks_leaves_the_encoder_unchanged() -> None:
    enc, dec = TensorEncoder(1, chunk_size=64), TensorDecoder(1)
    small = noise(10)
    frames = enc.encode(small)
    assert len(frames) == 1
    dec.feed(frames[0])
    with pytest.raises(ValueError, match="chunks"):
        enc.encode(noise(3_000_000))
    assert enc.sequence == 0
    nxt = small.copy()
    nxt[3] ^= 1
    assert dec.feed(enc.encode(nxt)[0]).tobytes() == nxt.tobytes()


def test_small_frames_travel_whole() -> None:
    frame = TensorEncoder(1).encode(np.zeros(3))[0]
    assert len(frame) <= 64
    assert split_frame(frame, 64) == [frame]
    assert TensorEncoder(1, chunk_size=1 << 20, epoch=9).encode(noise(5000)) == [
        TensorEncoder(1, epoch=9).encode(noise(5000))[0]
    ]


@SETTINGS
@given(
    st.lists(st.integers(100, 3000), min_size=1, max_size=4),
    st.integers(64, 700),
    st.randoms(use_true_random=False),
)
def test_interleaved_and_duplicated_chunks_reassemble(
    sizes: list[int], chunk_size: int, random: Any
) -> None:
    """Chunks of several streams' frames, shuffled and partly repeated, all come out whole."""
    originals: dict[int, bytes] = {}
    chunks: list[bytes] = []
    for stream, size in enumerate(sizes):
        frame = TensorEncoder(stream).encode(noise(size, stream))[0]
        originals[stream] = frame
        parts = split_frame(frame, chunk_size)
        assert all(len(p) <= chunk_size for p in parts)
        chunks += parts + random.sample(parts, k=min(2, len(parts)))
    random.shuffle(chunks)
    assembler = ChunkAssembler()
    done: dict[int, bytes] = {}
    for chunk in chunks:
        header = read_header(chunk)
        out = assembler.feed(chunk, now=1.0) if isinstance(header, ChunkHeader) else chunk
        if out is not None:
            stream = read_header(out).stream_id
            if stream in done:  # a duplicate of a whole frame, or chunks repeated after it
                assert out == done[stream]
            done[stream] = out
    assert done == originals


def test_incomplete_sets_time_out() -> None:
    assembler = ChunkAssembler(ChunkLimits(timeout=5.0))
    a, b = (split_frame(TensorEncoder(s).encode(noise(2000, s))[0], 500) for s in (1, 2))
    assert assembler.feed(a[0], now=0.0) is None
    assert assembler.feed(b[0], now=3.0) is None
    assert assembler.pending == 2
    assert assembler.expire(now=5.0) == 1
    assert assembler.pending == 1
    for chunk in a[1:]:  # the set restarted: its first chunk is gone for good
        assert assembler.feed(chunk, now=5.5) is None
    out = None
    for chunk in b[1:]:
        out = assembler.feed(chunk, now=6.0)
    assert out is not None
    assert read_header(out).stream_id == 2
    assert assembler.evicted == 1


def test_oldest_sets_are_evicted_to_respect_the_limits() -> None:
    assembler = ChunkAssembler(ChunkLimits(max_pending_sets=2, max_pending_bytes=5000))
    sets = [split_frame(TensorEncoder(s).encode(noise(2000, s))[0], 500) for s in range(4)]
    for t, parts in enumerate(sets):
        assembler.feed(parts[0], now=float(t))
        assert assembler.pending <= 2
        assert assembler.pending_bytes <= 5000
    assert assembler.evicted == 2
    out = None
    for chunk in sets[3][1:]:
        out = assembler.feed(chunk, now=4.0)
    assert out is not None
    assert assembler.feed(sets[0][1], now=4.0) is None  # evicted: starts over, incomplete


def test_bad_chunks_are_refused_and_leave_pending_sets_alone() -> None:
    assembler = ChunkAssembler(ChunkLimits(max_frame_bytes=10_000, max_pending_bytes=20_000))
    parts = split_frame(TensorEncoder(1).encode(noise(3000))[0], 400)
    assembler.feed(parts[0], now=0.0)
    header = read_header(parts[1])
    assert isinstance(header, ChunkHeader)
    bad = [
        (pack_chunk(1, 0, 0, 2, 0, 20_001, b"x" * 10_001), TensorLimitError),
        (pack_chunk(1, 0, 0, 2, 0, 1 << 31, b"x"), TensorLimitError),
        (parts[1][:-1], TensorFrameError),
        (pack_chunk(1, 0, 2, 2, 0, 100, b"x" * 50), TensorFrameError),
        (pack_chunk(1, 0, 0, 5, 0, 4, b"x"), TensorFrameError),
        (TensorEncoder(1).encode(np.zeros(3))[0], TensorFrameError),
        (b"\xf1\x03" + bytes(30), TensorFrameError),
    ]
    for chunk, error in bad:
        with pytest.raises(error):
            assembler.feed(chunk, now=1.0)
    assert assembler.pending == 1
    out = None
    for chunk in parts[1:]:
        out = assembler.feed(chunk, now=2.0)
    assert out is not None
    assert TensorDecoder(1).feed(out).tobytes() == noise(3000).tobytes()


def test_mixed_up_chunk_sets_never_yield_a_wrong_frame() -> None:
    """Two different frames with the same stream and sequence are kept apart by their CRC."""
    one = split_frame(TensorEncoder(1).encode(noise(3000, 1))[0], 500)
    two = split_frame(TensorEncoder(1).encode(noise(3000, 2))[0], 500)
    assembler = ChunkAssembler()
    outs = [assembler.feed(c, now=0.0) for pair in zip(one, two, strict=True) for c in pair]
    whole = [o for o in outs if o is not None]
    assert len(whole) == 2
    assert {TensorDecoder(1).feed(w).tobytes() for w in whole} == {
        noise(3000, 1).tobytes(),
        noise(3000, 2).tobytes(),
    }


def ticks(count: int) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(11)
    state = rng.standard_normal((32, 16)).astype(np.float32)
    out = [state]
    for _ in range(count - 1):
        state = state.copy()
        state.flat[rng.choice(state.size, 20, replace=False)] += np.float32(0.25)
        out.append(state)
    return out


def test_replica_resynchronises_late_joiners_and_slow_subscribers() -> None:
    values = ticks(10)
    enc, replica = TensorEncoder(6), TensorReplica(6)
    slow = TensorDecoder(6)
    assert replica.keyframe() is None
    frames = [enc.encode(v)[0] for v in values]
    for i, frame in enumerate(frames[:6]):
        replica.apply(frame)
        if i < 3:
            slow.feed(frame)
    # A late joiner starts from the replica's keyframe, then follows the publisher.
    keyframe = replica.keyframe()
    assert keyframe is not None
    late = TensorDecoder(6)
    assert late.feed(keyframe).tobytes() == values[5].tobytes()
    # The slow subscriber missed frames 3-5: a gap, then the same remedy.
    with pytest.raises(TensorGapError):
        slow.feed(frames[6])
    slow.feed(keyframe)
    for frame, value in zip(frames[6:], values[6:], strict=True):
        replica.apply(frame)
        assert late.feed(frame).tobytes() == value.tobytes()
        assert slow.feed(frame).tobytes() == value.tobytes()


def test_replica_keeps_the_latest_keyframe() -> None:
    values = ticks(4)
    enc, replica = TensorEncoder(6), TensorReplica(6)
    first = enc.encode(values[0])[0]
    replica.apply(first)
    assert replica.latest_keyframe == first
    assert replica.keyframe() == first  # nothing applied since: the received one is current
    replica.apply(enc.encode(values[1])[0])
    assert replica.latest_keyframe == first
    made = replica.keyframe()
    assert made is not None
    assert made != first
    assert replica.latest_keyframe == made
    assert replica.keyframe() is made
    header = read_header(made)
    assert header.sequence == 1
    assert TensorDecoder().feed(made).tobytes() == values[1].tobytes()
    forced = enc.encode(values[2], keyframe=True)[0]
    replica.apply(forced)
    assert replica.latest_keyframe == forced


def test_replica_keyframe_keeps_fortran_order_and_lossy_flags() -> None:
    value = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4) / 7)
    enc = TensorEncoder(2, precision=Precision.BFLOAT16)
    replica = TensorReplica(2)
    replica.apply(enc.encode(value)[0])
    replica.apply(enc.encode(value * 2)[0])
    keyframe = replica.keyframe()
    assert keyframe is not None
    dec = TensorDecoder()
    out = dec.feed(keyframe)
    assert out.flags.f_contiguous
    rep = dec.representation
    assert rep is not None
    assert rep.precision is Precision.BFLOAT16
    direct = TensorDecoder().feed(
        TensorEncoder(2, precision=Precision.BFLOAT16).encode(value * 2)[0]
    )
    assert out.tobytes() == direct.tobytes()
