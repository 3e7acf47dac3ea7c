"""Two clients on one gateway exchange messages on every channel kind, over a real NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from frys.client import Client
from frys.client.backend import Backend, Command
from frys.runtime.nats_process import NatsProcess
from tests.conftest import RunningGateway, token


async def test_state_events_collab_and_inbox(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> None:
    alice = await clients(gateway.url, token=token("alice"))
    bob = await clients(gateway.url, token=token("bob"))
    subs = {ch: await bob.subscribe(ch) for ch in ("wf:7:state", "wf:7:events", "wf:7:collab")}
    inbox = await bob.subscribe("agent:bob")

    ack = await alice.publish("wf:7:events", {"step": "a"})
    assert ack.seq is not None and ack.seq >= 1
    await alice.publish("wf:7:state", {"progress": 1})
    await alice.publish("wf:7:collab", "hello team")
    await alice.publish("agent:bob", {"direct": True})

    event = await subs["wf:7:events"].next(5)
    assert (event.data, event.seq, event.from_) == ({"step": "a"}, ack.seq, "alice")
    state = await subs["wf:7:state"].next(5)
    assert state.data == {"progress": 1} and state.seq is not None
    collab = await subs["wf:7:collab"].next(5)
    assert (collab.data, collab.from_) == ("hello team", "alice")
    direct = await inbox.next(5)
    assert (direct.data, direct.from_) == ({"direct": True}, "alice")


async def test_control_request_reaches_engine_and_replies(
    gateway: RunningGateway,
    nats_server: NatsProcess,
    prefix: str,
    clients: Callable[..., Awaitable[Client]],
) -> None:
    seen: list[Command] = []

    async def handle(command: Command) -> Any:
        seen.append(command)
        return {"done": command.data["action"]}

    backend = await Backend.connect(nats_server.url, prefix=prefix)
    try:
        await backend.serve_control(handle)
        await backend.nc.flush()
        alice = await clients(gateway.url)
        reply = await alice.request("wf:9:control", {"action": "pause"}, cid="cmd-1")
        assert reply == {"done": "pause"}
        assert [(c.workflow, c.cid, c.sender) for c in seen] == [("9", "cmd-1", "alice")]
        # The same command id again is answered from the record, not executed again.
        again = await alice.request("wf:9:control", {"action": "pause"}, cid="cmd-1")
        assert again == {"done": "pause"}
        assert backend.executed == 1
        assert await alice.outcome("wf:9:control", "cmd-1") == {"done": "pause"}
    finally:
        await backend.close()


async def test_presence_join_leave_and_query(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> None:
    watcher = await clients(gateway.url, token=token("watcher"))
    notices = await watcher.subscribe("wf:5:presence")
    agent = await clients(
        gateway.url, token=token("agent-1", kind="agent"), name="planner", caps=("plan",)
    )
    sub = await agent.subscribe("wf:5:collab")
    own = await notices.next(5)  # subscribing to a workflow's channel makes one a member
    assert (own.data["type"], own.data["member"]["sub"]) == ("join", "watcher")
    joined = await notices.next(5)
    assert joined.data["type"] == "join"
    member = joined.data["member"]
    assert (member["sub"], member["kind"], member["name"], member["caps"]) == (
        "agent-1",
        "agent",
        "planner",
        ["plan"],
    )
    members = await watcher.presence("wf:5:presence")
    assert {m["sub"] for m in members} == {"watcher", "agent-1"}
    await sub.unsubscribe()
    left = await notices.next(5)
    assert (left.data["type"], left.data["member"]["sub"]) == ("leave", "agent-1")


async def test_json_and_msgpack_clients_interoperate(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> None:
    browser = await clients(gateway.url, codec="json")
    agent = await clients(gateway.url)
    sub = await browser.subscribe("wf:3:collab")
    await agent.publish("wf:3:collab", {"blob": b"\x00\x01", "n": 1.5})
    msg = await sub.next(5)
    assert msg.data == {"blob": b"\x00\x01", "n": 1.5}
    back = await agent.subscribe("wf:3:events")
    await browser.publish("wf:3:events", {"from": "browser"})
    assert (await back.next(5)).data == {"from": "browser"}


async def test_state_snapshot_for_late_joiner(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> None:
    writer = await clients(gateway.url)
    for i in range(5):
        await writer.publish("wf:11:state", {"v": i})
    late = await clients(gateway.url, token=token("late"))
    sub = await late.subscribe("wf:11:state")
    snapshot = await sub.next(5)
    assert snapshot.data == {"v": 4}
    assert sub.pending() == 0
    await writer.publish("wf:11:state", {"v": 5})
    assert (await sub.next(5)).data == {"v": 5}


async def test_publish_is_acked_only_after_storage_for_events(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> None:
    c = await clients(gateway.url)
    first = await c.publish("wf:12:events", 1, mid="m-1")
    again = await c.publish("wf:12:events", 1, mid="m-1")
    assert first.seq == again.seq and again.duplicate and not first.duplicate
    sub = await c.subscribe("wf:12:events", since=None)
    await c.publish("wf:12:events", 2)
    msg = await sub.next(5)
    assert msg.data == 2 and msg.seq is not None and first.seq is not None
    assert msg.seq > first.seq
    await asyncio.sleep(0)
