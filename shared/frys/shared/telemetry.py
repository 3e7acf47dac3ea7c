"""OpenTelemetry set-up from the standard ``OTEL_*`` environment, and W3C propagation.

Traces are on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and not disabled (``OTEL_SDK_DISABLED``,
``OTEL_TRACES_EXPORTER=none``); the sampler, service name and resource come from the usual
variables, read by the SDK. OTLP goes over HTTP (``http/protobuf``, the default) or gRPC
(``grpc``), per ``OTEL_EXPORTER_OTLP_PROTOCOL`` or its per-signal variant. Metrics always
feed a Prometheus registry (``/metrics``) and, with an endpoint, OTLP too. Hot paths test
:attr:`Telemetry.tracing` before touching the API, so tracing costs nothing when it is off.

Latency histograms (unit ``ms``) get explicit buckets from 0.05 ms to 10 s
(:data:`LATENCY_BUCKETS_MS`): the SDK's default buckets start at 5 ms, below which the
gateway's typical delivery (well under a millisecond) would all land in one bucket.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

_PROPAGATOR = TraceContextTextMapPropagator()

LATENCY_BUCKETS_MS = (
    *(0.05, 0.1, 0.2, 0.3, 0.5, 0.75),
    *(1.0, 1.5, 2.0, 3.0, 5.0, 7.5),
    *(10.0, 20.0, 30.0, 50.0, 75.0),
    *(100.0, 200.0, 300.0, 500.0),
    *(1000.0, 2000.0, 5000.0, 10000.0),
)
"""Upper bounds of latency histogram buckets, in milliseconds."""

LATENCY_VIEW = View(
    instrument_type=Histogram,
    instrument_unit="ms",
    aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_MS),
)

PROTOCOLS = ("http/protobuf", "grpc")


class TelemetryConfigError(ValueError):
    """The ``OTEL_*`` settings ask for something this installation cannot do."""


@dataclass
class Telemetry:
    """Tracer and meter providers of one service instance (not global: several gateways
    may share a process in tests)."""

    service_name: str
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def tracer(self, name: str) -> trace.Tracer:
        if self.tracer_provider is None:
            return trace.NoOpTracer()
        return self.tracer_provider.get_tracer(name)

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _endpoint(env: Mapping[str, str], signal: str) -> str | None:
    """The signal's endpoint. Over HTTP the base endpoint gets the signal's path
    (``/v1/traces``); gRPC addresses the collector itself, so the base is used as it is."""
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base and _protocol(env, signal) == "grpc":
        return base
    if base:
        return base.rstrip("/") + f"/v1/{signal}"
    return None


def _protocol(env: Mapping[str, str], signal: str) -> str:
    """``http/protobuf`` or ``grpc``; anything else is refused at start with its name."""
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    if not env.get(variable):
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = env.get(variable) or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise TelemetryConfigError(
            f"{variable}={protocol!r} is not supported; use {' or '.join(PROTOCOLS)}"
        )
    return protocol


def _span_exporter(env: Mapping[str, str], endpoint: str) -> SpanExporter:
    if _protocol(env, "traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def _metric_exporter(env: Mapping[str, str], endpoint: str) -> MetricExporter:
    if _protocol(env, "metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint)


def telemetry_from_env(
    service_name: str,
    env: Mapping[str, str] | None = None,
    span_processors: list[SpanProcessor] | None = None,
    metric_readers: list[MetricReader] | None = None,
) -> Telemetry:
    """Build providers from ``env`` (default ``os.environ``). ``span_processors`` and
    ``metric_readers`` add to (or, with no endpoint, stand in for) the OTLP exporters."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    env = os.environ if env is None else env
    disabled = env.get("OTEL_SDK_DISABLED", "").lower() == "true"
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name})
    tel = Telemetry(service_name=service_name)
    processors = list(span_processors or [])
    traces_endpoint = _endpoint(env, "traces")
    if (
        not disabled
        and traces_endpoint
        and env.get("OTEL_TRACES_EXPORTER", "otlp").lower() != "none"
    ):
        processors.append(BatchSpanProcessor(_span_exporter(env, traces_endpoint)))
    if processors and not disabled:
        provider = TracerProvider(resource=resource)
        for processor in processors:
            provider.add_span_processor(processor)
        tel.tracer_provider = provider
    readers: list[MetricReader] = [PrometheusMetricReader(registry=tel.registry)]
    readers += metric_readers or []
    metrics_endpoint = _endpoint(env, "metrics")
    if (
        not disabled
        and metrics_endpoint
        and env.get("OTEL_METRICS_EXPORTER", "otlp").lower() != "none"
    ):
        interval_ms = float(env.get("OTEL_METRIC_EXPORT_INTERVAL", "10000"))
        readers.append(
            PeriodicExportingMetricReader(
                _metric_exporter(env, metrics_endpoint), export_interval_millis=interval_ms
            )
        )
    tel.meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, views=[LATENCY_VIEW]
    )
    return tel


def inject(context: Context | None, carrier: MutableMapping[str, str]) -> None:
    """Write ``traceparent``/``tracestate`` of ``context`` into NATS headers."""
    _PROPAGATOR.inject(carrier, context=context)


def extract(carrier: Mapping[str, Any]) -> Context:
    """Read a trace context from NATS headers or an envelope ``tc`` map."""
    return _PROPAGATOR.extract(carrier)


def sampled(traceparent: str) -> bool:
    """Whether a ``traceparent`` has the sampled flag (cheap string check, no parsing)."""
    return traceparent.endswith("-01") or (len(traceparent) >= 2 and traceparent[-1] in "13579bdf")
