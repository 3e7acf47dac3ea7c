"""One message, one trace: publish span at the first gateway, delivery spans at every
gateway that fans it out, across NATS; control requests reach the engine's span."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from frys.client import Client
from frys.client.backend import Backend, Command
from frys.runtime.nats_process import NatsProcess
from frys.shared.protocol.frames import TraceContext
from frys.shared.telemetry import telemetry_from_env
from tests.conftest import RunningGateway, start_gateway, token

ClientFactory = Callable[..., Awaitable[Client]]
TwoGateways = tuple[RunningGateway, InMemorySpanExporter, RunningGateway, InMemorySpanExporter]


def traced() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tel = telemetry_from_env(
        "frys-gateway", env={}, span_processors=[SimpleSpanProcessor(exporter)]
    )
    return tel, exporter


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


@pytest.fixture
async def two_traced_gateways(
    nats_server: NatsProcess, prefix: str
) -> AsyncIterator[
    tuple[RunningGateway, InMemorySpanExporter, RunningGateway, InMemorySpanExporter]
]:
    tel_a, spans_a = traced()
    tel_b, spans_b = traced()
    gw_a = await start_gateway(nats_server.url, prefix, telemetry=tel_a)
    gw_b = await start_gateway(nats_server.url, prefix, telemetry=tel_b)
    yield gw_a, spans_a, gw_b, spans_b
    await gw_a.stop()
    await gw_b.stop()


async def test_message_forms_one_trace_across_gateways(
    two_traced_gateways: tuple[
        RunningGateway, InMemorySpanExporter, RunningGateway, InMemorySpanExporter
    ],
    clients: ClientFactory,
) -> None:
    gw_a, spans_a, gw_b, spans_b = two_traced_gateways
    reader_b = await clients(gw_b.url, token=token("reader-b"))
    sub_b = await reader_b.subscribe("wf:t:collab")
    reader_a = await clients(gw_a.url, token=token("reader-a"))
    sub_a = await reader_a.subscribe("wf:t:collab")
    writer = await clients(gw_a.url, token=token("writer"))
    client_parent = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    await writer.publish("wf:t:collab", "traced", trace=client_parent)
    msg_b = await sub_b.next(5)
    await sub_a.next(5)

    publish = one(spans_a.get_finished_spans(), "publish collab")
    deliver_a = one(spans_a.get_finished_spans(), "deliver collab")
    deliver_b = one(spans_b.get_finished_spans(), "deliver collab")
    trace_id = int("0af7651916cd43dd8448eb211c80319c", 16)
    assert publish.context.trace_id == trace_id  # continues the client's trace
    assert publish.parent is not None and publish.parent.span_id == int("b7ad6b7169203331", 16)
    assert publish.kind is SpanKind.PRODUCER
    for deliver in (deliver_a, deliver_b):
        assert deliver.context.trace_id == trace_id
        assert deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
        assert deliver.kind is SpanKind.CONSUMER
    assert deliver_b.attributes is not None and deliver_b.attributes["frys.subscribers"] == 1
    # The delivered message carries the publish span's context to the subscriber.
    assert msg_b.data == "traced"


async def test_stored_event_and_control_request_traces(
    two_traced_gateways: tuple[
        RunningGateway, InMemorySpanExporter, RunningGateway, InMemorySpanExporter
    ],
    clients: ClientFactory,
    nats_server: NatsProcess,
    prefix: str,
) -> None:
    gw_a, spans_a, gw_b, spans_b = two_traced_gateways
    reader = await clients(gw_b.url, token=token("reader"))
    events = await reader.subscribe("wf:t:events")
    writer = await clients(gw_a.url, token=token("writer"))
    await writer.publish("wf:t:events", {"step": 1})
    await events.next(5)
    publish = one(spans_a.get_finished_spans(), "publish events")
    deliver = one(spans_b.get_finished_spans(), "deliver events")
    assert deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
    assert publish.parent is None  # a root: the client sent no trace context

    engine_spans = InMemorySpanExporter()
    engine_tracing = TracerProvider()
    engine_tracing.add_span_processor(SimpleSpanProcessor(engine_spans))

    async def handler(command: Command) -> Any:
        return "ok"

    async with await Backend.connect(
        nats_server.url, prefix=prefix, tracer_provider=engine_tracing
    ) as backend:
        await backend.serve_control(handler)
        await backend.nc.flush()
        assert await writer.request("wf:t:control", {"action": "stop"}) == "ok"
    request = one(spans_a.get_finished_spans(), "request control")
    served = one(engine_spans.get_finished_spans(), "control t")
    assert request.kind is SpanKind.CLIENT and served.kind is SpanKind.SERVER
    assert served.context.trace_id == request.context.trace_id
    assert served.parent is not None and served.parent.span_id == request.context.span_id


async def test_otlp_http_export_reaches_a_receiver(
    nats_server: NatsProcess, prefix: str, clients: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: dict[str, list[bytes]] = {"traces": [], "metrics": []}
    arrived = asyncio.Event()

    async def collect(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        received[request.match_info["signal"]].append(body)
        arrived.set()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/{signal}", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    tel = telemetry_from_env(
        "frys-gateway",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_SERVICE_NAME": "frys-gw-under-test",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        },
    )
    gw = await start_gateway(nats_server.url, prefix, telemetry=tel)
    try:
        c = await clients(gw.url)
        sub = await c.subscribe("wf:o:collab")
        await c.publish("wf:o:collab", 1)
        await sub.next(5)

        def spans() -> list[Any]:
            out = []
            for body in received["traces"]:
                req = ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    service = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        out += [(service.get("service.name"), s) for s in ss.spans]
            return out

        def metric_names() -> set[str]:
            names = set()
            for body in received["metrics"]:
                req = ExportMetricsServiceRequest.FromString(body)
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        names |= {m.name for m in sm.metrics}
            return names

        async def until(predicate: Callable[[], bool]) -> None:
            while not predicate():
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 10)

        await until(lambda: {s.name for _, s in spans()} >= {"publish collab", "deliver collab"})
        await until(lambda: "frys.deliveries" in metric_names())
        exported = {s.name: s for _, s in spans()}
        assert exported["deliver collab"].parent_span_id == exported["publish collab"].span_id
        assert {svc for svc, _ in spans()} == {"frys-gw-under-test"}
    finally:
        await gw.stop()
        await runner.cleanup()


async def test_metrics_endpoint_speaks_prometheus(
    gateway: RunningGateway, clients: ClientFactory, http: Any
) -> None:
    c = await clients(gateway.url)
    sub = await c.subscribe("wf:m:collab")
    total = 64  # one publish in 64 carries its time for the latency histogram
    for i in range(total):
        await c.publish("wf:m:collab", i)
    for _ in range(total):
        await sub.next(5)
    async with http.get(f"{gateway.http}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    gw_label = f'gateway="{gateway.gateway.config.gateway_id}"'
    lines = [line for line in text.splitlines() if not line.startswith("#")]

    def value(name: str, extra: str = "") -> float:
        for line in lines:
            if line.startswith(name + "{") and gw_label in line and extra in line:
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} {extra} not in /metrics:\n{text}")

    assert value("frys_deliveries_total") == total
    assert value("frys_connections") == 1
    assert value("frys_publishes_total", 'kind="collab"') == total
    assert value("frys_nats_subscriptions") == 1
    assert value("frys_delivery_latency_milliseconds_count") == 1


async def test_otlp_grpc_export_reaches_a_receiver(
    nats_server: NatsProcess, prefix: str, clients: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: spans and metrics reach a real gRPC collector
    service (the one the OpenTelemetry Collector implements, from opentelemetry-proto)."""
    grpc = pytest.importorskip("grpc")
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    spans: list[tuple[str, Any]] = []
    metric_names: set[str] = set()
    arrived = asyncio.Event()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(  # noqa: N802 - the service's method name
            self, request: ExportTraceServiceRequest, context: Any
        ) -> ExportTraceServiceResponse:
            for rs in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    spans.extend((attrs.get("service.name", ""), s) for s in ss.spans)
            arrived.set()
            return ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        async def Export(  # noqa: N802
            self, request: ExportMetricsServiceRequest, context: Any
        ) -> ExportMetricsServiceResponse:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    metric_names.update(m.name for m in sm.metrics)
            arrived.set()
            return ExportMetricsServiceResponse()

    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    tel = telemetry_from_env(
        "frys-gateway",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_SERVICE_NAME": "frys-gw-grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        },
    )
    gw = await start_gateway(nats_server.url, prefix, telemetry=tel)
    try:
        c = await clients(gw.url)
        sub = await c.subscribe("wf:g:collab")
        await c.publish("wf:g:collab", 1)
        await sub.next(5)

        async def until(predicate: Callable[[], bool]) -> None:
            while not predicate():
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 10)

        await until(lambda: {s.name for _, s in spans} >= {"publish collab", "deliver collab"})
        await until(lambda: "frys.deliveries" in metric_names)
        exported = {s.name: s for _, s in spans}
        assert exported["deliver collab"].parent_span_id == exported["publish collab"].span_id
        assert {service for service, _ in spans} == {"frys-gw-grpc"}
    finally:
        await gw.stop()
        await server.stop(None)


async def test_spans_follow_the_messaging_and_rpc_conventions(
    two_traced_gateways: TwoGateways, clients: ClientFactory, nats_server: NatsProcess, prefix: str
) -> None:
    """Publish, deliver and control request spans carry the current OpenTelemetry
    messaging attributes (messaging.operation.type and .name, the NATS subject as the
    destination) and the request span the rpc ones."""
    gw_a, spans_a, gw_b, spans_b = two_traced_gateways
    reader = await clients(gw_b.url, token=token("reader"))
    events = await reader.subscribe("wf:sc:events")
    writer = await clients(gw_a.url, token=token("writer"))
    await writer.publish("wf:sc:events", {"step": 1})
    await events.next(5)

    async def handler(command: Command) -> Any:
        return "ok"

    async with await Backend.connect(nats_server.url, prefix=prefix) as backend:
        await backend.serve_control(handler)
        await backend.nc.flush()
        assert await writer.request("wf:sc:control", {"action": "stop"}, cid="c-1") == "ok"

    publish = one(spans_a.get_finished_spans(), "publish events").attributes
    deliver = one(spans_b.get_finished_spans(), "deliver events").attributes
    request = one(spans_a.get_finished_spans(), "request control").attributes
    assert publish is not None and deliver is not None and request is not None
    assert (
        publish.items()
        >= {
            "messaging.system": "nats",
            "messaging.destination.name": f"{prefix}.wf.sc.events",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
        }.items()
    )
    assert (
        deliver.items()
        >= {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.operation.name": "deliver",
        }.items()
    )
    assert str(deliver["messaging.destination.name"]).startswith(f"{prefix}.")
    assert deliver["messaging.destination.name"] != publish["messaging.destination.name"]
    assert (
        request.items()
        >= {
            "messaging.system": "nats",
            "messaging.destination.name": f"{prefix}.wf.sc.control",
            "messaging.operation.type": "send",
            "messaging.operation.name": "request",
            "messaging.message.conversation_id": "c-1",
            "rpc.system": "frys",
            "rpc.service": "frys.control",
            "rpc.method": "request",
        }.items()
    )


async def test_latency_histogram_resolves_sub_millisecond_deliveries(
    gateway: RunningGateway, http: Any
) -> None:
    """The delivery latency histogram's buckets start at 0.05 ms (an OpenTelemetry view):
    a 0.7 ms delivery lands between 0.5 and 0.75 ms, not in a first bucket of 5 ms."""
    from frys.shared.telemetry import LATENCY_BUCKETS_MS

    assert LATENCY_BUCKETS_MS[0] == 0.05 and LATENCY_BUCKETS_MS[-1] == 10_000
    tel = gateway.gateway.telemetry
    now = time.time_ns()
    with patch("frys.gateway.telemetry.time.time_ns", return_value=now):
        tel.record_latency(now - 700_000)  # 0.7 ms ago
    async with http.get(f"{gateway.http}/metrics") as r:
        text = await r.text()
    buckets = {
        float(m.group(1)): float(m.group(2))
        for m in re.finditer(
            r'^frys_delivery_latency_milliseconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$',
            text,
            re.M,
        )
        if m.group(1) != "+Inf"
    }
    assert sorted(buckets) == list(LATENCY_BUCKETS_MS)
    assert buckets[0.5] == 0 and buckets[0.75] == 1 and buckets[10_000] == 1


async def test_the_dev_demo_engine_is_traced(
    nats_server: NatsProcess, prefix: str, clients: ClientFactory
) -> None:
    """``frys-ws dev`` gives its demo engine a tracer provider: the commands it serves are
    server spans, children of the gateway's request span, in the same trace."""
    from frys.cli.demo_engine import DEMO_WORKFLOW, start_demo_engine

    tel, gateway_spans = traced()
    gw = await start_gateway(nats_server.url, prefix, telemetry=tel)
    engine_spans = InMemorySpanExporter()
    engine_tracing = TracerProvider()
    engine_tracing.add_span_processor(SimpleSpanProcessor(engine_spans))
    engine = await start_demo_engine(nats_server.url, prefix=prefix, tracer_provider=engine_tracing)
    try:
        c = await clients(gw.url)
        reply = await c.request(f"wf:{DEMO_WORKFLOW}:control", {"action": "pause"})
        assert reply["ok"] is True
    finally:
        await engine.close()
        await gw.stop()
    request = one(gateway_spans.get_finished_spans(), "request control")
    served = one(engine_spans.get_finished_spans(), f"control {DEMO_WORKFLOW}")
    assert served.kind is SpanKind.SERVER
    assert served.context.trace_id == request.context.trace_id
    assert served.parent is not None and served.parent.span_id == request.context.span_id
