// The client's I/O shell against a scripted WebSocket: refusals stop it, outages do not;
// after a reconnect it resumes from its positions and sends again what is safe to send again.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { ConnectionClosed, ConnectionLost, FrysClient } from "./sdk.js";

/**
 * A scripted gateway: every WebSocket the client opens is handed to `accept`, which decides
 * what happens (open and answer, or close with a code). Frames are JSON (`frys.v1.json`).
 */
class Gateway {
  constructor(accept = (ws) => ws.open()) {
    this.accept = accept;
    this.sockets = [];
    this.frames = [];
    this.sessions = 0;
    const gateway = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.readyState = 0;
        gateway.sockets.push(this);
        setTimeout(() => gateway.accept(this), 0);
      }
      send(text) {
        const frame = JSON.parse(text);
        gateway.frames.push({ ws: this, frame });
        gateway.answer(this, frame);
      }
      close(code = 1000, reason = "") {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code, reason }), 0);
      }
      open() {
        this.readyState = 1;
        this.onopen?.();
      }
      deliver(frame) {
        this.onmessage?.({ data: JSON.stringify(frame) });
      }
      drop(code = 1006, reason = "") {
        this.readyState = 3;
        this.onclose?.({ code, reason });
      }
    };
    /** Frames the gateway leaves unanswered (by op). */
    this.silent = new Set();
    this.seq = 100;
  }

  /** The default answers of a healthy gateway. */
  answer(ws, frame) {
    if (this.silent.has(frame.op)) return;
    const reply = (f) => setTimeout(() => ws.readyState === 1 && ws.deliver(f), 0);
    if (frame.op === "connect") {
      this.sessions += 1;
      reply({ op: "connected", id: frame.id, sid: frame.resume ? "sid-1" : `sid-${this.sessions}`, gw: `gw-${this.sessions}`, resume: `r-${this.sessions}`, limits: {} });
    } else if (frame.op === "subscribe") {
      if (frame.since) reply({ op: "ack", id: frame.id, epoch: "e", recovered: true });
      else reply({ op: "ack", id: frame.id, seq: 0, epoch: "e" });
    } else if (frame.op === "publish") {
      reply({ op: "ack", id: frame.id, seq: ++this.seq });
    } else if (frame.op === "request") {
      reply({ op: "reply", id: frame.id, cid: frame.cid, data: { ok: true, cid: frame.cid } });
    } else if (frame.op === "refresh") {
      reply({ op: "ack", id: frame.id, exp: Math.floor(Date.now() / 1000) + 3600 });
    } else if (frame.op === "unsubscribe" || frame.op === "ping") {
      reply({ op: frame.op === "ping" ? "pong" : "ack", id: frame.id });
    }
  }

  sent(op) {
    return this.frames.filter((f) => f.frame.op === op);
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }
}

function client(gateway, options = {}, urls = ["ws://a/ws"]) {
  return new FrysClient(urls, { codec: "json", token: "t-1", WebSocket: gateway.WebSocket, backoffBaseMs: 1, backoffCapMs: 5, ...options });
}

function events(target, type) {
  const seen = [];
  target.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}

async function until(predicate, ms = 2000) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await sleep(2);
  }
}

describe("refusals stop the client", () => {
  for (const [code, reason] of [[4403, "origin not allowed"], [4401, "bad signature"], [4400, "first frame was not a valid connect"]]) {
    test(`close ${code} is reported once and never retried`, async () => {
      const gateway = new Gateway((ws) => {
        ws.open();
        setTimeout(() => ws.drop(code, reason), 1);
      });
      gateway.silent.add("connect");
      const c = client(gateway);
      const refused = events(c, "refused");
      await assert.rejects(c.start(), (e) => e instanceof ConnectionClosed && e.code === code);
      await sleep(50);
      assert.deepEqual(refused, [{ code, reason }]);
      assert.equal(c.attempts, 1);
      assert.equal(c.state, "closed");
    });
  }

  test("a refused token is retried only with a new one", async () => {
    const tokens = [];
    const gateway = new Gateway((ws) => ws.open());
    gateway.answer = (ws, frame) => {
      tokens.push(frame.token);
      if (frame.token === "old") setTimeout(() => ws.drop(4401, "token expired"), 0);
      else Gateway.prototype.answer.call(gateway, ws, frame);
    };
    const c = client(gateway, { token: "old", tokenProvider: async () => "new" });
    await c.start();
    assert.deepEqual(tokens, ["old", "new"]);
    c.close();
  });

  test("the same token again is no new token", async () => {
    const gateway = new Gateway((ws) => {
      ws.open();
      setTimeout(() => ws.drop(4401, "bad signature"), 1);
    });
    gateway.silent.add("connect");
    const c = client(gateway, { tokenProvider: () => "t-1" });
    await assert.rejects(c.start());
    assert.equal(c.attempts, 1);
  });
});

describe("outages reconnect", () => {
  test("a gateway that is down is retried with backoff, through every URL", async () => {
    let refusals = 4;
    const gateway = new Gateway((ws) => (refusals-- > 0 ? ws.drop(1006) : ws.open()));
    const c = client(gateway, {}, ["ws://a/ws", "ws://b/ws"]);
    await c.start();
    assert.equal(c.attempts, 5);
    assert.deepEqual(gateway.sockets.map((s) => s.url), ["ws://a/ws", "ws://b/ws", "ws://a/ws", "ws://b/ws", "ws://a/ws"]);
    assert.deepEqual(gateway.sockets[0].protocols, ["frys.v1.json"]);
    c.close();
  });

  for (const code of [1006, 1001, 1011, 4000, 4001]) {
    test(`close ${code} after a session reconnects`, async () => {
      const gateway = new Gateway();
      const c = client(gateway);
      await c.start();
      gateway.last.drop(code, "");
      await until(() => gateway.sessions === 2 && c.state === "connected");
      assert.equal(c.reconnects, 1);
      c.close();
    });
  }

  test("a draining gateway's delay is honoured", async () => {
    const gateway = new Gateway();
    const c = client(gateway);
    await c.start();
    const dropped = Date.now();
    gateway.last.drop(1012, "delay_ms=120");
    await until(() => gateway.sockets.length === 2);
    assert.ok(Date.now() - dropped >= 115, `${Date.now() - dropped} ms`);
    c.close();
  });

  test("migrate: to its URL after its delay, back to the original when that fails", async () => {
    const gateway = new Gateway((ws) => (ws.url === "ws://gone/ws" ? ws.drop(1006) : ws.open()));
    const c = client(gateway);
    await c.start();
    gateway.last.deliver({ op: "migrate", url: "ws://gone/ws", reason: "rebalance", delay_ms: 30 });
    gateway.last.drop(4002, "migrated");
    await until(() => gateway.sessions === 2);
    assert.deepEqual(gateway.sockets.map((s) => s.url), ["ws://a/ws", "ws://gone/ws", "ws://a/ws"]);
    c.close();
  });
});

describe("resuming", () => {
  test("positions, resume token, and what is sent again", async () => {
    const gateway = new Gateway();
    const c = client(gateway);
    await c.start();
    const received = [];
    await c.subscribe("wf:1:events", { onMessage: (m) => received.push([m.seq, m.gap]) });
    for (const seq of [5, 6, 7]) gateway.last.deliver({ op: "message", ch: "wf:1:events", seq, data: seq });
    gateway.silent = new Set(["publish", "request"]);
    const stored = c.publish("wf:1:events", { n: 1 });
    const command = c.request("wf:1:control", { action: "pause" }, { cid: "cmd-1" });
    const collab = c.publish("wf:1:collab", "hi");
    await until(() => gateway.sent("publish").length === 2 && gateway.sent("request").length === 1);
    const first = gateway.last;
    gateway.silent = new Set();
    first.drop(1006);
    await assert.rejects(collab, ConnectionLost);
    assert.deepEqual(await command, { ok: true, cid: "cmd-1" });
    assert.deepEqual(await stored, { seq: 101, duplicate: false });

    const after = gateway.frames.filter((f) => f.ws !== first).map((f) => f.frame);
    assert.deepEqual(after.map((f) => f.op), ["connect", "subscribe", "publish", "request"]);
    assert.equal(after[0].resume, "r-1");
    assert.deepEqual(after[1].since, { seq: 7, epoch: "e" });
    const before = gateway.frames.filter((f) => f.ws === first).map((f) => f.frame);
    assert.equal(after[2].mid, before.find((f) => f.op === "publish" && f.ch === "wf:1:events").mid);
    assert.equal(after[3].cid, "cmd-1");
    assert.equal(c.sessionId, "sid-1", "the resumed session keeps its id");

    // The replay overlaps what was delivered: nothing twice.
    for (const seq of [7, 8]) gateway.last.deliver({ op: "message", ch: "wf:1:events", seq, data: seq });
    assert.deepEqual(received, [[5, false], [6, false], [7, false], [8, false]]);
    c.close();
  });

  test("a lost history is reported on the next message", async () => {
    const gateway = new Gateway();
    const c = client(gateway);
    await c.start();
    const received = [];
    await c.subscribe("wf:1:events", { onMessage: (m) => received.push([m.seq, m.gap]) });
    gateway.last.deliver({ op: "message", ch: "wf:1:events", seq: 3, data: 3 });
    gateway.answer = (ws, frame) => {
      if (frame.op === "subscribe") {
        setTimeout(() => ws.deliver({ op: "ack", id: frame.id, seq: 50, epoch: "e", recovered: false }), 0);
      } else Gateway.prototype.answer.call(gateway, ws, frame);
    };
    gateway.last.drop(1006);
    await until(() => gateway.sessions === 2);
    await sleep(5);
    gateway.last.deliver({ op: "message", ch: "wf:1:events", seq: 51, data: 51 });
    assert.deepEqual(received, [[3, false], [51, true]]);
    c.close();
  });

  test("subscriptions iterate, and end when the client closes", async () => {
    const gateway = new Gateway();
    const c = client(gateway);
    await c.start();
    const sub = await c.subscribe("wf:2:collab");
    gateway.last.deliver({ op: "message", ch: "wf:2:collab", data: "a", from: "bob" });
    assert.equal((await sub.next(1000)).data, "a");
    const pending = sub.next();
    c.close();
    assert.equal(await pending, null);
  });
});

describe("token refresh", () => {
  test("the token is replaced before it expires", async () => {
    const gateway = new Gateway();
    gateway.answer = (ws, frame) => {
      if (frame.op === "connect") {
        setTimeout(() => ws.deliver({ op: "connected", id: frame.id, sid: "s", gw: "g", resume: "r", exp: Math.floor(Date.now() / 1000) + 3 }), 0);
      } else Gateway.prototype.answer.call(gateway, ws, frame);
    };
    const c = client(gateway, { tokenProvider: async () => "t-2", refreshAt: 0.01 });
    const refreshed = events(c, "refreshed");
    await c.start();
    await until(() => refreshed.length === 1, 3000);
    assert.equal(gateway.sent("refresh")[0].frame.token, "t-2");
    assert.ok(c.exp > Date.now() / 1000 + 3000);
    c.close();
  });
});
