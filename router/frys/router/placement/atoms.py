"""From live agents to units: the pieces the placement moves whole.

Agents subscribed to the same workflows and sitting on the same gateway form one unit:
moving part of it elsewhere could only add broker copies, so nothing is lost by keeping it
whole, and an agent that joins or leaves a workflow changes unit at once without dragging
anyone along. A unit bigger than ``piece_max`` is cut along its sub-teams (who messages
whom), so shedding and filling can move a few clients where needed; agents keep their
piece across rounds. An agent subscribed to nothing is a unit of its own and goes where
its direct messages go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frys.router.placement.model import (
    AgentId,
    GatewayId,
    Unit,
    UnitId,
    UnitKind,
    WorkflowId,
    part_unit_id,
    solo_unit_id,
    workflows_unit_id,
)
from frys.router.placement.presence import Member
from frys.router.placement.split import PeersOf, part_limit, split_members

_GroupKey = tuple[frozenset[WorkflowId], GatewayId | None, AgentId, bool]


@dataclass(frozen=True, slots=True)
class Atoms:
    """One round's units with the indexes the partitioner works on (units by position)."""

    units: tuple[Unit, ...]
    located: tuple[GatewayId | None, ...]
    """Where each unit's agents are now; ``None``: no gateway that may hold it."""
    workflows: tuple[WorkflowId, ...]
    """Workflow of each workflow index."""
    counts: tuple[dict[int, int], ...]
    """Connections each unit brings to each of its workflows (by workflow index)."""
    adj: tuple[dict[int, float], ...]
    """Direct messages per second between units."""
    unit_of: Mapping[AgentId, int]
    piece: Mapping[AgentId, int]
    """Piece index of agents in cut groups, kept next round."""

    def index(self) -> dict[UnitId, int]:
        return {unit.id: i for i, unit in enumerate(self.units)}


def build_atoms(
    members: Mapping[AgentId, Member],
    located: Mapping[AgentId, GatewayId],
    holders: frozenset[GatewayId],
    peers: PeersOf,
    rate_scale: float,
    piece_max: int,
    previous_piece: Mapping[AgentId, int],
    slack: float = 0.05,
    unsettled: frozenset[AgentId] = frozenset(),
) -> Atoms:
    """Units of ``members``; ``located`` says where agents are (only ``holders`` count).

    Agents in ``unsettled`` (their workflows changed since they last moved) form units of
    their own, so following their workflows never takes settled agents along.
    """
    groups: dict[_GroupKey, list[AgentId]] = {}
    for agent in sorted(members):
        seen = located.get(agent)
        gateway = seen if seen in holders else None
        sig = members[agent].workflows
        key = (sig, gateway, "" if sig else agent, agent in unsettled)
        groups.setdefault(key, []).append(agent)

    pieces: list[tuple[frozenset[WorkflowId], GatewayId | None, list[AgentId], int]] = []
    piece_of: dict[AgentId, int] = {}
    for (sig, gateway, _, _), agents in groups.items():
        size = sum(members[a].connections for a in agents)
        if size <= piece_max or len(agents) < 2:
            pieces.append((sig, gateway, agents, size))
            continue
        parts = math.ceil(size / piece_max)
        limit = part_limit(len(agents), parts, slack, piece_max)
        earlier = {a: previous_piece[a] for a in agents if a in previous_piece}
        for index, share in enumerate(split_members(agents, parts, limit, peers, earlier)):
            if share:
                piece_of.update(dict.fromkeys(share, index))
                pieces.append((sig, gateway, share, sum(members[a].connections for a in share)))

    ids: dict[int, tuple[UnitId, UnitKind, int]] = {}
    by_sig: dict[frozenset[WorkflowId], list[int]] = {}
    for i, (sig, _, agents, _) in enumerate(pieces):
        if sig:
            by_sig.setdefault(sig, []).append(i)
        else:
            ids[i] = (solo_unit_id(agents[0]), UnitKind.SOLO, 0)
    for sig, indexes in by_sig.items():
        indexes.sort(key=lambda i: _rank(pieces[i]))
        base = workflows_unit_id(sig)
        shared = len(sig) > 1
        for n, i in enumerate(indexes):
            if len(indexes) == 1:
                ids[i] = (base, UnitKind.SHARED if shared else UnitKind.WORKFLOW, 0)
            else:
                ids[i] = (part_unit_id(base, n), UnitKind.SHARED if shared else UnitKind.PART, n)

    workflow_ids = sorted({w for m in members.values() for w in m.workflows})
    windex = {w: i for i, w in enumerate(workflow_ids)}
    order = sorted(range(len(pieces)), key=lambda i: ids[i][0])
    units: list[Unit] = []
    where: list[GatewayId | None] = []
    counts: list[dict[int, int]] = []
    unit_of: dict[AgentId, int] = {}
    for position, i in enumerate(order):
        sig, gateway, agents, size = pieces[i]
        uid, kind, n = ids[i]
        units.append(Unit(uid, kind, sig, n, frozenset(agents), size))
        where.append(gateway)
        counts.append({windex[w]: size for w in sorted(sig)})
        unit_of.update(dict.fromkeys(agents, position))
    adj: list[dict[int, float]] = [{} for _ in units]
    for position, i in enumerate(order):
        row = adj[position]
        for agent in pieces[i][2]:
            for peer, weight in peers(agent).items():
                if peer <= agent:
                    continue  # each pair once, from its smaller end
                other = unit_of.get(peer)
                if other is None or other == position:
                    continue
                rate = weight * rate_scale
                row[other] = row.get(other, 0.0) + rate
                back = adj[other]
                back[position] = back.get(position, 0.0) + rate
    return Atoms(
        tuple(units),
        tuple(where),
        tuple(workflow_ids),
        tuple(counts),
        tuple(adj),
        unit_of,
        piece_of,
    )


def merged(atoms: Atoms, where: Sequence[GatewayId]) -> tuple[list[Unit], list[int]]:
    """The units a plan shows: the packer's units with the same workflows that end on the
    same gateway become one (pieces and newcomers included). Returns them and, for each
    packer unit, the index of the unit it joined."""
    groups: dict[tuple[frozenset[WorkflowId], GatewayId, AgentId], list[int]] = {}
    for v, unit in enumerate(atoms.units):
        solo = next(iter(unit.agents)) if unit.kind is UnitKind.SOLO else ""
        groups.setdefault((unit.workflows, where[v], solo), []).append(v)
    by_sig: dict[frozenset[WorkflowId], list[tuple[frozenset[WorkflowId], GatewayId, AgentId]]] = {}
    for key in groups:
        if key[0]:
            by_sig.setdefault(key[0], []).append(key)
    size = {key: sum(atoms.units[v].size for v in vs) for key, vs in groups.items()}
    units: list[Unit] = []
    joined = [0] * len(atoms.units)
    for key in sorted(groups, key=lambda k: (sorted(k[0]), k[2], -size[k], k[1])):
        sig, _, solo = key
        members = groups[key]
        agents = frozenset(a for v in members for a in atoms.units[v].agents)
        if not sig:
            unit = Unit(solo_unit_id(solo), UnitKind.SOLO, sig, 0, agents, size[key])
        else:
            siblings = sorted(by_sig[sig], key=lambda k: (-size[k], k[1]))
            n = siblings.index(key)
            shared = len(sig) > 1
            if len(siblings) == 1:
                kind = UnitKind.SHARED if shared else UnitKind.WORKFLOW
                unit = Unit(workflows_unit_id(sig), kind, sig, 0, agents, size[key])
            else:
                kind = UnitKind.SHARED if shared else UnitKind.PART
                uid = part_unit_id(workflows_unit_id(sig), n)
                unit = Unit(uid, kind, sig, n, agents, size[key])
        for v in members:
            joined[v] = len(units)
        units.append(unit)
    return units, joined


def _rank(
    piece: tuple[frozenset[WorkflowId], GatewayId | None, list[AgentId], int],
) -> tuple[bool, int, str, AgentId]:
    """Order of the units of one set of workflows: placed, biggest, by gateway."""
    _, gateway, agents, size = piece
    return (gateway is None, -size, gateway or "", agents[0])
