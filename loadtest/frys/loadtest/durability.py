"""Durability scenarios: events keep flowing while gateways or NATS nodes fail.

A publisher stores events at a target rate on several workflows; SDK clients spread over
the gateways subscribe to them; mid-stream a gateway is killed (``gateway-kill``), every
gateway is restarted in turn with SIGTERM (``rolling-restart``), or a NATS node of a
three-node cluster is killed (``nats-kill``). At the end every client must hold every
acknowledged event of its workflow exactly once, in stream order. The test suite runs short
versions; ``frys-ws loadtest durability`` runs long ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors

from frys.client import Client, Subscription, connect
from frys.client.backend import Backend
from frys.gateway.auth import mint_token
from frys.runtime.cluster import SECRET, LocalCluster

SCENARIOS = ("gateway-kill", "rolling-restart", "nats-kill")


@dataclass
class DurabilityConfig:
    scenario: str = "gateway-kill"
    gateways: int = 3
    workflows: int = 5
    clients: int = 30
    rate_per_s: float = 1000.0
    duration_s: float = 6.0
    disrupt_at_s: float = 2.0
    settle_timeout_s: float = 30.0


@dataclass
class DurabilityReport:
    scenario: str
    published: int
    acked: int
    achieved_rate_per_s: float
    clients: int
    expected_deliveries: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    gaps_reported: int
    reconnects: int
    reconnect_p50_ms: float | None
    reconnect_p99_ms: float | None
    reconnect_max_ms: float | None
    disruption: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _Publisher:
    """Publishes ``{"wf", "n"}`` events with message ids; retries until acknowledged."""

    def __init__(self, backend: Backend, workflows: list[str]):
        self.backend = backend
        self.workflows = workflows
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.published = 0
        self.failures = 0
        self._inflight: set[asyncio.Task[None]] = set()

    async def _store(self, wf: str, n: int) -> None:
        mid = f"{wf}-{n}"
        delay = 0.05
        while True:
            try:
                await self.backend.publish_event(wf, {"wf": wf, "n": n}, mid=mid)
                self.acked[wf].add(n)
                return
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                self.failures += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def run(self, rate_per_s: float, duration_s: float) -> None:
        tick_s = 0.01
        per_tick = rate_per_s * tick_s
        owed = 0.0
        counters = dict.fromkeys(self.workflows, 0)
        start = time.monotonic()
        next_tick = start
        i = 0
        while time.monotonic() - start < duration_s:
            owed += per_tick
            while owed >= 1:
                owed -= 1
                wf = self.workflows[i % len(self.workflows)]
                i += 1
                n = counters[wf]
                counters[wf] += 1
                self.published += 1
                task = asyncio.get_running_loop().create_task(self._store(wf, n))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            next_tick += tick_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        if self._inflight:
            await asyncio.gather(*self._inflight)


@dataclass
class _Receiver:
    client: Client
    workflow: str
    got: list[tuple[int, int]] = field(default_factory=list)
    """(seq, n) in delivery order."""
    gaps: int = 0
    task: asyncio.Task[None] | None = None


async def _receive(receiver: _Receiver, sub: Subscription) -> None:
    async for msg in sub:
        if msg.gap:
            receiver.gaps += 1
        assert msg.seq is not None
        receiver.got.append((msg.seq, int(msg.data["n"])))


async def _disrupt(cluster: LocalCluster, scenario: str) -> str:
    if scenario == "gateway-kill":
        victim = cluster.nodes[0]
        victim.kill()
        return f"SIGKILL gateway {victim.gateway_id}"
    if scenario == "rolling-restart":
        started = time.monotonic()
        for node in cluster.nodes:
            node.terminate()
            code = await node.wait_exit()
            if code != 0:
                raise RuntimeError(f"{node.gateway_id} exited with {code}:\n{node.log_text()}")
            node.start()
            await node.wait_ready()
        took = time.monotonic() - started
        return f"SIGTERM + restart of {len(cluster.nodes)} gateways in turn ({took:.1f} s)"
    if scenario == "nats-kill":
        victim_nats = cluster.nats[0]
        victim_nats.kill()
        return f"SIGKILL NATS node {victim_nats.name} of {len(cluster.nats)}"
    raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")


async def run_durability(cfg: DurabilityConfig) -> DurabilityReport:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    nats_nodes = 3 if cfg.scenario == "nats-kill" else 1
    env = {"FRYS_DRAIN_S": "5", "FRYS_RECONNECT_SPREAD_MS": "1000"}
    async with LocalCluster(cfg.gateways, nats_nodes, prefix, env) as cluster:
        workflows = [f"w{i}" for i in range(cfg.workflows)]
        backend = await Backend.connect(cluster.nats_url, prefix=prefix, name="publisher")
        tok = mint_token(SECRET, "reader", {"wf:*:events": ["subscribe"]}, ttl_s=3600)
        receivers: list[_Receiver] = []
        try:
            for i in range(cfg.clients):
                urls = cluster.urls[i % cfg.gateways :] + cluster.urls[: i % cfg.gateways]
                client = await connect(urls, token=tok, backoff_base_s=0.05, backoff_cap_s=1.0)
                receivers.append(_Receiver(client, workflows[i % cfg.workflows]))
            for r in receivers:
                sub = await r.client.subscribe(f"wf:{r.workflow}:events")
                r.task = asyncio.get_running_loop().create_task(_receive(r, sub))
            publisher = _Publisher(backend, workflows)
            started = time.monotonic()
            publishing = asyncio.get_running_loop().create_task(
                publisher.run(cfg.rate_per_s, cfg.duration_s)
            )
            await asyncio.sleep(cfg.disrupt_at_s)
            disruption = await _disrupt(cluster, cfg.scenario)
            await publishing
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + cfg.settle_timeout_s
            while time.monotonic() < deadline:
                if all({n for _, n in r.got} >= publisher.acked[r.workflow] for r in receivers):
                    break
                await asyncio.sleep(0.05)
            return _report(cfg, publisher, receivers, elapsed, disruption)
        finally:
            for r in receivers:
                if r.task is not None:
                    r.task.cancel()
                with contextlib.suppress(Exception):
                    await r.client.close()
            await backend.close()


def _report(
    cfg: DurabilityConfig,
    publisher: _Publisher,
    receivers: list[_Receiver],
    elapsed: float,
    disruption: str,
) -> DurabilityReport:
    lost = duplicated = out_of_order = gaps = 0
    expected = delivered = 0
    for r in receivers:
        acked = publisher.acked[r.workflow]
        ns = [n for _, n in r.got]
        seqs = [s for s, _ in r.got]
        expected += len(acked)
        delivered += len(ns)
        lost += len(acked - set(ns))
        duplicated += len(ns) - len(set(ns))
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        gaps += r.gaps
    times = [t * 1000 for r in receivers for t in r.client.reconnect_times]
    acked_total = sum(len(v) for v in publisher.acked.values())
    return DurabilityReport(
        scenario=cfg.scenario,
        published=publisher.published,
        acked=acked_total,
        achieved_rate_per_s=round(acked_total / elapsed, 1),
        clients=len(receivers),
        expected_deliveries=expected,
        delivered=delivered,
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        gaps_reported=gaps,
        reconnects=sum(r.client.reconnects for r in receivers),
        reconnect_p50_ms=_round(_percentile(times, 0.5)),
        reconnect_p99_ms=_round(_percentile(times, 0.99)),
        reconnect_max_ms=_round(max(times) if times else None),
        disruption=disruption,
        details={
            "publish_retries": publisher.failures,
            "mean_reconnect_ms": _round(statistics.fmean(times)) if times else None,
            "config": asdict(cfg),
        },
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest durability")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration-s", type=float, default=120.0)
    parser.add_argument("--disrupt-at-s", type=float, default=30.0)
    parser.add_argument("--json", help="write the reports to this file")
    args = parser.parse_args(argv)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    reports = []
    for scenario in scenarios:
        cfg = DurabilityConfig(
            scenario=scenario,
            gateways=args.gateways,
            workflows=args.workflows,
            clients=args.clients,
            rate_per_s=args.rate,
            duration_s=args.duration_s,
            disrupt_at_s=args.disrupt_at_s,
        )
        report = asyncio.run(run_durability(cfg))
        reports.append(report)
        print(json.dumps(asdict(report), indent=2), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in reports], fh, indent=2)
    return 0 if all(r.ok for r in reports) else 1
