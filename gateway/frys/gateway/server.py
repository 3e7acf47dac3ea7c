"""HTTP surface of a gateway: the WebSocket endpoint and the operational endpoints.

``/ws`` checks everything that can be checked before the upgrade (draining, subprotocol, an
``Authorization`` header token) and answers plain HTTP errors for those, so a refused client
never costs a session. A refused Origin is the exception: it is closed with 4403 right after
the upgrade, because a browser cannot read an HTTP status (see :func:`refuse_origin`).
``/healthz``, ``/readyz``, ``/metrics`` and ``POST /api/publish`` serve operators and
backends; ``/sdk/...`` and ``/ui`` serve the browser SDK and the live view
(:mod:`frys.gateway.webroot`).

With ``internal_port`` set, ``/metrics`` and ``POST /api/publish`` move to a second
listener (:func:`build_internal_app`), so a public load balancer in front of the WebSocket
port never exposes them; both ports answer ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from frys.gateway.auth import AuthError, Identity
from frys.gateway.listener import Guard, GuardedProtocol
from frys.gateway.node import Gateway
from frys.gateway.publisher import DATA_ERRORS, Message, PublishError
from frys.gateway.session import Session
from frys.gateway.tls import verified_client
from frys.gateway.webroot import sdk_file, ui_file, ui_page
from frys.shared.protocol import zdict
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.codec import CODECS, DEFAULT_CODEC, WireCodec, pack_data
from frys.shared.protocol.errors import ChannelError, CloseCode, ErrorCode
from frys.shared.protocol.frames import TraceContext
from frys.shared.protocol.publish import NO_PUBLISH

log = logging.getLogger("frys.gateway.server")

GATEWAY_KEY = web.AppKey("gateway", Gateway)


def origin_allowed(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    """Same-origin requests and listed origins pass; ``*`` lets every origin in."""
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == host.lower()


async def refuse_origin(request: web.Request) -> web.WebSocketResponse:
    """Refuse a page whose Origin is not allowed: upgrade, then close 4403 at once.

    An HTTP 403 reaches a page only as close 1006, which the reconnect rule must treat as an
    outage, so the page would retry forever; 4403 is a code it can read, in the range that
    says "do not reconnect". Nothing is gained over the 403 by the other side: no session is
    made, nothing is read (aiohttp discards whatever arrives before the client's close
    reply, undecoded) and nothing but the close frame is sent. The first subprotocol offered
    that Frys speaks is echoed, since a browser fails an upgrade that echoes none.
    """
    offered = request.headers.get("Sec-WebSocket-Protocol")
    codec = choose_codec(offered)
    ws = web.WebSocketResponse(
        protocols=(codec.subprotocol,) if codec is not None and offered else (),
        max_msg_size=4096,
        compress=False,
        timeout=1.0,
    )
    await ws.prepare(request)
    await ws.close(code=CloseCode.ORIGIN_REFUSED, message=b"origin not allowed")
    return ws


def choose_codec(header: str | None) -> WireCodec | None:
    """The first subprotocol the client offers that Frys speaks; msgpack when none offered."""
    if not header:
        return DEFAULT_CODEC
    for offered in (p.strip() for p in header.split(",")):
        if offered in CODECS:
            return CODECS[offered]
    return None


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


async def ws_handler(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    gw.guard.handshake_done(request.transport)
    cfg = gw.config
    if not gw.accepting:
        raise web.HTTPServiceUnavailable(
            text="gateway starting or draining", headers={"Retry-After": "1"}
        )
    origin = request.headers.get("Origin")
    if origin and not origin_allowed(origin, request.host, cfg.allowed_origins):
        log.info("origin %s refused with close %d", origin[:200], CloseCode.ORIGIN_REFUSED)
        return await refuse_origin(request)
    offered = request.headers.get("Sec-WebSocket-Protocol")
    codec = choose_codec(offered)
    if codec is None:
        raise web.HTTPBadRequest(text="unsupported subprotocol; Frys speaks " + ", ".join(CODECS))
    header_identity: Identity | None = None
    token = _bearer(request)
    if token is not None:
        try:
            header_identity = gw.verifier.verify(token)
        except AuthError as exc:
            raise web.HTTPUnauthorized(text=exc.reason) from None
    ws = web.WebSocketResponse(
        protocols=(codec.subprotocol,) if offered else (),
        max_msg_size=cfg.max_frame_bytes,
        heartbeat=cfg.ping_interval_s or None,
        compress=False,
        timeout=2.0,
        autoclose=False,  # the session answers a client's close (see Session.run)
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client went away during the upgrade
        return ws
    guarded = transport.get_protocol()
    if isinstance(guarded, GuardedProtocol):
        guarded.websocket()
    session = Session(gw.services, ws, transport, codec, header_identity)
    gw.on_open(session)
    await session.run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    """Liveness: fails only when a restart is the cure, i.e. the NATS client closed its
    connection for good and will not reconnect. An outage it is riding out is /readyz's."""
    gw = request.app[GATEWAY_KEY]
    if gw.bus.lost and not gw.draining:
        return web.json_response({"status": "dead", "reason": gw.bus.problem}, status=503)
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    body: dict[str, object] = {
        "ready": gw.ready,
        "nats": gw.bus.ready,
        "draining": gw.draining,
        "gateway": gw.config.gateway_id,
    }
    if gw.bus.replicas:
        # Which replication is in force: an operator checks a cluster's durability here.
        body["replication"] = {
            "replicas": gw.bus.replicas,
            "why": gw.bus.replicas_reason,
            "in_force": dict(gw.bus.replication),
        }
    if not gw.ready:
        body["reason"] = gw.not_ready_reason or "starting"
    return web.json_response(body, status=200 if gw.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    body = gw.telemetry.prometheus_text() + gw.optimiser_metrics().encode()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def api_publish(request: web.Request) -> web.Response:
    """Backend publish: ``{"channel": ..., "data": ..., "mid"?: ...}`` with the API key or
    a client certificate the gateway's client CA verified (``tls_client_ca_file``).

    The body is plain JSON: ``data`` is published as it reads, ``{"$bytes": ...}``
    included (docs/protocol.md §10.5). Subject, storage, size check, headers, span and
    counters are the publisher's, as for a WebSocket ``publish``.
    """
    gw = request.app[GATEWAY_KEY]
    # With a client CA configured, a certificate it verified stands in for the API key.
    certified = bool(gw.config.tls_client_ca_file) and verified_client(request) is not None
    key = _bearer(request) or request.headers.get("X-Api-Key") or ""
    expected = (gw.config.api_key or "").encode()
    given = key.encode("utf-8", "surrogateescape")
    if not certified and (not key or not expected or not hmac.compare_digest(given, expected)):
        raise web.HTTPUnauthorized(text="API key or client certificate required")
    if request.content_length is not None and request.content_length > gw.config.max_frame_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=gw.config.max_frame_bytes, actual_size=request.content_length
        )
    try:
        body = json.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("not an object")
        channel = parse_channel(body["channel"])
        data = body["data"]
        mid = body.get("mid")
        if mid is not None and not isinstance(mid, str):
            raise ValueError("mid must be a string")
    except ChannelError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        reason = f"body must be JSON {{channel, data, mid?}}: {type(exc).__name__}: {exc}"
        raise web.HTTPBadRequest(text=reason[:300]) from None
    if channel.kind in NO_PUBLISH:
        raise web.HTTPBadRequest(text=f"{channel.kind.value} channels take no publish")
    try:
        payload = pack_data(data)
    except DATA_ERRORS as exc:
        raise web.HTTPBadRequest(text=f"data cannot be carried: {exc}"[:200]) from None
    message = Message(
        channel, payload, "api", mid=mid or None, tc=_trace_context(request), source="api"
    )
    try:
        done = await gw.publisher.publish(message)
        result = await done
    except PublishError as exc:
        if exc.code is ErrorCode.TOO_LARGE:
            raise web.HTTPRequestEntityTooLarge(
                max_size=gw.bus.max_payload, actual_size=len(payload), text=exc.reason
            ) from None
        if exc.code is ErrorCode.TIMEOUT:
            raise web.HTTPGatewayTimeout(text=exc.reason) from None
        raise web.HTTPServiceUnavailable(text=exc.reason) from None
    if result.seq is not None:
        return web.json_response({"ok": True, "seq": result.seq, "dup": result.duplicate})
    return web.json_response({"ok": True})


def _trace_context(request: web.Request) -> TraceContext | None:
    """A caller's W3C trace context from the request headers, if any."""
    parent = request.headers.get("traceparent")
    if not parent:
        return None
    return TraceContext(parent, request.headers.get("tracestate"))


async def dictionary(request: web.Request) -> web.Response:
    """``GET /dict/{id}`` (docs/protocol.md §15.4): a dictionary by its content-derived id,
    from this gateway or the installation's cluster state, to a holder of a valid token.
    Immutable, so cacheable for good."""
    gw = request.app[GATEWAY_KEY]
    token = _bearer(request)
    if token is None:
        raise web.HTTPUnauthorized(text="a token is required (Authorization: Bearer)")
    try:
        gw.verifier.verify(token)
    except AuthError as exc:
        raise web.HTTPUnauthorized(text=exc.reason) from None
    try:
        dict_id = zdict.parse_id(request.match_info["id"])
    except zdict.DictionaryError as exc:
        raise web.HTTPBadRequest(text=exc.reason) from None
    optimiser = gw.optimiser
    try:
        found = None if optimiser is None else await optimiser.fetch(dict_id)
    except Exception as exc:
        raise web.HTTPServiceUnavailable(text=f"dictionaries unavailable: {exc}") from None
    if found is None:
        raise web.HTTPNotFound(text="unknown dictionary")
    return web.Response(
        body=found.content,
        content_type="application/octet-stream",
        headers={
            "ETag": f'"{found.name}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


async def optimiser_report(request: web.Request) -> web.Response:
    """``GET /optimiser``: what the protocol optimiser learnt and decided here, and why."""
    gw = request.app[GATEWAY_KEY]
    return web.json_response(gw.optimiser_report(), dumps=lambda o: json.dumps(o, default=str))


def build_app(gateway: Gateway) -> web.Application:
    """The public application; it owns the gateway's lifecycle (start and stop)."""
    app = web.Application(client_max_size=gateway.config.max_frame_bytes)
    app[GATEWAY_KEY] = gateway
    guarded = gateway.guard.guarded
    app.router.add_get("/ws", ws_handler)
    # Behind a load balancer, /gw/{gateway}/ws lets an Ingress route to one specific pod.
    app.router.add_get("/gw/{gateway}/ws", ws_handler)
    app.router.add_get("/healthz", guarded(healthz))
    app.router.add_get("/readyz", guarded(readyz))
    app.router.add_get("/dict/{id}", guarded(dictionary))
    app.router.add_get("/optimiser", guarded(optimiser_report))
    if not gateway.config.internal_port:
        app.router.add_get("/metrics", guarded(metrics))
        app.router.add_post("/api/publish", guarded(api_publish))
    app.router.add_get("/sdk/{path:.+}", guarded(sdk_file))
    app.router.add_get("/ui", guarded(ui_page))
    app.router.add_get("/ui/{path:.+}", guarded(ui_file))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Start in the background: /healthz answers while NATS is still being reached.
        starting = asyncio.get_running_loop().create_task(gateway.start())
        yield
        if not starting.done():
            starting.cancel()
        # Wait for the cancelled start to unwind (bounded) so no task is left behind; its
        # failure, if any, is the gateway's to report (Gateway.failure), not the loop's.
        await asyncio.wait({starting}, timeout=2.0)
        if starting.done() and not starting.cancelled():
            starting.exception()
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def build_internal_app(gateway: Gateway, guard: Guard) -> web.Application:
    """The operators' and backends' application on ``internal_port``: metrics, HTTP
    publish and the probes. Its guard is its own, so a flood of WebSocket clients never
    blocks a scrape or a backend's publish."""
    app = web.Application(client_max_size=gateway.config.max_frame_bytes)
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", guard.guarded(healthz))
    app.router.add_get("/readyz", guard.guarded(readyz))
    app.router.add_get("/metrics", guard.guarded(metrics))
    app.router.add_get("/optimiser", guard.guarded(optimiser_report))
    app.router.add_post("/api/publish", guard.guarded(api_publish))
    return app
