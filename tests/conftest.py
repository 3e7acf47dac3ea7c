"""Shared fixtures: real nats-server processes and in-process gateways on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from frys.client import Client, connect
from frys.gateway.auth import mint_token
from frys.gateway.config import GatewayConfig
from frys.gateway.listener import Listener
from frys.gateway.node import Gateway
from frys.gateway.server import build_app
from frys.runtime.nats_process import NatsProcess
from frys.shared.telemetry import Telemetry, telemetry_from_env

SECRET = "test-secret-0123456789abcdef-0123456789"
API_KEY = "test-api-key"
ALL_RIGHTS = ["subscribe", "publish", "control"]
EVERYTHING = {"wf:*:*": ALL_RIGHTS, "agent:*": ["subscribe", "publish"]}


def token(
    sub: str = "alice",
    grants: dict[str, list[str]] | None = None,
    *,
    ttl_s: float = 600.0,
    kind: str = "user",
    **kwargs: Any,
) -> str:
    return mint_token(
        SECRET, sub, EVERYTHING if grants is None else grants, ttl_s=ttl_s, kind=kind, **kwargs
    )


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsProcess]:
    """One real nats-server with JetStream for the whole run (tests use distinct prefixes)."""
    server = NatsProcess(name="frys-test").start()
    yield server
    server.close()


@pytest.fixture
def fresh_nats() -> Iterator[NatsProcess]:
    """A nats-server of this test's own (for tests that kill or restart it)."""
    server = NatsProcess(name=f"frys-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.close()


@dataclass
class RunningGateway:
    gateway: Gateway
    runner: web.AppRunner
    port: int
    listener: Listener | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.gateway.drain()
        if self.listener is not None:
            await self.listener.close()
        await self.runner.cleanup()


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
def prefix() -> str:
    """A subject prefix of this test's own, so tests sharing a NATS never see each other."""
    return f"t{uuid.uuid4().hex[:10]}"


async def start_gateway(
    nats_url: str, prefix: str, telemetry: Telemetry | None = None, **overrides: Any
) -> RunningGateway:
    config = GatewayConfig(
        nats_url=nats_url,
        host="127.0.0.1",
        port=0,
        gateway_id=overrides.pop("gateway_id", f"gw-{uuid.uuid4().hex[:6]}"),
        subject_prefix=prefix,
        jwt_secret=SECRET,
        api_key=API_KEY,
        allowed_origins=("https://designer.example",),
        drain_s=3.0,
        reconnect_spread_ms=200,
        presence_ttl_s=3.0,
        events_max_age_s=120.0,
    )
    config = dataclasses.replace(config, **overrides).validate()
    gateway = Gateway(config, telemetry or telemetry_from_env("frys-gateway", env={}))
    runner = web.AppRunner(build_app(gateway), handle_signals=False, access_log=None)
    await runner.setup()
    listener = Listener(runner, gateway.guard)
    port = await listener.start("127.0.0.1", 0)
    gateway.config = dataclasses.replace(config, port=port, public_url=f"ws://127.0.0.1:{port}/ws")
    await asyncio.wait_for(gateway.started.wait(), 20)
    return RunningGateway(gateway, runner, port, listener)


@pytest.fixture
async def gateways(nats_server: NatsProcess, prefix: str) -> AsyncIterator[GatewayFactory]:
    """Start gateways on the session NATS: ``await gateways(**config_overrides)``."""
    started: list[RunningGateway] = []

    async def factory(**overrides: Any) -> RunningGateway:
        nats_url = overrides.pop("nats_url", nats_server.url)
        gw = await start_gateway(nats_url, prefix, **overrides)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        with contextlib.suppress(Exception):
            await gw.stop()
    await _delete_prefix_resources(nats_server.url, prefix)


async def _delete_prefix_resources(nats_url: str, prefix: str) -> None:
    import nats

    from frys.shared.protocol.subjects import Subjects

    s = Subjects(prefix)
    with contextlib.suppress(Exception):
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for stream in (s.events_stream, s.state_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        for bucket in s.buckets:
            with contextlib.suppress(Exception):
                await js.delete_key_value(bucket)
        await nc.close()


@pytest.fixture
async def gateway(gateways: GatewayFactory) -> RunningGateway:
    return await gateways()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Open SDK clients that are closed at the end of the test."""
    opened: list[Client] = []

    async def factory(url: str, **kwargs: Any) -> Client:
        kwargs.setdefault("token", token())
        client = await connect(url, **kwargs)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        with contextlib.suppress(Exception):
            await client.close()


def pause_reading(client: Client) -> asyncio.Transport:
    """Stop reading a client's socket, as a stalled browser tab would."""
    ws = client._ws
    assert ws is not None
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.pause_reading()
    return transport


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
