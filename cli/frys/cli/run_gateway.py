"""Run gateway processes: one, or several sharing the port (``--workers``, SO_REUSEPORT).

The order of start-up is the operator's: the listening addresses are taken first, so a
taken port fails before NATS or any peer hears of this gateway; then the gateway reaches
NATS in the background while ``/healthz`` and ``/readyz`` answer. SIGTERM and SIGINT stop
it in every phase (NATS unreachable, JetStream refusing, serving). A failure that no retry
cures ends the process with one log line and a non-zero exit code.
"""

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

from frys.cli.logs import describe_settings
from frys.gateway.bus import JetStreamRefused
from frys.gateway.config import ConfigError, GatewayConfig
from frys.gateway.listener import Admission, CannotListen, Guard, Listener
from frys.gateway.node import Gateway
from frys.gateway.server import build_app, build_internal_app
from frys.gateway.tls import ServerTLS
from frys.runtime.eventloop import install_uvloop
from frys.shared.telemetry import TelemetryConfigError

log = logging.getLogger("frys.cli")

EXIT_FATAL = 1
"""The environment refuses the gateway (address taken, JetStream refusing its streams)."""
EXIT_CONFIG = 2
"""The gateway's own settings are wrong."""

LOGGED_ALWAYS = ("gateway_id", "nats_url", "host", "port", "internal_port", "stream_replicas")
"""Settings in the start-up line even at their defaults (the others when changed)."""


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
    """Serve until ``stop`` is set, then drain and shut down.

    Raises :class:`~frys.gateway.listener.CannotListen` when an address cannot be taken
    (before anything started) and the gateway's own failure, e.g.
    :class:`~frys.gateway.bus.JetStreamRefused`, when it cannot start (after releasing
    everything)."""
    gateway = Gateway(config)
    app = build_app(gateway)
    tls = ServerTLS.from_config(config)
    if tls is not None:  # wss:// on this port; the certificate is re-read when it changes
        app.cleanup_ctx.append(tls.lifecycle)
    ssl_context = tls.context if tls is not None else None
    reuse_port = config.workers > 1 or None
    runners: list[tuple[web.AppRunner, Listener]] = []
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    listener = Listener(runner, gateway.guard)
    try:
        port = listener.bind(config.host, config.port, reuse_port=reuse_port)
        runners.append((runner, listener))
        internal_port = 0
        if config.internal_port:
            guard = Guard(Admission(handshake_timeout_s=config.handshake_timeout_s))
            internal = web.AppRunner(
                build_internal_app(gateway, guard),
                handle_signals=False,
                access_log=None,
                shutdown_timeout=1.0,
            )
            internal_listener = Listener(internal, guard)
            internal_port = internal_listener.bind(
                config.host, config.internal_port, reuse_port=reuse_port
            )
            runners.append((internal, internal_listener))
    except CannotListen:
        for _, bound in runners:
            await bound.close()
        raise
    if (port, internal_port) != (config.port, config.internal_port):
        # Ports the system chose: peers and migrate targets must name the real ones.
        gateway.config = dataclasses.replace(config, port=port, internal_port=internal_port)
    log.info(
        "gateway %s listening on %s; settings: %s",
        config.gateway_id,
        f"port {port}" + (f", internal port {internal_port}" if internal_port else ""),
        describe_settings(gateway.config, LOGGED_ALWAYS),
    )
    set_up: list[web.AppRunner] = []
    try:
        for each_runner, each_listener in runners:
            await each_runner.setup()  # the public runner starts the gateway (build_app)
            set_up.append(each_runner)
            await each_listener.start(config.host, each_listener.port, ssl_context=ssl_context)
        await _first(stop, gateway.started, gateway.failed)
        if gateway.failure is not None:
            raise gateway.failure
        if not stop.is_set():
            tune_gc()
            if on_ready is not None:
                await on_ready(gateway, port)
            await _first(stop, gateway.failed)
    finally:
        log.info("draining gateway %s", config.gateway_id)
        await gateway.drain()
        for _, each_listener in runners:
            await each_listener.close()
        for each_runner in reversed(set_up):
            await each_runner.cleanup()


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


FATAL_ERRORS = (CannotListen, JetStreamRefused, TelemetryConfigError, ConfigError)
"""Failures reported as one line, without a traceback: their message is the whole story."""


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, TelemetryConfigError | ConfigError):
        return EXIT_CONFIG
    return EXIT_FATAL


def run_gateway(config: GatewayConfig) -> int:
    """Blocking entry point of ``frys-ws gateway``; returns the process exit code."""
    install_uvloop()
    if config.workers <= 1:
        return _run(config)
    children: list[int] = []
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            worker = dataclasses.replace(config, gateway_id=f"{config.gateway_id}-w{index}")
            code = EXIT_FATAL
            try:
                code = _run(worker)
            finally:
                os._exit(code)
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


def _run(config: GatewayConfig) -> int:
    try:
        asyncio.run(_main(config))
    except FATAL_ERRORS as exc:
        code = exit_code_of(exc)
        log.error("%s; exiting with code %d", exc, code, extra={"gateway": config.gateway_id})
        return code
    return 0


async def _main(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await serve_gateway(config, stop)
