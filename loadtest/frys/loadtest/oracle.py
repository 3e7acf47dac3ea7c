"""What a durability run must show, judged from records alone (no I/O here).

Events: every message the stream holds on a client's channel after the client's first
position reaches it exactly once, in stream order, or an ack said ``recovered: false`` for
the range it skipped. Judged per subscribe (a round): a round that resumed after ``since``
with ``recovered: true`` must deliver exactly the stored messages in ``(since, last
delivered]``; a live round, those in ``(acked seq, last delivered]`` (it may first repeat
messages up to the acked seq, which §6.3 allows). Across rounds, what no round delivered
is lost. Publishes: every acknowledged one is stored, and none twice. Control: each
command id executed at most once, and every caller answered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from frys.loadtest.probe import Round


@dataclass
class Deliveries:
    clients: int = 0
    rounds: int = 0
    resumed: int = 0
    """Rounds that subscribed with ``since`` (by hand or after a reconnect)."""
    delivered: int = 0
    expected: int = 0
    """Stored messages each client had to receive, summed over clients."""
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    holes: int = 0
    """Stored messages missing inside a round that promised them: silent holes."""
    not_stored: int = 0
    recovered_false: int = 0

    def add(self, other: Deliveries) -> None:
        for fld in fields(self):
            setattr(self, fld.name, getattr(self, fld.name) + getattr(other, fld.name))


def judge_rounds(rounds: Sequence[Round], stored: Sequence[int]) -> Deliveries:
    """One client's rounds on one events channel, in order, against the sequences the
    stream holds on it (ascending)."""
    v = Deliveries(clients=1)
    held = set(stored)
    seen: set[int] = set()
    excused: list[tuple[int, int]] = []
    first: int | None = None
    for rnd in rounds:
        v.rounds += 1
        live = rnd.since is None
        if live:
            start = rnd.ack_seq or 0
        elif rnd.recovered is False:
            v.recovered_false += 1
            start = rnd.ack_seq or 0
            excused.append((rnd.since or 0, start))
        else:
            v.resumed += 1
            start = rnd.since or 0
        if first is None:
            first = start
        seqs = [s for s, _ in rnd.got if not (live and s <= start)]
        unique = set(seqs)
        v.delivered += len(seqs)
        v.duplicated += len(seqs) - len(unique)
        v.duplicated += sum(1 for s in unique if s in seen or s <= start)
        v.reordered += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        v.not_stored += sum(1 for s in unique if s not in held)
        if seqs:
            top = max(seqs)
            v.holes += sum(1 for s in stored if start < s <= top and s not in unique)
        seen |= unique
    if first is not None:
        owed = [s for s in stored if s > first and not any(a < s <= b for a, b in excused)]
        v.expected = len(owed)
        v.lost = sum(1 for s in owed if s not in seen)
    return v


@dataclass
class Publishes:
    published: int = 0
    acked: int = 0
    stored: int = 0
    acked_not_stored: int = 0
    stored_twice: int = 0
    """Messages stored more than once under one message id (a broken deduplication)."""
    answered_late: int = 0
    """Attempts answered after the bound (``publish_ack_timeout_s`` plus a margin)."""
    answered_after_timeout: int = 0
    """Attempts answered after ``publish_ack_timeout_s`` itself, as the client saw it: a
    publish the gateway answers at its deadline reaches the client a little after it."""
    max_answer_ms: float = 0.0


def judge_publishes(
    acked: dict[str, set[int]],
    stored_ids: dict[str, list[int]],
    published: int,
    answer_s: Iterable[float],
    bound_s: float,
    timeout_s: float | None = None,
) -> Publishes:
    """``acked``: per channel, the publish numbers acknowledged; ``stored_ids``: per
    channel, the publish number of every stored message, in stream order."""
    times = list(answer_s)
    p = Publishes(published=published)
    for channel, ids in stored_ids.items():
        p.stored += len(ids)
        p.stored_twice += len(ids) - len(set(ids))
        p.acked_not_stored += len(acked.get(channel, set()) - set(ids))
    p.acked = sum(len(v) for v in acked.values())
    p.answered_late = sum(1 for t in times if t > bound_s)
    p.answered_after_timeout = sum(1 for t in times if t > (timeout_s or bound_s))
    p.max_answer_ms = round(max(times, default=0.0) * 1000, 1)
    return p


@dataclass
class Commands:
    sent: int = 0
    answered: int = 0
    executed_twice: int = 0
    executed_never_but_answered: int = 0
    outcome_unknown: int = 0


def judge_commands(
    answers: dict[str, object], executions: dict[str, int], unknown_reply: str
) -> Commands:
    """``answers``: per command id, the final reply (None when never answered);
    ``executions``: per command id, how many times the engine ran it."""
    c = Commands(sent=len(answers))
    for cid, reply in answers.items():
        runs = executions.get(cid, 0)
        if runs > 1:
            c.executed_twice += 1
        if reply is None:
            continue
        c.answered += 1
        if isinstance(reply, dict) and reply.get("error") == unknown_reply:
            c.outcome_unknown += 1
        elif runs == 0:
            c.executed_never_but_answered += 1
    return c


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
