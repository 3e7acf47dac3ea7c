"""The client's protocol state, without I/O: what to send and what a received frame means.

The aiohttp shell (:mod:`frys.client.connection`) owns the socket, the tasks and the clock;
everything it has to remember about the protocol lives here, so that the rules that keep a
stream exactly-once across reconnects can be tested frame by frame, with no socket and no
event loop:

- calls in flight, by reference: resolved by their ``ack``/``reply``/``pong``, failed by an
  ``error`` naming them, failed or kept when the connection drops;
- subscriptions and their positions: an events subscription resumes after the last
  sequence it delivered (``since``), duplicates are dropped and a lost history is marked
  once with ``gap``; a state subscription drops values older than one it delivered;
- the resend rule: after a reconnect, every subscription is sent again, then the calls
  that are safe to repeat (publishes the stream deduplicates by message id, control
  requests made idempotent by their command id); other calls fail with
  :class:`ConnectionLost` instead of running twice.
"""

from __future__ import annotations

import enum
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from frys.client.errors import ClientError, ConnectionLost, error_for
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind, parse_channel
from frys.shared.protocol.errors import ErrorCode
from frys.shared.protocol.publish import resend_safe


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery. ``seq`` is set on events and state channels. ``gap`` is true on the
    first events message after history could not be recovered (explicit discontinuity)."""

    channel: str
    data: Any
    seq: int | None = None
    from_: str | None = None
    gap: bool = False
    enc: str | None = None
    """``tensor`` when ``data`` is a tensor frame (read those with :meth:`Client.tensors`)."""


@dataclass(frozen=True, slots=True)
class PublishAck:
    seq: int | None
    duplicate: bool


class Retry(enum.Enum):
    """What happens to an operation in flight when the connection drops."""

    RESEND = "resend"
    FAIL = "fail"


def publish_retry(channel: str, enc: str | None = None) -> Retry:
    """The resend rule of a publish: re-sent after a reconnect only where the stream
    deduplicates it by message id (:func:`frys.shared.protocol.publish.resend_safe`), so a
    publish whose ack was lost is stored once, never twice. Tensor frames are the only
    encoding (``enc``); live ones travel outside the stream and are not re-sent."""
    kind = parse_channel(channel).kind
    return Retry.RESEND if resend_safe(kind, tensor=enc is not None) else Retry.FAIL


def new_message_id() -> str:
    return uuid.uuid4().hex


class Waiter(Protocol):
    """Where the outcome of a call goes (an :class:`asyncio.Future` in the shell)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(slots=True)
class PendingCall:
    ref: int
    frame: f.ClientFrame
    waiter: Waiter
    retry: Retry
    on_ack: Callable[[f.Frame], Any] | None = None
    """Turns the answer into the call's result (and may update state on the way)."""


class SubscriptionState:
    """One channel's subscription: its position and the delivery rules. The shell's
    subscription derives from it and says where deliveries go (:meth:`_deliver`) and what
    ending means (:meth:`_ended`)."""

    def __init__(self, channel: str, since: f.Position | None = None):
        self.channel = channel
        self.kind = parse_channel(channel).kind
        self.position: f.Position | None = since
        self.gaps = 0
        self.active = True
        self._gap_pending = False
        self._last_state_seq: int | None = None

    def since(self) -> f.Position | None:
        """Where a (re)subscribe resumes: after the last delivered event; only events
        channels replay history, the others start from now (state from its snapshot)."""
        return self.position if self.kind is ChannelKind.EVENTS else None

    def acked(self, frame: f.Frame) -> None:
        """The gateway's answer to a (re)subscribe: where the stream stands now."""
        if not isinstance(frame, f.Ack) or frame.epoch is None:
            return
        if self.kind is ChannelKind.EVENTS:
            if frame.recovered is False:
                # The history after our position is gone: resume from here, and mark the
                # next delivery so the application knows it missed something.
                self.gaps += 1
                self._gap_pending = self.position is not None
                self.position = f.Position(frame.seq or 0, frame.epoch)
            elif self.position is None or self.position.epoch != frame.epoch:
                self.position = f.Position(frame.seq or 0, frame.epoch)
        elif self.kind is ChannelKind.STATE:
            if self.position is not None and self.position.epoch != frame.epoch:
                self._last_state_seq = None  # a new stream: its sequences start over
            self.position = f.Position(frame.seq or 0, frame.epoch)

    def received(self, frame: f.Message) -> Message | None:
        """The delivery of ``frame``, or ``None`` when it was delivered already (a replay
        overlapping what arrived before the reconnect) or is older than the state shown."""
        seq = frame.seq
        if self.kind is ChannelKind.EVENTS and seq is not None:
            if self.position is not None:
                if seq <= self.position.seq:
                    return None
                self.position = f.Position(seq, self.position.epoch)
            gap, self._gap_pending = self._gap_pending, False
            return Message(self.channel, frame.data, seq, frame.from_, gap, frame.enc)
        if self.kind is ChannelKind.STATE and seq is not None:
            if self._last_state_seq is not None and seq <= self._last_state_seq:
                return None
            self._last_state_seq = seq
        return Message(self.channel, frame.data, seq, frame.from_, enc=frame.enc)

    def on_message(self, frame: f.Message) -> None:
        message = self.received(frame)
        if message is not None:
            self._deliver(message)

    def end(self, error: BaseException | None) -> None:
        """No more deliveries; ``error`` says why when it was not the application's wish."""
        if self.active:
            self.active = False
            self._ended(error)

    def _deliver(self, message: Message) -> None:
        raise NotImplementedError

    def _ended(self, error: BaseException | None) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class MigrateTo:
    """The gateway asks the client to reconnect to ``url`` after ``delay_s``."""

    url: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class KeyframeRequested:
    """A relay needs a keyframe of one of this client's tensor streams."""

    channel: str
    stream: int


@dataclass(frozen=True, slots=True)
class GatewayError:
    """An ``error`` frame that names no call of ours."""

    code: int
    reason: str


Event = MigrateTo | KeyframeRequested | GatewayError


class _Resubscription:
    """The waiter of a subscribe sent again after a reconnect: nobody awaits it, but a
    refusal (the grant was revoked, the channel is gone) ends the subscription."""

    __slots__ = ("_core", "_done", "_sub")

    def __init__(self, core: ClientCore, sub: SubscriptionState):
        self._core = core
        self._sub = sub
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._done = True

    def set_exception(self, exception: BaseException, /) -> None:
        self._done = True
        if isinstance(exception, ClientError):
            self._core.remove_subscription(self._sub)
            self._sub.end(exception)


class ClientCore:
    """Calls in flight and subscriptions of one client, across all its connections."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.pending: dict[int, PendingCall] = {}
        self.subs: dict[str, SubscriptionState] = {}
        self.session_id: str | None = None
        self.gateway_id: str | None = None
        self.limits: dict[str, int] = {}
        self.resume = ""
        """The gateway's resume token: presented on reconnect to continue the session."""

    # --- calls -------------------------------------------------------------------------
    def call(
        self,
        make: Callable[[int], f.ClientFrame],
        waiter: Waiter,
        retry: Retry,
        on_ack: Callable[[f.Frame], Any] | None = None,
    ) -> PendingCall:
        """Register a call under a fresh reference; ``make`` builds its frame."""
        ref = next(self._ids)
        pending = PendingCall(ref, make(ref), waiter, retry, on_ack)
        self.pending[ref] = pending
        return pending

    def forget(self, ref: int) -> None:
        self.pending.pop(ref, None)

    def resolve(self, ref: int | None, frame: f.Frame) -> None:
        if ref is None:
            return
        pending = self.pending.pop(ref, None)
        if pending is None:
            return  # answered already, or given up on
        result: Any = frame
        if pending.on_ack is not None:
            try:
                result = pending.on_ack(frame)
            except Exception as exc:
                if not pending.waiter.done():
                    pending.waiter.set_exception(exc)
                return
        if not pending.waiter.done():
            pending.waiter.set_result(result)

    def fail(self, ref: int, error: BaseException) -> bool:
        """Fail the call ``ref``; false when no such call is in flight."""
        pending = self.pending.pop(ref, None)
        if pending is None:
            return False
        if not pending.waiter.done():
            pending.waiter.set_exception(error)
        return True

    def connection_lost(self) -> None:
        """The socket dropped: calls that may not be repeated fail now; the others wait
        for the next connection (:meth:`connected`)."""
        for ref, pending in list(self.pending.items()):
            if pending.retry is Retry.FAIL:
                self.fail(
                    ref,
                    ConnectionLost(f"{pending.frame.OP} was in flight when the connection dropped"),
                )

    def close(self, error: BaseException, subscription_error: BaseException | None) -> None:
        """The client is done: every call fails with ``error``, every subscription ends."""
        pending = list(self.pending.values())
        self.pending.clear()
        for call in pending:
            if not call.waiter.done():
                call.waiter.set_exception(error)
        for sub in list(self.subs.values()):
            sub.end(subscription_error)

    # --- subscriptions -----------------------------------------------------------------
    def add_subscription(self, sub: SubscriptionState) -> None:
        if sub.channel in self.subs:
            raise error_for(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {sub.channel}")
        self.subs[sub.channel] = sub

    def remove_subscription(self, sub: SubscriptionState) -> bool:
        """Forget ``sub`` (not a newer subscription of the same channel)."""
        if self.subs.get(sub.channel) is not sub:
            return False
        del self.subs[sub.channel]
        return True

    # --- connection --------------------------------------------------------------------
    def connected(self, frame: f.Connected) -> list[f.ClientFrame]:
        """A connection is up: the frames to send first, in order. Every subscription is
        sent again from its position, then every call that may be repeated."""
        self.session_id = frame.sid
        self.gateway_id = frame.gw
        self.limits = dict(frame.limits)
        self.resume = frame.resume
        return list(self._reconnect_frames())

    def _reconnect_frames(self) -> Iterator[f.ClientFrame]:
        resend = [p.frame for p in self.pending.values() if p.retry is Retry.RESEND]
        for sub in list(self.subs.values()):
            if sub.active:
                yield self._resubscribe(sub)
        yield from resend

    def _resubscribe(self, sub: SubscriptionState) -> f.ClientFrame:
        def make(ref: int) -> f.ClientFrame:
            return f.Subscribe(id=ref, ch=sub.channel, since=sub.since())

        return self.call(make, _Resubscription(self, sub), Retry.FAIL, on_ack=sub.acked).frame

    # --- received frames ---------------------------------------------------------------
    def receive(self, frame: f.Frame) -> Event | None:
        """Apply one frame from the gateway; what the shell must act on is returned."""
        match frame:
            case f.Message():
                sub = self.subs.get(frame.ch)
                if sub is not None:
                    sub.on_message(frame)
            case f.Ack() | f.Reply():
                self.resolve(frame.id, frame)
            case f.Pong():
                self.resolve(frame.id, frame)
            case f.Error():
                if frame.ref is None or not self.fail(
                    frame.ref, error_for(frame.code, frame.reason)
                ):
                    return GatewayError(frame.code, frame.reason)
            case f.Migrate():
                return MigrateTo(frame.url, (frame.delay_ms or 0) / 1000)
            case f.Unsubscribed():
                sub = self.subs.pop(frame.ch, None)
                if sub is not None:
                    sub.end(error_for(frame.code, frame.reason))
            case f.KeyframeWanted():
                return KeyframeRequested(frame.ch, frame.stream)
            case _:
                pass
        return None
