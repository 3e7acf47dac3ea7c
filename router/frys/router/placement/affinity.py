"""How strongly units talk to each other, and which units form affinity groups.

The unit graph is small (a node per workflow, not per agent), so Louvain groups it in
well under a second. Its community labels are arbitrary and churn between runs: they
only say which units like to share a gateway, never which gateway.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx

from frys.router.placement.graph import InteractionGraph
from frys.router.placement.model import UnitId
from frys.router.placement.units import Units

Adjacency = dict[UnitId, dict[UnitId, float]]


def unit_graph(units: Units, graph: InteractionGraph) -> Adjacency:
    """Traffic between units: direct messages across them and ties to foreign workflows.

    Traffic inside a unit never leaves its gateway and is left out.
    """
    adjacency: Adjacency = {uid: {} for uid in units.units}

    def add(a: UnitId, b: UnitId, w: float) -> None:
        if a != b:
            adjacency[a][b] = adjacency[a].get(b, 0.0) + w
            adjacency[b][a] = adjacency[b].get(a, 0.0) + w

    for agent, uid in units.unit_of.items():
        own = units.home.get(agent)
        for workflow, w in graph.ties(agent).items():
            targets = units.parts.get(workflow, ())
            if workflow == own or not targets:
                continue
            share = w / len(targets)
            for target in targets:
                add(uid, target, share)
        for peer, w in graph.peers(agent).items():
            other = units.unit_of.get(peer)
            if other is not None and agent < peer:
                add(uid, other, w)
    return adjacency


def affinity_groups(
    adjacency: Mapping[UnitId, Mapping[UnitId, float]], seed: int, resolution: float = 1.0
) -> dict[UnitId, int]:
    """Group index of every unit: Louvain communities of the unit graph, fixed seed."""
    g = nx.Graph()
    g.add_nodes_from(sorted(adjacency))
    for a in sorted(adjacency):
        for b, w in adjacency[a].items():
            if a < b and w > 0:
                g.add_edge(a, b, weight=w)
    if g.number_of_edges() == 0:
        return {uid: i for i, uid in enumerate(sorted(adjacency))}
    communities = nx.community.louvain_communities(
        g, weight="weight", resolution=resolution, seed=seed
    )
    ordered = sorted((sorted(c) for c in communities), key=lambda c: (-len(c), c[0]))
    return {uid: index for index, members in enumerate(ordered) for uid in members}


def affinity_by_gateway(
    unit: UnitId,
    adjacency: Mapping[UnitId, Mapping[UnitId, float]],
    assignment: Mapping[UnitId, str],
) -> dict[str, float]:
    """Traffic between ``unit`` and the units on each gateway."""
    out: dict[str, float] = {}
    for other, w in adjacency.get(unit, {}).items():
        gateway = assignment.get(other)
        if gateway is not None:
            out[gateway] = out.get(gateway, 0.0) + w
    return out
