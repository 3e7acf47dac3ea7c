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
    """Weighted mean absolute percentage errors: Σ|forecast − actual| / Σ actual.

    Sizes are scored only where they changed (a workflow that keeps its size is
    forecast right by anyone); rates over the horizon, against the mean rate then seen,
    since the rate of a few seconds is mostly counting noise.
    """

    size_next: float
    """Sizes of changing workflows, forecast at one plan for the next."""
    size_horizon: float
    """Sizes of changing workflows, forecast ``horizon`` seconds ahead."""
    rate_next: float
    """Message rates, forecast at one plan for the next interval's count."""
    rate_horizon: float
    """Mean message rates over the next ``horizon`` seconds."""
    samples: int
    """Size forecasts scored one plan ahead."""


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

    def copy(self) -> _Score:
        return _Score(self.error, self.actual, self.samples)


@dataclass(slots=True)
class _Window:
    """A rate forecast for the mean over ``[start, until]`` and what was seen since."""

    until: float
    predicted: float
    seen: float = 0.0
    elapsed: float = 0.0


class Forecaster:
    """Holt forecasts of every workflow's size (connections) and publish rate."""

    __slots__ = (
        "_alpha",
        "_beta",
        "_horizon",
        "_pending",
        "_rate",
        "_rate_alpha",
        "_rate_beta",
        "_rate_horizon",
        "_rate_next",
        "_reference",
        "_size",
        "_size_horizon",
        "_size_next",
        "_windows",
    )

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.3,
        reference: float = 5.0,
        horizon: float = 60.0,
        rate_alpha: float = 0.1,
        rate_beta: float = 0.02,
    ) -> None:
        """``alpha`` and ``beta`` smooth sizes (exact counts: follow them closely);
        ``rate_alpha`` and ``rate_beta`` smooth rates (counts of a few seconds are mostly
        noise: follow them slowly)."""
        self._alpha = alpha
        self._beta = beta
        self._rate_alpha = rate_alpha
        self._rate_beta = rate_beta
        self._reference = reference
        self._horizon = horizon
        self._size: dict[WorkflowId, Holt] = {}
        self._rate: dict[WorkflowId, Holt] = {}
        self._pending: dict[WorkflowId, deque[tuple[float, float, float]]] = {}
        """Size forecasts ``horizon`` ahead: (due, forecast, size when made)."""
        self._windows: dict[WorkflowId, deque[_Window]] = {}
        self._size_next = _Score()
        self._size_horizon = _Score()
        self._rate_next = _Score()
        self._rate_horizon = _Score()

    def update(
        self,
        sizes: Mapping[WorkflowId, int],
        rates: Mapping[WorkflowId, float] | None,
        now: float,
    ) -> None:
        """Score the previous forecasts against ``sizes`` and ``rates``, then learn them.

        A workflow missing from ``sizes`` has no member left and is forgotten; ``rates``
        (messages per second since the previous update) is ``None`` when no interval has
        passed (a first plan).
        """
        for workflow in [w for w in self._size if w not in sizes]:
            del self._size[workflow]
            self._rate.pop(workflow, None)
            self._pending.pop(workflow, None)
            self._windows.pop(workflow, None)
        for workflow, size in sizes.items():
            self._update_size(workflow, size, now)
            if rates is not None:
                self._update_rate(workflow, rates.get(workflow, 0.0), now)

    def _update_size(self, workflow: WorkflowId, size: int, now: float) -> None:
        holt = self._size.get(workflow)
        if holt is None:
            holt = self._size[workflow] = Holt(float(size), 0.0, now)
            pending = self._pending[workflow] = deque()
        else:
            pending = self._pending[workflow]
            if now > holt.at and size != round(holt.level):
                self._size_next.add(holt.forecast(now), size)
            while pending and pending[0][0] <= now:
                _, predicted, then = pending.popleft()
                if size != then:
                    self._size_horizon.add(predicted, size)
            holt.update(size, now, self._alpha, self._beta, self._reference)
        pending.append((now + self._horizon, holt.forecast(now + self._horizon), size))

    def _update_rate(self, workflow: WorkflowId, rate: float, now: float) -> None:
        holt = self._rate.get(workflow)
        windows = self._windows.setdefault(workflow, deque())
        if holt is None:
            holt = self._rate[workflow] = Holt(rate, 0.0, now, 1)
        else:
            gap = now - holt.at
            if gap > 0:
                self._rate_next.add(holt.forecast(now), rate)
                for window in windows:
                    window.seen += rate * gap
                    window.elapsed += gap
                while windows and windows[0].until <= now:
                    done = windows.popleft()
                    if done.elapsed > 0:
                        self._rate_horizon.add(done.predicted, done.seen / done.elapsed)
            holt.update(rate, now, self._rate_alpha, self._rate_beta, self._reference)
        mean = max(0.0, holt.level + holt.trend * self._horizon / 2)
        windows.append(_Window(now + self._horizon, mean))

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
            self._rate_horizon.value,
            self._size_next.samples,
        )

    def copy(self) -> Forecaster:
        twin = Forecaster(
            self._alpha,
            self._beta,
            self._reference,
            self._horizon,
            self._rate_alpha,
            self._rate_beta,
        )
        twin._size = {w: Holt(h.level, h.trend, h.at, h.samples) for w, h in self._size.items()}
        twin._rate = {w: Holt(h.level, h.trend, h.at, h.samples) for w, h in self._rate.items()}
        twin._pending = {w: deque(d) for w, d in self._pending.items()}
        twin._windows = {
            w: deque(_Window(x.until, x.predicted, x.seen, x.elapsed) for x in d)
            for w, d in self._windows.items()
        }
        twin._size_next = self._size_next.copy()
        twin._size_horizon = self._size_horizon.copy()
        twin._rate_next = self._rate_next.copy()
        twin._rate_horizon = self._rate_horizon.copy()
        return twin
