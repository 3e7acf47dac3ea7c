// The wire codec against the golden vectors of tests/protocol/golden_v1.json: every frame of
// every op, both directions, byte for byte in MessagePack and JSON.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  DecodeError,
  decodeJson,
  decodeMsgpack,
  encodeJson,
  encodeMsgpack,
  fromBase64,
  fromHex,
  readJson,
  toBase64,
  toHex,
} from "./sdk.js";

const GOLDEN = readJson("tests/protocol/golden_v1.json").vectors;

/**
 * Vectors a JavaScript object cannot round-trip byte for byte, and why. They are still
 * decoded, and checked for equal content.
 */
const ONE_WAY = {
  // data map with an integer key (a JS object has string keys, and orders integer-like
  // keys first) and NaN/±inf, which JSON carries as null.
  message_json_lossy: "integer map key, non-finite floats",
};

describe("golden vectors", () => {
  test("the fixture holds vectors of every op", () => {
    assert.ok(GOLDEN.length >= 40);
  });

  for (const vector of GOLDEN) {
    test(`${vector.name}: msgpack`, () => {
      const frame = decodeMsgpack(fromHex(vector.msgpack));
      assert.equal(frame.op, vector.op);
      if (vector.name in ONE_WAY) {
        assert.deepEqual(decodeMsgpack(encodeMsgpack(frame)), frame);
        return;
      }
      assert.equal(toHex(encodeMsgpack(frame)), vector.msgpack);
    });

    test(`${vector.name}: json`, () => {
      const frame = decodeJson(vector.json);
      assert.equal(frame.op, vector.op);
      if (vector.name in ONE_WAY) {
        assert.deepEqual(JSON.parse(encodeJson(frame)), JSON.parse(vector.json));
        return;
      }
      assert.equal(encodeJson(frame), vector.json);
    });

    test(`${vector.name}: msgpack read, written as json`, () => {
      // The JSON mapping of §7: bin becomes {"$bytes": ...}, the rest maps directly.
      const frame = decodeMsgpack(fromHex(vector.msgpack));
      if (vector.name in ONE_WAY) {
        assert.deepEqual(JSON.parse(encodeJson(frame)), JSON.parse(vector.json));
        return;
      }
      assert.equal(encodeJson(frame), vector.json);
    });
  }
});

describe("JSON mapping", () => {
  test("binary values travel as $bytes and come back as Uint8Array", () => {
    const bytes = new Uint8Array([0, 1, 254, 255]);
    const text = encodeJson({ op: "publish", id: 6, ch: "wf:42:events", data: { blob: bytes } });
    assert.equal(text, '{"op":"publish","id":6,"ch":"wf:42:events","data":{"blob":{"$bytes":"AAH+/w=="}}}');
    const back = decodeJson(text);
    assert.deepEqual(back.data.blob, bytes);
  });

  test("an object with $bytes and another key is ordinary data", () => {
    const frame = decodeJson('{"op":"message","ch":"wf:1:collab","data":{"$bytes":"AA==","x":1}}');
    assert.deepEqual(frame.data, { $bytes: "AA==", x: 1 });
  });

  test("invalid base64 makes the frame invalid", () => {
    assert.throws(() => decodeJson('{"op":"message","ch":"wf:1:collab","data":{"$bytes":"A"}}'), DecodeError);
  });

  test("base64 of every length", () => {
    for (let n = 0; n < 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37) & 0xff);
      assert.equal(toBase64(bytes), Buffer.from(bytes).toString("base64"));
      assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
    }
  });

  test("non-ASCII text is written unescaped", () => {
    const text = encodeJson({ op: "publish", id: 1, ch: "wf:1:collab", data: "Grüße ✓" });
    assert.ok(text.includes("Grüße ✓"));
  });
});

describe("decoding", () => {
  test("unknown ops are returned bare, to be ignored", () => {
    assert.deepEqual(decodeJson('{"op":"shiny","x":1}'), { op: "shiny" });
  });

  test("unknown keys are ignored and null optional fields are absent", () => {
    const frame = decodeJson('{"op":"ack","id":3,"seq":null,"future":true}');
    assert.deepEqual(frame, { op: "ack", id: 3 });
  });

  test("fields are accepted in any order", () => {
    const frame = decodeJson('{"data":1,"ch":"wf:1:events","op":"message","seq":5}');
    assert.equal(encodeJson(frame), '{"op":"message","ch":"wf:1:events","seq":5,"data":1}');
  });

  test("wrong types and missing fields are refused, naming the request id", () => {
    assert.throws(() => decodeJson('{"op":"ack"}'), DecodeError);
    assert.throws(() => decodeJson('{"op":"ack","id":-1}'), DecodeError);
    assert.throws(() => decodeJson('{"op":"message","ch":1,"data":1}'), DecodeError);
    assert.throws(() => decodeJson("[1]"), DecodeError);
    assert.throws(() => decodeJson("{"), DecodeError);
    try {
      decodeJson('{"op":"ack","id":7,"seq":"x"}');
      assert.fail("decoded");
    } catch (error) {
      assert.ok(error instanceof DecodeError);
      assert.equal(error.ref, 7);
    }
  });

  test("msgpack maps with non-string keys keep their entries, keyed by JSON text", () => {
    // {op: "message", ch: "wf:1:collab", data: {true: 1, null: 2}}
    const bytes = fromHex("83a26f70a76d657373616765a26368ab77663a313a636f6c6c6162a46461746182c301c002");
    assert.deepEqual(decodeMsgpack(bytes).data, { true: 1, null: 2 });
  });

  test("garbage bytes are a DecodeError, never another exception", () => {
    for (const hex of ["", "c1", "ff", "81", "92a1", "dc0001"]) {
      assert.throws(() => decodeMsgpack(fromHex(hex)), DecodeError, hex);
    }
  });
});

describe("encoding", () => {
  test("canonical order and omitted absent fields", () => {
    const text = encodeJson({
      data: { cmd: "retry" },
      tc: undefined,
      timeout_ms: 10000,
      cid: "c-5b1e",
      ch: "wf:42:control",
      id: 8,
      op: "request",
    });
    assert.equal(text, '{"op":"request","id":8,"ch":"wf:42:control","cid":"c-5b1e","timeout_ms":10000,"data":{"cmd":"retry"}}');
  });

  test("null data is sent as nil", () => {
    assert.equal(encodeJson({ op: "publish", id: 1, ch: "wf:1:collab", data: null }), '{"op":"publish","id":1,"ch":"wf:1:collab","data":null}');
  });

  test("a frame lacking a required field is a programming error", () => {
    assert.throws(() => encodeMsgpack({ op: "subscribe", id: 1 }), TypeError);
    assert.throws(() => encodeMsgpack({ op: "nope" }), TypeError);
  });
});
