"""Load limits of one round, derived from total connections and active gateways."""

from __future__ import annotations

from dataclasses import dataclass

from frys.router.placement.config import PlacementConfig


@dataclass(frozen=True, slots=True)
class Capacity:
    """Connection limits per gateway, all in connections."""

    mean: float
    fill: float
    hard: float
    low: float
    tolerance: float
    min_split_size: int

    @classmethod
    def for_load(cls, total: int, gateways: int, config: PlacementConfig) -> Capacity:
        """Limits for ``total`` connections spread over ``gateways`` active gateways."""
        if gateways < 1:
            raise ValueError("need at least one gateway")
        mean = total / gateways
        return cls(
            mean=mean,
            fill=config.fill * mean,
            hard=config.hard_cap * mean,
            low=config.low * mean,
            tolerance=config.tolerance * mean,
            min_split_size=config.min_split_size,
        )

    def parts_needed(self, size: int) -> int:
        """Fewest gateways a workflow of ``size`` connections needs under the fill cap."""
        if size <= self.fill or size < self.min_split_size:
            return 1
        whole = int(size // self.fill)
        return whole if whole * self.fill >= size else whole + 1
