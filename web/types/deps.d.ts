export { decompress as zstdDecompress } from "fzstd";
export { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
