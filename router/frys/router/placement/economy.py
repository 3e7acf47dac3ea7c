"""Elective moves: a unit moves only when the copies it saves pay for the move.

Moving a client costs a reconnect, a resubscribe and a resume (``migration_cost`` broker
copies per client). A unit moves by choice only when the copies it saves per second, over
``payback_horizon`` seconds, exceed that: a lone member rejoins its workflow at once,
while a workflow of fifty never follows one member that left it. The horizon is shorter
when a growing workflow will spill off the target before it ends (the saving ends then).
The target stays under the fill cap (a tolerance below it, unless the unit's agents just
changed workflows: that top band is kept for them) and the source above the low mark;
units moved in this round for balance stay put, a client inside its dwell time stays put
unless its workflows changed, and a workflow sees at most ``workflow_moves`` elective
unit moves per round. A unit never moves to join a group of its workflow less than half
its size (:func:`follows`); a unit whose agents just changed workflows goes where its
workflows are even when the move alone saves nothing yet (:func:`rehome`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from frys.router.placement.blocks import Block, Node
from frys.router.placement.model import MoveReason
from frys.router.placement.state import RoundState

_EPS = 1e-9


def refine(state: RoundState, members: Sequence[Sequence[Node]] | None = None) -> int:
    """Make every elective move that pays for itself; returns how many were made.

    ``members`` (the units of each workflow) lets later passes look only at units whose
    workflows or partners a move touched: nothing else can have changed.
    """
    blocks = state.blocks
    horizon = state.pace.payback_horizon
    receiving = frozenset(state.receivers)
    made = 0
    look: Iterable[Node] = range(len(blocks.block))
    for _ in range(state.pace.refine_passes):
        proposals: list[tuple[float, Node, Block]] = []
        for node in look:
            here = blocks.block[node]
            if here not in receiving or node in state.reason or not state.elective(node):
                continue
            targets = blocks.neighbours(node) & receiving
            if not targets:
                continue
            best = _best(state, node, targets)
            if best is None:
                continue
            net = blocks.gain(node, best) * horizon - state.move_cost(node)
            if net > _EPS:
                proposals.append((net, node, best))
        changed: list[Node] = []
        for _, node, target in sorted(proposals, key=lambda p: (-p[0], p[1])):
            if node in state.reason or not state.elective(node) or not state.affordable(node):
                continue
            size = blocks.size[node]
            here = blocks.block[node]
            if state.load(target) + size > state.ceiling((node,)) + _EPS:
                continue
            if state.load(here) - size < state.floor((node,)) or follows(state, node, target):
                continue
            gain = blocks.gain(node, target)
            blocks.put(node, target)
            payback = state.payback((node,), target)
            blocks.put(node, here)
            if gain * payback - state.move_cost(node) <= _EPS:
                continue
            if node in state.fresh and state.origin[node] == -1:
                blocks.put(node, target)
            else:
                reason = MoveReason.REGROUP if node in state.regrouped else MoveReason.AFFINITY
                state.move(node, target, reason)
            changed.append(node)
        made += len(changed)
        if not changed:
            break
        if members is not None:
            touched: set[Node] = set()
            for node in changed:
                for w in blocks.counts[node]:
                    touched.update(members[w])
                touched.update(blocks.adj[node])
            look = sorted(touched)
        else:
            look = range(len(blocks.block))
    return made


def rehome(state: RoundState) -> int:
    """Units whose agents changed workflows and that no saving moved yet go where their
    workflows weigh most (members × weight), when that is clearly more than where they
    are and it has room: a member that joined a workflow sits with it even while another
    straggler keeps the move from saving anything on its own. Returns the moves made."""
    blocks = state.blocks
    receiving = frozenset(state.receivers)
    made = 0
    for node in sorted(state.regrouped):
        here = blocks.block[node]
        if here not in receiving or node in state.reason or not state.elective(node):
            continue
        size = blocks.size[node]
        ceiling = state.ceiling((node,))
        presence: dict[Block, float] = {}
        for w, c in blocks.counts[node].items():
            for b, n in blocks.phi[w].items():
                presence[b] = presence.get(b, 0.0) + blocks.weight[w] * (
                    n - (c if b == here else 0)
                )
        mine = presence.get(here, 0.0)
        options = [
            b
            for b, p in presence.items()
            if b != here and b in receiving and p > 2 * mine and state.load(b) + size <= ceiling
        ]
        if not options or not state.affordable(node):
            continue
        target = max(options, key=lambda b: (presence[b], -state.load(b), -b))
        state.move(node, target, MoveReason.REGROUP)
        made += 1
    return made


def _best(state: RoundState, node: Node, targets: frozenset[Block] | set[Block]) -> Block | None:
    """The target saving most that has room for the unit."""
    blocks = state.blocks
    size = blocks.size[node]
    ceiling = state.ceiling((node,))
    best: tuple[float, float, Block] | None = None
    for target, gain in blocks.gains(node, targets).items():
        if gain <= _EPS or state.load(target) + size > ceiling + _EPS:
            continue
        if follows(state, node, target):
            continue
        key = (gain, -state.load(target), -target)
        if best is None or key > best:
            best = key
    return None if best is None else -best[2]


def follows(state: RoundState, node: Node, target: Block) -> bool:
    """Whether the move would have a unit follow fewer members of its workflow than it
    holds: it is the last of a workflow where it is, and joins a smaller group of it that
    is a single member or less than half its size. Members go where about as many of
    their workflow are or more, so a workflow never follows one member."""
    blocks = state.blocks
    here = blocks.block[node]
    for w, c in blocks.counts[node].items():
        row = blocks.phi[w]
        there = row.get(target, 0)
        if row.get(here, 0) == c and 0 < there < c and (there < 2 or 2 * there < c):
            return True
    return False
