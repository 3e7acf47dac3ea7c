"""From the interaction graph to units: the pieces the packer places whole.

Every agent gets a home workflow, its strongest tie (subscriptions dominate), and a
workflow's home members form one unit: its broadcasts then reach one gateway. A
workflow bigger than a gateway's fill cap is cut into parts along its sub-teams. An agent
tied to no workflow joins the unit of the members it messages most, or stands alone (the
affinity groups then keep it near whom it talks to). Homes, parts and attachments are
sticky, so noise in the counts does not reshuffle anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from frys.router.placement.capacity import Capacity
from frys.router.placement.config import PlacementConfig
from frys.router.placement.graph import InteractionGraph
from frys.router.placement.model import (
    AgentId,
    Unit,
    UnitId,
    UnitKind,
    WorkflowId,
    part_unit_id,
    solo_unit_id,
    workflow_unit_id,
)
from frys.router.placement.split import part_limit, split_members


@dataclass(frozen=True, slots=True)
class Units:
    """One round's units and the indexes the other modules look things up by."""

    units: Mapping[UnitId, Unit] = field(default_factory=dict)
    unit_of: Mapping[AgentId, UnitId] = field(default_factory=dict)
    home: Mapping[AgentId, WorkflowId] = field(default_factory=dict)
    """Home workflow of every agent with a workflow tie."""
    parts: Mapping[WorkflowId, tuple[UnitId, ...]] = field(default_factory=dict)
    """Units holding each workflow's home members: one, or several once split."""

    def sizes(self) -> dict[UnitId, int]:
        return {uid: unit.size for uid, unit in self.units.items()}


def choose_home(ties: Mapping[str, float], previous: str | None, stickiness: float) -> str | None:
    """The strongest tie, unless the previous choice is within ``stickiness`` of it."""
    if not ties:
        return None
    best = min(ties, key=lambda key: (-ties[key], key))
    if previous is not None and previous != best:
        kept = ties.get(previous, 0.0)
        if kept > 0 and kept * stickiness >= ties[best]:
            return previous
    return best


def parts_for(size: int, capacity: Capacity, previous: int, merge_below: float) -> int:
    """Parts a workflow needs; an existing split is only reduced with margin to spare."""
    needed = capacity.parts_needed(size)
    if previous > needed and size >= capacity.min_split_size:
        fewer_fit = (previous - 1) * capacity.fill * merge_below
        if size > fewer_fit:
            return previous
    return needed


def build_units(
    graph: InteractionGraph,
    capacity: Capacity,
    config: PlacementConfig,
    previous: Units | None = None,
    located: Mapping[AgentId, str] | None = None,
) -> Units:
    """Units for every agent in ``graph``; ``previous`` (last round) keeps choices sticky.

    ``located`` (agent → gateway) stands in for ``previous`` when a workflow already spread
    over gateways has no remembered cut, as after a router restart: the cut then follows
    where its members are instead of moving them.
    """
    before = previous or Units()
    agents = sorted(graph.agents())

    home: dict[AgentId, WorkflowId] = {}
    for agent in agents:
        chosen = choose_home(graph.ties(agent), before.home.get(agent), config.home_stickiness)
        if chosen is not None:
            home[agent] = chosen
    members: dict[WorkflowId, list[AgentId]] = {}
    for agent, workflow in home.items():
        members.setdefault(workflow, []).append(agent)

    units: dict[UnitId, Unit] = {}
    unit_of: dict[AgentId, UnitId] = {}
    parts: dict[WorkflowId, tuple[UnitId, ...]] = {}
    for workflow in sorted(members):
        group = members[workflow]
        count = parts_for(
            len(group), capacity, len(before.parts.get(workflow, ())), config.merge_below
        )
        if count == 1:
            cut = [group]
            ids = [workflow_unit_id(workflow)]
            kind = UnitKind.WORKFLOW
        else:
            earlier = _previous_parts(before, workflow, group) or _parts_by_location(
                group, count, located or {}
            )
            limit = part_limit(len(group), count, config.part_slack, capacity.fill)
            cut = split_members(group, count, limit, graph.peers, earlier, config.seed)
            ids = [part_unit_id(workflow, i) for i in range(count)]
            kind = UnitKind.PART
        for index, (uid, share) in enumerate(zip(ids, cut, strict=True)):
            units[uid] = Unit(uid, kind, workflow, index, frozenset(share))
            unit_of.update(dict.fromkeys(share, uid))
        parts[workflow] = tuple(ids)

    attached: dict[UnitId, set[AgentId]] = {}
    member_unit = dict(unit_of)  # loners attach to members' units, not to each other
    for agent in agents:
        if agent in home:
            continue
        weights: dict[UnitId, float] = {}
        for peer, w in graph.peers(agent).items():
            peer_unit = member_unit.get(peer)
            if peer_unit is not None:
                weights[peer_unit] = weights.get(peer_unit, 0.0) + w
        joined = choose_home(weights, before.unit_of.get(agent), config.home_stickiness)
        if joined is None:
            solo = solo_unit_id(agent)
            units[solo] = Unit(solo, UnitKind.SOLO, None, 0, frozenset((agent,)))
            unit_of[agent] = solo
        else:
            attached.setdefault(joined, set()).add(agent)
    for uid, extra in attached.items():
        unit = units[uid]
        units[uid] = Unit(uid, unit.kind, unit.workflow, unit.index, unit.agents | extra)
        unit_of.update(dict.fromkeys(extra, uid))
    return Units(units, unit_of, home, parts)


def _previous_parts(before: Units, workflow: WorkflowId, group: list[AgentId]) -> dict[str, int]:
    """Part index each member had last round, for members that were in this workflow's parts."""
    earlier: dict[AgentId, int] = {}
    for agent in group:
        uid = before.unit_of.get(agent)
        unit = before.units.get(uid) if uid is not None else None
        if unit is not None and unit.kind is UnitKind.PART and unit.workflow == workflow:
            earlier[agent] = unit.index
    return earlier


def _parts_by_location(
    group: list[AgentId], count: int, located: Mapping[AgentId, str]
) -> dict[AgentId, int]:
    """Part index by gateway, most populated first, when the members sit on several."""
    on: dict[str, list[AgentId]] = {}
    for agent in group:
        gateway = located.get(agent)
        if gateway is not None:
            on.setdefault(gateway, []).append(agent)
    if len(on) < 2:
        return {}
    ranked = sorted(on, key=lambda g: (-len(on[g]), g))[:count]
    return {agent: index for index, g in enumerate(ranked) for agent in on[g]}
