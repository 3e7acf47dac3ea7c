"""Three-node NATS clusters for the replicated (R = 3) durability tests, and what those tests
ask of a cluster: which node leads a stream, and every message a stream holds on a subject."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from frys.runtime.cluster import start_cluster_retrying
from frys.runtime.nats_process import NatsProcess


@pytest.fixture
def cluster3() -> Iterator[list[NatsProcess]]:
    """A JetStream cluster of three real nats-server processes of this test's own."""
    nodes = start_cluster_retrying(3, f"c{time.monotonic_ns() % 1_000_000}")
    yield nodes
    for node in nodes:
        node.close()


@pytest.fixture
async def cluster_nc(cluster3: list[NatsProcess]) -> AsyncIterator[NatsClient]:
    """A NATS connection to every node of the cluster (for checks and leader look-ups)."""
    nc = await nats.connect(
        servers=[n.url for n in cluster3], max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    yield nc
    await nc.close()


async def stream_leader(nc: NatsClient, stream: str, nodes: list[NatsProcess]) -> NatsProcess:
    """The node that leads ``stream`` now (retrying while the cluster elects one)."""
    js = nc.jetstream(timeout=5)
    deadline = time.monotonic() + 20
    while True:
        try:
            info = await js.stream_info(stream)
            leader = info.cluster.leader if info.cluster is not None else None
            for node in nodes:
                if node.name == leader:
                    return node
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"stream {stream} has no leader")
        await asyncio.sleep(0.1)


async def lead(nc: NatsClient, stream: str, node: NatsProcess, nodes: list[NatsProcess]) -> None:
    """Make ``node`` the leader of ``stream`` (a step-down naming the preferred server)."""
    request = json.dumps({"placement": {"preferred": node.name}}).encode()
    deadline = time.monotonic() + 20
    while (await stream_leader(nc, stream, nodes)) is not node:
        assert time.monotonic() < deadline, f"{node.name} never took the lead of {stream}"
        with contextlib.suppress(Exception):
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=5)
        await asyncio.sleep(0.2)


async def stored(nc: NatsClient, stream: str, subject: str) -> list[tuple[int, bytes]]:
    """``(seq, payload)`` of every message ``stream`` holds on ``subject``, read through a
    consumer (served by the stream's leader, never a lagging replica)."""
    js = nc.jetstream(timeout=10)
    try:
        last = (await js.get_last_msg(stream, subject)).seq or 0
    except nats.js.errors.NotFoundError:
        return []
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    out: list[tuple[int, bytes]] = []
    try:
        while not out or out[-1][0] < last:
            for msg in await sub.fetch(1000, timeout=5):
                out.append((msg.metadata.sequence.stream, msg.data))
    finally:
        await sub.unsubscribe()
    return out
