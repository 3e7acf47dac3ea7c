"""Consistent hashing: a stable preference order of gateways for every key.

The order depends on the key and the set of gateways only (ketama points of md5), never
on arrival order or on which router computed it, so a restarted router answers as the
old one did. Adding a gateway takes over only the keys that now hash to it. ``place``
adds a load bound (the first gateway under the cap wins), for callers that want one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from uhashring import HashRing

from frys.router.placement.model import GatewayId, NoGatewayError


class BoundedRing:
    """Consistent-hash preference order over a fixed set of gateways."""

    __slots__ = ("_gateways", "_ring")

    def __init__(self, gateways: Iterable[GatewayId], vnodes: int = 160) -> None:
        self._gateways = tuple(sorted(set(gateways)))
        self._ring = HashRing(
            nodes={g: {"vnodes": vnodes} for g in self._gateways}, hash_fn="ketama"
        )

    @property
    def gateways(self) -> tuple[GatewayId, ...]:
        return self._gateways

    def walk(self, key: str) -> list[GatewayId]:
        """Every gateway once, in the key's preference order."""
        if not self._gateways:
            raise NoGatewayError("no active gateway")
        return [str(node) for node in self._ring.iterate_nodes(key)]

    def first(self, key: str) -> GatewayId:
        """The key's preferred gateway."""
        return self.walk(key)[0]

    def place(
        self, key: str, size: float, loads: Mapping[GatewayId, float], cap: float
    ) -> GatewayId:
        """First gateway in ``key``'s order that stays within ``cap``, else the least loaded."""
        order = self.walk(key)
        for gateway in order:
            if loads.get(gateway, 0.0) + size <= cap:
                return gateway
        return min(order, key=lambda g: loads.get(g, 0.0))
