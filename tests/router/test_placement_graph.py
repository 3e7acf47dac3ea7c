"""The interaction graph: decay by half-life, pruning, strict inputs, rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frys.router.placement import Counts, InteractionGraph, merge_counts


def graph(half_life: float = 100.0, prune_below: float = 0.01) -> InteractionGraph:
    return InteractionGraph(half_life, prune_below)


def test_weights_halve_every_half_life() -> None:
    g = graph()
    g.observe(Counts(publishes={("a", "w"): 8.0}, direct={("a", "b"): 4.0}), now=0.0)
    g.advance(100.0)
    assert g.tie("a", "w") == pytest.approx(4.0)
    assert g.published("w") == pytest.approx(4.0)
    assert g.direct("a", "b") == pytest.approx(2.0)
    g.advance(300.0)
    assert g.tie("a", "w") == pytest.approx(1.0)


def test_subscriptions_make_members_not_message_weight() -> None:
    """Membership is presence (who is subscribed now); message weight is messages."""
    g = graph()
    g.observe(Counts(subscriptions={("a", "w1"): 1.0}, publishes={("a", "w2"): 5.0}), 0.0)
    assert g.tie("a", "w1") == 0.0
    assert g.tie("a", "w2") == pytest.approx(5.0)
    assert g.presence.workflows("a") == {"w1"}


def test_direct_messages_are_symmetric_and_self_messages_ignored() -> None:
    g = graph()
    g.observe(Counts(direct={("a", "b"): 3.0, ("b", "a"): 1.0, ("c", "c"): 9.0}), 0.0)
    assert g.direct("a", "b") == g.direct("b", "a") == pytest.approx(4.0)
    assert "c" not in g.agents()
    assert g.edge_count() == 1


def test_dead_ties_are_pruned_and_agents_forgotten() -> None:
    g = graph(half_life=10.0, prune_below=0.5)
    g.observe(Counts(publishes={("a", "w"): 1.0}, direct={("b", "c"): 100.0}), 0.0)
    g.advance(10.0)  # a's tie is now 0.5: kept
    assert g.agents() == {"a", "b", "c"}
    g.advance(11.0)  # below 0.5: gone
    assert g.agents() == {"b", "c"}
    assert g.ties("a") == {}
    assert g.workflows() == set()
    g.advance(200.0)
    assert g.agents() == set()
    assert g.edge_count() == 0


def test_time_must_not_go_backwards() -> None:
    g = graph()
    g.observe(Counts(), 5.0)
    with pytest.raises(ValueError, match="backwards"):
        g.observe(Counts(), 4.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_counts_must_be_non_negative(bad: float) -> None:
    g = graph()
    with pytest.raises(ValueError, match="non-negative"):
        g.observe(Counts(direct={("a", "b"): bad}), 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        g.observe(Counts(publishes={("a", "w"): bad}), 0.0)


def test_copy_is_independent() -> None:
    g = graph()
    g.observe(Counts(subscriptions={("a", "w"): 1.0}, direct={("a", "b"): 2.0}), 0.0)
    twin = g.copy()
    twin.observe(Counts(subscriptions={("c", "w"): 1.0}, direct={("a", "b"): 2.0}), 0.0)
    assert g.direct("a", "b") == pytest.approx(2.0)
    assert twin.direct("a", "b") == pytest.approx(4.0)
    assert not g.presence.is_live("c") and twin.presence.is_live("c")


def test_merge_counts_adds_reports_of_several_gateways() -> None:
    merged = merge_counts(
        [
            Counts(publishes={("a", "w"): 1.0}, direct={("a", "b"): 2.0}, connections={"a": 1}),
            Counts(
                publishes={("a", "w"): 3.0},
                subscriptions={("a", "w"): 1.0},
                connections={"a": 1, "b": 1},
            ),
        ]
    )
    assert merged.publishes == {("a", "w"): 4.0}
    assert merged.subscriptions == {("a", "w"): 1.0}
    assert merged.direct == {("a", "b"): 2.0}
    assert merged.connections == {"a": 2, "b": 1}  # one per gateway session


@pytest.mark.parametrize("every", [2.0, 5.0, 60.0])
def test_a_steady_rate_is_read_back_at_any_reporting_rhythm(every: float) -> None:
    """Decayed sums divided by the window give messages per second, whether gateways
    report every 2 s or every minute, early on as well as in the long run."""
    g = graph(half_life=600.0)
    rate = 3.0
    for i in range(1, 200):
        g.observe(Counts(publishes={("a", "w"): rate * every}), i * every)
        if i in (3, 199):
            assert g.published("w") / g.window() == pytest.approx(rate, rel=0.05)


@given(
    weight=st.floats(1.0, 1e6),
    steps=st.lists(st.floats(0.0, 500.0), min_size=1, max_size=6),
    half_life=st.floats(1.0, 1000.0),
)
def test_decay_depends_only_on_elapsed_time(
    weight: float, steps: list[float], half_life: float
) -> None:
    """Ageing in several steps equals ageing at once: reports can come at any rhythm."""
    stepped = InteractionGraph(half_life, prune_below=0.0)
    direct = InteractionGraph(half_life, prune_below=0.0)
    for g in (stepped, direct):
        g.observe(Counts(direct={("a", "b"): weight}), 0.0)
    now = 0.0
    for step in steps:
        now += step
        stepped.advance(now)
    direct.advance(now)
    expected = weight * 0.5 ** (now / half_life)
    assert stepped.direct("a", "b") == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert direct.direct("a", "b") == pytest.approx(expected, rel=1e-9, abs=1e-300)


@given(
    reports=st.lists(
        st.dictionaries(
            st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd")),
            st.floats(0.0, 100.0),
            max_size=6,
        ),
        max_size=5,
    )
)
def test_weights_stay_at_or_above_the_pruning_floor(
    reports: list[dict[tuple[str, str], float]],
) -> None:
    """Pruning happens as weights age: after any ageing nothing below the floor is kept."""
    g = InteractionGraph(half_life=30.0, prune_below=0.5)
    for i, direct in enumerate(reports):
        g.observe(Counts(direct=direct), now=i * 20.0)
    g.advance(len(reports) * 20.0 + 1.0)
    for a in g.agents():
        for b, w in g.peers(a).items():
            assert w >= 0.5
            assert g.direct(b, a) == w
