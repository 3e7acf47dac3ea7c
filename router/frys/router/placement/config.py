"""Tuning knobs of the placement, validated once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    """All thresholds the placement uses; the defaults suit gateways of equal size."""

    # --- what the reports say -----------------------------------------------------------
    half_life: float = 600.0
    """Seconds after which a message counts half: rates follow changing habits without
    forgetting them after one quiet interval."""
    prune_below: float = 0.05
    """Decayed message counts under this are dropped, so dead ties cost no memory."""
    agent_ttl: float = 30.0
    """An agent no report has named for this long (by report time) is gone: it stops
    counting as a connection. Gateways report every live agent every interval."""
    subscription_ttl: float = 12.0
    """A workflow subscription no report has repeated for this long has ended: the agent
    is no longer a member, so it stops pulling towards that workflow."""

    # --- what a placement costs -----------------------------------------------------------
    workflow_prior: float = 0.0
    """Broadcasts per second every workflow is assumed to carry besides its members' (the
    engine's events and state, when a deployment knows their rate)."""
    member_prior: float = 0.1
    """Broadcasts per second each member of a workflow is assumed to bring on top of what
    was measured: members of a quiet workflow still belong together, since any broadcast
    to come reaches every gateway they sit on, and the engine's own broadcasts never pass
    a gateway's counters. With the defaults, gathering a straggling share of up to 60 % of
    a workflow's size pays for itself over the horizon (member_prior × payback_horizon /
    migration_cost), up to 30 % when as many other clients must move to make room."""
    direct_weight: float = 0.5
    """Weight of a direct message between gateways against one extra broadcast copy: it
    crosses the broker either way, but local delivery is quicker."""
    migration_cost: float = 50.0
    """What moving one client costs, in broker copies: a reconnect, a resubscribe of its
    channels, a resume fetch and two presence notices to its workflows. An elective move
    must save more than this per client over the horizon."""
    payback_horizon: float = 300.0
    """Seconds over which an elective move must pay for itself."""

    # --- balance ----------------------------------------------------------------------------
    fill: float = 1.10
    """Units are placed on gateways up to this multiple of the mean connections."""
    hard_cap: float = 1.25
    """No gateway is left above this multiple of the mean, nor expected to pass it before
    the next round: one that would sheds just enough. Between the caps a gateway is left
    alone, to move no client without need."""
    low: float = 0.70
    """A gateway below this multiple of the mean pulls units towards it (a joiner)."""
    tolerance: float = 0.02
    """Slack, as a multiple of the mean, when filling a gateway up to the mean."""
    piece_share: float = 0.10
    """Units are at most this share of the fill cap: bigger groups are cut along their
    sub-teams, so shedding and filling can hit their mark with few clients."""
    min_split_size: int = 50
    """Workflows smaller than this never need several gateways: the fill and hard caps
    never go below this many connections."""
    part_slack: float = 0.05
    """Pieces of a cut group may exceed an equal share by this fraction."""

    # --- pace ---------------------------------------------------------------------------------
    min_dwell: float = 300.0
    """Seconds a client stays put after a move before it may move again by choice; a
    client whose workflows changed since may follow them at once."""
    move_budget: float = 0.15
    """Connections (share of all) that balance, drain and elective moves may touch per
    round; the first move of a round may exceed it, so no unit is too big to move."""
    workflow_moves: int = 2
    """Elective unit moves that may touch one workflow per round, so a workflow never
    follows a departing member and its members are not reshuffled at once."""
    fresh_share: float = 0.5
    """When this share of connections has no gateway (a first plan, a restart without
    locations), they are placed by the multilevel partitioner instead of one by one."""
    refine_passes: int = 6
    """Rounds of local moves the partitioner makes at each level at most."""

    # --- prediction -------------------------------------------------------------------------
    forecast_alpha: float = 0.5
    """Holt level smoothing per plan interval: how fast a forecast follows a new size."""
    forecast_beta: float = 0.3
    """Holt trend smoothing per plan interval: how fast a forecast believes a new trend."""
    forecast_rate_alpha: float = 0.1
    """Holt level smoothing of message rates: counts of a few seconds are mostly noise."""
    forecast_rate_beta: float = 0.02
    """Holt trend smoothing of message rates."""
    forecast_horizon: float = 60.0
    """Seconds ahead a growing workflow's size is forecast when choosing where it goes."""
    plan_interval: float = 5.0
    """Regular seconds between plans; the forecast may ask for the next one sooner."""
    min_plan_interval: float = 1.0
    """Shortest time between plans the forecast may ask for."""

    vnodes: int = 160
    """Points per gateway on the consistent-hash ring."""

    def __post_init__(self) -> None:
        if self.half_life <= 0:
            raise ValueError("half_life must be positive")
        if self.prune_below < 0:
            raise ValueError("prune_below must not be negative")
        if self.agent_ttl <= 0 or self.subscription_ttl <= 0:
            raise ValueError("agent_ttl and subscription_ttl must be positive")
        if not 0 < self.low < 1 <= self.fill <= self.hard_cap:
            raise ValueError("need 0 < low < 1 <= fill <= hard_cap")
        if not 0 <= self.tolerance < self.fill - self.low:
            raise ValueError("tolerance must be smaller than the fill band")
        if not 0 < self.move_budget <= 1:
            raise ValueError("move_budget must be in (0, 1]")
        if self.min_dwell < 0 or self.migration_cost < 0 or self.payback_horizon <= 0:
            raise ValueError("min_dwell and migration_cost >= 0, payback_horizon > 0")
        if min(self.workflow_prior, self.member_prior, self.direct_weight) < 0:
            raise ValueError("workflow_prior, member_prior and direct_weight must be >= 0")
        if not 0 < self.piece_share <= 1:
            raise ValueError("piece_share must be in (0, 1]")
        if self.min_split_size < 2:
            raise ValueError("min_split_size must be at least 2")
        if self.part_slack < 0 or self.vnodes < 1:
            raise ValueError("part_slack must not be negative and vnodes positive")
        if self.workflow_moves < 1 or self.refine_passes < 1:
            raise ValueError("workflow_moves and refine_passes must be at least 1")
        if not 0 < self.fresh_share <= 1:
            raise ValueError("fresh_share must be in (0, 1]")
        for alpha, beta in (
            (self.forecast_alpha, self.forecast_beta),
            (self.forecast_rate_alpha, self.forecast_rate_beta),
        ):
            if not (0 < alpha <= 1 and 0 <= beta <= 1):
                raise ValueError("forecast alphas must be in (0, 1], betas in [0, 1]")
        if self.forecast_horizon < 0:
            raise ValueError("forecast_horizon must not be negative")
        if not 0 < self.min_plan_interval <= self.plan_interval:
            raise ValueError("need 0 < min_plan_interval <= plan_interval")
