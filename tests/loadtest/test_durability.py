"""The durability harness, small: its oracle counts each kind of fault as that kind, and one
short scenario runs end to end and prints its table (``frys-ws loadtest durability`` runs
them all, for minutes; docs/performance.md has the figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frys.loadtest.durability import main
from frys.loadtest.oracle import judge_commands, judge_publishes, judge_rounds
from frys.loadtest.probe import Round

STORED = [10, 12, 14, 16, 18, 20, 22]


def rnd(since: int | None, seqs: list[int], recovered: bool | None = True) -> Round:
    if since is None:
        return Round("wf:x:events", None, 10, None, [(s, None) for s in seqs])
    return Round("wf:x:events", since, since + 4, recovered, [(s, None) for s in seqs])


def test_rounds_judged_by_kind_of_fault() -> None:
    clean = judge_rounds([rnd(None, [10, 12]), rnd(12, [14, 16]), rnd(16, [18, 20, 22])], STORED)
    assert (clean.lost, clean.duplicated, clean.reordered, clean.holes) == (0, 0, 0, 0)
    assert (clean.delivered, clean.expected, clean.resumed) == (6, 6, 2)
    holed = judge_rounds([rnd(None, [12]), rnd(12, [14, 18]), rnd(18, [20, 22])], STORED)
    assert (holed.holes, holed.lost, holed.duplicated) == (1, 1, 0)
    repeated = judge_rounds([rnd(None, [12, 14]), rnd(12, [14, 16, 18, 20, 22])], STORED)
    assert (repeated.duplicated, repeated.holes, repeated.lost) == (1, 0, 0)
    swapped = judge_rounds([rnd(None, [12, 16, 14, 18, 20, 22])], STORED)
    assert (swapped.reordered, swapped.lost) == (1, 0)
    cut_short = judge_rounds([rnd(None, [12, 14])], STORED)
    assert (cut_short.lost, cut_short.holes) == (4, 0)  # never delivered: lost, not a hole
    declared = judge_rounds([rnd(None, [12]), rnd(12, [18, 20, 22], recovered=False)], STORED)
    assert (declared.recovered_false, declared.lost, declared.holes) == (1, 0, 0)
    assert judge_rounds([rnd(None, [12, 13])], STORED).not_stored == 1


def test_publishes_and_commands_judged() -> None:
    p = judge_publishes(
        {"wf:a:events": {1, 2, 3}}, {"wf:a:events": [1, 2, 2]}, 4, [0.1, 5.9, 0.2], 5.5
    )
    assert (p.acked, p.stored, p.acked_not_stored, p.stored_twice) == (3, 3, 1, 1)
    assert (p.answered_late, p.max_answer_ms) == (1, 5900.0)
    c = judge_commands(
        {"c1": {"ok": 1}, "c2": None, "c3": {"error": "outcome_unknown"}, "c4": {"ok": 1}},
        {"c1": 1, "c2": 2, "c3": 1},
        "outcome_unknown",
    )
    assert (c.sent, c.answered, c.executed_twice, c.outcome_unknown) == (4, 3, 1, 1)
    assert c.executed_never_but_answered == 1  # c4 answered, never executed


@pytest.mark.timeout(180)
def test_a_short_gateway_kill_runs_and_prints_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports.json"
    code = main(
        [
            "--scenario", "gateway-kill",
            "--readers", "6",
            "--churners", "3",
            "--rate", "200",
            "--commands", "5",
            "--duration-s", "9",
            "--disrupt-at-s", "2",
            "--json", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "scenario" in printed and "gateway-kill" in printed
    (report,) = json.loads(out.read_text())
    events, publishes, commands = report["events"], report["publishes"], report["commands"]
    assert publishes["acked"] >= 1000 and publishes["acked"] == publishes["stored"]
    assert events["delivered"] == events["expected"] > 0
    assert (events["lost"], events["duplicated"], events["reordered"], events["holes"]) == (
        0,
        0,
        0,
        0,
    )
    assert events["resumed"] > 0  # the churners' and the killed gateway's clients
    assert commands["sent"] > 0 and commands["answered"] == commands["sent"]
    assert commands["executed_twice"] == 0
    assert report["reconnects"] >= 2  # a third of the clients were on the killed gateway
    assert report["ok"] and code == 0
