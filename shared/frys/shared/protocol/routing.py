"""What gateways and the router say to each other over NATS (msgpack maps).

- heartbeat (gateway → all, ``{prefix}._sys.gw.heartbeat``): who a gateway is and how loaded;
- interaction report (gateway → router, ``{prefix}._sys.gw.interactions``): who is connected
  where, who subscribes to which workflow, who publishes to which workflow, who messages whom;
- migration orders (router → one gateway, ``{prefix}._sys.gw.{id}.orders``);
- placement entries (router → KV bucket ``{prefix}_placement``): agent → gateway.

Decoders return ``None`` for anything malformed instead of raising: these arrive from other
processes, and one bad message must not stop a router or a gateway.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import msgpack

PLACEMENT_KEY_PREFIX = "a."


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    id: str
    url: str
    connections: int
    load: float
    draining: bool

    def encode(self) -> bytes:
        return _pack(
            {
                "id": self.id,
                "url": self.url,
                "connections": self.connections,
                "load": self.load,
                "draining": self.draining,
            }
        )


def decode_heartbeat(data: bytes) -> Heartbeat | None:
    obj = _unpack(data)
    try:
        return Heartbeat(
            id=str(obj["id"]),
            url=str(obj["url"]),
            connections=int(obj["connections"]),
            load=float(obj["load"]),
            draining=bool(obj["draining"]),
        )
    except (TypeError, KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class InteractionReport:
    """One gateway's interactions over one interval."""

    gateway: str
    interval_s: float
    located: tuple[str, ...] = ()
    """Agents (token subjects) connected to this gateway now."""
    subscriptions: tuple[tuple[str, str], ...] = ()
    """(agent, workflow) for every live subscription to a workflow channel."""
    publishes: tuple[tuple[str, str, int], ...] = ()
    """(agent, workflow, messages) published to workflow channels."""
    direct: tuple[tuple[str, str, int], ...] = ()
    """(sender, recipient agent, messages) sent to agent inboxes."""

    def encode(self) -> bytes:
        return _pack(
            {
                "gw": self.gateway,
                "interval_s": self.interval_s,
                "located": list(self.located),
                "subs": [list(s) for s in self.subscriptions],
                "pubs": [list(p) for p in self.publishes],
                "direct": [list(d) for d in self.direct],
            }
        )


def decode_interactions(data: bytes) -> InteractionReport | None:
    obj = _unpack(data)
    try:
        return InteractionReport(
            gateway=str(obj["gw"]),
            interval_s=float(obj["interval_s"]),
            located=tuple(str(a) for a in obj["located"]),
            subscriptions=tuple((str(a), str(w)) for a, w in obj["subs"]),
            publishes=tuple((str(a), str(w), int(n)) for a, w, n in obj["pubs"]),
            direct=tuple((str(a), str(b), int(n)) for a, b, n in obj["direct"]),
        )
    except (TypeError, KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class MigrationOrder:
    """Move these agents' sessions: (agent, target gateway id, target URL)."""

    migrations: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    reason: str = "rebalance"

    def encode(self) -> bytes:
        return _pack({"migrate": [list(m) for m in self.migrations], "reason": self.reason})


def decode_order(data: bytes) -> MigrationOrder | None:
    obj = _unpack(data)
    try:
        return MigrationOrder(
            migrations=tuple((str(a), str(g), str(u)) for a, g, u in obj["migrate"]),
            reason=str(obj.get("reason", "rebalance")),
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def placement_key(agent: str) -> str:
    """KV key of an agent's placement: agent ids are token subjects (any text), keys are not."""
    encoded = base64.urlsafe_b64encode(agent.encode()).decode("ascii").rstrip("=")
    return PLACEMENT_KEY_PREFIX + encoded


def agent_of_key(key: str) -> str | None:
    if not key.startswith(PLACEMENT_KEY_PREFIX):
        return None
    encoded = key[len(PLACEMENT_KEY_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
