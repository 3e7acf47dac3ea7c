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


def spread(workload: Workload, where: Mapping[str, str]) -> dict[str, int]:
    """Gateways each workflow's members are on."""
    return {w: len({where[a] for a in ms}) for w, ms in workload.members.items() if ms}


def cost(workload: Workload, where: Mapping[str, str], gateways: Sequence[str]) -> Cost:
    """Costs of placing every agent of ``workload`` as ``where`` says."""
    reach_of = spread(workload, where)
    broadcasts = sum(workload.publish_rate.values())
    reach = sum(r * reach_of[w] for (_, w), r in workload.publish_rate.items())
    local_b = sum(r for (_, w), r in workload.publish_rate.items() if reach_of[w] == 1)
    direct = sum(workload.direct_rate.values())
    local_d = sum(r for (a, b), r in workload.direct_rate.items() if where[a] == where[b])
    loads = busiest_ratio(where, gateways)
    total = broadcasts + direct
    return Cost(
        fan_out=reach / broadcasts if broadcasts else 0.0,
        copies=(reach + direct) / total if total else 0.0,
        busiest=loads,
        local=(local_b + local_d) / total if total else 0.0,
    )


def busiest_ratio(where: Mapping[str, str], gateways: Sequence[str]) -> float:
    """Busiest gateway's connections over the mean (one connection per agent)."""
    loads = dict.fromkeys(gateways, 0)
    for g in where.values():
        loads[g] = loads.get(g, 0) + 1
    if not where:
        return 0.0
    return max(loads.values()) * len(gateways) / len(where)


def fan_out_floor(workload: Workload, gateways: int, config: PlacementConfig) -> float:
    """Fan-out no placement can beat: a workflow over the fill cap needs several gateways."""
    capacity = Capacity.for_load(len(workload.workflows_of), gateways, config)
    broadcasts = sum(workload.publish_rate.values())
    reach = sum(
        r * capacity.parts_needed(len(workload.members[w]))
        for (_, w), r in workload.publish_rate.items()
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
