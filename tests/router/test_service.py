"""The router service around the placement logic: membership, Kubernetes discovery (against
a stand-in API server: no cluster runs here), the placement table in KV, and what gateways
do with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats
import pytest
from aiohttp import web

from frys.client import Client
from frys.router.config import RouterConfig, RouterConfigError, load_router_config
from frys.router.kubernetes import PodWatcher
from frys.router.membership import Membership, PodState
from frys.router.placement import Counts, GatewayHealth
from frys.router.service import RouterService, _counts, round_counts
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.routing import (
    Heartbeat,
    InteractionReport,
    agent_of_key,
    decode_heartbeat,
    decode_interactions,
    decode_order,
    placement_key,
)
from frys.shared.protocol.subjects import Subjects
from tests.conftest import GatewayFactory, token

ClientFactory = Callable[..., Awaitable[Client]]


def beat(gateway: str, draining: bool = False) -> Heartbeat:
    return Heartbeat(gateway, f"ws://{gateway}/ws", 1, 0.1, draining)


def test_membership_health_from_heartbeats_and_pods() -> None:
    m = Membership(ttl_s=5, forget_after_s=20)
    m.heard(beat("gw-a"), 100.0)
    m.heard(beat("gw-b", draining=True), 100.0)
    m.heard(beat("gw-c"), 90.0)
    assert m.health(101.0) == {
        "gw-a": GatewayHealth.ACTIVE,
        "gw-b": GatewayHealth.DRAINING,
        "gw-c": GatewayHealth.DOWN,
    }
    assert "gw-c" not in m.health(111.0)  # forgotten after 20 s of silence
    m.set_pods({"gw-a": PodState(ready=True, terminating=True)})
    assert m.health(101.0)["gw-a"] is GatewayHealth.DRAINING  # terminating pod
    m.set_pods({"gw-a": PodState(ready=True, terminating=False)})
    m.heard(beat("gw-a-w1"), 100.0)  # a worker of the pod gw-a
    assert m.health(101.0)["gw-a-w1"] is GatewayHealth.ACTIVE


def test_routing_messages_round_trip_and_garbage_is_none() -> None:
    report = InteractionReport("gw", 2.0, ("a",), (("a", "w"),), (("a", "w", 3),), (("a", "b", 1),))
    assert decode_interactions(report.encode()) == report
    assert decode_heartbeat(beat("g").encode()) == beat("g")
    for garbage in (b"", b"\xc1", b"\x80", json.dumps({"gw": 1}).encode()):
        assert decode_interactions(garbage) is None
        assert decode_heartbeat(garbage) is None
        assert decode_order(garbage) is None
    for agent in ("alice", "a.b@c d", "ü" * 10):
        assert agent_of_key(placement_key(agent)) == agent


def test_router_configuration_is_validated() -> None:
    cfg = load_router_config(env={"FRYS_NATS_URL": "nats://n:4222", "FRYS_PORT": "9000"})
    assert (cfg.nats_url, cfg.port, cfg.k8s) == ("nats://n:4222", 9000, "auto")
    with pytest.raises(RouterConfigError) as err:
        load_router_config(env={"FRYS_NATS_URL": "http://x", "FRYS_ROUTER_K8S": "maybe"})
    assert "nats_url" in str(err.value) and "k8s must be" in str(err.value)


def test_the_router_settings_of_placement_are_read_and_checked() -> None:
    cfg = load_router_config(
        env={"FRYS_ROUTER_AGENT_TTL_S": "20", "FRYS_ROUTER_MIN_PLAN_INTERVAL_S": "0.5"}
    )
    assert (cfg.agent_ttl_s, cfg.min_plan_interval_s) == (20.0, 0.5)
    service = RouterService(cfg)
    assert service.placer.config.agent_ttl == 20.0
    assert service.placer.config.plan_interval == cfg.plan_interval_s
    with pytest.raises(RouterConfigError, match="agent_ttl_s"):
        load_router_config(env={"FRYS_ROUTER_AGENT_TTL_S": "0"})


def test_a_round_counts_each_gateway_session_once() -> None:
    """Reports every 2 s, a round every 5 s: an agent named by two reports of one gateway
    is one connection; named by two gateways, two."""
    a = InteractionReport("gw-a", 2.0, ("x", "y"), (("x", "w"), ("y", "w")))
    b = InteractionReport("gw-b", 2.0, ("y",), (("y", "w"),))
    reports = [_counts(a), _counts(a), _counts(b)]
    counts = round_counts(reports, {"gw-a": frozenset(a.located), "gw-b": frozenset(b.located)})
    assert counts.connections == {"x": 1, "y": 2}
    assert counts.subscriptions[("y", "w")] == 3.0


def test_the_next_round_comes_when_the_plan_asks() -> None:
    service = RouterService(RouterConfig(plan_interval_s=5.0, min_plan_interval_s=1.0))
    placer = service.placer
    placer.set_gateways({"gw-a": GatewayHealth.ACTIVE})
    placer.observe(Counts(subscriptions={("x", "w"): 1.0}), 0.0)
    plan = placer.plan(10.0)
    assert service.next_delay(plan, 10.0) == pytest.approx(5.0)  # nothing grows
    assert service.next_delay(replace(plan, next_plan_at=12.0), 10.0) == pytest.approx(2.0)
    assert service.next_delay(replace(plan, next_plan_at=10.2), 10.0) == pytest.approx(1.0)
    assert service.next_delay(None, 10.0) == pytest.approx(5.0)


# --- Kubernetes discovery against a stand-in API server --------------------------------


def pod(name: str, ready: bool = True, deleting: bool = False, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "frys",
            "resourceVersion": rv,
            "labels": {"app.kubernetes.io/component": "gateway"},
            "deletionTimestamp": "2026-11-24T08:00:00Z" if deleting else None,
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.fixture
async def api_server() -> AsyncIterator[
    tuple[str, asyncio.Queue[dict[str, Any] | None], list[str]]
]:
    """Serves the real list and watch JSON shapes of GET /api/v1/namespaces/{ns}/pods."""
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    selectors: list[str] = []

    async def pods(request: web.Request) -> web.StreamResponse:
        selectors.append(request.query.get("labelSelector", ""))
        if request.query.get("watch") in ("true", "1", "True"):
            response = web.StreamResponse()
            response.content_type = "application/json"
            await response.prepare(request)
            while (event := await events.get()) is not None:
                await response.write(json.dumps(event).encode() + b"\n")
            return response
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": "10"},
                "items": [pod("frys-gw-0"), pod("frys-gw-1", ready=False)],
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", events, selectors
    events.put_nowait(None)  # end the watch stream
    await runner.cleanup()


async def test_pod_watcher_marks_terminating_and_unready_pods(
    api_server: tuple[str, asyncio.Queue[dict[str, Any] | None], list[str]],
) -> None:
    from kubernetes import client

    host, events, selectors = api_server
    configuration = client.Configuration()
    configuration.host = host
    seen: list[dict[str, PodState]] = []
    changed = asyncio.Event()

    def on_pods(pods: dict[str, PodState]) -> None:
        seen.append(pods)
        changed.set()

    watcher = PodWatcher(
        "frys", "app.kubernetes.io/component=gateway", on_pods, client.ApiClient(configuration)
    )
    watcher.start()
    try:
        await asyncio.wait_for(changed.wait(), 10)
        assert seen[-1] == {
            "frys-gw-0": PodState(ready=True, terminating=False),
            "frys-gw-1": PodState(ready=False, terminating=False),
        }
        assert selectors[0] == "app.kubernetes.io/component=gateway"
        for event in (
            {"type": "MODIFIED", "object": pod("frys-gw-0", deleting=True, rv="11")},
            {"type": "DELETED", "object": pod("frys-gw-1", rv="12")},
            {"type": "ADDED", "object": pod("frys-gw-2", rv="13")},
        ):
            changed.clear()
            events.put_nowait(event)
            await asyncio.wait_for(changed.wait(), 10)
        assert seen[-1] == {
            "frys-gw-0": PodState(ready=True, terminating=True),
            "frys-gw-2": PodState(ready=True, terminating=False),
        }
        membership = Membership()
        membership.set_pods(seen[-1])
        now = time.monotonic()
        for name in ("frys-gw-0", "frys-gw-2"):
            membership.heard(beat(name), now)
        assert membership.health(now) == {
            "frys-gw-0": GatewayHealth.DRAINING,  # drained before its heartbeats stop
            "frys-gw-2": GatewayHealth.ACTIVE,
        }
    finally:
        watcher.stop()


# --- the table in KV and what gateways do with it ---------------------------------------


async def _put_placement(nats_url: str, prefix: str, agent: str, gateway: str) -> None:
    nc = await nats.connect(nats_url)
    kv = await nc.jetstream().key_value(Subjects(prefix).placement_bucket)
    await kv.put(placement_key(agent), gateway.encode())
    await nc.close()


async def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_client_on_the_wrong_gateway_is_sent_to_its_owner(
    gateways: GatewayFactory, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    gw_a = await gateways()
    gw_b = await gateways()
    owner = gw_b.gateway.config.gateway_id
    await _put_placement(nats_server.url, prefix, "planner", owner)
    await _eventually(lambda: gw_a.gateway.placement.owner_of("planner") == owner)
    await _eventually(lambda: gw_a.gateway.peers.healthy(owner) is not None)
    agent = await clients(gw_a.url, token=token("planner", kind="agent"))
    await _eventually(lambda: agent.gateway_id == owner)
    assert agent.reconnects == 1 and gw_a.gateway.metrics.migrations == 1
    other = await clients(gw_a.url, token=token("someone-else"))
    assert other.gateway_id == gw_a.gateway.config.gateway_id  # no placement: stays


async def test_router_places_publishes_and_its_death_changes_nothing(
    gateways: GatewayFactory, nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    gw_a = await gateways(interaction_report_s=0.2)
    gw_b = await gateways(interaction_report_s=0.2)
    router = RouterService(
        RouterConfig(
            nats_url=nats_server.url,
            subject_prefix=prefix,
            plan_interval_s=3600,  # rounds are driven by the test
            k8s="off",
            min_dwell_s=0,
        )
    )
    await router.start()
    try:
        members = [
            await clients(url, token=token(f"m{i}", kind="agent"))
            for i, url in enumerate([gw_a.url, gw_b.url] * 3)
        ]
        for member in members:
            await member.subscribe("wf:team:collab")
        await _eventually(lambda: len(router.membership.gateways) == 2)
        await _eventually(lambda: router.stats.reports >= 4)
        plan = await router.round(time.monotonic())
        assert plan is not None
        homes = {plan.table.gateway_of_agent(f"m{i}") for i in range(6)}
        assert len(homes) == 1  # one workflow, one gateway
        await _eventually(lambda: len({m.gateway_id for m in members}) == 1, timeout=15)
        assert router.stats.migrations_ordered == 3
        home = homes.pop()
        assert all(m.gateway_id == home for m in members)
    finally:
        await router.stop()
    # The router is gone; its table stays and still guides a reconnecting member.
    other = gw_b if home == gw_a.gateway.config.gateway_id else gw_a
    late = await clients(other.url, token=token("m0", kind="agent"))
    await _eventually(lambda: late.gateway_id == home)
