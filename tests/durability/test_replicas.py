"""Replication follows the NATS a gateway reaches unless configured: three replicas on a
cluster of three, one on a single server; what exists keeps its replicas; ``/readyz``
says which replication is in force."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client as NatsClient

from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.subjects import Subjects
from tests.conftest import GatewayFactory, RunningGateway, start_gateway


def resources(prefix: str) -> list[str]:
    s = Subjects(prefix)
    return [
        s.events_stream,
        s.state_stream,
        s.control_bucket,
        s.presence_bucket,
        s.placement_bucket,
    ]


async def replicas_in_nats(nc: NatsClient, prefix: str) -> dict[str, int]:
    js = nc.jetstream(timeout=10)
    s = Subjects(prefix)
    out: dict[str, int] = {}
    for name in (s.events_stream, s.state_stream):
        out[name] = int((await js.stream_info(name)).config.num_replicas or 1)
    for bucket in (s.control_bucket, s.presence_bucket, s.placement_bucket):
        out[bucket] = int((await js.stream_info(f"KV_{bucket}")).config.num_replicas or 1)
    return out


async def readyz(http: aiohttp.ClientSession, gw: RunningGateway) -> dict[str, Any]:
    async with http.get(f"{gw.http}/readyz") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_single_server_gets_one_replica(
    gateways: GatewayFactory, http: aiohttp.ClientSession, prefix: str
) -> None:
    gw = await gateways()  # stream_replicas left at its default: chosen
    body = await readyz(http, gw)
    assert body["replication"]["replicas"] == 1
    assert body["replication"]["in_force"] == dict.fromkeys(resources(prefix), 1)


@pytest.mark.timeout(90)
async def test_cluster_of_three_gets_three_and_existing_resources_keep_theirs(
    cluster3: list[NatsProcess],
    cluster_nc: NatsClient,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = ",".join(n.url for n in cluster3)
    fresh = f"r3{uuid.uuid4().hex[:8]}"
    gw = await start_gateway(urls, fresh)
    try:
        assert await replicas_in_nats(cluster_nc, fresh) == dict.fromkeys(resources(fresh), 3)
        body = await readyz(http, gw)
        assert body["replication"]["replicas"] == 3
        assert body["replication"]["in_force"] == dict.fromkeys(resources(fresh), 3)
    finally:
        await gw.stop()

    older = f"r1{uuid.uuid4().hex[:8]}"
    first = await start_gateway(urls, older, stream_replicas=1)
    await first.stop()
    caplog.set_level(logging.WARNING, logger="frys.gateway.bus")
    second = await start_gateway(urls, older)  # would create three: finds one
    try:
        assert await replicas_in_nats(cluster_nc, older) == dict.fromkeys(resources(older), 1)
        body = await readyz(http, second)
        assert body["replication"]["replicas"] == 3
        assert body["replication"]["in_force"] == dict.fromkeys(resources(older), 1)
        kept = [r.getMessage() for r in caplog.records if "keeps its 1 replica" in r.getMessage()]
        assert len(kept) == len(resources(older))
    finally:
        await second.stop()
