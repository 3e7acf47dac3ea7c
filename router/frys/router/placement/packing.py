"""One placement round, phase by phase, on the units' current places.

1. units without a gateway are placed: by the multilevel partitioner when they are many
   (:mod:`~frys.router.placement.fresh`), else one by one; then, for free, members a
   workflow has on a gateway where it has few are gathered where it has more;
2. units leave draining gateways within the move budget;
3. a gateway above the hard cap, or forecast above it before the next round, sheds;
4. a gateway below the low mark (a joiner) is filled up to the mean, over as many
   rounds as the budget needs;
5. elective moves that pay for themselves: whole workflows' stragglers first
   (:mod:`~frys.router.placement.gather`), then single units
   (:mod:`~frys.router.placement.economy`); none for a dwell time after a gateway
   joined or left, so a membership change moves only what it must;
6. units whose agents changed workflows follow them.

Between the fill cap and the hard cap a gateway is left alone: that band is what lets a
leave move only the leaver's units, and a gateway that grows past the fill cap simply
stops receiving newcomers. Re-planning unchanged input moves nobody: every move either
fixes a cap or saves more than it costs, and after it nothing is left that does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from frys.router.placement.balance import drain, fill, place_homeless, shed
from frys.router.placement.blocks import NOWHERE, Block, Node
from frys.router.placement.economy import refine, rehome
from frys.router.placement.fresh import place_fresh
from frys.router.placement.gather import gather
from frys.router.placement.model import MoveReason
from frys.router.placement.state import RoundState

_GROUP_SHARE = 1.0
"""Largest group the partitioner coarsens to, as a share of the mean load: a gateway's
worth, so a big workflow and the members it shares with others can form one group
(measured: half a gateway's worth left big workflows' members scattered)."""


@dataclass(frozen=True, slots=True)
class NodeMove:
    node: Node
    source: Block
    target: Block
    reason: MoveReason


@dataclass(frozen=True, slots=True)
class Packing:
    """What a round changed."""

    moves: tuple[NodeMove, ...]
    placed: frozenset[Node]
    """Units that had no gateway and got one (no client moved)."""
    spent: int


def pack(state: RoundState, draining: Sequence[Block] = ()) -> Packing:
    """Run one round on ``state``; ``draining`` gateways hold units but lose them."""
    blocks = state.blocks
    cap = state.capacity
    homeless = [v for v, b in enumerate(blocks.block) if b == NOWHERE]
    total = sum(blocks.size)
    unplaced = sum(blocks.size[v] for v in homeless)
    members: list[list[Node]] = [[] for _ in blocks.weight]
    for node, counts in enumerate(blocks.counts):
        for w in counts:
            members[w].append(node)
    if homeless and unplaced >= state.pace.fresh_share * total:
        place_fresh(state, homeless, max(1, int(_GROUP_SHARE * cap.mean)))
    else:
        place_homeless(state, homeless)
    gather(state, members, elective=False)
    leaving = frozenset(draining)
    drain(state, [v for v, b in enumerate(blocks.block) if b in leaving])
    for gateway in sorted(state.receivers, key=lambda b: (-state.projected(b), b)):
        if state.projected(gateway) > cap.hard:
            shed(state, gateway)
    for gateway in sorted(state.receivers, key=lambda b: (state.load(b), b)):
        joining = gateway in state.joining and state.load(gateway) < cap.mean - cap.tolerance
        if state.load(gateway) < cap.low or joining:
            fill(state, gateway)
    if state.pace.elective:
        gather(state, members, elective=True)
        refine(state, members)
    rehome(state)
    moves = []
    for node, target in enumerate(blocks.block):
        source = state.origin[node]
        if source != NOWHERE and source != target:
            reason = state.reason.get(node, MoveReason.AFFINITY)
            moves.append(NodeMove(node, source, target, reason))
    placed = frozenset(v for v in homeless if blocks.block[v] != NOWHERE)
    return Packing(tuple(moves), placed, state.spent)
