"""Consistent hashing: a stable order of gateways per key, the same from any router."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frys.router.placement import BoundedRing, NoGatewayError

GATEWAYS = [f"gw-{i}" for i in range(8)]
RING = BoundedRing(GATEWAYS)
REVERSED = BoundedRing(reversed(GATEWAYS))


@given(key=st.text(min_size=1, max_size=20))
def test_walk_visits_every_gateway_once_in_a_stable_order(key: str) -> None:
    walk = RING.walk(key)
    assert sorted(walk) == sorted(GATEWAYS)
    assert walk == REVERSED.walk(key)


def test_a_joining_gateway_takes_about_its_share_of_keys_and_only_those() -> None:
    before, after = BoundedRing(GATEWAYS), BoundedRing([*GATEWAYS, "gw-new"])
    keys = [f"wf:{i}" for i in range(4000)]
    changed = [k for k in keys if before.walk(k)[0] != after.walk(k)[0]]
    assert all(after.walk(k)[0] == "gw-new" for k in changed)
    assert abs(len(changed) / len(keys) - 1 / 9) < 0.04


def test_place_walks_past_full_gateways_and_falls_back_to_the_least_loaded() -> None:
    ring = BoundedRing(GATEWAYS)
    walk = ring.walk("wf:x")
    loads = {walk[0]: 10.0, walk[1]: 10.0}
    assert ring.place("wf:x", 1, loads, cap=10.0) == walk[2]
    assert ring.place("wf:x", 1, {}, cap=10.0) == walk[0]
    full = {g: 10.0 + i for i, g in enumerate(GATEWAYS)}
    assert ring.place("wf:x", 1, full, cap=10.0) == "gw-0"


def test_the_first_choice_depends_on_the_key_and_gateways_only() -> None:
    """Nothing but the key and the gateway set decides: a second ring (a restarted
    router) answers alike, and the spread over gateways is even."""
    keys = [f"wf:w{i}" for i in range(4000)]
    again = BoundedRing(list(GATEWAYS))
    assert [RING.first(k) for k in keys] == [again.first(k) for k in keys]
    counts = {g: 0 for g in GATEWAYS}
    for k in keys:
        counts[RING.first(k)] += 1
    assert max(counts.values()) < 1.35 * len(keys) / len(GATEWAYS)


def test_an_empty_ring_refuses() -> None:
    with pytest.raises(NoGatewayError):
        BoundedRing([]).walk("wf:x")
