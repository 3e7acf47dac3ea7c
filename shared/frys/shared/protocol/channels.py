"""Channel names: the grammar clients use, parsed once and validated strictly.

A channel is ``wf:{id}:{kind}`` or ``agent:{id}``. Ids are limited to ``[A-Za-z0-9_-]`` so
that no client can smuggle a NATS separator (``.``) or wildcard (``*``, ``>``) into a
subject; see :mod:`frys.shared.protocol.subjects` for the mapping.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from frys.shared.protocol.errors import ChannelError

MAX_ID_LEN = 128
_ID_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LEN}}}")


class ChannelKind(enum.Enum):
    """The stream a channel carries; decides its delivery semantics."""

    STATE = "state"
    """Last value wins; a late joiner gets the snapshot; slow readers are conflated."""
    EVENTS = "events"
    """Ordered and durable; deliveries carry a position to resume from."""
    CONTROL = "control"
    """Request → reply commands to the workflow engine."""
    PRESENCE = "presence"
    """Join and leave notices of a workflow's members, written by gateways only."""
    COLLAB = "collab"
    """Agent group broadcast inside a workflow."""
    AGENT = "agent"
    """One agent's inbox (direct messages)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed, valid channel name."""

    kind: ChannelKind
    id: str

    @property
    def name(self) -> str:
        if self.kind is ChannelKind.AGENT:
            return f"agent:{self.id}"
        return f"wf:{self.id}:{self.kind.value}"

    @property
    def workflow(self) -> str | None:
        """The workflow id for ``wf:`` channels, ``None`` for an agent inbox."""
        return None if self.kind is ChannelKind.AGENT else self.id

    def __str__(self) -> str:
        return self.name


def valid_id(value: str) -> bool:
    """True when ``value`` may be a workflow or agent id."""
    return _ID_RE.fullmatch(value) is not None


def parse_channel(name: object) -> Channel:
    """Parse and validate a channel name, raising :class:`ChannelError` with the reason."""
    if not isinstance(name, str):
        raise ChannelError("channel must be a string")
    parts = name.split(":")
    if len(parts) == 3 and parts[0] == "wf":
        _, ident, kind_name = parts
        try:
            kind = ChannelKind(kind_name)
        except ValueError:
            raise ChannelError(f"unknown workflow stream {kind_name!r}") from None
        if kind is ChannelKind.AGENT:
            raise ChannelError("agent inboxes are spelled agent:{id}")
    elif len(parts) == 2 and parts[0] == "agent":
        ident, kind = parts[1], ChannelKind.AGENT
    else:
        raise ChannelError("channel must be wf:{id}:{kind} or agent:{id}")
    if not valid_id(ident):
        raise ChannelError(f"id must match [A-Za-z0-9_-]{{1,{MAX_ID_LEN}}}")
    return Channel(kind, ident)


def workflow_channel(workflow_id: str, kind: ChannelKind) -> Channel:
    """Build a workflow channel from its parts, validating the id."""
    if kind is ChannelKind.AGENT:
        raise ChannelError("an agent inbox is not a workflow channel")
    if not valid_id(workflow_id):
        raise ChannelError(f"id must match [A-Za-z0-9_-]{{1,{MAX_ID_LEN}}}")
    return Channel(kind, workflow_id)
