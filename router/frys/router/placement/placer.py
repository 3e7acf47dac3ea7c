"""The placement loop the router service drives: observe, plan, route.

The service feeds interaction counts (:meth:`Placer.observe`), the gateways' health
(:meth:`Placer.set_gateways`) and, when it knows better, where clients actually are
(:meth:`Placer.report_locations`). Each :meth:`Placer.plan` returns the new table and the
clients to migrate; between plans :meth:`Placer.route` answers where a connecting client
goes, by consistent hashing with bounded load for anyone the router has not placed yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from frys.router.placement.affinity import affinity_groups, unit_graph
from frys.router.placement.capacity import Capacity
from frys.router.placement.config import PlacementConfig
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
    solo_unit_id,
    workflow_unit_id,
)
from frys.router.placement.packing import PackingInput, pack
from frys.router.placement.ring import BoundedRing
from frys.router.placement.table import PlacementTable
from frys.router.placement.units import Units, build_units


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

    @property
    def moved_connections(self) -> int:
        return len(self.migrations)

    @property
    def busiest_ratio(self) -> float:
        return self.table.busiest_ratio(self.active)


class Placer:
    """Stateful placement: the graph, the current table, dwell times, provisional routes."""

    def __init__(
        self, config: PlacementConfig | None = None, graph: InteractionGraph | None = None
    ) -> None:
        """``graph`` lets a restarted router place from what it already knows."""
        self._config = config or PlacementConfig()
        self._graph = graph or InteractionGraph.from_config(self._config)
        self._health: dict[GatewayId, GatewayHealth] = {}
        self._ring = BoundedRing((), self._config.vnodes)
        self._table = PlacementTable.empty()
        self._units: Units | None = None
        self._located: dict[AgentId, GatewayId] = {}
        self._moved_at: dict[UnitId, float] = {}
        self._routed: dict[UnitId, GatewayId] = {}
        self._routed_load: Counter[GatewayId] = Counter()

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

    def observe(self, counts: Counts, now: float) -> None:
        """Add one interval's aggregated counts, observed at ``now`` (seconds)."""
        self._graph.observe(counts, now)

    def set_gateways(self, health: Mapping[GatewayId, GatewayHealth]) -> None:
        """Replace the gateway list; gateways left out are treated as down."""
        self._health = dict(health)
        active = [g for g, h in self._health.items() if h is GatewayHealth.ACTIVE]
        if set(active) != set(self._ring.gateways):
            self._ring = BoundedRing(active, self._config.vnodes)

    def report_locations(self, located: Mapping[AgentId, GatewayId | None]) -> None:
        """Where clients are connected now (``None``: disconnected), overriding beliefs."""
        for agent, gateway in located.items():
            if gateway is None:
                self._located.pop(agent, None)
            else:
                self._located[agent] = gateway

    def copy(self) -> Placer:
        """An independent copy, e.g. to preview what draining a gateway would move."""
        twin = Placer(self._config, self._graph.copy())
        twin._health = dict(self._health)
        twin._ring = self._ring  # never changed in place, only replaced
        twin._table = self._table  # immutable
        twin._units = self._units  # immutable
        twin._located = dict(self._located)
        twin._moved_at = dict(self._moved_at)
        twin._routed = dict(self._routed)
        twin._routed_load = Counter(self._routed_load)
        return twin

    # --- answers -------------------------------------------------------------------------
    def route(self, agent: AgentId, workflow: WorkflowId | None = None) -> GatewayId:
        """Gateway for a connecting client; remembered until the next plan."""
        active = self._active()
        known = self._table.gateway_of_agent(agent)
        if known in active and known is not None:
            return self._note(agent, known)
        if workflow is not None:
            homes = [
                self._table.gateway_of_unit(u) for u in self._table.units_of_workflow(workflow)
            ]
            serving = [g for g in homes if g is not None and g in active]
            if serving:
                loads = self._loads()
                return self._note(agent, min(serving, key=lambda g: (loads.get(g, 0), g)))
        key = workflow_unit_id(workflow) if workflow is not None else solo_unit_id(agent)
        earlier = self._routed.get(key)
        if earlier is not None and earlier in active:
            return self._note(agent, earlier)
        loads = self._loads()
        total = sum(loads.values()) + 1
        cap = Capacity.for_load(total, len(active), self._config).fill
        gateway = self._ring.place(key, 1, loads, cap)
        self._routed[key] = gateway
        return self._note(agent, gateway)

    def plan(self, now: float) -> Plan:
        """Re-place everything the graph knows at ``now`` and say who must migrate."""
        active = self._active()
        config = self._config
        self._graph.advance(now)
        capacity = Capacity.for_load(len(self._graph.agents()), len(active), config)
        units = build_units(self._graph, capacity, config, self._units, self._located)
        adjacency = unit_graph(units, self._graph)
        groups = affinity_groups(adjacency, config.seed, config.resolution)
        current = self._current(units)
        pinned = frozenset(
            u for u, t in self._moved_at.items() if u in units.units and now - t < config.min_dwell
        )
        budget = max(1, int(config.move_budget * capacity.mean * len(active)))
        packing = pack(
            PackingInput(
                sizes=units.sizes(),
                groups=groups,
                adjacency=adjacency,
                current=current,
                health=self._health,
                capacity=capacity,
                ring=self._ring,
                pinned=pinned,
                budget=budget,
                min_gain=config.min_gain,
            )
        )
        table = PlacementTable(units.units, packing.assignment, units.unit_of)
        reasons = {m.unit: m.reason for m in packing.moves}
        migrations = []
        for agent, uid in sorted(units.unit_of.items()):
            target = packing.assignment[uid]
            source = self._located.get(agent)
            if source is not None and source != target:
                reason = reasons.get(uid, MoveReason.REGROUP)
                migrations.append(Migration(agent, source, target, reason))
        self._located = {a: packing.assignment[u] for a, u in units.unit_of.items()}
        self._moved_at = {u: t for u, t in self._moved_at.items() if u in units.units}
        for uid in (*reasons, *packing.placed):
            self._moved_at[uid] = now
        self._units = units
        self._table = table
        self._routed.clear()
        self._routed_load.clear()
        return Plan(now, table, packing.moves, tuple(migrations), capacity, tuple(active))

    # --- internals -----------------------------------------------------------------------
    def _active(self) -> list[GatewayId]:
        active = sorted(g for g, h in self._health.items() if h is GatewayHealth.ACTIVE)
        if not active:
            raise NoGatewayError("no active gateway")
        return active

    def _note(self, agent: AgentId, gateway: GatewayId) -> GatewayId:
        if self._located.get(agent) != gateway:
            self._located[agent] = gateway
            if self._table.gateway_of_agent(agent) != gateway:
                self._routed_load[gateway] += 1
        return gateway

    def _loads(self) -> dict[GatewayId, int]:
        loads = self._table.loads(self._active())
        for gateway, n in self._routed_load.items():
            loads[gateway] = loads.get(gateway, 0) + n
        return loads

    def _current(self, units: Units) -> dict[UnitId, GatewayId]:
        """Where each unit is: last table's answer, else where most of its agents are."""
        current: dict[UnitId, GatewayId] = {}
        for uid, unit in units.units.items():
            gateway = self._table.gateway_of_unit(uid)
            if gateway is None:
                votes = Counter(self._located[a] for a in unit.agents if a in self._located)
                if votes:
                    gateway = min(votes, key=lambda g: (-votes[g], g))
            if gateway is not None:
                current[uid] = gateway
        return current
