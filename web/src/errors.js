/**
 * Error codes, close codes and the reconnect decision attached to each close code.
 *
 * This is the browser's copy of `frys.shared.protocol.errors` and of docs/protocol.md §8:
 * every SDK must make the same reconnect decision from the same table, so the node tests
 * compare this table with the document's.
 *
 * @module
 */

/** Codes of `error` frames (§8.1). The session stays open after them. */
export const ErrorCode = Object.freeze({
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_ALLOWED: 405,
  UNKNOWN_OP: 406,
  ALREADY_SUBSCRIBED: 409,
  TOO_LARGE: 413,
  INVALID_CHANNEL: 422,
  LIMIT_EXCEEDED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
});

/** WebSocket close codes a gateway sends (§8.2), plus 1006 which only browsers report. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  SLOW_CONSUMER: 4000,
  CONNECT_TIMEOUT: 4001,
  MIGRATED: 4002,
  TOKEN_EXPIRED: 4003,
  BAD_CONNECT: 4400,
  UNAUTHORIZED: 4401,
  ORIGIN_REFUSED: 4403,
});

/**
 * What a client does after a close code.
 * @typedef {"yes" | "with_new_token" | "no"} Reconnect
 */

/** @type {ReadonlyMap<number, Reconnect>} The reconnect column of §8.2. */
export const CLOSE_POLICY = new Map([
  [1000, "no"],
  [1001, "yes"],
  [1002, "no"],
  [1007, "no"],
  [1008, "no"],
  [1009, "no"],
  [1011, "yes"],
  [1012, "yes"],
  [1013, "yes"],
  [4000, "yes"],
  [4001, "yes"],
  [4002, "yes"],
  [4003, "with_new_token"],
  [4400, "no"],
  [4401, "with_new_token"],
  [4403, "no"],
]);

/**
 * The reconnect decision for any close code, known or not (§8.3): unknown codes in
 * 4000–4399, 1006 (connection lost, also when the browser reports no code) and 1014 are
 * transient; everything else, 4400–4999 included, is final. An old client thus stays safe
 * when the gateway learns a new code.
 *
 * @param {number | null | undefined} code
 * @returns {Reconnect}
 */
export function reconnectPolicy(code) {
  const value = code ?? CloseCode.ABNORMAL;
  const known = CLOSE_POLICY.get(value);
  if (known !== undefined) return known;
  if ((value >= 4000 && value < 4400) || value === 1006 || value === 1014) return "yes";
  return "no";
}

/**
 * Whether a close code is a refusal: the gateway will not serve this client as it is (a bad
 * first frame, a refused token, a refused Origin). Browsers cannot read HTTP statuses of a
 * failed upgrade, so gateways refuse with these codes after the upgrade instead.
 *
 * @param {number | null | undefined} code
 * @returns {boolean}
 */
export function isRefusal(code) {
  return code != null && code >= 4400 && code <= 4999;
}

/** Base class of every error the SDK raises. */
export class FrysError extends Error {
  /**
   * @param {string} message
   */
  constructor(message) {
    super(message);
    this.name = "FrysError";
  }
}

/** The gateway answered an operation with an `error` frame. */
export class ClientError extends FrysError {
  /**
   * @param {number} code error code (§8.1)
   * @param {string} reason the gateway's reason
   */
  constructor(code, reason) {
    super(`${code} ${reason}`);
    this.name = "ClientError";
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}

/** No answer in time (locally), or error 504 from the gateway. */
export class RequestTimeout extends FrysError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "RequestTimeout";
  }
}

/** An operation was in flight when the connection dropped and may not be re-sent. */
export class ConnectionLost extends FrysError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ConnectionLost";
  }
}

/** The client stopped for good: a final close code, a refusal, or `close()`. */
export class ConnectionClosed extends FrysError {
  /**
   * @param {number | null} code close code, `null` when the client closed itself
   * @param {string} reason
   */
  constructor(code, reason) {
    super(`connection closed (${code ?? "-"}): ${reason}`);
    this.name = "ConnectionClosed";
    /** @type {number | null} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}
