"""Dictionary-compressed delivery end to end, on real NATS and real gateways: plain frames
for clients that declare nothing, dictionaries shared by every gateway through NATS (a
client moving to another gateway keeps decoding, a restarted gateway starts warm), a
rotation that loses nothing, and the documented answers to forged ids and oversized
dictionaries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgpack

from frys.client import Client
from frys.shared.protocol import zdict
from tests.conftest import GatewayFactory, RunningGateway, token

ClientFactory = Callable[..., Awaitable[Client]]
CHANNEL = "wf:opt:events"
FAST = {"optimiser_min_samples": 60, "optimiser_loopback_local": False}
"""Learn after 60 messages; readers on this host count as remote (so compressing pays)."""


def event(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "step.finished",
        "workflow": "wf-opt",
        "run": f"{rng.getrandbits(48):012x}",
        "step": {"name": rng.choice(["fetch", "parse", "rank"]), "attempt": 1 + i % 3},
        "status": rng.choice(["ok", "ok", "failed"]),
        "at": 1_764_000_000_000 + 37 * i,
    }


async def publish(client: Client, start: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed * 100_003 + start)
    sent = [event(start + i, rng) for i in range(count)]
    for data in sent:
        await client.publish(CHANNEL, data)
    return sent


async def receive(sub: Any, count: int) -> list[Any]:
    return [(await sub.next(10)).data for _ in range(count)]


async def learnt(gw: RunningGateway, timeout: float = 10.0) -> zdict.Dictionary:
    """The dictionary ``gw`` compresses the test's schema with, once it has one."""
    optimiser = gw.gateway.optimiser
    assert optimiser is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for state in optimiser.learner.schemas.values():
            if state.schema.startswith("events:") and state.dictionary is not None:
                return state.dictionary
        assert asyncio.get_running_loop().time() < deadline, "no dictionary learnt"
        await asyncio.sleep(0.05)


async def test_only_clients_that_declare_the_codec_get_compressed_frames(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    gw = await gateways(**FAST)
    reader = await clients(gw.url, token=token("reader"))
    plain = await clients(gw.url, token=token("plain"), codecs=())
    sub = await reader.subscribe(CHANNEL)
    plain_sub = await plain.subscribe(CHANNEL)
    async with aiohttp.ClientSession() as http:
        raw = await http.ws_connect(gw.url, protocols=("frys.v1.msgpack",))
        await raw.send_bytes(msgpack.packb({"op": "connect", "id": 1, "token": token("raw")}))
        await raw.receive(timeout=5)
        await raw.send_bytes(msgpack.packb({"op": "subscribe", "id": 2, "ch": CHANNEL}))
        publisher = await clients(gw.url, token=token("pub"), codecs=())
        sent = await publish(publisher, 0, 60)
        await learnt(gw)
        sent += await publish(publisher, 60, 60)
        assert await receive(sub, 120) == sent
        assert await receive(plain_sub, 120) == sent
        seen = 0
        while seen < 121:  # the ack, then every message
            msg = await raw.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.BINARY
            assert not zdict.is_compressed(msg.data)
            seen += 1
        await raw.close()
    assert reader.compressed_frames >= 50
    assert plain.compressed_frames == 0
    assert reader.dictionary_failures == 0
    report = gw.gateway.optimiser_report()
    assert report["sessions_by_class"]["msgpack+zstd-dict+tensor-ext@fast"] >= 1
    assert report["messages"]["classes"]["fast"]["compressed"] >= 50


async def test_a_client_moving_to_another_gateway_keeps_decoding(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    first = await gateways(**FAST)
    second = await gateways(**FAST)
    publisher = await clients(first.url, token=token("pub"), codecs=())
    mover = await clients([first.url, second.url], token=token("mover"))
    sub = await mover.subscribe(CHANNEL)
    sent = await publish(publisher, 0, 60)
    dictionary = await learnt(first)
    sent += await publish(publisher, 60, 40)
    assert await receive(sub, 100) == sent
    assert mover.compressed_frames > 0
    assert (await learnt(second)).id == dictionary.id  # shared through NATS
    # A reader that never met the first gateway fetches the dictionary from the second.
    newcomer = await clients(second.url, token=token("newcomer"))
    fresh = await newcomer.subscribe(CHANNEL)
    await first.stop()  # the mover goes to the second gateway and resumes from its position
    await asyncio.wait_for(_until(lambda: mover.gateway_id == second.gateway.config.gateway_id), 15)
    more = await publish(await clients(second.url, codecs=()), 100, 40)
    assert await receive(sub, 40) == more
    assert await receive(fresh, 40) == more
    assert newcomer.compressed_frames > 0 and newcomer.dictionary_failures == 0
    assert mover.dictionary_failures == 0


async def _until(check: Callable[[], bool]) -> None:
    while not check():  # noqa: ASYNC110 - polls a client attribute no event announces
        await asyncio.sleep(0.05)


async def test_a_rotation_while_clients_are_connected_loses_nothing(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    gw = await gateways(**FAST)
    other = await gateways(**FAST)
    publisher = await clients(gw.url, token=token("pub"), codecs=())
    here = await clients(gw.url, token=token("here"))
    there = await clients(other.url, token=token("there"))
    sub_here, sub_there = await here.subscribe(CHANNEL), await there.subscribe(CHANNEL)
    sent = await publish(publisher, 0, 80)
    old = await learnt(gw)
    optimiser = gw.gateway.optimiser
    assert optimiser is not None
    schema = next(s for s in optimiser.learner.schemas if s.startswith("events:"))
    rng = random.Random(9)
    frames = [
        msgpack.packb({"op": "message", "ch": CHANNEL, "data": event(i, rng)}) for i in range(300)
    ]
    new = zdict.train(frames, 4096)
    assert new.id != old.id
    optimiser.learner.adopt(schema, new, 3.0)  # a rotation, as a retraining would make it
    await optimiser._publish(schema, new)
    sent += await publish(publisher, 80, 80, seed=2)
    assert await receive(sub_here, 160) == sent
    assert await receive(sub_there, 160) == sent
    assert old.id in optimiser.learner.state(schema).retired
    for client in (here, there):
        assert client.dictionary_failures == 0
    async with aiohttp.ClientSession() as http:  # the old dictionary stays fetchable
        url = f"{other.http}/dict/{old.name}"
        async with http.get(url, headers={"Authorization": f"Bearer {token()}"}) as resp:
            assert resp.status == 200
            assert zdict.check_dictionary(await resp.read(), old.id) == old


async def test_forged_ids_and_oversized_dictionaries_get_the_documented_answers(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    gw = await gateways(**FAST)
    auth = {"Authorization": f"Bearer {token()}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.http}/dict/0badf00d", headers=auth) as resp:
            assert resp.status == 404 and await resp.text() == "unknown dictionary"
        async with http.get(f"{gw.http}/dict/deadbeef", headers=auth) as resp:
            assert resp.status == 400  # outside the range zstd allows
        async with http.get(f"{gw.http}/dict/not-an-id", headers=auth) as resp:
            assert resp.status == 400
        async with http.get(f"{gw.http}/dict/0badf00d") as resp:
            assert resp.status == 401
        # A forged entry in the cluster state (bytes that are not the id) is never served.
        optimiser = gw.gateway.optimiser
        assert optimiser is not None and optimiser.store is not None
        genuine = zdict.train(
            [msgpack.packb({"op": "message", "seq": i, "data": {"k": i % 7}}) for i in range(200)],
            2048,
        )
        forged = genuine.content[:100] + bytes([genuine.content[100] ^ 1]) + genuine.content[101:]
        kv = await optimiser.store.dicts()  # type: ignore[attr-defined]
        await kv.put(genuine.name, forged)
        async with http.get(f"{gw.http}/dict/{genuine.name}", headers=auth) as resp:
            assert resp.status == 404
    # A client whose limit the dictionary exceeds falls back to plain frames, losing nothing.
    publisher = await clients(gw.url, token=token("pub"), codecs=())
    small = await clients(gw.url, token=token("small"), max_dict_bytes=1024)
    sub = await small.subscribe(CHANNEL)
    sent = await publish(publisher, 0, 60)
    await learnt(gw)
    sent += await publish(publisher, 60, 60)
    assert await receive(sub, 120) == sent
    assert small.dictionary_failures == 1
    assert small.codecs == ()


async def test_learnt_state_survives_a_gateway_restart(
    gateways: GatewayFactory, clients: ClientFactory
) -> None:
    gw = await gateways(**FAST)
    publisher = await clients(gw.url, token=token("pub"), codecs=())
    reader = await clients(gw.url, token=token("reader"))
    sub = await reader.subscribe(CHANNEL)
    assert await receive(sub, 0) == []
    sent = await publish(publisher, 0, 70)
    dictionary = await learnt(gw)
    assert await receive(sub, 70) == sent
    await gw.stop()
    restarted = await gateways(**FAST)
    optimiser = restarted.gateway.optimiser
    assert optimiser is not None
    assert (await learnt(restarted, timeout=5)).id == dictionary.id  # warm, before any traffic
    state = next(s for s in optimiser.learner.schemas.values() if s.dictionary is not None)
    assert state.messages == 0
    late = await clients(restarted.url, token=token("late"))
    late_sub = await late.subscribe(CHANNEL)
    pub2 = await clients(restarted.url, token=token("pub2"), codecs=())
    more = await publish(pub2, 70, 20)
    assert await receive(late_sub, 20) == more
    assert late.compressed_frames == 20


async def test_tensor_readers_that_declare_tensor_ext_get_reencoded_frames(
    gateways: GatewayFactory, clients: ClientFactory, nats_server: Any, prefix: str
) -> None:
    import numpy as np

    from frys.client.backend import Backend

    gw = await gateways(**FAST)
    ext = await clients(gw.url, token=token("ext"))
    plain = await clients(gw.url, token=token("plain"), codecs=())
    ext_stream = await ext.tensors("wf:tx:state").start()
    plain_stream = await plain.tensors("wf:tx:state").start()
    rng = np.random.default_rng(3)
    state = rng.standard_normal((128, 64)).astype(np.float32)
    sent = []
    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        for i in range(40):
            state = state.copy()
            state.flat[rng.choice(state.size, 40 if i % 10 else 8000, replace=False)] += 1.0
            sent.append(state)
            await backend.publish_tensor("wf:tx:state", state)
            for stream in (ext_stream, plain_stream):
                _, array = await stream.next(10)
                while array.tobytes() != state.tobytes():  # conflated readers skip ahead
                    _, array = await stream.next(10)
    optimiser = gw.gateway.optimiser
    assert optimiser is not None
    report = optimiser.describe_tensors()
    (stream_report,) = report.values()
    fast = stream_report["fast"]
    assert fast["frames"] >= 30 and fast["arm"] in fast["cost_us_per_kb"]
    stats = await ext.tensor_stats("wf:tx:state")
    assert stats["optimiser"]["tensors"]["0"]["fast"]["frames"] >= 30
    assert stats["optimiser"]["wire"]["tensor_ext"] is True
    # The stream's choice is cluster state: a gateway that starts relaying it starts there.
    name = "wf:tx:state#0@fast"
    store = optimiser.store
    assert store is not None
    for _ in range(100):
        if name in await store.streams():
            break
        await asyncio.sleep(0.05)
    later = await gateways(**FAST)
    assert later.gateway.optimiser is not None
    assert later.gateway.optimiser.stream_hints[name] == fast["arm"]
