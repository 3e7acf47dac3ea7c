"""Unit ids: one id per unit, whatever characters workflow and agent ids contain."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from frys.router.placement.model import (
    part_unit_id,
    solo_unit_id,
    workflow_unit_id,
    workflows_unit_id,
)

names = st.text(alphabet="ab#+:%0 é", min_size=1, max_size=6)


def test_a_workflow_named_like_a_part_never_meets_that_part() -> None:
    assert workflow_unit_id("big#0") != part_unit_id(workflow_unit_id("big"), 0)
    assert workflows_unit_id(["a+b"]) != workflows_unit_id(["a", "b"])
    assert solo_unit_id("wf:x") != workflow_unit_id("x")


@given(a=st.lists(names, min_size=1, max_size=3), b=st.lists(names, min_size=1, max_size=3))
def test_ids_of_different_workflow_sets_differ(a: list[str], b: list[str]) -> None:
    if set(a) != set(b):
        assert workflows_unit_id(a) != workflows_unit_id(b)
    assert workflows_unit_id(a) == workflows_unit_id(sorted(set(a)))


@given(w=names, v=names, i=st.integers(0, 20), j=st.integers(0, 20))
def test_part_ids_are_unique(w: str, v: str, i: int, j: int) -> None:
    if (w, i) != (v, j):
        assert part_unit_id(workflow_unit_id(w), i) != part_unit_id(workflow_unit_id(v), j)
    assert part_unit_id(workflow_unit_id(w), i) != workflow_unit_id(v)
