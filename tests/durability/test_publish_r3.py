"""A publish through a gateway is answered within ``publish_ack_timeout_s`` while the NATS
node that gateway is connected to dies (the events stream's leader too, so that publishes
in flight lose their acknowledgement), and every acknowledged publish is stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NatsClient

from frys.client import Client
from frys.client.errors import ClientError, RequestTimeout
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.codec import unpack_data
from frys.shared.protocol.subjects import Subjects
from tests.conftest import start_gateway, token
from tests.durability.conftest import lead, stored

ClientFactory = Callable[..., Awaitable[Client]]
ACK_TIMEOUT_S = 5.0
MARGIN_S = 0.5
"""Scheduling on a shared machine, between the gateway's deadline and the client's clock."""


@pytest.mark.timeout(90)
async def test_every_publish_answered_in_time_when_the_gateways_nats_node_dies(
    cluster3: list[NatsProcess], cluster_nc: NatsClient, clients: ClientFactory
) -> None:
    prefix = f"pk{uuid.uuid4().hex[:8]}"
    gw = await start_gateway(
        ",".join(n.url for n in cluster3),
        prefix,
        stream_replicas=3,
        publish_ack_timeout_s=ACK_TIMEOUT_S,
    )
    try:
        writer = await clients(gw.url, token=token("writer"))
        took: list[float] = []
        acked: dict[int, int] = {}
        refused: list[int] = []
        timed_out: list[int] = []

        async def one(n: int) -> None:
            started = time.monotonic()
            try:
                ack = await writer.publish("wf:pk:events", {"n": n}, mid=f"p{n}", timeout=30)
                assert ack.seq is not None
                acked[n] = ack.seq
            except RequestTimeout:  # 504: storage not confirmed in time
                timed_out.append(n)
            except ClientError:  # 503: not stored
                refused.append(n)
            took.append(time.monotonic() - started)

        connected = gw.gateway.bus.nc.connected_url
        assert connected is not None
        victim = next(n for n in cluster3 if n.port == connected.port)
        await lead(cluster_nc, Subjects(prefix).events_stream, victim, cluster3)
        killed_at: list[int] = []

        async def publish(kill_after: int, total_s: float) -> int:
            tasks: set[asyncio.Task[None]] = set()
            n = 0
            until = time.monotonic() + total_s
            while time.monotonic() < until:
                for _ in range(4):
                    task = asyncio.get_running_loop().create_task(one(n))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    n += 1
                if n >= kill_after and not killed_at:
                    # Right behind a burst: its publishes are on their way to the stream
                    # when the node (the gateway's, and the stream's leader) vanishes.
                    await asyncio.sleep(0.003)
                    victim.kill()
                    killed_at.append(n)
                await asyncio.sleep(0.02)  # about 200 publishes a second
            await asyncio.gather(*tasks)
            return n

        sent = await publish(kill_after=200, total_s=ACK_TIMEOUT_S + 12)

        assert len(took) == sent  # every publish was answered, one way or the other
        assert len(acked) + len(refused) + len(timed_out) == sent
        outcome = f"{len(acked)} acked, {len(refused)} 503, {len(timed_out)} 504 of {sent}"
        assert max(took) <= ACK_TIMEOUT_S + MARGIN_S, (outcome, sorted(took)[-5:])
        assert set(range(sent - 200, sent)) <= set(acked), outcome  # publishing recovered
        # Every acknowledged publish is stored, once.
        held = await stored(cluster_nc, Subjects(prefix).events_stream, f"{prefix}.wf.pk.events")
        ns = [unpack_data(data)["n"] for _, data in held]
        assert len(ns) == len(set(ns))
        assert set(acked) <= set(ns)
        assert {seq for seq, _ in held} >= set(acked.values())
    finally:
        await gw.stop()
