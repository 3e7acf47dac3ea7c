"""Channel grammar, the channel ↔ NATS subject mapping, and grant patterns.

The grammar is the only thing standing between a client-chosen string and a NATS subject, so
it is checked against an independent reference: a regular expression written from the spec.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from frys.shared.protocol.channels import (
    MAX_ID_LEN,
    Channel,
    ChannelKind,
    parse_channel,
    valid_id,
    workflow_channel,
)
from frys.shared.protocol.errors import ChannelError
from frys.shared.protocol.grants import Grant, Grants, Right, parse_pattern
from frys.shared.protocol.subjects import Subjects
from tests.protocol.strategies import FUZZ, FUZZ_CHEAP

WF_KINDS = ["state", "events", "control", "presence", "collab"]
SPEC = re.compile(
    r"(?:wf:[A-Za-z0-9_-]{1,128}:(?:state|events|control|presence|collab)"
    r"|agent:[A-Za-z0-9_-]{1,128})"
)
"""The channel grammar of docs/protocol.md, written independently of the implementation."""

ID_CHARS = "abcXYZ019_-"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=12) | st.from_regex(
    r"[A-Za-z0-9_-]{1,128}", fullmatch=True
)
kinds = st.sampled_from(list(ChannelKind))


@st.composite
def channels(draw: st.DrawFn) -> Channel:
    kind = draw(kinds)
    return Channel(kind, draw(ids))


def spelled(kind: ChannelKind, ident: str) -> str:
    return f"agent:{ident}" if kind is ChannelKind.AGENT else f"wf:{ident}:{kind.value}"


# Strings built from grammar pieces and the characters most likely to break it.
NASTY = [".", "*", ">", " ", "\t", "\n", "\r", "\x00", "\u00a0", "\u3000", ":", "é", "/", "$"]
pieces = st.sampled_from(["wf", "agent", ":", *WF_KINDS, "42", "a-b_C", *NASTY, ""])
near_miss = st.lists(pieces, max_size=7).map("".join)


def _accepts(name: str) -> bool:
    try:
        parse_channel(name)
    except ChannelError:
        return False
    return True


# --- parse_channel -------------------------------------------------------------------------


@FUZZ
@given(kinds, ids)
def test_valid_channels_parse_to_their_parts(kind: ChannelKind, ident: str) -> None:
    name = spelled(kind, ident)
    channel = parse_channel(name)
    assert (channel.kind, channel.id, channel.name, str(channel)) == (kind, ident, name, name)
    assert channel.workflow == (None if kind is ChannelKind.AGENT else ident)


@FUZZ_CHEAP
@given(near_miss | st.text(max_size=40))
@example("wf:42:events")
@example("wf::events")
@example("agent:")
@example("wf:42:agent")
@example("wf:42:events:x")
@example("wf:4.2:events")
@example("wf:*:events")
@example("wf:>:events")
@example("agent:a b")
@example("agent:a\n")
@example("WF:42:events")
@example("wf:42:Events")
@example("wf:" + "a" * 129 + ":state")
@example("agent:" + "a" * 128)
@example("wf:42:events\n")
def test_parse_channel_accepts_exactly_the_grammar(name: str) -> None:
    assert _accepts(name) == (SPEC.fullmatch(name) is not None)


@FUZZ_CHEAP
@given(
    st.builds(
        lambda prefix, bad, suffix: prefix + bad + suffix,
        near_miss,
        st.sampled_from([".", "*", ">", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\u2028"]),
        near_miss,
    )
)
def test_separators_wildcards_and_whitespace_are_always_rejected(name: str) -> None:
    with pytest.raises(ChannelError):
        parse_channel(name)


@FUZZ
@given(kinds, ids, st.data())
def test_any_forbidden_character_in_an_id_is_rejected(
    kind: ChannelKind, ident: str, data: st.DataObject
) -> None:
    bad = data.draw(
        st.characters().filter(lambda c: not re.fullmatch(r"[A-Za-z0-9_-]", c)), label="bad"
    )
    at = data.draw(st.integers(0, len(ident)), label="at")
    name = spelled(kind, ident[:at] + bad + ident[at:])
    with pytest.raises(ChannelError):
        parse_channel(name)


@pytest.mark.parametrize("kind", list(ChannelKind))
def test_empty_and_overlong_ids_are_rejected(kind: ChannelKind) -> None:
    for ident in ("", "a" * (MAX_ID_LEN + 1)):
        with pytest.raises(ChannelError):
            parse_channel(spelled(kind, ident))
    assert parse_channel(spelled(kind, "a" * MAX_ID_LEN)).id == "a" * MAX_ID_LEN


@pytest.mark.parametrize("value", [None, 42, b"wf:1:state", ["wf:1:state"]])
def test_a_channel_must_be_a_string(value: object) -> None:
    with pytest.raises(ChannelError):
        parse_channel(value)


def test_workflow_channel_builds_only_workflow_kinds() -> None:
    assert workflow_channel("42", ChannelKind.EVENTS).name == "wf:42:events"
    with pytest.raises(ChannelError):
        workflow_channel("42", ChannelKind.AGENT)
    with pytest.raises(ChannelError):
        workflow_channel("4.2", ChannelKind.STATE)


@FUZZ_CHEAP
@given(st.text(max_size=20))
def test_valid_id_is_the_id_grammar(value: str) -> None:
    assert valid_id(value) == (re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value) is not None)


# --- subjects ------------------------------------------------------------------------------

prefixes = st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){0,2}", fullmatch=True)


@FUZZ
@given(prefixes, channels())
def test_subjects_round_trip_and_stay_one_token_per_segment(prefix: str, channel: Channel) -> None:
    s = Subjects(prefix)
    subject = s.channel(channel)
    assert s.to_channel(subject) == channel
    tail = subject[len(prefix) + 1 :].split(".")
    if channel.kind is ChannelKind.AGENT:
        assert tail == ["agent", channel.id]
    else:
        assert tail == ["wf", channel.id, channel.kind.value]
    assert not {"*", ">"} & set(subject.split("."))
    live = s.live(channel)
    if channel.kind in (ChannelKind.EVENTS, ChannelKind.STATE):
        assert live == f"{prefix}._live.wf.{channel.id}.{channel.kind.value}"
        with pytest.raises(ChannelError):
            s.to_channel(live)
    else:
        assert live == subject


@FUZZ
@given(prefixes, st.lists(st.text(alphabet=ID_CHARS + ".*>", max_size=6), max_size=5))
def test_to_channel_rejects_every_non_channel_subject(prefix: str, tokens: list[str]) -> None:
    s = Subjects(prefix)
    subject = ".".join([prefix, *tokens])
    try:
        channel = s.to_channel(subject)
    except ChannelError:
        return
    assert s.channel(channel) == subject


@pytest.mark.parametrize("prefix", ["frys", "acme.frys"])
def test_internal_subjects_never_map_to_channels(prefix: str) -> None:
    s = Subjects(prefix)
    internal = [
        s.heartbeat,
        s.interactions,
        s.gateway_orders("gw-1"),
        f"{s.sys}.wf.1.events",
        f"{prefix}._live.wf.1.events",
        f"{prefix}._live.agent.x",
        "other.wf.1.events",
        f"{prefix}wf.1.events",
    ]
    for subject in internal:
        with pytest.raises(ChannelError):
            s.to_channel(subject)


def test_resource_names() -> None:
    s = Subjects("acme.frys")
    assert (s.events_stream, s.state_stream) == ("ACME_FRYS_EVENTS", "ACME_FRYS_STATE")
    assert (s.control_bucket, s.presence_bucket, s.placement_bucket) == (
        "acme_frys_control",
        "acme_frys_presence",
        "acme_frys_placement",
    )
    assert s.workflow_wildcard(ChannelKind.EVENTS) == "acme.frys.wf.*.events"
    assert s.live_template(ChannelKind.STATE) == "acme.frys._live.wf.{{wildcard(1)}}.state"
    for bad in ("", ".frys", "frys.", "a..b", "fr ys", "fr*ys", "fr>ys", "Frys", "a_b"):
        with pytest.raises(ValueError, match="invalid subject prefix"):
            Subjects(bad)


# --- grants --------------------------------------------------------------------------------

id_or_star = st.just("*") | ids
kind_or_star = st.sampled_from(["*", *WF_KINDS])


@st.composite
def grant_patterns(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return f"agent:{draw(id_or_star)}"
    return f"wf:{draw(id_or_star)}:{draw(kind_or_star)}"


def reference_match(pattern: str, channel: Channel) -> bool:
    """Segment-wise equality, ``*`` standing for one whole segment (never agent inboxes
    under ``wf:``)."""
    parts = pattern.split(":")
    if parts[0] == "agent":
        return channel.kind is ChannelKind.AGENT and parts[1] in ("*", channel.id)
    if channel.kind is ChannelKind.AGENT:
        return False
    return parts[1] in ("*", channel.id) and parts[2] in ("*", channel.kind.value)


@FUZZ
@given(grant_patterns(), channels())
def test_grant_matching_is_segment_equality(pattern: str, channel: Channel) -> None:
    grant = parse_pattern(pattern, ["subscribe"])
    assert grant.pattern == pattern
    assert grant.matches(channel) == reference_match(pattern, channel)


@FUZZ
@given(ids, ids, kinds)
@example("4", "42", ChannelKind.EVENTS)
@example("42", "4", ChannelKind.EVENTS)
@example("a", "a-b", ChannelKind.AGENT)
def test_grants_never_match_across_or_within_segments(
    granted: str, other: str, kind: ChannelKind
) -> None:
    """A grant for one id matches no other id, however they share a prefix or suffix."""
    if granted == other:
        return
    channel = Channel(kind, other)
    patterns = [f"wf:{granted}:*", f"agent:{granted}"]
    if kind is not ChannelKind.AGENT:
        patterns.append(f"wf:{granted}:{kind.value}")
    for pattern in patterns:
        assert not parse_pattern(pattern, ["subscribe"]).matches(channel), pattern


@FUZZ
@given(ids, st.sampled_from(["*", "**", "*x", "x*", "4*2", "a.b", "a>", " ", "", "a:b"]))
def test_partial_wildcards_and_bad_ids_are_rejected(ident: str, bad: str) -> None:
    for pattern in (f"wf:{bad}:events", f"wf:{ident}:{bad}", f"agent:{bad}"):
        if bad == "*":
            parse_pattern(pattern, [])  # a whole-segment wildcard is fine
            continue
        with pytest.raises(ChannelError):
            parse_pattern(pattern, ["subscribe"])


@pytest.mark.parametrize(
    "pattern",
    ["wf:*", "wf:1:events:x", "agent:*:x", "wf:1:agent", "agent", "*", "*:*:*", "WF:1:events"],
)
def test_malformed_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(ChannelError):
        parse_pattern(pattern, ["subscribe"])


def test_unknown_rights_are_rejected() -> None:
    with pytest.raises(ChannelError):
        parse_pattern("wf:1:events", ["subscribe", "admin"])


def test_wildcard_workflow_grants_never_cover_agent_inboxes_and_vice_versa() -> None:
    everything_wf = Grants.from_claim({"wf:*:*": ["subscribe", "publish", "control"]})
    every_inbox = Grants.from_claim({"agent:*": ["subscribe"]})
    inbox = parse_channel("agent:planner-1")
    events = parse_channel("wf:42:events")
    assert not everything_wf.allows(inbox, Right.SUBSCRIBE)
    assert everything_wf.allows(events, Right.CONTROL)
    assert every_inbox.allows(inbox, Right.SUBSCRIBE)
    assert not every_inbox.allows(inbox, Right.PUBLISH)
    assert not every_inbox.allows(events, Right.SUBSCRIBE)


@FUZZ
@given(
    st.dictionaries(
        grant_patterns(),
        st.lists(st.sampled_from([r.value for r in Right]), unique=True),
        max_size=4,
    ),
    channels(),
    st.sampled_from(list(Right)),
)
def test_grants_allow_exactly_what_some_pattern_gives(
    claim: dict[str, list[str]], channel: Channel, right: Right
) -> None:
    grants = Grants.from_claim(claim)
    expected = any(
        right.value in rights and reference_match(pattern, channel)
        for pattern, rights in claim.items()
    )
    assert grants.allows(channel, right) == expected
    assert Grants.from_claim(grants.to_claim()).allows(channel, right) == expected


@pytest.mark.parametrize(
    "claim",
    [["wf:*:*"], "wf:*:*", {"wf:*:*": "subscribe"}, {"wf:*:*": ["own"]}, {1: ["subscribe"]}],
)
def test_malformed_grant_claims_are_rejected(claim: object) -> None:
    with pytest.raises(ChannelError):
        Grants.from_claim(claim)


def test_no_claim_grants_nothing() -> None:
    assert Grants.from_claim(None) == Grants()
    assert not Grants().allows(parse_channel("wf:1:events"), Right.SUBSCRIBE)
    assert Grant("*", "*", frozenset()).matches(parse_channel("wf:1:events"))
