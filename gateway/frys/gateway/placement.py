"""The gateway's side of collaboration-aware placement.

- It samples interactions (who subscribes to and publishes on which workflow, who messages
  whom) as counters and reports them to the router every ``report_interval_s``.
- It follows the router's placement table (a KV bucket it watches) and, when a client
  connects to the wrong gateway, tells it to ``migrate`` to the one that owns it.
- It carries out the router's migration orders, at most ``migrate_rate_per_s`` a second.

None of this is needed for correctness: without a router the table stays empty and clients
stay where the load balancer put them; if the router dies, the table stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Protocol

from nats.aio.msg import Msg

from frys.gateway.auth import Identity
from frys.gateway.bus import Bus
from frys.gateway.config import GatewayConfig
from frys.gateway.peers import Peers
from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.routing import (
    InteractionReport,
    agent_of_key,
    decode_order,
)

log = logging.getLogger("frys.gateway.placement")


class Placeable(Protocol):
    """What placement needs of a session."""

    @property
    def identity(self) -> Identity | None: ...

    def channels(self) -> Iterable[Channel]: ...

    def migrate(self, url: str, reason: str, delay_ms: int | None = None) -> None: ...


class GatewayPlacement:
    def __init__(
        self,
        config: GatewayConfig,
        bus: Bus,
        peers: Peers,
        sessions: Callable[[], Iterable[Placeable]],
    ):
        self.config = config
        self.bus = bus
        self.peers = peers
        self._sessions = sessions
        self.report_interval_s = config.interaction_report_s
        self.migrate_rate_per_s = config.migrate_rate_per_s
        self.owners: dict[str, str] = {}
        """agent → gateway id, as the router placed it."""
        self.publishes: Counter[tuple[str, str]] = Counter()
        self.direct: Counter[tuple[str, str]] = Counter()
        self._orders: deque[tuple[str, str, str]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_orders = asyncio.Event()

    async def start(self) -> None:
        await self.bus.subscribe(
            self.bus.subjects.gateway_orders(self.config.gateway_id), self._on_order
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_table()),
            loop.create_task(self._report_loop()),
            loop.create_task(self._order_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- sampling (hot path: one counter increment) ------------------------------------
    def on_publish(self, sender: str, channel: Channel) -> None:
        if channel.kind is ChannelKind.AGENT:
            self.direct[(sender, channel.id)] += 1
        else:
            self.publishes[(sender, channel.id)] += 1

    def report(self) -> InteractionReport:
        located: set[str] = set()
        subscriptions: set[tuple[str, str]] = set()
        for session in self._sessions():
            identity = session.identity
            if identity is None:
                continue
            located.add(identity.sub)
            for channel in session.channels():
                if channel.workflow is not None:
                    subscriptions.add((identity.sub, channel.workflow))
        publishes, self.publishes = self.publishes, Counter()
        direct, self.direct = self.direct, Counter()
        return InteractionReport(
            gateway=self.config.gateway_id,
            interval_s=self.report_interval_s,
            located=tuple(sorted(located)),
            subscriptions=tuple(sorted(subscriptions)),
            publishes=tuple((a, w, n) for (a, w), n in publishes.items()),
            direct=tuple((a, b, n) for (a, b), n in direct.items()),
        )

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            if self.bus.ready:
                with contextlib.suppress(Exception):
                    await self.bus.publish(self.bus.subjects.interactions, self.report().encode())

    # --- the placement table ------------------------------------------------------------
    async def _watch_table(self) -> None:
        """Mirror the placement bucket; reconnect the watch if it breaks."""
        while True:
            kv = self.bus.kv_placement
            if kv is None:
                await asyncio.sleep(0.5)
                continue
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        continue  # end of the initial values
                    agent = agent_of_key(entry.key)
                    if agent is None:
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        self.owners.pop(agent, None)
                    else:
                        self.owners[agent] = entry.value.decode()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("placement watch ended (%s); watching again", exc)
                await asyncio.sleep(1.0)

    def owner_of(self, agent: str) -> str | None:
        return self.owners.get(agent)

    def on_connected(self, session: Placeable) -> None:
        """A client that the router placed on another live gateway is sent there."""
        assert session.identity is not None
        owner = self.owners.get(session.identity.sub)
        if owner is None or owner == self.config.gateway_id:
            return
        peer = self.peers.healthy(owner)
        if peer is None:
            return  # the owner is gone or draining: serving here beats sending it nowhere
        if peer.url == self.config.advertised_url:
            return  # a sibling worker behind the same address: moving cannot do better
        session.migrate(peer.url, "placement")

    # --- orders -------------------------------------------------------------------------
    async def _on_order(self, msg: Msg) -> None:
        order = decode_order(msg.data)
        if order is None:
            return
        self._orders.extend(order.migrations)
        self._wake_orders.set()

    async def _order_loop(self) -> None:
        """Carry out migrations at a bounded rate, so a rebalance never turns into a
        reconnection storm."""
        interval = 1.0 / self.migrate_rate_per_s
        while True:
            await self._wake_orders.wait()
            self._wake_orders.clear()
            while self._orders:
                agent, target, url = self._orders.popleft()
                if target == self.config.gateway_id:
                    continue
                peer = self.peers.healthy(target)
                target_url = peer.url if peer is not None else url
                if target_url == self.config.advertised_url:
                    continue  # a sibling worker behind the same address
                for session in [
                    s
                    for s in self._sessions()
                    if s.identity is not None and s.identity.sub == agent
                ]:
                    session.migrate(target_url, "rebalance")
                    started = time.monotonic()
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
