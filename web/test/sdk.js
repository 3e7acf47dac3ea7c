// The tests run against the copy of the SDK that gateways serve (gateway/frys/gateway/static/sdk),
// which is what browsers execute and needs no node_modules: its dependencies are vendored.
export * from "../../gateway/frys/gateway/static/sdk/index.js";
export { decompressChecked, halfToNumber, unshuffle } from "../../gateway/frys/gateway/static/sdk/tensor.js";

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * A file of the repository, parsed as JSON.
 * @param {string} path relative to the repository root
 */
export function readJson(path) {
  return JSON.parse(readFileSync(join(ROOT, path), "utf8"));
}

/** @param {string} hex */
export function fromHex(hex) {
  return new Uint8Array(Buffer.from(hex.replace(/\s+/g, ""), "hex"));
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}
