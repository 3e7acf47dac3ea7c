"""One round on synthetic units: caps hold, moves pay for themselves, nothing moves twice."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from frys.router.placement import Capacity, MoveReason, PlacementConfig
from frys.router.placement.blocks import NOWHERE, Blocks
from frys.router.placement.packing import Packing, pack
from frys.router.placement.state import Pace, RoundState

CONFIG = PlacementConfig(min_split_size=2)
EPS = 1e-9


def build(
    units: Sequence[tuple[int, Sequence[int], int]],
    gateways: int,
    weights: Sequence[float],
    *,
    edges: Sequence[tuple[int, int, float]] = (),
    pinned: frozenset[int] = frozenset(),
    regrouped: frozenset[int] = frozenset(),
    evacuated: frozenset[int] = frozenset(),
    joining: frozenset[int] = frozenset(),
    expected: dict[int, float] | None = None,
    budget: float = 1.0,
    migration_cost: float = 50.0,
    receivers: int | None = None,
) -> RoundState:
    """``units`` are (size, workflows, gateway or -1); gateways beyond ``receivers`` drain."""
    adj: list[dict[int, float]] = [{} for _ in units]
    for a, b, w in edges:
        adj[a][b] = adj[a].get(b, 0.0) + w
        adj[b][a] = adj[b].get(a, 0.0) + w
    blocks = Blocks(list(weights), 0.5)
    for (size, workflows, where), row in zip(units, adj, strict=True):
        blocks.add(size, dict.fromkeys(workflows, size), row, where)
    active = list(range(receivers if receivers is not None else gateways))
    total = sum(u[0] for u in units)
    return RoundState(
        blocks=blocks,
        receivers=active,
        capacity=Capacity.for_load(total, len(active), CONFIG),
        pace=Pace(
            budget=max(1, int(budget * total)),
            migration_cost=migration_cost,
            payback_horizon=CONFIG.payback_horizon,
            workflow_moves=CONFIG.workflow_moves,
        ),
        pinned=pinned,
        regrouped=regrouped,
        evacuated=evacuated,
        joining=joining,
        expected=expected or {},
    )


def loads(state: RoundState) -> list[int]:
    return [state.load(b) for b in state.receivers]


def moved(packing: Packing, state: RoundState) -> int:
    return sum(state.blocks.size[m.node] for m in packing.moves)


def again(state: RoundState, **changes: object) -> RoundState:
    """The next round on the outcome of ``state``, nothing else changed."""
    b = state.blocks
    units = [(b.size[v], list(b.counts[v]), b.block[v]) for v in range(len(b))]
    edges = [(v, u, w) for v in range(len(b)) for u, w in b.adj[v].items() if v < u]
    kwargs: dict[str, object] = {"edges": edges, **changes}
    return build(units, len(state.receivers), b.weight, **kwargs)  # type: ignore[arg-type]


unit_sizes = st.lists(st.integers(1, 40), min_size=20, max_size=90)


@settings(max_examples=40, deadline=None)
@given(sizes=unit_sizes, k=st.integers(2, 9), seed=st.integers(0, 1000))
def test_a_fresh_placement_stays_under_the_fill_cap(sizes: list[int], k: int, seed: int) -> None:
    workflows = [[(i * 7 + seed) % 13] for i in range(len(sizes))]
    state = build([(s, w, NOWHERE) for s, w in zip(sizes, workflows, strict=True)], k, [1.0] * 13)
    pack(state)
    assert NOWHERE not in state.blocks.block
    # under the fill cap, unless whole units cannot be packed that tight
    limit = max(state.capacity.fill, state.capacity.mean + max(sizes))
    assert max(loads(state)) <= limit + EPS


@settings(max_examples=40, deadline=None)
@given(
    sizes=unit_sizes,
    k=st.integers(2, 9),
    start=st.lists(st.integers(0, 8), min_size=90, max_size=90),
)
def test_the_hard_cap_holds_whatever_the_start(sizes: list[int], k: int, start: list[int]) -> None:
    units = [(s, [i % 5], start[i] % k) for i, s in enumerate(sizes)]
    state = build(units, k, [1.0] * 5, budget=0.01)
    pack(state)
    cap = state.capacity
    assert max(loads(state)) <= max(cap.hard, cap.mean + max(sizes)) + EPS


def test_replanning_its_own_outcome_moves_nothing() -> None:
    units = [(10 + i % 17, [i % 11, (i * 3) % 11][: 1 + i % 2], NOWHERE) for i in range(80)]
    state = build(
        units, 4, [1.0 + w for w in range(11)], edges=[(i, i + 1, 0.2) for i in range(79)]
    )
    pack(state)
    for _ in range(2):
        state = again(state)
        packing = pack(state)
        assert packing.moves == () and state.spent == 0


def test_a_leaver_moves_only_its_own_units() -> None:
    units = [(5 + i % 9, [i % 10], i % 4) for i in range(60)]
    state = build(units, 4, [2.0] * 10)
    pack(state)
    before = list(state.blocks.block)
    gone = [(s, w, NOWHERE if b == 3 else b) for (s, w, _), b in zip(units, before, strict=True)]
    leaving = frozenset(v for v, b in enumerate(before) if b == 3)
    after = build(gone, 3, [2.0] * 10, evacuated=leaving)
    pack(after)
    changed = {v for v, b in enumerate(after.blocks.block) if b != before[v]}
    assert changed == leaving
    assert max(loads(after)) <= after.capacity.fill + EPS


def test_a_joiner_gets_its_share_within_the_budget_and_rounds() -> None:
    units = [(3 + i % 5, [i % 30], i % 4) for i in range(240)]
    state = build(units, 5, [1.0] * 30, budget=0.15, joining=frozenset({4}))
    total = sum(u[0] for u in units)
    for _ in range(3):
        pack(state)
        state = again(state, budget=0.15, joining=frozenset({4}))
    share = state.load(4) / total
    assert abs(share - 0.2) <= 0.02
    assert max(loads(state)) <= state.capacity.fill + EPS


def test_shedding_moves_the_unit_that_covers_the_excess() -> None:
    # mean 100, hard cap 125: gateway 0 holds 140, 15 + tolerance 2 too many
    units = [(100, [0], 0), (3, [1], 0), (17, [2], 0), (20, [3], 0), (60, [4], 1), (100, [5], 2)]
    units += [(100, [6], 3)]
    state = build(units, 4, [1.0] * 7, budget=0.0)
    packing = pack(state)
    assert [(m.node, m.reason) for m in packing.moves] == [(2, MoveReason.OVERLOAD)]


def test_a_forecast_overload_is_shed_before_it_happens() -> None:
    # mean 97.5: gateway 0 holds 120, between the fill cap (107) and the hard cap (122)
    units = [(100, [0], 0), (10, [1], 0), (10, [5], 0), (90, [2], 1), (90, [3], 2)]
    units += [(90, [4], 3)]
    calm = build(units, 4, [1.0] * 6)
    assert pack(calm).moves == ()  # in the band: left alone
    growing = build(units, 4, [1.0] * 6, expected={0: 20.0})  # 20 more before next round
    packing = pack(growing)
    assert {m.reason for m in packing.moves} == {MoveReason.OVERLOAD}
    assert growing.projected(0) <= growing.capacity.hard


def test_a_lone_member_rejoins_and_a_workflow_never_follows_one() -> None:
    units = [(40, [0], 0), (1, [0], 1), (40, [1], 1), (40, [2], 2), (40, [3], 2)]
    state = build(units, 3, [5.0, 1.0, 1.0, 1.0])
    packing = pack(state)
    assert [(m.node, m.target) for m in packing.moves] == [(1, 0)]
    # the other way round: the 40 never go to the one, even when it pays on paper
    units = [(1, [0], 0), (40, [0], 1), (40, [1], 0), (40, [2], 2), (40, [3], 2)]
    state = build(units, 3, [500.0, 1.0, 1.0, 1.0])
    assert [(m.node, m.target) for m in pack(state).moves] == [(0, 1)]


def test_a_move_must_pay_for_itself() -> None:
    units = [(30, [0], 0), (10, [3], 0), (5, [0], 1), (45, [1], 1), (60, [2], 2)]
    cheap = build(units, 3, [0.5, 1.0, 1.0, 1.0])  # saves 0.5/s × 300 s < 5 × 50
    assert pack(cheap).moves == ()
    dear = build(units, 3, [2.0, 1.0, 1.0, 1.0])  # saves 600 > 250
    assert [m.node for m in pack(dear).moves] == [2]


def test_units_in_their_dwell_time_move_only_when_forced() -> None:
    units = [(30, [0], 0), (1, [0], 1), (30, [1], 1), (30, [2], 2)]
    assert pack(build(units, 3, [5.0, 1.0, 1.0], pinned=frozenset({1}))).moves == ()
    # ... unless the unit's workflows changed: it follows them
    state = build(units, 3, [5.0, 1.0, 1.0], pinned=frozenset({1}), regrouped=frozenset({1}))
    assert [(m.node, m.reason) for m in pack(state).moves] == [(1, MoveReason.REGROUP)]


def test_a_big_workflow_gathers_its_members_from_small_ones() -> None:
    """Members of workflow 0 (heavy) that also belong to a small workflow sit, one each,
    on two other gateways: moving either alone saves nothing (the other keeps workflow 0
    there), moving both does."""
    units = [
        (60, [0], 0),
        (2, [0, 1], 1),
        (2, [0, 2], 2),
        (20, [1], 1),
        (20, [2], 2),
        (40, [3], 1),
        (40, [4], 2),
    ]
    state = build(units, 3, [30.0, 0.5, 0.5, 1.0, 1.0])
    pack(state)
    assert state.blocks.spread(0) == 1
    assert state.blocks.block[1] == state.blocks.block[2] == 0


def test_making_room_never_moves_more_than_it_gathers() -> None:
    # mean 100: gateway 0 is at 100, the ten members of workflow 0 on gateway 1 fit there
    # only once the 8 of workflow 1 leave
    units = [(92, [0], 0), (8, [1], 0), (10, [0], 1), (90, [2], 1), (100, [3], 2)]
    state = build(units, 3, [40.0, 1.0, 1.0, 1.0])
    packing = pack(state)
    assert state.blocks.spread(0) == 1
    assert sorted(m.node for m in packing.moves) == [1, 2]
    assert moved(packing, state) <= 2 * 10
    # with only a bigger unit to make room with, nothing moves
    units = [(70, [0], 0), (30, [1], 0), (10, [0], 1), (90, [2], 1), (100, [3], 2)]
    state = build(units, 3, [40.0, 1.0, 1.0, 1.0])
    assert pack(state).moves == ()


def test_a_member_that_changed_workflows_joins_the_majority_even_without_gain() -> None:
    """Two members of workflow 0 sit on gateway 1, away from the forty on gateway 0: a
    newly arrived one (regrouped) goes at once even though the other stays."""
    units = [(40, [0], 0), (1, [0], 1), (1, [0], 1), (40, [1], 1), (40, [2], 2)]
    state = build(units, 3, [5.0, 1.0, 1.0], pinned=frozenset({1}), regrouped=frozenset({2}))
    packing = pack(state)
    assert [(m.node, m.target, m.reason) for m in packing.moves] == [(2, 0, MoveReason.REGROUP)]


def test_draining_moves_within_the_budget() -> None:
    units = [(10, [i % 6], i % 4) for i in range(40)]
    state = build(units, 4, [1.0] * 6, budget=0.1, receivers=3)
    pack(state, [3])
    assert state.load(3) == 100 - 40  # 40 connections (10 %) left the drainer
    assert all(r is MoveReason.EVACUATE for r in state.reason.values())
