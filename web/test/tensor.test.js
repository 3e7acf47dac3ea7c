// Tensor frames (docs/tensor-frames.md, version 2): the golden vectors of
// tests/tensor/golden_frames.json, frames written by the Python encoder for every dtype,
// precision and codec (when run through pytest, which writes them), and frames that must be
// refused without touching the state held.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  ChunkAssembler,
  TensorChannel,
  TensorDecoder,
  TensorFrameError,
  TensorGapError,
  TensorLimitError,
  crc32,
  decompressChecked,
  fromHex,
  halfToNumber,
  readHeader,
  readJson,
  toHex,
  unshuffle,
} from "./sdk.js";

const ERRORS = { TensorFrameError, TensorGapError, TensorLimitError };
const GOLDEN = readJson("tests/tensor/golden_frames.json").vectors;

/** The C-order bytes of a decoded value, as the fixtures write them. */
function valueHex(value) {
  const { data } = value;
  return toHex(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** Decode every step of a vector, checking outputs and errors. */
function run(vector, expectedHex) {
  const decoder = new TensorDecoder(vector.stream_id);
  const assembler = new ChunkAssembler();
  for (const [i, step] of vector.steps.entries()) {
    let out = null;
    for (const text of step.frames) {
      let frame = fromHex(text);
      if (readHeader(frame).kind === "chunk") {
        frame = assembler.feed(frame, 0);
        if (frame === null) continue;
      }
      if (step.error) {
        assert.throws(() => decoder.feed(frame), ERRORS[step.error], `${vector.name} step ${i}`);
        out = decoder.current();
      } else {
        out = decoder.feed(frame);
      }
    }
    assert.ok(out !== null, `${vector.name} step ${i} gave no value`);
    assert.equal(out.dtype, step.output.dtype);
    assert.deepEqual(out.shape, step.output.shape);
    assert.equal(valueHex(out), expectedHex(step), `${vector.name} step ${i}`);
    assert.equal(out.precision, vector.precision);
  }
  return decoder;
}

describe("golden frames", () => {
  for (const vector of GOLDEN) {
    test(vector.name, () => {
      const decoder = run(vector, (step) => step.output.hex);
      assert.equal(decoder.epoch, vector.epoch);
    });
  }

  test("decoded values are typed arrays of their dtype", () => {
    const value = new TensorDecoder(1).feed(fromHex(GOLDEN[0].steps[0].frames[0]));
    assert.ok(value.data instanceof Float32Array);
    assert.deepEqual([...value.data], [1.5, -0]);
    assert.ok(Object.is(value.data[1], -0), "-0.0 survives bit for bit");
  });

  test("Fortran frames come out in C order", () => {
    const vector = GOLDEN.find((v) => v.name === "int16_fortran_keyframe");
    const value = new TensorDecoder(3).feed(fromHex(vector.steps[0].frames[0]));
    assert.ok(value.data instanceof Int16Array && value.fortran);
    assert.deepEqual([...value.data], [1, 2, 3, 4]);
  });

  test("complex values are interleaved real, imaginary", () => {
    const vector = GOLDEN.find((v) => v.name === "complex64_keyframe");
    const value = new TensorDecoder(7).feed(fromHex(vector.steps[0].frames[0]));
    assert.deepEqual([...value.data], [1, -2]);
  });
});

const CROSS = process.env.FRYS_TENSOR_VECTORS;

describe("frames of the Python encoder", { skip: CROSS ? false : "run through pytest (tests/browser/test_sdk_node.py), which writes them" }, () => {
  const vectors = CROSS ? JSON.parse(readFileSync(CROSS, "utf8")).vectors : [];
  test("they cover every dtype, precision and codec", () => {
    const codecs = new Set();
    for (const vector of vectors) {
      for (const step of vector.steps) for (const frame of step.frames) codecs.add(fromHex(frame)[2]);
    }
    assert.deepEqual([...codecs].sort(), [0, 1, 2, 3, 4]);
    assert.ok(new Set(vectors.map((v) => v.dtype)).size >= 14);
  });
  for (const vector of vectors) {
    test(vector.name, () => {
      // float16 values come out widened to float32: the fixture gives those bytes.
      run(vector, (step) => step.output.js_hex ?? step.output.hex);
    });
  }
});

/** A valid keyframe of float32 [1.5, -0.0] (golden) and its next delta. */
const KEY = fromHex(GOLDEN[0].steps[0].frames[0]);
const DELTA = fromHex(GOLDEN[0].steps[1].frames[0]);

/** Re-seal a frame after editing it: recompute its CRC. */
function seal(frame) {
  const out = frame.slice();
  const crc = crc32(out.subarray(20), crc32(out.subarray(0, 16)));
  new DataView(out.buffer).setUint32(16, crc, true);
  return out;
}

describe("refused frames leave the state as it was", () => {
  test("a corrupt byte is a CRC mismatch", () => {
    const decoder = new TensorDecoder(1);
    decoder.feed(KEY);
    const bad = DELTA.slice();
    bad[bad.length - 1] ^= 1;
    assert.throws(() => decoder.feed(bad), /CRC/);
    assert.deepEqual([...decoder.feed(DELTA).data], [1.5, 2]);
  });

  test("a delta before any keyframe, a replay, or another epoch is a gap", () => {
    const decoder = new TensorDecoder(1);
    assert.throws(() => decoder.feed(DELTA), TensorGapError);
    decoder.feed(KEY);
    decoder.feed(DELTA);
    assert.throws(() => decoder.feed(DELTA), TensorGapError, "a replayed delta");
    assert.equal(decoder.sequence, 1);
  });

  test("structure: version, kind, codec, flags, stream", () => {
    const cases = [
      [(f) => (f[0] = 0xf1), /version 1/],
      [(f) => (f[0] = 0x12), /not a tensor frame/],
      [(f) => (f[1] = 9), /kind/],
      [(f) => (f[2] = 2), /not valid in a keyframe/],
      [(f) => (f[2] = 8), /codec/],
      [(f) => (f[3] = 0x08), /reserved flag/],
      [(f) => (f[12] = 99), /dtype/],
      [(f) => (f[3] = 0x04), /Fortran/],
      [(f) => ((f[3] = 0x01), (f[12] = 6)), /does not apply/],
      [(f) => (f[14] = 1), /exponent/],
    ];
    for (const [edit, pattern] of cases) {
      const frame = KEY.slice();
      edit(frame);
      assert.throws(() => new TensorDecoder(1).feed(seal(frame)), (e) => e instanceof TensorFrameError && pattern.test(e.message), String(pattern));
    }
    assert.throws(() => new TensorDecoder(2).feed(KEY), /stream 1/);
    assert.throws(() => new TensorDecoder(1).feed(KEY.subarray(0, 30)), TensorFrameError);
  });

  test("shape limits count the non-zero dimensions, before anything is read", () => {
    // A keyframe header declaring shape [0, 4294967295, 4294967295] of uint8.
    const head = fromHex("f2010000" + "01000000" + "00000000" + "03" + "03" + "0000" + "00000000" + "12345678");
    const shape = fromHex("00000000ffffffffffffffff");
    const frame = new Uint8Array(head.length + shape.length);
    frame.set(head);
    frame.set(shape, head.length);
    assert.throws(() => new TensorDecoder(1).feed(seal(frame)), TensorLimitError);
    assert.throws(() => new TensorDecoder(1, { maxFrameBytes: 10 }).feed(KEY), TensorLimitError);
  });
});

describe("zstd payloads", () => {
  // A zstd frame of 1000 zero bytes (the golden SHUFFLE_ZSTD keyframe's payload).
  const zeros = fromHex("28b52ffd60e8024d00001000000100e32b8005");

  test("exactly the declared size, checked against the bounds first", () => {
    assert.equal(decompressChecked(zeros, 1000, 1000).length, 1000);
    assert.throws(() => decompressChecked(zeros, 0, 999), TensorLimitError);
    assert.throws(() => decompressChecked(zeros, 1001, 2000), TensorFrameError);
  });

  test("nothing may follow the frame", () => {
    const longer = new Uint8Array(zeros.length + 1);
    longer.set(zeros);
    assert.throws(() => decompressChecked(longer, 1000, 1000), /after the zstd frame/);
    assert.throws(() => decompressChecked(zeros.subarray(0, zeros.length - 1), 1000, 1000), /truncated/);
  });

  test("a window over 8 MiB is refused before decompressing", () => {
    // Not single-segment, a two-byte content size (256 + 0), window descriptor 0x69:
    // 2^(10+13) + 1 · 2^20 = 9 MiB, refused; 0x68 (8 MiB) passes the check.
    const frame = (wd) => fromHex(`28b52ffd40${wd}0000`);
    assert.throws(() => decompressChecked(frame("69"), 0, 1000), TensorLimitError);
    assert.throws(() => decompressChecked(frame("68"), 0, 1000), /truncated/);
    assert.throws(() => decompressChecked(fromHex("28b52ffd0068"), 0, 10), /content size/);
  });

  test("not zstd at all", () => {
    assert.throws(() => decompressChecked(fromHex("00112233445566"), 0, 10), /not a zstd frame/);
  });
});

describe("chunks", () => {
  const vector = GOLDEN.find((v) => v.name === "chunked_keyframe");
  const chunks = vector.steps[0].frames.map(fromHex);

  test("any order, duplicates ignored", () => {
    const assembler = new ChunkAssembler();
    assert.equal(assembler.feed(chunks[2], 0), null);
    assert.equal(assembler.feed(chunks[0], 0), null);
    assert.equal(assembler.feed(chunks[0], 0), null);
    assert.equal(assembler.feed(chunks[3], 0), null);
    const whole = assembler.feed(chunks[1], 0);
    assert.equal(whole.length, 128);
    assert.equal(assembler.pending, 0);
    assert.deepEqual([...new TensorDecoder(5).feed(whole).data], Array.from({ length: 100 }, (_, i) => i));
  });

  test("incomplete sets expire and are evicted, oldest first", () => {
    const assembler = new ChunkAssembler({ timeout: 5, maxPendingSets: 1 });
    assembler.feed(chunks[0], 0);
    assert.equal(assembler.expire(10), 1);
    assembler.feed(chunks[0], 20);
    const other = chunks[1].slice();
    other[8] = 9; // another sequence: another set
    assembler.feed(other, 20);
    assert.equal(assembler.pending, 1);
    assert.equal(assembler.evicted, 2);
  });

  test("oversized sets and short chunks are refused", () => {
    assert.throws(() => new ChunkAssembler({ maxFrameBytes: 100 }).feed(chunks[0], 0), TensorLimitError);
    assert.throws(() => new ChunkAssembler().feed(chunks[0].subarray(0, 40), 0), /carries/);
  });
});

describe("channel of streams", () => {
  test("a gap is reported, not shown, and a keyframe repairs it", () => {
    const channel = new TensorChannel();
    assert.equal(channel.feed(DELTA, 0).gap, 1);
    assert.deepEqual([...channel.feed(KEY, 0).value.data], [1.5, -0]);
    assert.deepEqual([...channel.feed(DELTA, 0).value.data], [1.5, 2]);
    assert.ok(channel.feed(fromHex("0011223344556677889900aa"), 0).error instanceof TensorFrameError);
    assert.equal(channel.current(1).sequence, 1);
  });
});

describe("helpers", () => {
  test("CRC-32 as zlib computes it", () => {
    assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  });

  test("half floats widen exactly", () => {
    assert.equal(halfToNumber(0x3c00), 1);
    assert.equal(halfToNumber(0xc000), -2);
    assert.equal(halfToNumber(0x7bff), 65504);
    assert.equal(halfToNumber(0x0001), 2 ** -24);
    assert.equal(halfToNumber(0x7c00), Infinity);
    assert.ok(Number.isNaN(halfToNumber(0x7e00)));
    assert.ok(Object.is(halfToNumber(0x8000), -0));
  });

  test("unshuffle undoes the byte shuffle", () => {
    assert.deepEqual([...unshuffle(Uint8Array.from([1, 3, 5, 2, 4, 6]), 2)], [1, 2, 3, 4, 5, 6]);
  });
});
