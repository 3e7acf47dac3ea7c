"""One NATS subscription per channel per gateway, shared by every local subscriber."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from frys.client import Client
from frys.runtime.nats_process import NatsProcess
from tests.conftest import RunningGateway, token


async def _server_subs(http: aiohttp.ClientSession, nats: NatsProcess, name: str) -> list[str]:
    async with http.get(f"{nats.monitor_url}/connz?subs=1&limit=1024") as r:
        connz = await r.json()
    for conn in connz["connections"]:
        if conn.get("name") == name:
            return list(conn.get("subscriptions_list") or [])
    raise AssertionError(f"connection {name} not found")


async def test_many_local_subscribers_share_one_nats_subscription(
    gateway: RunningGateway,
    nats_server: NatsProcess,
    http: aiohttp.ClientSession,
    clients: Callable[..., Awaitable[Client]],
) -> None:
    gw = gateway.gateway
    conn_name = f"frys-gateway:{gw.config.gateway_id}"
    before = await _server_subs(http, nats_server, conn_name)
    subscribers = [await clients(gateway.url, token=token(f"u{i}")) for i in range(25)]
    subs = [await c.subscribe("wf:shared:collab") for c in subscribers]

    assert gw.metrics.nats_subscriptions == 1
    after = await _server_subs(http, nats_server, conn_name)
    # Reply inboxes come and go with requests; the channel subscriptions are what counts.
    added = [s for s in after if s not in before and not s.startswith("_INBOX.")]
    assert added == [f"{gw.subjects.prefix}.wf.shared.collab"]

    await subscribers[0].publish("wf:shared:collab", "to all")
    for sub in subs:
        assert (await sub.next(5)).data == "to all"
    messages_in = gw.metrics.messages_in
    assert messages_in == 1  # received from NATS once ...
    assert gw.metrics.deliveries == 25  # ... written to 25 sessions

    for sub in subs[:-1]:
        await sub.unsubscribe()
    assert gw.metrics.nats_subscriptions == 1
    await subs[-1].unsubscribe()
    assert gw.metrics.nats_subscriptions == 0
    assert "wf:shared:collab" not in {str(c) for c in gw.hub.fanouts}
    final = await _server_subs(http, nats_server, conn_name)
    assert f"{gw.subjects.prefix}.wf.shared.collab" not in final
