"""Collaboration-aware placement: which gateway serves which agents.

Pure logic (no I/O, no clock): the router service feeds it interaction counts and
gateway health and gets back a placement table and the clients to migrate. Start at
:class:`~frys.router.placement.placer.Placer`; docs/placement.md explains the algorithm.
"""

from frys.router.placement.capacity import Capacity
from frys.router.placement.config import PlacementConfig
from frys.router.placement.forecast import Forecaster, ForecastError
from frys.router.placement.graph import InteractionGraph, merge_counts
from frys.router.placement.model import (
    AgentId,
    Counts,
    GatewayHealth,
    GatewayId,
    Migration,
    Move,
    MoveReason,
    NoGatewayError,
    Unit,
    UnitId,
    UnitKind,
    WorkflowId,
)
from frys.router.placement.placer import Placer, Plan
from frys.router.placement.presence import Member, Presence
from frys.router.placement.ring import BoundedRing
from frys.router.placement.table import PlacementTable

__all__ = [
    "AgentId",
    "BoundedRing",
    "Capacity",
    "Counts",
    "ForecastError",
    "Forecaster",
    "GatewayHealth",
    "GatewayId",
    "InteractionGraph",
    "Member",
    "Migration",
    "Move",
    "MoveReason",
    "NoGatewayError",
    "PlacementConfig",
    "PlacementTable",
    "Placer",
    "Plan",
    "Presence",
    "Unit",
    "UnitId",
    "UnitKind",
    "WorkflowId",
    "merge_counts",
]
