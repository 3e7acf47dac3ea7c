"""The publish rule, for every channel kind with and without tensor frames.

Gateway, backend helper and client all ask :mod:`frys.shared.protocol.publish` where a
message goes and whether a lost ack may be answered by sending it again; this table is the
rule written out, so a change to it is a visible decision.
"""

from __future__ import annotations

import pytest

from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.protocol.publish import (
    NO_PUBLISH,
    NotPublishable,
    Route,
    Storage,
    resend_safe,
    route,
    storage_of,
)
from frys.shared.protocol.subjects import Subjects

SUBJECTS = Subjects("acme")

STORED, CORE, BULK = Storage.STORED, Storage.CORE, Storage.BULK

RULE: dict[tuple[ChannelKind, bool], Storage | None] = {
    (ChannelKind.EVENTS, False): STORED,
    (ChannelKind.EVENTS, True): STORED,  # history keeps its tensors, in order
    (ChannelKind.STATE, False): STORED,
    (ChannelKind.STATE, True): BULK,  # live frames: the relay, not the last-value stream
    (ChannelKind.COLLAB, False): CORE,
    (ChannelKind.COLLAB, True): BULK,
    (ChannelKind.AGENT, False): CORE,
    (ChannelKind.AGENT, True): BULK,
    (ChannelKind.CONTROL, False): None,  # takes requests, not publishes
    (ChannelKind.CONTROL, True): None,
    (ChannelKind.PRESENCE, False): None,  # written by gateways only
    (ChannelKind.PRESENCE, True): None,
}

CASES = sorted(RULE, key=lambda case: (case[0].value, case[1]))


def channel(kind: ChannelKind) -> Channel:
    return Channel(kind, "a1" if kind is ChannelKind.AGENT else "42")


def test_the_table_covers_every_kind_both_ways() -> None:
    assert set(RULE) == {(kind, tensor) for kind in ChannelKind for tensor in (False, True)}
    assert {kind for (kind, _), storage in RULE.items() if storage is None} == NO_PUBLISH


@pytest.mark.parametrize(("kind", "tensor"), CASES)
def test_storage_of(kind: ChannelKind, tensor: bool) -> None:
    expected = RULE[(kind, tensor)]
    if expected is None:
        with pytest.raises(NotPublishable, match=f"{kind.value} channels take no publish"):
            storage_of(kind, tensor)
    else:
        assert storage_of(kind, tensor) is expected


@pytest.mark.parametrize(("kind", "tensor"), CASES)
def test_route_subject_follows_the_storage(kind: ChannelKind, tensor: bool) -> None:
    ch = channel(kind)
    expected = RULE[(kind, tensor)]
    if expected is None:
        with pytest.raises(NotPublishable):
            route(SUBJECTS, ch, tensor)
        return
    subject = SUBJECTS.bulk(ch) if expected is BULK else SUBJECTS.channel(ch)
    assert route(SUBJECTS, ch, tensor) == Route(subject, expected)
    assert route(SUBJECTS, ch, tensor).stored is (expected is STORED)


@pytest.mark.parametrize(("kind", "tensor"), CASES)
def test_resend_safe_only_where_the_stream_deduplicates(kind: ChannelKind, tensor: bool) -> None:
    assert resend_safe(kind, tensor) is (RULE[(kind, tensor)] is STORED)


def test_not_publishable_is_a_value_error() -> None:
    """Callers that validated with ``ValueError`` before keep catching it."""
    assert issubclass(NotPublishable, ValueError)


def test_subjects_keep_the_prefix_and_the_channel() -> None:
    assert route(SUBJECTS, channel(ChannelKind.EVENTS)).subject == "acme.wf.42.events"
    assert route(SUBJECTS, channel(ChannelKind.AGENT)).subject == "acme.agent.a1"
    assert route(SUBJECTS, channel(ChannelKind.STATE), True).subject == "acme._bulk.wf.42.state"
    assert route(SUBJECTS, channel(ChannelKind.AGENT), True).subject == "acme._bulk.agent.a1"
