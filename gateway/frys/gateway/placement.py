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
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.routing import (
    InteractionReport,
    agent_of_key,
    decode_order,
)

if TYPE_CHECKING:
    from frys.gateway.node import Gateway
    from frys.gateway.session import Session

log = logging.getLogger("frys.gateway.placement")


class GatewayPlacement:
    def __init__(
        self,
        gateway: Gateway,
        report_interval_s: float = 2.0,
        migrate_rate_per_s: float = 200.0,
    ):
        self.gw = gateway
        self.report_interval_s = report_interval_s
        self.migrate_rate_per_s = migrate_rate_per_s
        self.owners: dict[str, str] = {}
        """agent → gateway id, as the router placed it."""
        self.publishes: Counter[tuple[str, str]] = Counter()
        self.direct: Counter[tuple[str, str]] = Counter()
        self._orders: deque[tuple[str, str, str]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_orders = asyncio.Event()

    async def start(self) -> None:
        gw = self.gw
        await gw.bus.subscribe(gw.subjects.gateway_orders(gw.config.gateway_id), self._on_order)
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
    def on_publish(self, session: Session, channel: Channel) -> None:
        assert session.identity is not None
        if channel.kind is ChannelKind.AGENT:
            self.direct[(session.identity.sub, channel.id)] += 1
        else:
            self.publishes[(session.identity.sub, channel.id)] += 1

    def report(self) -> InteractionReport:
        located: set[str] = set()
        subscriptions: set[tuple[str, str]] = set()
        for session in self.gw.sessions:
            if session.identity is None:
                continue
            located.add(session.identity.sub)
            for channel in session.subs:
                if channel.workflow is not None:
                    subscriptions.add((session.identity.sub, channel.workflow))
        publishes, self.publishes = self.publishes, Counter()
        direct, self.direct = self.direct, Counter()
        return InteractionReport(
            gateway=self.gw.config.gateway_id,
            interval_s=self.report_interval_s,
            located=tuple(sorted(located)),
            subscriptions=tuple(sorted(subscriptions)),
            publishes=tuple((a, w, n) for (a, w), n in publishes.items()),
            direct=tuple((a, b, n) for (a, b), n in direct.items()),
        )

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            if self.gw.bus.ready:
                with contextlib.suppress(Exception):
                    await self.gw.bus.publish(self.gw.subjects.interactions, self.report().encode())

    # --- the placement table ------------------------------------------------------------
    async def _watch_table(self) -> None:
        """Mirror the placement bucket; reconnect the watch if it breaks."""
        while True:
            kv = self.gw.bus.kv_placement
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

    def on_connected(self, session: Session) -> None:
        """A client that the router placed on another live gateway is sent there."""
        assert session.identity is not None
        owner = self.owners.get(session.identity.sub)
        gw = self.gw
        if owner is None or owner == gw.config.gateway_id:
            return
        peer = gw.peers.healthy(owner)
        if peer is None:
            return  # the owner is gone or draining: serving here beats sending it nowhere
        if peer.url == gw.config.advertised_url:
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
                if target == self.gw.config.gateway_id:
                    continue
                peer = self.gw.peers.healthy(target)
                target_url = peer.url if peer is not None else url
                if target_url == self.gw.config.advertised_url:
                    continue  # a sibling worker behind the same address
                for session in [
                    s
                    for s in self.gw.sessions
                    if s.identity is not None and s.identity.sub == agent
                ]:
                    session.migrate(target_url, "rebalance")
                    started = time.monotonic()
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
