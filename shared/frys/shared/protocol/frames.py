"""The frames of wire protocol v1, as typed values.

Each frame class lists its wire fields in canonical order (``FIELDS``); encoders emit them in
that order, omitting absent optional fields, so every frame has exactly one byte form
(``tests/protocol/golden_v1.json`` pins it). Decoders accept any key order and ignore
unknown keys, so later minor versions can add optional fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

MAX_ID = 2**53 - 1
"""Request ids are unsigned and fit a JavaScript number exactly."""


@dataclass(frozen=True, slots=True)
class Raw:
    """Application data already encoded as msgpack, spliced into frames without re-encoding.

    Gateways receive message payloads from NATS as msgpack bytes and write them to every
    subscriber; wrapping them in ``Raw`` lets the msgpack codec copy them verbatim.
    """

    packed: bytes


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a durable (events) channel: stream sequence within an epoch."""

    seq: int
    epoch: str


@dataclass(frozen=True, slots=True)
class TraceContext:
    """W3C trace context carried in the envelope's ``tc`` field."""

    traceparent: str
    tracestate: str | None = None


# --- client → gateway --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    OP: ClassVar[str] = "connect"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "token", "name", "codecs", "resume", "caps", "tc")
    id: int
    token: str | None = None
    name: str | None = None
    codecs: tuple[str, ...] = ()
    resume: str | None = None
    caps: tuple[str, ...] = ()
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    OP: ClassVar[str] = "subscribe"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch", "since", "tc")
    id: int
    ch: str
    since: Position | None = None
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    OP: ClassVar[str] = "unsubscribe"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch")
    id: int
    ch: str


ENC_TENSOR = "tensor"
"""``enc`` of a message whose ``data`` is a tensor frame (see docs/tensor-frames.md)."""


@dataclass(frozen=True, slots=True)
class Publish:
    OP: ClassVar[str] = "publish"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch", "mid", "enc", "tc", "data")
    id: int
    ch: str
    data: Any
    mid: str | None = None
    enc: str | None = None
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Request:
    OP: ClassVar[str] = "request"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch", "cid", "timeout_ms", "tc", "data")
    id: int
    ch: str
    data: Any
    cid: str | None = None
    timeout_ms: int | None = None
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    OP: ClassVar[str] = "ping"
    FIELDS: ClassVar[tuple[str, ...]] = ("id",)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    OP: ClassVar[str] = "refresh"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "token")
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    OP: ClassVar[str] = "presence"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch")
    id: int
    ch: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Ask for a keyframe of a tensor stream (after a gap the client could not bridge)."""

    OP: ClassVar[str] = "resync"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch", "stream")
    id: int
    ch: str
    stream: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Ask for the quality figures of a channel's tensor streams."""

    OP: ClassVar[str] = "stats"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch")
    id: int
    ch: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """Ask for the stored outcome of a control command by its id (after a reconnect)."""

    OP: ClassVar[str] = "outcome"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "ch", "cid")
    id: int
    ch: str
    cid: str


# --- gateway → client --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    OP: ClassVar[str] = "connected"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "sid", "gw", "limits", "resume", "exp")
    id: int
    sid: str
    gw: str
    limits: Mapping[str, int] = field(default_factory=dict)
    resume: str = ""
    exp: int | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """Positive answer to ``subscribe``, ``unsubscribe``, ``publish``, ``refresh``,
    ``presence`` and ``outcome``; the optional fields depend on the request."""

    OP: ClassVar[str] = "ack"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "id",
        "seq",
        "epoch",
        "recovered",
        "dup",
        "exp",
        "members",
        "data",
    )
    id: int
    seq: int | None = None
    epoch: str | None = None
    recovered: bool | None = None
    dup: bool | None = None
    exp: int | None = None
    members: tuple[Mapping[str, Any], ...] | None = None
    data: Any = None


@dataclass(frozen=True, slots=True)
class Message:
    OP: ClassVar[str] = "message"
    FIELDS: ClassVar[tuple[str, ...]] = ("ch", "seq", "from", "enc", "tc", "data")
    ch: str
    data: Any
    seq: int | None = None
    from_: str | None = None
    enc: str | None = None
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    OP: ClassVar[str] = "reply"
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "cid", "tc", "data")
    id: int
    cid: str
    data: Any
    tc: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    OP: ClassVar[str] = "pong"
    FIELDS: ClassVar[tuple[str, ...]] = ("id",)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Error:
    OP: ClassVar[str] = "error"
    FIELDS: ClassVar[tuple[str, ...]] = ("code", "reason", "ref", "ch")
    code: int
    reason: str
    ref: int | None = None
    ch: str | None = None


@dataclass(frozen=True, slots=True)
class Migrate:
    OP: ClassVar[str] = "migrate"
    FIELDS: ClassVar[tuple[str, ...]] = ("url", "reason", "delay_ms")
    url: str
    reason: str
    delay_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The gateway ended a subscription on its own (for example, the stream was recreated
    and the position cannot be honoured); the client should resubscribe."""

    OP: ClassVar[str] = "unsubscribed"
    FIELDS: ClassVar[tuple[str, ...]] = ("ch", "code", "reason")
    ch: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class KeyframeWanted:
    """A relay needs a keyframe of a stream this client publishes (a subscriber joined or
    fell behind and no relay holds the state): the client sends one as its next frame."""

    OP: ClassVar[str] = "keyframe"
    FIELDS: ClassVar[tuple[str, ...]] = ("ch", "stream")
    ch: str
    stream: int


ClientFrame = (
    Connect
    | Subscribe
    | Unsubscribe
    | Publish
    | Request
    | Ping
    | Refresh
    | PresenceQuery
    | Outcome
    | Resync
    | Stats
)
ServerFrame = (
    Connected | Ack | Message | Reply | Pong | Error | Migrate | Unsubscribed | KeyframeWanted
)
Frame = ClientFrame | ServerFrame

CLIENT_OPS: dict[str, type[ClientFrame]] = {
    c.OP: c
    for c in (
        Connect,
        Subscribe,
        Unsubscribe,
        Publish,
        Request,
        Ping,
        Refresh,
        PresenceQuery,
        Outcome,
        Resync,
        Stats,
    )
}
SERVER_OPS: dict[str, type[ServerFrame]] = {
    c.OP: c
    for c in (Connected, Ack, Message, Reply, Pong, Error, Migrate, Unsubscribed, KeyframeWanted)
}
ALL_OPS: dict[str, type[Frame]] = {**CLIENT_OPS, **SERVER_OPS}
