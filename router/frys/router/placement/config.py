"""Tuning knobs of the placement, validated once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    """All thresholds the placement uses; the defaults suit gateways of equal size."""

    half_life: float = 600.0
    """Seconds after which an interaction counts half: old habits fade, not vanish."""
    prune_below: float = 0.05
    """Decayed weights under this are dropped, so dead ties cost no memory."""
    subscription_weight: float = 20.0
    """Weight of one subscription report against one message: membership is the
    strongest signal of where an agent's traffic goes."""
    fill: float = 1.10
    """Units are placed on gateways up to this multiple of the mean connections."""
    hard_cap: float = 1.25
    """No gateway is ever left above this multiple of the mean: one above it sheds just
    enough to get under it. Between the caps a gateway is left alone, to move no client
    without need."""
    low: float = 0.70
    """A gateway below this multiple of the mean pulls units towards it (a joiner)."""
    tolerance: float = 0.02
    """Slack, as a multiple of the mean, when filling a gateway up to the mean."""
    min_gain: float = 0.5
    """An affinity move needs this share of the unit's cross-unit traffic to become
    local, so weak or noisy preferences never move anyone."""
    min_dwell: float = 300.0
    """Seconds a unit stays put after a move before it may move again by choice."""
    move_budget: float = 0.15
    """Connections (share of all) that elective moves and drains may touch per round."""
    home_stickiness: float = 1.25
    """An agent changes home workflow only when the new tie is this much stronger."""
    merge_below: float = 0.75
    """A split workflow is cut into fewer parts only once it fits this share of the
    caps of the fewer parts, so a workflow at the limit is not split and joined in turn."""
    min_split_size: int = 50
    """Workflows smaller than this are never split: with so few connections in total,
    balance matters less than keeping a workflow's broadcast on one gateway."""
    part_slack: float = 0.05
    """Parts of a split workflow may exceed an equal share by this fraction."""
    seed: int = 7
    """Seed of community detection: same input, same groups."""
    resolution: float = 1.0
    """Louvain resolution for grouping units; higher gives smaller groups."""
    vnodes: int = 160
    """Points per gateway on the consistent-hash ring."""

    def __post_init__(self) -> None:
        if self.half_life <= 0:
            raise ValueError("half_life must be positive")
        if self.prune_below < 0:
            raise ValueError("prune_below must not be negative")
        if not 0 < self.low < 1 <= self.fill <= self.hard_cap:
            raise ValueError("need 0 < low < 1 <= fill <= hard_cap")
        if not 0 <= self.tolerance < self.fill - self.low:
            raise ValueError("tolerance must be smaller than the fill band")
        if not 0 < self.move_budget <= 1:
            raise ValueError("move_budget must be in (0, 1]")
        if self.min_gain < 0 or self.min_dwell < 0:
            raise ValueError("min_gain and min_dwell must not be negative")
        if self.home_stickiness < 1:
            raise ValueError("home_stickiness must be at least 1")
        if not 0 < self.merge_below <= 1:
            raise ValueError("merge_below must be in (0, 1]")
        if self.min_split_size < 2:
            raise ValueError("min_split_size must be at least 2")
        if self.part_slack < 0 or self.vnodes < 1:
            raise ValueError("part_slack must not be negative and vnodes positive")
