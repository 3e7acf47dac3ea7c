"""Units: one per workflow, loners attached, oversized workflows cut along sub-teams."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from frys.router.placement import Capacity, Counts, InteractionGraph, PlacementConfig, UnitKind
from frys.router.placement.split import part_limit, split_members, sub_teams
from frys.router.placement.units import Units, build_units, choose_home, parts_for

CONFIG = PlacementConfig()


def capacity(mean: float, min_split_size: int = 50) -> Capacity:
    return Capacity(mean, 1.1 * mean, 1.25 * mean, 0.8 * mean, 0.02 * mean, min_split_size)


def observed(
    members: Mapping[str, Iterable[str]], direct: Mapping[tuple[str, str], float] = {}
) -> InteractionGraph:
    g = InteractionGraph.from_config(CONFIG)
    subs = {(a, w): 1.0 for w, agents in members.items() for a in agents}
    g.observe(Counts(subscriptions=subs, direct=dict(direct)), 0.0)
    return g


def teams_workflow(
    workflow: str, teams: int, size: int, start: int = 0
) -> tuple[list[str], dict[tuple[str, str], float]]:
    """A workflow of ``teams`` sub-teams whose members message every team-mate."""
    agents = [f"{workflow}-a{i:03d}" for i in range(start, start + teams * size)]
    direct = {}
    for t in range(teams):
        team = agents[t * size : (t + 1) * size]
        for i, a in enumerate(team):
            for b in team[i + 1 :]:
                direct[(a, b)] = 5.0
    return agents, direct


def test_each_workflow_is_one_unit() -> None:
    g = observed({"w1": ["a", "b"], "w2": ["c"], "w3": ["d", "e", "f"]})
    units = build_units(g, capacity(100), CONFIG)
    assert {u.id: set(u.agents) for u in units.units.values()} == {
        "wf:w1": {"a", "b"},
        "wf:w2": {"c"},
        "wf:w3": {"d", "e", "f"},
    }
    assert all(u.kind is UnitKind.WORKFLOW for u in units.units.values())
    assert units.unit_of["e"] == "wf:w3"
    assert units.parts["w3"] == ("wf:w3",)


def test_home_is_the_strongest_tie_unless_the_old_one_is_close() -> None:
    assert choose_home({"w1": 10.0, "w2": 5.0}, None, 1.25) == "w1"
    assert choose_home({"w1": 10.0, "w2": 9.0}, "w2", 1.25) == "w2"
    assert choose_home({"w1": 13.0, "w2": 10.0}, "w2", 1.25) == "w1"
    assert choose_home({"w1": 5.0, "w2": 5.0}, None, 1.25) == "w1"  # ties: by id
    assert choose_home({}, "w1", 1.25) is None


def test_agents_without_workflow_join_the_unit_they_message_most() -> None:
    g = observed(
        {"w1": ["a", "b"], "w2": ["c", "d"]},
        {("x", "a"): 1.0, ("x", "c"): 2.0, ("x", "d"): 2.0, ("y", "z"): 3.0},
    )
    units = build_units(g, capacity(100), CONFIG)
    assert units.unit_of["x"] == "wf:w2"
    assert "x" in units.units["wf:w2"].agents
    assert "x" not in units.home  # attached, not a member: w2's broadcasts do not reach it
    assert units.units[units.unit_of["y"]].kind is UnitKind.SOLO
    assert units.unit_of["y"] == "agent:y" and units.unit_of["z"] == "agent:z"


def test_oversized_workflow_is_cut_along_its_sub_teams() -> None:
    agents, direct = teams_workflow("big", teams=4, size=30)
    g = observed({"big": agents, "small": ["s1", "s2"]}, direct)
    cap = capacity(60)  # fill 66: 120 members need 2 parts
    units = build_units(g, cap, CONFIG)
    parts = [units.units[u] for u in units.parts["big"]]
    assert [p.kind for p in parts] == [UnitKind.PART, UnitKind.PART]
    assert all(p.size <= cap.fill for p in parts)
    for t in range(4):
        team = set(agents[t * 30 : (t + 1) * 30])
        assert sum(bool(team & p.agents) for p in parts) == 1, "a sub-team was cut"
    assert units.units["wf:small"].kind is UnitKind.WORKFLOW


def test_cut_does_not_follow_community_label_churn() -> None:
    """A different community seed (labels churn) leaves every member in its part."""
    agents, direct = teams_workflow("big", teams=6, size=20)
    # weak links between teams so that communities are not trivially exact
    for t in range(5):
        direct[(agents[t * 20], agents[(t + 1) * 20 + 1])] = 1.0
    g = observed({"big": agents}, direct)
    cap = capacity(45)
    first = build_units(g, cap, CONFIG)
    for seed in (1, 2, 3, 99):
        again = build_units(g, cap, PlacementConfig(seed=seed), previous=first)
        assert again.unit_of == first.unit_of


def test_newcomers_do_not_reshuffle_a_cut_workflow() -> None:
    agents, direct = teams_workflow("big", teams=4, size=30)
    g = observed({"big": agents}, direct)
    cap = capacity(60)
    first = build_units(g, cap, CONFIG)
    more, more_direct = teams_workflow("big", teams=1, size=6, start=200)
    g.observe(Counts(subscriptions={(a, "big"): 1.0 for a in more}, direct=more_direct), 1.0)
    again = build_units(g, cap, CONFIG, previous=first)
    assert {a: again.unit_of[a] for a in agents} == {a: first.unit_of[a] for a in agents}
    assert len({again.unit_of[a] for a in more}) == 1, "newcomers of one team split up"


def test_a_cut_workflow_is_rejoined_only_with_margin() -> None:
    cap = capacity(100)  # fill 110
    assert parts_for(120, cap, previous=0, merge_below=0.9) == 2
    assert parts_for(105, cap, previous=2, merge_below=0.9) == 2  # just under the cap: stays cut
    assert parts_for(95, cap, previous=2, merge_below=0.9) == 1  # 95 < 0.9 × 110
    assert parts_for(40, capacity(10), previous=0, merge_below=0.9) == 1  # tiny: never cut


def test_units_partition_the_agents() -> None:
    agents, direct = teams_workflow("big", teams=3, size=25)
    direct[("loner", agents[0])] = 1.0
    g = observed({"big": agents, "w2": ["q", "r"]}, direct)
    units = build_units(g, capacity(30), CONFIG)
    seen: list[str] = []
    for unit in units.units.values():
        seen.extend(unit.agents)
        assert all(units.unit_of[a] == unit.id for a in unit.agents)
    assert sorted(seen) == sorted(g.agents())
    assert isinstance(units, Units)


def test_sub_teams_are_deterministic_and_found() -> None:
    agents, direct = teams_workflow("w", teams=3, size=10)
    peers = observed({"w": agents}, direct).peers
    teams = sub_teams(agents, peers, seed=7)
    assert teams == sub_teams(list(reversed(agents)), peers, seed=7)
    assert sorted(map(frozenset, teams), key=min) == sorted(
        (frozenset(agents[i * 10 : (i + 1) * 10]) for i in range(3)), key=min
    )


@given(
    size=st.integers(2, 80),
    parts=st.integers(2, 5),
    slack=st.floats(0.0, 0.3),
    previous=st.dictionaries(st.integers(0, 79), st.integers(0, 6), max_size=40),
    edges=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 79)), max_size=60),
)
def test_split_members_is_a_partition_within_the_limit(
    size: int,
    parts: int,
    slack: float,
    previous: dict[int, int],
    edges: list[tuple[int, int]],
) -> None:
    members = [f"m{i:02d}" for i in range(size)]
    adjacency: dict[str, dict[str, float]] = {m: {} for m in members}
    for i, j in edges:
        if i < size and j < size and i != j:
            adjacency[members[i]][members[j]] = adjacency[members[j]][members[i]] = 1.0
    before = {members[i]: p for i, p in previous.items() if i < size}
    limit = part_limit(size, parts, slack, ceiling=size)
    cut = split_members(members, parts, limit, lambda a: adjacency[a], before, seed=3)
    assert len(cut) == parts
    assert sorted(a for part in cut for a in part) == members
    assert all(len(part) <= limit for part in cut)
    kept = {a: i for i, part in enumerate(cut) for a in part}
    for agent, index in before.items():
        if index < parts and sum(1 for p in before.values() if p == index) <= limit:
            assert kept[agent] == index, "a member lost its part although it had room"
