"""Resume on a replicated stream (R = 3): a ``subscribe`` with ``since`` delivers every
message the stream holds after ``since`` exactly once, in order, or says
``recovered: false``; never a silent hole.

Replay reads use direct gets, which any replica may serve, and a replica may lag the leader
by the last few messages: the hand-over to live delivery must not trust such a read. The
churn below (clients unsubscribing and resubscribing with ``since`` while events flow, on
gateways connected to different nodes) is where that showed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NatsClient

from frys.client.backend import Backend
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import unpack_data
from frys.shared.protocol.subjects import Subjects
from tests.conftest import RunningGateway, start_gateway, token
from tests.durability.conftest import stored
from tests.durability.wire import Round, WireSession


@dataclass
class Verdict:
    rounds: int = 0
    resumed: int = 0
    """Rounds that subscribed with ``since``."""
    delivered: int = 0
    holes: int = 0
    """Messages stored inside a round's delivered range and not delivered by it, after an
    ack that promised them (``recovered: true``)."""
    duplicates: int = 0
    reordered: int = 0
    not_stored: int = 0
    recovered_false: int = 0
    lost: int = 0
    """Stored messages after a client's first position that no round delivered, outside
    the ranges a ``recovered: false`` excused."""


def judge(rounds: list[Round], stored_seqs: list[int]) -> Verdict:
    """One client's rounds on one channel, in order, against what the stream holds."""
    v = Verdict()
    held = set(stored_seqs)
    seen: set[int] = set()
    excused: list[tuple[int, int]] = []
    first_start: int | None = None
    for rnd in rounds:
        v.rounds += 1
        live = rnd.since is None
        if live:
            start = rnd.ack.seq or 0
        elif rnd.ack.recovered is False:
            v.recovered_false += 1
            start = rnd.ack.seq or 0
            excused.append((rnd.since.seq, start))  # type: ignore[union-attr]
        else:
            v.resumed += 1
            start = rnd.since.seq  # type: ignore[union-attr]
        if first_start is None:
            first_start = start
        # After a live subscribe the gateway may repeat messages up to the acked seq.
        seqs = [s for s in rnd.seqs if not (live and s <= start)]
        v.delivered += len(seqs)
        v.duplicates += len(seqs) - len(set(seqs))
        v.duplicates += sum(1 for s in set(seqs) if s in seen or s <= start)
        v.reordered += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        v.not_stored += sum(1 for s in set(seqs) if s not in held)
        if seqs:
            top = max(seqs)
            v.holes += sum(1 for s in stored_seqs if start < s <= top and s not in set(seqs))
        seen |= set(seqs)
    if first_start is not None:
        v.lost = sum(
            1
            for s in stored_seqs
            if s > first_start and s not in seen and not any(a < s <= b for a, b in excused)
        )
    return v


def test_judge_counts_what_it_claims() -> None:
    """The judge itself: each kind of fault in a crafted round is counted as that kind."""
    ack = f.Ack(id=1, seq=10, epoch="e")

    def rnd(since: int | None, seqs: list[int], recovered: bool | None = True) -> Round:
        position = None if since is None else f.Position(since, "e")
        a = ack if since is None else f.Ack(id=1, seq=since + 5, epoch="e", recovered=recovered)
        return Round("wf:x:events", position, a, [(s, None) for s in seqs])

    stored_seqs = [10, 12, 14, 16, 18, 20, 22]
    clean = judge([rnd(None, [10, 12]), rnd(12, [14, 16]), rnd(16, [18, 20, 22])], stored_seqs)
    assert (clean.holes, clean.duplicates, clean.reordered, clean.lost) == (0, 0, 0, 0)
    assert (clean.delivered, clean.resumed) == (6, 2)
    holed = judge([rnd(None, [12]), rnd(12, [14, 18]), rnd(18, [20, 22])], stored_seqs)
    assert (holed.holes, holed.lost) == (1, 1)
    dup = judge([rnd(None, [12, 14]), rnd(12, [14, 16, 18, 20, 22])], stored_seqs)
    assert (dup.duplicates, dup.holes) == (1, 0)
    swapped = judge([rnd(None, [12, 16, 14, 18, 20, 22])], stored_seqs)
    assert swapped.reordered == 1
    declared = judge([rnd(None, [12]), rnd(12, [18, 20, 22], recovered=False)], stored_seqs)
    assert (declared.recovered_false, declared.lost, declared.holes) == (1, 0, 0)


async def _publish(backend: Backend, workflows: list[str], rate: float, stop: asyncio.Event) -> int:
    """Events at ``rate`` per second over ``workflows`` until ``stop``; returns the count."""
    n = 0
    tick = 0.01
    owed = 0.0
    next_at = time.monotonic()
    pending: set[asyncio.Task[int]] = set()
    while not stop.is_set():
        owed += rate * tick
        while owed >= 1:
            owed -= 1
            wf = workflows[n % len(workflows)]
            task = asyncio.get_running_loop().create_task(
                backend.publish_event(wf, {"n": n}, mid=f"e{n}")
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if pending:
        await asyncio.gather(*pending)
    return n


async def _churn(
    session: WireSession, channel: str, stop: asyncio.Event, rng: random.Random
) -> list[Round]:
    """Subscribe live, then unsubscribe and resubscribe from the last position until
    ``stop``: a client that keeps coming back, each time resuming with ``since``."""
    rounds: list[Round] = []
    rnd = await session.subscribe(channel)
    assert rnd.ack.epoch is not None and rnd.ack.seq is not None
    position = f.Position(rnd.ack.seq, rnd.ack.epoch)
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.0, 0.04))
        rounds.append(await session.unsubscribe(channel))
        top = max(rnd.seqs, default=0)
        if rnd.ack.recovered is False and rnd.ack.seq is not None:
            position = f.Position(rnd.ack.seq, position.epoch)
        position = f.Position(max(position.seq, top), position.epoch)
        rnd = await session.subscribe(channel, since=position)
    rounds.append(await session.unsubscribe(channel))
    return rounds


async def _final_round(session: WireSession, channel: str, rounds: list[Round], last: int) -> None:
    """One more resume that must reach the stream's last message on the channel."""
    prev = rounds[-1]
    position = max((s for r in rounds for s in r.seqs), default=prev.ack.seq or 0)
    if prev.ack.recovered is False and prev.ack.seq is not None:
        position = max(position, prev.ack.seq)
    assert prev.ack.epoch is not None or rounds[0].ack.epoch is not None
    epoch = rounds[0].ack.epoch or ""
    rnd = await session.subscribe(channel, since=f.Position(position, epoch))
    await session.until(lambda: max(rnd.seqs, default=position) >= last, 15)
    rounds.append(await session.unsubscribe(channel))


@pytest.mark.timeout(120)
async def test_resubscribe_churn_r3_delivers_every_stored_event_once_in_order(
    cluster3: list[NatsProcess], cluster_nc: NatsClient
) -> None:
    prefix = f"rc{uuid.uuid4().hex[:8]}"
    gateways: list[RunningGateway] = []
    sessions: list[WireSession] = []
    workflows = ["a", "b", "c", "d"]
    try:
        # One gateway per node: direct gets from a gateway on a follower are often served
        # by that follower, which is where a stale read comes from.
        for node in cluster3:
            gateways.append(await start_gateway(node.url, prefix, stream_replicas=3))
        backend = await Backend.connect(
            ",".join(n.url for n in cluster3), prefix=prefix, name="engine"
        )
        tok = token("churner", {"wf:*:events": ["subscribe"]})
        clients = []
        for i in range(24):
            session = await WireSession.open(gateways[i % len(gateways)].url, tok)
            sessions.append(session)
            clients.append((session, f"wf:{workflows[i % len(workflows)]}:events"))
        stop_churn = asyncio.Event()
        stop_publishing = asyncio.Event()
        rng = random.Random(7)
        churners = [
            asyncio.get_running_loop().create_task(
                _churn(s, ch, stop_churn, random.Random(rng.random()))
            )
            for s, ch in clients
        ]
        publishing = asyncio.get_running_loop().create_task(
            _publish(backend, workflows, 400.0, stop_publishing)
        )
        await asyncio.sleep(14)
        stop_churn.set()
        results = await asyncio.gather(*churners)
        stop_publishing.set()
        published = await publishing
        await backend.close()

        stream = Subjects(prefix).events_stream
        by_channel: dict[str, list[int]] = {}
        for wf in workflows:
            held = await stored(cluster_nc, stream, f"{prefix}.wf.{wf}.events")
            by_channel[f"wf:{wf}:events"] = [seq for seq, _ in held]
            assert len({unpack_data(data)["n"] for _, data in held}) == len(held)
        assert sum(len(v) for v in by_channel.values()) == published

        for (session, channel), rounds in zip(clients, results, strict=True):
            await _final_round(session, channel, rounds, by_channel[channel][-1])
        total: dict[str, int] = defaultdict(int)
        for (_session, channel), rounds in zip(clients, results, strict=True):
            verdict = judge(rounds, by_channel[channel])
            for key, value in vars(verdict).items():
                total[key] += value
        print(dict(total), "published", published, "strays", sum(s.strays for s in sessions))
        assert total["resumed"] >= 1500  # enough resumes for a lagging replica to show
        assert total["delivered"] >= published  # every client saw its share, many times
        assert (
            total["holes"],
            total["lost"],
            total["duplicates"],
            total["reordered"],
            total["not_stored"],
        ) == (0, 0, 0, 0, 0)
        assert total["recovered_false"] == 0  # nothing expired: all history was recoverable
    finally:
        for session in sessions:
            await session.close()
        for gw in gateways:
            await gw.stop()


async def test_leader_bridge_reads_a_long_range_in_order(
    gateway: RunningGateway, nats_server: NatsProcess, prefix: str
) -> None:
    """The bridge a replica far behind needs: past a few single gets, the leader's
    messages come in batches, in order, and a floor that is no message of the channel
    (a fan-out never delivered it) is refused rather than bridged around."""
    seqs: list[int] = []
    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        for n in range(40):
            seqs.append(await backend.publish_event("lb", n))
            await backend.publish_event("other", n)  # interleaved: sequences not contiguous
    history = gateway.gateway.history
    stream = Subjects(prefix).events_stream
    subject = f"{prefix}.wf.lb.events"
    got = await history._from_leader(stream, subject, seqs[0], seqs[-1])
    assert got is not None
    assert [m.seq for m in got] == seqs[1:]
    assert [unpack_data(m.data) for m in got] == list(range(1, 40))
    assert await history._from_leader(stream, subject, seqs[0], seqs[20] + 1) is None
    assert await history._from_leader(stream, subject, seqs[0], seqs[3] + 1) is None
