"""What the gateways reported: who is there (presence) and who talks to whom, lately.

Message counts decay: each report first ages what is known (halving every ``half_life``
seconds) and then adds the new counts, so rates follow changing teams without forgetting
them after one quiet interval. Counts that decay below ``prune_below`` are dropped. The
decayed sum of a steady rate r settles at r × half_life / ln 2, so dividing by the window
seen so far gives a rate in messages per second. Time is always passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from frys.router.placement.config import PlacementConfig
from frys.router.placement.model import AgentId, Counts, WorkflowId
from frys.router.placement.presence import Presence

_FIRST_GAP = 5.0
"""Seconds the first report is assumed to cover until a second one says how often they
come (the router's plan interval)."""


class InteractionGraph:
    """Presence, decayed agent → workflow publishes and agent ↔ agent direct messages."""

    __slots__ = (
        "_first",
        "_half_life",
        "_last_report",
        "_now",
        "_peers",
        "_presence",
        "_prune_below",
        "_reports",
        "_ties",
        "_workflows",
    )

    def __init__(
        self,
        half_life: float = 600.0,
        prune_below: float = 0.05,
        presence: Presence | None = None,
    ) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self._half_life = half_life
        self._prune_below = prune_below
        self._presence = presence or Presence()
        self._now: float | None = None
        self._first: float | None = None
        self._last_report: float | None = None
        self._reports = 0
        self._ties: dict[AgentId, dict[WorkflowId, float]] = {}
        self._peers: dict[AgentId, dict[AgentId, float]] = {}
        self._workflows: dict[WorkflowId, float] = {}

    @classmethod
    def from_config(cls, config: PlacementConfig) -> InteractionGraph:
        presence = Presence(config.agent_ttl, config.subscription_ttl)
        return cls(config.half_life, config.prune_below, presence)

    @property
    def now(self) -> float | None:
        """Time of the latest report or advance, ``None`` before the first."""
        return self._now

    @property
    def presence(self) -> Presence:
        return self._presence

    def observe(self, counts: Counts, now: float) -> None:
        """Age the graph to ``now``, then add one interval's counts."""
        for n in (*counts.publishes.values(), *counts.direct.values()):
            _check_count(n)
        self.advance(now)
        self._presence.observe(counts, now)
        if self._first is None:
            self._first = now
        self._last_report = now
        self._reports += 1
        for (agent, workflow), n in counts.publishes.items():
            if n > 0:
                ties = self._ties.setdefault(agent, {})
                ties[workflow] = ties.get(workflow, 0.0) + n
                self._workflows[workflow] = self._workflows.get(workflow, 0.0) + n
        for (sender, recipient), n in counts.direct.items():
            if sender == recipient or n == 0:
                continue
            mine = self._peers.setdefault(sender, {})
            theirs = self._peers.setdefault(recipient, {})
            mine[recipient] = mine.get(recipient, 0.0) + n
            theirs[sender] = theirs.get(sender, 0.0) + n

    def advance(self, now: float) -> None:
        """Age every weight to ``now`` and drop the ones that faded out."""
        if self._now is not None and now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        if self._now is not None and now > self._now:
            factor = 0.5 ** ((now - self._now) / self._half_life)
            self._ties = _decayed(self._ties, factor, self._prune_below)
            self._peers = _decayed(self._peers, factor, self._prune_below)
            self._workflows = {
                w: x * factor for w, x in self._workflows.items() if x * factor >= self._prune_below
            }
        self._now = now

    def copy(self) -> InteractionGraph:
        """An independent copy (the rows are copied, nothing is shared that changes)."""
        twin = InteractionGraph(self._half_life, self._prune_below, self._presence.copy())
        twin._now = self._now
        twin._first = self._first
        twin._last_report = self._last_report
        twin._reports = self._reports
        twin._ties = {k: dict(row) for k, row in self._ties.items()}
        twin._peers = {k: dict(row) for k, row in self._peers.items()}
        twin._workflows = dict(self._workflows)
        return twin

    # --- reading ------------------------------------------------------------------------
    def agents(self) -> set[AgentId]:
        """Every agent with at least one live message tie (live or not)."""
        return set(self._ties) | set(self._peers)

    def ties(self, agent: AgentId) -> Mapping[WorkflowId, float]:
        """Messages the agent published to each workflow, decayed."""
        return self._ties.get(agent, _EMPTY)

    def peers(self, agent: AgentId) -> Mapping[AgentId, float]:
        """Agents this one exchanged direct messages with, both directions summed, decayed."""
        return self._peers.get(agent, _EMPTY)

    def tie(self, agent: AgentId, workflow: WorkflowId) -> float:
        return self.ties(agent).get(workflow, 0.0)

    def direct(self, a: AgentId, b: AgentId) -> float:
        return self.peers(a).get(b, 0.0)

    def published(self, workflow: WorkflowId) -> float:
        """Messages published to ``workflow`` by anyone, decayed."""
        return self._workflows.get(workflow, 0.0)

    def edge_count(self) -> int:
        """Publish ties plus agent pairs (each pair once)."""
        ties = sum(len(t) for t in self._ties.values())
        pairs = sum(len(p) for p in self._peers.values()) // 2
        return ties + pairs

    def workflows(self) -> set[WorkflowId]:
        return set(self._workflows)

    def window(self) -> float:
        """Seconds a decayed count stands for: divide a weight by it to get a rate.

        A steady rate r sums to r × window: the reports seen so far (with the interval the
        first one covered), each weighed by its decay.
        """
        if self._first is None or self._now is None or self._last_report is None:
            return 1.0
        gap = (
            (self._last_report - self._first) / (self._reports - 1)
            if self._reports > 1
            else _FIRST_GAP
        )
        span = self._now - self._first + gap
        tau = self._half_life / math.log(2.0)
        return max(1.0, tau * (1.0 - math.pow(0.5, span / self._half_life)))


_EMPTY: Mapping[str, float] = {}


def _check_count(n: float) -> None:
    if not n >= 0:  # also rejects NaN
        raise ValueError(f"counts must be non-negative, got {n!r}")


def _decayed(
    table: dict[str, dict[str, float]], factor: float, floor: float
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, row in table.items():
        kept = {k: w * factor for k, w in row.items() if w * factor >= floor}
        if kept:
            out[key] = kept
    return out


def merge_counts(parts: Iterable[Counts]) -> Counts:
    """One report from several gateways' reports of the same interval.

    Connections add up: each gateway names the sessions it holds.
    """
    subs: dict[tuple[AgentId, WorkflowId], float] = {}
    pubs: dict[tuple[AgentId, WorkflowId], float] = {}
    direct: dict[tuple[AgentId, AgentId], float] = {}
    connections: dict[AgentId, int] = {}
    for part in parts:
        for src, dst in ((part.subscriptions, subs), (part.publishes, pubs)):
            for key, n in src.items():
                dst[key] = dst.get(key, 0.0) + n
        for pair, n in part.direct.items():
            direct[pair] = direct.get(pair, 0.0) + n
        for agent, c in part.connections.items():
            connections[agent] = connections.get(agent, 0) + c
    return Counts(subs, pubs, direct, connections)
