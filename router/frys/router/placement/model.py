"""Value types every placement module speaks: ids, gateway health, units, moves."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

AgentId = str
WorkflowId = str
GatewayId = str
UnitId = str


class GatewayHealth(enum.Enum):
    """What the router may do with a gateway's connections."""

    ACTIVE = "active"
    """Serves its units and accepts new ones."""
    DRAINING = "draining"
    """Still serves, but its units leave it, a move budget at a time."""
    DOWN = "down"
    """Gone; its clients are reconnecting and its units are re-placed at once."""


class UnitKind(enum.Enum):
    """Why a set of agents is placed as one piece."""

    WORKFLOW = "workflow"
    """All members of a workflow that fits on one gateway."""
    PART = "part"
    """One share of a workflow too big for a gateway, cut along its sub-teams."""
    SOLO = "solo"
    """An agent tied to no workflow and talking to no placed unit."""


@dataclass(frozen=True, slots=True)
class Unit:
    """Agents that always share a gateway: moving one of them means moving all."""

    id: UnitId
    kind: UnitKind
    workflow: WorkflowId | None
    index: int
    agents: frozenset[AgentId]

    @property
    def size(self) -> int:
        """Connections the unit brings to its gateway (one per agent)."""
        return len(self.agents)


def workflow_unit_id(workflow: WorkflowId) -> UnitId:
    return f"wf:{workflow}"


def part_unit_id(workflow: WorkflowId, index: int) -> UnitId:
    return f"wf:{workflow}#{index}"


def solo_unit_id(agent: AgentId) -> UnitId:
    return f"agent:{agent}"


@dataclass(frozen=True, slots=True)
class Counts:
    """Interactions the gateways aggregated over one reporting interval.

    ``subscriptions`` carries one count per live subscription per interval (a workflow
    member keeps its tie alive by staying subscribed), ``publishes`` the messages an agent
    sent to a workflow channel, ``direct`` the messages sent to another agent's inbox.
    """

    subscriptions: Mapping[tuple[AgentId, WorkflowId], float] = field(default_factory=dict)
    publishes: Mapping[tuple[AgentId, WorkflowId], float] = field(default_factory=dict)
    direct: Mapping[tuple[AgentId, AgentId], float] = field(default_factory=dict)


class MoveReason(enum.Enum):
    """Why connections change gateway; the service may log or rate-limit by reason."""

    EVACUATE = "evacuate"
    """The unit's gateway is down or draining."""
    OVERLOAD = "overload"
    """The unit's gateway is above the hard cap."""
    BALANCE = "balance"
    """A gateway left the fill band (above the fill cap or below the low mark)."""
    AFFINITY = "affinity"
    """The unit talks clearly more to another gateway's units."""
    REGROUP = "regroup"
    """The agent changed unit (new home workflow, re-cut sub-teams) or sits astray."""


@dataclass(frozen=True, slots=True)
class Move:
    """One unit changing gateway."""

    unit: UnitId
    source: GatewayId
    target: GatewayId
    connections: int
    reason: MoveReason


@dataclass(frozen=True, slots=True)
class Migration:
    """One client to send a ``migrate`` instruction to."""

    agent: AgentId
    source: GatewayId
    target: GatewayId
    reason: MoveReason


class NoGatewayError(RuntimeError):
    """Placement was asked for while no gateway is active."""
