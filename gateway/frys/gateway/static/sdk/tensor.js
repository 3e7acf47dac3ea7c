/**
 * Tensor frames, format version 2 (docs/tensor-frames.md): keyframes, XOR deltas and
 * chunks decoded into typed arrays.
 *
 * The decoder holds the wire bytes of the last state it applied with the (epoch, sequence)
 * that names it; a delta applies only to exactly that state. Every check (limits, CRC,
 * sizes, epoch, base sequence, the zstd header) runs before the state is touched, so a
 * frame that fails leaves the decoder as it was and the stream goes on after a keyframe.
 *
 * Values come out in C (row-major) order whatever the frame's order, as the typed array
 * of their dtype: `Float32Array` for float32, `BigInt64Array` for int64, `Uint8Array` of
 * 0/1 for bool. float16 has no typed array everywhere, so it comes out widened exactly to
 * `Float32Array`; complex types come out as interleaved (real, imaginary) float arrays.
 *
 * @module
 */
import { zstdDecompress } from "./deps.js";

export const FORMAT_VERSION = 2;
export const MAGIC_VERSION = 0xf0 | FORMAT_VERSION;
export const HEADER_SIZE = 24;
export const CHUNK_HEADER_SIZE = 24;
/** zstd window a decoder accepts (2^23 bytes, §7). */
export const MAX_WINDOW_SIZE = 1 << 23;
const GAP_ESCAPE = 255;

export const Kind = Object.freeze({ KEYFRAME: 1, DELTA: 2, CHUNK: 3 });
export const Codec = Object.freeze({
  RAW: 0,
  SHUFFLE_ZSTD: 1,
  SPARSE_BITMAP: 2,
  SPARSE_GAPS: 3,
  UNCHANGED: 4,
});
export const Precision = Object.freeze({ EXACT: 0, FLOAT16: 1, BFLOAT16: 2, QUANTIZED: 3 });
const PRECISION_NAMES = ["EXACT", "FLOAT16", "BFLOAT16", "QUANTIZED"];
const MIN_EXPONENT = -1100;
const MAX_EXPONENT = 1100;

/** Corrupt, truncated or invalid frame: drop it, resynchronise if a delta was lost. */
export class TensorFrameError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TensorFrameError";
  }
}

/** The header or the zstd frame declares more than the limits allow (checked first). */
export class TensorLimitError extends TensorFrameError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TensorLimitError";
  }
}

/** A valid delta that does not apply to the state held: ask for a keyframe. */
export class TensorGapError extends Error {
  /**
   * @param {number | null} held sequence held (`null` before the first keyframe)
   * @param {number} base the delta's base sequence
   * @param {number | null} heldEpoch
   * @param {number} epoch the delta's epoch
   */
  constructor(held, base, heldEpoch, epoch) {
    super(
      held === null
        ? `delta on base ${base} before any keyframe`
        : `delta on base ${base} (epoch ${hex32(epoch)}) does not follow the state held ` +
            `(sequence ${held}, epoch ${hex32(heldEpoch ?? 0)})`,
    );
    this.name = "TensorGapError";
    this.held = held;
    this.base = base;
    this.heldEpoch = heldEpoch;
    this.epoch = epoch;
  }
}

/** @param {number} value */
function hex32(value) {
  return `0x${(value >>> 0).toString(16).padStart(8, "0")}`;
}

/**
 * @typedef {Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array |
 *   BigInt64Array | BigUint64Array | Float32Array | Float64Array} TypedArray
 */

/**
 * One element type (§5).
 * @typedef {object} ElementType
 * @property {number} code
 * @property {string} dtype numpy's name of it
 * @property {number} itemsize bytes of one element
 * @property {number} laneSize bytes of one lane
 * @property {number} lanes lanes per element (2 for complex)
 * @property {boolean} isFloat
 * @property {new (buffer: ArrayBuffer) => TypedArray} array the typed array of decoded values
 */

/** @type {ReadonlyMap<number, ElementType>} */
export const DTYPES = new Map(
  /** @type {[number, string, number, number, boolean, any][]} */ ([
    [1, "bool", 1, 1, false, Uint8Array],
    [2, "int8", 1, 1, false, Int8Array],
    [3, "uint8", 1, 1, false, Uint8Array],
    [4, "int16", 2, 1, false, Int16Array],
    [5, "uint16", 2, 1, false, Uint16Array],
    [6, "int32", 4, 1, false, Int32Array],
    [7, "uint32", 4, 1, false, Uint32Array],
    [8, "int64", 8, 1, false, BigInt64Array],
    [9, "uint64", 8, 1, false, BigUint64Array],
    [10, "float16", 2, 1, true, Float32Array],
    [11, "float32", 4, 1, true, Float32Array],
    [12, "float64", 8, 1, true, Float64Array],
    [13, "complex64", 8, 2, true, Float32Array],
    [14, "complex128", 16, 2, true, Float64Array],
  ]).map(([code, dtype, itemsize, lanes, isFloat, array]) => [
    code,
    { code, dtype, itemsize, laneSize: itemsize / lanes, lanes, isFloat, array },
  ]),
);

/**
 * Limits a decoder enforces from the header, before allocating or decompressing (§10).
 * @typedef {object} TensorLimits
 * @property {number} maxBytes largest decoded array (extent × item size)
 * @property {number} maxElements largest extent (product of the non-zero dimensions)
 * @property {number} maxNdim most dimensions
 * @property {number} maxFrameBytes largest encoded frame, header included
 */

/** @type {Readonly<TensorLimits>} */
export const DEFAULT_LIMITS = Object.freeze({
  maxBytes: 64 * 2 ** 20,
  maxElements: 2 ** 26,
  maxNdim: 32,
  maxFrameBytes: 64 * 2 ** 20 + 4096,
});

/**
 * Bounds on chunk reassembly (§9).
 * @typedef {object} ChunkLimits
 * @property {number} maxFrameBytes largest frame a chunk set may declare
 * @property {number} maxPendingSets most incomplete sets held
 * @property {number} maxPendingBytes most bytes the incomplete sets may declare in total
 * @property {number} timeout seconds after its first chunk an incomplete set is dropped
 */

/** @type {Readonly<ChunkLimits>} */
export const DEFAULT_CHUNK_LIMITS = Object.freeze({
  maxFrameBytes: 64 * 2 ** 20 + 4096,
  maxPendingSets: 16,
  maxPendingBytes: 128 * 2 ** 20,
  timeout: 30,
});

// --- CRC-32 (ISO-HDLC, as zlib's crc32) ------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `bytes`, continuing from `crc` (0 to start).
 * @param {Uint8Array} bytes
 * @param {number} [crc]
 * @returns {number}
 */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The CRC of a keyframe or delta: every byte but the CRC field itself (bytes 16–19).
 * @param {Uint8Array} frame
 * @returns {number}
 */
export function frameCrc(frame) {
  return crc32(frame.subarray(20), crc32(frame.subarray(0, 16)));
}

// --- headers -----------------------------------------------------------------------------

/**
 * @typedef {object} KeyframeHeader
 * @property {"keyframe"} kind
 * @property {number} streamId
 * @property {number} sequence
 * @property {number} epoch
 * @property {number} codec
 * @property {number} precision
 * @property {boolean} fortran
 * @property {number} dtypeCode
 * @property {number} exponent
 * @property {number[]} shape
 * @property {number} crc
 * @property {number} payloadOffset
 *
 * @typedef {object} DeltaHeader
 * @property {"delta"} kind
 * @property {number} streamId
 * @property {number} sequence
 * @property {number} epoch
 * @property {number} codec
 * @property {number} precision
 * @property {number} base
 * @property {number} crc
 * @property {number} payloadOffset
 *
 * @typedef {object} ChunkHeader
 * @property {"chunk"} kind
 * @property {number} streamId
 * @property {number} sequence
 * @property {number} index
 * @property {number} count
 * @property {number} frameCrc
 * @property {number} totalLength
 * @property {number} payloadOffset
 *
 * @typedef {KeyframeHeader | DeltaHeader | ChunkHeader} FrameHeader
 */

/**
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {Uint8Array}
 */
function bytesOf(data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/**
 * Parse and structurally check a frame's header (not its CRC); throws
 * {@link TensorFrameError}.
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {FrameHeader}
 */
export function readHeader(data) {
  const frame = bytesOf(data);
  if (frame.length < 12) {
    throw new TensorFrameError(`truncated frame: ${frame.length} bytes, a header needs at least 12`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const magic = frame[0];
  if (magic >> 4 !== MAGIC_VERSION >> 4) {
    throw new TensorFrameError(`not a tensor frame (first byte 0x${magic.toString(16).padStart(2, "0")})`);
  }
  if (magic !== MAGIC_VERSION) {
    throw new TensorFrameError(
      `unsupported tensor frame version ${magic & 0x0f} (version ${FORMAT_VERSION} expected)`,
    );
  }
  const kind = frame[1];
  const codec = frame[2];
  const flags = frame[3];
  const streamId = view.getUint32(4, true);
  const sequence = view.getUint32(8, true);
  if (kind === Kind.KEYFRAME || kind === Kind.DELTA) {
    const name = kind === Kind.KEYFRAME ? "keyframe" : "delta";
    if (frame.length < HEADER_SIZE) {
      throw new TensorFrameError(`truncated ${name}: ${frame.length} bytes, header needs ${HEADER_SIZE}`);
    }
    if (codec > Codec.UNCHANGED) throw new TensorFrameError(`unknown codec ${codec}`);
    const allowed = 0x03 | (kind === Kind.KEYFRAME ? 0x04 : 0);
    if (flags & ~allowed) {
      throw new TensorFrameError(`reserved flag bits set (flags 0x${flags.toString(16).padStart(2, "0")})`);
    }
    const crc = view.getUint32(16, true);
    const epoch = view.getUint32(20, true);
    if (kind === Kind.DELTA) {
      return {
        kind: "delta",
        streamId,
        sequence,
        epoch,
        codec,
        precision: flags & 0x03,
        base: view.getUint32(12, true),
        crc,
        payloadOffset: HEADER_SIZE,
      };
    }
    const ndim = frame[13];
    const offset = HEADER_SIZE + 4 * ndim;
    if (frame.length < offset) {
      throw new TensorFrameError(`truncated keyframe: ${frame.length} bytes, shape ends at ${offset}`);
    }
    if (codec !== Codec.RAW && codec !== Codec.SHUFFLE_ZSTD) {
      throw new TensorFrameError(`codec ${codec} is not valid in a keyframe`);
    }
    const shape = [];
    for (let i = 0; i < ndim; i++) shape.push(view.getUint32(HEADER_SIZE + 4 * i, true));
    return {
      kind: "keyframe",
      streamId,
      sequence,
      epoch,
      codec,
      precision: flags & 0x03,
      fortran: Boolean(flags & 0x04),
      dtypeCode: frame[12],
      exponent: view.getInt16(14, true),
      shape,
      crc,
      payloadOffset: offset,
    };
  }
  if (kind === Kind.CHUNK) {
    if (frame.length < CHUNK_HEADER_SIZE) {
      throw new TensorFrameError(`truncated chunk: ${frame.length} bytes, header needs ${CHUNK_HEADER_SIZE}`);
    }
    if (codec || flags) throw new TensorFrameError("chunk frames have codec and flags 0");
    const index = view.getUint16(12, true);
    const count = view.getUint16(14, true);
    const totalLength = view.getUint32(20, true);
    if (!(index < count)) throw new TensorFrameError(`chunk index ${index} outside a set of ${count}`);
    if (totalLength < count) throw new TensorFrameError(`${count} chunks cannot carry ${totalLength} bytes`);
    const size = Math.ceil(totalLength / count);
    if ((count - 1) * size >= totalLength) {
      throw new TensorFrameError(`${count} chunks of ${size} bytes overrun ${totalLength} bytes`);
    }
    return {
      kind: "chunk",
      streamId,
      sequence,
      index,
      count,
      frameCrc: view.getUint32(16, true),
      totalLength,
      payloadOffset: CHUNK_HEADER_SIZE,
    };
  }
  throw new TensorFrameError(`unknown frame kind ${kind}`);
}

// --- zstd ----------------------------------------------------------------------------------

/**
 * Decompress a payload that must be one zstd frame declaring a content size within
 * `[low, high]` and a window of at most 8 MiB, with no bytes after it. Everything is read
 * from the zstd frame header and block headers first, so a frame over a limit is refused
 * before anything is decompressed or allocated.
 *
 * @param {Uint8Array} payload
 * @param {number} low
 * @param {number} high
 * @returns {Uint8Array} exactly the declared number of bytes
 */
export function decompressChecked(payload, low, high) {
  if (payload.length < 6) throw new TensorFrameError("payload is not a zstd frame");
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (view.getUint32(0, true) !== 0xfd2fb528) throw new TensorFrameError("payload is not a zstd frame");
  const descriptor = payload[4];
  const fcsFlag = descriptor >> 6;
  const single = (descriptor >> 5) & 1;
  const checksum = (descriptor >> 2) & 1;
  const dictFlag = descriptor & 3;
  if (descriptor & 0x08) throw new TensorFrameError("payload is not a zstd frame (reserved bit set)");
  let pos = 5;
  let window = 0;
  if (!single) {
    const wd = payload[pos++];
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  const dictBytes = [0, 1, 2, 4][dictFlag];
  let dictId = 0;
  for (let i = 0; i < dictBytes; i++) dictId += payload[pos + i] * 2 ** (8 * i);
  pos += dictBytes;
  if (dictId !== 0) throw new TensorFrameError("zstd payload names a dictionary");
  const fcsBytes = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag];
  if (fcsBytes === 0) throw new TensorFrameError("zstd payload does not declare its content size");
  if (pos + fcsBytes > payload.length) throw new TensorFrameError("truncated zstd frame header");
  let size = 0;
  for (let i = 0; i < fcsBytes; i++) size += payload[pos + i] * 2 ** (8 * i);
  if (fcsFlag === 1) size += 256;
  pos += fcsBytes;
  if (single) window = size;
  if (size > high) throw new TensorLimitError(`payload would expand to ${size} bytes, at most ${high} allowed`);
  if (size < low) throw new TensorFrameError(`payload expands to ${size} bytes, at least ${low} expected`);
  if (window > MAX_WINDOW_SIZE) {
    throw new TensorLimitError(`zstd window of ${window} bytes exceeds ${MAX_WINDOW_SIZE} bytes`);
  }
  // Walk the block headers to where the frame ends: nothing may follow it.
  for (;;) {
    if (pos + 3 > payload.length) throw new TensorFrameError("truncated zstd frame");
    const block = payload[pos] | (payload[pos + 1] << 8) | (payload[pos + 2] << 16);
    pos += 3;
    const type = (block >> 1) & 3;
    if (type === 3) throw new TensorFrameError("corrupt zstd payload (reserved block type)");
    pos += type === 1 ? 1 : block >>> 3;
    if (pos > payload.length) throw new TensorFrameError("truncated zstd frame");
    if (block & 1) break;
  }
  if (checksum) pos += 4;
  if (pos !== payload.length) throw new TensorFrameError("bytes after the zstd frame");
  let out;
  try {
    out = zstdDecompress(payload);
  } catch (error) {
    throw new TensorFrameError(`corrupt zstd payload (${/** @type {Error} */ (error).message})`);
  }
  if (out.length !== size) throw new TensorFrameError("zstd payload does not match its declared size");
  return out;
}

// --- lanes -----------------------------------------------------------------------------

/**
 * Undo the byte shuffle of `laneCount` lanes of `laneSize` bytes: byte j of lane i was
 * written at j·laneCount + i.
 * @param {Uint8Array} data
 * @param {number} laneSize
 * @returns {Uint8Array}
 */
export function unshuffle(data, laneSize) {
  if (laneSize === 1) return data;
  const count = data.length / laneSize;
  const out = new Uint8Array(data.length);
  for (let j = 0; j < laneSize; j++) {
    const from = j * count;
    for (let i = 0; i < count; i++) out[i * laneSize + j] = data[from + i];
  }
  return out;
}

/**
 * @typedef {object} Representation
 * @property {ElementType} element
 * @property {number} precision
 * @property {number} exponent
 * @property {number} laneSize bytes of one wire lane
 * @property {number} wireSize bytes of one element on the wire
 */

/**
 * @param {ElementType} element
 * @param {number} precision
 * @returns {boolean}
 */
function applies(element, precision) {
  if (precision === Precision.QUANTIZED) return element.isFloat && element.lanes === 1;
  if (precision === Precision.FLOAT16 || precision === Precision.BFLOAT16) {
    return element.isFloat && element.lanes === 1 && element.itemsize > 2;
  }
  return precision === Precision.EXACT;
}

/**
 * The bits of an IEEE half as a number (exact).
 * @param {number} bits
 * @returns {number}
 */
export function halfToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Decoded values of little-endian wire elements, in the element order they came in.
 * @param {Uint8Array} wire
 * @param {Representation} rep
 * @param {number} count elements
 * @returns {TypedArray}
 */
function valuesOf(wire, rep, count) {
  const { element, precision } = rep;
  if (precision === Precision.FLOAT16 || precision === Precision.BFLOAT16) {
    const view = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
    const out = new element.array(new ArrayBuffer(count * element.itemsize));
    const scratch = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < count; i++) {
      const bits = view.getUint16(2 * i, true);
      if (precision === Precision.FLOAT16) {
        out[i] = halfToNumber(bits);
      } else {
        scratch.setUint32(0, bits << 16, true); // bfloat16: the top half of a float32
        out[i] = scratch.getFloat32(0, true);
      }
    }
    return out;
  }
  if (element.code === 10) {
    const view = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = halfToNumber(view.getUint16(2 * i, true));
    return out;
  }
  const bytes = wire.slice(); // a fresh buffer the caller owns
  if (!LITTLE_ENDIAN && element.laneSize > 1) {
    for (let at = 0; at < bytes.length; at += element.laneSize) {
      bytes.subarray(at, at + element.laneSize).reverse();
    }
  }
  return new element.array(bytes.buffer);
}

/**
 * Wire bytes of elements in Fortran order rearranged into C order.
 * @param {Uint8Array} wire
 * @param {number[]} shape
 * @param {number} size bytes per element
 * @returns {Uint8Array}
 */
function fortranToC(wire, shape, size) {
  const ndim = shape.length;
  const count = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(wire.length);
  const strides = new Array(ndim); // Fortran strides, in elements
  let stride = 1;
  for (let k = 0; k < ndim; k++) {
    strides[k] = stride;
    stride *= shape[k];
  }
  const index = new Array(ndim).fill(0);
  let source = 0;
  for (let c = 0; c < count; c++) {
    out.set(wire.subarray(source * size, source * size + size), c * size);
    for (let k = ndim - 1; k >= 0; k--) {
      index[k] += 1;
      source += strides[k];
      if (index[k] < shape[k]) break;
      source -= strides[k] * shape[k];
      index[k] = 0;
    }
  }
  return out;
}

// --- decoder -----------------------------------------------------------------------------

/**
 * A decoded tensor value.
 * @typedef {object} TensorValue
 * @property {number} stream stream id
 * @property {number} sequence
 * @property {number} epoch epoch of the encoder whose state this is
 * @property {string} dtype numpy's name of the element type
 * @property {number[]} shape
 * @property {TypedArray} data the values in C order (complex: interleaved real, imaginary)
 * @property {string} precision `EXACT`, `FLOAT16`, `BFLOAT16` or `QUANTIZED`
 * @property {number} maxAbsError bound on |decoded − published| (0 unless quantised)
 * @property {boolean} fortran whether the frames carry Fortran order (the data is C order)
 */

/**
 * @typedef {object} State
 * @property {Representation} rep
 * @property {number[]} shape
 * @property {boolean} fortran
 * @property {Uint8Array} wire wire lanes of every element, in the frames' element order
 * @property {number} count elements
 * @property {number} epoch
 * @property {number} sequence
 */

/** Applies the frames of one tensor stream and returns its current value. */
export class TensorDecoder {
  /**
   * @param {number | null} [streamId] the stream to accept; `null` adopts the first
   *   keyframe's
   * @param {Partial<TensorLimits>} [limits]
   */
  constructor(streamId = null, limits = {}) {
    /** @type {number | null} */
    this.streamId = streamId;
    /** @type {TensorLimits} */
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    /** @type {State | null} */
    this._state = null;
  }

  /** Sequence of the state held, `null` before the first keyframe. */
  get sequence() {
    return this._state?.sequence ?? null;
  }

  /** Epoch of the encoder whose state is held, `null` before the first keyframe. */
  get epoch() {
    return this._state?.epoch ?? null;
  }

  /** Drop the state held: only a keyframe applies next. */
  reset() {
    this._state = null;
  }

  /**
   * Apply `frame` and return the stream's value. Throws {@link TensorFrameError} for bad
   * bytes and {@link TensorGapError} for a delta that does not follow the state held; the
   * state is then unchanged.
   * @param {Uint8Array | ArrayBuffer} data
   * @returns {TensorValue}
   */
  feed(data) {
    this.apply(data);
    return /** @type {TensorValue} */ (this.current());
  }

  /**
   * The value held, as fresh arrays, or `null` before the first keyframe.
   * @returns {TensorValue | null}
   */
  current() {
    const state = this._state;
    if (state === null) return null;
    const { rep } = state;
    let wire = state.wire;
    if (state.fortran) wire = fortranToC(wire, state.shape, rep.wireSize);
    const values = valuesOf(wire, rep, state.count * rep.element.lanes);
    return {
      stream: /** @type {number} */ (this.streamId),
      sequence: state.sequence,
      epoch: state.epoch,
      dtype: rep.element.dtype,
      shape: [...state.shape],
      data: values,
      precision: PRECISION_NAMES[rep.precision],
      maxAbsError: rep.precision === Precision.QUANTIZED ? 2 ** (rep.exponent - 1) : 0,
      fortran: state.fortran,
    };
  }

  /**
   * Apply `frame` to the state without building the value; returns its header.
   * @param {Uint8Array | ArrayBuffer} data
   * @returns {KeyframeHeader | DeltaHeader}
   */
  apply(data) {
    const frame = bytesOf(data);
    if (frame.length > this.limits.maxFrameBytes) {
      throw new TensorLimitError(`${frame.length}-byte frame exceeds the limit of ${this.limits.maxFrameBytes}`);
    }
    const header = readHeader(frame);
    if (header.kind === "chunk") {
      throw new TensorFrameError("chunk frame: reassemble it with a ChunkAssembler first");
    }
    if (this.streamId !== null && header.streamId !== this.streamId) {
      throw new TensorFrameError(
        `frame of stream ${header.streamId} fed to the decoder of stream ${this.streamId}`,
      );
    }
    if (header.kind === "keyframe") {
      this._state = this._keyframe(frame, header);
      this.streamId = header.streamId;
    } else {
      this._delta(frame, header);
    }
    return header;
  }

  /**
   * @param {Uint8Array} frame
   * @param {KeyframeHeader} header
   * @returns {State}
   */
  _keyframe(frame, header) {
    const element = DTYPES.get(header.dtypeCode);
    if (element === undefined) throw new TensorFrameError(`unknown dtype code ${header.dtypeCode}`);
    const { precision, exponent, shape } = header;
    if (precision !== Precision.EXACT && !applies(element, precision)) {
      throw new TensorFrameError(`precision ${PRECISION_NAMES[precision]} does not apply to ${element.dtype}`);
    }
    if (precision === Precision.QUANTIZED) {
      if (exponent < MIN_EXPONENT || exponent > MAX_EXPONENT) {
        throw new TensorFrameError(`quantisation exponent ${exponent} out of range`);
      }
    } else if (exponent) {
      throw new TensorFrameError("exponent set on a frame that is not quantised");
    }
    if (header.fortran && shape.length < 2) {
      throw new TensorFrameError("Fortran order flag on a tensor of fewer than 2 dimensions");
    }
    const violation = shapeViolation(shape, element.itemsize, this.limits);
    if (violation !== null) throw new TensorLimitError(violation);
    const count = shape.reduce((a, b) => a * b, 1);
    if (frameCrc(frame) !== header.crc) throw new TensorFrameError("CRC mismatch: the frame is corrupt");
    const laneSize =
      precision === Precision.FLOAT16 || precision === Precision.BFLOAT16 ? 2 : element.laneSize;
    const rep = { element, precision, exponent, laneSize, wireSize: laneSize * element.lanes };
    const wire = denseLanes(header.codec, frame.subarray(header.payloadOffset), count * rep.wireSize, laneSize);
    return {
      rep,
      shape,
      fortran: header.fortran,
      wire: wire.slice(),
      count,
      epoch: header.epoch,
      sequence: header.sequence,
    };
  }

  /**
   * @param {Uint8Array} frame
   * @param {DeltaHeader} header
   */
  _delta(frame, header) {
    if (frameCrc(frame) !== header.crc) throw new TensorFrameError("CRC mismatch: the frame is corrupt");
    const state = this._state;
    if (state === null) throw new TensorGapError(null, header.base, null, header.epoch);
    if (header.precision !== state.rep.precision) {
      throw new TensorFrameError(
        `delta precision ${PRECISION_NAMES[header.precision]} differs from the stream's ` +
          `${PRECISION_NAMES[state.rep.precision]}`,
      );
    }
    if (header.base !== state.sequence || header.epoch !== state.epoch) {
      throw new TensorGapError(state.sequence, header.base, state.epoch, header.epoch);
    }
    const payload = frame.subarray(header.payloadOffset);
    const { wire, count } = state;
    const { wireSize, laneSize } = state.rep;
    const codec = header.codec;
    if (codec === Codec.UNCHANGED) {
      if (payload.length) throw new TensorFrameError("UNCHANGED delta with a payload");
    } else if (codec === Codec.RAW || codec === Codec.SHUFFLE_ZSTD) {
      const xor = denseLanes(codec, payload, wire.length, laneSize);
      for (let i = 0; i < wire.length; i++) wire[i] ^= xor[i];
    } else {
      const { positions, values } = sparseLanes(codec, payload, count, wireSize, laneSize);
      for (let p = 0; p < positions.length; p++) {
        const at = positions[p] * wireSize;
        for (let b = 0; b < wireSize; b++) wire[at + b] ^= values[p * wireSize + b];
      }
    }
    state.sequence = header.sequence;
  }
}

/**
 * Why an array of `shape` is beyond the limits, or `null`. The limits apply to the
 * extent, the product of the non-zero dimensions: a zero dimension must not let huge
 * others through (§10).
 * @param {number[]} shape
 * @param {number} itemsize
 * @param {TensorLimits} limits
 * @returns {string | null}
 */
export function shapeViolation(shape, itemsize, limits) {
  if (shape.length > limits.maxNdim) {
    return `${shape.length} dimensions exceed the limit of ${limits.maxNdim}`;
  }
  let extent = 1;
  for (const dim of shape) {
    if (dim) extent *= dim;
    if (extent > limits.maxElements) {
      return `the shape [${shape}] exceeds the limit of ${limits.maxElements} elements`;
    }
  }
  if (extent * itemsize > limits.maxBytes) {
    return `${extent * itemsize} bytes exceed the limit of ${limits.maxBytes}`;
  }
  return null;
}

/**
 * Lanes of a RAW or SHUFFLE_ZSTD payload of exactly `size` bytes.
 * @param {number} codec
 * @param {Uint8Array} payload
 * @param {number} size
 * @param {number} laneSize
 * @returns {Uint8Array}
 */
function denseLanes(codec, payload, size, laneSize) {
  if (codec === Codec.RAW) {
    if (payload.length !== size) {
      throw new TensorFrameError(`raw payload has ${payload.length} bytes, ${size} expected`);
    }
    return payload;
  }
  if (codec !== Codec.SHUFFLE_ZSTD) throw new TensorFrameError(`codec ${codec} is not dense`);
  return unshuffle(decompressChecked(payload, size, size), laneSize);
}

/**
 * Changed element positions and their XOR bytes of a sparse delta.
 * @param {number} codec
 * @param {Uint8Array} payload
 * @param {number} count elements in the tensor
 * @param {number} wireSize bytes per element
 * @param {number} laneSize bytes per lane
 * @returns {{positions: number[], values: Uint8Array}}
 */
function sparseLanes(codec, payload, count, wireSize, laneSize) {
  let head;
  let low;
  let high;
  if (codec === Codec.SPARSE_BITMAP) {
    head = Math.ceil(count / 8);
    low = head + wireSize;
    high = head + count * wireSize;
  } else {
    head = 0;
    low = 4 + 1 + wireSize;
    high = 4 + count + Math.floor(count / GAP_ESCAPE) + count * wireSize;
  }
  if (count === 0) throw new TensorFrameError("sparse delta for an empty tensor");
  const data = decompressChecked(payload, low, high);
  /** @type {number[]} */
  const positions = [];
  if (codec === Codec.SPARSE_BITMAP) {
    if (count % 8 && data[head - 1] >> (count % 8)) {
      throw new TensorFrameError("bitmap marks elements past the end of the tensor");
    }
    for (let i = 0; i < count; i++) {
      if (data[i >> 3] & (1 << (i & 7))) positions.push(i);
    }
    if (positions.length === 0) throw new TensorFrameError("sparse delta marks no element");
  } else {
    const gaps = data[0] + data[1] * 2 ** 8 + data[2] * 2 ** 16 + data[3] * 2 ** 24;
    head = 4 + gaps;
    if (head > data.length) throw new TensorFrameError("sparse index runs past the payload");
    if (gaps === 0 || data[head - 1] === GAP_ESCAPE) {
      throw new TensorFrameError("gap-coded index must end with a changed element");
    }
    let cursor = 0;
    for (let i = 4; i < head; i++) {
      const gap = data[i];
      if (gap === GAP_ESCAPE) {
        cursor += GAP_ESCAPE;
        continue;
      }
      cursor += gap;
      positions.push(cursor);
      cursor += 1;
    }
    if (positions[positions.length - 1] >= count) {
      throw new TensorFrameError(`sparse index reaches element ${positions[positions.length - 1]} of ${count}`);
    }
  }
  if (data.length - head !== positions.length * wireSize) {
    throw new TensorFrameError(
      `sparse payload carries ${data.length - head} value bytes for ${positions.length} elements`,
    );
  }
  return { positions, values: unshuffle(data.subarray(head), laneSize) };
}

// --- chunks ------------------------------------------------------------------------------

/** Reassembles chunk frames into whole frames, within {@link ChunkLimits} (§9). */
export class ChunkAssembler {
  /** @param {Partial<ChunkLimits>} [limits] */
  constructor(limits = {}) {
    /** @type {ChunkLimits} */
    this.limits = { ...DEFAULT_CHUNK_LIMITS, ...limits };
    /** @type {Map<string, {count: number, total: number, started: number, parts: Map<number, Uint8Array>}>} */
    this._sets = new Map();
    this._declared = 0;
    /** Incomplete sets dropped so far, by timeout or to make room. */
    this.evicted = 0;
  }

  /** Incomplete sets held. */
  get pending() {
    return this._sets.size;
  }

  /**
   * Take one chunk frame; returns the whole frame once its last chunk arrives, else
   * `null`. Throws {@link TensorFrameError} for a malformed or oversized chunk (the sets
   * held are kept) and for a completed frame that does not carry the CRC its chunks name.
   * @param {Uint8Array | ArrayBuffer} data
   * @param {number} now seconds, from any monotonic clock
   * @returns {Uint8Array | null}
   */
  feed(data, now) {
    this.expire(now);
    const chunk = bytesOf(data);
    const header = readHeader(chunk);
    if (header.kind !== "chunk") throw new TensorFrameError("not a chunk frame");
    const { limits } = this;
    if (header.totalLength > limits.maxFrameBytes) {
      throw new TensorLimitError(`chunked frame of ${header.totalLength} bytes exceeds ${limits.maxFrameBytes}`);
    }
    if (header.totalLength > limits.maxPendingBytes) {
      throw new TensorLimitError(`chunked frame of ${header.totalLength} bytes exceeds the pending budget`);
    }
    const size = Math.ceil(header.totalLength / header.count);
    const length = Math.min(size, header.totalLength - header.index * size);
    if (chunk.length - CHUNK_HEADER_SIZE !== length) {
      throw new TensorFrameError(
        `chunk ${header.index} carries ${chunk.length - CHUNK_HEADER_SIZE} bytes, ${length} expected`,
      );
    }
    const key = `${header.streamId}:${header.sequence}:${header.frameCrc}:${header.totalLength}:${header.count}`;
    let pending = this._sets.get(key);
    if (pending === undefined) {
      this._makeRoom(header.totalLength);
      pending = { count: header.count, total: header.totalLength, started: now, parts: new Map() };
      this._sets.set(key, pending);
      this._declared += header.totalLength;
    }
    if (pending.parts.has(header.index)) return null;
    pending.parts.set(header.index, chunk.slice(CHUNK_HEADER_SIZE));
    if (pending.parts.size < pending.count) return null;
    this._sets.delete(key);
    this._declared -= pending.total;
    const whole = new Uint8Array(pending.total);
    for (let i = 0; i < pending.count; i++) {
      whole.set(/** @type {Uint8Array} */ (pending.parts.get(i)), i * size);
    }
    const crc = new DataView(whole.buffer).getUint32(16, true);
    if (crc !== header.frameCrc) {
      throw new TensorFrameError("reassembled frame does not carry the CRC its chunks name");
    }
    return whole;
  }

  /**
   * Drop incomplete sets older than the timeout; returns how many were dropped.
   * @param {number} now seconds
   * @returns {number}
   */
  expire(now) {
    let dropped = 0;
    for (const [key, pending] of [...this._sets]) {
      if (now - pending.started >= this.limits.timeout) {
        this._drop(key);
        dropped += 1;
      }
    }
    return dropped;
  }

  /** @param {number} size */
  _makeRoom(size) {
    const { limits } = this;
    while (
      this._sets.size > 0 &&
      (this._sets.size >= limits.maxPendingSets || this._declared + size > limits.maxPendingBytes)
    ) {
      this._drop(/** @type {string} */ (this._sets.keys().next().value));
    }
  }

  /** @param {string} key */
  _drop(key) {
    const pending = this._sets.get(key);
    if (pending === undefined) return;
    this._sets.delete(key);
    this._declared -= pending.total;
    this.evicted += 1;
  }
}

/**
 * What feeding one message of a channel gave.
 * @typedef {{value: TensorValue} | {gap: number, error: TensorGapError} | {error: TensorFrameError, stream: number | null} | null} TensorFeed
 */

/**
 * The tensor streams of one channel: reassembly and one decoder per stream id. A gap
 * is reported (so the caller sends `resync`) instead of showing a wrong array.
 */
export class TensorChannel {
  /**
   * @param {{limits?: Partial<TensorLimits>, chunkLimits?: Partial<ChunkLimits>}} [options]
   */
  constructor(options = {}) {
    this.assembler = new ChunkAssembler(options.chunkLimits);
    /** @type {Map<number, TensorDecoder>} */
    this.decoders = new Map();
    this._limits = options.limits ?? {};
    /** Keyframes and deltas applied, gaps met, frames refused: how the stream travels. */
    this.keyframes = 0;
    this.deltas = 0;
    this.gaps = 0;
    this.errors = 0;
  }

  /**
   * Feed one tensor frame (or chunk) of the channel.
   * @param {Uint8Array | ArrayBuffer} data
   * @param {number} now seconds, from a monotonic clock (chunk timeouts)
   * @returns {TensorFeed}
   */
  feed(data, now) {
    /** @type {number | null} */
    let stream = null;
    try {
      let frame = bytesOf(data);
      const header = readHeader(frame);
      stream = header.streamId;
      if (header.kind === "chunk") {
        const whole = this.assembler.feed(frame, now);
        if (whole === null) return null;
        frame = whole;
      }
      let decoder = this.decoders.get(stream);
      if (decoder === undefined) {
        decoder = new TensorDecoder(stream, this._limits);
        this.decoders.set(stream, decoder);
      }
      const applied = decoder.apply(frame);
      if (applied.kind === "keyframe") this.keyframes += 1;
      else this.deltas += 1;
      return { value: /** @type {TensorValue} */ (decoder.current()) };
    } catch (error) {
      if (error instanceof TensorGapError) {
        this.gaps += 1;
        return { gap: /** @type {number} */ (stream), error };
      }
      if (error instanceof TensorFrameError) {
        this.errors += 1;
        return { error, stream };
      }
      throw error;
    }
  }

  /**
   * The current value of a stream, or `null`.
   * @param {number} stream
   * @returns {TensorValue | null}
   */
  current(stream) {
    return this.decoders.get(stream)?.current() ?? null;
  }
}
