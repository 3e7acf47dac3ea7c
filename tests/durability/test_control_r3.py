"""Control commands execute at most once per command id through the loss of the control
bucket's leader on a three-node cluster, and every caller gets a definite answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from frys.client import Client
from frys.client.backend import OUTCOME_UNKNOWN, UNAVAILABLE, Backend, Command
from frys.client.errors import RequestTimeout, Unavailable
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.subjects import Subjects
from tests.conftest import start_gateway, token
from tests.durability.conftest import stream_leader

ClientFactory = Callable[..., Awaitable[Client]]
CH = "wf:ctl:control"


async def answer(client: Client, cid: str, data: Any, within_s: float = 45.0) -> Any:
    """Send a command until it is answered, as §6.4 says a caller does: on 503 or 504, and
    on a reply saying the command did not run, the same command id again."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            reply = await client.request(CH, data, cid=cid, timeout=4)
        except (RequestTimeout, Unavailable):
            reply = None
        did_not_run = isinstance(reply, dict) and reply.get("error") == UNAVAILABLE
        if reply is not None and not did_not_run:
            return reply
        assert time.monotonic() < deadline, f"command {cid} got no answer in {within_s} s"


def control_stream(prefix: str) -> str:
    return f"KV_{Subjects(prefix).control_bucket}"


@pytest.mark.timeout(120)
async def test_kv_leader_killed_during_execution_every_command_once_every_caller_answered(
    cluster3: list[NatsProcess], cluster_nc: NatsClient, clients: ClientFactory
) -> None:
    prefix = f"kl{uuid.uuid4().hex[:8]}"
    urls = ",".join(n.url for n in cluster3)
    gw = await start_gateway(urls, prefix, stream_replicas=3)
    runs: Counter[str] = Counter()
    started: set[str] = set()
    all_started = asyncio.Event()
    release = asyncio.Event()
    slow = [f"slow-{i}" for i in range(6)]

    async def handle(command: Command) -> Any:
        runs[command.cid] += 1
        if command.data.get("slow"):
            started.add(command.cid)
            if started >= set(slow):
                all_started.set()
            await release.wait()
        return {"ran": command.cid}

    try:
        async with await Backend.connect(urls, prefix=prefix) as backend:
            await backend.serve_control(handle)
            await backend.nc.flush()
            callers = [await clients(gw.url, token=token(f"user{i % 3}")) for i in range(6)]
            loop = asyncio.get_running_loop()
            pending = [
                loop.create_task(answer(c, cid, {"slow": True}))
                for c, cid in zip(callers, slow, strict=True)
            ]
            await asyncio.wait_for(all_started.wait(), 20)
            leader = await stream_leader(cluster_nc, control_stream(prefix), cluster3)
            leader.kill()  # every slow command is claimed and executing
            # Commands sent while the bucket elects a new leader: their claims fail for a
            # while; they run once it answers, or are told they did not run and are resent.
            fresh = [f"fresh-{i}" for i in range(6)]
            pending += [
                loop.create_task(answer(c, cid, {"slow": False}))
                for c, cid in zip(callers, fresh, strict=True)
            ]
            await asyncio.sleep(0.5)
            release.set()
            replies = await asyncio.gather(*pending)
            cids = slow + fresh
            assert replies == [{"ran": cid} for cid in cids]  # every caller, its own answer
            assert runs == dict.fromkeys(cids, 1)  # each command ran exactly once
            assert backend.executed == len(cids)
            # The outcomes landed despite the leader loss; later retries come from them.
            for client, cid in zip(callers + callers, cids, strict=True):
                assert await answer(client, cid, {"slow": False}) == {"ran": cid}
                assert await client.outcome(CH, cid) == {"ran": cid}
            assert runs == dict.fromkeys(cids, 1)
    finally:
        await gw.stop()


@pytest.mark.timeout(60)
async def test_engine_dying_mid_command_gives_outcome_unknown_never_a_second_run(
    cluster3: list[NatsProcess], clients: ClientFactory
) -> None:
    prefix = f"kd{uuid.uuid4().hex[:8]}"
    urls = ",".join(n.url for n in cluster3)
    gw = await start_gateway(urls, prefix, stream_replicas=3)
    runs: Counter[str] = Counter()
    started = asyncio.Event()

    async def hang(command: Command) -> Any:
        runs[command.cid] += 1
        started.set()
        await asyncio.Event().wait()  # the engine dies before this returns

    async def handle(command: Command) -> Any:
        runs[command.cid] += 1
        return {"ran": command.cid}

    try:
        doomed = await Backend.connect(urls, prefix=prefix, name="doomed")
        await doomed.serve_control(hang)
        await doomed.nc.flush()
        client = await clients(gw.url, token=token("alice"))
        first = asyncio.get_running_loop().create_task(
            client.request(CH, {"go": 1}, cid="c1", timeout=3)
        )
        await asyncio.wait_for(started.wait(), 10)
        doomed.close_wait_s = 0.0
        await doomed.close()  # its command task is cut off: the claim stays pending
        with pytest.raises((RequestTimeout, Unavailable)):
            await first
        async with await Backend.connect(urls, prefix=prefix, name="survivor") as survivor:
            survivor.claim_lease_s = 1.0
            await survivor.serve_control(handle)
            await survivor.nc.flush()
            reply = await client.request(CH, {"go": 1}, cid="c1", timeout=10)
            assert reply["error"] == OUTCOME_UNKNOWN
            assert await client.request(CH, {"go": 1}, cid="c1", timeout=10) == reply
            assert await client.outcome(CH, "c1") == reply
            assert runs == {"c1": 1}  # the survivor never ran it again
            assert survivor.executed == 0
            # Another command id is served as usual.
            assert await client.request(CH, {"go": 2}, cid="c2", timeout=10) == {"ran": "c2"}
    finally:
        await gw.stop()


@pytest.mark.timeout(90)
async def test_claim_that_cannot_be_written_is_answered_not_run(
    cluster3: list[NatsProcess], clients: ClientFactory
) -> None:
    prefix = f"ku{uuid.uuid4().hex[:8]}"
    survivor, *others = cluster3
    gw = await start_gateway(survivor.url, prefix, stream_replicas=3)
    runs: Counter[str] = Counter()

    async def handle(command: Command) -> Any:
        runs[command.cid] += 1
        return {"ran": command.cid}

    try:
        async with await Backend.connect(survivor.url, prefix=prefix) as backend:
            backend.claim_timeout_s = 0.5
            await backend.serve_control(handle)
            await backend.nc.flush()
            client = await clients(gw.url, token=token("alice"))
            assert await client.request(CH, {}, cid="before", timeout=10) == {"ran": "before"}
            for node in others:
                node.kill()  # no quorum: the bucket takes no write
            reply = await client.request(CH, {}, cid="c1", timeout=15)
            assert reply["error"] == UNAVAILABLE
            assert runs["c1"] == 0
            for node in others:
                node.restart()
            # Resent with the same id once the bucket answers again: it runs, once.
            assert await answer(client, "c1", {}, within_s=40) == {"ran": "c1"}
            assert await answer(client, "c1", {}) == {"ran": "c1"}
            assert runs == {"before": 1, "c1": 1}
    finally:
        await gw.stop()
