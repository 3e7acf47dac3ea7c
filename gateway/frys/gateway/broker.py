"""History and positions of the stored channels: the catch-up behind ``subscribe`` with
``since``, and the stored head a new fan-out starts from.

The hand-over from history to live delivery is where a resumed subscription could lose or
repeat messages, so its rule is stated here once. A subscriber joins its channel's fan-out
*before* history is read and from then on the fan-out buffers every live message for it;
the fan-out's last delivered sequence at that moment is the **floor**: every message above
it reaches the subscriber live, and none at or below it does. History therefore covers
exactly ``(since, floor]``: less would leave a hole, more would repeat what the fan-out is
about to deliver (a replica can be *ahead* of this gateway's live feed as well as behind
the leader).

- A subscriber that joined while its fan-out was starting was given floor 0 (nothing was
  delivered yet); its true floor is the head the fan-out then started from, which is read
  here (:meth:`History.head`) and remembered per channel and epoch for that purpose.
- Heads are read from the stream leader, so a fan-out never starts below an acknowledged
  message (a replica's stale head would hold those back until the next message).
- Batched direct gets are fast but, on a replicated stream, may be served by a replica
  that lags the leader; when their answer ends below the floor, the remainder is read from
  the stream leader (``STREAM.MSG.GET``), which holds every acknowledged message. Only if
  even the leader cannot bridge to the floor (the messages expired meanwhile) is the answer
  ``recovered: false``: never a silent hole.

The fan-out's own gap recovery (:meth:`History.after`) could not skip even on a lagging
replica's answer: the message that revealed the gap names its predecessor
(``Nats-Last-Sequence``), so a short answer only repeats the recovery. But a recovery after
a reconnect has no such message to wait for, and a short answer would hold the rest back
until the channel's next message; so it, too, is completed from the leader.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from frys.gateway.bus import Bus, StoredMsg
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.subjects import Subjects

log = logging.getLogger("frys.gateway.broker")

MAX_BRIDGE = 10_000
"""Messages read from the leader to bridge a lagging replica's answer; a larger hole is
answered ``recovered: false`` rather than held in memory."""

SINGLE_GETS = 8
"""Messages read one by one from the leader before switching to a consumer."""

MAX_HEADS = 10_000
"""Fan-out heads remembered (the newest starts); a head is needed only between a fan-out's
start and the catch-up of the subscribers that joined while it started."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    recovered: bool
    epoch: str
    replay: list[StoredMsg]
    after: int
    """The last sequence covered: the fan-out hands over from here."""


class History:
    def __init__(self, bus: Bus, subjects: Subjects):
        self._bus = bus
        self._subjects = subjects
        self._heads: OrderedDict[Channel, tuple[str, int]] = OrderedDict()
        """Per channel, the epoch and sequence the newest fan-out started from."""

    def stream_of(self, kind: ChannelKind) -> str:
        s = self._subjects
        return s.events_stream if kind is ChannelKind.EVENTS else s.state_stream

    def epoch(self, kind: ChannelKind) -> str:
        return self._bus.epochs.get(kind, "")

    async def catch_up(self, channel: Channel, since: f.Position, floor: int) -> CatchUp:
        """Everything stored on ``channel`` in ``(since, floor]``, where ``floor`` is the
        fan-out's last delivered sequence when the subscriber joined it."""
        bus = self._bus
        stream = self.stream_of(channel.kind)
        subject = self._subjects.channel(channel)
        first, _last, epoch = await bus.stream_bounds(stream)
        bus.epochs[channel.kind] = epoch
        started = self._heads.get(channel)
        if started is not None and started[0] == epoch:
            floor = max(floor, started[1])
        if since.epoch != epoch or since.seq + 1 < first:
            return CatchUp(False, epoch, [], floor)
        if since.seq >= floor:
            # The client is at or past the fan-out: everything it lacks comes live.
            return CatchUp(True, epoch, [], since.seq)
        replay = await bus.stored_after(stream, subject, since.seq, through=floor)
        reached = replay[-1].seq if replay else since.seq
        if reached < floor:
            bridged = await self._from_leader(stream, subject, reached, floor)
            if bridged is None:
                log.warning("history of %s could not reach %d from %d", channel, floor, reached)
                return CatchUp(False, epoch, [], floor)
            replay += bridged
        return CatchUp(True, epoch, replay, floor)

    async def _from_leader(
        self, stream: str, subject: str, after: int, floor: int
    ) -> list[StoredMsg] | None:
        """Messages of ``subject`` in ``(after, floor]`` read from the stream leader; None
        when the leader lacks one of them (expired) or the hole is too large.

        A replica is usually a message or two behind: a few single gets cover that. A
        replica far behind (a loaded or recovering server) leaves more; those are read in
        batches through a short-lived consumer, which the leader serves too."""
        out: list[StoredMsg] = []
        js = self._bus.js
        seq = after
        for _ in range(SINGLE_GETS):
            if seq >= floor:
                return out
            try:
                raw = await js.get_msg(stream, seq=seq + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return None
            got = int(raw.seq or 0)
            if got <= seq or got > floor:
                # The floor itself is a message the fan-out delivered: it must be found.
                return None
            out.append(StoredMsg(seq=got, data=raw.data or b"", headers=raw.headers or {}))
            seq = got
        if seq >= floor:
            return out
        rest = await self._range_from_leader(stream, subject, seq, floor)
        return None if rest is None else out + rest

    async def _range_from_leader(
        self, stream: str, subject: str, after: int, floor: int
    ) -> list[StoredMsg] | None:
        """``(after, floor]`` of ``subject`` through an ephemeral consumer, in batches."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
        )
        sub = await self._bus.js.pull_subscribe(subject, stream=stream, config=config)
        out: list[StoredMsg] = []
        seq = after
        try:
            while seq < floor:
                if len(out) >= MAX_BRIDGE:
                    return None
                try:
                    batch = await sub.fetch(256, timeout=5)
                except nats.errors.TimeoutError:
                    return None  # nothing more: the floor is not there
                for msg in batch:
                    got = int(msg.metadata.sequence.stream)
                    if got > floor:
                        break
                    out.append(StoredMsg(seq=got, data=msg.data, headers=msg.headers or {}))
                    seq = got
                else:
                    continue
                break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out if seq == floor else None

    async def head(self, kind: ChannelKind, channel: Channel) -> StoredMsg | None:
        """The newest stored message of ``channel``, read from the stream leader: a new
        fan-out starts after it, and it is the floor of whoever joined meanwhile."""
        stored = await self._bus.last_stored(
            self.stream_of(kind), self._subjects.channel(channel), leader=True
        )
        heads = self._heads
        heads[channel] = (self.epoch(kind), stored.seq if stored is not None else 0)
        heads.move_to_end(channel)
        while len(heads) > MAX_HEADS:
            heads.popitem(last=False)
        return stored

    async def after(self, kind: ChannelKind, channel: Channel, seq: int) -> list[StoredMsg]:
        """Stored messages of ``channel`` after ``seq`` (gap recovery), through the newest
        the stream leader holds: a lagging replica's short answer is completed from the
        leader, so what a reconnect missed is delivered now rather than with the channel's
        next message."""
        stream = self.stream_of(kind)
        subject = self._subjects.channel(channel)
        got = await self._bus.stored_after(stream, subject, seq)
        reached = got[-1].seq if got else seq
        try:
            newest = await self._bus.last_stored(stream, subject, leader=True)
            if newest is not None and newest.seq > reached:
                bridged = await self._from_leader(stream, subject, reached, newest.seq)
                if bridged is not None:
                    got += bridged
        except (TimeoutError, nats.errors.Error) as exc:
            # What the replica gave goes out now; the rest with the next recovery.
            log.debug("gap recovery of %s from the leader failed: %s", channel, exc)
        return got

    async def current_epoch(self, kind: ChannelKind) -> str:
        _first, _last, epoch = await self._bus.stream_bounds(self.stream_of(kind))
        return epoch

    async def watch(self, on_epoch: Callable[[ChannelKind, str], None]) -> None:
        """Follow the streams' lifecycle: a deleted stream is recreated at once (a new
        epoch), and every new epoch is reported, so subscribers are told to subscribe
        again instead of waiting on a stream that is gone."""
        kinds = {
            self._subjects.events_stream: ChannelKind.EVENTS,
            self._subjects.state_stream: ChannelKind.STATE,
        }

        async def changed(msg: Msg) -> None:
            stream = msg.subject.rsplit(".", 1)[-1]
            kind = kinds.get(stream)
            if kind is None:
                return
            try:
                if msg.subject.startswith(self._subjects.stream_deleted_advisory("")):
                    log.warning("stream %s was deleted; creating it again", stream)
                    await self._bus.ensure_resources()
                on_epoch(kind, await self.current_epoch(kind))
            except Exception as exc:
                log.warning("stream %s changed and could not be checked: %s", stream, exc)

        for stream in kinds:
            await self._bus.subscribe(self._subjects.stream_deleted_advisory(stream), changed)
            await self._bus.subscribe(self._subjects.stream_created_advisory(stream), changed)
