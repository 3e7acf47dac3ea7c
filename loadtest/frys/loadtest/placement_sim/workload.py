"""The synthetic collaboration workload Frys placement is measured on.

Agents belong to workflows whose sizes follow a power law (a few huge ones, many tiny),
big workflows have sub-teams that message among themselves, workflows belong to
projects, and a small share of direct messages crosses to another workflow, mostly
within the project. A share of agents may also belong to one or two more workflows
(mostly of their project): they split their broadcasts between their workflows and
message a couple of members of each. Everything derives from the seed; the
multi-membership draws come from their own stream, so the single-membership workload
is the same with or without them.

The workload is mutable, for the dynamic scenarios: agents arrive, leave, and switch
workflow (:meth:`Workload.add`, :meth:`Workload.remove`, :meth:`Workload.switch`).
Rates are per second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    """Mean messages an agent sends per minute."""
    multi_share: float = 0.0
    """Share of agents that belong to two or three workflows."""
    multi_local: float = 0.6
    """Share of those extra memberships taken in the agent's own project."""
    seed: int = 1


@dataclass
class Workload:
    """Who belongs where and who sends how much to whom, per second."""

    spec: WorkloadSpec
    workflows_of: dict[str, tuple[str, ...]]
    """Each agent's workflows, its first (primary) one first."""
    members: dict[str, set[str]]
    project_of: dict[str, int]
    publish_rate: dict[tuple[str, str], float]
    """Broadcasts per second of (agent, workflow)."""
    direct_rate: dict[tuple[str, str], float]
    """Direct messages per second of (sender, recipient)."""
    team_of: dict[str, int] = field(default_factory=dict)
    _pairs_of: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pair in self.direct_rate:
            for agent in pair:
                self._pairs_of.setdefault(agent, set()).add(pair)

    @property
    def agents(self) -> list[str]:
        return sorted(self.workflows_of)

    def workflow_of(self, agent: str) -> str:
        return self.workflows_of[agent][0]

    def counts(
        self, rng: np.random.Generator, seconds: float, agents: list[str] | None = None
    ) -> Counts:
        """One reporting interval of ``seconds``: every live subscription and connection,
        Poisson-sampled messages."""
        live = self.agents if agents is None else agents
        subs = {(a, w): 1.0 for a in live for w in self.workflows_of[a]}
        keys = list(self.publish_rate)
        sent = rng.poisson(np.array([self.publish_rate[k] for k in keys]) * seconds)
        pubs = {k: float(n) for k, n in zip(keys, sent, strict=True) if n > 0}
        pairs = list(self.direct_rate)
        got = rng.poisson(np.array([self.direct_rate[p] for p in pairs]) * seconds)
        direct = {p: float(n) for p, n in zip(pairs, got, strict=True) if n > 0}
        return Counts(subs, pubs, direct, dict.fromkeys(live, 1))

    # --- changes (dynamic scenarios) --------------------------------------------------------
    def add(self, agent: str, workflow: str, rng: np.random.Generator) -> None:
        """A new agent joins ``workflow``: it broadcasts, messages a few members and one
        agent of another workflow of its project, and a few members message it."""
        spec = self.spec
        rate = float(rng.gamma(2.0, spec.mean_rate / 2.0)) / 60.0
        mates = sorted(self.members.get(workflow, ()))
        self.workflows_of[agent] = (workflow,)
        self.members.setdefault(workflow, set()).add(agent)
        self.publish_rate[(agent, workflow)] = rate * spec.broadcast_share
        in_wf = rate * (1.0 - spec.broadcast_share - spec.cross_share)
        if mates:
            picks = rng.choice(len(mates), size=min(spec.team_partners, len(mates)), replace=False)
            for p in picks:
                mate = mates[int(p)]
                self._add_pair(agent, mate, in_wf / len(picks))
                self._add_pair(mate, agent, in_wf / len(picks) / 2)
        else:
            self.publish_rate[(agent, workflow)] += in_wf
        nearby = [w for w, p in self.project_of.items() if p == self.project_of.get(workflow)]
        others = [w for w in nearby if w != workflow and self.members.get(w)]
        if others:
            target = sorted(self.members[others[int(rng.integers(len(others)))]])
            self._add_pair(agent, target[int(rng.integers(len(target)))], rate * spec.cross_share)

    def remove(self, agent: str) -> None:
        """The agent leaves: its memberships and every message to or from it end."""
        for workflow in self.workflows_of.pop(agent, ()):
            self.members[workflow].discard(agent)
            self.publish_rate.pop((agent, workflow), None)
        for pair in self._pairs_of.pop(agent, set()):
            self.direct_rate.pop(pair, None)
            other = pair[1] if pair[0] == agent else pair[0]
            self._pairs_of.get(other, set()).discard(pair)

    def switch(self, agent: str, workflow: str, rng: np.random.Generator) -> None:
        """The agent leaves all its workflows for ``workflow``, with new partners there."""
        self.remove(agent)
        self.add(agent, workflow, rng)

    def _add_pair(self, a: str, b: str, rate: float) -> None:
        if a == b or rate <= 0:
            return
        self.direct_rate[(a, b)] = self.direct_rate.get((a, b), 0.0) + rate
        self._pairs_of.setdefault(a, set()).add((a, b))
        self._pairs_of.setdefault(b, set()).add((a, b))


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

    activity = rng.gamma(2.0, spec.mean_rate / 2.0, size=spec.agents) / 60.0
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

    workflows_of: dict[str, tuple[str, ...]] = {a: (workflow_of[a],) for a in agents}
    publish_rate = {(a, workflow_of[a]): broadcast_rate[a] for a in agents}
    if spec.multi_share > 0:
        _add_memberships(spec, agents, members, project, workflows_of, publish_rate, add)
    return Workload(
        spec,
        workflows_of,
        _all_members(workflows_of, members),
        project,
        publish_rate,
        direct_rate,
        team_of,
    )


def _add_memberships(
    spec: WorkloadSpec,
    agents: tuple[str, ...],
    members: dict[str, tuple[str, ...]],
    project: dict[str, int],
    workflows_of: dict[str, tuple[str, ...]],
    publish_rate: dict[tuple[str, str], float],
    add: Callable[[str, str, float], None],
) -> None:
    """Give ``multi_share`` of the agents one or two more workflows (any workflow alike,
    of the agent's project with probability ``multi_local``); each splits its broadcasts
    evenly and messages two members of each new workflow."""
    rng = np.random.default_rng((spec.seed, 1))
    pool_all = sorted(members)
    pool_project: dict[int, list[str]] = {}
    for w in pool_all:
        pool_project.setdefault(project[w], []).append(w)
    chosen = rng.choice(len(agents), size=round(spec.multi_share * len(agents)), replace=False)
    for i in sorted(int(x) for x in chosen):
        a = agents[i]
        own = workflows_of[a][0]
        extra: list[str] = []
        wanted = 1 + int(rng.integers(2))
        tries = 0
        while len(extra) < wanted and tries < 50:
            tries += 1
            local = rng.random() < spec.multi_local
            pool = pool_project[project[own]] if local else pool_all
            w = pool[int(rng.integers(len(pool)))]
            if w != own and w not in extra:
                extra.append(w)
        if not extra:
            continue
        workflows_of[a] = (own, *extra)
        share = publish_rate.pop((a, own)) / (1 + len(extra))
        for w in workflows_of[a]:
            publish_rate[(a, w)] = share
        for w in extra:
            ms = members[w]
            for _ in range(2):
                add(a, ms[int(rng.integers(len(ms)))], share / 2)


def _all_members(
    workflows_of: dict[str, tuple[str, ...]], members: dict[str, tuple[str, ...]]
) -> dict[str, set[str]]:
    out = {w: set(ms) for w, ms in members.items()}
    for a, ws in workflows_of.items():
        for w in ws[1:]:
            out[w].add(a)
    return out
