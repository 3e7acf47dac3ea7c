"""``mesh``: agents in workflows of mixed sizes over several gateways, router on or off.

Agents connect through a "load balancer" (a random gateway), subscribe to their workflow's
events and collab channels and stay. With the router on, gateways report who talks to
whom, the router places each workflow on one gateway and the gateways migrate clients
there. The figure that matters is broker → gateway copies per published message, read
from the gateways' own counters; events published throughout (migrations included) must
reach every member exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from frys.client import Client, Subscription, connect
from frys.client.backend import Backend
from frys.gateway.auth import mint_token
from frys.runtime.cluster import SECRET, LocalCluster, frys_ws_command
from frys.runtime.nats_process import free_port

DEFAULT_SIZES = (40, 30, 20, 15, 10, 10, 8, 8, 6, 6, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2)


@dataclass
class MeshConfig:
    router: bool = True
    gateways: int = 3
    sizes: tuple[int, ...] = DEFAULT_SIZES
    settle_s: float = 20.0
    """Longest wait for placement to settle (router on)."""
    messages_per_workflow: int = 50
    event_rate_per_s: float = 50.0
    seed: int = 1


@dataclass
class MeshReport:
    router: bool
    agents: int
    workflows: int
    gateways: int
    gateways_per_workflow: float
    broker_copies_per_message: float
    messages: int
    migrations: int
    reconnects: int
    events_published: int
    events_lost: int
    events_duplicated: int
    settle_s: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Agent:
    name: str
    workflow: str
    client: Client
    events: Subscription
    got: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


async def _read_events(agent: _Agent) -> None:
    async for msg in agent.events:
        agent.got.append(int(msg.data["n"]))


async def _messages_in(http: aiohttp.ClientSession, cluster: LocalCluster) -> int:
    total = 0
    for node in cluster.nodes:
        async with http.get(f"{node.http}/metrics") as r:
            text = await r.text()
        for line in text.splitlines():
            if line.startswith("frys_messages_in_total{"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _router_process(cluster: LocalCluster, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FRYS_")},
        "FRYS_NATS_URL": cluster.nats_url,
        "FRYS_SUBJECT_PREFIX": cluster.prefix,
        "FRYS_HOST": "127.0.0.1",
        "FRYS_PORT": str(port),
        "FRYS_ROUTER_PLAN_INTERVAL_S": "1",
        "FRYS_ROUTER_MIN_DWELL_S": "0",
        "FRYS_ROUTER_K8S": "off",
    }
    return subprocess.Popen(
        frys_ws_command("router"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run_mesh(cfg: MeshConfig) -> MeshReport:
    rng = random.Random(cfg.seed)
    prefix = f"m{uuid.uuid4().hex[:8]}"
    env = {"FRYS_INTERACTION_REPORT_S": "0.5", "FRYS_RECONNECT_SPREAD_MS": "200"}
    async with (
        LocalCluster(cfg.gateways, 1, prefix, env) as cluster,
        aiohttp.ClientSession() as http,
    ):
        router = _router_process(cluster, free_port()) if cfg.router else None
        agents: list[_Agent] = []
        backend = await Backend.connect(cluster.nats_url, prefix=prefix, name="engine")
        try:
            for w, size in enumerate(cfg.sizes):
                for i in range(size):
                    name = f"w{w}-a{i}"
                    token = mint_token(
                        SECRET, name, {f"wf:w{w}:*": ["subscribe", "publish"]}, kind="agent"
                    )
                    urls = list(cluster.urls)
                    rng.shuffle(urls)  # the load balancer's choice
                    client = await connect(urls, token=token, backoff_base_s=0.05)
                    events = await client.subscribe(f"wf:w{w}:events")
                    await client.subscribe(f"wf:w{w}:collab")
                    agent = _Agent(name, f"w{w}", client, events)
                    agent.task = asyncio.get_running_loop().create_task(_read_events(agent))
                    agents.append(agent)
            counters: dict[str, int] = defaultdict(int)
            stop_events = asyncio.Event()

            async def publish_events() -> None:
                interval = 1.0 / cfg.event_rate_per_s
                i = 0
                while not stop_events.is_set():
                    wf = f"w{i % len(cfg.sizes)}"
                    await backend.publish_event(wf, {"n": counters[wf]})
                    counters[wf] += 1
                    i += 1
                    await asyncio.sleep(interval)

            events_task = asyncio.get_running_loop().create_task(publish_events())
            settle_started = time.monotonic()
            spread = _spread(agents)
            if cfg.router:
                # Wait until every workflow sits on one gateway, or the settle time ends.
                stable_since = None
                while time.monotonic() - settle_started < cfg.settle_s:
                    await asyncio.sleep(0.5)
                    spread = _spread(agents)
                    if statistics.fmean(spread.values()) <= 1.0 + 1e-9:
                        stable_since = stable_since or time.monotonic()
                        if time.monotonic() - stable_since > 2.0:
                            break
                    else:
                        stable_since = None
            if not cfg.router:
                await asyncio.sleep(2.0)  # events flow for a while here too
            settle_s = time.monotonic() - settle_started
            stop_events.set()
            await events_task
            await _settle_events(agents, counters)
            before = await _messages_in(http, cluster)
            sent = 0
            for _ in range(cfg.messages_per_workflow):
                for w in range(len(cfg.sizes)):
                    await backend.publish(f"wf:w{w}:collab", {"t": time.time()})
                    sent += 1
            await backend.nc.flush()
            deadline = time.monotonic() + 10
            after = before
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                now_in = await _messages_in(http, cluster)
                if now_in == after and now_in > before:
                    break
                after = now_in
            lost = dup = 0
            for agent in agents:
                got = agent.got
                if not got:
                    lost += counters[agent.workflow]
                    continue
                expected = set(range(got[0], counters[agent.workflow]))
                lost += len(expected - set(got))
                dup += len(got) - len(set(got))
            spread = _spread(agents)
            return MeshReport(
                router=cfg.router,
                agents=len(agents),
                workflows=len(cfg.sizes),
                gateways=cfg.gateways,
                gateways_per_workflow=round(statistics.fmean(spread.values()), 3),
                broker_copies_per_message=round((after - before) / max(1, sent), 3),
                messages=sent,
                migrations=sum(1 for a in agents if a.client.reconnects),
                reconnects=sum(a.client.reconnects for a in agents),
                events_published=sum(counters.values()),
                events_lost=lost,
                events_duplicated=dup,
                settle_s=round(settle_s, 1),
                details={"spread": spread, "config": asdict(cfg)},
            )
        finally:
            for agent in agents:
                if agent.task is not None:
                    agent.task.cancel()
                with contextlib.suppress(Exception):
                    await agent.client.close()
            await backend.close()
            if router is not None:
                router.terminate()
                with contextlib.suppress(Exception):
                    router.wait(10)


def _spread(agents: list[_Agent]) -> dict[str, int]:
    """Gateways each workflow's members are on."""
    on: dict[str, set[str]] = defaultdict(set)
    for agent in agents:
        if agent.client.gateway_id is not None:
            on[agent.workflow].add(agent.client.gateway_id)
    return {wf: len(gws) for wf, gws in sorted(on.items())}


async def _settle_events(agents: list[_Agent], counters: dict[str, int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(a.got and a.got[-1] >= counters[a.workflow] - 1 for a in agents):
            return
        await asyncio.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest mesh")
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workflow sizes")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--only", choices=["on", "off"], help="run one side only")
    parser.add_argument("--json", help="write the reports here")
    args = parser.parse_args(argv)
    sizes = tuple(max(1, round(s * args.scale)) for s in DEFAULT_SIZES)
    reports = []
    for router in (False, True):
        if args.only and args.only != ("on" if router else "off"):
            continue
        cfg = MeshConfig(
            router=router,
            gateways=args.gateways,
            sizes=sizes,
            messages_per_workflow=args.messages,
            settle_s=60.0,
        )
        report = asyncio.run(run_mesh(cfg))
        reports.append(report)
        print(json.dumps(asdict(report)), flush=True)
    if len(reports) == 2:
        off, on = reports
        ratio = off.broker_copies_per_message / max(on.broker_copies_per_message, 1e-9)
        print(
            f"broker copies per message: router off {off.broker_copies_per_message}, "
            f"on {on.broker_copies_per_message} ({ratio:.2f}x fewer); gateways per workflow "
            f"{off.gateways_per_workflow} → {on.gateways_per_workflow}; events lost "
            f"{on.events_lost}, duplicated {on.events_duplicated}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in reports], fh, indent=2)
    return 0 if all(r.events_lost == 0 and r.events_duplicated == 0 for r in reports) else 1
