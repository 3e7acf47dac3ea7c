"""Where each workflow is heading: Holt's linear trend on its size and its message rate.

A growing workflow should be placed where it will fit, and the next plan should come
before a gateway fills up, not at a fixed time. Holt's method (an exponentially weighted
level plus an exponentially weighted trend) follows a steady growth without lag and
forgets a burst quickly. Updates come at irregular times, so the smoothing factors are
given per ``reference`` seconds and scaled to each gap. Every update first scores the
forecast made at the previous one, so the error of the forecast is always known.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from frys.router.placement.model import WorkflowId

_TRUSTED = 4
"""Rate updates before the rate's trend is used."""


@dataclass(slots=True)
class Holt:
    """Level and trend (per second) of one series."""

    level: float
    trend: float
    at: float
    samples: int = 1

    def forecast(self, when: float) -> float:
        return self.level + self.trend * max(0.0, when - self.at)

    def update(self, value: float, now: float, alpha: float, beta: float, reference: float) -> None:
        gap = now - self.at
        if gap <= 0:
            self.level = value
            return
        a = 1.0 - (1.0 - alpha) ** (gap / reference)
        b = 1.0 - (1.0 - beta) ** (gap / reference)
        predicted = self.level + self.trend * gap
        level = a * value + (1.0 - a) * predicted
        self.trend = b * (level - self.level) / gap + (1.0 - b) * self.trend
        self.level = level
        self.at = now
        self.samples += 1


@dataclass(frozen=True, slots=True)
class ForecastError:
    """Weighted mean absolute percentage errors: Σ|forecast − actual| / Σ actual."""

    size_next: float
    """Workflow sizes, forecast at one plan for the next."""
    size_horizon: float
    """Workflow sizes, forecast ``horizon`` seconds ahead."""
    rate_next: float
    """Workflow message rates, forecast at one plan for the next."""
    samples: int


@dataclass(slots=True)
class _Score:
    error: float = 0.0
    actual: float = 0.0
    samples: int = 0

    def add(self, forecast: float, actual: float) -> None:
        self.error += abs(forecast - actual)
        self.actual += abs(actual)
        self.samples += 1

    @property
    def value(self) -> float:
        return self.error / self.actual if self.actual > 0 else 0.0


class Forecaster:
    """Holt forecasts of every workflow's size (connections) and publish rate."""

    __slots__ = (
        "_alpha",
        "_beta",
        "_horizon",
        "_pending",
        "_rate",
        "_rate_next",
        "_reference",
        "_size",
        "_size_horizon",
        "_size_next",
    )

    def __init__(
        self, alpha: float = 0.5, beta: float = 0.3, reference: float = 5.0, horizon: float = 60.0
    ) -> None:
        self._alpha = alpha
        self._beta = beta
        self._reference = reference
        self._horizon = horizon
        self._size: dict[WorkflowId, Holt] = {}
        self._rate: dict[WorkflowId, Holt] = {}
        self._pending: dict[WorkflowId, deque[tuple[float, float]]] = {}
        self._size_next = _Score()
        self._size_horizon = _Score()
        self._rate_next = _Score()

    def update(
        self,
        sizes: Mapping[WorkflowId, int],
        rates: Mapping[WorkflowId, float] | None,
        now: float,
    ) -> None:
        """Score the previous forecasts against ``sizes`` and ``rates``, then learn them.

        A workflow missing from ``sizes`` has no member left and is forgotten; ``rates``
        is ``None`` when no interval has passed since the previous update (a first plan).
        """
        for workflow in [w for w in self._size if w not in sizes]:
            del self._size[workflow]
            self._rate.pop(workflow, None)
            self._pending.pop(workflow, None)
        for workflow, size in sizes.items():
            holt = self._size.get(workflow)
            if holt is None:
                self._size[workflow] = Holt(float(size), 0.0, now)
                self._pending[workflow] = deque([(now + self._horizon, float(size))])
            else:
                if now > holt.at:
                    self._size_next.add(holt.forecast(now), size)
                pending = self._pending[workflow]
                while pending and pending[0][0] <= now:
                    _, predicted = pending.popleft()
                    self._size_horizon.add(predicted, size)
                holt.update(size, now, self._alpha, self._beta, self._reference)
                pending.append((now + self._horizon, holt.forecast(now + self._horizon)))
            if rates is None:
                continue
            rate = rates.get(workflow, 0.0)
            trend = self._rate.get(workflow)
            if trend is None:
                self._rate[workflow] = Holt(rate, 0.0, now, 1)
            else:
                if now > trend.at:
                    self._rate_next.add(trend.forecast(now), rate)
                trend.update(rate, now, self._alpha, self._beta, self._reference)

    def size(self, workflow: WorkflowId, when: float) -> float:
        """Forecast size of ``workflow`` at ``when`` (never below zero)."""
        holt = self._size.get(workflow)
        return 0.0 if holt is None else max(0.0, holt.forecast(when))

    def growth(self, workflow: WorkflowId) -> float:
        """Connections per second the workflow gains (negative when it shrinks)."""
        holt = self._size.get(workflow)
        return 0.0 if holt is None else holt.trend

    def rate_growth(self, workflow: WorkflowId) -> float:
        """Messages per second per second the workflow's rate gains; 0 until a few
        intervals have been seen (a trend from one or two noisy counts means nothing)."""
        holt = self._rate.get(workflow)
        return 0.0 if holt is None or holt.samples < _TRUSTED else holt.trend

    def rate(self, workflow: WorkflowId, when: float) -> float:
        """Forecast message rate of ``workflow`` at ``when`` (never below zero)."""
        holt = self._rate.get(workflow)
        return 0.0 if holt is None else max(0.0, holt.forecast(when))

    def growing(self, threshold: float = 0.0) -> dict[WorkflowId, float]:
        """Workflows whose size grows faster than ``threshold`` per second, with the rate."""
        return {w: h.trend for w, h in self._size.items() if h.trend > threshold}

    def error(self) -> ForecastError:
        return ForecastError(
            self._size_next.value,
            self._size_horizon.value,
            self._rate_next.value,
            self._size_next.samples,
        )

    def copy(self) -> Forecaster:
        twin = Forecaster(self._alpha, self._beta, self._reference, self._horizon)
        twin._size = {w: Holt(h.level, h.trend, h.at, h.samples) for w, h in self._size.items()}
        twin._rate = {w: Holt(h.level, h.trend, h.at, h.samples) for w, h in self._rate.items()}
        twin._pending = {w: deque(d) for w, d in self._pending.items()}
        twin._size_next = _Score(
            self._size_next.error, self._size_next.actual, self._size_next.samples
        )
        twin._size_horizon = _Score(
            self._size_horizon.error, self._size_horizon.actual, self._size_horizon.samples
        )
        twin._rate_next = _Score(
            self._rate_next.error, self._rate_next.actual, self._rate_next.samples
        )
        return twin
