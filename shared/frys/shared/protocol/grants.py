"""Channel grants carried in tokens: patterns and the rights they give.

A grant pattern is a channel name in which any id or stream segment may be ``*`` (one
segment, never a partial match): ``wf:42:*``, ``wf:*:events``, ``agent:*``. Matching is
done on parsed segments, so a pattern can never match across a ``:``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from frys.shared.protocol.channels import Channel, ChannelKind, valid_id
from frys.shared.protocol.errors import ChannelError


class Right(enum.Enum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class Grant:
    """One pattern and the rights it confers."""

    kind: str  # a ChannelKind value or "*"
    id: str  # an id or "*"
    rights: frozenset[Right]

    def matches(self, channel: Channel) -> bool:
        if self.kind != "*" and self.kind != channel.kind.value:
            return False
        if self.kind == "*" and channel.kind is ChannelKind.AGENT:
            return False  # wf:…:* never covers agent inboxes
        return self.id == "*" or self.id == channel.id

    @property
    def pattern(self) -> str:
        if self.kind == ChannelKind.AGENT.value:
            return f"agent:{self.id}"
        return f"wf:{self.id}:{self.kind}"


def parse_pattern(pattern: str, rights: Iterable[str]) -> Grant:
    """Parse one grant; raises :class:`ChannelError` on a malformed pattern or right."""
    try:
        granted = frozenset(Right(r) for r in rights)
    except ValueError as exc:
        raise ChannelError(f"unknown right in grant {pattern!r}: {exc}") from None
    parts = pattern.split(":")
    if len(parts) == 2 and parts[0] == "agent":
        kind, ident = ChannelKind.AGENT.value, parts[1]
    elif len(parts) == 3 and parts[0] == "wf":
        ident, kind = parts[1], parts[2]
        if kind != "*" and kind not in {k.value for k in ChannelKind if k is not ChannelKind.AGENT}:
            raise ChannelError(f"unknown stream in grant {pattern!r}")
    else:
        raise ChannelError(f"grant {pattern!r} must be wf:{{id|*}}:{{kind|*}} or agent:{{id|*}}")
    if ident != "*" and not valid_id(ident):
        raise ChannelError(f"invalid id in grant {pattern!r}")
    return Grant(kind=kind, id=ident, rights=granted)


@dataclass(frozen=True, slots=True)
class Grants:
    """The set of grants of one session."""

    grants: tuple[Grant, ...] = ()

    @classmethod
    def from_claim(cls, claim: object) -> Grants:
        """Build from the token's ``frys.grants`` claim: ``{pattern: [right, ...]}``."""
        if claim is None:
            return cls()
        if not isinstance(claim, Mapping):
            raise ChannelError("grants claim must be an object of pattern → rights")
        out = []
        for pattern, rights in claim.items():
            if not isinstance(pattern, str) or not isinstance(rights, list | tuple):
                raise ChannelError("grants claim must map pattern strings to lists of rights")
            out.append(parse_pattern(pattern, [str(r) for r in rights]))
        return cls(tuple(out))

    def allows(self, channel: Channel, right: Right) -> bool:
        return any(right in g.rights and g.matches(channel) for g in self.grants)

    def to_claim(self) -> dict[str, list[str]]:
        claim: dict[str, list[str]] = {}
        for g in self.grants:
            claim.setdefault(g.pattern, [])
            claim[g.pattern].extend(sorted(r.value for r in g.rights))
        return claim
