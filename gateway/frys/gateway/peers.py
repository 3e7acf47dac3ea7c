"""Gateway heartbeats: announce this gateway and track the others.

Every gateway publishes a heartbeat each ``interval_s`` (id, advertised URL, connections,
load, draining). The router places clients from them; gateways use them to answer
``migrate`` with a live peer's URL and to declare a silent peer dead after
``presence_ttl_s``, which ends its members' presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from frys.gateway.bus import Bus
from frys.gateway.config import GatewayConfig
from frys.shared.protocol.routing import Heartbeat, decode_heartbeat

log = logging.getLogger("frys.gateway.peers")


@dataclass(slots=True)
class PeerInfo:
    id: str
    url: str
    connections: int
    load: float
    draining: bool
    seen: float


class Peers:
    def __init__(
        self,
        config: GatewayConfig,
        bus: Bus,
        status: Callable[[], tuple[int, bool]],
        interval_s: float = 1.0,
    ):
        self.config = config
        self.bus = bus
        self._status = status
        """(connections, draining) of this gateway, for its heartbeat."""
        self.interval_s = interval_s
        self.peers: dict[str, PeerInfo] = {}
        self.on_lost: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._cpu = (time.process_time(), time.monotonic())

    async def start(self) -> None:
        await self.bus.subscribe(self.bus.subjects.heartbeat, self._on_heartbeat)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _load(self) -> float:
        """Share of one core used by this process since the last heartbeat."""
        cpu, wall = time.process_time(), time.monotonic()
        last_cpu, last_wall = self._cpu
        self._cpu = (cpu, wall)
        return round((cpu - last_cpu) / max(wall - last_wall, 1e-6), 3)

    def beat(self) -> Heartbeat:
        connections, draining = self._status()
        return Heartbeat(
            id=self.config.gateway_id,
            url=self.config.advertised_url,
            connections=connections,
            load=self._load(),
            draining=draining,
        )

    async def _loop(self) -> None:
        ttl = self.config.presence_ttl_s
        while True:
            if self.bus.ready:
                with contextlib.suppress(Exception):
                    await self.bus.publish(self.bus.subjects.heartbeat, self.beat().encode())
            now = time.monotonic()
            for peer in list(self.peers.values()):
                if now - peer.seen > ttl:
                    del self.peers[peer.id]
                    log.warning("gateway %s silent for %.1f s: considered gone", peer.id, ttl)
                    for hook in self.on_lost:
                        hook(peer.id)
            await asyncio.sleep(self.interval_s)

    async def _on_heartbeat(self, msg: Msg) -> None:
        beat = decode_heartbeat(msg.data)
        if beat is None:
            return
        peer = PeerInfo(
            id=beat.id,
            url=beat.url,
            connections=beat.connections,
            load=beat.load,
            draining=beat.draining,
            seen=time.monotonic(),
        )
        if peer.id != self.config.gateway_id:
            self.peers[peer.id] = peer

    def healthy(self, gateway_id: str) -> PeerInfo | None:
        peer = self.peers.get(gateway_id)
        if peer is None or peer.draining:
            return None
        return peer
