"""Gateway counters, kept as plain integers on the hot path and rendered on demand.

Incrementing an attribute costs nanoseconds; an instrument call per delivery would not.
``/metrics`` renders these in Prometheus text format; the OpenTelemetry meter reads the same
values through observable instruments (see :mod:`frys.gateway.telemetry`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    connections: int = 0
    connections_total: int = 0
    subscriptions: int = 0
    nats_subscriptions: int = 0
    messages_in: int = 0
    """Messages received from NATS for local subscribers."""
    deliveries: int = 0
    """Messages written to subscribers (one per message per subscriber)."""
    flushes: int = 0
    writes: int = 0
    publishes: int = 0
    publish_bytes: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    requests: int = 0
    gaps_recovered: int = 0
    conflated: int = 0
    slow_disconnects: int = 0
    migrations: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    publishes_by_kind: Counter[str] = field(default_factory=Counter)

    def render(self, gateway_id: str, nats_reconnects: int, ready: bool) -> str:
        label = f'gateway="{gateway_id}"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, value: float, extra: str = "") -> None:
            if not any(line.startswith(f"# HELP {name} ") for line in lines):
                lines.append(f"# HELP {name} {help_}")
                lines.append(f"# TYPE {name} {kind}")
            labels = label + ("," + extra if extra else "")
            lines.append(f"{name}{{{labels}}} {value}")

        metric("frys_ready", "gauge", "1 when connected to NATS and not draining", int(ready))
        metric("frys_connections", "gauge", "Open WebSocket sessions", self.connections)
        metric("frys_connections_total", "counter", "Sessions accepted", self.connections_total)
        metric("frys_subscriptions", "gauge", "Client subscriptions", self.subscriptions)
        metric(
            "frys_nats_subscriptions",
            "gauge",
            "NATS subscriptions (one per channel with local subscribers)",
            self.nats_subscriptions,
        )
        metric("frys_messages_in_total", "counter", "Messages from NATS", self.messages_in)
        metric("frys_deliveries_total", "counter", "Messages written to sessions", self.deliveries)
        metric("frys_flushes_total", "counter", "Fan-out flushes (event-loop ticks)", self.flushes)
        metric("frys_writes_total", "counter", "Socket writes of deliveries", self.writes)
        metric("frys_frames_in_total", "counter", "Frames received from clients", self.frames_in)
        metric("frys_bytes_in_total", "counter", "Bytes received from clients", self.bytes_in)
        metric("frys_bytes_out_total", "counter", "Delivery bytes written", self.bytes_out)
        metric("frys_publishes_total", "counter", "Client publishes", self.publishes)
        for kind, n in sorted(self.publishes_by_kind.items()):
            metric(
                "frys_publishes_by_kind_total",
                "counter",
                "Publishes per stream kind",
                n,
                f'kind="{kind}"',
            )
        metric("frys_requests_total", "counter", "Control requests", self.requests)
        metric("frys_gaps_recovered_total", "counter", "Gaps refetched", self.gaps_recovered)
        metric("frys_conflated_total", "counter", "State values conflated", self.conflated)
        metric(
            "frys_slow_disconnects_total", "counter", "Slow readers closed", self.slow_disconnects
        )
        metric("frys_migrations_total", "counter", "Sessions told to migrate", self.migrations)
        metric("frys_nats_reconnects_total", "counter", "NATS reconnects", nats_reconnects)
        for code, n in sorted(self.errors.items()):
            metric("frys_errors_total", "counter", "Error frames by code", n, f'code="{code}"')
        for code, n in sorted(self.closes.items()):
            metric("frys_closes_total", "counter", "Closes by code", n, f'code="{code}"')
        return "\n".join(lines) + "\n"
