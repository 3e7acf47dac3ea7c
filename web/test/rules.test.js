// The reconnect rules and delays: the close-code table against docs/protocol.md §8.2, the rule
// for unknown codes of §8.3, and the backoff of §5.4.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  CLOSE_POLICY,
  CloseCode,
  ROOT,
  backoffDelay,
  delayFromReason,
  isRefusal,
  parseChannel,
  reconnectPolicy,
  resendSafe,
} from "./sdk.js";

const DOC = readFileSync(join(ROOT, "docs", "protocol.md"), "utf8");

/** Rows of the first table after a heading. */
function tableAfter(heading) {
  const start = DOC.indexOf(heading);
  assert.ok(start >= 0, `docs/protocol.md has no ${heading}`);
  const rows = [];
  for (const line of DOC.slice(start).split("\n").slice(1)) {
    if (line.startsWith("|")) {
      if (!/^\|[-| ]+\|$/.test(line)) rows.push(line.split("|").slice(1, -1).map((c) => c.trim()));
    } else if (rows.length) {
      break;
    }
  }
  return rows.slice(1);
}

describe("close codes", () => {
  test("the table is the document's §8.2", () => {
    const documented = new Map(tableAfter("### 8.2 Close codes").map((r) => [Number(r[0]), r[2]]));
    assert.deepEqual(new Map([...CLOSE_POLICY]), documented);
    for (const [name, code] of Object.entries(CloseCode)) {
      if (code !== 1006) assert.ok(documented.has(code), `${name} is not in §8.2`);
    }
  });

  test("unknown codes follow §8.3", () => {
    for (let code = 0; code < 5100; code++) {
      const expected = CLOSE_POLICY.get(code) ??
        ((code >= 4000 && code <= 4399) || code === 1006 || code === 1014 ? "yes" : "no");
      assert.equal(reconnectPolicy(code), expected, String(code));
    }
    assert.equal(reconnectPolicy(null), "yes", "no code at all is a lost connection");
  });

  test("refusals are 4400-4999 and never reconnect; outages do", () => {
    for (const code of [4400, 4401, 4403, 4404, 4999]) assert.ok(isRefusal(code), String(code));
    for (const code of [1000, 1001, 1006, 1012, 4000, 4003, 4399, 5000]) assert.ok(!isRefusal(code), String(code));
    assert.equal(reconnectPolicy(CloseCode.ORIGIN_REFUSED), "no");
    for (const code of [1006, 1012, 1001, 4000, 4002]) assert.equal(reconnectPolicy(code), "yes");
  });
});

describe("backoff", () => {
  test("full jitter within min(cap, base * 2^attempt)", () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(10_000, 100 * 2 ** attempt);
      assert.equal(backoffDelay(attempt, { random: () => 0 }), 0);
      const top = backoffDelay(attempt, { random: () => 0.999999 });
      assert.ok(top <= ceiling && top > ceiling * 0.99, `${attempt}: ${top}`);
    }
  });

  test("spread over the whole window with the default random", () => {
    const samples = Array.from({ length: 2000 }, () => backoffDelay(3));
    assert.ok(samples.every((d) => d >= 0 && d < 800));
    assert.ok(Math.min(...samples) < 80 && Math.max(...samples) > 720);
  });

  test("base and cap are options", () => {
    assert.equal(backoffDelay(5, { baseMs: 1, capMs: 8, random: () => 0.5 }), 4);
  });

  test("delay of a draining gateway's close reason", () => {
    assert.equal(delayFromReason("delay_ms=1830"), 1830);
    assert.equal(delayFromReason("region=eu; delay_ms=250;x=1"), 250);
    assert.equal(delayFromReason("delay_ms=abc"), 0);
    assert.equal(delayFromReason(""), 0);
    assert.equal(delayFromReason(undefined), 0);
  });
});

describe("channels and the resend rule", () => {
  test("grammar", () => {
    assert.deepEqual(parseChannel("wf:42:events"), { name: "wf:42:events", kind: "events", workflow: "42", agent: null });
    assert.equal(parseChannel("agent:planner-1").agent, "planner-1");
    for (const bad of ["wf:4.2:events", "wf:42:nope", "wf::state", "agent:", "x:1", "wf:42:events:x", `wf:${"a".repeat(129)}:state`]) {
      assert.throws(() => parseChannel(bad), TypeError, bad);
    }
  });

  test("only stored kinds are re-sent (shared/frys/shared/protocol/publish.py)", () => {
    assert.equal(resendSafe("wf:1:events"), true);
    assert.equal(resendSafe("wf:1:events", "tensor"), true);
    assert.equal(resendSafe("wf:1:state"), true);
    assert.equal(resendSafe("wf:1:state", "tensor"), false);
    assert.equal(resendSafe("wf:1:collab"), false);
    assert.equal(resendSafe("agent:a"), false);
  });
});
