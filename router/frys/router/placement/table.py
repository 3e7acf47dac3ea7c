"""The placement table: which gateway serves each unit, agent and workflow."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from frys.router.placement.model import AgentId, GatewayId, Unit, UnitId, WorkflowId


class PlacementTable:
    """An immutable snapshot of one round's placement, with the lookups the service needs."""

    __slots__ = ("_by_workflow", "_gateway_of", "_loads", "_unit_of", "_units")

    def __init__(
        self,
        units: Mapping[UnitId, Unit],
        gateway_of: Mapping[UnitId, GatewayId],
        unit_of: Mapping[AgentId, UnitId],
    ) -> None:
        missing = set(units) - set(gateway_of)
        if missing:
            raise ValueError(f"units without a gateway: {sorted(missing)[:5]}")
        self._units = dict(units)
        self._gateway_of = {u: gateway_of[u] for u in units}
        self._unit_of = dict(unit_of)
        self._loads: dict[GatewayId, int] = {}
        self._by_workflow: dict[WorkflowId, list[UnitId]] = {}
        for uid, unit in self._units.items():
            gateway = self._gateway_of[uid]
            self._loads[gateway] = self._loads.get(gateway, 0) + unit.size
            for workflow in unit.workflows:
                self._by_workflow.setdefault(workflow, []).append(uid)
        for uids in self._by_workflow.values():
            uids.sort(key=lambda u: (-self._units[u].size, u))

    @classmethod
    def empty(cls) -> PlacementTable:
        return cls({}, {}, {})

    @property
    def units(self) -> Mapping[UnitId, Unit]:
        return self._units

    @property
    def assignment(self) -> Mapping[UnitId, GatewayId]:
        """Unit → gateway."""
        return self._gateway_of

    def gateway_of_unit(self, unit: UnitId) -> GatewayId | None:
        return self._gateway_of.get(unit)

    def gateway_of_agent(self, agent: AgentId) -> GatewayId | None:
        unit = self._unit_of.get(agent)
        return None if unit is None else self._gateway_of[unit]

    def units_of_workflow(self, workflow: WorkflowId) -> tuple[UnitId, ...]:
        """Units holding the workflow's members, largest first: several once it spans
        gateways, is cut, or shares members with other workflows."""
        return tuple(self._by_workflow.get(workflow, ()))

    def gateways_of_workflow(self, workflow: WorkflowId) -> tuple[GatewayId, ...]:
        """Gateways a broadcast on the workflow reaches, busiest share first."""
        seen: dict[GatewayId, None] = {}
        for uid in self._by_workflow.get(workflow, ()):
            seen.setdefault(self._gateway_of[uid], None)
        return tuple(seen)

    def agents(self) -> Mapping[AgentId, UnitId]:
        return self._unit_of

    def loads(self, gateways: Collection[GatewayId] = ()) -> dict[GatewayId, int]:
        """Connections per gateway; ``gateways`` adds empty ones to the answer."""
        out = dict.fromkeys(gateways, 0)
        out.update(self._loads)
        return out

    def connections(self) -> int:
        return sum(self._loads.values())

    def busiest_ratio(self, gateways: Collection[GatewayId]) -> float:
        """Busiest gateway's connections over the mean across ``gateways``."""
        if not gateways:
            return 0.0
        loads = self.loads(gateways)
        total = sum(loads[g] for g in gateways)
        if total == 0:
            return 0.0
        return max(loads[g] for g in gateways) * len(gateways) / total

    def __len__(self) -> int:
        return len(self._units)
