"""The client's protocol core, frame by frame: no socket, no event loop.

What keeps a stream exactly-once across reconnects is decided here: which call an answer
belongs to, where each subscription resumes, and which calls are sent again.
"""

from __future__ import annotations

from typing import Any

import pytest

from frys.client.core import (
    ClientCore,
    GatewayError,
    KeyframeRequested,
    Message,
    MigrateTo,
    Retry,
    SubscriptionState,
    publish_retry,
)
from frys.client.errors import ConnectionClosed, ConnectionLost, Forbidden, NotFound
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind
from frys.shared.protocol.publish import resend_safe

CONNECTED = f.Connected(id=0, sid="s1", gw="gw-a", limits={"max_subscriptions": 8}, resume="r1")


class Outcome:
    """A waiter that records what it was given (the shell uses an asyncio future)."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.settled = 0

    def done(self) -> bool:
        return self.settled > 0

    def set_result(self, result: Any, /) -> None:
        self.settled += 1
        self.result = result

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled += 1
        self.error = exception


class Recorder(SubscriptionState):
    def __init__(self, channel: str, since: f.Position | None = None):
        super().__init__(channel, since)
        self.delivered: list[Message] = []
        self.ended: list[BaseException | None] = []

    def _deliver(self, message: Message) -> None:
        self.delivered.append(message)

    def _ended(self, error: BaseException | None) -> None:
        self.ended.append(error)


def subscribed(core: ClientCore, channel: str, ack: f.Ack | None = None) -> Recorder:
    """A subscription as the shell makes one: registered, its subscribe answered."""
    sub = Recorder(channel)
    core.add_subscription(sub)
    call = core.call(
        lambda ref: f.Subscribe(id=ref, ch=channel, since=sub.since()),
        Outcome(),
        Retry.FAIL,
        on_ack=sub.acked,
    )
    assert isinstance(call.frame, f.Subscribe)
    core.receive(ack or f.Ack(id=call.ref))
    return sub


def publish(core: ClientCore, channel: str, enc: str | None = None) -> tuple[int, Outcome]:
    waiter = Outcome()
    call = core.call(
        lambda ref: f.Publish(id=ref, ch=channel, data={"n": ref}, mid=f"m{ref}", enc=enc),
        waiter,
        publish_retry(channel, enc),
    )
    return call.ref, waiter


def seqs(messages: list[Message]) -> list[int | None]:
    return [m.seq for m in messages]


# --- pending calls ------------------------------------------------------------------------
def test_answers_resolve_the_call_they_name() -> None:
    core = ClientCore()
    first, second, third = Outcome(), Outcome(), Outcome()
    a = core.call(lambda ref: f.Ping(id=ref), first, Retry.FAIL)
    b = core.call(
        lambda ref: f.Request(id=ref, ch="wf:1:control", data=1, cid="c"), second, Retry.RESEND
    )
    c = core.call(lambda ref: f.Outcome(id=ref, ch="wf:1:control", cid="c"), third, Retry.FAIL)
    assert len({a.ref, b.ref, c.ref}) == 3

    core.receive(f.Reply(id=b.ref, cid="c", data="done"))
    assert (first.done(), second.result.data, third.done()) == (False, "done", False)
    core.receive(f.Ack(id=c.ref, data={"ok": True}))
    core.receive(f.Pong(id=a.ref))
    assert isinstance(first.result, f.Pong)
    assert third.result.data == {"ok": True}
    assert core.pending == {}


def test_an_answer_to_no_call_in_flight_changes_nothing() -> None:
    core = ClientCore()
    waiter = Outcome()
    call = core.call(lambda ref: f.Ping(id=ref), waiter, Retry.FAIL)
    core.receive(f.Ack(id=call.ref + 100))
    core.receive(f.Pong(id=None))
    assert not waiter.done() and call.ref in core.pending
    core.forget(call.ref)  # the caller gave up (timeout): a late answer is dropped
    core.receive(f.Pong(id=call.ref))
    assert not waiter.done()


def test_an_error_fails_the_call_it_names_with_its_type() -> None:
    core = ClientCore()
    waiter, other = Outcome(), Outcome()
    call = core.call(lambda ref: f.Outcome(id=ref, ch="wf:1:control", cid="x"), waiter, Retry.FAIL)
    core.call(lambda ref: f.Ping(id=ref), other, Retry.FAIL)
    assert core.receive(f.Error(code=404, reason="no outcome", ref=call.ref)) is None
    assert isinstance(waiter.error, NotFound) and waiter.error.reason == "no outcome"
    assert not other.done()


def test_an_error_naming_no_call_is_reported_to_the_shell() -> None:
    core = ClientCore()
    assert core.receive(f.Error(code=400, reason="bad frame")) == GatewayError(400, "bad frame")
    assert core.receive(f.Error(code=400, reason="late", ref=99)) == GatewayError(400, "late")


def test_on_ack_shapes_the_result_and_its_failure_fails_the_call() -> None:
    core = ClientCore()
    shaped, broken = Outcome(), Outcome()
    a = core.call(lambda ref: f.Ping(id=ref), shaped, Retry.FAIL, on_ack=lambda fr: "shaped")

    def explode(frame: f.Frame) -> None:
        raise ValueError("bad ack")

    b = core.call(lambda ref: f.Ping(id=ref), broken, Retry.FAIL, on_ack=explode)
    core.receive(f.Ack(id=a.ref))
    core.receive(f.Ack(id=b.ref))
    assert shaped.result == "shaped"
    assert isinstance(broken.error, ValueError)


def test_close_fails_every_call_and_ends_every_subscription() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:events")
    _, waiter = publish(core, "wf:1:events")
    closed = ConnectionClosed(4001, "gone")
    core.close(closed, closed)
    assert waiter.error is closed
    assert sub.ended == [closed] and not sub.active
    assert core.pending == {}


# --- subscription positions ---------------------------------------------------------------
def test_events_resume_after_the_last_delivered_sequence() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:events", None)
    assert sub.since() is None  # nothing delivered yet: from the stream's start
    sub.acked(f.Ack(id=1, seq=5, epoch="e1", recovered=True))
    assert sub.position == f.Position(5, "e1")
    for seq in (6, 7):
        core.receive(f.Message(ch="wf:1:events", data=seq, seq=seq))
    assert sub.position == f.Position(7, "e1")

    core.connection_lost()
    frames = core.connected(CONNECTED)
    assert [(fr.ch, fr.since) for fr in frames if isinstance(fr, f.Subscribe)] == [
        ("wf:1:events", f.Position(7, "e1"))
    ]
    # The replay overlaps what arrived before the drop: each event is delivered once.
    for seq in (6, 7, 8, 9):
        core.receive(f.Message(ch="wf:1:events", data=seq, seq=seq))
    assert seqs(sub.delivered) == [6, 7, 8, 9]
    assert not any(m.gap for m in sub.delivered)


def test_lost_history_is_marked_once_on_the_next_event() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:events", None)
    sub.acked(f.Ack(id=1, seq=3, epoch="e1"))
    core.receive(f.Message(ch="wf:1:events", data=4, seq=4))
    sub.acked(f.Ack(id=2, seq=90, epoch="e1", recovered=False))
    assert sub.position == f.Position(90, "e1") and sub.gaps == 1
    for seq in (91, 92):
        core.receive(f.Message(ch="wf:1:events", data=seq, seq=seq))
    assert [(m.seq, m.gap) for m in sub.delivered] == [(4, False), (91, True), (92, False)]


def test_a_new_stream_epoch_moves_the_position_there() -> None:
    sub = Recorder("wf:1:events", since=f.Position(40, "old"))
    sub.acked(f.Ack(id=1, seq=2, epoch="new", recovered=True))
    assert sub.position == f.Position(2, "new") and sub.gaps == 0


def test_state_resubscribes_from_now_and_drops_older_values() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:state", f.Ack(id=1, seq=10, epoch="e1"))
    for seq in (10, 9, 11, 11):
        core.receive(f.Message(ch="wf:1:state", data=seq, seq=seq))
    assert seqs(sub.delivered) == [10, 11]
    frames = core.connected(CONNECTED)
    assert [fr.since for fr in frames if isinstance(fr, f.Subscribe)] == [None]
    # A recreated stream (new epoch) starts its sequences over: they are not "older".
    sub.acked(f.Ack(id=2, seq=1, epoch="e2"))
    core.receive(f.Message(ch="wf:1:state", data=1, seq=1))
    assert seqs(sub.delivered) == [10, 11, 1]


def test_collab_delivers_everything_without_a_position() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:collab")
    for data in ("a", "a", "b"):
        core.receive(f.Message(ch="wf:1:collab", data=data, from_="bob"))
    assert [m.data for m in sub.delivered] == ["a", "a", "b"]
    assert sub.position is None and sub.since() is None


def test_messages_of_other_channels_are_not_delivered() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:collab")
    core.receive(f.Message(ch="wf:2:collab", data="x"))
    assert sub.delivered == []


def test_a_channel_is_subscribed_once() -> None:
    core = ClientCore()
    first = subscribed(core, "wf:1:collab")
    with pytest.raises(Exception, match="already subscribed"):
        core.add_subscription(Recorder("wf:1:collab"))
    assert not core.remove_subscription(Recorder("wf:1:collab"))  # not the registered one
    assert core.remove_subscription(first) and core.subs == {}


def test_a_refused_resubscribe_ends_the_subscription() -> None:
    core = ClientCore()
    kept = subscribed(core, "wf:1:events")
    revoked = subscribed(core, "wf:2:events")
    frames = core.connected(CONNECTED)
    by_channel = {fr.ch: fr.id for fr in frames if isinstance(fr, f.Subscribe)}
    core.receive(f.Error(code=403, reason="grant revoked", ref=by_channel["wf:2:events"]))
    core.receive(f.Ack(id=by_channel["wf:1:events"], seq=0, epoch="e"))
    assert isinstance(revoked.ended[0], Forbidden) and "wf:2:events" not in core.subs
    assert kept.active and kept.ended == []


def test_the_gateway_ending_a_subscription_ends_it_with_the_reason() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:events")
    core.receive(f.Unsubscribed(ch="wf:1:events", code=403, reason="token expired"))
    assert isinstance(sub.ended[0], Forbidden) and core.subs == {}


# --- the resend rule ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "enc", "retry"),
    [
        ("wf:1:events", None, Retry.RESEND),
        ("wf:1:events", f.ENC_TENSOR, Retry.RESEND),
        ("wf:1:state", None, Retry.RESEND),
        ("wf:1:state", f.ENC_TENSOR, Retry.FAIL),
        ("wf:1:collab", None, Retry.FAIL),
        ("wf:1:collab", f.ENC_TENSOR, Retry.FAIL),
        ("agent:a1", None, Retry.FAIL),
        ("agent:a1", f.ENC_TENSOR, Retry.FAIL),
        ("wf:1:control", None, Retry.FAIL),
        ("wf:1:presence", None, Retry.FAIL),
    ],
)
def test_publish_retry_follows_the_publish_rule(
    channel: str, enc: str | None, retry: Retry
) -> None:
    assert publish_retry(channel, enc) is retry


def test_publish_retry_is_resend_safe_for_every_kind() -> None:
    for kind in ChannelKind:
        channel = "agent:a1" if kind is ChannelKind.AGENT else f"wf:1:{kind.value}"
        for enc in (None, f.ENC_TENSOR):
            expected = resend_safe(kind, tensor=enc is not None)
            assert (publish_retry(channel, enc) is Retry.RESEND) is expected, (kind, enc)


def test_after_a_reconnect_only_stored_publishes_and_requests_are_sent_again() -> None:
    core = ClientCore()
    sub = subscribed(core, "wf:1:events")
    events, events_waiter = publish(core, "wf:1:events")
    state, _ = publish(core, "wf:1:state")
    live_tensor, tensor_waiter = publish(core, "wf:1:state", f.ENC_TENSOR)
    collab, collab_waiter = publish(core, "wf:1:collab")
    inbox, _ = publish(core, "agent:a1")
    request = core.call(
        lambda ref: f.Request(id=ref, ch="wf:1:control", data={}, cid="c1"),
        Outcome(),
        Retry.RESEND,
    )
    ping_waiter = Outcome()
    core.call(lambda ref: f.Ping(id=ref), ping_waiter, Retry.FAIL)

    core.connection_lost()
    for waiter in (tensor_waiter, collab_waiter, ping_waiter):
        assert isinstance(waiter.error, ConnectionLost)
    assert not events_waiter.done()

    frames = core.connected(CONNECTED)
    # Subscriptions first, so that the answers to re-sent calls find them in place.
    assert isinstance(frames[0], f.Subscribe) and frames[0].ch == sub.channel
    assert [fr.id for fr in frames[1:]] == [events, state, request.ref]
    assert {live_tensor, collab, inbox}.isdisjoint(fr.id for fr in frames)
    resent = [fr for fr in frames if isinstance(fr, f.Publish)]
    assert [fr.mid for fr in resent] == [f"m{events}", f"m{state}"]  # same id: deduplicated

    core.receive(f.Ack(id=events, seq=1, epoch="e", dup=True))
    assert events_waiter.result.dup is True
    assert (core.session_id, core.gateway_id, core.resume) == ("s1", "gw-a", "r1")
    assert core.limits == {"max_subscriptions": 8}


def test_a_second_drop_resends_again_until_answered() -> None:
    core = ClientCore()
    ref, waiter = publish(core, "wf:1:events")
    core.connection_lost()
    assert [fr.id for fr in core.connected(CONNECTED)] == [ref]
    core.connection_lost()
    assert [fr.id for fr in core.connected(CONNECTED)] == [ref]
    core.receive(f.Ack(id=ref, seq=3))
    assert waiter.result.seq == 3
    assert core.connected(CONNECTED) == []


# --- other frames -------------------------------------------------------------------------
def test_migrate_and_keyframe_requests_go_to_the_shell() -> None:
    core = ClientCore()
    assert core.receive(f.Migrate(url="ws://b/ws", reason="placement", delay_ms=250)) == (
        MigrateTo("ws://b/ws", 0.25)
    )
    assert core.receive(f.Migrate(url="ws://c/ws", reason="drain")) == MigrateTo("ws://c/ws", 0.0)
    assert core.receive(f.KeyframeWanted(ch="wf:1:state", stream=2)) == KeyframeRequested(
        "wf:1:state", 2
    )
