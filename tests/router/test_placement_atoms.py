"""Units: agents with the same workflows on the same gateway move together."""

from __future__ import annotations

from collections.abc import Mapping

from frys.router.placement import Member, UnitKind
from frys.router.placement.atoms import build_atoms, merged

HOLDERS = frozenset({"g1", "g2"})


def members(spec: Mapping[str, tuple[str, ...]], connections: int = 1) -> dict[str, Member]:
    return {a: Member(connections, frozenset(ws)) for a, ws in spec.items()}


def no_peers(agent: str) -> Mapping[str, float]:
    return {}


def test_units_are_workflows_on_a_gateway() -> None:
    live = members({"a": ("w",), "b": ("w",), "c": ("w",), "d": ("w", "v"), "e": (), "f": ("v",)})
    located = {"a": "g1", "b": "g1", "c": "g2", "d": "g1", "e": "g2", "f": "gone"}
    atoms = build_atoms(live, located, HOLDERS, no_peers, 1.0, 50, {})
    by_agents = {frozenset(u.agents): (u, atoms.located[i]) for i, u in enumerate(atoms.units)}
    assert by_agents[frozenset("ab")][1] == "g1"
    assert by_agents[frozenset("c")][1] == "g2"
    assert by_agents[frozenset("d")][0].kind is UnitKind.SHARED
    assert by_agents[frozenset("e")][0].kind is UnitKind.SOLO
    assert by_agents[frozenset("f")][1] is None  # its gateway is gone: no gateway
    assert len({u.id for u in atoms.units}) == len(atoms.units)


def test_connections_of_one_agent_add_up() -> None:
    atoms = build_atoms(members({"a": ("w",), "b": ("w",)}, 3), {}, HOLDERS, no_peers, 1.0, 50, {})
    assert [u.size for u in atoms.units] == [6]
    assert atoms.counts[0] == {0: 6}


def test_agents_whose_workflows_changed_move_on_their_own() -> None:
    live = members({f"a{i}": ("w",) for i in range(5)})
    located = dict.fromkeys(live, "g1")
    atoms = build_atoms(live, located, HOLDERS, no_peers, 1.0, 50, {}, 0.05, frozenset({"a3"}))
    assert sorted(len(u.agents) for u in atoms.units) == [1, 4]


def test_big_groups_are_cut_into_pieces_that_stay() -> None:
    live = members({f"a{i:03d}": ("w",) for i in range(100)})
    located = dict.fromkeys(live, "g1")
    atoms = build_atoms(live, located, HOLDERS, no_peers, 1.0, 30, {})
    assert len(atoms.units) == 4 and max(u.size for u in atoms.units) <= 30
    live.update(members({"zz": ("w",)}))
    again = build_atoms(live, {**located, "zz": "g1"}, HOLDERS, no_peers, 1.0, 30, atoms.piece)
    before = {a: atoms.piece[a] for a in atoms.piece}
    assert all(again.piece[a] == p for a, p in before.items())


def test_direct_messages_link_units_both_ways() -> None:
    live = members({"a": ("w",), "b": ("v",)})
    peers = {"a": {"b": 4.0}, "b": {"a": 4.0}}
    atoms = build_atoms(live, {}, HOLDERS, lambda x: peers.get(x, {}), 0.5, 50, {})
    assert atoms.adj == ({1: 2.0}, {0: 2.0})


def test_a_plan_shows_one_unit_per_workflow_and_gateway() -> None:
    live = members({f"a{i:03d}": ("big",) for i in range(90)} | {"x": ("big#0",)})
    located = {a: ("g1" if a < "a060" else "g2") for a in live}
    atoms = build_atoms(live, located, HOLDERS, no_peers, 1.0, 20, {})
    assert len(atoms.units) > 3  # pieces
    shown, joined = merged(atoms, [atoms.located[i] or "g1" for i in range(len(atoms.units))])
    ids = sorted(u.id for u in shown)
    assert ids == ["wf:big#0", "wf:big#1", "wf:big%230"]  # the workflow "big#0" is apart
    sizes = {u.id: u.size for u in shown}
    assert sizes == {"wf:big#0": 60, "wf:big#1": 30, "wf:big%230": 1}
    assert all(shown[joined[i]].workflows == atoms.units[i].workflows for i in range(len(joined)))
