"""The placements compared: a plain load balancer, two hashing schemes, and Frys.

Each strategy places every agent on a gateway, then is told a gateway joined or left and
answers with its new placement; the harness measures the difference.
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from frys.loadtest.placement_sim.workload import Workload
from frys.router.placement import (
    BoundedRing,
    GatewayHealth,
    PlacementConfig,
    Placer,
)

Where = dict[str, str]


class Strategy(Protocol):
    name: str

    def place(self, gateways: Sequence[str]) -> Where:
        """Place every agent from scratch on ``gateways``."""
        ...

    def join(self, gateway: str) -> list[Where]:
        """Placements after ``gateway`` joins, one per round until it settles."""
        ...

    def leave(self, gateway: str) -> list[Where]:
        """Placements after ``gateway`` leaves, one per round until it settles."""
        ...


class RandomBalancer:
    """A plain load balancer: each connection lands on a random gateway.

    On a join it hands the newcomer a random fair share of connections; on a leave the
    leaver's clients reconnect at random.
    """

    name = "random"

    def __init__(self, workload: Workload, seed: int) -> None:
        self._workload = workload
        self._rng = random.Random(seed)
        self._gateways: list[str] = []
        self._where: Where = {}

    def place(self, gateways: Sequence[str]) -> Where:
        self._gateways = list(gateways)
        self._where = {a: self._rng.choice(self._gateways) for a in self._workload.agents}
        return dict(self._where)

    def join(self, gateway: str) -> list[Where]:
        self._gateways.append(gateway)
        odds = 1.0 / len(self._gateways)
        for a in self._workload.agents:
            if self._rng.random() < odds:
                self._where[a] = gateway
        return [dict(self._where)]

    def leave(self, gateway: str) -> list[Where]:
        self._gateways.remove(gateway)
        for a, g in self._where.items():
            if g == gateway:
                self._where[a] = self._rng.choice(self._gateways)
        return [dict(self._where)]


class _Stateless:
    """A strategy that recomputes everything from the gateway list."""

    def __init__(self, workload: Workload) -> None:
        self._workload = workload
        self._gateways: list[str] = []

    def place(self, gateways: Sequence[str]) -> Where:
        self._gateways = list(gateways)
        return self._compute()

    def join(self, gateway: str) -> list[Where]:
        self._gateways.append(gateway)
        return [self._compute()]

    def leave(self, gateway: str) -> list[Where]:
        self._gateways.remove(gateway)
        return [self._compute()]

    def _compute(self) -> Where:
        raise NotImplementedError


class WorkflowHash(_Stateless):
    """Every workflow on gateway ``hash(workflow) mod K``."""

    name = "hash by workflow"

    def _compute(self) -> Where:
        k = len(self._gateways)
        gateway_of = {
            w: self._gateways[int.from_bytes(hashlib.blake2b(w.encode()).digest()) % k]
            for w in self._workload.members
        }
        return {a: gateway_of[self._workload.workflow_of[a]] for a in self._workload.agents}


class BoundedHash(_Stateless):
    """Consistent hashing of workflows, walking on past gateways at 1.25 × the mean."""

    name = "bounded-load hashing"

    def __init__(self, workload: Workload, cap: float = 1.25) -> None:
        super().__init__(workload)
        self._cap = cap

    def _compute(self) -> Where:
        ring = BoundedRing(self._gateways)
        cap = self._cap * len(self._workload.agents) / len(self._gateways)
        loads: dict[str, float] = dict.fromkeys(self._gateways, 0.0)
        where: Where = {}
        for w in sorted(self._workload.members):
            members = self._workload.members[w]
            gateway = ring.place(w, len(members), loads, cap)
            loads[gateway] += len(members)
            where.update(dict.fromkeys(members, gateway))
        return where


class Frys:
    """The Frys placement, fed the workload's counts one reporting interval at a time."""

    name = "frys"

    def __init__(
        self,
        workload: Workload,
        seed: int,
        config: PlacementConfig | None = None,
        interval: float = 60.0,
        warmup: int = 3,
        max_rounds: int = 6,
    ) -> None:
        self._workload = workload
        self._rng = np.random.default_rng(seed)
        self._config = config or PlacementConfig()
        self._interval = interval
        self._warmup = warmup
        self._max_rounds = max_rounds
        self._placer = Placer(self._config)
        self._now = 0.0
        self._health: dict[str, GatewayHealth] = {}
        self.busiest_seen = 0.0

    @property
    def placer(self) -> Placer:
        return self._placer

    def place(self, gateways: Sequence[str]) -> Where:
        self._health = dict.fromkeys(gateways, GatewayHealth.ACTIVE)
        self._placer.set_gateways(self._health)
        for _ in range(self._warmup):
            self._placer.observe(self._workload.counts(self._rng), self._now)
            self._now += self._interval
        return self._round(observe=False)

    def steady(self, rounds: int) -> list[Where]:
        """Rounds with fresh counts and nothing else changing."""
        return [self._round() for _ in range(rounds)]

    def join(self, gateway: str) -> list[Where]:
        self._health[gateway] = GatewayHealth.ACTIVE
        return self._settle()

    def leave(self, gateway: str, health: GatewayHealth = GatewayHealth.DOWN) -> list[Where]:
        self._health[gateway] = health
        return self._settle()

    def fork(self) -> Frys:
        """An independent copy, to try a join and a leave from the same state."""
        twin = copy.copy(self)
        twin._placer = self._placer.copy()
        twin._health = dict(self._health)
        twin._rng = np.random.default_rng(self._rng.integers(1 << 62))
        return twin

    def full_placement_seconds(self, gateways: Sequence[str], repeats: int = 1) -> float:
        """Best time to place everything from scratch, the graph already known."""
        best = float("inf")
        for _ in range(repeats):
            fresh = Placer(self._config, self._placer.graph.copy())
            fresh.set_gateways(dict.fromkeys(gateways, GatewayHealth.ACTIVE))
            start = time.perf_counter()
            fresh.plan(self._placer.graph.now or 0.0)
            best = min(best, time.perf_counter() - start)
        return best

    def _settle(self) -> list[Where]:
        self._placer.set_gateways(self._health)
        rounds = []
        for _ in range(self._max_rounds):
            rounds.append(self._round())
            if len(rounds) > 1 and rounds[-1] == rounds[-2]:
                break
        return rounds

    def _round(self, observe: bool = True) -> Where:
        # rounds are a dwell time apart, so every unit may move if it wants to
        self._now += max(self._interval, self._config.min_dwell)
        if observe:
            self._placer.observe(self._workload.counts(self._rng), self._now)
        plan = self._placer.plan(self._now)
        self.busiest_seen = max(self.busiest_seen, plan.busiest_ratio)
        table = plan.table
        where: Where = {}
        for a in self._workload.agents:
            gateway = table.gateway_of_agent(a)
            if gateway is not None:
                where[a] = gateway
        return where
