"""Every NATS subject Frys uses, spelled in this one module.

Client channels map one to one onto subjects under a configurable prefix (default
``frys``); internal subjects (heartbeats, interaction samples, router orders) live under
``{prefix}._sys`` and republished deliveries under ``{prefix}._live``: both sit where a
channel's ``wf``/``agent`` token goes, so no channel can ever map onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel
from frys.shared.protocol.errors import ChannelError

_PREFIX_RE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")
"""Lower case, no ``_``: stream and bucket names derived from a prefix (``.`` → ``_``,
upper-cased) then differ for different prefixes."""

DEFAULT_PREFIX = "frys"

STORED_KINDS = frozenset({ChannelKind.EVENTS, ChannelKind.STATE})
"""Kinds kept in JetStream: events (history) and state (last value)."""


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject names under one prefix (one Frys installation per prefix)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(f"invalid subject prefix {self.prefix!r}")

    # --- client channels -------------------------------------------------------------
    def channel(self, channel: Channel) -> str:
        """The subject a channel's messages travel on."""
        if channel.kind is ChannelKind.AGENT:
            return f"{self.prefix}.agent.{channel.id}"
        return f"{self.prefix}.wf.{channel.id}.{channel.kind.value}"

    def to_channel(self, subject: str) -> Channel:
        """Inverse of :meth:`channel`; raises :class:`ChannelError` for foreign subjects."""
        head = self.prefix + "."
        if not subject.startswith(head):
            raise ChannelError(f"subject {subject!r} is outside prefix {self.prefix!r}")
        parts = subject[len(head) :].split(".")
        if len(parts) == 3 and parts[0] == "wf":
            return parse_channel(f"wf:{parts[1]}:{parts[2]}")
        if len(parts) == 2 and parts[0] == "agent":
            return parse_channel(f"agent:{parts[1]}")
        raise ChannelError(f"subject {subject!r} is not a channel subject")

    def live(self, channel: Channel) -> str:
        """The subject gateways subscribe to for deliveries on ``channel``.

        Stored kinds (events, state) are published to :meth:`channel` and reach subscribers
        through the stream's republish, which adds the stored sequence to every message;
        the other kinds are delivered on the channel subject itself.
        """
        if channel.kind in STORED_KINDS:
            return f"{self.prefix}._live.wf.{channel.id}.{channel.kind.value}"
        return self.channel(channel)

    def bulk(self, channel: Channel) -> str:
        """Where a channel's live tensor frames travel: apart from its other messages, on a
        NATS connection of their own at each gateway, so megabytes of tensor never queue
        ahead of a small message (events' tensors are stored and travel with the events)."""
        if channel.kind is ChannelKind.AGENT:
            return f"{self.prefix}._bulk.agent.{channel.id}"
        return f"{self.prefix}._bulk.wf.{channel.id}.{channel.kind.value}"

    def live_template(self, kind: ChannelKind) -> str:
        """Republish destination of a stored kind (a NATS subject mapping)."""
        return f"{self.prefix}._live.wf.{{{{wildcard(1)}}}}.{kind.value}"

    def workflow_wildcard(self, kind: ChannelKind) -> str:
        """All workflows' subjects of one kind (used for stream definitions)."""
        return f"{self.prefix}.wf.*.{kind.value}"

    # --- internal subjects -----------------------------------------------------------
    @property
    def sys(self) -> str:
        return f"{self.prefix}._sys"

    @property
    def heartbeat(self) -> str:
        """Gateways announce themselves here (router and peers listen)."""
        return f"{self.sys}.gw.heartbeat"

    @property
    def interactions(self) -> str:
        """Gateways publish aggregated interaction samples here."""
        return f"{self.sys}.gw.interactions"

    def gateway_orders(self, gateway_id: str) -> str:
        """The router sends orders (migrations) to one gateway here."""
        return f"{self.sys}.gw.{gateway_id}.orders"

    def keyframe_requests(self, channel: Channel) -> str:
        """Relays ask the publishers of a channel's tensor streams for a keyframe here."""
        tail = self.channel(channel)[len(self.prefix) + 1 :]
        return f"{self.sys}.kf.{tail}"

    @property
    def keyframe_requests_all(self) -> str:
        return f"{self.sys}.kf.>"

    def channel_of_keyframe_request(self, subject: str) -> Channel:
        head = f"{self.sys}.kf."
        if not subject.startswith(head):
            raise ChannelError(f"{subject!r} is not a keyframe request subject")
        return self.to_channel(f"{self.prefix}.{subject[len(head) :]}")

    @staticmethod
    def direct_get(stream: str) -> str:
        """JetStream's direct get API of ``stream`` (batched reads without a consumer).

        A NATS server API, not under the prefix: the prefix is in the stream's name.
        """
        return f"$JS.API.DIRECT.GET.{stream}"

    @property
    def events_stream(self) -> str:
        """JetStream stream holding every workflow's events."""
        return f"{self.prefix.replace('.', '_').upper()}_EVENTS"

    @property
    def state_stream(self) -> str:
        """JetStream stream holding the last state value per workflow."""
        return f"{self.prefix.replace('.', '_').upper()}_STATE"

    @property
    def replicas_probe_stream(self) -> str:
        """A stream created and deleted at once to learn whether JetStream can place three
        replicas. One name per prefix, not per gateway, so that NATS permissions can name
        it (gateways probing together create the same stream; each deletes it)."""
        return f"{self.prefix.replace('.', '_').upper()}_REPLICAS_PROBE"

    @property
    def control_bucket(self) -> str:
        """KV bucket holding control command outcomes by command id."""
        return f"{self.prefix.replace('.', '_')}_control"

    @property
    def placement_bucket(self) -> str:
        """KV bucket holding the router's placement table."""
        return f"{self.prefix.replace('.', '_')}_placement"

    @property
    def dict_bucket(self) -> str:
        """KV bucket holding the dictionaries of compressed frames, key = id (8 hex digits);
        each entry lives ``dict_retention_s`` after it was last written (in-use ones are
        written again in time)."""
        return f"{self.prefix.replace('.', '_')}_dicts"

    @property
    def optimiser_bucket(self) -> str:
        """KV bucket holding the optimiser's learnt state: per message schema its current
        dictionary, retired ones and figures (key: a digest of the schema)."""
        return f"{self.prefix.replace('.', '_')}_optimiser"

    @property
    def presence_bucket(self) -> str:
        """KV bucket holding presence entries (per-key TTL)."""
        return f"{self.prefix.replace('.', '_')}_presence"

    @property
    def buckets(self) -> tuple[str, ...]:
        """Every KV bucket of this installation (for permissions, clean-up and checks)."""
        return (
            self.control_bucket,
            self.presence_bucket,
            self.placement_bucket,
            self.dict_bucket,
            self.optimiser_bucket,
        )

    # --- JetStream advisories --------------------------------------------------------
    @staticmethod
    def stream_deleted_advisory(stream: str) -> str:
        """JetStream announces a deleted stream here (``stream`` empty: the prefix)."""
        return f"$JS.EVENT.ADVISORY.STREAM.DELETED.{stream}"

    @staticmethod
    def stream_created_advisory(stream: str) -> str:
        """JetStream announces a created stream here."""
        return f"$JS.EVENT.ADVISORY.STREAM.CREATED.{stream}"
