/**
 * Frames ↔ WebSocket messages for both subprotocols of wire protocol v1, without I/O.
 *
 * A frame is a plain object `{op, ...fields}`. Encoding writes `op` first and then the
 * present fields in the canonical order of the op's field table (docs/protocol.md §3), so
 * the bytes equal the golden vectors; absent (`undefined`/`null`) optional fields are
 * omitted. Decoding checks the types of the fields it knows, treats `null` as absent and
 * keeps unknown fields out of the frame, as §1 asks of decoders.
 *
 * JSON mode (§7) carries binary values as `{"$bytes": "<base64>"}`: `Uint8Array` values
 * are written so and such objects are read back as `Uint8Array`.
 *
 * @module
 */
import { msgpackDecode, msgpackEncode } from "./deps.js";

export const SUBPROTOCOL_MSGPACK = "frys.v1.msgpack";
export const SUBPROTOCOL_JSON = "frys.v1.json";
export const BYTES_KEY = "$bytes";
/** Request ids stay below 2^53 so that they are exact JavaScript numbers. */
export const MAX_ID = Number.MAX_SAFE_INTEGER;

/**
 * @typedef {"uint" | "string" | "bool" | "strings" | "limits" | "position" | "trace" | "members" | "any"} FieldType
 * @typedef {[name: string, type: FieldType, required: boolean]} Field
 */

/** @type {Readonly<Record<string, readonly Field[]>>} Field tables of §4, in canonical order. */
export const OPS = Object.freeze({
  // client → gateway
  connect: [
    ["id", "uint", true],
    ["token", "string", false],
    ["name", "string", false],
    ["codecs", "strings", false],
    ["resume", "string", false],
    ["caps", "strings", false],
    ["tc", "trace", false],
  ],
  subscribe: [
    ["id", "uint", true],
    ["ch", "string", true],
    ["since", "position", false],
    ["tc", "trace", false],
  ],
  unsubscribe: [
    ["id", "uint", true],
    ["ch", "string", true],
  ],
  publish: [
    ["id", "uint", true],
    ["ch", "string", true],
    ["mid", "string", false],
    ["enc", "string", false],
    ["tc", "trace", false],
    ["data", "any", true],
  ],
  request: [
    ["id", "uint", true],
    ["ch", "string", true],
    ["cid", "string", false],
    ["timeout_ms", "uint", false],
    ["tc", "trace", false],
    ["data", "any", true],
  ],
  ping: [["id", "uint", false]],
  refresh: [
    ["id", "uint", true],
    ["token", "string", true],
  ],
  presence: [
    ["id", "uint", true],
    ["ch", "string", true],
  ],
  outcome: [
    ["id", "uint", true],
    ["ch", "string", true],
    ["cid", "string", true],
  ],
  resync: [
    ["id", "uint", true],
    ["ch", "string", true],
    ["stream", "uint", true],
  ],
  stats: [
    ["id", "uint", true],
    ["ch", "string", true],
  ],
  // gateway → client
  connected: [
    ["id", "uint", true],
    ["sid", "string", true],
    ["gw", "string", true],
    ["limits", "limits", false],
    ["resume", "string", false],
    ["exp", "uint", false],
  ],
  ack: [
    ["id", "uint", true],
    ["seq", "uint", false],
    ["epoch", "string", false],
    ["recovered", "bool", false],
    ["dup", "bool", false],
    ["exp", "uint", false],
    ["members", "members", false],
    ["data", "any", false],
  ],
  message: [
    ["ch", "string", true],
    ["seq", "uint", false],
    ["from", "string", false],
    ["enc", "string", false],
    ["tc", "trace", false],
    ["data", "any", true],
  ],
  reply: [
    ["id", "uint", true],
    ["cid", "string", true],
    ["tc", "trace", false],
    ["data", "any", true],
  ],
  pong: [["id", "uint", false]],
  error: [
    ["code", "uint", true],
    ["reason", "string", true],
    ["ref", "uint", false],
    ["ch", "string", false],
  ],
  migrate: [
    ["url", "string", true],
    ["reason", "string", true],
    ["delay_ms", "uint", false],
  ],
  unsubscribed: [
    ["ch", "string", true],
    ["code", "uint", true],
    ["reason", "string", true],
  ],
  keyframe: [
    ["ch", "string", true],
    ["stream", "uint", true],
  ],
});

/** Ops a client sends; the others are the gateway's. */
export const CLIENT_OPS = Object.freeze([
  "connect",
  "subscribe",
  "unsubscribe",
  "publish",
  "request",
  "ping",
  "refresh",
  "presence",
  "outcome",
  "resync",
  "stats",
]);

/** A message that is not a valid frame. `ref` is the frame's id when it could be read. */
export class DecodeError extends Error {
  /**
   * @param {string} message
   * @param {number | undefined} [ref]
   */
  constructor(message, ref) {
    super(message);
    this.name = "DecodeError";
    /** @type {number | undefined} */
    this.ref = ref;
  }
}

/**
 * A frame: `op` and the fields of the op's table.
 * @typedef {{op: string, [field: string]: any}} Frame
 */

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isPlainObject(value) {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !ArrayBuffer.isView(value) &&
    !(value instanceof ArrayBuffer)
  );
}

/**
 * @param {unknown} value
 * @returns {value is number}
 */
function isUint(value) {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

/**
 * Check one field's type; returns the value to keep.
 * @param {FieldType} type
 * @param {unknown} value
 * @returns {unknown}
 */
function checkField(type, value) {
  switch (type) {
    case "uint":
      if (isUint(value)) return value;
      throw new TypeError("must be an unsigned integer below 2**53");
    case "string":
      if (typeof value === "string") return value;
      throw new TypeError("must be a string");
    case "bool":
      if (typeof value === "boolean") return value;
      throw new TypeError("must be a boolean");
    case "strings":
      if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value;
      throw new TypeError("must be a list of strings");
    case "limits":
      if (isPlainObject(value) && Object.values(value).every((v) => Number.isInteger(v))) {
        return value;
      }
      throw new TypeError("must map strings to integers");
    case "position":
      if (isPlainObject(value) && isUint(value.seq) && typeof value.epoch === "string") {
        return { seq: value.seq, epoch: value.epoch };
      }
      throw new TypeError("must be an object {seq, epoch}");
    case "trace":
      if (
        isPlainObject(value) &&
        typeof value.traceparent === "string" &&
        (value.tracestate == null || typeof value.tracestate === "string")
      ) {
        return value.tracestate == null
          ? { traceparent: value.traceparent }
          : { traceparent: value.traceparent, tracestate: value.tracestate };
      }
      throw new TypeError("must be an object {traceparent, tracestate?}");
    case "members":
      if (Array.isArray(value) && value.every(isPlainObject)) return value;
      throw new TypeError("must be a list of objects");
    default:
      return value;
  }
}

/**
 * The frame in canonical form: `op` first, then the present fields in table order.
 * Throws `TypeError` for an unknown op or a missing required field, so a bug in the
 * caller shows here rather than as a 400 from the gateway.
 *
 * @param {Frame} frame
 * @returns {Record<string, unknown>}
 */
export function canonical(frame) {
  const table = OPS[frame.op];
  if (table === undefined) throw new TypeError(`unknown op ${JSON.stringify(frame.op)}`);
  /** @type {Record<string, unknown>} */
  const out = { op: frame.op };
  for (const [name, , required] of table) {
    const value = frame[name];
    if (value === undefined || value === null) {
      if (required && name !== "data") throw new TypeError(`${frame.op} needs ${name}`);
      if (required) out[name] = null;
      continue;
    }
    if (Array.isArray(value) && value.length === 0 && (name === "codecs" || name === "caps")) {
      continue; // an empty list is the default: omitted, as the canonical form says
    }
    out[name] = value;
  }
  return out;
}

/**
 * Validate a decoded map and build the frame; throws {@link DecodeError}. A frame whose op
 * is unknown is returned as `{op}` alone: clients ignore such frames (§1).
 *
 * @param {unknown} obj
 * @returns {Frame}
 */
export function fromObject(obj) {
  if (!isPlainObject(obj)) throw new DecodeError("frame must be a map");
  const ref = isUint(obj.id) ? obj.id : undefined;
  const op = obj.op;
  if (typeof op !== "string") throw new DecodeError("frame has no op string", ref);
  const table = OPS[op];
  if (table === undefined) return { op };
  /** @type {Frame} */
  const frame = { op };
  for (const [name, type, required] of table) {
    const value = Object.prototype.hasOwnProperty.call(obj, name) ? obj[name] : undefined;
    if (value === undefined || (value === null && !(required && type === "any"))) {
      if (required) throw new DecodeError(`${op} is missing ${name}`, ref);
      continue;
    }
    try {
      frame[name] = checkField(type, value);
    } catch (error) {
      throw new DecodeError(`${op}.${name} ${/** @type {Error} */ (error).message}`, ref);
    }
  }
  return frame;
}

// --- MessagePack ------------------------------------------------------------------------

/**
 * Map keys that are not strings (integers, booleans, nil) become their JSON text, as the
 * JSON mapping does (§7): a JavaScript object holds string keys only.
 * @param {unknown} key
 * @returns {string | number}
 */
function mapKey(key) {
  if (typeof key === "string" || typeof key === "number") return key;
  if (typeof key === "bigint") return key.toString();
  try {
    return JSON.stringify(key, bytesReplacer) ?? String(key);
  } catch {
    return String(key);
  }
}

/**
 * Encode a frame as one `frys.v1.msgpack` message: integers in their shortest form, other
 * numbers as float64, strings as str, `Uint8Array` as bin.
 *
 * @param {Frame} frame
 * @returns {Uint8Array}
 */
export function encodeMsgpack(frame) {
  return msgpackEncode(canonical(frame), { ignoreUndefined: true });
}

/**
 * Decode one `frys.v1.msgpack` message; throws {@link DecodeError}.
 *
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {Frame}
 */
export function decodeMsgpack(data) {
  let obj;
  try {
    obj = msgpackDecode(data, { mapKeyConverter: mapKey });
  } catch (error) {
    throw new DecodeError(`not valid msgpack: ${/** @type {Error} */ (error).message}`);
  }
  return fromObject(obj);
}

// --- JSON -------------------------------------------------------------------------------

/**
 * Standard base64 (RFC 4648, with padding) of bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64(bytes) {
  let text = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    text += String.fromCharCode(...bytes.subarray(i, i + step));
  }
  return btoa(text);
}

/**
 * Bytes of standard base64; throws `TypeError` for anything else.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromBase64(text) {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new TypeError("invalid base64 in $bytes");
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * `JSON.stringify` replacer: binary values as `{"$bytes": ...}`.
 * @param {string} _key
 * @param {unknown} value
 * @returns {unknown}
 */
function bytesReplacer(_key, value) {
  if (value instanceof Uint8Array) return { [BYTES_KEY]: toBase64(value) };
  if (value instanceof ArrayBuffer) return { [BYTES_KEY]: toBase64(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    const view = /** @type {ArrayBufferView} */ (value);
    return { [BYTES_KEY]: toBase64(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)) };
  }
  if (typeof value === "bigint") return Number(value);
  return value;
}

/**
 * `JSON.parse` reviver: an object with exactly one key, `$bytes`, holding a string is a
 * binary value.
 * @param {string} _key
 * @param {unknown} value
 * @returns {unknown}
 */
function bytesReviver(_key, value) {
  if (isPlainObject(value) && typeof value[BYTES_KEY] === "string") {
    const keys = Object.keys(value);
    if (keys.length === 1) return fromBase64(/** @type {string} */ (value[BYTES_KEY]));
  }
  return value;
}

/**
 * Application data as JSON text with `$bytes` for binary values (also used by pages that
 * show data).
 * @param {unknown} value
 * @param {number} [indent]
 * @returns {string}
 */
export function dataToJson(value, indent) {
  return JSON.stringify(value, bytesReplacer, indent) ?? "null";
}

/**
 * Encode a frame as one `frys.v1.json` message: compact JSON, non-ASCII unescaped.
 *
 * @param {Frame} frame
 * @returns {string}
 */
export function encodeJson(frame) {
  return dataToJson(canonical(frame));
}

/**
 * Decode one `frys.v1.json` message; throws {@link DecodeError}.
 *
 * @param {string} text
 * @returns {Frame}
 */
export function decodeJson(text) {
  let obj;
  try {
    obj = JSON.parse(text, bytesReviver);
  } catch (error) {
    throw new DecodeError(`not valid JSON: ${/** @type {Error} */ (error).message}`);
  }
  return fromObject(obj);
}

/**
 * @typedef {object} WireCodec
 * @property {string} subprotocol
 * @property {boolean} binary whether messages are binary WebSocket messages
 * @property {(frame: Frame) => Uint8Array | string} encode
 * @property {(data: ArrayBuffer | Uint8Array | string) => Frame} decode
 */

/** @type {Readonly<Record<string, WireCodec>>} The codec of each subprotocol. */
export const CODECS = Object.freeze({
  [SUBPROTOCOL_MSGPACK]: {
    subprotocol: SUBPROTOCOL_MSGPACK,
    binary: true,
    encode: encodeMsgpack,
    decode: (data) => {
      if (typeof data === "string") throw new DecodeError("frys.v1.msgpack expects binary frames");
      return decodeMsgpack(data);
    },
  },
  [SUBPROTOCOL_JSON]: {
    subprotocol: SUBPROTOCOL_JSON,
    binary: false,
    encode: encodeJson,
    decode: (data) => {
      if (typeof data !== "string") throw new DecodeError("frys.v1.json expects text frames");
      return decodeJson(data);
    },
  },
});

/**
 * The codec of a subprotocol name or of its short name (`msgpack`, `json`).
 * @param {string} name
 * @returns {WireCodec}
 */
export function codecFor(name) {
  const full = name === "msgpack" ? SUBPROTOCOL_MSGPACK : name === "json" ? SUBPROTOCOL_JSON : name;
  const codec = CODECS[full];
  if (codec === undefined) throw new TypeError(`unknown codec ${JSON.stringify(name)}`);
  return codec;
}
