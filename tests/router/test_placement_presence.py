"""Presence: who is connected, how many times, to which workflows; ghosts expire."""

from __future__ import annotations

import pytest

from frys.router.placement import Counts, Presence


def report(*agents: str, workflow: str = "w", connections: dict[str, int] | None = None) -> Counts:
    subs = {(a, workflow): 1.0 for a in agents}
    return Counts(subscriptions=subs, connections=connections or {})


def test_an_agent_no_report_names_is_gone_within_the_ttl() -> None:
    """Reports every 2 s; b disconnects at 10 s: from 40 s on it is no connection."""
    p = Presence(agent_ttl=30.0, subscription_ttl=12.0)
    t = 0.0
    while t <= 60.0:
        p.observe(report("a", "b") if t <= 10.0 else report("a"), t)
        if t >= 10.0 + 30.0:
            assert set(p.live()) == {"a"}
        t += 2.0
    assert p.connections() == 1


def test_a_stalled_feed_expires_nobody() -> None:
    """Time is report time: with no report at all, nobody is declared gone (gateway
    heartbeats say whether gateways are down; an empty table would clear KV)."""
    p = Presence(agent_ttl=30.0)
    p.observe(report("a", "b"), 0.0)
    assert set(p.live()) == {"a", "b"}  # still, whatever the wall clock says now
    p.observe(report("a"), 29.0)
    assert set(p.live()) == {"a", "b"}
    p.observe(report("a"), 30.0)
    assert set(p.live()) == {"a"}


def test_reports_far_apart_keep_everyone_they_name() -> None:
    """A caller reporting once a minute keeps every agent it names in each report."""
    p = Presence(agent_ttl=30.0, subscription_ttl=12.0)
    for t in (0.0, 60.0, 120.0):
        p.observe(report("a", "b"), t)
        assert p.live()["a"].workflows == {"w"}
    assert set(p.live()) == {"a", "b"}


def test_a_subscription_ends_when_the_agents_report_leaves_it_out() -> None:
    """A member that switches is a member of the new workflow only, at once."""
    p = Presence(agent_ttl=30.0, subscription_ttl=10.0)
    p.observe(Counts(subscriptions={("a", "old"): 1.0, ("a", "keep"): 1.0}), 0.0)
    p.observe(Counts(subscriptions={("a", "new"): 1.0, ("a", "keep"): 1.0}), 5.0)
    assert p.workflows("a") == {"new", "keep"}


def test_a_subscription_no_report_repeats_lapses() -> None:
    """A report that names none of the agent's subscriptions keeps them, for a while."""
    p = Presence(agent_ttl=30.0, subscription_ttl=10.0)
    p.observe(Counts(subscriptions={("a", "w"): 1.0}), 0.0)
    p.observe(Counts(publishes={("a", "v"): 2.0}), 9.5)
    assert p.workflows("a") == {"w"}
    p.observe(Counts(publishes={("a", "v"): 2.0}), 10.0)
    assert p.workflows("a") == frozenset()
    assert p.is_live("a")


def test_each_connection_of_an_agent_counts() -> None:
    """An agent connected twice (two gateways) brings two connections."""
    p = Presence()
    p.observe(report("a", "b", connections={"a": 2}), 0.0)
    assert p.live()["a"].connections == 2
    assert p.live()["b"].connections == 1
    assert p.connections() == 3


def test_zero_connections_means_closed() -> None:
    p = Presence()
    p.observe(report("a", "b"), 0.0)
    p.observe(report("b", connections={"a": 0}), 1.0)
    assert set(p.live()) == {"b"}


def test_senders_are_live_recipients_are_not() -> None:
    p = Presence()
    p.observe(Counts(direct={("a", "b"): 1.0}, publishes={("c", "w"): 2.0}), 0.0)
    assert set(p.live()) == {"a", "c"}
    assert p.workflows("c") == frozenset()  # publishing is not subscribing


def test_forget_removes_at_once() -> None:
    p = Presence()
    p.observe(report("a", "b"), 0.0)
    p.forget(["a"])
    assert set(p.live()) == {"b"}


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_connections_must_be_counts(bad: object) -> None:
    with pytest.raises(ValueError, match="connections"):
        Presence().observe(Counts(connections={"a": bad}), 0.0)  # type: ignore[dict-item]


def test_time_must_not_go_backwards() -> None:
    p = Presence()
    p.observe(Counts(), 5.0)
    with pytest.raises(ValueError, match="backwards"):
        p.observe(Counts(), 4.0)
