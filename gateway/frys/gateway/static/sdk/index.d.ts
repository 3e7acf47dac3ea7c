export { BACKOFF_BASE_MS, BACKOFF_CAP_MS, backoffDelay, delayFromReason } from "./backoff.js";
export { parseChannel, resendSafe, workflowChannel } from "./channels.js";
export { CODECS, DecodeError, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, codecFor, dataToJson, decodeJson, decodeMsgpack, encodeJson, encodeMsgpack, fromBase64, toBase64 } from "./codec.js";
export { ClientCore, SubscriptionState } from "./core.js";
export { FrysClient, Subscription, connect, newId } from "./client.js";
export { CLOSE_POLICY, ClientError, CloseCode, ConnectionClosed, ConnectionLost, ErrorCode, FrysError, RequestTimeout, isRefusal, reconnectPolicy } from "./errors.js";
export { ChunkAssembler, TensorChannel, TensorDecoder, TensorFrameError, TensorGapError, TensorLimitError, crc32, readHeader } from "./tensor.js";
