// The protocol core frame by frame: positions, duplicates and gaps, and what is sent again
// after a reconnect.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ClientCore, ClientError, ConnectionLost, SubscriptionState } from "./sdk.js";

class Recording extends SubscriptionState {
  constructor(channel, since = null) {
    super(channel, since);
    this.delivered = [];
    this.ending = undefined;
  }
  _deliver(message) {
    this.delivered.push(message);
  }
  _ended(error) {
    this.ending = error;
  }
}

const msg = (ch, seq, data = seq) => ({ op: "message", ch, seq, data });

function waiter() {
  const w = { result: undefined, error: undefined };
  w.resolve = (value) => (w.result = value);
  w.reject = (error) => (w.error = error);
  return w;
}

const CONNECTED = { op: "connected", id: 0, sid: "s1", gw: "gw-a", limits: { queue_bytes: 1 }, resume: "r1" };

describe("events positions", () => {
  test("a live subscribe takes the acked position and drops what it already covers", () => {
    const sub = new Recording("wf:1:events");
    sub.acked({ op: "ack", id: 1, seq: 10, epoch: "e1" });
    assert.deepEqual(sub.since(), { seq: 10, epoch: "e1" });
    for (const seq of [9, 10, 11, 11, 12]) sub.onMessage(msg("wf:1:events", seq));
    assert.deepEqual(sub.delivered.map((m) => m.seq), [11, 12]);
    assert.deepEqual(sub.since(), { seq: 12, epoch: "e1" });
  });

  test("a resume replays after the position without repeats", () => {
    const sub = new Recording("wf:1:events", { seq: 20, epoch: "e1" });
    sub.acked({ op: "ack", id: 2, epoch: "e1", recovered: true });
    for (const seq of [19, 20, 21, 22, 21]) sub.onMessage(msg("wf:1:events", seq));
    assert.deepEqual(sub.delivered.map((m) => [m.seq, m.gap]), [[21, false], [22, false]]);
  });

  test("recovered: false marks the next message once and moves the position", () => {
    const sub = new Recording("wf:1:events", { seq: 5, epoch: "e1" });
    sub.acked({ op: "ack", id: 2, seq: 900, epoch: "e1", recovered: false });
    assert.equal(sub.gaps, 1);
    for (const seq of [899, 901, 902]) sub.onMessage(msg("wf:1:events", seq));
    assert.deepEqual(sub.delivered.map((m) => [m.seq, m.gap]), [[901, true], [902, false]]);
  });

  test("a new epoch replaces the position", () => {
    const sub = new Recording("wf:1:events", { seq: 50, epoch: "old" });
    sub.acked({ op: "ack", id: 2, seq: 3, epoch: "new", recovered: false });
    sub.onMessage(msg("wf:1:events", 4));
    assert.deepEqual(sub.since(), { seq: 4, epoch: "new" });
    assert.equal(sub.delivered[0].gap, true);
  });
});

describe("state and other kinds", () => {
  test("state drops values not newer than the one shown", () => {
    const sub = new Recording("wf:1:state");
    sub.acked({ op: "ack", id: 1, seq: 7, epoch: "e" });
    for (const seq of [7, 8, 8, 6, 9]) sub.onMessage(msg("wf:1:state", seq));
    assert.deepEqual(sub.delivered.map((m) => m.seq), [7, 8, 9]);
    assert.equal(sub.since(), null, "state resubscribes for a fresh snapshot");
  });

  test("a recreated state stream starts its sequences over", () => {
    const sub = new Recording("wf:1:state");
    sub.acked({ op: "ack", id: 1, seq: 70, epoch: "e1" });
    sub.onMessage(msg("wf:1:state", 70));
    sub.acked({ op: "ack", id: 2, seq: 1, epoch: "e2" });
    sub.onMessage(msg("wf:1:state", 1));
    assert.deepEqual(sub.delivered.map((m) => m.seq), [70, 1]);
  });

  test("collab messages carry no sequence and all pass", () => {
    const sub = new Recording("wf:1:collab");
    sub.acked({ op: "ack", id: 1 });
    sub.onMessage({ op: "message", ch: "wf:1:collab", data: "a", from: "bob" });
    sub.onMessage({ op: "message", ch: "wf:1:collab", data: "a", from: "bob" });
    assert.equal(sub.delivered.length, 2);
    assert.equal(sub.delivered[0].from, "bob");
  });

  test("ready settles with the first ack, or fails when the subscription ends first", async () => {
    const acked = new Recording("wf:1:collab");
    acked.acked({ op: "ack", id: 1 });
    await acked.ready;
    const refused = new Recording("wf:1:collab");
    refused.end(new ClientError(403, "no"));
    await assert.rejects(refused.ready, ClientError);
  });
});

describe("client core", () => {
  test("after a reconnect: subscriptions from their positions first, then resendable calls", () => {
    const core = new ClientCore();
    const events = new Recording("wf:1:events");
    const state = new Recording("wf:1:state");
    core.addSubscription(events);
    core.addSubscription(state);
    events.acked({ op: "ack", id: 99, seq: 4, epoch: "e" });
    events.onMessage(msg("wf:1:events", 5));
    const publish = core.call((ref) => ({ op: "publish", id: ref, ch: "wf:1:events", mid: "m-1", data: 1 }), waiter(), "resend");
    const collab = waiter();
    core.call((ref) => ({ op: "publish", id: ref, ch: "wf:1:collab", data: 2 }), collab, "fail");
    const request = core.call((ref) => ({ op: "request", id: ref, ch: "wf:1:control", cid: "c-1", data: {} }), waiter(), "resend");

    core.connectionLost();
    assert.ok(collab.error instanceof ConnectionLost, "a collab publish is not sent twice");

    const frames = core.connected(CONNECTED);
    assert.deepEqual(
      frames.map((f) => [f.op, f.ch, f.since ?? null, f.mid ?? f.cid ?? null]),
      [
        ["subscribe", "wf:1:events", { seq: 5, epoch: "e" }, null],
        ["subscribe", "wf:1:state", null, null],
        ["publish", "wf:1:events", null, "m-1"],
        ["request", "wf:1:control", null, "c-1"],
      ],
    );
    assert.equal(frames[2], publish.frame, "the same frame: same request id, same message id");
    assert.equal(frames[3], request.frame);
    assert.equal(core.sessionId, "s1");
    assert.equal(core.resume, "r1");
  });

  test("answers settle their calls; errors name them; the rest is reported", () => {
    const core = new ClientCore();
    const ok = waiter();
    const bad = waiter();
    const a = core.call((ref) => ({ op: "ping", id: ref }), ok, "fail");
    const b = core.call((ref) => ({ op: "outcome", id: ref, ch: "wf:1:control", cid: "x" }), bad, "fail");
    assert.equal(core.receive({ op: "pong", id: a.ref }), null);
    assert.equal(ok.result.op, "pong");
    core.receive({ op: "error", code: 404, reason: "no outcome", ref: b.ref });
    assert.ok(bad.error instanceof ClientError && bad.error.code === 404);
    assert.deepEqual(core.receive({ op: "error", code: 500, reason: "boom" }), { type: "error", code: 500, reason: "boom" });
    assert.deepEqual(core.receive({ op: "migrate", url: "ws://b/ws", reason: "x", delay_ms: 250 }), { type: "migrate", url: "ws://b/ws", delayMs: 250 });
    assert.equal(core.receive({ op: "wat" }), null);
  });

  test("a refused resubscription ends the subscription", () => {
    const core = new ClientCore();
    const sub = new Recording("wf:1:events");
    core.addSubscription(sub);
    const [frame] = core.connected(CONNECTED);
    core.receive({ op: "error", code: 403, reason: "revoked", ref: frame.id });
    assert.equal(core.subs.size, 0);
    assert.ok(sub.ending instanceof ClientError);
  });

  test("unsubscribed ends the subscription with its code", () => {
    const core = new ClientCore();
    const sub = new Recording("wf:1:events");
    core.addSubscription(sub);
    core.receive({ op: "unsubscribed", ch: "wf:1:events", code: 503, reason: "stream recreated" });
    assert.equal(sub.ending.code, 503);
  });

  test("one subscription per channel", () => {
    const core = new ClientCore();
    core.addSubscription(new Recording("wf:1:events"));
    assert.throws(() => core.addSubscription(new Recording("wf:1:events")), (e) => e.code === 409);
  });
});
