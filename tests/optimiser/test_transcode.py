"""Re-encoded tensor frames leave a reader with exactly the state the publisher's frames
would, whatever mix of re-encoded and relayed frames it gets."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.transcode import FrameTranscoder
from frys.shared.tensor import TensorDecoder, TensorEncoder, read_header, split_frame


def counting_clock() -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: next(ticks) * 1e-5


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64", "complex64"]),
    link=st.sampled_from(list(LinkClass)),
    relayed=st.lists(st.booleans(), min_size=30, max_size=30),
    seed=st.integers(0, 1000),
)
def test_any_mix_of_reencoded_and_relayed_frames_decodes_exactly(
    dtype: str, link: LinkClass, relayed: list[bool], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    state = (rng.standard_normal((24, 16)) * 50).astype(dtype)
    enc = TensorEncoder(2)
    trans = FrameTranscoder(link, CostWeights(), seed=seed, clock=counting_clock())
    dec = TensorDecoder(2)
    for i, as_is in enumerate(relayed):
        if i:
            state = state.copy()
            flat = state.reshape(-1)
            k = int(rng.integers(0, flat.size if i % 7 == 0 else 8))
            flat[rng.choice(flat.size, k, replace=False)] += 1
        (frame,) = enc.encode(state)
        other = trans.transcode(frame)
        out = dec.feed(frame if as_is or other is None else other)
        assert out.tobytes() == state.tobytes()


def test_a_slow_link_gets_smaller_frames_and_chunks_pass_through() -> None:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:128, 0:128]
    image = np.stack([x, y, x + y], -1).astype(np.uint8)
    trans = FrameTranscoder(LinkClass.SLOW, CostWeights(), seed=1, clock=counting_clock())
    enc = TensorEncoder(5)
    sizes = []
    for _ in range(40):
        noisy = np.clip(image + rng.integers(-2, 3, image.shape), 0, 255).astype(np.uint8)
        (frame,) = enc.encode(noisy, keyframe=True)
        out = trans.transcode(frame)
        sizes.append((len(frame), len(out) if out is not None else len(frame)))
    assert trans.arm == "bytedelta-z1"
    assert sum(b for _, b in sizes[-10:]) < 0.8 * sum(a for a, _ in sizes[-10:])
    (big,) = TensorEncoder(5).encode(rng.standard_normal(300_000).astype(np.float32))
    for chunk in split_frame(big, 1 << 18):
        assert trans.transcode(chunk) is None
    assert trans.describe()["passed_through"] >= 1
    assert read_header(big).stream_id == 5
