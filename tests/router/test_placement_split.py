"""Cutting a group too big to move at once into pieces along its sub-teams."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from frys.router.placement.split import part_limit, split_members, sub_teams


def teams(count: int, size: int) -> tuple[list[str], dict[str, dict[str, float]]]:
    """``count`` sub-teams whose members message every team-mate, plus one weak link
    from each team to the next."""
    agents = [f"a{t:02d}-{i:02d}" for t in range(count) for i in range(size)]
    peers: dict[str, dict[str, float]] = {a: {} for a in agents}
    for t in range(count):
        team = agents[t * size : (t + 1) * size]
        for a in team:
            for b in team:
                if a != b:
                    peers[a][b] = 5.0
        nxt = agents[((t + 1) % count) * size]
        peers[team[0]][nxt] = peers[nxt][team[0]] = 0.5
    return agents, peers


def getter(peers: Mapping[str, Mapping[str, float]]) -> Callable[[str], Mapping[str, float]]:
    return lambda a: peers.get(a, {})


def test_sub_teams_are_found_and_deterministic() -> None:
    agents, peers = teams(4, 12)
    found = sub_teams(list(reversed(agents)), getter(peers), cap=12)
    assert found == sub_teams(agents, getter(peers), cap=12)
    assert sorted(map(len, found)) == [12, 12, 12, 12]
    assert all(len({a[:3] for a in team}) == 1 for team in found)  # one planted team each


def test_teams_merge_along_their_links_up_to_the_cap() -> None:
    agents, peers = teams(4, 10)
    found = sub_teams(agents, getter(peers), cap=20)
    assert sorted(map(len, found)) == [20, 20]


def test_pieces_keep_whole_teams_and_previous_pieces() -> None:
    agents, peers = teams(6, 10)
    pieces = split_members(agents, 3, 20, getter(peers), {})
    assert [len(p) for p in pieces] == [20, 20, 20]
    assert all(len({a[:3] for a in p}) == 2 for p in pieces)
    index = {a: i for i, p in enumerate(pieces) for a in p}
    newcomers = ["z-1", "z-2"]
    peers.update({n: {pieces[1][0]: 5.0} for n in newcomers})
    again = split_members([*agents, *newcomers], 4, 20, getter(peers), index)
    assert all(a in again[index[a]] for a in agents)  # nobody changed piece


@given(
    size=st.integers(2, 120),
    parts=st.integers(1, 6),
    previous=st.dictionaries(st.integers(0, 119), st.integers(0, 8), max_size=40),
)
def test_split_members_is_a_partition_within_the_limit(
    size: int, parts: int, previous: dict[int, int]
) -> None:
    agents = [f"a{i:03d}" for i in range(size)]
    limit = part_limit(size, parts, 0.05, 10**9)
    earlier = {f"a{i:03d}": p for i, p in previous.items() if i < size}
    pieces = split_members(agents, parts, limit, lambda a: {}, earlier)
    assert len(pieces) == parts
    assert sorted(a for p in pieces for a in p) == agents
    assert all(len(p) <= limit for p in pieces)
