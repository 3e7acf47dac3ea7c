"""Robust running estimates: a winsorised exponentially weighted mean.

Costs measured on a busy machine have outliers (a garbage collection, a scheduler hiccup
during one encode); a plain mean follows them and decisions would flap. Each new sample is
first clipped to a band around the current estimate (winsorised), then averaged in. A run
of samples all outside the band on the same side is not an outlier but a change of regime:
the estimate then restarts from the new samples, so it re-converges in a few frames instead
of creeping towards them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WinsorisedEwma:
    """Exponentially weighted mean of samples clipped to ``[mean / band, mean · band]``."""

    alpha: float = 0.25
    band: float = 3.0
    """Samples are clipped to within this factor of the estimate (positive quantities)."""
    restart_after: int = 3
    """This many consecutive samples beyond the band on one side restart the estimate."""
    value: float | None = None
    deviation: float = 0.0
    """Exponentially weighted mean absolute deviation of the clipped samples: how noisy
    the quantity is (decisions ask for a margin above it)."""
    count: int = 0
    _run: int = 0
    _run_sum: float = 0.0

    def add(self, sample: float) -> bool:
        """Fold in ``sample``; True when it restarted the estimate (a change of regime)."""
        self.count += 1
        if self.value is None:
            self.value = sample
            return False
        low, high = self.value / self.band, self.value * self.band
        side = 1 if sample > high else -1 if sample < low else 0
        if side == 0:
            self._run = 0
            self._run_sum = 0.0
        else:
            self._run = self._run + side if self._run * side > 0 else side
            self._run_sum = self._run_sum + sample if abs(self._run) > 1 else sample
            if abs(self._run) >= self.restart_after:
                self.value = self._run_sum / abs(self._run)
                self.deviation = 0.0
                self._run = 0
                self._run_sum = 0.0
                return True
        clipped = min(max(sample, low), high)
        self.deviation += self.alpha * (abs(clipped - self.value) - self.deviation)
        self.value += self.alpha * (clipped - self.value)
        return False

    @property
    def noise(self) -> float:
        """Relative noise: mean absolute deviation over the estimate (0 when unknown)."""
        if not self.value:
            return 0.0
        return self.deviation / abs(self.value)

    def reset(self) -> None:
        self.value = None
        self.deviation = 0.0
        self.count = 0
        self._run = 0
        self._run_sum = 0.0
