/**
 * The SDK's two third-party modules, imported in one place.
 *
 * With npm and a bundler these are ordinary package imports. The copy a gateway serves
 * under `/sdk/` has this one file rewritten (by `npm run vendor`) to import the vendored
 * ES module builds next to it, so a page loads the SDK with a plain
 * `<script type="module">`, no bundler, no import map and no other host.
 *
 * @module
 */
export { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
export { decompress as zstdDecompress } from "fzstd";
