"""The scenarios: static placements, gateways joining and leaving, and workloads that move.

Every scenario drives each strategy through the same seeded script on its own copy of
the workload, in one-second steps (Frys plans every 5 s, like the router service, or
sooner when its forecast asks). Connections a strategy moves are counted as they move,
so a client moved twice counts twice.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from frys.loadtest.placement_sim.metrics import Cost, cost, fan_out_floor, moved, share
from frys.loadtest.placement_sim.strategies import (
    BoundedHash,
    Frys,
    Ldg,
    RandomBalancer,
    Strategy,
    WorkflowRing,
)
from frys.loadtest.placement_sim.workload import Workload, WorkloadSpec, generate
from frys.router.placement import Capacity, ForecastError, PlacementConfig

JOINER = "gw-new"
NAMES = ("random", "ring", "bounded", "ldg", "frys")

Factory = Callable[[Workload], Strategy]


def factories(seed: int, config: PlacementConfig) -> dict[str, Factory]:
    return {
        "random": lambda wl: RandomBalancer(wl, seed),
        "ring": WorkflowRing,
        "bounded": BoundedHash,
        "ldg": Ldg,
        "frys": lambda wl: Frys(wl, seed, config),
    }


def gateway_names(k: int) -> list[str]:
    return [f"gw-{i}" for i in range(k)]


def busiest(strategy: Strategy, gateways: Sequence[str]) -> float:
    loads = [strategy.loads.get(g, 0) for g in gateways]
    total = sum(loads)
    return max(loads) * len(gateways) / total if total else 0.0


# --- static placements, joins and leaves ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Leave:
    """One gateway leaving, from the steady placement."""

    gateway: str
    share: float
    """Share of connections the leaver held."""
    moved: float
    busiest: float
    """Busiest/mean once settled."""
    forced_extra: float = 0.0
    """Share of connections survivors must shed at least, whatever the placement: the
    leaver's biggest piece (what moves whole) minus the most headroom any survivor has
    under the hard cap."""


@dataclass(frozen=True, slots=True)
class Row:
    """One strategy on a static workload, and when one gateway joins or leaves."""

    name: str
    cost: Cost
    worst_busiest: float
    """Highest busiest/mean seen in any round, joins and leaves included."""
    join_moved: float
    join_busiest: float
    joiner_share: tuple[float, ...]
    """The joiner's share of connections after each round following the join."""
    leaves: tuple[Leave, ...]
    seconds: float
    """Time to place every agent from scratch."""

    @property
    def leave_moved(self) -> float:
        return sum(x.moved for x in self.leaves) / len(self.leaves)

    @property
    def leave_over_share(self) -> float:
        """Worst leave: moved beyond the leaver's own share."""
        return max(x.moved - x.share for x in self.leaves)

    @property
    def leave_busiest(self) -> float:
        return max(x.busiest for x in self.leaves)


@dataclass(frozen=True, slots=True)
class Static:
    """Every strategy on one static workload."""

    spec: WorkloadSpec
    gateways: int
    floor: float
    """Broadcast fan-out forced by workflows bigger than a gateway's fill cap."""
    steady_moved: float
    """Share of connections Frys moved over the steady rounds (fresh counts, no change)."""
    rows: tuple[Row, ...]

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    @property
    def join_share(self) -> float:
        return 1.0 / (self.gateways + 1)


def _settle(strategy: Strategy, now: float, rounds: int, step: float = 5.0) -> float:
    for _ in range(rounds):
        now += step
        strategy.tick(now)
    return now


def _forced_extra(strategy: Strategy, leaver: str, gateways: list[str]) -> float:
    """For Frys: the part of a leave the hard cap forces (see :class:`Leave`)."""
    if not isinstance(strategy, Frys):
        return 0.0
    table = strategy.placer.table
    survivors = [g for g in gateways if g != leaver]
    total = table.connections()
    capacity = Capacity.for_load(total, len(survivors), strategy.config)
    loads = table.loads(gateways)
    headroom = max(capacity.hard - loads[g] for g in survivors)
    piece = max(2, int(strategy.config.piece_share * capacity.fill))  # what moves whole
    biggest = max(
        (min(u.size, piece) for uid, u in table.units.items() if table.assignment[uid] == leaver),
        default=0,
    )
    return max(0.0, biggest - headroom) / total


def static_row(
    name: str,
    make: Factory,
    workload: Workload,
    k: int,
    *,
    steady_rounds: int = 3,
    join_rounds: int = 3,
    leavers: Sequence[str] | None = None,
    timing_repeats: int = 1,
    join: bool = True,
) -> tuple[Row, float]:
    """Place, settle, then try a join and every leave from the same state."""
    gateways = gateway_names(k)
    strategy = make(workload)  # static: nothing changes the workload
    now = 0.0
    strategy.start(gateways, now)
    first = dict(strategy.where)
    now = _settle(strategy, now, steady_rounds)
    where = dict(strategy.where)
    steady_moved = moved(first, where) if steady_rounds else 0.0
    worst = busiest(strategy, gateways)
    seconds = 0.0
    if isinstance(strategy, Frys):
        seconds = strategy.full_placement_seconds(now, timing_repeats)
    leaves = []
    for leaver in leavers if leavers is not None else gateways:
        fork = strategy.fork(strategy.workload)  # leaves do not change the workload
        extra = _forced_extra(fork, leaver, gateways)
        survivors = [g for g in gateways if g != leaver]
        fork.set_gateways(survivors, now)
        then = now
        for _ in range(join_rounds):
            then += 5.0
            fork.tick(then)
            worst = max(worst, busiest(fork, survivors))
        leaves.append(
            Leave(
                leaver,
                share(where, leaver),
                moved(where, fork.where),
                busiest(fork, survivors),
                extra,
            )
        )
    joined = [*gateways, JOINER]
    shares: list[float] = []
    if not join:
        c = cost(strategy.workload, where, gateways)
        return Row(name, c, worst, 0.0, 0.0, (), tuple(leaves), seconds), steady_moved
    strategy.set_gateways(joined, now)
    for _ in range(join_rounds):
        now += 5.0
        strategy.tick(now)
        shares.append(share(strategy.where, JOINER))
        worst = max(worst, busiest(strategy, joined))
    join_busiest = busiest(strategy, joined)
    row = Row(
        name,
        cost(strategy.workload, where, gateways),
        worst,
        moved(where, strategy.where),
        join_busiest,
        tuple(shares),
        tuple(leaves),
        seconds,
    )
    return row, steady_moved


def static(
    spec: WorkloadSpec,
    k: int = 8,
    seed: int = 1,
    config: PlacementConfig | None = None,
    names: Sequence[str] = NAMES,
    steady_rounds: int = 3,
    timing_repeats: int = 1,
    leavers: Sequence[str] | None = None,
    join: bool = True,
) -> Static:
    """Every strategy on the workload of ``spec`` with ``k`` gateways."""
    config = config or PlacementConfig()
    workload = generate(spec)
    makers = factories(seed, config)
    rows = []
    steady_moved = 0.0
    for name in names:
        row, moved_share = static_row(
            name,
            makers[name],
            workload,
            k,
            steady_rounds=steady_rounds,
            timing_repeats=timing_repeats,
            leavers=leavers,
            join=join,
        )
        rows.append(row)
        if name == "frys":
            steady_moved = moved_share
    return Static(spec, k, fan_out_floor(workload, k, config), steady_moved, tuple(rows))


# --- workloads that move -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: str
    """``arrive``, ``depart`` or ``switch``."""
    agent: str
    workflow: str = ""


@dataclass
class Trace:
    """What one strategy did over a dynamic scenario."""

    name: str
    busiest: list[tuple[float, float]] = field(default_factory=list)
    """(time, busiest/mean) every second."""
    migrations: int = 0
    switches: int = 0
    rehome: list[float] = field(default_factory=list)
    """Seconds from each switch to sitting with the new workflow (censored at the end)."""
    unsettled: int = 0
    """Switchers never re-homed before the end."""
    ghost_life: list[float] = field(default_factory=list)
    """Frys: seconds each departed agent still counted as a connection."""
    ghosts_left: int = 0
    end_cost: Cost | None = None
    forecast: ForecastError | None = None
    plans: int = 0

    @property
    def worst(self) -> float:
        return max((b for _, b in self.busiest), default=0.0)

    def longest_above(self, mark: float) -> float:
        """Longest stretch (seconds, sampled every second) the busiest gateway stayed
        above ``mark``."""
        longest = run = 0
        for _, b in self.busiest:
            run = run + 1 if b > mark else 0
            longest = max(longest, run)
        return float(longest)


def _rehomed(workload: Workload, where: dict[str, str], agent: str) -> bool:
    """On the gateway holding most of its workflow's other members, or a tenth of them
    (a workflow too big for one gateway has parts on several)."""
    workflow = workload.workflow_of(agent)
    counts: dict[str, int] = {}
    for other in workload.members[workflow]:
        if other != agent and other in where:
            counts[where[other]] = counts.get(where[other], 0) + 1
    if not counts:
        return True
    mine = counts.get(where.get(agent, ""), 0)
    return mine == max(counts.values()) or mine * 10 >= sum(counts.values())


def run_events(
    name: str,
    make: Factory,
    workload: Workload,
    events: Sequence[Event],
    k: int,
    until: float,
    seed: int,
) -> Trace:
    """Drive one strategy through ``events`` on its own copy of ``workload``."""
    gateways = gateway_names(k)
    wl = copy.deepcopy(workload)
    strategy = make(wl)
    strategy.start(gateways, 0.0)
    trace = Trace(name)
    pending: dict[str, float] = {}
    departed: dict[str, float] = {}
    queue = sorted(enumerate(events), key=lambda ie: (ie[1].at, ie[0]))
    position = 0
    now = 0.0
    while now < until:
        now += 1.0
        while position < len(queue) and queue[position][1].at <= now:
            index, event = queue[position]
            position += 1
            rng = np.random.default_rng((seed, index))
            if event.kind == "arrive":
                wl.add(event.agent, event.workflow, rng)
                strategy.arrive(event.agent, now)
            elif event.kind == "depart":
                strategy.depart(event.agent, now)
                wl.remove(event.agent)
                departed[event.agent] = now
            elif event.kind == "switch":
                wl.switch(event.agent, event.workflow, rng)
                strategy.switched(event.agent, now)
                pending[event.agent] = now
                trace.switches += 1
        strategy.tick(now)
        trace.busiest.append((now, busiest(strategy, gateways)))
        if int(now) % 5 == 0:
            for agent in [a for a in pending if _rehomed(wl, strategy.where, a)]:
                trace.rehome.append(now - pending.pop(agent))
            if isinstance(strategy, Frys):
                table = strategy.placer.table
                for agent in [a for a in departed if table.gateway_of_agent(a) is None]:
                    trace.ghost_life.append(now - departed.pop(agent))
    trace.unsettled = len(pending)
    trace.rehome.extend(until - t for t in pending.values())
    trace.migrations = strategy.migrations
    trace.end_cost = cost(wl, strategy.where, gateways)
    if isinstance(strategy, Frys):
        trace.ghosts_left = len(departed)
        trace.plans = len(strategy.plans)
        trace.forecast = strategy.plans[-1].forecast_error if strategy.plans else None
    return trace


def _size_weighted(workload: Workload, rng: np.random.Generator, agents: list[str]) -> str:
    """A workflow picked in proportion to its size: a random agent's first workflow."""
    return workload.workflow_of(agents[int(rng.integers(len(agents)))])


def growth_events(
    workload: Workload, grow_to: int, seconds: float, start: int, seed: int
) -> tuple[Workload, list[Event]]:
    """A workflow of ``start`` members that grows to ``grow_to`` over ``seconds``."""
    wl = copy.deepcopy(workload)
    wl.project_of["grow"] = 0
    rng = np.random.default_rng((seed, 7))
    for i in range(start):
        wl.add(f"g{i:05d}", "grow", rng)
    count = grow_to - start
    events = [
        Event(1.0 + seconds * i / count, "arrive", f"g{start + i:05d}", "grow")
        for i in range(count)
    ]
    return wl, events


def switch_events(workload: Workload, per_minute: float, seconds: float, seed: int) -> list[Event]:
    """``per_minute`` of the agents switch to another workflow (picked by size), evenly."""
    rng = np.random.default_rng((seed, 11))
    agents = workload.agents
    count = round(per_minute * len(agents) * seconds / 60.0)
    chosen = rng.choice(len(agents), size=min(count, len(agents)), replace=False)
    events = []
    for i, pick in enumerate(chosen):
        agent = agents[int(pick)]
        own = workload.workflow_of(agent)
        target = own
        while target == own:
            target = _size_weighted(workload, rng, agents)
        events.append(Event(1.0 + seconds * i / count, "switch", agent, target))
    return events


def churn_events(
    workload: Workload, per_round: float, seconds: float, seed: int, step: float = 5.0
) -> list[Event]:
    """Every ``step`` seconds ``per_round`` of the agents leave and as many new ones
    arrive, in workflows picked by size."""
    rng = np.random.default_rng((seed, 13))
    alive = list(workload.agents)
    events: list[Event] = []
    fresh = 0
    t = step
    while t <= seconds:
        n = max(1, round(per_round * len(alive)))
        for _ in range(n):
            agent = alive.pop(int(rng.integers(len(alive))))
            events.append(Event(t - step / 2, "depart", agent))
        for _ in range(n):
            workflow = _size_weighted(workload, rng, list(workload.agents))
            agent = f"n{fresh:06d}"
            fresh += 1
            events.append(Event(t - step / 2 + 0.5, "arrive", agent, workflow))
            alive.append(agent)
        t += step
    return events


@dataclass(frozen=True, slots=True)
class Dynamic:
    title: str
    spec: WorkloadSpec
    gateways: int
    seconds: float
    changed: int
    """Agents whose workflow changed (switches), arrivals or growth, as fits the scenario."""
    traces: tuple[Trace, ...]

    def trace(self, name: str) -> Trace:
        return next(t for t in self.traces if t.name == name)


def dynamic(
    title: str,
    workload: Workload,
    events: Sequence[Event],
    spec: WorkloadSpec,
    k: int,
    seconds: float,
    seed: int,
    config: PlacementConfig,
    names: Sequence[str] = NAMES,
) -> Dynamic:
    makers = factories(seed, config)
    traces = tuple(
        run_events(name, makers[name], workload, events, k, seconds, seed) for name in names
    )
    changed = len([e for e in events if e.kind in ("switch", "arrive")])
    return Dynamic(title, spec, k, seconds, changed, traces)


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
