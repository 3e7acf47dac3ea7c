"""The router live: workflows converge onto one gateway each, broker copies drop, and every
migrated client keeps every event exactly once (a short ``frys-ws loadtest mesh``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from frys.loadtest.mesh import MeshConfig, run_mesh

SIZES = (12, 8, 6, 4, 3, 2)


@pytest.mark.timeout(240)
async def test_router_halves_broker_copies_and_loses_nothing() -> None:
    off = await run_mesh(MeshConfig(router=False, sizes=SIZES, messages_per_workflow=20))
    on = await run_mesh(MeshConfig(router=True, sizes=SIZES, messages_per_workflow=20))
    print(json.dumps({"off": asdict(off), "on": asdict(on)}))
    assert off.gateways_per_workflow > 1.5  # a random balancer spreads workflows
    assert on.gateways_per_workflow == 1.0  # the router brought each onto one gateway
    assert on.broker_copies_per_message * 2 <= off.broker_copies_per_message
    assert on.migrations > 0
    for report in (off, on):
        assert report.events_published > 0
        assert (report.events_lost, report.events_duplicated) == (0, 0)
