"""The placements compared: a plain load balancer, hashing, streaming partitioning, Frys.

Every strategy keeps ``where`` (agent → gateway of its connection) and counts the
connections it moves (``migrations``). It is told when an agent arrives, leaves or
switches workflow, when gateways join or leave, and gets a ``tick`` every second; the
scenarios measure the rest.

- **random**: a load balancer; each connection lands on a random gateway. A joiner gets
  a random fair share of connections; a leaver's clients reconnect at random.
- **ring**: consistent hashing of each agent's first workflow (a ketama ring): a
  workflow always lands whole on one gateway, whatever its size.
- **bounded**: consistent hashing with bounded load: a workflow goes to the first
  gateway of its ring order under 1.25 × the mean, computed for all workflows at once
  (on a join or leave everything is recomputed); a connecting client follows that rule.
- **ldg**: linear deterministic greedy streaming partitioning over workflow groups:
  workflows streamed largest first, each group of its not yet placed members going to
  the gateway maximising (members of its workflows there) × (1 − load / capacity), with a
  1.10 × mean capacity; a connecting or switching client is streamed alone. Recomputed on
  a join or leave.
- **frys**: the router's placement, fed the workload's counts every plan and carrying out
  its migrations; connecting clients follow :meth:`Placer.route`.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from frys.loadtest.placement_sim.workload import Workload
from frys.router.placement import BoundedRing, GatewayHealth, PlacementConfig, Placer, Plan

Where = dict[str, str]


class Strategy(Protocol):
    name: str
    workload: Workload
    where: Where
    loads: dict[str, int]
    """Connections per gateway."""
    migrations: int

    def start(self, gateways: Sequence[str], now: float) -> None:
        """Place every agent of the workload from scratch."""
        ...

    def arrive(self, agent: str, now: float) -> None: ...

    def depart(self, agent: str, now: float) -> None: ...

    def switched(self, agent: str, now: float) -> None:
        """The agent's workflows changed (the workload already says how)."""
        ...

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        """Gateways joined or left."""
        ...

    def tick(self, now: float) -> None:
        """Called every second."""
        ...

    def fork(self, workload: Workload) -> Strategy:
        """An independent copy driving ``workload`` (a copy of its own)."""
        ...


class _Base:
    name = "base"

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.gateways: list[str] = []
        self.where: Where = {}
        self.loads: dict[str, int] = {}
        self.migrations = 0

    def _reset(self, where: Where) -> None:
        self.where = where
        self.loads = dict.fromkeys(self.gateways, 0)
        for g in where.values():
            self.loads[g] = self.loads.get(g, 0) + 1

    def _put(self, agent: str, gateway: str) -> None:
        """A connecting client lands on ``gateway``."""
        self.where[agent] = gateway
        self.loads[gateway] = self.loads.get(gateway, 0) + 1

    def _move(self, agent: str, gateway: str) -> None:
        """A connected client moves (counted) to ``gateway``."""
        old = self.where.get(agent)
        if old == gateway or old is None:
            return
        self.migrations += 1
        self.loads[old] -= 1
        self._put(agent, gateway)

    def depart(self, agent: str, now: float) -> None:
        old = self.where.pop(agent, None)
        if old is not None:
            self.loads[old] -= 1

    def tick(self, now: float) -> None:
        return None

    def fork(self, workload: Workload) -> Strategy:
        twin = copy.copy(self)
        twin.workload = workload
        twin.where = dict(self.where)
        twin.loads = dict(self.loads)
        twin.gateways = list(self.gateways)
        return twin  # type: ignore[return-value]


class RandomBalancer(_Base):
    name = "random"

    def __init__(self, workload: Workload, seed: int) -> None:
        super().__init__(workload)
        self._rng = random.Random(seed)

    def start(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        self._reset({a: self._rng.choice(self.gateways) for a in self.workload.agents})

    def arrive(self, agent: str, now: float) -> None:
        self._put(agent, self._rng.choice(self.gateways))

    def switched(self, agent: str, now: float) -> None:
        return None

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        joined = [g for g in gateways if g not in self.gateways]
        self.gateways = list(gateways)
        for g in joined:
            self.loads.setdefault(g, 0)
        odds = len(joined) / len(self.gateways)
        for agent in sorted(self.where):
            if self.where[agent] not in self.gateways:
                self._move(agent, self._rng.choice(self.gateways))
            elif joined and self._rng.random() < odds:
                self._move(agent, self._rng.choice(joined))

    def fork(self, workload: Workload) -> Strategy:
        twin = super().fork(workload)
        assert isinstance(twin, RandomBalancer)
        twin._rng = random.Random(self._rng.random())
        return twin


class WorkflowRing(_Base):
    name = "ring"

    def __init__(self, workload: Workload) -> None:
        super().__init__(workload)
        self._ring = BoundedRing(())

    def start(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        self._ring = BoundedRing(gateways)
        self._reset({a: self._home(a) for a in self.workload.agents})

    def _home(self, agent: str) -> str:
        return self._ring.first(f"wf:{self.workload.workflow_of(agent)}")

    def arrive(self, agent: str, now: float) -> None:
        self._put(agent, self._home(agent))

    def switched(self, agent: str, now: float) -> None:
        self._move(agent, self._home(agent))

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        self._ring = BoundedRing(gateways)
        for g in gateways:
            self.loads.setdefault(g, 0)
        for agent in sorted(self.where):
            self._move(agent, self._home(agent))


class BoundedHash(_Base):
    name = "bounded"

    def __init__(self, workload: Workload, cap: float = 1.25) -> None:
        super().__init__(workload)
        self._cap = cap
        self._ring = BoundedRing(())

    def start(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        self._reset(self._compute())

    def _compute(self) -> Where:
        self._ring = BoundedRing(self.gateways)
        cap = self._cap * len(self.workload.workflows_of) / len(self.gateways)
        loads = dict.fromkeys(self.gateways, 0.0)
        where: Where = {}
        for w in sorted(self.workload.members):
            members = sorted(self.workload.members[w] - where.keys())
            if not members:
                continue
            gateway = self._ring.place(f"wf:{w}", len(members), loads, cap)
            loads[gateway] += len(members)
            where.update(dict.fromkeys(members, gateway))
        return where

    def _route(self, agent: str) -> str:
        cap = self._cap * max(1, len(self.where)) / len(self.gateways)
        loads = {g: float(n) for g, n in self.loads.items()}
        return self._ring.place(f"wf:{self.workload.workflow_of(agent)}", 1, loads, cap)

    def arrive(self, agent: str, now: float) -> None:
        self._put(agent, self._route(agent))

    def switched(self, agent: str, now: float) -> None:
        self._move(agent, self._route(agent))

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        for g in gateways:
            self.loads.setdefault(g, 0)
        target = self._compute()
        for agent in sorted(self.where):
            self._move(agent, target[agent])


class Ldg(_Base):
    name = "ldg"

    def __init__(self, workload: Workload, cap: float = 1.10) -> None:
        super().__init__(workload)
        self._cap = cap

    def start(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        self._reset(self._compute())

    def _capacity(self, total: int) -> float:
        return self._cap * total / len(self.gateways)

    def _compute(self) -> Where:
        wl = self.workload
        capacity = self._capacity(len(wl.workflows_of))
        loads = dict.fromkeys(self.gateways, 0)
        phi: dict[str, dict[str, int]] = {w: {} for w in wl.members}
        where: Where = {}
        for w in sorted(wl.members, key=lambda x: (-len(wl.members[x]), x)):
            group = sorted(a for a in wl.members[w] if a not in where)
            while group:
                touched: dict[str, int] = {}
                for a in group:
                    for x in wl.workflows_of[a]:
                        touched[x] = touched.get(x, 0) + 1
                room = [g for g in self.gateways if loads[g] < capacity]
                pool = room or self.gateways

                def score(g: str, touched: dict[str, int] = touched) -> tuple[float, int]:
                    near = sum(k * phi[x].get(g, 0) for x, k in touched.items())
                    return (near * (1 - loads[g] / capacity), -loads[g])

                best = max(pool, key=score)
                take = group if not room else group[: max(1, int(capacity - loads[best]))]
                for a in take:
                    where[a] = best
                    loads[best] += 1
                    for x in wl.workflows_of[a]:
                        phi[x][best] = phi[x].get(best, 0) + 1
                group = group[len(take) :]
        return where

    def _stream(self, agent: str) -> str:
        wl = self.workload
        capacity = self._capacity(max(1, len(self.where)))
        loads = self.loads
        near = dict.fromkeys(self.gateways, 0)
        for w in wl.workflows_of[agent]:
            for other in wl.members[w]:
                g = self.where.get(other)
                if g is not None and other != agent:
                    near[g] += 1
        room = [g for g in self.gateways if loads[g] < capacity] or self.gateways
        return max(room, key=lambda g: (near[g] * (1 - loads[g] / capacity), -loads[g]))

    def arrive(self, agent: str, now: float) -> None:
        self._put(agent, self._stream(agent))

    def switched(self, agent: str, now: float) -> None:
        self._move(agent, self._stream(agent))

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        for g in gateways:
            self.loads.setdefault(g, 0)
        target = self._compute()
        for agent in sorted(self.where):
            self._move(agent, target[agent])


class Frys(_Base):
    """The Frys placement, driven like the router service drives it."""

    name = "frys"

    def __init__(
        self,
        workload: Workload,
        seed: int,
        config: PlacementConfig | None = None,
        warmup: int = 6,
    ) -> None:
        super().__init__(workload)
        self.config = config or PlacementConfig()
        self.placer = Placer(self.config)
        self._rng = np.random.default_rng(seed)
        self._warmup = warmup
        self._observed = 0.0
        self._next = 0.0
        self.plans: list[Plan] = []
        self.busiest_seen = 0.0

    def start(self, gateways: Sequence[str], now: float) -> None:
        """Gateways report for a while (the clients stay where they are not yet known,
        so the first plan places everyone), then the first plan runs at ``now``."""
        self.gateways = list(gateways)
        self.placer.set_gateways(dict.fromkeys(gateways, GatewayHealth.ACTIVE))
        step = self.config.plan_interval
        agents = self.workload.agents
        for i in range(self._warmup):
            at = now - (self._warmup - i) * step
            self.placer.observe(self.workload.counts(self._rng, step, agents), at)
        self._observed = now - step
        plan = self.plan(now)
        self._reset({a: g for a in agents if (g := plan.table.gateway_of_agent(a)) is not None})

    def arrive(self, agent: str, now: float) -> None:
        self._put(agent, self.placer.route(agent, self.workload.workflow_of(agent)))

    def switched(self, agent: str, now: float) -> None:
        return None  # the next reports say so

    def set_gateways(self, gateways: Sequence[str], now: float) -> None:
        self.gateways = list(gateways)
        for g in gateways:
            self.loads.setdefault(g, 0)
        self.placer.set_gateways(dict.fromkeys(gateways, GatewayHealth.ACTIVE))
        self._next = now  # the service plans as soon as membership changes

    def tick(self, now: float) -> None:
        if now + 1e-9 >= self._next:
            self.plan(now)

    def plan(self, now: float) -> Plan:
        """One service round: reports since the last one, locations, plan, migrations."""
        live = sorted(self.where) if self.where else self.workload.agents
        if now > self._observed:
            counts = self.workload.counts(self._rng, now - self._observed, live)
            self.placer.observe(counts, now)
            self._observed = now
        if self.where:
            self.placer.report_locations(self.where)
        plan = self.placer.plan(now)
        for m in plan.migrations:
            if m.agent in self.where:
                self._move(m.agent, m.target)
        self._next = plan.next_plan_at
        self.plans.append(plan)
        self.busiest_seen = max(self.busiest_seen, plan.busiest_ratio)
        return plan

    def full_placement_seconds(self, now: float, repeats: int = 1) -> float:
        """Best time to place every live agent from scratch, the graph already known."""
        best = float("inf")
        for _ in range(repeats):
            fresh = Placer(self.config, self.placer.graph.copy())
            fresh.set_gateways(dict.fromkeys(self.gateways, GatewayHealth.ACTIVE))
            start = time.perf_counter()
            fresh.plan(now)
            best = min(best, time.perf_counter() - start)
        return best

    def fork(self, workload: Workload) -> Strategy:
        twin = copy.copy(self)
        twin.workload = workload
        twin.where = dict(self.where)
        twin.loads = dict(self.loads)
        twin.gateways = list(self.gateways)
        twin.placer = self.placer.copy()
        twin._rng = np.random.default_rng(self._rng.integers(1 << 62))
        twin.plans = []
        return twin
