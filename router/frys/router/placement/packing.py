"""Packing units onto gateways: sticky first, then affinity, always under the caps.

One round starts from where every unit is and changes as little as it can:

1. units on active gateways stay; units with no gateway (new, or whose gateway is down)
   are placed under the fill cap, a whole affinity group on one gateway when it fits,
   and units leave draining gateways within the move budget;
2. a gateway above the hard cap sheds units until it is just under it, moving as few
   connections and units as it can, whatever their dwell time;
3. elective moves, within the budget and only for units past their dwell time: a gateway
   below the low mark (a joiner) is filled up to the mean from the gateways above the
   mean, and a unit moves to where clearly more of its traffic is (``min_gain``) when
   that gateway stays near the mean and the one it leaves above the low mark.

Between the fill cap and the hard cap a gateway is left alone (the band is the
hysteresis that keeps a leave from moving more than the leaver's units), except that
units placed in this round are still free to move again: a fresh placement ends under
the fill cap and balanced, and a second round on the same input finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from frys.router.placement.affinity import affinity_by_gateway
from frys.router.placement.capacity import Capacity
from frys.router.placement.model import GatewayHealth, GatewayId, Move, MoveReason, UnitId
from frys.router.placement.ring import BoundedRing

_AFFINITY_PASSES = 32


@dataclass(frozen=True, slots=True)
class PackingInput:
    """Everything one packing round looks at."""

    sizes: Mapping[UnitId, int]
    groups: Mapping[UnitId, int]
    adjacency: Mapping[UnitId, Mapping[UnitId, float]]
    current: Mapping[UnitId, GatewayId]
    """Where units are now; units missing here have never been placed."""
    health: Mapping[GatewayId, GatewayHealth]
    """Gateways not listed count as down."""
    capacity: Capacity
    ring: BoundedRing
    """Ring over the active gateways."""
    pinned: frozenset[UnitId] = frozenset()
    """Units within their dwell time: they move only when forced."""
    budget: int = 0
    """Connections elective moves and drains may move in this round."""
    min_gain: float = 0.5


@dataclass(frozen=True, slots=True)
class Packing:
    """Outcome of a round: the new assignment and how it differs from the old one."""

    assignment: Mapping[UnitId, GatewayId]
    moves: tuple[Move, ...]
    placed: frozenset[UnitId]
    """Units that had no gateway before and got one (not moves)."""
    spent: int
    """Connections moved by budgeted moves."""


def pack(inp: PackingInput) -> Packing:
    """Run one packing round."""
    return _Packer(inp).run()


class _Packer:
    def __init__(self, inp: PackingInput) -> None:
        self.inp = inp
        self.cap = inp.capacity
        self.size = inp.sizes
        self.active = sorted(g for g, h in inp.health.items() if h is GatewayHealth.ACTIVE)
        self.load: dict[GatewayId, int] = dict.fromkeys(self.active, 0)
        self.on: dict[GatewayId, set[UnitId]] = {g: set() for g in self.active}
        self.presence: dict[int, dict[GatewayId, int]] = {}
        self.assign: dict[UnitId, GatewayId] = {}
        self.origin: dict[UnitId, GatewayId | None] = {}
        self.fresh: set[UnitId] = set()
        self.homeless: set[UnitId] = set()
        self.reason: dict[UnitId, MoveReason] = {}
        self.spent = 0

    # --- bookkeeping ---------------------------------------------------------------------
    def _put(self, unit: UnitId, gateway: GatewayId) -> None:
        size = self.size[unit]
        group = self.inp.groups.get(unit, -1)
        old = self.assign.get(unit)
        if old is not None and old in self.load:
            self.load[old] -= size
            self.on[old].discard(unit)
            self.presence[group][old] -= size
        self.assign[unit] = gateway
        if gateway in self.load:
            self.load[gateway] += size
            self.on[gateway].add(unit)
            row = self.presence.setdefault(group, {})
            row[gateway] = row.get(gateway, 0) + size

    def _move(self, unit: UnitId, gateway: GatewayId, reason: MoveReason) -> None:
        if unit not in self.fresh:
            self.spent += self.size[unit]
            self.fresh.add(unit)
        self.reason.setdefault(unit, reason)
        self._put(unit, gateway)

    def _allowed(self, unit: UnitId, *, dwell: bool, budget: bool) -> bool:
        if unit in self.fresh:
            return True
        if dwell and unit in self.inp.pinned:
            return False
        # the first move of a round may exceed a positive budget, so no unit is too big to move
        first = self.spent == 0 and self.inp.budget > 0
        over = self.spent + self.size[unit] > self.inp.budget and not first
        return not (budget and over)

    def _affinity(self, unit: UnitId) -> dict[GatewayId, float]:
        aff = affinity_by_gateway(unit, self.inp.adjacency, self.assign)
        return {g: w for g, w in aff.items() if g in self.load}

    # --- the round -----------------------------------------------------------------------
    def run(self) -> Packing:
        homeless: list[UnitId] = []
        draining: list[UnitId] = []
        for unit in sorted(self.size):
            where = self.inp.current.get(unit)
            self.origin[unit] = where
            health = self.inp.health.get(where) if where is not None else None
            if health is GatewayHealth.ACTIVE and where is not None:
                self._put(unit, where)
            elif health is GatewayHealth.DRAINING and where is not None:
                self._put(unit, where)
                draining.append(unit)
            else:
                homeless.append(unit)
        self.fresh.update(homeless)
        self.homeless.update(homeless)
        for unit in homeless:
            if self.origin[unit] is not None:
                self.reason[unit] = MoveReason.EVACUATE
        self._place(homeless, budgeted=False)
        self._place(draining, budgeted=True)
        for gateway in self.active:
            if self.load[gateway] > self.cap.hard:
                self._shed(gateway, forced=True)
        for gateway in sorted(self.active, key=lambda g: (self.load[g], g)):
            if self.load[gateway] < self.cap.low:
                self._fill(gateway)
        for gateway in sorted(self.active, key=lambda g: (-self.load[g], g)):
            if self.load[gateway] > self.cap.fill:
                self._shed(gateway, forced=False)
        self._consolidate()
        return self._outcome()

    def _outcome(self) -> Packing:
        moves = []
        for unit in sorted(self.assign):
            source, target = self.origin.get(unit), self.assign[unit]
            if source is not None and source != target:
                reason = self.reason.get(unit, MoveReason.BALANCE)
                moves.append(Move(unit, source, target, self.size[unit], reason))
        placed = frozenset(u for u in self.assign if self.origin.get(u) is None)
        return Packing(dict(self.assign), tuple(moves), placed, self.spent)

    # --- placing units without a gateway ---------------------------------------------------
    def _place(self, units: Iterable[UnitId], *, budgeted: bool) -> None:
        by_group: dict[int, list[UnitId]] = {}
        for unit in units:
            by_group.setdefault(self.inp.groups.get(unit, -1), []).append(unit)
        batches = [sorted(us, key=lambda u: (-self.size[u], u)) for us in by_group.values()]
        batches.sort(key=lambda us: (-sum(self.size[u] for u in us), us[0]))
        for batch in batches:
            if not budgeted and self._place_whole(batch):
                continue
            for unit in batch:
                if budgeted and not self._allowed(unit, dwell=False, budget=True):
                    continue
                target = self._target(unit)
                if budgeted:
                    self._move(unit, target, MoveReason.EVACUATE)
                else:
                    self._put(unit, target)

    def _place_whole(self, batch: list[UnitId]) -> bool:
        """Put a group's homeless units on one gateway when they fit together: where they
        talk to most, else where their group is; where the ring says only when they talk
        more among themselves than to placed units (else they follow those one by one)."""
        total = sum(self.size[u] for u in batch)
        walk = self.inp.ring.walk(batch[0])
        position = {g: i for i, g in enumerate(walk)}
        presence = self.presence.get(self.inp.groups.get(batch[0], -1), {})
        aff: dict[GatewayId, float] = {}
        for unit in batch:
            for gateway, w in self._affinity(unit).items():
                aff[gateway] = aff.get(gateway, 0.0) + w
        liked = [g for g in walk if aff.get(g, 0.0) > 0 or presence.get(g, 0) > 0]
        liked.sort(key=lambda g: (-aff.get(g, 0.0), -presence.get(g, 0), position[g]))
        tiers = [(liked, self.cap.fill)]
        members = set(batch)
        inner = sum(
            w for u in batch for v, w in self.inp.adjacency.get(u, {}).items() if v in members
        )
        if inner >= sum(aff.values()):  # they talk more among themselves: keep them together
            tiers += [(walk, self.cap.mean + self.cap.tolerance), (walk, self.cap.fill)]
        for candidates, limit in tiers:
            for gateway in candidates:
                if self.load[gateway] + total <= limit:
                    for unit in batch:
                        self._put(unit, gateway)
                    return True
        return False

    def _target(self, unit: UnitId) -> GatewayId:
        """Best gateway for one unit: its traffic's, else its group's, else the ring's."""
        size = self.size[unit]
        walk = self.inp.ring.walk(unit)
        position = {g: i for i, g in enumerate(walk)}
        aff = self._affinity(unit)
        presence = self.presence.get(self.inp.groups.get(unit, -1), {})
        liked = [g for g in walk if aff.get(g, 0.0) > 0 or presence.get(g, 0) > 0]
        liked.sort(key=lambda g: (-aff.get(g, 0.0), -presence.get(g, 0), position[g]))
        for gateway in liked:
            if self.load[gateway] + size <= self.cap.fill:
                return gateway
        for limit in (self.cap.mean + self.cap.tolerance, self.cap.fill):
            for gateway in walk:
                if self.load[gateway] + size <= limit:
                    return gateway
        # fits nowhere under the fill cap: the emptiest gateway leaves the least to shed
        return min(walk, key=lambda g: (self.load[g], position[g]))

    # --- elective and forced moves -----------------------------------------------------------
    def _shed(self, gateway: GatewayId, *, forced: bool) -> None:
        """Bring ``gateway`` down, moving few connections in few units.

        Forced (above the hard cap), any unit may go, until the gateway is just under the
        hard cap. Otherwise only units placed in this round go, which cost no extra
        migration, until it is under the fill cap: between the caps it is left alone.
        """
        reason = MoveReason.OVERLOAD if forced else MoveReason.BALANCE
        slack = self.cap.tolerance
        target = self.cap.hard - slack if forced else self.cap.fill
        while self.load[gateway] > target:
            excess = self.load[gateway] - target
            movable = [u for u in sorted(self.on[gateway]) if forced or u in self.fresh]
            # receivers stay under the fill cap; only a forced shed may push one past it
            # (never past the hard cap), and only when nothing else can go
            options: list[tuple[int, int, UnitId, GatewayId]] = []
            for limit in (self.cap.fill, target) if forced else (self.cap.fill,):
                for unit in movable:
                    receiver = self._receiver(unit, gateway, limit)
                    if receiver is not None:
                        cost = 0 if unit in self.fresh else 1
                        options.append((cost, self.size[unit], unit, receiver))
                if options:
                    break
            if not options:
                return
            _, _, unit, receiver = min(options, key=lambda o: _shed_rank(o, excess, slack))
            self._move(unit, receiver, reason)

    def _receiver(self, unit: UnitId, donor: GatewayId, limit: float) -> GatewayId | None:
        size = self.size[unit]
        room = [
            g
            for g in self.active
            if g != donor
            and self.load[g] + size <= limit
            and self.load[g] + size < self.load[donor]
        ]
        if not room:
            return None
        aff = self._affinity(unit)
        presence = self.presence.get(self.inp.groups.get(unit, -1), {})
        above = self.cap.mean + self.cap.tolerance

        def rank(g: GatewayId) -> tuple[bool, float, int, int, GatewayId]:
            return (
                self.load[g] + size > above,
                -aff.get(g, 0.0),
                -presence.get(g, 0),
                self.load[g],
                g,
            )

        return min(room, key=rank)

    def _fill(self, receiver: GatewayId) -> None:
        """Lift a gateway below the low mark up to the mean, taking from the fullest."""
        floor = self.cap.mean - self.cap.tolerance
        while self.load[receiver] < floor:
            room = self.cap.mean + self.cap.tolerance - self.load[receiver]
            choice: tuple[UnitId, GatewayId] | None = None
            for donor in sorted(self.active, key=lambda g: (-self.load[g], g)):
                if donor == receiver or self.load[donor] <= self.cap.mean:
                    break
                limit = min(room, self.load[donor] - floor)
                best: tuple[int, float, int, UnitId] | None = None
                for unit in self.on[donor]:
                    size = self.size[unit]
                    if size > limit or not self._allowed(unit, dwell=True, budget=True):
                        continue
                    aff = self._affinity(unit)
                    loss = (aff.get(donor, 0.0) - aff.get(receiver, 0.0)) / size
                    key = (0 if unit in self.fresh else 1, loss, -size, unit)
                    if best is None or key < best:
                        best = key
                if best is not None:
                    choice = (best[3], donor)
                    break
            if choice is None:
                return
            self._move(choice[0], receiver, MoveReason.BALANCE)

    def _consolidate(self) -> None:
        """Move units towards clearly more of their traffic, inside the fill band."""
        for _ in range(_AFFINITY_PASSES):
            changed = False
            for unit in sorted(self.assign, key=lambda u: (self.size[u], u)):
                here = self.assign[unit]
                neighbours = self.inp.adjacency.get(unit)
                if here not in self.load or not neighbours:
                    continue
                if not self._allowed(unit, dwell=True, budget=True):
                    continue
                aff = self._affinity(unit)
                others = [g for g in aff if g != here]
                if not others:
                    continue
                best = max(others, key=lambda g: (aff[g], -self.load[g], g))
                gain = aff[best] - aff.get(here, 0.0)
                if gain <= 0 or gain < self.inp.min_gain * sum(neighbours.values()):
                    continue
                size = self.size[unit]
                # a unit that had no gateway may fill one to the fill cap like any placement;
                # one that had (even if balanced away this round) only goes where the load
                # stays near the mean, so it never undoes a balance move
                room = (
                    self.cap.fill if unit in self.homeless else self.cap.mean + self.cap.tolerance
                )
                crowded = self.load[best] + size > room
                if crowded or self.load[here] - size < self.cap.low:
                    continue
                self._move(unit, best, MoveReason.AFFINITY)
                changed = True
            if not changed:
                return


def _shed_rank(
    option: tuple[int, int, UnitId, GatewayId], excess: float, slack: float
) -> tuple[int, int, int, UnitId]:
    """Order of units to shed: one unit that covers the excess without moving much more
    than needed; else the biggest that does not cover it (more will follow); else the
    smallest that covers it. Units placed this round go first, they cost no migration."""
    cost, size, unit, _ = option
    if excess <= size <= excess + slack:
        return (cost, 0, size, unit)
    if size < excess:
        return (cost, 1, -size, unit)
    return (cost, 2, size, unit)
