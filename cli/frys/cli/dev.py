"""``frys-ws dev``: the whole system on this machine, for trying Frys and for development.

Starts a real ``nats-server`` with JetStream in a temporary directory on a free port and a
gateway in front of it, prints the WebSocket URL and a ready-to-use token, and stops
everything cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

from frys.cli.run_gateway import _stop_on_signals, serve_gateway
from frys.gateway.auth import mint_token
from frys.gateway.config import GatewayConfig
from frys.gateway.node import Gateway
from frys.runtime.eventloop import install_uvloop
from frys.runtime.nats_process import NatsProcess
from frys.shared.telemetry import telemetry_from_env

DEV_GRANTS = {
    "wf:*:*": ["subscribe", "publish", "control"],
    "agent:*": ["subscribe", "publish"],
}


def run_dev(port: int, host: str = "127.0.0.1", engine: bool = True) -> int:
    install_uvloop()
    nats = NatsProcess(name="frys-dev").start()
    try:
        asyncio.run(_dev(nats, host, port, engine))
    finally:
        nats.close()
    return 0


async def _dev(nats: NatsProcess, host: str, port: int, engine: bool) -> None:
    secret = secrets.token_urlsafe(32)
    api_key = secrets.token_urlsafe(24)
    config = GatewayConfig(
        nats_url=nats.url,
        host=host,
        port=port,
        gateway_id="dev",
        jwt_secret=secret,
        api_key=api_key,
        allowed_origins=("*",),
        drain_s=2.0,
        reconnect_spread_ms=500,
    ).validate()
    token = mint_token(secret, "dev", DEV_GRANTS, ttl_s=7 * 86400)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    demo = None
    # The engine traces with the same OTEL_* settings as the gateway, under its own name.
    engine_env = {k: v for k, v in os.environ.items() if k != "OTEL_SERVICE_NAME"}
    engine_telemetry = telemetry_from_env("frys-demo-engine", env=engine_env)

    async def ready(gateway: Gateway, bound_port: int) -> None:
        nonlocal demo
        url = f"ws://{host}:{bound_port}/ws"
        view = f"http://{host}:{bound_port}/ui#token={token}"
        from frys.cli.demo_engine import DEMO_WORKFLOW, start_demo_engine

        if engine:
            demo = await start_demo_engine(
                nats.url, url, secret, tracer_provider=engine_telemetry.tracer_provider
            )
            view += f"&wf={DEMO_WORKFLOW}"
        origins = config.allowed_origins
        allowed = (
            "any page (*)"
            if "*" in origins
            else ", ".join((*origins, "same-origin pages"))
            if origins
            else "same-origin pages"
        )
        print(
            "Frys WebSocket dev is running (Ctrl-C stops it)\n"
            f"  WebSocket   {url}\n"
            f"  HTTP        http://{host}:{bound_port}/readyz  /metrics  POST /api/publish\n"
            f"  NATS        {nats.url}  (JetStream, data in a temporary directory)\n"
            f"  API key     {api_key}\n"
            f"  JWT secret  {secret}\n"
            f"  Origins     {allowed}\n"
            f"  View        {view}\n"
            f"  Dev token   {token}\n"
            f"\nexport FRYS_URL={url} FRYS_TOKEN={token}\n"
            + (
                "  Engine      demo engine answers requests on wf:*:control and runs workflow "
                f"{DEMO_WORKFLOW} with two agents\n"
                if engine
                else ""
            ),
            flush=True,
        )

    try:
        await serve_gateway(config, stop, ready)
    finally:
        if demo is not None:
            await demo.close()
        engine_telemetry.shutdown()
    print("Frys WebSocket dev stopped", file=sys.stderr, flush=True)
