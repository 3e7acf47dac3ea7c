"""Durability scenarios on a replicated installation, judged by an oracle.

Three NATS nodes (streams and buckets with three replicas, as the gateways choose on a
cluster of three) and three gateway processes carry a steady workload while one scenario
plays out:

========================  ===================================================================
``gateway-kill``          SIGKILL a gateway (restarted a few seconds later)
``nats-leader-kill``      SIGKILL the NATS node that leads the events stream (restarted later)
``rolling-restart``       SIGTERM and restart every gateway in turn (drain, 1012 with a delay)
``slow-reader``           a third of the readers stop reading their socket for a while
``resubscribe-churn``     no fault: many clients unsubscribe and resubscribe with ``since``
``kv-leader-kill``        SIGKILL the NATS node that leads the control bucket (restarted later)
========================  ===================================================================

The workload, in every scenario: events (and every tenth, a state value) published through
the gateways at a fixed rate with message ids, each publish retried with its id until it
is acknowledged; readers subscribed to a workflow's events and state; clients that keep
unsubscribing and resubscribing with ``since``; control commands, each retried with its
command id until it is answered, executed by an engine on the backend helper. Every client
is a :class:`~frys.loadtest.probe.ProbeClient`, which records every frame as it arrived.

Afterwards :mod:`frys.loadtest.oracle` compares what was acknowledged, what the streams
hold (read through a consumer, from the leader) and what each client received: lost,
duplicated, reordered, silent holes, ``recovered: false``, final state values, executions
per command id, and how long each publish took to be answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from frys.client.backend import OUTCOME_UNKNOWN, UNAVAILABLE, Backend, Command
from frys.gateway.auth import mint_token
from frys.loadtest.oracle import (
    Commands,
    Deliveries,
    Publishes,
    judge_commands,
    judge_publishes,
    judge_rounds,
    percentile,
)
from frys.loadtest.probe import LOST, ProbeClient
from frys.runtime.cluster import SECRET, LocalCluster
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import unpack_data
from frys.shared.protocol.subjects import Subjects

SCENARIOS = (
    "gateway-kill",
    "nats-leader-kill",
    "rolling-restart",
    "slow-reader",
    "resubscribe-churn",
    "kv-leader-kill",
)
NATS_FAULTS = frozenset({"nats-leader-kill", "kv-leader-kill"})
"""Scenarios where every publish must be answered within the gateways' ack timeout."""
CONTROL = "wf:ctl:control"
ACK_TIMEOUT_S = 5.0
"""The gateways' ``publish_ack_timeout_s`` in these runs."""
T = TypeVar("T")
ANSWER_MARGIN_S = 0.5
"""Allowed beyond it: scheduling on a shared machine, and the client's side of the socket."""


@dataclass
class DurabilityConfig:
    scenario: str = "gateway-kill"
    gateways: int = 3
    nats_nodes: int = 3
    workflows: int = 5
    readers: int = 15
    """Clients subscribed to one workflow's events and state for the whole run."""
    churners: int = 8
    """Clients that unsubscribe and resubscribe with ``since`` in a loop."""
    rate_per_s: float = 500.0
    """Events published per second, over all workflows."""
    commands_per_s: float = 10.0
    duration_s: float = 30.0
    disrupt_at_s: float = 8.0
    settle_timeout_s: float = 40.0
    pad_bytes: int = 200
    """Filler in each event, so that a reader that stops reading fills its queue."""
    logs_dir: str | None = None
    """Where the gateways' and NATS servers' logs of a failed scenario are kept."""


@dataclass
class DurabilityReport:
    scenario: str
    disruption: str
    seconds: float
    events: Deliveries
    publishes: Publishes
    commands: Commands
    state_readers: int
    state_wrong: int
    """Readers whose last state value is not the stream's last (after settling)."""
    publish_lost_answers: int
    """Publish attempts whose connection dropped before the answer (retried)."""
    reconnects: int
    reconnect_p50_ms: float | None
    reconnect_p99_ms: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        e, p, c = self.events, self.publishes, self.commands
        # The answer bound is the target during a NATS node fault; elsewhere it is reported.
        late = p.answered_late if self.scenario in NATS_FAULTS else 0
        return (
            (e.lost, e.duplicated, e.reordered, e.holes, e.not_stored) == (0, 0, 0, 0, 0)
            and (p.acked_not_stored, p.stored_twice, late) == (0, 0, 0)
            and c.executed_twice == 0
            and c.executed_never_but_answered == 0
            and c.answered == c.sent
            and self.state_wrong == 0
        )


# --- the workload ------------------------------------------------------------------------


class _Publisher:
    """Events (and every tenth a state value) at a fixed rate, through the gateways; each
    publish is sent again with its message id until a gateway acknowledges it."""

    def __init__(self, clients: list[ProbeClient], workflows: list[str], pad: int):
        self.clients = clients
        self.workflows = workflows
        self.pad = "x" * pad
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.published = 0
        self.answer_s: list[float] = []
        self.lost_answers = 0
        self.errors: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _store(self, client: ProbeClient, channel: str, n: int, data: Any) -> None:
        mid = f"m{n}"
        while True:
            if not client.connected:
                await client.wait_connected(60)
            answer = await client.publish(channel, data, mid)
            if answer.code == LOST:
                self.lost_answers += 1
            else:
                self.answer_s.append(answer.took_s)
            if answer.code == 0:
                self.acked[channel].add(n)
                return
            if answer.code != LOST:
                self.errors[answer.code] += 1
            await asyncio.sleep(0.05 if answer.code != 429 else 0.5)

    async def run(self, rate_per_s: float, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tick = 0.01
        owed = 0.0
        next_at = time.monotonic()
        n = 0
        while not stop.is_set():
            owed += rate_per_s * tick
            while owed >= 1:
                owed -= 1
                wf = self.workflows[n % len(self.workflows)]
                client = self.clients[n % len(self.clients)]
                jobs = [(f"wf:{wf}:events", {"n": n, "pad": self.pad})]
                if (n // len(self.workflows)) % 10 == 0:
                    jobs.append((f"wf:{wf}:state", {"n": n}))
                self.published += 1  # events; state values are judged by the readers
                for channel, data in jobs:
                    task = loop.create_task(self._store(client, channel, n, data))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                n += 1
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def finish(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()


class _Controller:
    """Control commands at a fixed rate, each sent again with its command id (§6.4) until
    answered: after 503, 504, a lost connection, or a reply saying it did not run."""

    def __init__(self, clients: list[ProbeClient]):
        self.clients = clients
        self.answers: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _command(self, client: ProbeClient, cid: str) -> None:
        self.answers[cid] = None
        while True:
            if not client.connected:
                await client.wait_connected(60)
            answer = await client.request(CONTROL, {"cid": cid}, cid, timeout_ms=5000)
            if answer.code == 0 and isinstance(answer.frame, f.Reply):
                data = answer.frame.data
                if not (isinstance(data, dict) and data.get("error") == UNAVAILABLE):
                    self.answers[cid] = data
                    return
            await asyncio.sleep(0.2)

    async def run(self, per_s: float, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        i = 0
        while not stop.is_set():
            client = self.clients[i % len(self.clients)]
            task = loop.create_task(self._command(client, f"c{i}"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            i += 1
            await asyncio.sleep(1 / per_s)

    async def finish(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()


async def _churn(client: ProbeClient, channel: str, stop: asyncio.Event, seed: float) -> int:
    """Unsubscribe and resubscribe with ``since`` until ``stop``; returns how often."""
    rng = random.Random(seed)
    done = 0
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.0, 0.04))
        if client.connected and await client.resubscribe(channel):
            done += 1
    return done


# --- faults ------------------------------------------------------------------------------


async def _leader(nc: NatsClient, stream: str, nodes: list[NatsProcess]) -> NatsProcess:
    js = nc.jetstream(timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            info = await js.stream_info(stream)
            name = info.cluster.leader if info.cluster is not None else None
            for node in nodes:
                if node.name == name:
                    return node
        await asyncio.sleep(0.2)
    raise RuntimeError(f"stream {stream} has no leader")


async def _kill_node(nc: NatsClient, cluster: LocalCluster, stream: str, what: str) -> str:
    victim = await _leader(nc, stream, cluster.nats)
    victim.kill()
    await asyncio.sleep(10)
    victim.restart()
    return f"SIGKILL NATS node {victim.name} ({what} leader), restarted 10 s later"


async def _disrupt(
    cfg: DurabilityConfig, cluster: LocalCluster, nc: NatsClient, readers: list[ProbeClient]
) -> str:
    s = Subjects(cluster.prefix)
    if cfg.scenario == "gateway-kill":
        victim = cluster.nodes[0]
        victim.kill()
        await asyncio.sleep(5)
        victim.start()
        await victim.wait_ready()
        return f"SIGKILL gateway {victim.gateway_id}, restarted 5 s later"
    if cfg.scenario == "rolling-restart":
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
    if cfg.scenario == "nats-leader-kill":
        return await _kill_node(nc, cluster, s.events_stream, "events stream")
    if cfg.scenario == "kv-leader-kill":
        return await _kill_node(nc, cluster, f"KV_{s.control_bucket}", "control bucket")
    if cfg.scenario == "slow-reader":
        slow = readers[::3]
        for client in slow:
            client.pause_reading()
        await asyncio.sleep(8)
        for client in slow:
            client.resume_reading()
        return f"{len(slow)} readers stopped reading for 8 s"
    if cfg.scenario == "resubscribe-churn":
        return "none: clients resubscribe with since in a loop"
    raise ValueError(f"unknown scenario {cfg.scenario!r}; one of {', '.join(SCENARIOS)}")


# --- the run -----------------------------------------------------------------------------


async def run_durability(cfg: DurabilityConfig) -> DurabilityReport:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    env = {
        "FRYS_DRAIN_S": "5",
        "FRYS_RECONNECT_SPREAD_MS": "1000",
        "FRYS_PUBLISH_ACK_TIMEOUT_S": str(ACK_TIMEOUT_S),
        "FRYS_PUBLISH_RATE_PER_S": "100000",
        "FRYS_PUBLISH_BURST": "100000",
    }
    if cfg.scenario == "slow-reader":
        env["FRYS_QUEUE_BYTES"] = str(64 * 1024)
        cfg.pad_bytes = max(cfg.pad_bytes, 2000)  # a stalled reader's backlog grows fast
    async with LocalCluster(cfg.gateways, cfg.nats_nodes, prefix, env) as cluster:
        report = await _run(cfg, cluster)
        if not report.ok and cfg.logs_dir:
            # The cluster's logs go with it: keep them where a failed run can be read.
            folder = Path(cfg.logs_dir) / f"{cfg.scenario}-{prefix}"
            folder.mkdir(parents=True, exist_ok=True)
            for gw in cluster.nodes:
                (folder / f"{gw.gateway_id}.log").write_text(gw.log_text())
            for server in cluster.nats:
                (folder / f"{server.name}.log").write_text(server.log_text())
            report.details["logs"] = str(folder)
        return report


async def _run(cfg: DurabilityConfig, cluster: LocalCluster) -> DurabilityReport:
    loop = asyncio.get_running_loop()
    workflows = [f"w{i}" for i in range(cfg.workflows)]
    urls = cluster.urls
    executions: Counter[str] = Counter()

    async def execute(command: Command) -> Any:
        executions[command.cid] += 1
        await asyncio.sleep(0.05)  # commands are in flight when a fault strikes
        return {"cid": command.cid, "ok": True}

    def rotated(i: int) -> list[str]:
        return urls[i % len(urls) :] + urls[: i % len(urls)]

    nc = await nats.connect(
        servers=cluster.nats_url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    engine = await Backend.connect(cluster.nats_url, prefix=cluster.prefix, name="engine")
    probes: list[ProbeClient] = []
    try:
        await _retry(lambda: engine.serve_control(execute))
        grants = {"wf:*:*": ["subscribe", "publish", "control"]}
        readers, churners, publishers, controllers = [], [], [], []
        for i in range(cfg.readers):
            readers.append(
                ProbeClient(rotated(i), mint_token(SECRET, f"reader{i}", grants), f"reader{i}")
            )
        for i in range(cfg.churners):
            tok = mint_token(SECRET, f"churner{i}", grants)
            churners.append(ProbeClient(rotated(i + 1), tok, f"churner{i}"))
        for i in range(2):
            tok = mint_token(SECRET, "publisher", grants)
            publishers.append(ProbeClient(rotated(i + 2), tok))
            controllers.append(ProbeClient(rotated(i), mint_token(SECRET, "operator", grants)))
        probes = readers + churners + publishers + controllers
        await asyncio.gather(*(p.start() for p in probes))
        for i, reader in enumerate(readers):
            wf = workflows[i % len(workflows)]
            await reader.subscribe(f"wf:{wf}:events")
            await reader.subscribe(f"wf:{wf}:state")
        churn_channels = [
            f"wf:{workflows[i % len(workflows)]}:events" for i in range(len(churners))
        ]
        for client, channel in zip(churners, churn_channels, strict=True):
            await client.subscribe(channel)

        stop = asyncio.Event()
        lags: list[float] = []
        watching = loop.create_task(_loop_lag(lags))
        publisher = _Publisher(publishers, workflows, cfg.pad_bytes)
        controller = _Controller(controllers)
        started = time.monotonic()
        work = [
            loop.create_task(publisher.run(cfg.rate_per_s, stop)),
            loop.create_task(controller.run(cfg.commands_per_s, stop)),
        ]
        churning = [
            loop.create_task(_churn(c, ch, stop, i))
            for i, (c, ch) in enumerate(zip(churners, churn_channels, strict=True))
        ]
        await asyncio.sleep(cfg.disrupt_at_s)
        disruption = await _disrupt(cfg, cluster, nc, readers)
        await asyncio.sleep(max(0.0, cfg.duration_s - (time.monotonic() - started)))
        stop.set()
        await asyncio.gather(*work)
        resubscribed = sum(await asyncio.gather(*churning))
        await publisher.finish(cfg.settle_timeout_s)
        await controller.finish(cfg.settle_timeout_s)
        seconds = time.monotonic() - started
        watching.cancel()

        s = Subjects(cluster.prefix)
        events: dict[str, list[tuple[int, Any]]] = {}
        states: dict[str, list[tuple[int, Any]]] = {}
        for wf in workflows:
            events[wf] = await _read_stored(nc, s.events_stream, f"{s.prefix}.wf.{wf}.events")
            states[wf] = await _read_stored(nc, s.state_stream, f"{s.prefix}.wf.{wf}.state")
        await _settle(readers + churners, events, states, cfg.settle_timeout_s)

        deliveries = Deliveries()
        lossy: list[dict[str, Any]] = []
        for client in readers + churners:
            for channel, sub in client.subs.items():
                wf = channel.split(":")[1]
                if channel.endswith(":events"):
                    verdict = judge_rounds(sub.rounds, [seq for seq, _ in events[wf]])
                    deliveries.add(verdict)
                    if verdict.lost or verdict.holes or verdict.duplicated:
                        lossy.append(
                            {
                                "client": client.name,
                                "channel": channel,
                                "gateway": client.gateway,
                                "lost": verdict.lost,
                                "holes": verdict.holes,
                                "position": sub.position.seq if sub.position else None,
                                "stored_last": events[wf][-1][0] if events[wf] else None,
                                "rounds": len(sub.rounds),
                                "connected": client.connected,
                            }
                        )
        state_wrong = 0
        for client in readers:
            for channel, sub in client.subs.items():
                if channel.endswith(":state"):
                    wf = channel.split(":")[1]
                    last = states[wf][-1] if states[wf] else None
                    if last is None or sub.last is None or sub.last[0] != last[0]:
                        state_wrong += 1
        # State keeps the last value only: its publishes are judged by the readers' final
        # values; events, one by one.
        stored_ids = {f"wf:{wf}:events": [int(d["n"]) for _, d in events[wf]] for wf in workflows}
        publishes = judge_publishes(
            {ch: ns for ch, ns in publisher.acked.items() if ch.endswith(":events")},
            stored_ids,
            publisher.published,
            publisher.answer_s,
            ACK_TIMEOUT_S + ANSWER_MARGIN_S,
            ACK_TIMEOUT_S,
        )
        commands = judge_commands(controller.answers, dict(executions), OUTCOME_UNKNOWN)
        times = [t * 1000 for p in probes for t in p.reconnect_s]
        return DurabilityReport(
            scenario=cfg.scenario,
            disruption=disruption,
            seconds=round(seconds, 1),
            events=deliveries,
            publishes=publishes,
            commands=commands,
            state_readers=len(readers),
            state_wrong=state_wrong,
            publish_lost_answers=publisher.lost_answers,
            reconnects=sum(p.reconnects for p in probes),
            reconnect_p50_ms=_round(percentile(times, 0.5)),
            reconnect_p99_ms=_round(percentile(times, 0.99)),
            details={
                "resubscriptions_by_churners": resubscribed,
                "lossy_clients": lossy[:20],
                "publish_errors": dict(publisher.errors),
                "publish_answer_p99_ms": _round(
                    None
                    if not publisher.answer_s
                    else 1000 * (percentile(publisher.answer_s, 0.99) or 0)
                ),
                # Times measured here include this process's own scheduling delay.
                "harness_loop_lag_p99_ms": _round(percentile(lags, 0.99)),
                "harness_loop_lag_max_ms": _round(max(lags, default=0.0)),
                "closes": dict(Counter(code for p in probes for code, _ in p.closes)),
                "subscribe_refusals": dict(sum((p.refusals for p in probes), Counter[int]())),
                "config": asdict(cfg),
            },
        )
    finally:
        for probe in probes:
            await probe.close()
        await engine.close()
        await nc.close()


async def _loop_lag(out: list[float], every_s: float = 0.05) -> None:
    """How late this event loop wakes up (ms), sampled every ``every_s``."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(every_s)
        out.append((time.monotonic() - asked - every_s) * 1000)


async def _read_stored(nc: NatsClient, stream: str, subject: str) -> list[tuple[int, Any]]:
    return await _retry(lambda: _stored(nc, stream, subject))


async def _stored(nc: NatsClient, stream: str, subject: str) -> list[tuple[int, Any]]:
    """``(seq, data)`` of every message ``stream`` holds on ``subject``, through a
    consumer (the stream leader's view, never a lagging replica's)."""
    js = nc.jetstream(timeout=10)
    try:
        last = (await js.get_last_msg(stream, subject)).seq or 0
    except nats.js.errors.NotFoundError:
        return []
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    out: list[tuple[int, Any]] = []
    try:
        while not out or out[-1][0] < last:
            for msg in await sub.fetch(1000, timeout=10):
                out.append((msg.metadata.sequence.stream, unpack_data(msg.data)))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


async def _settle(
    clients: list[ProbeClient],
    events: dict[str, list[tuple[int, Any]]],
    states: dict[str, list[tuple[int, Any]]],
    timeout_s: float,
) -> None:
    """Wait until every client holds the newest stored message of each of its channels
    (or the time is up: what is missing then is counted as lost)."""

    def caught_up() -> bool:
        for client in clients:
            for channel, sub in client.subs.items():
                wf = channel.split(":")[1]
                held = events[wf] if channel.endswith(":events") else states[wf]
                if not held:
                    continue
                if channel.endswith(":events"):
                    if sub.position is None or sub.position.seq < held[-1][0]:
                        return False
                elif sub.last is None or sub.last[0] < held[-1][0]:
                    return False
        return True

    deadline = time.monotonic() + timeout_s
    while not caught_up():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for client in clients:
            client.changed.clear()
        waits = [asyncio.ensure_future(c.changed.wait()) for c in clients]
        await asyncio.wait(waits, timeout=min(remaining, 1.0), return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()


async def _retry(work: Callable[[], Awaitable[T]], timeout_s: float = 60.0) -> T:
    """``work()`` until it succeeds: a JetStream cluster answers 503 while it elects a
    leader (at start, after a node came back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await work()
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- output ------------------------------------------------------------------------------

COLUMNS = (
    ("scenario", 18),
    ("acked", 7),
    ("stored", 7),
    ("delivered", 10),
    ("lost", 5),
    ("dup", 4),
    ("reord", 6),
    ("holes", 6),
    ("rec=f", 6),
    ("resumes", 8),
    ("state", 6),
    ("cmds", 5),
    ("twice", 6),
    ("unans", 6),
    ("unkn", 5),
    ("pub max", 8),
    (">5s", 4),
    (">5.5s", 6),
    ("reconn", 7),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("ok", 3),
)


def table(reports: Sequence[DurabilityReport]) -> str:
    """The scenario table as printed: one row per scenario."""
    head = " ".join(
        name.rjust(width) if i else name.ljust(width) for i, (name, width) in enumerate(COLUMNS)
    )
    lines = [head, "-" * len(head)]
    for r in reports:
        e, p, c = r.events, r.publishes, r.commands
        cells = [
            r.scenario,
            p.acked,
            p.stored,
            e.delivered,
            e.lost,
            e.duplicated,
            e.reordered,
            e.holes,
            e.recovered_false,
            e.resumed,
            f"{r.state_readers - r.state_wrong}/{r.state_readers}",
            c.sent,
            c.executed_twice,
            c.sent - c.answered,
            c.outcome_unknown,
            f"{p.max_answer_ms / 1000:.2f}s",
            p.answered_after_timeout,
            p.answered_late,
            r.reconnects,
            "-" if r.reconnect_p50_ms is None else f"{r.reconnect_p50_ms:.0f}",
            "-" if r.reconnect_p99_ms is None else f"{r.reconnect_p99_ms:.0f}",
            "yes" if r.ok else "NO",
        ]
        lines.append(
            " ".join(
                str(v).rjust(width) if i else str(v).ljust(width)
                for i, (v, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest durability")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=5)
    parser.add_argument("--readers", type=int, default=15)
    parser.add_argument("--churners", type=int, default=8)
    parser.add_argument(
        "--churn-churners", type=int, default=32, help="churners in the resubscribe-churn scenario"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--commands", type=float, default=10.0, help="control commands per second")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument(
        "--churn-duration-s",
        type=float,
        default=90.0,
        help="duration of the resubscribe-churn scenario (10,000 resubscriptions or more)",
    )
    parser.add_argument("--disrupt-at-s", type=float, default=15.0)
    parser.add_argument("--json", help="write the reports to this file")
    parser.add_argument(
        "--logs", default="durability-logs", help="folder for the logs of a failed scenario"
    )
    args = parser.parse_args(argv)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    reports = []
    for scenario in scenarios:
        cfg = DurabilityConfig(
            scenario=scenario,
            gateways=args.gateways,
            workflows=args.workflows,
            readers=args.readers,
            churners=args.churn_churners if scenario == "resubscribe-churn" else args.churners,
            rate_per_s=args.rate,
            commands_per_s=args.commands,
            duration_s=args.churn_duration_s
            if scenario == "resubscribe-churn"
            else args.duration_s,
            disrupt_at_s=args.disrupt_at_s,
            logs_dir=args.logs,
        )
        report = asyncio.run(run_durability(cfg))
        reports.append(report)
        print(table([report]).splitlines()[-1] if len(reports) > 1 else table([report]), flush=True)
    print()
    print(table(reports))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) | {"ok": r.ok} for r in reports], fh, indent=2)
    return 0 if all(r.ok for r in reports) else 1
