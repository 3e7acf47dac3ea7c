"""A session's protocol logic without I/O: frames and timer events in, actions out.

In the manner of h11 and wsproto, :class:`SessionCore` holds everything a session decides
(its lifecycle state, who it is, which channels it subscribes to and in which phase, its
publish budget) and nothing it does: it opens no socket, awaits nothing and knows no NATS.
The aiohttp glue (:mod:`frys.gateway.session`) feeds it decoded frames and events and
carries out the :class:`Action` values it returns, in order. Unit tests drive it directly.

The lifecycle is one table, :data:`EVENTS`: for each state, the events it accepts and the
state each leads to. ``docs/protocol.md`` §5.1 is drawn from it.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from frys.gateway.auth import AuthError, Identity
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel
from frys.shared.protocol.control import valid_cid
from frys.shared.protocol.errors import ChannelError, CloseCode, DecodeError, ErrorCode
from frys.shared.protocol.frames import ENC_TENSOR
from frys.shared.protocol.grants import Right
from frys.shared.protocol.publish import NO_PUBLISH
from frys.shared.tensor import DeltaHeader, KeyframeHeader, TensorError, read_header
from frys.shared.tensor.dtypes import BY_CODE
from frys.shared.tensor.frame import check_crc
from frys.shared.tensor.limits import DEFAULT_LIMITS


class State(enum.Enum):
    AWAITING_CONNECT = "awaiting_connect"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    CONNECT_OK = "connect_ok"
    """A valid ``connect`` with an accepted token."""
    CONNECT_REFUSED = "connect_refused"
    """The first frame was not a valid ``connect``, or its token was refused."""
    FRAME = "frame"
    """Any frame after ``connect``."""
    DEADLINE = "deadline"
    """No ``connect`` within the connect deadline."""
    EXPIRED = "expired"
    """The token's ``exp`` passed without a refresh."""
    CLOSE = "close"
    """The gateway closes the session (drain, migrate, slow reader, policy)."""
    LOST = "lost"
    """The connection is gone."""


EVENTS: dict[State, dict[Event, State]] = {
    State.AWAITING_CONNECT: {
        Event.CONNECT_OK: State.CONNECTED,
        Event.CONNECT_REFUSED: State.CLOSING,
        Event.DEADLINE: State.CLOSING,
        Event.CLOSE: State.CLOSING,
        Event.LOST: State.CLOSED,
    },
    State.CONNECTED: {
        Event.FRAME: State.CONNECTED,
        Event.EXPIRED: State.CLOSING,
        Event.CLOSE: State.CLOSING,
        Event.LOST: State.CLOSED,
    },
    State.CLOSING: {
        Event.LOST: State.CLOSED,
    },
    State.CLOSED: {},
}
"""state → event → next state. An event missing from a state's row is ignored there
(frames after the close frame, a deadline after ``connect``, a second close)."""

TRANSITIONS: dict[State, frozenset[State]] = {
    state: frozenset(nxt for nxt in row.values() if nxt is not state)
    for state, row in EVENTS.items()
}
"""The state changes the table allows (for the docs and the tests)."""


class SubPhase(enum.Enum):
    PENDING = "pending"
    """Joining the channel (and replaying history); not yet acked."""
    ACTIVE = "active"


class Sub:
    """One subscription of a session. A channel unsubscribed and subscribed again while
    the first join is still under way gets a new :class:`Sub`, so the late end of the
    first join can tell it is stale."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = SubPhase.PENDING


MAX_NAME_CHARS = 128
MAX_CAPS = 16
MAX_CAP_CHARS = 64
"""``connect.name`` and ``connect.caps`` are shown to every member of a workflow."""
MAX_MID_CHARS = 128
MAX_TRACESTATE_CHARS = 512
_MID = re.compile(rf"[\x21-\x7e]{{1,{MAX_MID_CHARS}}}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(rf"[\x20-\x7e]{{0,{MAX_TRACESTATE_CHARS}}}")


def header_problem(mid: str | None, tc: f.TraceContext | None) -> str | None:
    """Why client strings that travel as NATS headers cannot (docs/protocol.md §9), or
    None. Checked before anything is sent: an oversized or malformed header fails at the
    broker, where it would cost every publisher of the gateway, not only this one."""
    if mid is not None and not _MID.fullmatch(mid):
        return f"mid must be 1-{MAX_MID_CHARS} printable ASCII characters without spaces"
    if tc is not None:
        if not _TRACEPARENT.fullmatch(tc.traceparent):
            return "tc.traceparent must be a W3C traceparent (version-traceid-parentid-flags)"
        if tc.tracestate is not None and not _TRACESTATE.fullmatch(tc.tracestate):
            return f"tc.tracestate must be at most {MAX_TRACESTATE_CHARS} printable characters"
    return None


# --- actions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    frame: f.Frame


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Connected:
    """Authenticated: register the session, schedule its expiry at ``expires_at``."""

    identity: Identity
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Refreshed:
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class StartSubscription:
    channel: Channel
    ref: int
    since: f.Position | None
    sub: Sub


@dataclass(frozen=True, slots=True)
class StopSubscription:
    channel: Channel


@dataclass(frozen=True, slots=True)
class Publish:
    channel: Channel
    frame: f.Publish
    tensor_stream: int | None


@dataclass(frozen=True, slots=True)
class Request:
    channel: Channel
    frame: f.Request


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    channel: Channel
    frame: f.Outcome


@dataclass(frozen=True, slots=True)
class QueryPresence:
    channel: Channel
    ref: int


@dataclass(frozen=True, slots=True)
class Resync:
    channel: Channel
    stream: int | None
    ref: int


@dataclass(frozen=True, slots=True)
class Stats:
    channel: Channel
    ref: int


Action = (
    Send
    | Close
    | Connected
    | Refreshed
    | StartSubscription
    | StopSubscription
    | Publish
    | Request
    | FetchOutcome
    | QueryPresence
    | Resync
    | Stats
)


# --- collaborators -------------------------------------------------------------------------
class ResumeCheck(Protocol):
    def check(self, token: str, sub: str, now: float | None = None) -> str | None: ...

    def issue(self, sid: str, sub: str, now: float | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class CoreLimits:
    gateway_id: str
    max_frame_bytes: int
    queue_bytes: int
    max_subscriptions: int
    publish_rate_per_s: float
    publish_burst: int
    ping_interval_s: float
    request_timeout_ms: int
    max_request_timeout_ms: int
    max_invalid_frames: int
    jwt_leeway_s: float
    max_tensor_streams: int = 16
    """Distinct (channel, tensor stream) a session may publish on."""

    def announced(self) -> dict[str, int]:
        """``connected.limits`` (docs/protocol.md §9): one shared dict per limits value,
        since every ``connected`` of a gateway announces the same (the codec only reads it)."""
        return _announced(self)


@functools.cache
def _announced(self: CoreLimits) -> dict[str, int]:
    return {
        "max_frame_bytes": self.max_frame_bytes,
        "queue_bytes": self.queue_bytes,
        "max_subscriptions": self.max_subscriptions,
        "publish_rate_per_s": int(self.publish_rate_per_s),
        "ping_interval_ms": int(self.ping_interval_s * 1000),
        "request_timeout_ms": self.request_timeout_ms,
        "max_request_timeout_ms": self.max_request_timeout_ms,
    }


class RateLimiter:
    """Token bucket: ``rate`` per second, bursts up to ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float):
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SessionCore:
    """The decisions of one session (see the module docstring)."""

    __slots__ = (
        "_clock",
        "_header_identity",
        "_limiter",
        "_limits",
        "_resume",
        "_verify",
        "caps",
        "close_code",
        "codecs",
        "identity",
        "invalid_frames",
        "name",
        "sid",
        "state",
        "subs",
        "tensor_streams",
    )

    def __init__(
        self,
        limits: CoreLimits,
        verify: Callable[[str], Identity],
        resume: ResumeCheck,
        header_identity: Identity | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._limits = limits
        self._verify = verify
        self._resume = resume
        self._header_identity = header_identity
        self._clock = clock
        self._limiter: RateLimiter | None = None
        # 128 random bits as 32 hex digits; no UUID object is made per connection.
        self.sid = os.urandom(16).hex()
        self.state = State.AWAITING_CONNECT
        self.identity: Identity | None = None
        self.name = ""
        self.caps: tuple[str, ...] = ()
        self.codecs: tuple[str, ...] = ()
        self.subs: dict[Channel, Sub] = {}
        self.tensor_streams: set[tuple[Channel, int]] | None = None
        """Made on the first tensor publish: most sessions never publish one."""
        self.invalid_frames = 0
        self.close_code: int | None = None

    # --- the table ---------------------------------------------------------------------
    def _fire(self, event: Event) -> bool:
        """Move along :data:`EVENTS`; False when ``event`` is ignored in this state."""
        nxt = EVENTS[self.state].get(event)
        if nxt is None:
            return False
        self.state = nxt
        return True

    # --- inputs --------------------------------------------------------------------------
    def receive(self, frame: f.Frame | DecodeError) -> list[Action]:
        """One frame from the client (or the codec's error for one that did not decode)."""
        if self.state is State.AWAITING_CONNECT:
            if isinstance(frame, DecodeError):
                return self._refuse_connect(CloseCode.BAD_CONNECT, frame.reason)
            if not isinstance(frame, f.Connect):
                return self._refuse_connect(CloseCode.BAD_CONNECT, "first frame must be connect")
            return self._on_connect(frame)
        if not self._fire(Event.FRAME):
            return []
        if isinstance(frame, DecodeError):
            return self._bad_frame(frame.code, frame.reason, frame.ref)
        return self._dispatch(frame)

    def connect_deadline(self) -> list[Action]:
        return self._close_on(Event.DEADLINE, CloseCode.CONNECT_TIMEOUT, "no connect frame in time")

    def expired(self) -> list[Action]:
        return self._close_on(Event.EXPIRED, CloseCode.TOKEN_EXPIRED, "token expired")

    def close(self, code: CloseCode | int, reason: str) -> list[Action]:
        """The gateway ends the session (drain, migrate, slow reader)."""
        return self._close_on(Event.CLOSE, code, reason)

    def lost(self) -> list[Action]:
        """The connection is gone: every subscription is released."""
        if not self._fire(Event.LOST):
            return []
        actions: list[Action] = [StopSubscription(ch) for ch in self.subs]
        self.subs.clear()
        return actions

    def current(self, channel: Channel, sub: Sub) -> bool:
        """Whether ``sub`` is still the session's subscription to ``channel``."""
        return self.state is State.CONNECTED and self.subs.get(channel) is sub

    def subscribed(self, channel: Channel, sub: Sub) -> bool:
        """The glue finished joining ``channel``; False if it was dropped meanwhile."""
        if not self.current(channel, sub):
            return False
        sub.phase = SubPhase.ACTIVE
        return True

    def subscribe_failed(self, channel: Channel, sub: Sub) -> None:
        if self.subs.get(channel) is sub:
            del self.subs[channel]

    def drop(self, channel: Channel) -> bool:
        """The gateway ended a subscription (its stream went away)."""
        return self.subs.pop(channel, None) is not None

    # --- connect -------------------------------------------------------------------------
    def _close_on(self, event: Event, code: CloseCode | int, reason: str) -> list[Action]:
        if not self._fire(event):
            return []
        self.close_code = int(code)
        return [Close(int(code), reason)]

    def _refuse_connect(self, code: CloseCode, reason: str) -> list[Action]:
        return self._close_on(Event.CONNECT_REFUSED, code, reason)

    def _on_connect(self, frame: f.Connect) -> list[Action]:
        try:
            if frame.token:
                identity = self._verify(frame.token)
            elif self._header_identity is not None:
                identity = self._header_identity
            else:
                raise AuthError("token required")
        except AuthError as exc:
            return self._refuse_connect(CloseCode.UNAUTHORIZED, exc.reason)
        if frame.name is not None and len(frame.name) > MAX_NAME_CHARS:
            return self._refuse_connect(
                CloseCode.BAD_CONNECT, f"name longer than {MAX_NAME_CHARS} characters"
            )
        if len(frame.caps) > MAX_CAPS or any(len(cap) > MAX_CAP_CHARS for cap in frame.caps):
            return self._refuse_connect(
                CloseCode.BAD_CONNECT,
                f"caps: at most {MAX_CAPS} of at most {MAX_CAP_CHARS} characters",
            )
        if frame.resume:
            resumed = self._resume.check(frame.resume, identity.sub)
            if resumed is not None:
                self.sid = resumed
        self._fire(Event.CONNECT_OK)
        self.identity = identity
        self.name = frame.name or ""
        self.caps = frame.caps
        self.codecs = frame.codecs  # payload codecs it decodes (docs/protocol.md §15)
        limits = self._limits
        return [
            Send(
                f.Connected(
                    id=frame.id,
                    sid=self.sid,
                    gw=limits.gateway_id,
                    limits=limits.announced(),
                    resume=self._resume.issue(self.sid, identity.sub),
                    exp=identity.exp,
                )
            ),
            Connected(identity, self._expires_at(identity)),
        ]

    def _expires_at(self, identity: Identity) -> float | None:
        return None if identity.exp is None else identity.exp + self._limits.jwt_leeway_s

    # --- connected -----------------------------------------------------------------------
    def _dispatch(self, frame: f.Frame) -> list[Action]:
        match frame:
            case f.Publish():
                return self._on_publish(frame)
            case f.Subscribe():
                return self._on_subscribe(frame)
            case f.Unsubscribe():
                return self._on_unsubscribe(frame)
            case f.Request():
                return self._on_request(frame)
            case f.Ping():
                return [Send(f.Pong(id=frame.id))]
            case f.Refresh():
                return self._on_refresh(frame)
            case f.PresenceQuery():
                return self._on_presence(frame)
            case f.Outcome():
                return self._on_outcome(frame)
            case f.Resync():
                stream, ref = frame.stream, frame.id
                if not self._rate_ok():
                    return [_error(ErrorCode.LIMIT_EXCEEDED, "resync rate exceeded", ref)]
                return self._on_subscribed_op(frame.ch, ref, lambda ch: Resync(ch, stream, ref))
            case f.Stats():
                ref = frame.id
                return self._on_subscribed_op(frame.ch, ref, lambda ch: Stats(ch, ref))
            case f.Connect():
                return [_error(ErrorCode.BAD_REQUEST, "already connected", frame.id)]
            case _:
                return [_error(ErrorCode.UNKNOWN_OP, f"{frame.OP} is not a client op", None)]

    def _bad_frame(self, code: ErrorCode, reason: str, ref: int | None) -> list[Action]:
        self.invalid_frames += 1
        actions: list[Action] = [_error(code, reason, ref)]
        if self.invalid_frames > self._limits.max_invalid_frames:
            actions += self.close(CloseCode.POLICY_VIOLATION, "too many invalid frames")
        return actions

    def _channel(self, name: str, right: Right, ref: int) -> Channel | Send:
        """The channel named ``name`` if the session holds ``right`` on it, else the error."""
        try:
            channel = parse_channel(name)
        except ChannelError as exc:
            return _error(ErrorCode.INVALID_CHANNEL, str(exc), ref)
        assert self.identity is not None
        if not self.identity.grants.allows(channel, right):
            return _error(ErrorCode.FORBIDDEN, f"no {right.value} right on {channel}", ref)
        return channel

    def _rate_ok(self) -> bool:
        now = self._clock()
        limiter = self._limiter
        if limiter is None:
            lim = self._limits
            limiter = self._limiter = RateLimiter(lim.publish_rate_per_s, lim.publish_burst, now)
        return limiter.take(now)

    def _on_subscribe(self, frame: f.Subscribe) -> list[Action]:
        channel = self._channel(frame.ch, Right.SUBSCRIBE, frame.id)
        if isinstance(channel, Send):
            return [channel]
        if channel.kind is ChannelKind.CONTROL:
            return [_error(ErrorCode.NOT_ALLOWED, "control channels take requests only", frame.id)]
        if channel in self.subs:
            return [
                _error(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel}", frame.id)
            ]
        if len(self.subs) >= self._limits.max_subscriptions:
            return [_error(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions", frame.id)]
        sub = self.subs[channel] = Sub()
        since = frame.since if channel.kind is ChannelKind.EVENTS else None
        return [StartSubscription(channel, frame.id, since, sub)]

    def _on_unsubscribe(self, frame: f.Unsubscribe) -> list[Action]:
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            return [_error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)]
        if channel not in self.subs:
            return [_error(ErrorCode.NOT_FOUND, f"not subscribed to {channel}", frame.id)]
        del self.subs[channel]
        return [StopSubscription(channel), Send(f.Ack(id=frame.id))]

    def _on_refresh(self, frame: f.Refresh) -> list[Action]:
        assert self.identity is not None
        try:
            identity = self._verify(frame.token)
        except AuthError as exc:
            return [_error(ErrorCode.UNAUTHORIZED, exc.reason, frame.id)]
        if identity.sub != self.identity.sub:
            return [
                _error(ErrorCode.UNAUTHORIZED, "refresh token is for another subject", frame.id)
            ]
        self.identity = identity
        actions: list[Action] = [Refreshed(self._expires_at(identity))]
        for channel in list(self.subs):
            if not identity.grants.allows(channel, Right.SUBSCRIBE):
                del self.subs[channel]
                actions.append(StopSubscription(channel))
                actions.append(
                    Send(
                        f.Unsubscribed(
                            ch=channel.name, code=ErrorCode.FORBIDDEN, reason="right revoked"
                        )
                    )
                )
        actions.append(Send(f.Ack(id=frame.id, exp=identity.exp)))
        return actions

    def _on_publish(self, frame: f.Publish) -> list[Action]:
        channel = self._channel(frame.ch, Right.PUBLISH, frame.id)
        if isinstance(channel, Send):
            return [channel]
        if channel.kind in NO_PUBLISH:
            return [
                _error(
                    ErrorCode.NOT_ALLOWED,
                    f"{channel.kind.value} channels take no publish",
                    frame.id,
                )
            ]
        problem = header_problem(frame.mid, frame.tc)
        if problem is not None:
            return [_error(ErrorCode.BAD_REQUEST, problem, frame.id)]
        if not self._rate_ok():
            return [_error(ErrorCode.LIMIT_EXCEEDED, "publish rate exceeded", frame.id)]
        stream: int | None = None
        if frame.enc is not None:
            checked = _tensor_stream(channel, frame)
            if isinstance(checked, Send):
                return [checked]
            stream = checked
            key = (channel, stream)
            streams = self.tensor_streams
            if streams is None:
                streams = self.tensor_streams = set()
            if key not in streams:
                if len(streams) >= self._limits.max_tensor_streams:
                    reason = f"at most {self._limits.max_tensor_streams} tensor streams"
                    return [_error(ErrorCode.LIMIT_EXCEEDED, reason, frame.id)]
                streams.add(key)
        return [Publish(channel, frame, stream)]

    def _on_request(self, frame: f.Request) -> list[Action]:
        channel = self._channel(frame.ch, Right.CONTROL, frame.id)
        if isinstance(channel, Send):
            return [channel]
        if channel.kind is not ChannelKind.CONTROL:
            return [_error(ErrorCode.NOT_ALLOWED, "requests go to wf:{id}:control", frame.id)]
        if frame.cid is not None and not valid_cid(frame.cid):
            return [_error(ErrorCode.BAD_REQUEST, "cid must match [A-Za-z0-9_=-]{1,128}", frame.id)]
        problem = header_problem(None, frame.tc)
        if problem is not None:
            return [_error(ErrorCode.BAD_REQUEST, problem, frame.id)]
        if not self._rate_ok():
            return [_error(ErrorCode.LIMIT_EXCEEDED, "request rate exceeded", frame.id)]
        return [Request(channel, frame)]

    def _on_outcome(self, frame: f.Outcome) -> list[Action]:
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            return [_error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)]
        if channel.kind is not ChannelKind.CONTROL:
            return [_error(ErrorCode.NOT_ALLOWED, "outcomes belong to wf:{id}:control", frame.id)]
        assert self.identity is not None
        if not self.identity.grants.allows(channel, Right.CONTROL):
            return [_error(ErrorCode.FORBIDDEN, f"no control right on {channel}", frame.id)]
        return [FetchOutcome(channel, frame)]

    def _on_presence(self, frame: f.PresenceQuery) -> list[Action]:
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            return [_error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)]
        if channel.kind is not ChannelKind.PRESENCE:
            return [
                _error(ErrorCode.NOT_ALLOWED, "presence is queried on wf:{id}:presence", frame.id)
            ]
        assert self.identity is not None
        if not self.identity.grants.allows(channel, Right.SUBSCRIBE):
            return [_error(ErrorCode.FORBIDDEN, f"no subscribe right on {channel}", frame.id)]
        return [QueryPresence(channel, frame.id)]

    def _on_subscribed_op(
        self, name: str, ref: int, make: Callable[[Channel], Action]
    ) -> list[Action]:
        try:
            channel = parse_channel(name)
        except ChannelError as exc:
            return [_error(ErrorCode.INVALID_CHANNEL, str(exc), ref)]
        sub = self.subs.get(channel)
        if sub is None or sub.phase is not SubPhase.ACTIVE:
            return [_error(ErrorCode.NOT_FOUND, f"not subscribed to {channel}", ref)]
        return [make(channel)]


def _error(code: ErrorCode, reason: str, ref: int | None, ch: str | None = None) -> Send:
    return Send(f.Error(code=int(code), reason=reason, ref=ref, ch=ch))


def _tensor_stream(channel: Channel, frame: f.Publish) -> int | Send:
    """The stream id of a tensor publish, or the error answering it."""
    if frame.enc != ENC_TENSOR:
        return _error(ErrorCode.BAD_REQUEST, f"unknown enc {frame.enc!r}", frame.id)
    if not isinstance(frame.data, bytes):
        return _error(ErrorCode.BAD_REQUEST, "a tensor frame is binary data", frame.id)
    try:
        header = read_header(frame.data)
        if isinstance(header, KeyframeHeader | DeltaHeader):
            # The whole frame is checked here, once, rather than by every receiver: a
            # corrupt or impossible frame is the publisher's 400 (docs/protocol.md §14.2).
            check_crc(frame.data, header)
        if isinstance(header, KeyframeHeader):
            element = BY_CODE.get(header.dtype_code)
            if element is None:
                raise TensorError(f"unknown dtype code {header.dtype_code}")
            problem = DEFAULT_LIMITS.shape_violation(header.shape, element.itemsize)
            if problem is not None:
                raise TensorError(problem)
    except TensorError as exc:
        return _error(ErrorCode.BAD_REQUEST, f"not a tensor frame: {exc}", frame.id)
    if channel.kind is ChannelKind.EVENTS and not isinstance(header, KeyframeHeader):
        return _error(
            ErrorCode.BAD_REQUEST, "events carry whole tensors (keyframes) only", frame.id
        )
    return header.stream_id
