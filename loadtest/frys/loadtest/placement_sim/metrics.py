"""What a placement costs: broker copies, broadcast fan-out, balance, moves.

A gateway subscribes once per subject it has subscribers for, so the broker sends one
copy of a message to every gateway hosting a recipient: a direct message costs one copy
wherever its recipient is, a workflow broadcast one copy per gateway its members are on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frys.loadtest.placement_sim.workload import Workload
from frys.router.placement import Capacity, PlacementConfig


@dataclass(frozen=True, slots=True)
class Cost:
    fan_out: float
    """Mean gateways a workflow broadcast reaches (weighted by broadcasts)."""
    copies: float
    """Mean broker copies per published message (broadcasts and direct messages)."""
    busiest: float
    """Busiest gateway's connections over the mean."""
    local: float
    """Share of messages whose recipients all sit on the sender's gateway."""


def cost(workload: Workload, where: Mapping[str, str], gateways: Sequence[str]) -> Cost:
    """Costs of placing every agent of ``workload`` as ``where`` says."""
    spread = {w: len({where[a] for a in ms}) for w, ms in workload.members.items()}
    broadcasts = sum(workload.broadcast_rate.values())
    reach = sum(r * spread[workload.workflow_of[a]] for a, r in workload.broadcast_rate.items())
    local_b = sum(
        r for a, r in workload.broadcast_rate.items() if spread[workload.workflow_of[a]] == 1
    )
    direct = sum(workload.direct_rate.values())
    local_d = sum(r for (a, b), r in workload.direct_rate.items() if where[a] == where[b])
    loads = dict.fromkeys(gateways, 0)
    for a in workload.agents:
        loads[where[a]] += 1
    mean = len(workload.agents) / len(gateways)
    return Cost(
        fan_out=reach / broadcasts,
        copies=(reach + direct) / (broadcasts + direct),
        busiest=max(loads.values()) / mean,
        local=(local_b + local_d) / (broadcasts + direct),
    )


def fan_out_floor(workload: Workload, gateways: int, config: PlacementConfig) -> float:
    """Fan-out no placement can beat: a workflow over the fill cap needs several gateways."""
    capacity = Capacity.for_load(len(workload.agents), gateways, config)
    broadcasts = sum(workload.broadcast_rate.values())
    reach = sum(
        r * capacity.parts_needed(len(workload.members[workload.workflow_of[a]]))
        for a, r in workload.broadcast_rate.items()
    )
    return reach / broadcasts


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> float:
    """Share of connections (present before and after) that changed gateway."""
    common = [a for a in before if a in after]
    if not common:
        return 0.0
    return sum(before[a] != after[a] for a in common) / len(common)


def share(where: Mapping[str, str], gateway: str) -> float:
    """Share of connections on ``gateway``."""
    return sum(g == gateway for g in where.values()) / max(1, len(where))
