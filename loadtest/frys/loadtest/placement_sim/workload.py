"""The synthetic collaboration workload Frys placement is measured on.

Agents belong to workflows whose sizes follow a power law (a few huge ones, many tiny),
big workflows have sub-teams that message among themselves, workflows belong to
projects, and a small share of direct messages crosses to another workflow, mostly
within the project. Everything derives from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frys.router.placement import Counts


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    agents: int = 10_000
    workflows: int = 500
    largest: int = 1_800
    projects: int = 50
    broadcast_share: float = 0.23
    """Share of messages that are workflow broadcasts; the rest are direct messages."""
    cross_share: float = 0.05
    """Share of messages sent to an agent of another workflow."""
    team_share: float = 0.85
    """Share of in-workflow direct messages that stay inside the sender's sub-team."""
    team_min: int = 15
    team_max: int = 120
    teams_from: int = 40
    """Workflows with at least this many members have sub-teams."""
    team_partners: int = 4
    mean_rate: float = 10.0
    """Mean messages an agent sends per reporting interval."""
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Workload:
    """Who is where and who sends how much to whom, per reporting interval."""

    spec: WorkloadSpec
    agents: tuple[str, ...]
    workflow_of: dict[str, str]
    members: dict[str, tuple[str, ...]]
    team_of: dict[str, int]
    broadcast_rate: dict[str, float]
    direct_rate: dict[tuple[str, str], float]

    def counts(self, rng: np.random.Generator) -> Counts:
        """One interval of reports: every subscription, Poisson-sampled messages."""
        subs = {(a, self.workflow_of[a]): 1.0 for a in self.agents}
        b_rates = np.array([self.broadcast_rate[a] for a in self.agents])
        b_counts = rng.poisson(b_rates)
        pubs = {
            (a, self.workflow_of[a]): float(n)
            for a, n in zip(self.agents, b_counts, strict=True)
            if n > 0
        }
        pairs = list(self.direct_rate)
        d_counts = rng.poisson(np.array([self.direct_rate[p] for p in pairs]))
        direct = {p: float(n) for p, n in zip(pairs, d_counts, strict=True) if n > 0}
        return Counts(subs, pubs, direct)


def power_law_sizes(total: int, count: int, largest: int) -> list[int]:
    """``count`` sizes summing to ``total``, the first ``largest``, decaying as a power."""
    ranks = np.arange(1, count + 1, dtype=float)
    lo, hi = 0.1, 3.0
    for _ in range(60):  # bisect the exponent so the sizes sum to ``total``
        alpha = (lo + hi) / 2
        raw = np.maximum(1.0, largest * ranks**-alpha)
        if raw.sum() > total:
            lo = alpha
        else:
            hi = alpha
    sizes = np.floor(raw).astype(int)
    sizes[0] = largest
    short = total - int(sizes.sum())
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    step = 1 if short > 0 else -1
    i = 0
    while short != 0:
        j = int(order[i % count])
        if j != 0 and sizes[j] + step >= 1:
            sizes[j] += step
            short -= step
        i += 1
    return [int(s) for s in sizes]


def generate(spec: WorkloadSpec | None = None) -> Workload:
    """Build the workload for ``spec`` (seeded, so equal specs give equal workloads)."""
    spec = spec or WorkloadSpec()
    rng = np.random.default_rng(spec.seed)
    agents = tuple(f"a{i:05d}" for i in range(spec.agents))
    sizes = power_law_sizes(spec.agents, spec.workflows, spec.largest)
    names = [f"w{j:03d}" for j in range(spec.workflows)]
    order = rng.permutation(spec.agents)
    members: dict[str, tuple[str, ...]] = {}
    start = 0
    for name, size in zip(names, sizes, strict=True):
        members[name] = tuple(agents[int(i)] for i in order[start : start + size])
        start += size
    workflow_of = {a: w for w, ms in members.items() for a in ms}
    project = {w: int(rng.integers(spec.projects)) for w in names}
    by_project: dict[int, list[str]] = {}
    for w in names:
        by_project.setdefault(project[w], []).append(w)

    team_of: dict[str, int] = {}
    teams: dict[tuple[str, int], list[str]] = {}
    next_team = 0
    for w, ms in members.items():
        if len(ms) < spec.teams_from:
            sizes_left = [len(ms)]
        else:
            sizes_left = []
            left = len(ms)
            while left > 0:
                size = int(rng.integers(spec.team_min, spec.team_max + 1))
                size = left if left - size < spec.team_min else size
                sizes_left.append(size)
                left -= size
        at = 0
        for size in sizes_left:
            teams[(w, next_team)] = list(ms[at : at + size])
            team_of.update(dict.fromkeys(ms[at : at + size], next_team))
            at += size
            next_team += 1

    activity = rng.gamma(2.0, spec.mean_rate / 2.0, size=spec.agents)
    broadcast_rate: dict[str, float] = {}
    direct_rate: dict[tuple[str, str], float] = {}

    def add(a: str, b: str, rate: float) -> None:
        if a != b and rate > 0:
            direct_rate[(a, b)] = direct_rate.get((a, b), 0.0) + rate

    for i, a in enumerate(agents):
        rate = float(activity[i])
        w = workflow_of[a]
        team = teams[(w, team_of[a])]
        in_wf = rate * (1.0 - spec.broadcast_share - spec.cross_share)
        bcast = rate * spec.broadcast_share
        mates = [m for m in team if m != a]
        has_others = len(team) < len(members[w])
        if not mates and not has_others:
            bcast += in_wf
        else:
            team_part = spec.team_share if (mates and has_others) else (1.0 if mates else 0.0)
            if mates:
                picks = rng.choice(
                    len(mates), size=min(spec.team_partners, len(mates)), replace=False
                )
                for p in picks:
                    add(a, mates[int(p)], in_wf * team_part / len(picks))
            if has_others:
                ms = members[w]
                other = ms[int(rng.integers(len(ms)))]
                while team_of[other] == team_of[a]:  # rejection: another sub-team's member
                    other = ms[int(rng.integers(len(ms)))]
                add(a, other, in_wf * (1.0 - team_part))
        broadcast_rate[a] = bcast
        cross = rate * spec.cross_share
        for _ in range(2):
            nearby = by_project[project[w]]
            pool = nearby if rng.random() < 0.8 and len(nearby) > 1 else names
            target = pool[int(rng.integers(len(pool)))]
            while target == w:
                target = pool[int(rng.integers(len(pool)))]
            ms = members[target]
            add(a, ms[int(rng.integers(len(ms)))], cross / 2)
    return Workload(spec, agents, workflow_of, members, team_of, broadcast_rate, direct_rate)
