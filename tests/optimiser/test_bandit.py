"""The arm selector: cheapest wins, with hysteresis; a change of regime re-converges."""

from __future__ import annotations

from frys.gateway.optimiser.bandit import ArmSelector
from frys.gateway.optimiser.cost import CostWeights, LinkClass

ARMS = ["a", "b", "c"]


def feed(s: ArmSelector, arm: str, ratio: float, enc: float = 1e-9, dec: float = 1e-9) -> None:
    s.observe(arm, "delta", 1000, int(ratio * 1000), enc * 1000, dec * 1000)


def test_the_cheapest_arm_wins_once_the_evidence_is_clear() -> None:
    s = ArmSelector(ARMS, LinkClass.SLOW, CostWeights(), dwell=2, initial="a")
    for _ in range(5):
        s.frame_sent("delta")
        feed(s, "a", 0.5)
        feed(s, "b", 0.2)
        feed(s, "c", 0.9)
        s.decide()
    assert s.current == "b"
    assert "b costs" in s.reason
    assert s.switches == 1


def test_a_small_advantage_does_not_make_it_flap() -> None:
    s = ArmSelector(ARMS, LinkClass.SLOW, CostWeights(), dwell=1, initial="a", hysteresis=0.15)
    for i in range(50):
        s.frame_sent("delta")
        feed(s, "a", 0.50 + 0.01 * (i % 2))
        feed(s, "b", 0.48)
        s.decide()
    assert s.current == "a"
    assert s.switches == 0


def test_a_change_of_regime_is_followed_quickly() -> None:
    s = ArmSelector(ARMS, LinkClass.SLOW, CostWeights(), dwell=8, initial="a")
    for _ in range(30):
        s.frame_sent("delta")
        feed(s, "a", 0.05)
        feed(s, "b", 0.5)
        s.decide()
    assert s.current == "a"
    switched_at = None
    for i in range(50):
        s.frame_sent("delta")
        feed(s, "a", 0.9)  # the sparse arm's data turned dense
        if i % 3 == 0:
            feed(s, "b", 0.5)
        if s.decide() == "b" and switched_at is None:
            switched_at = i
    assert switched_at is not None and switched_at < 10
    assert s.regime_changes >= 1


def test_a_slow_link_never_gets_more_bytes_for_a_cpu_saving() -> None:
    w = CostWeights(slow_bps=1e12)  # pretend bytes are free, so CPU would decide
    s = ArmSelector(ARMS, LinkClass.SLOW, w, dwell=0, initial="a")
    for _ in range(10):
        s.frame_sent("delta")
        feed(s, "a", 0.3, enc=1e-6)
        feed(s, "b", 0.6, enc=1e-9)
        s.decide()
    assert s.current == "a"


def test_probe_order_puts_unmeasured_arms_first_and_the_current_last() -> None:
    s = ArmSelector(ARMS, LinkClass.FAST, CostWeights(), initial="b")
    feed(s, "a", 0.5)
    feed(s, "b", 0.5)
    assert s.probe_order("delta") == ["c", "b"]  # "a" was just measured
    for _ in range(30):
        s.frame_sent("delta")
    assert s.probe_order("delta") == ["c", "a", "b"]  # promising, and due for a refresh
    d = s.describe()
    assert d["arm"] == "b" and set(d["cost_us_per_kb"]) == set(ARMS)
