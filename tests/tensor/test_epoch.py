"""Encoder epochs: a delta applies only to the state of the encoder instance that wrote it.

Sequences restart with a new encoder instance and collide between two instances of one stream
id, so a delta matched by sequence alone would apply to another encoder's state and corrupt
every element it touches. With the epoch, such a delta is a gap and nothing changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    DeltaHeader,
    KeyframeHeader,
    TensorDecoder,
    TensorEncoder,
    TensorGapError,
    TensorReplica,
    read_header,
)

STREAM = 5


def state(seed: int) -> npt.NDArray[np.float32]:
    """A 65,536-element state, different for every seed."""
    return np.random.default_rng(seed).standard_normal((256, 256)).astype(np.float32)


def changed(value: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    out = value.copy()
    out.flat[np.random.default_rng(seed).choice(out.size, 100, replace=False)] += 1
    return out


def only(frames: list[bytes]) -> bytes:
    assert len(frames) == 1
    return frames[0]


def snapshot(dec: TensorDecoder) -> tuple[Any, ...]:
    value = dec.current()
    return dec.epoch, dec.sequence, None if value is None else value.tobytes()


@pytest.mark.parametrize("decoder", [TensorDecoder, TensorReplica])
def test_delta_of_another_encoder_on_the_same_stream_is_a_gap(
    decoder: type[TensorDecoder],
) -> None:
    a, b = TensorEncoder(STREAM), TensorEncoder(STREAM)
    assert a.epoch != b.epoch
    dec = decoder(STREAM)
    x = state(1)
    dec.feed(only(a.encode(x)))
    only(b.encode(state(2)))  # B's own keyframe, sequence 0 too: not delivered here
    foreign = only(b.encode(changed(state(2), 3)))
    header = read_header(foreign)
    assert isinstance(header, DeltaHeader)
    assert (header.base, dec.sequence) == (0, 0)
    before = snapshot(dec)
    with pytest.raises(TensorGapError, match="resync needed") as gap:
        dec.feed(foreign)
    assert (gap.value.held, gap.value.base) == (0, 0)
    assert (gap.value.held_epoch, gap.value.epoch) == (a.epoch, b.epoch)
    assert snapshot(dec) == before
    nxt = changed(x, 4)
    assert dec.feed(only(a.encode(nxt))).tobytes() == nxt.tobytes()


@pytest.mark.parametrize("decoder", [TensorDecoder, TensorReplica])
def test_delta_of_a_restarted_encoder_is_refused(decoder: type[TensorDecoder]) -> None:
    old = TensorEncoder(STREAM)
    dec = decoder(STREAM)
    x = state(5)
    dec.feed(only(old.encode(x)))
    assert dec.sequence == 0
    restarted = TensorEncoder(STREAM)  # sequence 0 again; its keyframe was lost
    y = state(6)
    keyframe = only(restarted.encode(y))
    y2 = changed(y, 7)
    delta = only(restarted.encode(y2))
    before = snapshot(dec)
    with pytest.raises(TensorGapError):
        dec.feed(delta)
    assert snapshot(dec) == before
    assert dec.feed(keyframe).tobytes() == y.tobytes()
    assert dec.epoch == restarted.epoch
    assert dec.feed(delta).tobytes() == y2.tobytes()
    with pytest.raises(TensorGapError):  # and the old instance's deltas no longer apply
        dec.feed(only(old.encode(changed(x, 8))))


def test_every_frame_carries_its_encoder_epoch() -> None:
    enc = TensorEncoder(STREAM, chunk_size=4096)
    assert TensorEncoder(STREAM).epoch != enc.epoch
    frames = [only(enc.encode(state(9)[:4]))]
    frames.append(only(enc.encode(state(10)[:4])))
    enc.reset()  # a reset keeps the instance's epoch: its sequences go on
    frames.append(only(enc.encode(state(11)[:4])))
    for frame in frames:
        header = read_header(frame)
        assert isinstance(header, KeyframeHeader | DeltaHeader)
        assert header.epoch == enc.epoch
    chunks = enc.encode(state(12))
    assert len(chunks) > 1
    assembler, whole = ChunkAssembler(), None
    for chunk in chunks:
        assert isinstance(read_header(chunk), ChunkHeader)
        whole = assembler.feed(chunk, now=0.0)
    assert whole is not None
    header = read_header(whole)
    assert isinstance(header, KeyframeHeader)
    assert header.epoch == enc.epoch


def test_epoch_must_fit_in_32_bits() -> None:
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError, match="epoch"):
            TensorEncoder(STREAM, epoch=bad)
    assert TensorEncoder(STREAM, epoch=0xFFFFFFFF).epoch == 0xFFFFFFFF


def test_relay_keyframe_carries_the_publisher_epoch() -> None:
    """A late joiner resynchronised by a relay follows that publisher, and only it."""
    publisher, other = TensorEncoder(STREAM), TensorEncoder(STREAM)
    replica = TensorReplica(STREAM)
    x = state(13)
    replica.apply(only(publisher.encode(x)))
    x1 = changed(x, 14)
    replica.apply(only(publisher.encode(x1)))
    keyframe = replica.keyframe()
    assert keyframe is not None
    header = read_header(keyframe)
    assert isinstance(header, KeyframeHeader)
    assert (header.epoch, header.sequence) == (publisher.epoch, 1)
    late = TensorDecoder(STREAM)
    assert late.feed(keyframe).tobytes() == x1.tobytes()
    only(other.encode(x))
    foreign = only(other.encode(x1))  # sequence 1 too, but from another epoch
    for target in (late, replica):
        with pytest.raises(TensorGapError):
            target.apply(foreign)
    assert replica.keyframe() is keyframe
    x2 = changed(x1, 15)
    delta = only(publisher.encode(x2))
    replica.apply(delta)
    assert late.feed(delta).tobytes() == x2.tobytes()


def test_relay_follows_a_restarted_publisher() -> None:
    replica = TensorReplica(STREAM)
    first = TensorEncoder(STREAM)
    replica.apply(only(first.encode(state(16))))
    restarted = TensorEncoder(STREAM)
    y = state(17)
    sent = only(restarted.encode(y))
    replica.apply(sent)
    assert replica.keyframe() == sent
    y1 = changed(y, 18)
    replica.apply(only(restarted.encode(y1)))
    made = replica.keyframe()
    assert made is not None
    header = read_header(made)
    assert isinstance(header, KeyframeHeader)
    assert (header.epoch, header.sequence) == (restarted.epoch, 1)
    assert TensorDecoder().feed(made).tobytes() == y1.tobytes()
