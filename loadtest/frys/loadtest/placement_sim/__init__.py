"""Placement simulation: Frys against a load balancer and hashing, on a seeded workload.

Run ``python -m frys.loadtest.placement_sim`` for the comparison table; see
docs/placement.md for what the columns mean.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from frys.loadtest.placement_sim.metrics import Cost, cost, fan_out_floor, moved, share
from frys.loadtest.placement_sim.strategies import (
    BoundedHash,
    Frys,
    RandomBalancer,
    Strategy,
    WorkflowHash,
)
from frys.loadtest.placement_sim.workload import Workload, WorkloadSpec, generate
from frys.router.placement import Capacity, PlacementConfig, PlacementTable

JOINER = "gw-new"


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
    leaver's biggest unit minus the most headroom any survivor has under the hard cap
    (0 when it fits)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One strategy's results."""

    name: str
    cost: Cost
    """Costs in steady state on the initial gateways."""
    worst_busiest: float
    """Highest busiest/mean seen in any round, joins and leaves included."""
    join_moved: float
    join_busiest: float
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
class Report:
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


def _baseline(
    name: str, build: Callable[[], Strategy], workload: Workload, gateways: list[str]
) -> Row:
    strategy = build()
    start = time.perf_counter()
    where = strategy.place(gateways)
    seconds = time.perf_counter() - start
    joined = strategy.join(JOINER)[-1]
    leaves = []
    for leaver in gateways:
        other = build()
        before = other.place(gateways)
        left = other.leave(leaver)[-1]
        survivors = [g for g in gateways if g != leaver]
        leaves.append(
            Leave(
                leaver,
                share(before, leaver),
                moved(before, left),
                cost(workload, left, survivors).busiest,
            )
        )
    steady = cost(workload, where, gateways)
    join_busiest = cost(workload, joined, [*gateways, JOINER]).busiest
    worst = max(steady.busiest, join_busiest, *(x.busiest for x in leaves))
    return Row(name, steady, worst, moved(where, joined), join_busiest, tuple(leaves), seconds)


def _forced_extra(
    table: PlacementTable, leaver: str, gateways: list[str], config: PlacementConfig
) -> float:
    survivors = [g for g in gateways if g != leaver]
    total = table.connections()
    hard = Capacity.for_load(total, len(survivors), config).hard
    loads = table.loads(gateways)
    headroom = max(hard - loads[g] for g in survivors)
    biggest = max(
        (u.size for uid, u in table.units.items() if table.assignment[uid] == leaver), default=0
    )
    return max(0.0, biggest - headroom) / total


def _frys(
    workload: Workload,
    gateways: list[str],
    seed: int,
    config: PlacementConfig,
    steady_rounds: int,
    timing_repeats: int,
) -> tuple[Row, float]:
    frys = Frys(workload, seed, config)
    first = frys.place(gateways)
    settled = frys.steady(steady_rounds)
    steady_moved = sum(moved(a, b) for a, b in zip([first, *settled], settled, strict=False))
    where = settled[-1] if settled else first
    seconds = frys.full_placement_seconds(gateways, timing_repeats)
    worst = frys.busiest_seen
    leaves = []
    for leaver in gateways:
        fork = frys.fork()
        extra = _forced_extra(fork.placer.table, leaver, gateways, config)
        left = fork.leave(leaver)[-1]
        survivors = [g for g in gateways if g != leaver]
        busiest = cost(workload, left, survivors).busiest
        leaves.append(Leave(leaver, share(where, leaver), moved(where, left), busiest, extra))
        worst = max(worst, fork.busiest_seen)
    joined = frys.join(JOINER)[-1]
    worst = max(worst, frys.busiest_seen)
    join_busiest = cost(workload, joined, [*gateways, JOINER]).busiest
    steady = cost(workload, where, gateways)
    row = Row("frys", steady, worst, moved(where, joined), join_busiest, tuple(leaves), seconds)
    return row, steady_moved


def run(
    spec: WorkloadSpec | None = None,
    gateways: int = 8,
    seed: int = 1,
    steady_rounds: int = 3,
    timing_repeats: int = 1,
    config: PlacementConfig | None = None,
) -> Report:
    """Simulate every strategy on one workload and gather the numbers of the table."""
    spec = spec or WorkloadSpec(seed=seed)
    config = config or PlacementConfig()
    workload = generate(spec)
    names = [f"gw-{i}" for i in range(gateways)]
    rows = [
        _baseline("random", lambda: RandomBalancer(workload, seed), workload, names),
        _baseline("hash by workflow", lambda: WorkflowHash(workload), workload, names),
        _baseline("bounded-load hashing", lambda: BoundedHash(workload), workload, names),
    ]
    frys, steady_moved = _frys(workload, names, seed, config, steady_rounds, timing_repeats)
    rows.append(frys)
    floor = fan_out_floor(workload, gateways, config)
    return Report(spec, gateways, floor, steady_moved, tuple(rows))


def format_table(report: Report) -> str:
    """The comparison as a Markdown table with a few lines of context."""
    spec = report.spec
    lines = [
        f"{spec.agents} agents in {spec.workflows} workflows (largest {spec.largest}), "
        f"K = {report.gateways} gateways, seed {spec.seed}",
        "",
        "| strategy | fan-out | copies/msg | local | busiest/mean | worst busiest "
        "| moved on join | moved on leave | leave over share (worst) | full placement |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        c = r.cost
        lines.append(
            f"| {r.name} | {c.fan_out:.2f} | {c.copies:.2f} | {c.local:.1%} | {c.busiest:.2f} "
            f"| {r.worst_busiest:.2f} | {r.join_moved:.3f} | {r.leave_moved:.3f} "
            f"| {r.leave_over_share:+.3f} | {r.seconds * 1000:.0f} ms |"
        )
    frys = report.rows[-1]
    per_leaver = ", ".join(
        f"{x.gateway} {x.moved:.3f}/{x.share:.3f}"
        + (f" (≥{x.forced_extra:.3f} forced)" if x.forced_extra > 0 else "")
        for x in frys.leaves
    )
    lines += [
        "",
        f"fan-out floor (workflows over the fill cap): {report.floor:.3f}; "
        f"fair share of a joining gateway 1/(K+1) = {report.join_share:.3f}",
        f"frys per leaver, moved/share: {per_leaver}",
        f"frys moved {report.steady_moved:.4f} of connections over the steady rounds",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m frys.loadtest.placement_sim", description=__doc__
    )
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--largest", type=int, default=1_800)
    parser.add_argument("--gateways", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steady-rounds", type=int, default=3)
    parser.add_argument("--timing-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    spec = WorkloadSpec(
        agents=args.agents, workflows=args.workflows, largest=args.largest, seed=args.seed
    )
    report = run(spec, args.gateways, args.seed, args.steady_rounds, args.timing_repeats)
    print(format_table(report))
    return 0


__all__ = ["Leave", "Report", "Row", "format_table", "main", "run"]
