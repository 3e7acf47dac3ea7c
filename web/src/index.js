/**
 * Frys WebSocket browser SDK.
 *
 * `connect(urls, {token})` opens a self-healing connection to a gateway (see
 * {@link FrysClient}); the other exports are the pure parts it is built from, usable on
 * their own: the wire codec, the reconnect rules, and the tensor frame decoder.
 *
 * @module
 */
export { BACKOFF_BASE_MS, BACKOFF_CAP_MS, backoffDelay, delayFromReason } from "./backoff.js";
export { parseChannel, resendSafe, workflowChannel } from "./channels.js";
export {
  CODECS,
  DecodeError,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
  codecFor,
  dataToJson,
  decodeJson,
  decodeMsgpack,
  encodeJson,
  encodeMsgpack,
  fromBase64,
  toBase64,
} from "./codec.js";
export { ClientCore, SubscriptionState } from "./core.js";
export { FrysClient, Subscription, connect, newId } from "./client.js";
export {
  CLOSE_POLICY,
  ClientError,
  CloseCode,
  ConnectionClosed,
  ConnectionLost,
  ErrorCode,
  FrysError,
  RequestTimeout,
  isRefusal,
  reconnectPolicy,
} from "./errors.js";
export {
  ChunkAssembler,
  TensorChannel,
  TensorDecoder,
  TensorFrameError,
  TensorGapError,
  TensorLimitError,
  crc32,
  readHeader,
} from "./tensor.js";
