"""Nothing stored is lost when gateways or NATS nodes fail (short runs of the scenarios
``frys-ws loadtest durability`` runs for minutes)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from frys.loadtest.durability import DurabilityConfig, run_durability


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scenario", ["gateway-kill", "rolling-restart", "nats-kill"])
async def test_every_event_exactly_once_in_order(scenario: str) -> None:
    report = await run_durability(
        DurabilityConfig(
            scenario=scenario,
            gateways=3,
            workflows=5,
            clients=30,
            rate_per_s=1000.0,
            duration_s=5.0,
            disrupt_at_s=1.5,
        )
    )
    print(json.dumps(asdict(report)))
    assert report.acked >= 4500  # the publisher kept ~1,000 events/s through the failure
    assert report.expected_deliveries == report.acked * 6  # 30 clients on 5 workflows
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0)
    assert report.delivered == report.expected_deliveries
    assert report.gaps_reported == 0
    if scenario != "nats-kill":
        assert report.reconnects >= 10  # a third of the clients (all of them when rolling)
        assert report.reconnect_p99_ms is not None
