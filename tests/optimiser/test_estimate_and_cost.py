"""Robust estimates and the cost of a choice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.estimate import WinsorisedEwma
from frys.gateway.optimiser.links import LinkEstimator
from frys.gateway.optimiser.messages import compression_pays


def test_an_outlier_moves_the_estimate_only_within_the_band() -> None:
    e = WinsorisedEwma(alpha=0.5, band=2.0)
    for _ in range(10):
        e.add(1.0)
    e.add(1000.0)
    assert e.value is not None and e.value <= 1.5


def test_a_run_beyond_the_band_restarts_the_estimate() -> None:
    e = WinsorisedEwma(alpha=0.1, band=2.0, restart_after=3)
    for _ in range(20):
        e.add(1.0)
    assert not e.add(10.0) and not e.add(10.0)
    assert e.add(10.0)
    assert e.value == 10.0


@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=50))
def test_the_estimate_stays_within_the_samples(samples: list[float]) -> None:
    e = WinsorisedEwma()
    for s in samples:
        e.add(s)
    assert e.value is not None
    assert min(samples) * 0.999 <= e.value <= max(samples) * 1.001


def test_bytes_dominate_on_slow_links_and_cpu_on_local_ones() -> None:
    w = CostWeights()
    small_slow = w.cost(1000, 1e-3, 1e-3, LinkClass.SLOW)
    big_fast_cpu = w.cost(100_000, 0.0, 0.0, LinkClass.SLOW)
    assert small_slow < big_fast_cpu
    assert w.cost(100_000, 0.0, 0.0, LinkClass.LOCAL) < w.cost(1000, 1e-3, 0.0, LinkClass.LOCAL)


def test_compressing_a_small_message_pays_except_on_the_same_host() -> None:
    w = CostWeights()
    assert not compression_pays(w, LinkClass.LOCAL, 220, 60)
    assert compression_pays(w, LinkClass.FAST, 220, 60)
    assert compression_pays(w, LinkClass.SLOW, 220, 60)
    assert not compression_pays(w, LinkClass.SLOW, 220, 219, enc_s=1e-3, dec_s=1e-3)


def test_links_are_classed_from_drains_and_round_trips_with_a_margin() -> None:
    assert LinkEstimator(loopback=True).drained(1 << 20, 10.0).value == "local"
    link = LinkEstimator()
    assert link.link is LinkClass.FAST
    classes = [link.drained(1 << 20, 1.0) for _ in range(3)]  # 8 Mb/s
    assert classes[-1] is LinkClass.SLOW
    assert link.drained(1 << 20, 0.075) is LinkClass.SLOW  # 112 Mb/s: within the margin
    fast = LinkEstimator()
    for _ in range(3):
        fast.round_trip(0.0002)
    assert fast.link is LinkClass.LOCAL
    assert fast.describe()["link"] == "local"
