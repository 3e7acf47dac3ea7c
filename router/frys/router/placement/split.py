"""Cutting a workflow too big for one gateway into parts along its sub-teams.

Members keep the part they had while it still exists and has room, so a re-cut moves
only newcomers and overflow. The rest are grouped into sub-teams (Louvain communities of
their direct messages, fixed seed) and each sub-team goes whole to the part it talks to
most, or to the emptiest part: a broadcast reaches every part anyway, while a sub-team's
direct messages then stay on one gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import networkx as nx

from frys.router.placement.model import AgentId

PeersOf = Callable[[AgentId], Mapping[AgentId, float]]


def part_limit(size: int, parts: int, slack: float, ceiling: float) -> int:
    """Largest part allowed: an equal share plus ``slack``, below ``ceiling`` when possible."""
    even = -(-size // parts)
    return max(even, min(int(ceiling), int(even * (1.0 + slack))))


def sub_teams(agents: Sequence[AgentId], peers: PeersOf, seed: int) -> list[list[AgentId]]:
    """Communities of direct messages among ``agents``, largest first, deterministic.

    Label propagation first gathers agents into small tight pieces, then Louvain groups
    the pieces (their internal traffic kept as self-loops): the same communities as Louvain
    on the agents, in a fraction of the time on a workflow of thousands.
    """
    members = set(agents)
    graph = nx.Graph()
    graph.add_nodes_from(sorted(members))
    for a in sorted(members):
        for b, w in peers(a).items():
            if b in members and a < b:
                graph.add_edge(a, b, weight=w)
    if graph.number_of_edges() == 0:
        return [[a] for a in sorted(members)]
    pieces = [
        sorted(p)
        for p in nx.community.fast_label_propagation_communities(graph, weight="weight", seed=seed)
    ]
    pieces.sort(key=lambda p: p[0])
    piece_of = {a: i for i, piece in enumerate(pieces) for a in piece}
    weights: dict[tuple[int, int], float] = {}
    for a, b, w in graph.edges(data="weight"):
        i, j = sorted((piece_of[a], piece_of[b]))
        weights[(i, j)] = weights.get((i, j), 0.0) + w
    condensed = nx.Graph()
    condensed.add_nodes_from(range(len(pieces)))
    condensed.add_weighted_edges_from((i, j, w) for (i, j), w in sorted(weights.items()))
    groups = nx.community.louvain_communities(condensed, weight="weight", seed=seed)
    teams = [sorted(a for i in group for a in pieces[i]) for group in groups]
    teams.sort(key=lambda team: (-len(team), team[0]))
    return teams


def split_members(
    members: Sequence[AgentId],
    parts: int,
    limit: int,
    peers: PeersOf,
    previous: Mapping[AgentId, int],
    seed: int,
) -> list[list[AgentId]]:
    """Assign ``members`` to ``parts`` parts of at most ``limit`` agents each.

    ``previous`` maps members to the part index they had; those keep it when possible.
    """
    if parts < 1 or limit * parts < len(members):
        raise ValueError("parts of this limit cannot hold every member")
    buckets: list[list[AgentId]] = [[] for _ in range(parts)]
    where: dict[AgentId, int] = {}
    loose: list[AgentId] = []
    for agent in sorted(members):
        index = previous.get(agent)
        if index is not None and 0 <= index < parts and len(buckets[index]) < limit:
            buckets[index].append(agent)
            where[agent] = index
        else:
            loose.append(agent)
    if not loose:
        return buckets
    for team in sub_teams(loose, peers, seed):
        scores = _scores(team, peers, where, parts)
        order = sorted(range(parts), key=lambda i: (-scores[i], len(buckets[i]), i))
        target = next((i for i in order if len(buckets[i]) + len(team) <= limit), None)
        if target is not None:
            buckets[target].extend(team)
            where.update(dict.fromkeys(team, target))
            continue
        for agent in team:  # too big for any part's room: place its agents one by one
            scores = _scores([agent], peers, where, parts)
            open_parts = [i for i in range(parts) if len(buckets[i]) < limit]
            best = min(open_parts, key=lambda i: (-scores[i], len(buckets[i]), i))
            buckets[best].append(agent)
            where[agent] = best
    return buckets


def _scores(
    team: Sequence[AgentId], peers: PeersOf, where: Mapping[AgentId, int], parts: int
) -> list[float]:
    """Direct-message weight from ``team`` to the agents already in each part."""
    scores = [0.0] * parts
    for agent in team:
        for peer, w in peers(agent).items():
            index = where.get(peer)
            if index is not None:
                scores[index] += w
    return scores
