"""Small collaboration workloads for the placement tests, and a driver that runs the pure
placement API the way the router service does (a report and a plan every 5 s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from frys.router.placement import Counts, GatewayHealth, PlacementConfig, Placer, Plan

ACTIVE = GatewayHealth.ACTIVE


def sizes(total: int, count: int, largest: int) -> list[int]:
    """``count`` workflow sizes summing to ``total``: ``largest`` first, then decaying."""
    rest = [max(2, round(120 / rank)) for rank in range(1, count)]
    short = total - largest - sum(rest)
    for i in range(abs(short)):
        rest[i % len(rest)] += 1 if short > 0 else -1
    return [largest, *rest]


@dataclass
class Workload:
    """Who belongs to which workflows and who sends how much to whom, per second."""

    workflows_of: dict[str, tuple[str, ...]]
    publish_rate: dict[tuple[str, str], float]
    direct_rate: dict[tuple[str, str], float]
    connections: dict[str, int] = field(default_factory=dict)

    @property
    def agents(self) -> list[str]:
        return sorted(self.workflows_of)

    def members(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for a in self.agents:
            for w in self.workflows_of[a]:
                out.setdefault(w, []).append(a)
        return out

    def counts(self, rng: np.random.Generator, seconds: float) -> Counts:
        """One reporting interval: every live subscription and connection, Poisson-sampled
        messages."""
        subs = {(a, w): 1.0 for a, ws in self.workflows_of.items() for w in ws}
        pubs = {
            k: float(n)
            for k, r in self.publish_rate.items()
            if k[0] in self.workflows_of and (n := rng.poisson(r * seconds)) > 0
        }
        direct = {
            k: float(n)
            for k, r in self.direct_rate.items()
            if k[0] in self.workflows_of and (n := rng.poisson(r * seconds)) > 0
        }
        live = {a: self.connections.get(a, 1) for a in self.workflows_of}
        return Counts(subs, pubs, direct, live)

    def join(self, agent: str, workflow: str, rng: np.random.Generator) -> None:
        """A new agent in ``workflow``: broadcasts a little, messages two members."""
        mates = self.members().get(workflow, [])
        self.workflows_of[agent] = (workflow,)
        self.publish_rate[(agent, workflow)] = 0.04
        for m in rng.choice(len(mates), size=min(2, len(mates)), replace=False) if mates else []:
            self.direct_rate[(agent, mates[int(m)])] = 0.05

    def switch(self, agent: str, workflow: str, rng: np.random.Generator) -> None:
        """The agent leaves its workflows for ``workflow`` and its old partners."""
        for key in [k for k in self.publish_rate if k[0] == agent]:
            del self.publish_rate[key]
        for key in [k for k in self.direct_rate if agent in k]:
            del self.direct_rate[key]
        self.join(agent, workflow, rng)


def make_workload(
    seed: int = 3,
    agents: int = 800,
    workflows: int = 60,
    largest: int = 260,
    multi_share: float = 0.0,
) -> Workload:
    """Workflows of 40 and more have sub-teams of 15 to 120; an agent sends a quarter of
    its messages to its whole workflow, most of the rest to a few team mates, some to
    another sub-team of its workflow and a twentieth to an agent of another workflow.
    ``multi_share`` of the agents also belong to a second workflow."""
    rng = np.random.default_rng(seed)
    names = [f"a{i:04d}" for i in range(agents)]
    order = rng.permutation(agents)
    members: dict[str, list[str]] = {}
    start = 0
    for j, size in enumerate(sizes(agents, workflows, largest)):
        members[f"w{j:02d}"] = [names[int(i)] for i in order[start : start + size]]
        start += size
    wf_names = list(members)
    publish_rate: dict[tuple[str, str], float] = {}
    direct_rate: dict[tuple[str, str], float] = {}

    def add(a: str, b: str, rate: float) -> None:
        if a != b:
            direct_rate[(a, b)] = direct_rate.get((a, b), 0.0) + rate

    for w, ms in members.items():
        teams: list[list[str]] = []
        at = 0
        while at < len(ms):
            size = len(ms) if len(ms) < 40 else int(rng.integers(15, 121))
            size = len(ms) - at if len(ms) - at - size < 15 else size
            teams.append(ms[at : at + size])
            at += size
        for team in teams:
            for a in team:
                rate = float(rng.gamma(2.0, 5.0)) / 60.0
                publish_rate[(a, w)] = rate * 0.25
                mates = [m for m in team if m != a]
                in_team = rate * 0.7 * (0.85 if len(teams) > 1 else 1.0)
                for b in rng.choice(len(mates), size=min(4, len(mates)), replace=False):
                    add(a, mates[int(b)], in_team / min(4, len(mates)))
                if len(teams) > 1:
                    other = teams[int(rng.integers(len(teams)))]
                    while other is team:
                        other = teams[int(rng.integers(len(teams)))]
                    add(a, other[int(rng.integers(len(other)))], rate * 0.7 * 0.15)
                target = wf_names[int(rng.integers(len(wf_names)))]
                while target == w:
                    target = wf_names[int(rng.integers(len(wf_names)))]
                add(a, members[target][int(rng.integers(len(members[target])))], rate * 0.05)
    workflows_of: dict[str, tuple[str, ...]] = {a: (w,) for w, ms in members.items() for a in ms}
    for i in rng.choice(agents, size=round(multi_share * agents), replace=False):
        a = names[int(i)]
        own = workflows_of[a][0]
        second = wf_names[int(rng.integers(len(wf_names)))]
        if second != own:
            workflows_of[a] = (own, second)
            publish_rate[(a, second)] = publish_rate[(a, own)] = publish_rate[(a, own)] / 2
    return Workload(workflows_of, publish_rate, direct_rate)


class Driver:
    """Runs a :class:`Placer` as the router service does: every ``step`` seconds the
    reports of the last interval, the clients' true locations, a plan, its migrations."""

    def __init__(
        self,
        workload: Workload,
        gateways: Iterable[str],
        config: PlacementConfig | None = None,
        seed: int = 0,
        step: float = 5.0,
    ) -> None:
        self.workload = workload
        self.placer = Placer(config)
        self.gateways = list(gateways)
        self.placer.set_gateways(dict.fromkeys(self.gateways, ACTIVE))
        self.rng = np.random.default_rng(seed)
        self.step = step
        self.now = 0.0
        self.where: dict[str, str] = {}
        self.migrations: list[tuple[float, str, str, str]] = []
        self.plans: list[Plan] = []

    def warm_up(self, reports: int = 6) -> Plan:
        """A few reports (clients not placed yet), then the first plan."""
        for _ in range(reports):
            self.placer.observe(self.workload.counts(self.rng, self.step), self.now)
            self.now += self.step
        return self.round(observe=False)

    def round(self, observe: bool = True) -> Plan:
        if observe:
            self.now += self.step
            self.placer.observe(self.workload.counts(self.rng, self.step), self.now)
        if self.where:
            self.placer.report_locations(self.where)
        plan = self.placer.plan(self.now)
        for m in plan.migrations:
            if m.agent in self.where:
                self.migrations.append((self.now, m.agent, m.source, m.target))
        for agent in self.workload.agents:
            gateway = plan.table.gateway_of_agent(agent)
            if gateway is not None:
                self.where[agent] = gateway
        self.plans.append(plan)
        return plan

    def connect(self, agent: str) -> str:
        """A client connects: it goes where :meth:`Placer.route` says."""
        gateway = self.placer.route(agent, self.workload.workflows_of[agent][0])
        self.where[agent] = gateway
        return gateway

    def set_gateways(self, gateways: Iterable[str]) -> None:
        self.gateways = list(gateways)
        self.placer.set_gateways(dict.fromkeys(self.gateways, ACTIVE))

    def loads(self) -> Counter[str]:
        return Counter(self.where[a] for a in self.workload.agents if a in self.where)

    def busiest(self) -> float:
        loads = self.loads()
        return max(loads.values()) * len(self.gateways) / sum(loads.values())


def home_of(where: Mapping[str, str], members: Iterable[str]) -> str:
    """The gateway holding most of ``members``."""
    return Counter(where[a] for a in members if a in where).most_common(1)[0][0]
