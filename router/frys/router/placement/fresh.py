"""Placing many units at once: a multilevel partitioner (coarsen, place, refine).

Placing units one by one in arrival order (streaming, as LDG does) decides early units
before it knows where their partners will go. When many units have no gateway (a first
plan, a router restarted without locations) they are placed as a multilevel partitioner
does, on the same cost as every other phase (:mod:`~frys.router.placement.blocks`):

1. **coarsen**: size-capped label propagation merges units into groups that share
   workflows or talk directly (each unit joins the group holding the most of its first
   workflow, or of its direct partners, when that saves copies); groups of groups follow,
   until the groups stop shrinking. A unit in several workflows pulls their groups
   together one level up, which single-unit moves cannot do.
2. **place** the coarsest groups, biggest first, each where it saves most, under the mean
   plus tolerance first, under the fill cap next (a group that fits nowhere whole is
   placed unit by unit);
3. **refine** every level on the way down, coarsest first: a group moves to the gateway
   where it saves most, as long as that gateway stays under the fill cap; single units
   are refined by the economy that ends every round (where, placed this round, they
   move for free).

Units already placed stay where they are and count in every gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from frys.router.placement.balance import place_homeless
from frys.router.placement.blocks import NOWHERE, Block, Blocks, Node
from frys.router.placement.state import RoundState

_LEVELS = 5
_CLUSTER_PASSES = 3
_GROUP_PASSES = 3
_REFINED = 0.5
"""Levels with more groups than this share of the units are left to the economy, which
refines single units anyway (for free, as they were placed in this round)."""


def place_fresh(state: RoundState, free: Sequence[Node], max_group: int) -> None:
    """Place the units ``free`` (all without a gateway) on the receivers."""
    blocks = state.blocks
    levels = _hierarchy(blocks, free, int(state.capacity.fill), max_group)
    top = levels[-1]
    for members in sorted(top, key=lambda m: (-_size(blocks, m), m[0])):
        target = _first_target(state, members)
        if target is None:  # fits nowhere whole: its units go one by one
            place_homeless(state, members)
            continue
        for v in members:
            state.place(v, target)
    for groups in reversed(levels[1:]):
        if len(groups) <= _REFINED * len(free):  # nearly single units: the economy does
            refine_groups(state, groups, _GROUP_PASSES)


def _hierarchy(
    blocks: Blocks, free: Sequence[Node], fill: int, max_group: int
) -> list[list[list[Node]]]:
    """Levels of ever coarser groups of ``free``, finest (single units) first."""
    levels: list[list[list[Node]]] = [[[v] for v in free]]
    whole = _whole_workflows(blocks, free, fill)
    if len(whole) < len(free):
        levels.append(whole)
    while len(levels) <= _LEVELS:
        grouped = _coarsen(blocks, levels[-1], max_group)
        if len(grouped) > 0.9 * len(levels[-1]):
            break
        levels.append(grouped)
    return levels


def refine_groups(state: RoundState, groups: Sequence[Sequence[Node]], passes: int) -> int:
    """Move whole groups (placed this round) where they save most, a tolerance under the
    fill cap (the top of the band is kept for agents that follow their workflows)."""
    blocks = state.blocks
    fill = state.capacity.fill - state.capacity.tolerance
    low = (state.capacity.low + state.capacity.mean) / 2
    counted = [(list(members), _counts(blocks, members)) for members in groups]
    receiving = frozenset(state.receivers)
    moves = 0
    for _ in range(passes):
        moved = 0
        for members, counts in counted:
            size = _size(blocks, members)
            here = blocks.block[members[0]]
            if state.load(here) - size < low:
                continue
            # only gateways holding some workflow or partner of the group can gain
            near: set[Block] = set()
            for w in counts:
                near.update(blocks.phi[w])
            for v in members:
                near.update(blocks.block[u] for u in blocks.adj[v])
            near.discard(here)
            targets = sorted(near & receiving)
            if not targets:
                continue
            gains = _group_gains(blocks, members, counts, targets)
            best: tuple[float, float, Block] | None = None
            for target, gain in gains.items():
                if gain <= 1e-12 or state.load(target) + size > fill:
                    continue
                key = (gain, -state.load(target), -target)
                if best is None or key > best:
                    best = key
            if best is not None:
                for v in members:
                    blocks.put(v, -best[2])
                moved += 1
        moves += moved
        if moved == 0:
            break
    return moves


# --- coarsening -------------------------------------------------------------------------------
def _whole_workflows(blocks: Blocks, free: Sequence[Node], limit: int) -> list[list[Node]]:
    """Units of the same workflows together (the pieces of a cut workflow), up to
    ``limit`` connections: a workflow that fits a gateway is never cut by coarsening."""
    by_key: dict[tuple[int, ...], list[Node]] = {}
    for v in free:
        by_key.setdefault(tuple(sorted(blocks.counts[v])) or (-1 - v,), []).append(v)
    out: list[list[Node]] = []
    for nodes in by_key.values():
        group: list[Node] = []
        size = 0
        for v in sorted(nodes, key=lambda n: (-blocks.size[n], n)):
            if group and size + blocks.size[v] > limit:
                out.append(group)
                group, size = [], 0
            group.append(v)
            size += blocks.size[v]
        out.append(group)
    return out


def _coarsen(blocks: Blocks, groups: list[list[Node]], max_group: int) -> list[list[Node]]:
    """Size-capped label propagation over ``groups``; returns the merged groups."""
    level = Blocks(blocks.weight, blocks.direct_weight)
    index: dict[Node, int] = {}
    for i, members in enumerate(groups):
        index.update(dict.fromkeys(members, i))
    rows: list[dict[int, float]] = [{} for _ in groups]
    for i, members in enumerate(groups):
        row = rows[i]
        for v in members:
            for other, rate in blocks.adj[v].items():
                j = index.get(other)
                if j is not None and j != i:
                    row[j] = row.get(j, 0.0) + rate
    for i, members in enumerate(groups):
        level.add(_size(blocks, members), _counts(blocks, members), rows[i], block=i)
    order = sorted(range(len(groups)), key=lambda i: (-level.size[i], i))
    partners = [[j for j, _ in sorted(row.items(), key=lambda kv: -kv[1])[:3]] for row in rows]
    for _ in range(_CLUSTER_PASSES):
        leaders = _leaders(level)
        moved = 0
        for i in order:
            here = level.block[i]
            candidates: set[Block] = set()
            for w in level.counts[i]:
                candidates.update(leaders[w])
            candidates.update(level.block[j] for j in partners[i])
            candidates.discard(here)
            if not candidates:
                continue
            size = level.size[i]
            best: tuple[float, int] | None = None
            for target, gain in level.gains(i, candidates).items():
                if gain > 1e-12 and level.load.get(target, 0) + size <= max_group:
                    key = (gain, -target)
                    if best is None or key > best:
                        best = key
            if best is not None:
                level.put(i, -best[1])
                moved += 1
        if moved == 0:
            break
    merged: dict[Block, list[Node]] = {}
    for i, members in enumerate(groups):
        merged.setdefault(level.block[i], []).extend(members)
    return [sorted(m) for _, m in sorted(merged.items())]


def _leaders(level: Blocks, top: int = 3) -> list[list[Block]]:
    """The clusters holding the most connections of each workflow: where its members
    would join it. Refreshed once a pass, which is cheap and close enough."""
    out: list[list[Block]] = []
    for row in level.phi:
        if len(row) <= top:
            out.append(list(row))
        else:
            out.append(sorted(row, key=lambda b: (-row[b], b))[:top])
    return out


# --- placing and measuring groups -------------------------------------------------------------
def _first_target(state: RoundState, members: Sequence[Node]) -> Block | None:
    """Where a group saves most, under the mean plus tolerance, else under the fill cap;
    ``None`` when it fits nowhere whole."""
    blocks = state.blocks
    size = _size(blocks, members)
    gains = _group_gains(blocks, members, _counts(blocks, members), state.receivers)
    cap = state.capacity
    for limit in (cap.mean + cap.tolerance, cap.fill):
        fitting = [b for b in state.receivers if state.load(b) + size <= limit]
        if fitting:
            return max(fitting, key=lambda b: (gains.get(b, 0.0), -state.load(b), -b))
    return None


def _size(blocks: Blocks, members: Sequence[Node]) -> int:
    return sum(blocks.size[v] for v in members)


def _counts(blocks: Blocks, members: Sequence[Node]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in members:
        for w, c in blocks.counts[v].items():
            out[w] = out.get(w, 0) + c
    return out


def _group_gains(
    blocks: Blocks,
    members: Sequence[Node],
    counts: Mapping[int, int],
    targets: Sequence[Block],
) -> dict[Block, float]:
    """Gain of moving all ``members`` (on one block, or on none) to each target."""
    source = blocks.block[members[0]]
    weight = blocks.weight
    leaving = 0.0
    rows = []
    for w, c in counts.items():
        row = blocks.phi[w]
        if source != NOWHERE and row.get(source, 0) == c:
            leaving += weight[w]
        rows.append((row, weight[w]))
    inside = set(members) if len(members) > 1 else {members[0]}
    near: dict[Block, float] = {}
    for v in members:
        for other, rate in blocks.adj[v].items():
            if other in inside:
                continue
            b = blocks.block[other]
            if b != NOWHERE:
                near[b] = near.get(b, 0.0) + rate
    here = near.get(source, 0.0) if source != NOWHERE else 0.0
    out: dict[Block, float] = {}
    for target in targets:
        if target == source:
            continue
        saved = leaving
        for row, wt in rows:
            if target not in row:
                saved -= wt
        out[target] = saved + blocks.direct_weight * (near.get(target, 0.0) - here)
    return out
