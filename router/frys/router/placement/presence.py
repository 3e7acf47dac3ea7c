"""Who is connected now, how many times, and to which workflows they are subscribed.

Gateways name every live agent and every live subscription in each report. An agent no
report has named for ``agent_ttl`` seconds has left, whatever its message history says;
a subscription the agent's latest report leaves out has ended, and one no report has
repeated for ``subscription_ttl`` seconds too. Time is report
time: a router that stops hearing from gateways altogether expires nobody (their
heartbeats say whether they are down), so a stalled feed never empties the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from frys.router.placement.model import AgentId, Counts, WorkflowId


@dataclass(frozen=True, slots=True)
class Member:
    """One live agent: its connections and the workflows it is subscribed to."""

    connections: int
    workflows: frozenset[WorkflowId]


class Presence:
    """Last report time of every agent and subscription, and the agents' connections."""

    __slots__ = ("_agent_ttl", "_connections", "_latest", "_seen", "_sub_ttl", "_subs")

    def __init__(self, agent_ttl: float = 30.0, subscription_ttl: float = 12.0) -> None:
        if agent_ttl <= 0 or subscription_ttl <= 0:
            raise ValueError("agent_ttl and subscription_ttl must be positive")
        self._agent_ttl = agent_ttl
        self._sub_ttl = subscription_ttl
        self._latest: float | None = None
        self._seen: dict[AgentId, float] = {}
        self._connections: dict[AgentId, int] = {}
        self._subs: dict[AgentId, dict[WorkflowId, float]] = {}

    @property
    def latest(self) -> float | None:
        """Time of the latest report, ``None`` before the first."""
        return self._latest

    def observe(self, counts: Counts, now: float) -> None:
        """Note every agent and subscription the report names, then expire the silent."""
        if self._latest is not None and now < self._latest:
            raise ValueError(f"time went backwards: {now} < {self._latest}")
        self._latest = now
        closed: set[AgentId] = set()
        for agent, n in counts.connections.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"connections must be a non-negative int, got {n!r}")
            if n == 0:
                closed.add(agent)
            else:
                self._seen[agent] = now
                self._connections[agent] = n
        self.forget(closed)
        named: set[AgentId] = set()
        for (agent, workflow), reported in counts.subscriptions.items():
            if reported > 0 and agent not in closed:
                self._subs.setdefault(agent, {})[workflow] = now
                named.add(agent)
        named.update(agent for (agent, _), sent in counts.publishes.items() if sent > 0)
        named.update(sender for (sender, _), sent in counts.direct.items() if sent > 0)
        for agent in named:
            if agent not in counts.connections and agent not in closed:
                self._seen[agent] = now
                self._connections.setdefault(agent, 1)
        self._expire(now)

    def forget(self, agents: Iterable[AgentId]) -> None:
        """Agents known to have disconnected: gone at once, without waiting for the TTL."""
        for agent in agents:
            self._seen.pop(agent, None)
            self._connections.pop(agent, None)
            self._subs.pop(agent, None)

    def live(self) -> dict[AgentId, Member]:
        """Every live agent with its connections and current workflows."""
        out: dict[AgentId, Member] = {}
        for agent in self._seen:
            out[agent] = Member(self._connections[agent], self.workflows(agent))
        return out

    def is_live(self, agent: AgentId) -> bool:
        return agent in self._seen

    def workflows(self, agent: AgentId) -> frozenset[WorkflowId]:
        """The workflows the agent's latest report names: a report that names some of an
        agent's subscriptions and not others says those others have ended (a member that
        switches workflows is a member of the new one only, at once). Subscriptions left
        out of every report since lapse after ``subscription_ttl`` (a report that names
        none of the agent's subscriptions keeps them)."""
        subs = self._subs.get(agent)
        if not subs:
            return _NONE
        latest = max(subs.values())
        return frozenset(w for w, t in subs.items() if t == latest)

    def last_seen(self, agent: AgentId) -> float | None:
        return self._seen.get(agent)

    def connections(self) -> int:
        """Live connections in total."""
        return sum(self._connections.values())

    def copy(self) -> Presence:
        twin = Presence(self._agent_ttl, self._sub_ttl)
        twin._latest = self._latest
        twin._seen = dict(self._seen)
        twin._connections = dict(self._connections)
        twin._subs = {a: dict(row) for a, row in self._subs.items()}
        return twin

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        agent_floor = now - self._agent_ttl
        gone = [a for a, t in self._seen.items() if t <= agent_floor]
        self.forget(gone)
        sub_floor = now - self._sub_ttl
        for agent in [a for a, row in self._subs.items() if min(row.values()) <= sub_floor]:
            kept = {w: t for w, t in self._subs[agent].items() if t > sub_floor}
            if kept:
                self._subs[agent] = kept
            else:
                del self._subs[agent]


_NONE: frozenset[WorkflowId] = frozenset()


def live_members(members: Mapping[AgentId, Member]) -> dict[WorkflowId, list[AgentId]]:
    """Members of each workflow, sorted, from a :meth:`Presence.live` answer."""
    out: dict[WorkflowId, list[AgentId]] = {}
    for agent in sorted(members):
        for workflow in members[agent].workflows:
            out.setdefault(workflow, []).append(agent)
    return out
