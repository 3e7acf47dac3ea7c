"""Gathering a workflow: all its members on one gateway move to another at once.

Single-unit moves get stuck where a big workflow reaches a gateway only through a few
members that also belong to small workflows there: moving any one of them alone saves
nothing (the others keep the big workflow on that gateway), so none moves, and the big
workflow's broadcasts keep paying for that gateway. Moving them together saves the big
workflow's weight at the cost of the small ones', which is usually well worth it since
broadcasts grow with workflow size. The same holds for a growing workflow that spilled
over onto a second gateway. Members only go where at least half as many of their
workflow are, and never to a single member: a workflow never follows one member.

When the gateway they should join is full, small units of other workflows that lose no
broadcast copy by leaving make room first, never more connections than the gathering
brings. Each gathering is tried on
the blocks and undone unless it saves more than it costs over the payback horizon, the
clients' moves included, with every gateway under the fill cap; heavier workflows go
first, so theirs is the saving that wins when two compete.
"""

from __future__ import annotations

from collections.abc import Sequence

from frys.router.placement.blocks import Block, Node
from frys.router.placement.model import MoveReason
from frys.router.placement.state import RoundState

_EPS = 1e-9
_TARGETS = 2
"""Gateways tried per gathering: the two holding most of the workflow."""
_EVICTIONS = 16
"""Gatherings per round that may make room by moving other units: the heaviest
workflows' (trying costs a look at every unit on the target)."""


def gather(state: RoundState, members: Sequence[Sequence[Node]], *, elective: bool) -> int:
    """Try to bring each workflow's members on a minor gateway to a major one.

    ``members`` lists, per workflow, the units holding it. With ``elective``, only units
    that may move by choice take part and client moves count as costs; otherwise only
    units placed in this round move (free). Returns the gatherings made.
    """
    blocks = state.blocks
    horizon = state.pace.payback_horizon
    receiving = frozenset(state.receivers)
    made = 0
    evictions = [_EVICTIONS]
    order = sorted(range(len(members)), key=lambda w: (-blocks.weight[w], w))
    for w in order:
        row = blocks.phi[w]
        if len(row) < 2:
            continue
        for source in sorted(row, key=lambda b: (row.get(b, 0), b)):
            if len(row) < 2 or source not in row:
                break
            nodes = [v for v in members[w] if blocks.block[v] == source]
            if not nodes or not all(_free(state, v, elective) for v in nodes):
                continue
            if state.load(source) < state.floor(nodes) and source in receiving:
                continue  # not even a full swap would keep the source above its floor
            cost = sum(state.move_cost(v) for v in nodes)
            if _ceiling(state, nodes) * horizon - cost <= _EPS:
                continue  # even if every tie of theirs came home it would not pay
            here = row[source]
            targets = [
                b
                for b in sorted(row, key=lambda b: (-row[b], b))
                if b != source
                and b in receiving
                and (row[b] >= here or (row[b] >= 2 and 2 * row[b] >= here))
            ]
            for target in targets[:_TARGETS]:
                if _attempt(state, w, nodes, source, target, elective, evictions):
                    made += 1
                    break
    return made


def _attempt(
    state: RoundState,
    w: int,
    nodes: Sequence[Node],
    source: Block,
    target: Block,
    elective: bool,
    evictions: list[int],
) -> bool:
    """Gather ``nodes`` from ``source`` onto ``target`` if it pays; True if done.
    ``evictions`` counts down the attempts that may make room on ``target``."""
    blocks = state.blocks
    size = sum(blocks.size[v] for v in nodes)
    cost = sum(state.move_cost(v) for v in nodes)
    needed = state.load(target) + size - state.ceiling(nodes)
    evicted: list[tuple[Node, Block]] = []
    saved = 0.0
    if needed > _EPS:
        if evictions[0] <= 0 or needed > size:
            return False
        evictions[0] -= 1
        made = _make_room(state, w, target, source, needed, size, elective)
        if made is None:
            return False
        evicted, lost, price = made
        saved -= lost
        cost += price
    if elective and not state.affordable(*nodes, *(v for v, _ in evicted)):
        for v, _ in reversed(evicted):
            blocks.put(v, target)
        return False
    saved += _try(state, nodes, target)
    horizon = state.payback(nodes, target)
    kept = state.load(source) >= state.floor(nodes) or source not in state.receivers
    if kept and saved > _EPS and saved * horizon - cost > _EPS:
        for v in nodes:
            blocks.put(v, source)
        for v, _ in evicted:
            blocks.put(v, target)
        for v, dest in evicted:
            _record(state, v, dest)
        for v in nodes:
            _record(state, v, target)
        return True
    for v in reversed(nodes):
        blocks.put(v, source)
    for v, _ in reversed(evicted):
        blocks.put(v, target)
    return False


def _make_room(
    state: RoundState,
    w: int,
    target: Block,
    source: Block,
    needed: float,
    most: int,
    elective: bool,
) -> tuple[list[tuple[Node, Block]], float, float] | None:
    """Move units of other workflows off ``target`` until ``needed`` connections are free,
    never more than ``most``, the size of the gathering (it never moves more clients of
    others than of its own; they may take its place on ``source``). Only units that hold
    all of their workflows' members on ``target`` go, smallest first: elsewhere they reach
    as few gateways as before, so they lose no broadcast copy, at most some direct
    messages. Returns them with their destinations, the copies per second they lose, and
    their clients' move cost; ``None`` (nothing moved) if it cannot."""
    blocks = state.blocks
    ceiling = state.capacity.fill - state.capacity.tolerance
    candidates = []
    for v in blocks.on.get(target, ()):
        counts = blocks.counts[v]
        if w in counts or not counts or not _free(state, v, elective):
            continue
        if all(blocks.phi[x].get(target, 0) == c for x, c in counts.items()):
            candidates.append(v)
    candidates.sort(key=lambda v: (blocks.size[v], v))
    evicted: list[tuple[Node, Block]] = []
    freed = 0
    lost_total = 0.0
    price = 0.0
    for v in candidates:
        if freed >= needed:
            break
        size = blocks.size[v]
        if freed + size > most:
            break
        # the source may take them: a swap (the gathered members are about to leave it)
        room = [
            b
            for b in state.receivers
            if b != target and state.load(b) - (most if b == source else 0) + size <= ceiling
        ]
        if not room:
            continue
        gains = blocks.gains(v, room)
        dest = max(room, key=lambda b: (gains[b], -state.load(b), -b))
        evicted.append((v, dest))
        lost_total -= gains[dest]
        price += state.move_cost(v)
        blocks.put(v, dest)
        freed += size
    if freed < needed:
        for v, _ in reversed(evicted):
            blocks.put(v, target)
        return None
    return evicted, lost_total, price


def _free(state: RoundState, node: Node, elective: bool) -> bool:
    if node in state.reason:
        return False  # moved this round already, for balance or by choice
    if elective:
        return state.elective(node) and state.affordable(node)
    return node in state.fresh


def _ceiling(state: RoundState, nodes: Sequence[Node]) -> float:
    """Most that moving ``nodes`` anywhere could save: every workflow and partner of
    theirs brought onto one gateway."""
    blocks = state.blocks
    workflows: set[int] = set()
    direct = 0.0
    for v in nodes:
        workflows.update(blocks.counts[v])
        direct += sum(blocks.adj[v].values())
    return sum(blocks.weight[w] for w in workflows) + blocks.direct_weight * direct


def _try(state: RoundState, nodes: Sequence[Node], target: Block) -> float:
    """Move ``nodes`` to ``target`` one after the other; returns what it saved in all."""
    blocks = state.blocks
    saved = 0.0
    for v in nodes:
        saved += blocks.gain(v, target)
        blocks.put(v, target)
    return saved


def _record(state: RoundState, node: Node, target: Block) -> None:
    """Move a unit for real: free if it was placed this round, else a counted move."""
    if state.origin[node] == -1 and node in state.fresh:
        state.blocks.put(node, target)
    else:
        reason = MoveReason.REGROUP if node in state.regrouped else MoveReason.AFFINITY
        state.move(node, target, reason)
