"""Moves the caps force: place the homeless, drain, shed above the hard cap, fill joiners.

- A unit without a gateway goes where it saves most among the gateways that stay under
  the fill cap with its workflow's forecast growth, then without it; a unit nothing pulls
  anywhere follows its consistent-hash order under the mean, so new workflows spread.
- A draining gateway's units leave within the move budget.
- A gateway above the hard cap, or forecast above it by the next round, sheds just the
  excess: units that lose least per connection, exact-size ones first, to receivers
  that stay under the fill cap. Any unit may go, whatever its dwell time.
- A gateway below the low mark (a joiner) takes units up to the mean from the gateways
  above it, those above the fill cap first, the ones whose departure costs least per
  connection.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from frys.router.placement.blocks import Block, Node
from frys.router.placement.model import MoveReason
from frys.router.placement.state import RoundState

_EPS = 1e-9


def target_for(state: RoundState, node: Node) -> Block:
    """Best receiver for one unit: where it saves most under the fill cap."""
    blocks = state.blocks
    size = blocks.size[node]
    cap = state.capacity
    gains = blocks.gains(node, state.receivers)
    order = state.order(node)
    position = {b: i for i, b in enumerate(order)}
    if max(gains.values(), default=0.0) - min(gains.values(), default=0.0) <= _EPS:
        # nothing pulls it anywhere: its hash order, under the mean first
        for limit in (cap.mean + cap.tolerance, cap.fill):
            for b in order:
                if state.projected(b) + size <= limit:
                    return b
    grow = state.growth.get(node, 0.0)
    tiers = (grow, 0.0) if grow > 0 else (0.0,)
    for extra in tiers:
        fitting = [
            b for b in state.receivers if state.projected(b) + size + extra <= cap.fill + _EPS
        ]
        if fitting:
            return max(
                fitting,
                key=lambda b: (round(gains.get(b, 0.0), 9), -position.get(b, len(position))),
            )
    return min(state.receivers, key=lambda b: (state.load(b), b))


def place_homeless(state: RoundState, nodes: Iterable[Node]) -> None:
    """Give each unit without a gateway one, biggest first."""
    for node in sorted(nodes, key=lambda v: (-state.blocks.size[v], v)):
        state.place(node, target_for(state, node))


def drain(state: RoundState, nodes: Iterable[Node]) -> None:
    """Move units off draining gateways, biggest first, as far as the budget goes."""
    for node in sorted(nodes, key=lambda v: (-state.blocks.size[v], v)):
        if state.affordable(node):
            state.move(node, target_for(state, node), MoveReason.EVACUATE)


def shed(state: RoundState, gateway: Block) -> None:
    """Bring a gateway (forecast) above the hard cap just under it, at the least cost."""
    blocks = state.blocks
    cap = state.capacity
    goal = cap.hard - cap.tolerance
    horizon = state.pace.payback_horizon
    while state.projected(gateway) > goal + _EPS:
        excess = state.projected(gateway) - goal
        options: list[tuple[tuple[int, float, int, Node], Node, Block]] = []
        for node in sorted(blocks.on.get(gateway, ())):
            size = blocks.size[node]
            room: list[Block] = []
            # receivers stay under the fill cap; only when none can, under the goal
            for limit in (cap.fill, goal):
                room = [
                    b
                    for b in state.receivers
                    if b != gateway
                    and state.projected(b) + size <= limit + _EPS
                    and state.projected(b) + size < state.projected(gateway)
                ]
                if room:
                    break
            if not room:
                continue
            gains = blocks.gains(node, room)
            target = max(room, key=lambda b: (gains[b], -state.load(b), -b))
            price = state.move_cost(node) - gains[target] * horizon
            fits = 0 if excess <= size <= excess + cap.tolerance else 1 if size < excess else 2
            per = price / size
            options.append(((fits, per, size if fits == 2 else -size, node), node, target))
        if not options:
            return
        _, node, target = min(options)
        state.move(node, target, MoveReason.OVERLOAD)


def fill(state: RoundState, joiner: Block) -> None:
    """Lift a gateway below the low mark to the mean, taking from gateways above it."""
    blocks = state.blocks
    cap = state.capacity
    floor = cap.mean - cap.tolerance
    ceiling = cap.mean + cap.tolerance
    heap: list[tuple[int, int, float, int, Node]] = []

    def key(node: Node) -> tuple[int, int, float, int, Node]:
        size = blocks.size[node]
        loss = -blocks.gain(node, joiner)
        tier = 0 if node in state.fresh else 2 if node in state.pinned else 1
        crowded = 0 if state.load(blocks.block[node]) > cap.fill else 1
        return (tier, crowded, loss / size, -size, node)

    for node, block in enumerate(blocks.block):
        if block in state.receivers and block != joiner and state.load(block) > cap.mean:
            heapq.heappush(heap, key(node))
    while heap and state.load(joiner) < floor:
        item = heapq.heappop(heap)
        node = item[4]
        donor = blocks.block[node]
        size = blocks.size[node]
        fresh_key = key(node)
        if fresh_key > item and heap and fresh_key > heap[0]:
            heapq.heappush(heap, fresh_key)  # its cost rose since: look again later
            continue
        room = ceiling - state.load(joiner)
        if (
            donor == joiner
            or state.load(donor) - size < floor
            or size > room
            or not state.affordable(node)
        ):
            continue
        state.move(node, joiner, MoveReason.BALANCE)
