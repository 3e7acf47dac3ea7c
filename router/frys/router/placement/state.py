"""One round's bookkeeping: where units started, what moved and why, what is left to spend.

Every phase of a round (placing, draining, shedding, filling, elective moves) changes the
same :class:`RoundState`, so the rules that hold across phases live here once: a unit
placed in this round moves again for free; a budgeted move spends connections from the
round's budget; an elective move respects each client's dwell time and each workflow's
allowance of moves per round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from frys.router.placement.blocks import NOWHERE, Block, Blocks, Node
from frys.router.placement.capacity import Capacity
from frys.router.placement.model import MoveReason


@dataclass(frozen=True, slots=True)
class Pace:
    """How much one round may change, and what an elective move must earn."""

    budget: int
    """Connections the round's moves may touch; only elective moves, drains and balance
    moves are held back by it."""
    migration_cost: float
    payback_horizon: float
    workflow_moves: int
    refine_passes: int = 6
    fresh_share: float = 0.5
    elective: bool = True
    """Whether moves by choice may happen at all: not while the cluster settles after a
    gateway joined or left (the clients it moved are inside their dwell time)."""


@dataclass
class RoundState:
    """The blocks being changed and the record of what changed."""

    blocks: Blocks
    receivers: Sequence[Block]
    """Active gateways: the only blocks that take units."""
    capacity: Capacity
    pace: Pace
    pinned: frozenset[Node] = frozenset()
    """Units with a client inside its dwell time: they move only when forced."""
    joining: frozenset[Block] = frozenset()
    """Gateways that joined lately: filled up to the mean even once above the low mark,
    when the budget stopped the first round short."""
    evacuated: frozenset[Node] = frozenset()
    """Units without a gateway because theirs went down: their clients are reconnecting,
    so placing them spends from the budget like a move."""
    regrouped: frozenset[Node] = frozenset()
    """Units whose agents changed workflows: they may follow them despite the dwell."""
    expected: Mapping[Block, float] = field(default_factory=dict)
    """Connections each gateway should gain before the next round (forecast)."""
    growth: Mapping[Node, float] = field(default_factory=dict)
    """Connections a unit's workflow should gain over the forecast horizon."""
    trend: Mapping[int, float] = field(default_factory=dict)
    """Connections per second each growing workflow gains (forecast)."""
    ring: Callable[[Node], Sequence[Block]] | None = None
    """Stable preference order of gateways for a unit (consistent hashing)."""
    origin: list[Block] = field(default_factory=list)
    fresh: set[Node] = field(default_factory=set)
    """Units placed or moved in this round: moving them again costs nothing more (their
    clients are told only where they end up)."""
    reason: dict[Node, MoveReason] = field(default_factory=dict)
    spent: int = 0
    touched: dict[int, int] = field(default_factory=dict)
    """Elective moves per workflow in this round."""
    _receiving: frozenset[Block] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = list(self.blocks.block)
        self._receiving = frozenset(self.receivers)

    # --- moving --------------------------------------------------------------------------
    def place(self, node: Node, target: Block) -> None:
        """Give a unit without a gateway one (its clients are new, or reconnecting)."""
        if node not in self.fresh and node in self.evacuated:
            self.spent += self.blocks.size[node]
        self.fresh.add(node)
        self.blocks.put(node, target)

    def move(self, node: Node, target: Block, reason: MoveReason) -> None:
        """Move a unit; its first move of the round spends from the budget. Forced moves
        (evacuation, overload) are not held back by the budget, but spend it: a round that
        evacuated a gateway makes few elective moves on top."""
        if node not in self.fresh:
            self.fresh.add(node)
            self.spent += self.blocks.size[node]
            self.reason.setdefault(node, reason)
            if reason in (MoveReason.AFFINITY, MoveReason.REGROUP):
                for w in self.blocks.counts[node]:
                    self.touched[w] = self.touched.get(w, 0) + 1
        self.blocks.put(node, target)

    # --- rules -----------------------------------------------------------------------------
    def affordable(self, *nodes: Node) -> bool:
        """Moving ``nodes`` stays within the round's budget (the first move of a round
        always does, so no unit is too big to move)."""
        cost = sum(self.blocks.size[v] for v in nodes if v not in self.fresh)
        if cost == 0:
            return True
        first = self.spent == 0 and self.pace.budget > 0
        return first or self.spent + cost <= self.pace.budget

    def elective(self, node: Node) -> bool:
        """May move by choice: past its dwell time, its workflows' allowance not used up."""
        if node in self.fresh:
            return True
        if node in self.pinned and node not in self.regrouped:
            return False
        allowance = self.pace.workflow_moves
        return all(self.touched.get(w, 0) < allowance for w in self.blocks.counts[node])

    def move_cost(self, node: Node) -> float:
        """What moving the unit costs in broker copies: nothing if placed this round."""
        if node in self.fresh or self.origin[node] == NOWHERE:
            return 0.0
        return self.pace.migration_cost * self.blocks.size[node]

    def payback(self, nodes: Sequence[Node], target: Block) -> float:
        """Seconds a move of ``nodes`` onto ``target`` (already counted in its load) keeps
        paying: the payback horizon, or less when one of their workflows grows and will
        spill off ``target`` before then, which ends the saving."""
        horizon = self.pace.payback_horizon
        if not self.trend:
            return horizon
        rate = max(
            (self.trend.get(w, 0.0) for v in nodes for w in self.blocks.counts[v]), default=0.0
        )
        if rate <= 0:
            return horizon
        room = self.capacity.fill - self.load(target)
        return min(horizon, max(0.0, room) / rate)

    def ceiling(self, nodes: Sequence[Node]) -> float:
        """How full a gateway may get by choice: the fill cap for units whose agents just
        changed workflows (they follow them), a tolerance below it for any other, so the
        top of the band stays free for the ones that follow."""
        if nodes and all(v in self.regrouped for v in nodes):
            return self.capacity.fill
        return self.capacity.fill - self.capacity.tolerance

    def floor(self, nodes: Sequence[Node]) -> float:
        """How empty a move by choice may leave its source: the low mark when clients
        move, halfway between it and the mean for units placed in this round, so a first
        placement ends well inside the band, not at its edge where growth of the mean
        would soon call for balancing."""
        cap = self.capacity
        if nodes and all(v in self.fresh and self.origin[v] == NOWHERE for v in nodes):
            return (cap.low + cap.mean) / 2
        return cap.low

    def load(self, block: Block) -> int:
        return self.blocks.load.get(block, 0)

    def projected(self, block: Block) -> float:
        """Load expected at the next round if nothing moves."""
        return self.blocks.load.get(block, 0) + self.expected.get(block, 0.0)

    def order(self, node: Node) -> Sequence[Block]:
        """Receivers in the unit's stable preference order."""
        if self.ring is None:
            return self.receivers
        preferred = [b for b in self.ring(node) if b in self._receiving]
        return preferred or self.receivers
