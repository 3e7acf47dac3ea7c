"""Which gateways exist and what the router may do with each: heartbeats and, in a
Kubernetes cluster, the gateway pods' own state (pure; time is passed in)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from frys.router.placement import GatewayHealth
from frys.shared.protocol.routing import Heartbeat

_WORKER_SUFFIX = re.compile(r"-w\d+$")


@dataclass(slots=True)
class GatewaySeen:
    heartbeat: Heartbeat
    seen: float


@dataclass(slots=True)
class PodState:
    ready: bool
    terminating: bool


@dataclass
class Membership:
    ttl_s: float = 6.0
    forget_after_s: float = 120.0
    gateways: dict[str, GatewaySeen] = field(default_factory=dict)
    pods: dict[str, PodState] | None = None
    """Pod name → state when Kubernetes discovery runs; ``None`` outside a cluster."""

    def heard(self, beat: Heartbeat, now: float) -> None:
        self.gateways[beat.id] = GatewaySeen(beat, now)

    def set_pods(self, pods: dict[str, PodState]) -> None:
        self.pods = pods

    def _pod(self, gateway_id: str) -> PodState | None:
        if self.pods is None:
            return None
        pod = self.pods.get(gateway_id)
        if pod is None:
            pod = self.pods.get(_WORKER_SUFFIX.sub("", gateway_id))
        return pod

    def health(self, now: float) -> dict[str, GatewayHealth]:
        out: dict[str, GatewayHealth] = {}
        for gateway_id, seen in list(self.gateways.items()):
            age = now - seen.seen
            if age > self.forget_after_s:
                del self.gateways[gateway_id]
                continue
            if age > self.ttl_s:
                out[gateway_id] = GatewayHealth.DOWN
                continue
            state = GatewayHealth.DRAINING if seen.heartbeat.draining else GatewayHealth.ACTIVE
            pod = self._pod(gateway_id)
            if self.pods is not None and (pod is None or pod.terminating or not pod.ready):
                # The API knows before the heartbeats stop: drain it now.
                state = GatewayHealth.DRAINING
            out[gateway_id] = state
        return out

    def url_of(self, gateway_id: str) -> str | None:
        seen = self.gateways.get(gateway_id)
        return None if seen is None else seen.heartbeat.url
