"""Command ids and message ids belong to their sender (and a message id to its channel):
one user's ids never answer, suppress or reveal another's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from frys.client import Client
from frys.client.backend import Backend, Command
from frys.client.errors import NotFound
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.control import command_key, outcome_key, sender_tag
from frys.shared.protocol.publish import message_id
from tests.conftest import GatewayFactory, RunningGateway, token

ClientFactory = Callable[..., Awaitable[Client]]


def test_keys_separate_senders_and_channels() -> None:
    assert command_key("w1", "alice", "c1") != command_key("w1", "bob", "c1")
    assert command_key("w1", "alice", "c1") == f"w1.{sender_tag('alice')}.c1"
    assert command_key("w1", "alice", "bad cid") is None
    assert outcome_key("w1", "c1") == "w1.c1"  # the unscoped form stays as it was
    # Any identity gives a tag that is one KV key token.
    for sub in ("alice", "a.b>c*", "ünï cødé", ""):
        assert len(sender_tag(sub)) == 16 and sender_tag(sub).isalnum()
    base = message_id("wf:a:events", "alice", "m1")
    assert base == message_id("wf:a:events", "alice", "m1")
    assert base != message_id("wf:b:events", "alice", "m1")
    assert base != message_id("wf:a:events", "bob", "m1")
    # Length-prefixed: moving a character across the boundary is another id.
    assert message_id("wf:a:events", "ab", "c") != message_id("wf:a:events", "a", "bc")


async def test_two_users_with_one_cid_each_run_and_see_only_their_own(
    gateway: RunningGateway, clients: ClientFactory, nats_server: NatsProcess, prefix: str
) -> None:
    runs: Counter[tuple[str | None, str]] = Counter()

    async def handle(command: Command) -> Any:
        runs[(command.sender, command.cid)] += 1
        return {"for": command.sender, "action": command.data["action"]}

    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        await backend.serve_control(handle)
        await backend.nc.flush()
        alice = await clients(gateway.url, token=token("alice"))
        bob = await clients(gateway.url, token=token("bob"))
        carol = await clients(gateway.url, token=token("carol"))
        ch = "wf:iso:control"
        assert await alice.request(ch, {"action": "pause"}, cid="c1") == {
            "for": "alice",
            "action": "pause",
        }
        # Bob reuses Alice's id: his command runs, and he gets his own reply.
        assert await bob.request(ch, {"action": "stop"}, cid="c1") == {
            "for": "bob",
            "action": "stop",
        }
        # A retry by each is still answered from the record, without running again.
        assert (await alice.request(ch, {"action": "pause"}, cid="c1"))["for"] == "alice"
        assert (await bob.request(ch, {"action": "stop"}, cid="c1"))["for"] == "bob"
        assert runs == {("alice", "c1"): 1, ("bob", "c1"): 1}
        assert backend.executed == 2
        assert await alice.outcome(ch, "c1") == {"for": "alice", "action": "pause"}
        assert await bob.outcome(ch, "c1") == {"for": "bob", "action": "stop"}
        with pytest.raises(NotFound):
            await carol.outcome(ch, "c1")  # someone else's record is not hers to read


async def test_message_ids_are_scoped_to_sender_and_channel(
    gateways: GatewayFactory, clients: ClientFactory, nats_server: NatsProcess, prefix: str
) -> None:
    gw = await gateways()
    alice = await clients(gw.url, token=token("alice"))
    bob = await clients(gw.url, token=token("bob"))
    reader = await clients(gw.url, token=token("reader"))
    on_a = await reader.subscribe("wf:ma:events")
    on_b = await reader.subscribe("wf:mb:events")

    first = await alice.publish("wf:ma:events", "a1", mid="m")
    other_channel = await alice.publish("wf:mb:events", "b1", mid="m")
    other_sender = await bob.publish("wf:ma:events", "a2", mid="m")
    repeat = await alice.publish("wf:ma:events", "a1 again", mid="m")

    assert not first.duplicate and not other_channel.duplicate and not other_sender.duplicate
    assert (repeat.duplicate, repeat.seq) == (True, first.seq)
    assert len({first.seq, other_channel.seq, other_sender.seq}) == 3
    assert [(await on_a.next(5)).data for _ in range(2)] == ["a1", "a2"]
    assert (await on_b.next(5)).data == "b1"

    # The backend helper follows the same rule: its own repeat is a duplicate, a gateway
    # user's message with the same mid is not.
    async with await Backend.connect(nats_server.url, prefix=prefix, name="engine") as backend:
        seq = await backend.publish_event("ma", "e1", mid="m")
        assert seq not in (first.seq, other_sender.seq)
        assert await backend.publish_event("ma", "e1 again", mid="m") == seq
    assert (await on_a.next(5)).data == "e1"
    assert on_a.pending() == 0
