"""The gateway's traces and metrics.

Metrics: the hot path increments plain integers (:class:`~frys.gateway.metrics.Metrics`);
observable OpenTelemetry instruments read them at collection time, for ``/metrics``
(Prometheus) and OTLP alike. Delivery latency is a histogram fed by a sample of messages
that carry their publish time (``Frys-Ts``, set on one publish in :data:`TS_SAMPLE_EVERY`).

Traces: a publish span where a message enters (client ``publish`` or ``POST /api/publish``),
its context in the NATS headers (``traceparent``), and a delivery span on every gateway that
fans it out, as a child of the publish span; control requests get a client span whose
context reaches the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind
from prometheus_client import generate_latest

from frys.gateway.metrics import Metrics
from frys.shared import telemetry as otel
from frys.shared.protocol.frames import TraceContext

TS_SAMPLE_EVERY = 64


class GatewayTelemetry:
    """The gateway's instruments. What it observes is passed in as callables (read at
    collection time), so telemetry depends on no other part of the gateway."""

    def __init__(
        self,
        gateway_id: str,
        metrics: Metrics,
        tel: otel.Telemetry,
        ready: Callable[[], bool],
        nats_reconnects: Callable[[], int],
        tensor_totals: Callable[[], Mapping[str, int]],
    ):
        self.metrics = metrics
        self.tel = tel
        self.tracing = tel.tracing
        self.tracer = tel.tracer("frys.gateway")
        self._ready = ready
        self._reconnects = nats_reconnects
        self._tensor_totals = tensor_totals
        self._labels = {"gateway": gateway_id}
        assert tel.meter_provider is not None
        meter = tel.meter_provider.get_meter("frys.gateway")
        self.latency = meter.create_histogram(
            "frys.delivery.latency",
            unit="ms",
            description="Publish to socket write, sampled (one message in 64)",
        )
        self._observe(meter)

    # --- metrics -------------------------------------------------------------------------
    def _observe(self, meter: Any) -> None:
        m = self.metrics

        def gauge(name: str, description: str, read: Callable[[], float]) -> None:
            meter.create_observable_gauge(
                name, callbacks=[self._one(read)], description=description
            )

        def counter(name: str, description: str, read: Callable[[], float], unit: str = "") -> None:
            meter.create_observable_counter(
                name, callbacks=[self._one(read)], description=description, unit=unit
            )

        def by_label(
            name: str, description: str, label: str, read: Callable[[], Mapping[Any, int]]
        ) -> None:
            def callback(_: CallbackOptions) -> Iterable[Observation]:
                return [
                    Observation(n, {**self._labels, label: str(key)})
                    for key, n in sorted(read().items())
                ]

            meter.create_observable_counter(name, callbacks=[callback], description=description)

        gauge("frys.ready", "1 when connected to NATS and not draining", lambda: int(self._ready()))
        gauge("frys.connections", "Open WebSocket sessions", lambda: m.connections)
        gauge("frys.subscriptions", "Client subscriptions", lambda: m.subscriptions)
        gauge(
            "frys.nats.subscriptions",
            "NATS subscriptions (one per channel with local subscribers)",
            lambda: m.nats_subscriptions,
        )
        counter("frys.connections.accepted", "Sessions accepted", lambda: m.connections_total)
        counter("frys.messages.in", "Messages received from NATS", lambda: m.messages_in)
        counter("frys.deliveries", "Messages written to sessions", lambda: m.deliveries)
        counter("frys.flushes", "Fan-out flushes (event-loop ticks)", lambda: m.flushes)
        counter("frys.writes", "Socket writes of deliveries", lambda: m.writes)
        counter("frys.frames.in", "Frames received from clients", lambda: m.frames_in)
        counter("frys.received", "Bytes received from clients", lambda: m.bytes_in, "By")
        counter("frys.sent", "Delivery bytes written", lambda: m.bytes_out, "By")
        counter("frys.requests", "Control requests", lambda: m.requests)
        counter("frys.publishes.total", "Publishes of every kind", lambda: m.publishes)
        counter("frys.gaps.recovered", "Gaps refetched from streams", lambda: m.gaps_recovered)
        counter("frys.conflated", "State values conflated", lambda: m.conflated)
        counter("frys.slow.disconnects", "Slow readers closed", lambda: m.slow_disconnects)
        counter("frys.migrations", "Sessions told to migrate", lambda: m.migrations)
        counter("frys.nats.reconnects", "NATS reconnects", lambda: self._reconnects())
        by_label("frys.publishes", "Publishes per stream kind", "kind", lambda: m.publishes_by_kind)
        by_label(
            "frys.tensor",
            "Tensor relay totals: frames, keyframes, chunks, bytes_wire, bytes_raw, "
            "conflated, keyframes_served, keyframe_requests, errors",
            "figure",
            self._tensor_totals,
        )
        by_label("frys.errors", "Error frames by code", "code", lambda: m.errors)
        by_label("frys.closes", "Closes by code", "code", lambda: m.closes)

    def _one(self, read: Callable[[], float]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(), self._labels)]

        return callback

    def record_latency(self, published_ns: int) -> None:
        self.latency.record((time.time_ns() - published_ns) / 1e6, self._labels)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.tel.registry)

    # --- traces --------------------------------------------------------------------------
    def publish_span(
        self,
        name: str,
        tc: TraceContext | None,
        headers: dict[str, str],
        attributes: dict[str, Any],
    ) -> Span:
        """Start the span of a message entering Frys; its context replaces any in
        ``headers`` so that delivery spans become its children."""
        return self._outgoing(name, tc, headers, attributes, SpanKind.PRODUCER)

    def client_span(
        self,
        name: str,
        tc: TraceContext | None,
        headers: dict[str, str],
        attributes: dict[str, Any],
    ) -> Span:
        """Start the span of a control request; the engine's span becomes its child."""
        return self._outgoing(name, tc, headers, attributes, SpanKind.CLIENT)

    def _outgoing(
        self,
        name: str,
        tc: TraceContext | None,
        headers: dict[str, str],
        attributes: dict[str, Any],
        kind: SpanKind,
    ) -> Span:
        parent = otel.extract(_carrier(tc)) if tc is not None else None
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        otel.inject(trace.set_span_in_context(span), headers)
        return span

    def deliver_span(self, headers: Mapping[str, str], attributes: dict[str, Any]) -> Span:
        parent = otel.extract(headers)
        return self.tracer.start_span(
            f"deliver {attributes.get('frys.stream', '')}".strip(),
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )


def _carrier(tc: TraceContext) -> dict[str, str]:
    carrier = {"traceparent": tc.traceparent}
    if tc.tracestate:
        carrier["tracestate"] = tc.tracestate
    return carrier
