"""Value types every placement module speaks: ids, gateway health, units, moves."""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

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
    """The members of one workflow that sit on one gateway, all of them."""
    PART = "part"
    """One share of a workflow's members: the workflow spans gateways, or its members on
    one gateway are too many to move at once and are cut along their sub-teams."""
    SHARED = "shared"
    """Agents that belong to the same several workflows, on one gateway."""
    SOLO = "solo"
    """An agent subscribed to no workflow: it goes where its direct messages go."""


@dataclass(frozen=True, slots=True)
class Unit:
    """Agents that share a gateway and move together: the same workflows, the same place."""

    id: UnitId
    kind: UnitKind
    workflows: frozenset[WorkflowId]
    index: int
    agents: frozenset[AgentId]
    connections: int
    """Connections the unit brings to its gateway: an agent connected twice counts twice."""

    @property
    def size(self) -> int:
        return self.connections

    @property
    def workflow(self) -> WorkflowId | None:
        """The one workflow of a workflow unit or part; ``None`` for shared and solo units."""
        if len(self.workflows) == 1:
            return next(iter(self.workflows))
        return None


@functools.lru_cache(maxsize=65536)
def _escaped(name: str) -> str:
    """``name`` with every character that the id grammar uses (``:``, ``#``, ``+``, ``%``)
    percent-encoded, so no two different inputs ever give the same id."""
    return quote(name, safe="")


def workflow_unit_id(workflow: WorkflowId) -> UnitId:
    return f"wf:{_escaped(workflow)}"


def workflows_unit_id(workflows: Iterable[WorkflowId]) -> UnitId:
    """Id of the unit of agents in exactly these workflows (``wf:a+b`` for two)."""
    return "wf:" + "+".join(_escaped(w) for w in sorted(set(workflows)))


def part_unit_id(base: UnitId, index: int) -> UnitId:
    """The ``index``-th unit of several with the same workflows: ``wf:big#0``.

    The base's own characters are escaped, so the workflow ``big#0`` (``wf:big%230``) never
    meets part 0 of ``big`` (``wf:big#0``).
    """
    return f"{base}#{index}"


def solo_unit_id(agent: AgentId) -> UnitId:
    return f"agent:{_escaped(agent)}"


@dataclass(frozen=True, slots=True)
class Counts:
    """Interactions the gateways aggregated over one reporting interval.

    ``subscriptions`` carries one count per live subscription per interval (a workflow
    member stays a member by staying subscribed), ``publishes`` the messages an agent sent
    to a workflow channel, ``direct`` the messages sent to another agent's inbox.
    ``connections`` says how many connections each agent has open (one per gateway
    session); an agent named elsewhere but not here counts one.
    """

    subscriptions: Mapping[tuple[AgentId, WorkflowId], float] = field(default_factory=dict)
    publishes: Mapping[tuple[AgentId, WorkflowId], float] = field(default_factory=dict)
    direct: Mapping[tuple[AgentId, AgentId], float] = field(default_factory=dict)
    connections: Mapping[AgentId, int] = field(default_factory=dict)


class MoveReason(enum.Enum):
    """Why connections change gateway; the service may log or rate-limit by reason."""

    EVACUATE = "evacuate"
    """The unit's gateway is down or draining."""
    OVERLOAD = "overload"
    """The unit's gateway is above the hard cap, or will be before the next round."""
    BALANCE = "balance"
    """A gateway is below the low mark (a joiner) and takes its share."""
    AFFINITY = "affinity"
    """Fewer broker copies over the payback horizon than the move costs."""
    REGROUP = "regroup"
    """The agents' workflows changed and they follow their new workflows."""


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
