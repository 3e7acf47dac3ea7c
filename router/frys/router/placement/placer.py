"""The placement loop the router service drives: observe, plan, route.

The service feeds interaction counts (:meth:`Placer.observe`), the gateways' health
(:meth:`Placer.set_gateways`) and, when it knows better, where clients actually are
(:meth:`Placer.report_locations`). Each :meth:`Placer.plan` returns the new table, the
clients to migrate, and when the next plan should come; between plans
:meth:`Placer.route` answers where a connecting client goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from frys.router.placement.atoms import Atoms, build_atoms, merged
from frys.router.placement.blocks import NOWHERE, Block, Blocks, Node
from frys.router.placement.capacity import Capacity
from frys.router.placement.config import PlacementConfig
from frys.router.placement.forecast import Forecaster, ForecastError
from frys.router.placement.graph import InteractionGraph
from frys.router.placement.model import (
    AgentId,
    Counts,
    GatewayHealth,
    GatewayId,
    Migration,
    Move,
    MoveReason,
    NoGatewayError,
    UnitId,
    WorkflowId,
)
from frys.router.placement.packing import pack
from frys.router.placement.presence import Member
from frys.router.placement.ring import BoundedRing
from frys.router.placement.routing import choose_gateway, ring_key, workflow_homes
from frys.router.placement.state import Pace, RoundState
from frys.router.placement.table import PlacementTable


@dataclass(frozen=True, slots=True)
class Plan:
    """One round's result: the table to serve from and the clients to migrate."""

    now: float
    table: PlacementTable
    moves: tuple[Move, ...]
    """Units that change gateway, with the reason."""
    migrations: tuple[Migration, ...]
    """Clients to send ``migrate`` to: every agent not where its unit now is."""
    capacity: Capacity
    active: tuple[GatewayId, ...]
    next_plan_at: float = 0.0
    """When the next plan should run: the regular interval, or sooner when the forecast
    says a gateway fills up before then."""
    forecast_error: ForecastError | None = None
    """How far the size and rate forecasts were off, over every plan so far."""

    @property
    def moved_connections(self) -> int:
        return len(self.migrations)

    @property
    def busiest_ratio(self) -> float:
        return self.table.busiest_ratio(self.active)


class Placer:
    """Stateful placement: the graph, the current table, dwell times, forecasts."""

    def __init__(
        self, config: PlacementConfig | None = None, graph: InteractionGraph | None = None
    ) -> None:
        """``graph`` lets a restarted router place from what it already knows."""
        self._config = config or PlacementConfig()
        c = self._config
        self._graph = graph or InteractionGraph.from_config(c)
        self._health: dict[GatewayId, GatewayHealth] = {}
        self._ring = BoundedRing((), c.vnodes)
        self._table = PlacementTable.empty()
        self._forecast = Forecaster(
            c.forecast_alpha,
            c.forecast_beta,
            c.plan_interval,
            c.forecast_horizon,
            c.forecast_rate_alpha,
            c.forecast_rate_beta,
        )
        self._located: dict[AgentId, GatewayId] = {}
        self._moved_at: dict[AgentId, float] = {}
        self._changed_at: dict[AgentId, float] = {}
        self._workflows: dict[AgentId, frozenset[WorkflowId]] = {}
        self._piece: Mapping[AgentId, int] = {}
        self._published: dict[WorkflowId, float] = {}
        self._last_plan: float | None = None
        self._active_before: frozenset[GatewayId] = frozenset()
        self._settling_until = float("-inf")
        """Elective moves wait until then: a gateway joined, left or is draining."""
        self._joined: dict[GatewayId, float] = {}
        """When each gateway became active (joiners are filled over several rounds)."""
        self._routed: dict[AgentId, float | None] = {}
        """Agents routed but not reported yet: their place is kept for ``agent_ttl``."""
        self._homes: dict[WorkflowId, dict[GatewayId, int]] | None = None
        self._route_loads: dict[GatewayId, float] | None = None

    # --- inputs --------------------------------------------------------------------------
    @property
    def config(self) -> PlacementConfig:
        return self._config

    @property
    def graph(self) -> InteractionGraph:
        return self._graph

    @property
    def table(self) -> PlacementTable:
        """The table of the latest plan."""
        return self._table

    @property
    def gateways(self) -> Mapping[GatewayId, GatewayHealth]:
        return self._health

    @property
    def forecaster(self) -> Forecaster:
        return self._forecast

    def observe(self, counts: Counts, now: float) -> None:
        """Add one interval's aggregated counts, observed at ``now`` (seconds)."""
        self._graph.observe(counts, now)
        for (_, workflow), n in counts.publishes.items():
            self._published[workflow] = self._published.get(workflow, 0.0) + n
        self._forget_routes()

    def set_gateways(self, health: Mapping[GatewayId, GatewayHealth]) -> None:
        """Replace the gateway list; gateways left out are treated as down."""
        self._health = dict(health)
        active = [g for g, h in self._health.items() if h is GatewayHealth.ACTIVE]
        if set(active) != set(self._ring.gateways):
            self._ring = BoundedRing(active, self._config.vnodes)
        self._forget_routes()

    def report_locations(self, located: Mapping[AgentId, GatewayId | None]) -> None:
        """Where clients are connected now; ``None``: disconnected, gone at once."""
        gone = []
        for agent, gateway in located.items():
            if gateway is None:
                self._located.pop(agent, None)
                gone.append(agent)
            else:
                self._located[agent] = gateway
        self._graph.presence.forget(gone)
        self._forget_routes()

    def copy(self) -> Placer:
        """An independent copy, e.g. to preview what draining a gateway would move."""
        twin = Placer(self._config, self._graph.copy())
        twin._health = dict(self._health)
        twin._ring = self._ring  # never changed in place, only replaced
        twin._table = self._table  # immutable
        twin._forecast = self._forecast.copy()
        twin._located = dict(self._located)
        twin._moved_at = dict(self._moved_at)
        twin._changed_at = dict(self._changed_at)
        twin._workflows = dict(self._workflows)
        twin._piece = self._piece  # replaced each plan, never changed in place
        twin._published = dict(self._published)
        twin._last_plan = self._last_plan
        twin._active_before = self._active_before
        twin._settling_until = self._settling_until
        twin._joined = dict(self._joined)
        twin._routed = dict(self._routed)
        return twin

    # --- answers -------------------------------------------------------------------------
    def route(self, agent: AgentId, workflow: WorkflowId | None = None) -> GatewayId:
        """Gateway for a connecting client; remembered until the next plan."""
        active = self._active()
        known = self._table.gateway_of_agent(agent)
        if known is not None and known in active:
            return self._note(agent, known)
        homes = None
        if workflow is not None:
            if self._homes is None:
                self._homes = workflow_homes(self._graph.presence.live(), self._located)
            homes = self._homes.get(workflow)
        loads = self._loads(active)
        fill = Capacity.for_load(max(1, int(sum(loads.values()))), len(active), self._config).fill
        gateway = choose_gateway(homes, ring_key(workflow, agent), self._ring, active, loads, fill)
        return self._note(agent, gateway)

    def plan(self, now: float) -> Plan:
        """Re-place every live agent at ``now`` and say who must migrate."""
        config = self._config
        active = self._active()
        draining = sorted(g for g, h in self._health.items() if h is GatewayHealth.DRAINING)
        holders = [*active, *draining]
        current = frozenset(active)
        if (self._active_before and current != self._active_before) or draining:
            self._settling_until = now + config.min_dwell
            for gateway in current - self._active_before:
                self._joined[gateway] = now
        self._active_before = current
        window = max(config.min_dwell, 10 * config.plan_interval)
        self._joined = {g: t for g, t in self._joined.items() if now - t <= window}
        self._graph.advance(now)
        members = self._graph.presence.live()
        total = sum(m.connections for m in members.values())
        capacity = Capacity.for_load(total, len(active), config)
        self._note_changes(members, now)
        atoms = build_atoms(
            members,
            self._located,
            frozenset(holders),
            self._graph.peers,
            1.0 / self._graph.window(),
            max(2, int(config.piece_share * capacity.fill)),
            self._piece,
            config.part_slack,
            self._unsettled(),
        )
        self._update_forecast(atoms, now)
        index = {g: i for i, g in enumerate(holders)}
        blocks = self._blocks(atoms, index)
        receivers = list(range(len(active)))
        expected, growth, rates = self._expectations(atoms, blocks, receivers)
        windex = {w: i for i, w in enumerate(atoms.workflows)}
        trend = {windex[w]: t for w, t in self._forecast.growing().items() if w in windex}
        state = RoundState(
            blocks=blocks,
            receivers=receivers,
            capacity=capacity,
            pace=Pace(
                budget=max(1, int(config.move_budget * total)),
                migration_cost=config.migration_cost,
                payback_horizon=config.payback_horizon,
                workflow_moves=config.workflow_moves,
                refine_passes=config.refine_passes,
                fresh_share=config.fresh_share,
                elective=now >= self._settling_until,
            ),
            pinned=self._pinned(atoms, now),
            joining=frozenset(index[g] for g in self._joined if g in index and g in active),
            evacuated=frozenset(
                atoms.unit_of[a]
                for a, g in self._located.items()
                if g not in index and a in atoms.unit_of
            ),
            regrouped=self._regrouped(atoms, now),
            expected=expected,
            growth=growth,
            trend=trend,
            ring=self._ring_order(atoms, index),
        )
        packing = pack(state, [index[g] for g in draining])
        where = [holders[b] for b in blocks.block]
        shown, joined = merged(atoms, where)
        table = PlacementTable(
            {u.id: u for u in shown},
            {u.id: where[atoms.unit_of[next(iter(u.agents))]] for u in shown},
            {a: shown[joined[v]].id for a, v in atoms.unit_of.items()},
        )
        reasons = {m.node: m.reason for m in packing.moves}
        moved: dict[tuple[UnitId, GatewayId, GatewayId, MoveReason], int] = {}
        for m in packing.moves:
            key = (shown[joined[m.node]].id, holders[m.source], holders[m.target], m.reason)
            moved[key] = moved.get(key, 0) + atoms.units[m.node].size
        moves = [Move(u, src, dst, n, r) for (u, src, dst, r), n in moved.items()]
        migrations = []
        evacuated: dict[Node, dict[GatewayId, int]] = {}
        for agent, node in sorted(atoms.unit_of.items()):
            target = holders[blocks.block[node]]
            source = self._located.get(agent)
            if source is None or source == target:
                continue
            if source not in index:
                row = evacuated.setdefault(node, {})
                row[source] = row.get(source, 0) + 1
            reason = reasons.get(node, MoveReason.EVACUATE)
            migrations.append(Migration(agent, source, target, reason))
            self._moved_at[agent] = now
        for node, sources in sorted(evacuated.items()):
            source = min(sources, key=lambda g: (-sources[g], g))
            unit = atoms.units[node]
            target = holders[blocks.block[node]]
            moves.append(
                Move(shown[joined[node]].id, source, target, unit.size, MoveReason.EVACUATE)
            )
        waiting = {
            a: now if t is None else t
            for a, t in self._routed.items()
            if a not in members and (t is None or now - t <= config.agent_ttl)
        }
        kept = {a: self._located[a] for a in waiting if a in self._located}
        self._routed = {a: waiting[a] for a in kept}
        self._located = {a: holders[blocks.block[v]] for a, v in atoms.unit_of.items()}
        self._located.update(kept)
        self._moved_at = {a: t for a, t in self._moved_at.items() if a in members}
        self._piece = atoms.piece
        self._table = table
        self._last_plan = now
        self._forget_routes()
        next_at = now + self._next_delay(blocks, receivers, capacity, rates)
        return Plan(
            now,
            table,
            tuple(sorted(moves, key=lambda m: m.unit)),
            tuple(migrations),
            capacity,
            tuple(active),
            next_at,
            self._forecast.error(),
        )

    # --- plan internals ------------------------------------------------------------------
    def _active(self) -> list[GatewayId]:
        active = sorted(g for g, h in self._health.items() if h is GatewayHealth.ACTIVE)
        if not active:
            raise NoGatewayError("no active gateway")
        return active

    def _note_changes(self, members: Mapping[AgentId, Member], now: float) -> None:
        """Remember when each agent's workflows last changed (it may then follow them)."""
        current = {a: m.workflows for a, m in members.items()}
        for agent, workflows in current.items():
            before = self._workflows.get(agent)
            if before is not None and before != workflows:
                self._changed_at[agent] = now
        self._workflows = current
        horizon = now - self._config.min_dwell
        self._changed_at = {
            a: t for a, t in self._changed_at.items() if a in current and t >= horizon
        }

    def _update_forecast(self, atoms: Atoms, now: float) -> None:
        sizes: dict[WorkflowId, int] = {}
        for unit in atoms.units:
            for w in unit.workflows:
                sizes[w] = sizes.get(w, 0) + unit.size
        elapsed = now - self._last_plan if self._last_plan is not None else 0.0
        rates = {w: n / elapsed for w, n in self._published.items()} if elapsed > 0 else None
        self._published = {}
        self._forecast.update(sizes, rates, now)

    def _blocks(self, atoms: Atoms, index: Mapping[GatewayId, Block]) -> Blocks:
        """Workflow weights and the units. A weight is the broadcasts per second measured
        plus the members' prior, raised by the share a growing workflow is forecast to gain
        over half the payback horizon (at most doubled): its broadcasts grow with it."""
        config = self._config
        scale = 1.0 / self._graph.window()
        sizes: dict[int, int] = {}
        for counts in atoms.counts:
            for w, c in counts.items():
                sizes[w] = sizes.get(w, 0) + c
        weight = []
        for i, workflow in enumerate(atoms.workflows):
            rate = (
                self._graph.published(workflow) * scale
                + config.member_prior * sizes[i]
                + config.workflow_prior
            )
            gain = max(0.0, self._forecast.growth(workflow)) * config.payback_horizon / 2
            weight.append(rate * (1.0 + min(1.0, gain / max(1, sizes[i]))))
        blocks = Blocks(weight, config.direct_weight)
        for v, unit in enumerate(atoms.units):
            where = atoms.located[v]
            block = index[where] if where is not None else NOWHERE
            blocks.add(unit.size, atoms.counts[v], atoms.adj[v], block)
        return blocks

    def _expectations(
        self, atoms: Atoms, blocks: Blocks, receivers: Sequence[Block]
    ) -> tuple[dict[Block, float], dict[Node, float], dict[Block, float]]:
        """Forecast growth: connections per gateway by the next plan, per unit over the
        forecast horizon, and the growth rate (per second) of each gateway."""
        config = self._config
        growing = self._forecast.growing()
        if not growing:
            return {}, {}, {}
        windex = {w: i for i, w in enumerate(atoms.workflows)}
        receiving = frozenset(receivers)
        rates: dict[Block, float] = {}
        for workflow, trend in growing.items():
            w = windex.get(workflow)
            if w is None:
                continue
            row = {b: c for b, c in blocks.phi[w].items() if b in receiving}
            if row:
                home = max(row, key=lambda b: (row[b], -b))
                rates[home] = rates.get(home, 0.0) + trend
        expected = {b: r * config.plan_interval for b, r in rates.items()}
        growth: dict[Node, float] = {}
        for v, counts in enumerate(atoms.counts):
            for w in counts:
                trend = growing.get(atoms.workflows[w], 0.0)
                if trend > 0:
                    growth[v] = max(growth.get(v, 0.0), trend * config.forecast_horizon)
        return expected, growth, rates

    def _pinned(self, atoms: Atoms, now: float) -> frozenset[Node]:
        floor = now - self._config.min_dwell
        pinned = {
            atoms.unit_of[a] for a, t in self._moved_at.items() if t > floor and a in atoms.unit_of
        }
        return frozenset(pinned)

    def _unsettled(self) -> frozenset[AgentId]:
        """Agents whose workflows changed since they last moved."""
        return frozenset(
            a for a, t in self._changed_at.items() if t >= self._moved_at.get(a, float("-inf"))
        )

    def _regrouped(self, atoms: Atoms, now: float) -> frozenset[Node]:
        return frozenset(atoms.unit_of[a] for a in self._unsettled() if a in atoms.unit_of)

    def _ring_order(
        self, atoms: Atoms, index: Mapping[GatewayId, Block]
    ) -> Callable[[Node], Sequence[Block]]:
        ring = self._ring
        cache: dict[str, list[Block]] = {}

        def order(node: Node) -> Sequence[Block]:
            unit = atoms.units[node]
            first = min(unit.workflows) if unit.workflows else None
            key = ring_key(first, next(iter(unit.agents)) if first is None else "")
            found = cache.get(key)
            if found is None:
                found = cache[key] = [index[g] for g in ring.walk(key) if g in index]
            return found

        return order

    def _next_delay(
        self,
        blocks: Blocks,
        receivers: Sequence[Block],
        capacity: Capacity,
        rates: Mapping[Block, float],
    ) -> float:
        """Seconds until the next plan: the regular interval, or when a gateway that
        receives a growing workflow's newcomers is forecast to reach the fill cap."""
        config = self._config
        delay = config.plan_interval
        for block in receivers:
            rate = rates.get(block, 0.0)
            load = blocks.load.get(block, 0)
            if rate > 0 and load < capacity.fill:
                delay = min(delay, (capacity.fill - load) / rate)
        return max(config.min_plan_interval, delay)

    # --- routing internals ---------------------------------------------------------------
    def _note(self, agent: AgentId, gateway: GatewayId) -> GatewayId:
        self._located[agent] = gateway
        self._routed.setdefault(agent, None)
        return gateway

    def _loads(self, active: Sequence[GatewayId]) -> dict[GatewayId, float]:
        """Loads routing compares against: the latest plan's, else the reported places."""
        if self._route_loads is None:
            if len(self._table):
                loads = {g: float(n) for g, n in self._table.loads(active).items()}
            else:
                loads = dict.fromkeys(active, 0.0)
                for agent, member in self._graph.presence.live().items():
                    gateway = self._located.get(agent)
                    if gateway is not None:
                        loads[gateway] = loads.get(gateway, 0.0) + member.connections
            self._route_loads = loads
        return self._route_loads

    def _forget_routes(self) -> None:
        self._homes = None
        self._route_loads = None


__all__ = ["Placer", "Plan", "UnitId"]
