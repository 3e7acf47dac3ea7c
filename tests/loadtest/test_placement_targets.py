"""Frys placement against its targets on the seeded 10k-agent workload, K = 8.

One simulation run feeds every assertion here; docs/placement.md shows the same table.
"""

from __future__ import annotations

import pytest

from frys.loadtest.placement_sim import Report, main, run
from frys.loadtest.placement_sim.workload import WorkloadSpec

K = 8
EPS = 1e-9


@pytest.fixture(scope="module")
def report() -> Report:
    return run(WorkloadSpec(seed=1), gateways=K, seed=1, steady_rounds=3, timing_repeats=1)


def test_the_workload_is_the_one_described(report: Report) -> None:
    """Baselines land where they were first measured, so the targets mean the same thing."""
    assert report.spec.agents == 10_000 and report.spec.workflows == 500
    random = report.row("random")
    assert 6.5 <= random.cost.fan_out <= 7.5
    assert 2.2 <= random.cost.copies <= 2.7
    hashed = report.row("hash by workflow")
    assert hashed.cost.fan_out == pytest.approx(1.0)
    assert hashed.cost.copies == pytest.approx(1.0)
    assert hashed.cost.busiest >= 1.8
    assert report.floor > 1.1  # the 1,800-agent workflow cannot fit one gateway


def test_broadcast_fan_out_is_at_the_floor(report: Report) -> None:
    assert report.row("frys").cost.fan_out <= report.floor + 0.05


def test_broker_copies_per_message(report: Report) -> None:
    assert report.row("frys").cost.copies <= 1.10


def test_busiest_gateway_in_steady_state(report: Report) -> None:
    frys = report.row("frys")
    assert frys.cost.busiest <= 1.10 + EPS
    assert frys.join_busiest <= 1.10 + EPS


def test_busiest_gateway_never_above_the_hard_cap(report: Report) -> None:
    frys = report.row("frys")
    assert frys.worst_busiest <= 1.25 + EPS
    assert frys.leave_busiest <= 1.25 + EPS


def test_a_join_moves_about_a_fair_share(report: Report) -> None:
    assert report.row("frys").join_moved <= 1 / (K + 1) + 0.02


def test_a_leave_moves_the_leavers_share(report: Report) -> None:
    """Every gateway in turn leaves. Beyond its own clients, only what the hard cap forces
    (its biggest unit fits no survivor's headroom) may move, plus the 0.02 allowance."""
    leaves = report.row("frys").leaves
    assert len(leaves) == K
    for leave in leaves:
        assert leave.moved <= leave.share + leave.forced_extra + 0.02, leave
    unforced = [x for x in leaves if x.forced_extra == 0]
    assert len(unforced) >= K // 2
    assert all(x.moved <= x.share + 0.02 for x in unforced)


def test_steady_traffic_moves_nobody(report: Report) -> None:
    assert report.steady_moved <= 0.001


def test_a_full_placement_is_quick(report: Report) -> None:
    """The benchmark measures < 1 s; the bound here only catches a blow-up on a busy box."""
    assert report.row("frys").seconds < 5.0


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--agents", "600", "--workflows", "40", "--largest", "150", "--gateways", "4"]
    assert main([*args, "--steady-rounds", "1", "--timing-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| frys |" in out and "| random |" in out
    assert "fan-out floor" in out
