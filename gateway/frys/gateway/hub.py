"""The hub: local registry of channels and their subscribers, and the fan-out hot path.

Each channel with at least one local subscriber has one :class:`Fanout` holding one NATS
subscription, whatever the number of subscribers (reference counted: the subscription goes
when the last subscriber leaves). A message from NATS is appended to its fanout's tick
buffer; once per event-loop tick the hub frames each buffer once per subprotocol, joins the
frames, and hands the same bytes to every subscriber's writer, which writes them with one
``transport.write`` at the end of the tick. Under light load a tick holds one message, so
nothing waits; under heavy load many frames share a write, which is where the throughput
comes from.

Stored kinds (events, state) arrive through their stream's republish with the stored
sequence; the fanout keeps the last sequence it delivered, drops anything older, and, for
events, refetches from the stream when a message's ``Nats-Last-Sequence`` shows a gap (a
message lost between NATS and this gateway), so subscribers never see a hole. History and
heads are read through :class:`~frys.gateway.broker.History`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from opentelemetry.trace import Span

from frys.gateway.broker import History
from frys.gateway.bus import Bus, StoredMsg
from frys.gateway.metrics import Metrics
from frys.gateway.optimise import MessageOptimiser
from frys.gateway.telemetry import GatewayTelemetry
from frys.gateway.tensors import RelayBudget, RelayLimits, TensorRelay, unwrap_bin
from frys.gateway.wire import WireClass
from frys.gateway.wsframe import binary_frame, text_frame
from frys.runtime.memory import reclaim
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.codec import pack_data
from frys.shared.protocol.delivery import MessageTemplate
from frys.shared.protocol.errors import DecodeError
from frys.shared.protocol.frames import ENC_TENSOR, TraceContext
from frys.shared.protocol.subjects import Subjects
from frys.shared.telemetry import sampled

log = logging.getLogger("frys.gateway.hub")


BULK_KINDS = frozenset({ChannelKind.STATE, ChannelKind.COLLAB, ChannelKind.AGENT})
"""Kinds whose live tensor frames travel on the bulk subject (events' are stored)."""


class Subscriber(Protocol):
    """What the hub needs of a session: its writer."""

    binary: bool
    wire: WireClass
    """Subscribers of one wire class get the very same bytes (:mod:`frys.gateway.wire`)."""

    def deliver(self, blob: bytes, source: Any) -> None: ...

    def deliver_tensor(self, frame: bytes, source: Any) -> None: ...

    def tensor_ready(self) -> bool: ...

    def tensor_conflated(self, source: Any) -> None: ...

    def flush_out(self) -> None: ...


NoticeFilter = Callable[[Channel, bytes], bool]
"""Presence: whether a notice goes to subscribers (False drops it) — owned by presence."""
FailureHook = Callable[[str], None]


class FanoutState(enum.Enum):
    STARTING = "starting"
    """Subscribing to NATS and reading the stream's head; live messages are held."""
    LIVE = "live"
    RECOVERING = "recovering"
    """Refetching a gap from the stream; live messages are held."""
    CLOSED = "closed"


class SubMode(enum.Enum):
    CATCHING_UP = "catching_up"
    """Replaying history; live entries are buffered for this subscriber."""
    LIVE = "live"


@dataclass(slots=True)
class Entry:
    """One message received this tick, not yet framed."""

    seq: int | None
    packed: bytes
    from_: str | None
    tc: TraceContext | None
    ts: int | None = None
    """Publish time (ns) on the sampled messages that carry one."""
    enc: str | None = None
    """``tensor`` when the data is a tensor frame."""
    span: Span | None = None
    """This gateway's delivery span, on traced messages."""


@dataclass(slots=True)
class SubState:
    mode: SubMode
    floor: int
    """The fanout's last delivered sequence when this subscriber joined: everything above
    reaches it live (see :mod:`frys.gateway.broker`)."""
    on_failed: FailureHook | None = None
    held: list[Entry] = field(default_factory=list)
    skip_through: int = 0
    """A resumed subscriber whose history reached beyond what this fanout has delivered:
    live entries up to here were replayed already and are not sent again."""


class Fanout:
    """One channel's NATS subscription and its local subscribers."""

    def __init__(self, hub: Hub, channel: Channel):
        self.hub = hub
        self.channel = channel
        self.kind = channel.kind
        self.stored = channel.kind in (ChannelKind.EVENTS, ChannelKind.STATE)
        self.template = MessageTemplate(channel.name)
        self.subscribers: dict[Subscriber, SubState] = {}
        self.state = FanoutState.STARTING
        self.nats_sub: Any = None
        self.bulk_sub: Any = None
        self.tick: list[Entry] = []
        self.tick_has_tensors = False
        self.held: list[tuple[int, int, Entry]] = []
        self.last_seq = 0
        self.epoch = hub.bus.epochs.get(channel.kind, "")
        """The stream incarnation ``last_seq`` belongs to."""
        self.last_entry: Entry | None = None
        """Newest state value (state channels): the snapshot for joiners and conflation."""
        self.ready = asyncio.Event()
        self.failure: str | None = None
        self._relay: TensorRelay | None = None
        self._epoch_task: asyncio.Task[None] | None = None
        self._recover_task: asyncio.Task[None] | None = None
        self._counted = False
        """Whether this fanout's NATS subscription is in the gauge."""

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        hub = self.hub
        bus = hub.bus
        try:
            self.nats_sub = await bus.subscribe_direct(
                hub.subjects.live(self.channel), self._on_data
            )
            if self.kind in BULK_KINDS:
                self.bulk_sub = await bus.subscribe_direct(
                    hub.subjects.bulk(self.channel), self._on_data, bulk=True
                )
            # Shielded: a cancelled flush leaves nats-py's PONG bookkeeping broken (its
            # read loop then fails on the late PONG).
            await asyncio.shield(bus.nc.flush(timeout=5))
            if self.bulk_sub is not None:
                await asyncio.shield(bus.bulk_nc.flush(timeout=5))
            hub.metrics.nats_subscriptions += 1
            self._counted = True
            if self.kind is ChannelKind.PRESENCE and hub.presence_start is not None:
                await hub.presence_start(self.channel)
            if self.kind is not ChannelKind.EVENTS and self.kind is not ChannelKind.PRESENCE:
                # A first subscriber here: any tensor stream on this channel is unknown to
                # this gateway, so its publishers are asked for keyframes right away.
                self.request_keyframe(None)
            if self.stored:
                head = await hub.history.head(self.kind, self.channel)
                if head is not None:
                    self.last_seq = head.seq
                    if self.kind is ChannelKind.STATE:
                        self.last_entry = _entry_of(head)
                    # Subscribers that joined while the head was being read are served live
                    # from it onwards: their history must reach it.
                    for st in self.subscribers.values():
                        st.floor = max(st.floor, self.last_seq)
            self._go_live()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.warning("channel %s failed to start: %s", self.channel, self.failure)
            await self.close()
        finally:
            self.ready.set()

    async def close(self) -> None:
        if self.hub.optimiser is not None:
            self.hub.optimiser.forget_channel(self.channel)
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._counted:
            self._counted = False
            self.hub.metrics.nats_subscriptions -= 1
        self.state = FanoutState.CLOSED
        for task in (self._recover_task, self._epoch_task):
            if task is not None:
                task.cancel()
        if self.bulk_sub is not None:
            bulk, self.bulk_sub = self.bulk_sub, None
            with contextlib.suppress(Exception):
                await self.hub.bus.unsubscribe_direct(bulk)
        if self.nats_sub is not None:
            sub, self.nats_sub = self.nats_sub, None
            try:
                await self.hub.bus.unsubscribe_direct(sub)
            except Exception as exc:
                log.debug("unsubscribe of %s failed: %s", self.channel, exc)

    def request_keyframe(self, stream_id: int | None) -> None:
        self.hub.request_keyframe(self.channel, stream_id)

    # --- inbound from NATS --------------------------------------------------------------
    def _on_data(self, data: bytes, headers: dict[str, str] | None) -> None:
        """One message from NATS (called from the read loop, synchronously)."""
        if self.state is FanoutState.CLOSED:
            return
        if headers is None:
            self.inject(data)
            return
        tp = headers.get(hdr.TRACEPARENT)
        entry = Entry(
            None,
            data,
            headers.get(hdr.FROM),
            TraceContext(tp, headers.get(hdr.TRACESTATE)) if tp else None,
        )
        ts = headers.get(hdr.TS)
        if ts is not None and ts.isdigit():
            entry.ts = int(ts)
        enc = headers.get(hdr.ENC)
        if enc is not None:
            entry.enc = enc
            if hdr.SEQ not in headers:  # tensor frames stream past the stores
                self._accept(entry)
                return
        tel = self.hub.telemetry
        if tp and tel is not None and tel.tracing and sampled(tp):
            entry.span = tel.deliver_span(
                headers,
                {
                    "frys.channel": self.channel.name,
                    "frys.stream": self.kind.value,
                    "frys.gateway": self.hub.gateway_id,
                    "messaging.system": "nats",
                    "messaging.destination.name": self.hub.subjects.live(self.channel),
                    "messaging.operation.type": "process",  # pushed to us, then fanned out
                    "messaging.operation.name": "deliver",
                },
            )
        if not self.stored:
            self._accept(entry)
            return
        seq = int(headers.get(hdr.SEQ, "0"))
        last = int(headers.get(hdr.LAST_SEQ, "0"))
        entry.seq = seq
        if self.state is not FanoutState.LIVE:
            self.held.append((seq, last, entry))
            return
        self._accept_stored(seq, last, entry)

    def inject(self, packed: bytes) -> None:
        """Deliver a message without headers (presence notices, also those made here)."""
        notices = self.hub.notice_filter
        if (
            self.kind is ChannelKind.PRESENCE
            and notices is not None
            and not notices(self.channel, packed)
        ):
            return
        self._accept(Entry(None, packed, None, None))

    def _accept_stored(self, seq: int, last: int, entry: Entry) -> None:
        if seq <= self.last_seq:
            if last == 0 and seq < self.last_seq and self._epoch_task is None:
                # The subject's history starts over below what was delivered: the stream
                # may have been recreated. Check its epoch before dropping anything else.
                self._epoch_task = asyncio.get_running_loop().create_task(self._check_epoch())
            return  # already delivered (overlap with a refetch)
        if self.kind is ChannelKind.EVENTS and last > self.last_seq:
            # A message between last_seq and seq never reached us: refetch the gap.
            self.state = FanoutState.RECOVERING
            self.held.append((seq, last, entry))
            self.hub.metrics.gaps_recovered += 1
            self._recover_task = asyncio.get_running_loop().create_task(self._recover())
            return
        self.last_seq = seq
        if self.kind is ChannelKind.STATE:
            self.last_entry = entry
        self._accept(entry)

    def _accept(self, entry: Entry) -> None:
        self.hub.metrics.messages_in += 1
        if not self.tick:
            self.hub.mark_dirty(self)
        if entry.enc is not None:
            self.tick_has_tensors = True
        self.tick.append(entry)

    async def _check_epoch(self) -> None:
        try:
            epoch = await self.hub.history.current_epoch(self.kind)
        except Exception as exc:
            log.warning("epoch check of %s failed: %s", self.channel, exc)
            return
        finally:
            self._epoch_task = None
        self.hub.epoch_seen(self.kind, epoch)

    def reset(self, epoch: str, reason: str) -> None:
        """The channel's stream went away or was recreated: every position is void. Each
        subscriber is told (``unsubscribed``) and subscribes again."""
        self.epoch = epoch
        self.last_seq = 0
        self.last_entry = None
        for st in list(self.subscribers.values()):
            if st.on_failed is not None:
                st.on_failed(reason)

    async def _recover(self) -> None:
        try:
            missing = await self.hub.history.after(self.kind, self.channel, self.last_seq)
        except Exception as exc:
            log.warning("gap recovery on %s failed (%s); retrying", self.channel, exc)
            await asyncio.sleep(0.5)
            if self.state is FanoutState.RECOVERING:
                self._recover_task = asyncio.get_running_loop().create_task(self._recover())
            return
        for stored in missing:
            if stored.seq > self.last_seq:
                self.last_seq = stored.seq
                self._accept(_entry_of(stored))
        self._go_live()

    def _go_live(self) -> None:
        if self.state is FanoutState.CLOSED:
            return
        self.state = FanoutState.LIVE
        held, self.held = self.held, []
        for seq, last, entry in held:
            if self.state is not FanoutState.LIVE:
                self.held.append((seq, last, entry))
            else:
                self._accept_stored(seq, last, entry)

    async def resync(self) -> None:
        """Check the stream for anything missed (after a NATS reconnect)."""
        if self.kind is ChannelKind.EVENTS and self.state is FanoutState.LIVE:
            self.state = FanoutState.RECOVERING
            await self._recover()

    # --- subscribers ---------------------------------------------------------------------
    def add(self, sub: Subscriber, catching_up: bool, on_failed: FailureHook | None) -> None:
        mode = SubMode.CATCHING_UP if catching_up else SubMode.LIVE
        self.subscribers[sub] = SubState(mode, self.last_seq, on_failed)

    def floor(self, sub: Subscriber) -> int:
        st = self.subscribers.get(sub)
        return self.last_seq if st is None else st.floor

    def has_subscriber(self, sub: object) -> bool:
        return sub in self.subscribers

    def go_live(self, sub: Subscriber, after_seq: int) -> None:
        """End a subscriber's catch-up: deliver what was buffered beyond ``after_seq``."""
        st = self.subscribers.get(sub)
        if st is None or st.mode is SubMode.LIVE:
            return
        st.mode = SubMode.LIVE
        held = [e for e in st.held if e.seq is not None and e.seq > after_seq]
        st.held = []
        if after_seq > self.last_seq:
            st.skip_through = after_seq
        if held:
            sub.deliver(self.frames(held, sub.binary), self)

    def remove(self, sub: Subscriber) -> bool:
        """Remove a subscriber; True when the channel has none left."""
        self.subscribers.pop(sub, None)
        if self._relay is not None:
            self._relay.left(sub)
        return not self.subscribers

    # --- framing -------------------------------------------------------------------------
    def frames(self, entries: list[Entry], binary: bool) -> bytes:
        t = self.template
        if binary:
            if len(entries) == 1:
                # The common tick of a quiet channel: one message, no join.
                e = entries[0]
                return binary_frame(t.msgpack(e.packed, e.seq, e.from_, e.tc, e.enc))
            return b"".join(
                binary_frame(t.msgpack(e.packed, e.seq, e.from_, e.tc, e.enc)) for e in entries
            )
        out = []
        for e in entries:
            # A payload that is not msgpack cannot be shown to JSON subscribers: skipped.
            with contextlib.suppress(DecodeError):
                out.append(text_frame(t.json(e.packed, e.seq, e.from_, e.tc, e.enc)))
        return b"".join(out)

    def frames_for(
        self, entries: list[Entry], wire: WireClass, compressed: dict[int, bytes | None]
    ) -> bytes:
        """``entries`` framed for one wire class. Readers of dictionary-compressed frames
        get each message compressed when that pays on their link; ``compressed`` holds each
        message's compressed frame for this tick, so a message is compressed once,
        whatever the number of classes and readers."""
        optimiser = self.hub.optimiser
        if not wire.dictionary or optimiser is None:
            return self.frames(entries, wire.binary)
        t = self.template
        kind = self.kind
        out = []
        for e in entries:
            plain = t.msgpack(e.packed, e.seq, e.from_, e.tc, e.enc)
            packed: bytes | None = None
            if e.enc is None:
                key = id(e)
                if key in compressed:
                    packed = compressed[key]
                else:
                    packed = compressed[key] = optimiser.compress(kind, e.packed, plain)
                if packed is not None and not optimiser.pays(
                    wire.link, len(plain), len(packed), len(self.subscribers)
                ):
                    packed = None
                optimiser.account(wire.link, len(plain), None if packed is None else len(packed))
            out.append(binary_frame(plain if packed is None else packed))
        return b"".join(out)

    def stored_frames(self, stored: list[StoredMsg], binary: bool) -> bytes:
        """History read from the stream, framed for one subscriber."""
        return self.frames([_entry_of(m) for m in stored], binary)

    def snapshot_frame(self, binary: bool) -> bytes | None:
        """The current state value, framed, for a joiner or a conflated subscriber."""
        if self.last_entry is None:
            return None
        return self.frames([self.last_entry], binary)

    def flush(self) -> None:
        entries, self.tick = self.tick, []
        if not entries or self.state is FanoutState.CLOSED:
            return
        has_tensors, self.tick_has_tensors = self.tick_has_tensors, False
        if has_tensors and self.kind is not ChannelKind.EVENTS:
            tensors = [e for e in entries if e.enc == ENC_TENSOR]
            entries = [e for e in entries if e.enc != ENC_TENSOR]
            self._flush_tensors(tensors)
            if not entries:
                return
        blobs: dict[WireClass, bytes] = {}
        compressed: dict[int, bytes | None] = {}
        live = 0
        for sub, st in list(self.subscribers.items()):
            if st.mode is SubMode.CATCHING_UP:
                st.held.extend(entries)
                continue
            if st.skip_through:
                last = entries[-1].seq
                if last is not None and last > st.skip_through:
                    fresh = [e for e in entries if e.seq is None or e.seq > st.skip_through]
                    st.skip_through = 0
                    sub.deliver(self.frames_for(fresh, sub.wire, compressed), self)
                    live += 1
                continue
            blob = blobs.get(sub.wire)
            if blob is None:
                blob = blobs[sub.wire] = self.frames_for(entries, sub.wire, compressed)
            sub.deliver(blob, self)
            live += 1
        self.hub.metrics.deliveries += live * len(entries)
        tel = self.hub.telemetry
        if tel is not None:
            for e in entries:
                if e.ts is not None:
                    tel.record_latency(e.ts)
                if e.span is not None:
                    e.span.set_attribute("frys.subscribers", live)
                    e.span.end()
                    e.span = None

    # --- tensor streams ------------------------------------------------------------------
    @property
    def relay(self) -> TensorRelay:
        if self._relay is None:
            self._relay = TensorRelay(self, self.hub.relay_limits, self.hub.relay_budget)
        return self._relay

    @property
    def has_relay(self) -> bool:
        return self._relay is not None

    def _flush_tensors(self, entries: list[Entry]) -> None:
        live = [s for s, st in self.subscribers.items() if st.mode is SubMode.LIVE]
        relay = self.relay
        for entry in entries:
            targets = cast(set[Subscriber], relay.route(entry.packed, live, entry.ts))
            if not targets:
                continue
            framed: dict[WireClass | bool, bytes] = {}
            for sub in targets:
                wire = sub.wire
                key: WireClass | bool = wire if wire.tensor_ext else sub.binary
                frame = framed.get(key)
                if frame is None:
                    frame = framed[key] = self._tensor_frame(entry, wire)
                sub.deliver_tensor(frame, self)
            self.hub.metrics.deliveries += len(targets)

    def _tensor_frame(self, entry: Entry, wire: WireClass) -> bytes:
        """A tensor frame framed for one wire class: readers that decode tensor codecs 5-7
        get it re-encoded with the arm chosen for the stream on their link class, once per
        class (:mod:`frys.gateway.optimiser.transcode`); the others get it as it came."""
        optimiser = self.hub.optimiser
        if wire.tensor_ext and wire.link is not None and optimiser is not None:
            data = unwrap_bin(entry.packed)
            if data is not None:
                other = optimiser.transcode(self.channel, data, wire.link)
                if other is not None:
                    entry = Entry(entry.seq, pack_data(other), entry.from_, entry.tc, enc=entry.enc)
        return self.frames([entry], wire.binary)

    def send_tensor(self, sub: Subscriber, frames: list[bytes]) -> None:
        """Send tensor frames made here (a relay keyframe) to one subscriber."""
        for frame in frames:
            entry = Entry(None, pack_data(frame), None, None, enc=ENC_TENSOR)
            sub.deliver_tensor(self.frames([entry], sub.binary), self)

    def tensor_joined(self, sub: Subscriber) -> None:
        if self._relay is not None:
            self._relay.joined(sub)

    def tensor_stale_for(self, sub: object) -> bool:
        return self._relay is not None and self._relay.stale_for(sub)  # type: ignore[arg-type]

    def tensor_resync(self, sub: Any, stream_id: int | None = None) -> bool:
        return self.relay.resync(sub, stream_id)


def _entry_of(stored: StoredMsg) -> Entry:
    tp = stored.headers.get(hdr.TRACEPARENT)
    return Entry(
        stored.seq,
        stored.data,
        stored.headers.get(hdr.FROM),
        TraceContext(tp, stored.headers.get(hdr.TRACESTATE)) if tp else None,
        enc=stored.headers.get(hdr.ENC),
    )


RECLAIM_AFTER_BYTES = 16 * 1024 * 1024
"""Relay memory released since the last sweep that makes it worth returning to the system."""


class Hub:
    """All fanouts of one gateway, and the once-per-tick flush."""

    def __init__(
        self,
        bus: Bus,
        history: History,
        metrics: Metrics,
        telemetry: GatewayTelemetry | None = None,
        relay_limits: RelayLimits | None = None,
    ):
        self.bus = bus
        self.relay_limits = relay_limits or RelayLimits()
        self.relay_budget = RelayBudget(self.relay_limits.memory_bytes)
        """Replica memory across every tensor stream this gateway relays."""
        self.history = history
        self.metrics = metrics
        self.telemetry = telemetry
        self.subjects: Subjects = bus.subjects
        self.gateway_id = bus.config.gateway_id
        self.fanouts: dict[Channel, Fanout] = {}
        self.notice_filter: NoticeFilter | None = None
        """Set by presence, which owns the member tables."""
        self.optimiser: MessageOptimiser | None = None
        """Set by the gateway: compresses messages for readers that decode ``zstd-dict``."""
        self.presence_start: Callable[[Channel], Awaitable[None]] | None = None
        """Set by presence: a presence channel gets its first local subscriber."""
        self._dirty: list[Fanout] = []
        self._flushing = False
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._writers: list[Subscriber] = []
        bus.on_reconnect.append(self._after_reconnect)

    async def join(
        self,
        channel: Channel,
        sub: Subscriber,
        catching_up: bool = False,
        on_failed: FailureHook | None = None,
    ) -> Fanout:
        """Attach ``sub`` to ``channel``, creating the fanout (and its NATS subscription)."""
        fan = self.fanouts.get(channel)
        if fan is None:
            fan = Fanout(self, channel)
            self.fanouts[channel] = fan
            fan.add(sub, catching_up, on_failed)
            await fan.start()
        else:
            fan.add(sub, catching_up, on_failed)
            await fan.ready.wait()
        if fan.failure is not None:
            self._forget(fan)
            raise RuntimeError(fan.failure)
        return fan

    async def leave(self, channel: Channel, sub: Subscriber) -> None:
        fan = self.fanouts.get(channel)
        if fan is not None and fan.remove(sub):
            self._forget(fan)
            await fan.close()

    def _forget(self, fan: Fanout) -> None:
        if self.fanouts.get(fan.channel) is fan:
            del self.fanouts[fan.channel]

    def epoch_seen(self, kind: ChannelKind, epoch: str) -> None:
        """The stream of ``kind`` has epoch ``epoch``: fanouts of an older incarnation
        start over, and their subscribers are told to subscribe again."""
        self.bus.epochs[kind] = epoch
        for fan in list(self.fanouts.values()):
            if fan.kind is kind and fan.epoch != epoch:
                log.warning(
                    "stream of %s was recreated (epoch %s → %s)", fan.channel, fan.epoch, epoch
                )
                fan.reset(epoch, "stream recreated; subscribe again")

    def request_keyframe(self, channel: Channel, stream_id: int | None) -> None:
        """Ask the publishers of ``channel``'s tensor stream (of all of them when
        ``stream_id`` is ``None``) for a keyframe, over NATS."""
        subject = self.subjects.keyframe_requests(channel)
        payload = pack_data({"stream": stream_id})
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self.bus.publish(subject, payload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def mark_dirty(self, fan: Fanout) -> None:
        self._dirty.append(fan)
        self._schedule()

    def add_writer(self, writer: Subscriber) -> None:
        """``writer`` has deliveries waiting: write them at the end of this tick."""
        self._writers.append(writer)
        self._schedule()

    def _schedule(self) -> None:
        # Writers added while a flush runs are written by that same flush.
        if not self._flush_scheduled and not self._flushing:
            self._flush_scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._flushing = True
        try:
            dirty, self._dirty = self._dirty, []
            self.metrics.flushes += 1
            for fan in dirty:
                try:
                    fan.flush()
                except Exception:
                    log.exception("flush of %s failed", fan.channel)
            writers, self._writers = self._writers, []
            for writer in writers:
                try:
                    writer.flush_out()
                except Exception:
                    log.exception("write to a session failed")
        finally:
            self._flushing = False
        if self._dirty or self._writers:
            self._schedule()

    def tensor_totals(self) -> dict[str, int]:
        """Sums over every tensor stream this gateway relays (per stream: the ``stats`` op)."""
        totals: dict[str, int] = {}
        for fan in list(self.fanouts.values()):
            if not fan.has_relay:
                continue
            for key, value in fan.relay.totals().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def expire(self, now: float) -> None:
        """Forget idle tensor streams and stale chunk sets (called periodically)."""
        for fan in list(self.fanouts.values()):
            if fan.has_relay:
                fan.relay.expire(now)

    async def sweep(self, interval_s: float = 5.0, release_burst: int = 256) -> None:
        """Run :meth:`expire` every ``interval_s`` until cancelled; after at least
        ``release_burst`` channels went away, give their memory back to the system."""
        before = len(self.fanouts)
        while True:
            await asyncio.sleep(interval_s)
            self.expire(time.monotonic())
            now = len(self.fanouts)
            budget = self.relay_budget
            if before - now >= release_burst or budget.released >= RECLAIM_AFTER_BYTES:
                budget.released = 0
                reclaim()
            before = now

    async def _after_reconnect(self) -> None:
        for fan in list(self.fanouts.values()):
            await fan.resync()

    async def close(self) -> None:
        for fan in list(self.fanouts.values()):
            await fan.close()
        self.fanouts.clear()
