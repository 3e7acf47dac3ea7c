"""The decaying interaction graph: who talks to which workflow and to whom, lately.

Gateways report aggregated counts; each report first ages what is known (halving every
``half_life`` seconds) and then adds the new counts, so the graph follows changing teams
without forgetting them after one quiet interval. Ties that decay below ``prune_below``
are dropped, and an agent with no tie left disappears. Time is always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from frys.router.placement.config import PlacementConfig
from frys.router.placement.model import AgentId, Counts, WorkflowId


class InteractionGraph:
    """Weighted agent → workflow ties and agent ↔ agent ties, decayed by age."""

    __slots__ = ("_half_life", "_now", "_peers", "_prune_below", "_sub_weight", "_ties")

    def __init__(
        self, half_life: float = 600.0, prune_below: float = 0.05, subscription_weight: float = 20.0
    ) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self._half_life = half_life
        self._prune_below = prune_below
        self._sub_weight = subscription_weight
        self._now: float | None = None
        self._ties: dict[AgentId, dict[WorkflowId, float]] = {}
        self._peers: dict[AgentId, dict[AgentId, float]] = {}

    @classmethod
    def from_config(cls, config: PlacementConfig) -> InteractionGraph:
        return cls(config.half_life, config.prune_below, config.subscription_weight)

    @property
    def now(self) -> float | None:
        """Time of the latest report or advance, ``None`` before the first."""
        return self._now

    def observe(self, counts: Counts, now: float) -> None:
        """Age the graph to ``now``, then add one interval's counts."""
        self.advance(now)
        for (agent, workflow), n in counts.subscriptions.items():
            self._add_tie(agent, workflow, n * self._sub_weight)
        for (agent, workflow), n in counts.publishes.items():
            self._add_tie(agent, workflow, n)
        for (sender, recipient), n in counts.direct.items():
            _check_count(n)
            if sender == recipient or n == 0:
                continue
            self._peers.setdefault(sender, {})
            self._peers.setdefault(recipient, {})
            self._peers[sender][recipient] = self._peers[sender].get(recipient, 0.0) + n
            self._peers[recipient][sender] = self._peers[recipient].get(sender, 0.0) + n

    def advance(self, now: float) -> None:
        """Age every weight to ``now`` and drop the ones that faded out."""
        if self._now is not None and now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        if self._now is not None and now > self._now:
            factor = 0.5 ** ((now - self._now) / self._half_life)
            self._ties = _decayed(self._ties, factor, self._prune_below)
            self._peers = _decayed(self._peers, factor, self._prune_below)
        self._now = now

    def copy(self) -> InteractionGraph:
        """An independent copy (the rows are copied, nothing is shared that changes)."""
        twin = InteractionGraph(self._half_life, self._prune_below, self._sub_weight)
        twin._now = self._now
        twin._ties = {k: dict(row) for k, row in self._ties.items()}
        twin._peers = {k: dict(row) for k, row in self._peers.items()}
        return twin

    # --- reading ------------------------------------------------------------------------
    def agents(self) -> set[AgentId]:
        """Every agent with at least one live tie."""
        return set(self._ties) | set(self._peers)

    def ties(self, agent: AgentId) -> Mapping[WorkflowId, float]:
        """The agent's workflow ties (subscriptions and publishes) by weight."""
        return self._ties.get(agent, _EMPTY)

    def peers(self, agent: AgentId) -> Mapping[AgentId, float]:
        """Agents this one exchanged direct messages with, both directions summed."""
        return self._peers.get(agent, _EMPTY)

    def tie(self, agent: AgentId, workflow: WorkflowId) -> float:
        return self.ties(agent).get(workflow, 0.0)

    def direct(self, a: AgentId, b: AgentId) -> float:
        return self.peers(a).get(b, 0.0)

    def edge_count(self) -> int:
        """Workflow ties plus agent pairs (each pair once)."""
        ties = sum(len(t) for t in self._ties.values())
        pairs = sum(len(p) for p in self._peers.values()) // 2
        return ties + pairs

    def workflows(self) -> set[WorkflowId]:
        return {w for ties in self._ties.values() for w in ties}

    def _add_tie(self, agent: AgentId, workflow: WorkflowId, weight: float) -> None:
        _check_count(weight)
        if weight == 0:
            return
        ties = self._ties.setdefault(agent, {})
        ties[workflow] = ties.get(workflow, 0.0) + weight


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
    """One report from several gateways' reports of the same interval."""
    subs: dict[tuple[AgentId, WorkflowId], float] = {}
    pubs: dict[tuple[AgentId, WorkflowId], float] = {}
    direct: dict[tuple[AgentId, AgentId], float] = {}
    for part in parts:
        for src, dst in ((part.subscriptions, subs), (part.publishes, pubs)):
            for key, n in src.items():
                dst[key] = dst.get(key, 0.0) + n
        for pair, n in part.direct.items():
            direct[pair] = direct.get(pair, 0.0) + n
    return Counts(subs, pubs, direct)
