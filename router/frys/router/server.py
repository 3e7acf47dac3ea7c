"""The router's HTTP surface (``/healthz``, ``/readyz``, ``/metrics``) and its runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable

from aiohttp import web
from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from frys.router.config import RouterConfig
from frys.router.service import RouterService
from frys.runtime.eventloop import install_uvloop
from frys.shared.telemetry import Telemetry, TelemetryConfigError, telemetry_from_env

log = logging.getLogger("frys.router")

SERVICE_KEY = web.AppKey("router", RouterService)


class RouterCannotListen(OSError):
    """The router's port cannot be taken; nothing else was started."""


TELEMETRY_KEY = web.AppKey("telemetry", Telemetry)


def observe(service: RouterService, tel: Telemetry) -> None:
    assert tel.meter_provider is not None
    meter = tel.meter_provider.get_meter("frys.router")
    stats = service.stats

    def one(read: Callable[[], float]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda _: [Observation(read())]

    meter.create_observable_counter("frys.router.plans", [one(lambda: stats.plans)])
    meter.create_observable_counter("frys.router.reports", [one(lambda: stats.reports)])
    meter.create_observable_counter("frys.router.moves", [one(lambda: stats.moves)])
    meter.create_observable_counter(
        "frys.router.migrations", [one(lambda: stats.migrations_ordered)]
    )
    meter.create_observable_counter(
        "frys.router.placements.written", [one(lambda: stats.placements_written)]
    )
    meter.create_observable_gauge(
        "frys.router.plan.duration", [one(lambda: stats.last_plan_ms)], unit="ms"
    )
    meter.create_observable_gauge("frys.router.busiest.ratio", [one(lambda: stats.busiest_ratio)])
    meter.create_observable_gauge("frys.router.agents", [one(lambda: stats.agents)])
    meter.create_observable_gauge(
        "frys.router.plan.next", [one(lambda: stats.next_plan_s)], unit="s"
    )
    meter.create_observable_gauge("frys.router.forecast.error", [one(lambda: stats.forecast_error)])

    def gateways(_: CallbackOptions) -> Iterable[Observation]:
        counts: dict[str, int] = {}
        for state in stats.gateways.values():
            counts[state] = counts.get(state, 0) + 1
        return [Observation(n, {"state": state}) for state, n in sorted(counts.items())]

    meter.create_observable_gauge("frys.router.gateways", [gateways])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    ready = service.ready.is_set() and service.nc.is_connected
    body: dict[str, object] = {
        "ready": ready,
        "gateways": service.stats.gateways,
        "plans": service.stats.plans,
    }
    if not ready:
        body["reason"] = service.problem or (
            "nats: disconnected" if service.ready.is_set() else "starting"
        )
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[TELEMETRY_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_router_app(service: RouterService, tel: Telemetry) -> web.Application:
    app = web.Application()
    app[SERVICE_KEY] = service
    app[TELEMETRY_KEY] = tel
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_router(config: RouterConfig, stop: asyncio.Event) -> None:
    tel = telemetry_from_env("frys-router")
    service = RouterService(config)
    observe(service, tel)
    runner = web.AppRunner(build_router_app(service, tel), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise RouterCannotListen(
            f"cannot listen on {config.host}:{config.port}: {reason}"
        ) from None
    starting = asyncio.get_running_loop().create_task(service.start())
    await stop.wait()
    starting.cancel()
    await service.stop()
    await runner.cleanup()
    tel.shutdown()


def run_router(config: RouterConfig) -> int:
    install_uvloop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve_router(config, stop)

    try:
        asyncio.run(main())
    except RouterCannotListen as exc:
        log.error("%s; exiting with code 1", exc)
        return 1
    except TelemetryConfigError as exc:
        log.error("%s; exiting with code 2", exc)
        return 2
    return 0
