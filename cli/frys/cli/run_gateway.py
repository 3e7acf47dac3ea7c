"""Run gateway processes: one, or several sharing the port (``--workers``, SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from frys.gateway.config import GatewayConfig
from frys.gateway.listener import Listener
from frys.gateway.node import Gateway
from frys.gateway.server import build_app
from frys.gateway.tls import ServerTLS
from frys.runtime.eventloop import install_uvloop

log = logging.getLogger("frys.cli")


def tune_gc() -> None:
    """Freeze start-up objects and collect the old generation rarely: full collections over
    thousands of sessions paused the loop for hundreds of milliseconds."""
    gc.collect()
    gc.freeze()
    gen0, _gen1, _gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 50_000), 50, 100)


async def serve_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    on_ready: Callable[[Gateway, int], Awaitable[None]] | None = None,
) -> None:
    """Serve until ``stop`` is set, then drain and shut down."""
    gateway = Gateway(config)
    app = build_app(gateway)
    tls = ServerTLS.from_config(config)
    if tls is not None:  # wss:// on this port; the certificate is re-read when it changes
        app.cleanup_ctx.append(tls.lifecycle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    listener = Listener(runner, gateway.guard)
    port = await listener.start(
        config.host,
        config.port,
        ssl_context=tls.context if tls is not None else None,
        reuse_port=config.workers > 1 or None,
    )
    await gateway.started.wait()
    tune_gc()
    if on_ready is not None:
        await on_ready(gateway, port)
    await stop.wait()
    log.info("draining gateway %s", config.gateway_id)
    await gateway.drain()
    await listener.close()
    await runner.cleanup()


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def run_gateway(config: GatewayConfig) -> int:
    """Blocking entry point of ``frys-ws gateway``."""
    install_uvloop()
    if config.workers <= 1:
        asyncio.run(_main(config))
        return 0
    children: list[int] = []
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            worker = dataclasses.replace(config, gateway_id=f"{config.gateway_id}-w{index}")
            try:
                asyncio.run(_main(worker))
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


async def _main(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await serve_gateway(config, stop)
