"""The cost of an arrangement, and exact gains of moves (what every phase relies on)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frys.router.placement.blocks import NOWHERE, Blocks


def build(
    nodes: list[tuple[int, list[int], int]],
    edges: list[tuple[int, int, float]],
    weights: list[float],
    direct_weight: float = 0.5,
) -> Blocks:
    adj: list[dict[int, float]] = [{} for _ in nodes]
    for a, b, w in edges:
        if a < len(nodes) and b < len(nodes) and a != b:
            adj[a][b] = adj[a].get(b, 0.0) + w
            adj[b][a] = adj[b].get(a, 0.0) + w
    blocks = Blocks(weights, direct_weight)
    for (size, workflows, block), row in zip(nodes, adj, strict=True):
        counts = {w % len(weights): size for w in workflows}
        blocks.add(size, counts, row, block)
    return blocks


node = st.tuples(st.integers(1, 9), st.lists(st.integers(0, 5), max_size=3), st.integers(-1, 3))
instance = {
    "nodes": st.lists(node, min_size=2, max_size=25),
    "edges": st.lists(
        st.tuples(st.integers(0, 24), st.integers(0, 24), st.floats(0.1, 5.0)), max_size=30
    ),
    "weights": st.lists(st.floats(0.1, 10.0), min_size=6, max_size=6),
}


@settings(max_examples=80, deadline=None)
@given(**instance, data=st.data())
def test_a_gain_is_the_cost_it_saves(
    nodes: list[tuple[int, list[int], int]],
    edges: list[tuple[int, int, float]],
    weights: list[float],
    data: st.DataObject,
) -> None:
    blocks = build([n if n[2] != NOWHERE else (n[0], n[1], 0) for n in nodes], edges, weights)
    v = data.draw(st.integers(0, len(nodes) - 1))
    target = data.draw(st.integers(0, 4))
    before = blocks.cost()
    gain = blocks.gain(v, target)
    assert blocks.gains(v, range(5)).get(target, 0.0) == pytest.approx(gain)
    source = blocks.block[v]
    blocks.put(v, target)
    assert before - blocks.cost() == pytest.approx(gain, abs=1e-9)
    blocks.put(v, source)
    assert blocks.cost() == pytest.approx(before)


@settings(max_examples=50, deadline=None)
@given(**instance)
def test_loads_and_member_counts_follow_every_move(
    nodes: list[tuple[int, list[int], int]],
    edges: list[tuple[int, int, float]],
    weights: list[float],
) -> None:
    blocks = build(nodes, edges, weights)
    for v in range(len(nodes)):
        blocks.put(v, (blocks.block[v] + 2) % 5)
    loads: dict[int, int] = {}
    phi: list[dict[int, int]] = [{} for _ in weights]
    for v, b in enumerate(blocks.block):
        loads[b] = loads.get(b, 0) + blocks.size[v]
        for w, c in blocks.counts[v].items():
            phi[w][b] = phi[w].get(b, 0) + c
        assert v in blocks.on[b]
    assert {b: n for b, n in blocks.load.items() if n} == loads
    assert blocks.phi == phi


def test_the_last_member_leaving_saves_the_workflow_and_the_first_one_costs_it() -> None:
    # workflow 0 (weight 4): nodes 0 and 3 on block 0, node 1 alone on block 1;
    # workflow 1 (weight 1): node 2, alone anywhere
    blocks = build([(5, [0], 0), (1, [0], 1), (3, [1], 1), (2, [0], 0)], [], [4.0, 1.0])
    assert blocks.spread(0) == 2
    assert blocks.gain(1, 0) == pytest.approx(4.0)  # block 1 loses its last member
    assert blocks.gain(0, 2) == pytest.approx(-4.0)  # block 2 gets a first one
    assert blocks.gain(2, 0) == pytest.approx(0.0)  # workflow 1 just changes block
    assert blocks.neighbours(1) == {0}
