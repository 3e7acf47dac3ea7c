"""The session core without sockets: frames in, actions out (docs/protocol.md §4, §5)."""

from __future__ import annotations

import numpy as np
import pytest

from frys.gateway import core as c
from frys.gateway.auth import AuthError, Identity
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.errors import CloseCode, DecodeError, ErrorCode
from frys.shared.protocol.grants import Grants
from frys.shared.tensor import TensorEncoder

LIMITS = c.CoreLimits(
    gateway_id="gw-1",
    max_frame_bytes=1 << 20,
    queue_bytes=1 << 20,
    max_subscriptions=3,
    publish_rate_per_s=10.0,
    publish_burst=5,
    ping_interval_s=25.0,
    request_timeout_ms=5000,
    max_request_timeout_ms=60000,
    max_invalid_frames=2,
    jwt_leeway_s=0.0,
)


class Resume:
    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, token: str, sub: str, now: float | None = None) -> str | None:
        self.checked.append(token)
        return "resumed-sid" if token == "good" else None

    def issue(self, sid: str, sub: str, now: float | None = None) -> str:
        return f"resume-{sid}"


def grants(pattern: str, *rights: str) -> Grants:
    return Grants.from_claim({pattern: list(rights)})


def verify(token: str) -> Identity:
    if token == "bad":
        raise AuthError("bad signature")
    rights = ("subscribe",) if token == "reader" else ("subscribe", "publish", "control")
    return Identity(sub="alice", kind="user", grants=grants("wf:1:*", *rights), exp=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None) -> c.SessionCore:
    return c.SessionCore(LIMITS, verify, Resume(), clock=clock or Clock())


def connected(token: str = "ok") -> c.SessionCore:
    core = make()
    core.receive(f.Connect(id=1, token=token))
    assert core.state is c.State.CONNECTED
    return core


def sends(actions: list[c.Action]) -> list[f.Frame]:
    return [a.frame for a in actions if isinstance(a, c.Send)]


def error_codes(actions: list[c.Action]) -> list[int]:
    return [fr.code for fr in sends(actions) if isinstance(fr, f.Error)]


# --- the table -----------------------------------------------------------------------------
def test_the_table_allows_exactly_the_documented_transitions() -> None:
    assert {
        c.State.AWAITING_CONNECT: frozenset({c.State.CONNECTED, c.State.CLOSING, c.State.CLOSED}),
        c.State.CONNECTED: frozenset({c.State.CLOSING, c.State.CLOSED}),
        c.State.CLOSING: frozenset({c.State.CLOSED}),
        c.State.CLOSED: frozenset(),
    } == c.TRANSITIONS


def test_connect_answers_connected_with_limits_and_resume_token() -> None:
    core = make()
    actions = core.receive(f.Connect(id=7, token="ok", name="ui", caps=("tensor",)))
    frame = sends(actions)[0]
    assert isinstance(frame, f.Connected)
    assert frame.id == 7 and frame.gw == "gw-1" and frame.exp == 1000.0
    assert frame.limits["max_subscriptions"] == 3
    assert frame.resume == f"resume-{core.sid}"
    assert isinstance(actions[-1], c.Connected) and actions[-1].expires_at == 1000.0
    assert core.name == "ui" and core.caps == ("tensor",)


def test_a_valid_resume_token_keeps_the_session_id() -> None:
    core = make()
    core.receive(f.Connect(id=1, token="ok", resume="good"))
    assert core.sid == "resumed-sid"
    other = make()
    before = other.sid
    other.receive(f.Connect(id=1, token="ok", resume="forged"))
    assert other.sid == before


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (f.Ping(id=1), CloseCode.BAD_CONNECT),
        (DecodeError("garbage"), CloseCode.BAD_CONNECT),
        (f.Connect(id=1, token="bad"), CloseCode.UNAUTHORIZED),
        (f.Connect(id=1), CloseCode.UNAUTHORIZED),
    ],
)
def test_anything_but_a_valid_connect_first_closes(first: f.Frame | DecodeError, code: int) -> None:
    core = make()
    actions = core.receive(first)
    assert actions == [c.Close(int(code), actions[0].reason)]  # type: ignore[union-attr]
    assert core.state is c.State.CLOSING
    assert core.receive(f.Connect(id=2, token="ok")) == []  # nothing after the close


def test_connect_deadline_closes_only_before_connect() -> None:
    core = make()
    assert core.connect_deadline() == [
        c.Close(int(CloseCode.CONNECT_TIMEOUT), "no connect frame in time")
    ]
    assert connected().connect_deadline() == []


def test_expiry_closes_a_connected_session_once() -> None:
    core = connected()
    assert core.expired() == [c.Close(int(CloseCode.TOKEN_EXPIRED), "token expired")]
    assert core.expired() == []
    assert core.close(CloseCode.SERVICE_RESTART, "x") == []


def test_frames_after_close_are_ignored_and_lost_releases_everything() -> None:
    core = connected()
    core.receive(f.Subscribe(id=2, ch="wf:1:events"))
    core.close(CloseCode.SERVICE_RESTART, "delay_ms=5")
    assert core.receive(f.Ping(id=3)) == []
    lost = core.lost()
    assert lost == [c.StopSubscription(parse_channel("wf:1:events"))]
    assert core.state is c.State.CLOSED and not core.subs


def test_second_connect_is_an_error() -> None:
    assert error_codes(connected().receive(f.Connect(id=5, token="ok"))) == [400]


# --- subscriptions -------------------------------------------------------------------------
def test_subscribe_checks_grammar_rights_kind_duplicates_and_limit() -> None:
    core = connected("reader")
    assert error_codes(core.receive(f.Subscribe(id=1, ch="nope"))) == [422]
    assert error_codes(core.receive(f.Subscribe(id=2, ch="wf:2:events"))) == [403]
    assert error_codes(core.receive(f.Subscribe(id=3, ch="wf:1:control"))) == [405]
    start = core.receive(f.Subscribe(id=4, ch="wf:1:events", since=f.Position(5, "e")))
    assert isinstance(start[0], c.StartSubscription) and start[0].since == f.Position(5, "e")
    assert error_codes(core.receive(f.Subscribe(id=5, ch="wf:1:events"))) == [409]
    core.receive(f.Subscribe(id=6, ch="wf:1:state"))
    core.receive(f.Subscribe(id=7, ch="wf:1:collab"))
    assert error_codes(core.receive(f.Subscribe(id=8, ch="wf:1:presence"))) == [429]


def test_since_is_kept_for_events_only() -> None:
    core = connected()
    start = core.receive(f.Subscribe(id=1, ch="wf:1:state", since=f.Position(5, "e")))
    assert isinstance(start[0], c.StartSubscription) and start[0].since is None


def test_a_stale_join_is_recognised_after_resubscribe() -> None:
    core = connected()
    first = core.receive(f.Subscribe(id=1, ch="wf:1:collab"))[0]
    assert isinstance(first, c.StartSubscription)
    unsub = core.receive(f.Unsubscribe(id=2, ch="wf:1:collab"))
    assert isinstance(unsub[0], c.StopSubscription) and sends(unsub) == [f.Ack(id=2)]
    second = core.receive(f.Subscribe(id=3, ch="wf:1:collab"))[0]
    assert isinstance(second, c.StartSubscription)
    assert not core.subscribed(first.channel, first.sub)  # the first join ended too late
    assert core.subscribed(second.channel, second.sub)


def test_resync_and_stats_need_an_active_subscription() -> None:
    core = connected()
    assert error_codes(core.receive(f.Stats(id=1, ch="wf:1:state"))) == [404]
    start = core.receive(f.Subscribe(id=2, ch="wf:1:state"))[0]
    assert isinstance(start, c.StartSubscription)
    assert error_codes(core.receive(f.Stats(id=3, ch="wf:1:state"))) == [404]  # pending
    core.subscribed(start.channel, start.sub)
    assert core.receive(f.Stats(id=4, ch="wf:1:state")) == [c.Stats(start.channel, 4)]
    assert core.receive(f.Resync(id=5, ch="wf:1:state", stream=3)) == [
        c.Resync(start.channel, 3, 5)
    ]


def test_unsubscribe_of_unknown_channel_is_404() -> None:
    assert error_codes(connected().receive(f.Unsubscribe(id=1, ch="wf:1:state"))) == [404]


def test_refresh_drops_subscriptions_whose_right_is_gone() -> None:
    core = connected()
    core.receive(f.Subscribe(id=1, ch="wf:1:state"))

    def narrower(token: str) -> Identity:
        return Identity(sub="alice", kind="user", grants=grants("wf:9:*", "subscribe"), exp=2000)

    core._verify = narrower
    actions = core.receive(f.Refresh(id=2, token="new"))
    assert c.StopSubscription(parse_channel("wf:1:state")) in actions
    frames = sends(actions)
    assert isinstance(frames[0], f.Unsubscribed) and frames[0].code == 403
    assert frames[-1] == f.Ack(id=2, exp=2000)
    assert c.Refreshed(2000.0) in actions and not core.subs


def test_refresh_for_another_subject_is_refused() -> None:
    core = connected()

    def other(token: str) -> Identity:
        return Identity(sub="mallory", kind="user", grants=grants("wf:*:*", "subscribe"), exp=None)

    core._verify = other
    assert error_codes(core.receive(f.Refresh(id=2, token="x"))) == [401]
    assert core.identity is not None and core.identity.sub == "alice"


# --- publish, request ----------------------------------------------------------------------
def test_publish_checks_right_kind_and_rate() -> None:
    clock = Clock()
    core = make(clock)
    core.receive(f.Connect(id=1, token="ok"))
    assert error_codes(core.receive(f.Publish(id=2, ch="wf:1:presence", data=1))) == [405]
    assert error_codes(core.receive(f.Publish(id=3, ch="wf:1:control", data=1))) == [405]
    assert error_codes(core.receive(f.Publish(id=4, ch="wf:2:events", data=1))) == [403]
    published = [core.receive(f.Publish(id=10 + i, ch="wf:1:events", data=i)) for i in range(5)]
    assert all(isinstance(p[0], c.Publish) for p in published)
    assert error_codes(core.receive(f.Publish(id=20, ch="wf:1:events", data=0))) == [429]
    clock.now += 1.0  # ten more tokens, capped at the burst of five
    assert isinstance(core.receive(f.Publish(id=21, ch="wf:1:events", data=0))[0], c.Publish)


def test_tensor_publish_is_checked_before_it_leaves() -> None:
    core = connected()
    key = TensorEncoder(stream_id=4).encode(np.arange(6, dtype=np.float32), keyframe=True)[0]
    ok = core.receive(f.Publish(id=1, ch="wf:1:state", data=key, enc="tensor"))
    assert isinstance(ok[0], c.Publish) and ok[0].tensor_stream == 4
    assert error_codes(
        core.receive(f.Publish(id=2, ch="wf:1:state", data=b"junk", enc="tensor"))
    ) == [400]
    assert error_codes(core.receive(f.Publish(id=3, ch="wf:1:state", data="x", enc="tensor"))) == [
        400
    ]
    assert error_codes(core.receive(f.Publish(id=4, ch="wf:1:state", data=key, enc="zip"))) == [400]


def test_request_checks_kind_cid_and_rate() -> None:
    core = connected()
    assert error_codes(core.receive(f.Request(id=1, ch="wf:1:events", data=1))) == [405]
    assert error_codes(core.receive(f.Request(id=2, ch="wf:1:control", data=1, cid="a b"))) == [400]
    ok = core.receive(f.Request(id=3, ch="wf:1:control", data=1, cid="c-1"))
    assert isinstance(ok[0], c.Request)


def test_outcome_and_presence_check_kind_and_right() -> None:
    core = connected("reader")
    assert error_codes(core.receive(f.Outcome(id=1, ch="wf:1:control", cid="x"))) == [403]
    assert error_codes(core.receive(f.Outcome(id=2, ch="wf:1:events", cid="x"))) == [405]
    assert error_codes(core.receive(f.PresenceQuery(id=3, ch="wf:1:state"))) == [405]
    query = core.receive(f.PresenceQuery(id=4, ch="wf:1:presence"))
    assert query == [c.QueryPresence(parse_channel("wf:1:presence"), 4)]


def test_too_many_invalid_frames_close_with_1008() -> None:
    core = connected()
    bad = DecodeError("bad", ErrorCode.BAD_REQUEST, 9)
    assert error_codes(core.receive(bad)) == [400]
    assert error_codes(core.receive(bad)) == [400]
    actions = core.receive(bad)
    assert actions[-1] == c.Close(int(CloseCode.POLICY_VIOLATION), "too many invalid frames")
    assert core.state is c.State.CLOSING


def test_ping_is_answered_with_pong() -> None:
    assert sends(connected().receive(f.Ping(id=4))) == [f.Pong(id=4)]


def test_the_spec_draws_the_state_table_of_the_core() -> None:
    import re
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = spec[spec.index("### 5.1 States") : spec.index("### 5.2")]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)`[^|]*\| `(\w+)` \|$", section, re.M)
    documented = {(c.State(a), c.Event(e)): c.State(n) for a, e, n in rows}
    coded = {(state, event): nxt for state, row in c.EVENTS.items() for event, nxt in row.items()}
    assert documented == coded
