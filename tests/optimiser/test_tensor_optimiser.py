"""The per-stream tensor optimiser: lossless whatever it picks, picks well, probes within
its budget."""

from __future__ import annotations

import itertools

import numpy as np

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.tensor import TensorStreamOptimiser
from frys.shared.tensor import TensorDecoder


def sparse_ticks(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((128, 128)).astype(np.float32)
    out = [s]
    for _ in range(n):
        s = s.copy()
        where = rng.choice(s.size, s.size // 50, replace=False)
        s.flat[where] += 1.0
        out.append(s)
    return out


def test_frames_decode_exactly_whatever_the_arm() -> None:
    opt = TensorStreamOptimiser(3, LinkClass.SLOW, CostWeights(), seed=1)
    dec = TensorDecoder(3)
    for value in sparse_ticks(60):
        for frame in opt.encode(value):
            out = dec.feed(frame)
        assert out.tobytes() == value.tobytes()


def test_a_sparse_stream_on_a_slow_link_ends_on_a_sparse_arm() -> None:
    ticks = itertools.count()  # every duration a count of clock readings: no load flakes
    opt = TensorStreamOptimiser(
        3,
        LinkClass.SLOW,
        CostWeights(),
        seed=1,
        initial="raw",
        clock=lambda: next(ticks) * 1e-5,
    )
    for value in sparse_ticks(120):
        opt.encode(value, other_seconds=2e-3)  # a busy relay: probes are well funded
    assert opt.arm in ("sparse-z1", "smallest-z1", "bytedelta-z1")
    d = opt.describe()
    assert d["ratio"] > 5
    assert d["probe_share"] is not None


def test_probes_stay_within_their_share() -> None:
    """With a clock that moves by the same step at every reading, every duration is a
    count of readings: the budget is checked exactly, whatever the machine's load."""
    ticks = itertools.count()
    opt = TensorStreamOptimiser(
        3, LinkClass.FAST, CostWeights(), seed=1, clock=lambda: next(ticks) * 1e-5
    )
    for value in sparse_ticks(150):
        opt.encode(value, other_seconds=1e-4)
    gateway = opt.encode_seconds + opt.other_seconds
    opening = 1.1e-4  # one frame's worth of the gateway's CPU
    biggest_probe = max(opt._probe_cost.values())
    assert opt.probes > 0
    assert opt.probe_seconds <= opt.probe_share * gateway + opening + biggest_probe
