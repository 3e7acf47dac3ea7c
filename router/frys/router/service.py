"""The router service: listens to gateways over NATS, runs placement, publishes the result.

Every round (``plan_interval_s``, sooner when the plan's forecast asks) it feeds the
interactions gathered since the last round (connections counted per gateway naming an
agent) and the gateways' health to the :class:`~frys.router.placement.Placer`, writes the changed
placements to the KV bucket the gateways watch, and sends each source gateway its
migration orders. It holds no state another router could not rebuild from the gateways'
next reports; the table in KV outlives it, so a dead router changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from frys.router.config import RouterConfig
from frys.router.kubernetes import PodWatcher, in_cluster
from frys.router.membership import Membership, PodState
from frys.router.placement import (
    Counts,
    GatewayHealth,
    NoGatewayError,
    PlacementConfig,
    Placer,
    Plan,
    merge_counts,
)
from frys.runtime.nats_auth import NatsAuth
from frys.shared.protocol.routing import (
    InteractionReport,
    MigrationOrder,
    decode_heartbeat,
    decode_interactions,
    placement_key,
)

log = logging.getLogger("frys.router")


@dataclass
class RouterStats:
    plans: int = 0
    reports: int = 0
    moves: int = 0
    migrations_ordered: int = 0
    placements_written: int = 0
    last_plan_ms: float = 0.0
    busiest_ratio: float = 0.0
    agents: int = 0
    next_plan_s: float = 0.0
    """Seconds to the next plan the latest plan asked for."""
    forecast_error: float = 0.0
    """Weighted error of the workflow size forecasts, one plan ahead."""
    gateways: dict[str, str] = field(default_factory=dict)


class RouterService:
    def __init__(self, config: RouterConfig, placer: Placer | None = None, k8s_api: object = None):
        self.config = config
        self.subjects = config.subjects
        self.placer = placer or Placer(
            PlacementConfig(
                half_life=config.half_life_s,
                min_dwell=config.min_dwell_s,
                agent_ttl=config.agent_ttl_s,
                plan_interval=config.plan_interval_s,
                min_plan_interval=min(config.min_plan_interval_s, config.plan_interval_s),
            )
        )
        self.membership = Membership(config.gateway_ttl_s, config.forget_after_s)
        self.nc = NatsClient()
        self.kv: KeyValue | None = None
        self.stats = RouterStats()
        self._reports: list[Counts] = []
        self._located: dict[str, str] = {}
        self._sessions: dict[str, frozenset[str]] = {}
        """Agents each gateway's latest report of this round names as connected."""
        self._published: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._k8s_api = k8s_api
        self.pods: PodWatcher | None = None
        self.ready = asyncio.Event()
        self.problem = ""
        """Why the router is not ready, for /readyz (empty once ready)."""
        self._warned_at = -60.0

    async def _on_nats_error(self, exc: Exception) -> None:
        """nats-py retries by itself and reports each failed attempt here: while not
        connected, a warning every 10 s at most (its default prints a traceback each)."""
        if self.nc.is_connected:
            log.debug("NATS error: %s", exc)
            return
        self.problem = (
            f"nats: not reachable at {self.config.nats_url} ({exc or type(exc).__name__})"
        )
        now = time.monotonic()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            log.warning("%s; retrying", self.problem)

    async def start(self) -> None:
        await self.nc.connect(
            servers=[u.strip() for u in self.config.nats_url.split(",")],
            name="frys-router",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            error_cb=self._on_nats_error,
            **NatsAuth.from_settings(self.config).connect_options(),
        )
        js = self.nc.jetstream(timeout=5)
        bucket = self.subjects.placement_bucket
        while self.kv is None:
            try:
                try:
                    self.kv = await js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    self.kv = await js.create_key_value(
                        KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE)
                    )
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                self.problem = f"jetstream: placement bucket not ready ({exc})"
                log.warning("placement bucket not ready (%s); retrying", exc)
                await asyncio.sleep(1.0)
        await self._load_published()
        await self.nc.subscribe(self.subjects.heartbeat, cb=self._on_heartbeat)
        await self.nc.subscribe(self.subjects.interactions, cb=self._on_interactions)
        if self.config.k8s == "on" or (self.config.k8s == "auto" and in_cluster()):
            self.membership.set_pods({})
            self.pods = PodWatcher(
                self.config.k8s_namespace,
                self.config.k8s_selector,
                self._on_pods,
                api_client=self._k8s_api,
            )
            self.pods.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self.problem = ""
        self.ready.set()

    async def _load_published(self) -> None:
        """Start from the table in KV, so a restarted router does not rewrite it all."""
        assert self.kv is not None
        from frys.shared.protocol.routing import agent_of_key

        try:
            keys = await self.kv.keys()
        except Exception:
            return
        for key in keys:
            agent = agent_of_key(key)
            if agent is None:
                continue
            with contextlib.suppress(Exception):
                entry = await self.kv.get(key)
                if entry.value:
                    self._published[agent] = entry.value.decode()

    async def stop(self) -> None:
        if self.pods is not None:
            self.pods.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), 2.0)

    # --- inputs -------------------------------------------------------------------------
    async def _on_heartbeat(self, msg: Msg) -> None:
        beat = decode_heartbeat(msg.data)
        if beat is not None:
            self.membership.heard(beat, time.monotonic())

    async def _on_interactions(self, msg: Msg) -> None:
        report = decode_interactions(msg.data)
        if report is None:
            return
        self.stats.reports += 1
        self._reports.append(_counts(report))
        self._sessions[report.gateway] = frozenset(report.located)
        for agent in report.located:
            self._located[agent] = report.gateway

    def _on_pods(self, pods: dict[str, PodState]) -> None:
        self.membership.set_pods(pods)

    # --- one round ----------------------------------------------------------------------
    async def _loop(self) -> None:
        delay = self.config.plan_interval_s
        while True:
            await asyncio.sleep(delay)
            plan = None
            try:
                plan = await self.round(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("placement round failed")
            delay = self.next_delay(plan, time.monotonic())

    def next_delay(self, plan: Plan | None, now: float) -> float:
        """Seconds to the next round: when the plan asks (its forecast may want it sooner
        than the regular interval), never sooner than ``min_plan_interval_s``."""
        regular = self.config.plan_interval_s
        if plan is None:
            return regular
        floor = min(self.config.min_plan_interval_s, regular)
        return min(regular, max(floor, plan.next_plan_at - now))

    async def round(self, now: float) -> Plan | None:
        """Observe, plan, publish. Returns the plan (``None`` without active gateways, or
        before the first report: a router that has heard nobody yet must not clear the
        table it found in KV)."""
        reports, self._reports = self._reports, []
        sessions, self._sessions = self._sessions, {}
        if reports:
            self.placer.observe(round_counts(reports, sessions), now)
        elif self.placer.graph.presence.latest is None:
            return None
        health = self.membership.health(now)
        self.stats.gateways = {g: h.value for g, h in health.items()}
        if not any(h is GatewayHealth.ACTIVE for h in health.values()):
            return None
        self.placer.set_gateways(health)
        located = {a: g for a, g in self._located.items() if g in health}
        self._located = {}
        self.placer.report_locations(located)
        started = time.perf_counter()
        try:
            plan = self.placer.plan(now)
        except NoGatewayError:
            return None
        self.stats.last_plan_ms = round((time.perf_counter() - started) * 1000, 1)
        self.stats.plans += 1
        self.stats.moves += len(plan.moves)
        self.stats.busiest_ratio = round(plan.busiest_ratio, 3)
        self.stats.agents = len(plan.table.agents())
        self.stats.next_plan_s = round(max(0.0, plan.next_plan_at - now), 2)
        if plan.forecast_error is not None:
            self.stats.forecast_error = round(plan.forecast_error.size_next, 4)
        await self._publish_table(plan)
        await self._send_orders(plan, health)
        return plan

    async def _publish_table(self, plan: Plan) -> None:
        assert self.kv is not None
        kv = self.kv
        table = plan.table
        wanted: dict[str, str] = {}
        for agent in table.agents():
            gateway = table.gateway_of_agent(agent)
            if gateway is not None:
                wanted[agent] = gateway
        changed = [(a, g) for a, g in wanted.items() if self._published.get(a) != g]
        gone = [a for a in self._published if a not in wanted]
        for batch_start in range(0, len(changed), 256):
            batch = changed[batch_start : batch_start + 256]
            await asyncio.gather(*(kv.put(placement_key(a), g.encode()) for a, g in batch))
        for agent in gone:
            with contextlib.suppress(Exception):
                await kv.delete(placement_key(agent))
        self._published = wanted
        self.stats.placements_written += len(changed)

    async def _send_orders(self, plan: Plan, health: dict[str, GatewayHealth]) -> None:
        by_source: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for m in plan.migrations:
            if health.get(m.source) in (None, GatewayHealth.DOWN):
                continue  # its clients are reconnecting anyway; the table guides them
            url = self.membership.url_of(m.target)
            if url is None:
                continue
            by_source[m.source].append((m.agent, m.target, url))
        for source, migrations in by_source.items():
            order = MigrationOrder(tuple(migrations), reason="placement")
            await self.nc.publish(self.subjects.gateway_orders(source), order.encode())
            self.stats.migrations_ordered += len(migrations)


def round_counts(reports: list[Counts], sessions: Mapping[str, frozenset[str]]) -> Counts:
    """One round's counts: the gateways' reports added up, and each agent's connections
    from the latest report of each gateway (a gateway names an agent once however often it
    reported, and an agent two gateways name has two connections)."""
    connections: dict[str, int] = {}
    for agents in sessions.values():
        for agent in agents:
            connections[agent] = connections.get(agent, 0) + 1
    return replace(merge_counts(reports), connections=connections)


def _counts(report: InteractionReport) -> Counts:
    subscriptions: dict[tuple[str, str], float] = {}
    for agent, workflow in report.subscriptions:
        subscriptions[(agent, workflow)] = 1.0
    publishes: dict[tuple[str, str], float] = defaultdict(float)
    for agent, workflow, n in report.publishes:
        publishes[(agent, workflow)] += n
    direct: dict[tuple[str, str], float] = defaultdict(float)
    for sender, recipient, n in report.direct:
        direct[(sender, recipient)] += n
    return Counts(subscriptions=subscriptions, publishes=dict(publishes), direct=dict(direct))
