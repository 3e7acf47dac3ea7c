"""Gateway counters, kept as plain integers on the hot path and rendered on demand.

Incrementing an attribute costs nanoseconds; an instrument call per delivery would not.
The OpenTelemetry meter reads them through observable instruments, for ``/metrics`` and
OTLP alike (see :mod:`frys.gateway.telemetry`).
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
