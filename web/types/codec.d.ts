/**
 * The frame in canonical form: `op` first, then the present fields in table order.
 * Throws `TypeError` for an unknown op or a missing required field, so a bug in the
 * caller shows here rather than as a 400 from the gateway.
 *
 * @param {Frame} frame
 * @returns {Record<string, unknown>}
 */
export function canonical(frame: Frame): Record<string, unknown>;
/**
 * Validate a decoded map and build the frame; throws {@link DecodeError}. A frame whose op
 * is unknown is returned as `{op}` alone: clients ignore such frames (§1).
 *
 * @param {unknown} obj
 * @returns {Frame}
 */
export function fromObject(obj: unknown): Frame;
/**
 * Encode a frame as one `frys.v1.msgpack` message: integers in their shortest form, other
 * numbers as float64, strings as str, `Uint8Array` as bin.
 *
 * @param {Frame} frame
 * @returns {Uint8Array}
 */
export function encodeMsgpack(frame: Frame): Uint8Array;
/**
 * Decode one `frys.v1.msgpack` message; throws {@link DecodeError}.
 *
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {Frame}
 */
export function decodeMsgpack(data: ArrayBuffer | Uint8Array): Frame;
/**
 * Standard base64 (RFC 4648, with padding) of bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64(bytes: Uint8Array): string;
/**
 * Bytes of standard base64; throws `TypeError` for anything else.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromBase64(text: string): Uint8Array;
/**
 * Application data as JSON text with `$bytes` for binary values (also used by pages that
 * show data).
 * @param {unknown} value
 * @param {number} [indent]
 * @returns {string}
 */
export function dataToJson(value: unknown, indent?: number): string;
/**
 * Encode a frame as one `frys.v1.json` message: compact JSON, non-ASCII unescaped.
 *
 * @param {Frame} frame
 * @returns {string}
 */
export function encodeJson(frame: Frame): string;
/**
 * Decode one `frys.v1.json` message; throws {@link DecodeError}.
 *
 * @param {string} text
 * @returns {Frame}
 */
export function decodeJson(text: string): Frame;
/**
 * The codec of a subprotocol name or of its short name (`msgpack`, `json`).
 * @param {string} name
 * @returns {WireCodec}
 */
export function codecFor(name: string): WireCodec;
export const SUBPROTOCOL_MSGPACK: "frys.v1.msgpack";
export const SUBPROTOCOL_JSON: "frys.v1.json";
export const BYTES_KEY: "$bytes";
/** Request ids stay below 2^53 so that they are exact JavaScript numbers. */
export const MAX_ID: number;
/**
 * @typedef {"uint" | "string" | "bool" | "strings" | "limits" | "position" | "trace" | "members" | "any"} FieldType
 * @typedef {[name: string, type: FieldType, required: boolean]} Field
 */
/** @type {Readonly<Record<string, readonly Field[]>>} Field tables of §4, in canonical order. */
export const OPS: Readonly<Record<string, readonly Field[]>>;
/** Ops a client sends; the others are the gateway's. */
export const CLIENT_OPS: readonly string[];
/** A message that is not a valid frame. `ref` is the frame's id when it could be read. */
export class DecodeError extends Error {
    /**
     * @param {string} message
     * @param {number | undefined} [ref]
     */
    constructor(message: string, ref?: number | undefined);
    /** @type {number | undefined} */
    ref: number | undefined;
}
/**
 * @typedef {object} WireCodec
 * @property {string} subprotocol
 * @property {boolean} binary whether messages are binary WebSocket messages
 * @property {(frame: Frame) => Uint8Array | string} encode
 * @property {(data: ArrayBuffer | Uint8Array | string) => Frame} decode
 */
/** @type {Readonly<Record<string, WireCodec>>} The codec of each subprotocol. */
export const CODECS: Readonly<Record<string, WireCodec>>;
/**
 * A frame: `op` and the fields of the op's table.
 */
export type Frame = {
    op: string;
    [field: string]: any;
};
export type FieldType = "uint" | "string" | "bool" | "strings" | "limits" | "position" | "trace" | "members" | "any";
export type Field = [name: string, type: FieldType, required: boolean];
export type WireCodec = {
    subprotocol: string;
    /**
     * whether messages are binary WebSocket messages
     */
    binary: boolean;
    encode: (frame: Frame) => Uint8Array | string;
    decode: (data: ArrayBuffer | Uint8Array | string) => Frame;
};
