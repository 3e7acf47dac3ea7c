"""Holt forecasts of workflow sizes and rates, and their measured error."""

from __future__ import annotations

import numpy as np
import pytest

from frys.router.placement import Forecaster


def test_a_steady_growth_is_forecast_without_lag() -> None:
    f = Forecaster(alpha=0.5, beta=0.3, reference=5.0, horizon=60.0)
    for i in range(40):
        f.update({"grow": 10 + 5 * 5 * i, "calm": 100}, {"grow": 1.0, "calm": 2.0}, 5.0 * i)
    now = 5.0 * 39
    assert f.growth("grow") == pytest.approx(5.0, rel=0.02)  # connections per second
    assert f.size("grow", now + 60.0) == pytest.approx(10 + 25 * 39 + 300, rel=0.02)
    assert f.growth("calm") == pytest.approx(0.0)
    assert set(f.growing()) == {"grow"}
    error = f.error()
    assert error.size_next < 0.02 and error.size_horizon < 0.1  # the first ones knew no trend
    assert error.samples == 39  # only sizes that changed are scored: "calm" is trivial


def test_irregular_updates_give_the_same_trend() -> None:
    f = Forecaster(reference=5.0)
    t = 0.0
    for gap in [1.0, 5.0, 2.0, 7.0, 3.0, 5.0] * 6:
        t += gap
        f.update({"w": int(2 * t)}, None, t)
    assert f.growth("w") == pytest.approx(2.0, rel=0.05)


def test_rates_are_forecast_and_a_young_trend_is_not_trusted() -> None:
    f = Forecaster()
    f.update({"w": 5}, None, 0.0)  # a first plan: no interval, no rate yet
    f.update({"w": 5}, {"w": 10.0}, 5.0)
    f.update({"w": 5}, {"w": 20.0}, 10.0)
    assert f.rate_growth("w") == 0.0  # two rates say nothing about a trend
    for i in range(3, 120):
        f.update({"w": 5}, {"w": 10.0 * i}, 5.0 * i)
    assert f.rate_growth("w") == pytest.approx(2.0, rel=0.1)  # 10 more per 5 s
    assert f.rate("w", 600.0) == pytest.approx(1200.0, rel=0.05)
    assert f.error().rate_next > 0


def test_a_rate_is_forecast_over_the_horizon_despite_counting_noise() -> None:
    """Counts of 5 s are noisy (a rate of 2/s gives 10 ± 3): one interval ahead the error
    is that noise; the mean over the next minute is forecast about as well as that mean
    can be known (its own noise is 9 %)."""
    rng = np.random.default_rng(3)
    f = Forecaster(reference=5.0, horizon=60.0)
    for i in range(200):
        f.update({"w": 20}, {"w": rng.poisson(2.0 * 5.0) / 5.0} if i else None, 5.0 * i)
    error = f.error()
    assert error.rate_next > 0.2
    assert error.rate_horizon < 0.15


def test_a_workflow_without_members_is_forgotten() -> None:
    f = Forecaster()
    f.update({"w": 5, "v": 3}, None, 0.0)
    f.update({"w": 6}, None, 5.0)
    assert f.size("v", 10.0) == 0.0
    twin = f.copy()
    twin.update({"w": 50}, None, 10.0)
    assert f.size("w", 10.0) < 10
