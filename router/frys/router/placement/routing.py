"""Where a connecting client goes between plans.

An agent the table places goes to its gateway. A new member of a known workflow goes
where the workflow's members are (the gateway holding most of them that is under the
fill cap); once every such gateway is full, to the gateway with the most room, so a
growing workflow spills over without anyone migrating, onto the gateway where its
newcomers will fit longest (a second fragment there, not one on every gateway). An
agent of a workflow nobody has seen, or of none, follows the consistent-hash order of
the workflow (or of itself): the same answer whatever the arrival order, and the same
from a restarted router.

Loads are those of the latest plan (or of the reported locations), not counting the
clients routed since: counting them would make the answer depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from frys.router.placement.model import AgentId, GatewayId, WorkflowId
from frys.router.placement.presence import Member
from frys.router.placement.ring import BoundedRing


def workflow_homes(
    members: Mapping[AgentId, Member], located: Mapping[AgentId, GatewayId]
) -> dict[WorkflowId, dict[GatewayId, int]]:
    """Connections of each workflow on each gateway, from where its members are."""
    out: dict[WorkflowId, dict[GatewayId, int]] = {}
    for agent, member in members.items():
        gateway = located.get(agent)
        if gateway is None:
            continue
        for workflow in member.workflows:
            row = out.setdefault(workflow, {})
            row[gateway] = row.get(gateway, 0) + member.connections
    return out


def ring_key(workflow: WorkflowId | None, agent: AgentId) -> str:
    """What an unseen client hashes on: its workflow, else itself."""
    return f"wf:{workflow}" if workflow is not None else f"agent:{agent}"


def choose_gateway(
    homes: Mapping[GatewayId, int] | None,
    key: str,
    ring: BoundedRing,
    active: Sequence[GatewayId],
    loads: Mapping[GatewayId, float],
    fill: float,
) -> GatewayId:
    """The gateway for one new client (see the module docstring)."""
    serving = [g for g in (homes or {}) if g in active]
    if not serving:
        return ring.first(key)
    assert homes is not None
    for gateway in sorted(serving, key=lambda g: (-homes[g], g)):
        if loads.get(gateway, 0.0) + 1 <= fill:
            return gateway
    order = {g: i for i, g in enumerate(ring.walk(key))}
    return min(active, key=lambda g: (loads.get(g, 0.0), order.get(g, 0)))
