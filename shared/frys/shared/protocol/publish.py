"""Where a publish goes: the one rule for subject and storage of a message on a channel.

Every path that puts a message on the bus asks this module: the gateway's WebSocket
``publish``, ``POST /api/publish``, the backend helper, and the client when it decides
whether a publish in flight across a reconnect may be re-sent. Written once so they cannot
drift apart.

- events: stored in JetStream (ordered, durable, deduplicated by message id), tensors too;
- state: stored (last value per subject), except live tensor frames, which travel on the
  channel's bulk subject and reach subscribers through each gateway's tensor relay;
- collab and agent inbox: core NATS on the channel subject, tensor frames on the bulk one;
- control and presence: no publish (control takes ``request``; presence is the gateway's).

A message id (``mid``) belongs to its sender and channel: :func:`message_id` turns it into
the ``Nats-Msg-Id`` the stream deduplicates on, so the same ``mid`` on another channel, or
from another sender, is a different message, while a retry by the same sender on the same
channel is recognised as a repeat.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import msgpack

from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.subjects import Subjects


class Storage(enum.Enum):
    STORED = "stored"
    """Published into a JetStream stream; acked with its sequence, deduplicated by id."""
    CORE = "core"
    """Core NATS, at most once, acked when handed to the broker."""
    BULK = "bulk"
    """Core NATS on the channel's bulk subject (live tensor frames)."""


class NotPublishable(ValueError):
    """The channel's kind takes no publish."""


@dataclass(frozen=True, slots=True)
class Route:
    subject: str
    storage: Storage

    @property
    def stored(self) -> bool:
        return self.storage is Storage.STORED


NO_PUBLISH = frozenset({ChannelKind.CONTROL, ChannelKind.PRESENCE})


def storage_of(kind: ChannelKind, tensor: bool = False) -> Storage:
    """How a message on a channel of ``kind`` is carried; ``tensor`` for tensor frames."""
    if kind in NO_PUBLISH:
        raise NotPublishable(f"{kind.value} channels take no publish")
    if kind is ChannelKind.EVENTS:
        return Storage.STORED
    if tensor:
        return Storage.BULK
    if kind is ChannelKind.STATE:
        return Storage.STORED
    return Storage.CORE


def route(subjects: Subjects, channel: Channel, tensor: bool = False) -> Route:
    """The subject and storage of a publish on ``channel``."""
    storage = storage_of(channel.kind, tensor)
    if storage is Storage.BULK:
        return Route(subjects.bulk(channel), storage)
    return Route(subjects.channel(channel), storage)


def resend_safe(kind: ChannelKind, tensor: bool = False) -> bool:
    """Whether a client may re-send a publish whose ack it never saw: only stored kinds,
    where the message id makes the second copy a duplicate the stream drops."""
    return kind not in NO_PUBLISH and storage_of(kind, tensor) is Storage.STORED


def message_id(channel: Channel | str, sender: str, mid: str) -> str:
    """The ``Nats-Msg-Id`` of a publish: the first 32 hexadecimal digits of the SHA-256 of
    the MessagePack array ``[channel name, sender, mid]`` (shortest forms, as every
    MessagePack encoder writes strings). One stream holds every workflow, and its duplicate
    window would otherwise let one sender's ``mid`` suppress another's, on any channel."""
    name = channel if isinstance(channel, str) else channel.name
    # surrogatepass: a token's ``sub`` decoded from JSON may hold a lone surrogate.
    packed = msgpack.packb([name, sender, mid], use_bin_type=True, unicode_errors="surrogatepass")
    return hashlib.sha256(packed).hexdigest()[:32]
