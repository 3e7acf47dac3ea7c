"""Load limits of one round, derived from total connections and active gateways."""

from __future__ import annotations

from dataclasses import dataclass

from frys.router.placement.config import PlacementConfig


@dataclass(frozen=True, slots=True)
class Capacity:
    """Connection limits per gateway, all in connections.

    The caps never go below ``min_split_size`` connections, and then no gateway is too
    empty either: in a small cluster, balance matters less than keeping each workflow's
    broadcasts on one gateway.
    """

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
        small = config.min_split_size
        tiny = config.fill * mean < small
        return cls(
            mean=mean,
            fill=small if tiny else config.fill * mean,
            hard=small * config.hard_cap / config.fill if tiny else config.hard_cap * mean,
            low=0.0 if tiny else config.low * mean,
            tolerance=config.tolerance * mean,
            min_split_size=config.min_split_size,
        )

    def parts_needed(self, size: int) -> int:
        """Fewest gateways a workflow of ``size`` connections needs under the fill cap."""
        if size <= self.fill or size < self.min_split_size:
            return 1
        whole = int(size // self.fill)
        return whole if whole * self.fill >= size else whole + 1
