"""Placement simulation: Frys against a load balancer, hashing and LDG, on seeded workloads.

Run ``frys-ws loadtest placement`` (or ``python -m frys.loadtest.placement_sim``) for the
tables; ``--scenario`` picks one. docs/placement.md shows them and says what the columns
mean.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from frys.loadtest.placement_sim.report import (
    format_churn,
    format_growth,
    format_membership,
    format_multi,
    format_static,
    format_switch,
)
from frys.loadtest.placement_sim.scenarios import (
    NAMES,
    Dynamic,
    Static,
    churn_events,
    dynamic,
    growth_events,
    static,
    switch_events,
)
from frys.loadtest.placement_sim.workload import WorkloadSpec, generate
from frys.router.placement import PlacementConfig

SCENARIOS = ("static", "multi", "growth", "switch", "churn", "membership")


@dataclass(frozen=True, slots=True)
class Sizes:
    """The scale of a run; the defaults are the figures docs/placement.md quotes."""

    agents: int = 10_000
    workflows: int = 500
    largest: int = 1_800
    gateways: int = 8
    seed: int = 1
    minutes: float = 10.0
    """Length of the switching and churn scenarios."""
    growth_seconds: float = 300.0
    grow_to: int = 1_500
    grow_from: int = 10

    def spec(self, **changes: float) -> WorkloadSpec:
        base = WorkloadSpec(
            agents=self.agents, workflows=self.workflows, largest=self.largest, seed=self.seed
        )
        return replace(base, **changes)  # type: ignore[arg-type]


def run_static(
    sizes: Sizes,
    steady_rounds: int = 3,
    timing_repeats: int = 1,
    names: Sequence[str] = NAMES,
) -> Static:
    return static(
        sizes.spec(),
        sizes.gateways,
        sizes.seed,
        names=names,
        steady_rounds=steady_rounds,
        timing_repeats=timing_repeats,
    )


def run_multi(
    sizes: Sizes,
    shares: Sequence[float] = (0.1, 0.3),
    timing_repeats: int = 1,
    names: Sequence[str] = NAMES,
) -> list[Static]:
    return [
        static(
            sizes.spec(multi_share=share),
            sizes.gateways,
            sizes.seed,
            names=names,
            steady_rounds=1,
            timing_repeats=timing_repeats,
            leavers=(),
            join=False,
        )
        for share in shares
    ]


def run_growth(
    sizes: Sizes, config: PlacementConfig | None = None, names: Sequence[str] = NAMES
) -> Dynamic:
    """One workflow grows from ``grow_from`` to ``grow_to`` while the rest stays put."""
    base = sizes.agents - sizes.grow_to
    spec = sizes.spec(
        agents=base,
        workflows=max(2, round(sizes.workflows * 0.84)),
        largest=max(2, round(sizes.largest * 780 / 1800)),
    )
    workload, events = growth_events(
        generate(spec), sizes.grow_to, sizes.growth_seconds, sizes.grow_from, sizes.seed
    )
    return dynamic(
        "growth",
        workload,
        events,
        spec,
        sizes.gateways,
        sizes.growth_seconds + 60.0,
        sizes.seed,
        config or PlacementConfig(),
        names,
    )


def run_switch(
    sizes: Sizes,
    per_minute: float = 0.01,
    config: PlacementConfig | None = None,
    names: Sequence[str] = NAMES,
) -> Dynamic:
    spec = sizes.spec()
    workload = generate(spec)
    seconds = sizes.minutes * 60.0
    events = switch_events(workload, per_minute, seconds - 60.0, sizes.seed)
    return dynamic(
        f"{per_minute:.0%} of agents switching workflow per minute",
        workload,
        events,
        spec,
        sizes.gateways,
        seconds,
        sizes.seed,
        config or PlacementConfig(),
        names,
    )


def run_churn(
    sizes: Sizes,
    per_round: float = 0.005,
    config: PlacementConfig | None = None,
    names: Sequence[str] = NAMES,
) -> Dynamic:
    spec = sizes.spec()
    workload = generate(spec)
    seconds = sizes.minutes * 60.0
    events = churn_events(workload, per_round, seconds - 30.0, sizes.seed)
    return dynamic(
        f"{per_round:.1%} of agents replaced every 5 s round",
        workload,
        events,
        spec,
        sizes.gateways,
        seconds,
        sizes.seed,
        config or PlacementConfig(),
        names,
    )


def run_membership(
    sizes: Sizes, ks: Sequence[int] = (4, 8, 16), names: Sequence[str] = NAMES
) -> list[Static]:
    return [static(sizes.spec(), k, sizes.seed, names=names, steady_rounds=3) for k in ks]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest placement", description=__doc__)
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--largest", type=int, default=1_800)
    parser.add_argument("--gateways", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--steady-rounds", type=int, default=3)
    parser.add_argument("--timing-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    scale = args.agents / 10_000
    sizes = Sizes(
        agents=args.agents,
        workflows=args.workflows,
        largest=args.largest,
        gateways=args.gateways,
        seed=args.seed,
        minutes=args.minutes,
        grow_to=max(20, round(1_500 * scale)),
    )
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    for name in chosen:
        started = time.perf_counter()
        if name == "static":
            text = format_static(run_static(sizes, args.steady_rounds, args.timing_repeats))
        elif name == "multi":
            text = format_multi(run_multi(sizes, timing_repeats=args.timing_repeats))
        elif name == "growth":
            text = format_growth(run_growth(sizes), sizes.grow_from, sizes.grow_to)
        elif name == "switch":
            text = format_switch(run_switch(sizes))
        elif name == "churn":
            text = format_churn(run_churn(sizes))
        else:
            text = format_membership(run_membership(sizes))
        print(f"## {name} ({time.perf_counter() - started:.0f} s)\n\n{text}\n", flush=True)
    return 0


__all__ = [
    "SCENARIOS",
    "Sizes",
    "main",
    "run_churn",
    "run_growth",
    "run_membership",
    "run_multi",
    "run_static",
    "run_switch",
]
