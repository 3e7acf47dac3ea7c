/**
 * The browser client: one WebSocket to a gateway that survives disconnects by itself.
 *
 * This is the I/O shell around the protocol core ({@link ClientCore}), which decides what
 * is sent again and what a frame means. When the connection drops, the close code decides
 * (docs/protocol.md §8.3, {@link reconnectPolicy}) whether to come back:
 *
 * - a refusal (4400–4999: a bad first frame, a refused token, a refused Origin) stops the
 *   client and is reported with a `refused` event, because the same attempt would fail
 *   the same way forever; a refused token (4401) or an expired one (4003) is retried only
 *   with a new token from `tokenProvider`;
 * - an outage (1006, 1001, 1011–1013, 4000–4399) reconnects: after the delay of a draining
 *   gateway's 1012 reason, or a `migrate`'s `delay_ms` (to its URL, falling back to the
 *   original one if that attempt fails), or else capped exponential backoff with full
 *   jitter, trying the configured URLs in turn.
 *
 * After a reconnect every channel is subscribed again from its position (events with
 * `since`, reporting `gap: true` once when history was lost), then the publishes that the
 * stream deduplicates (events and state, with their message ids) and control requests
 * (with their command ids) are sent again; other calls in flight fail with
 * `ConnectionLost`. The token is refreshed before it expires when a `tokenProvider` is
 * given.
 *
 * @module
 */
import { backoffDelay, delayFromReason } from "./backoff.js";
import { parseChannel, resendSafe } from "./channels.js";
import { codecFor } from "./codec.js";
import { ClientCore, SubscriptionState } from "./core.js";
import {
  CloseCode,
  ConnectionClosed,
  ConnectionLost,
  RequestTimeout,
  isRefusal,
  reconnectPolicy,
} from "./errors.js";
import { TensorChannel } from "./tensor.js";

/**
 * @typedef {import("./codec.js").Frame} Frame
 * @typedef {import("./core.js").Message} Message
 * @typedef {import("./core.js").Position} Position
 * @typedef {import("./tensor.js").TensorValue} TensorValue
 * @typedef {"connecting" | "connected" | "reconnecting" | "closed"} ConnState
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} [token] the JWT sent in `connect`
 * @property {() => (string | Promise<string>)} [tokenProvider] supplies a fresh token:
 *   before the current one expires (then sent with `refresh`) and after the gateway
 *   refused or expired it (then used to reconnect)
 * @property {string} [name] display name in presence records
 * @property {string[]} [caps] capabilities announced to other members
 * @property {"msgpack" | "json" | string} [codec] subprotocol (default `msgpack`)
 * @property {boolean} [reconnect] reconnect after an outage (default true)
 * @property {number} [backoffBaseMs] default 100
 * @property {number} [backoffCapMs] default 10000
 * @property {number} [connectTimeoutMs] time for the upgrade and `connected` (default 10000)
 * @property {number} [callTimeoutMs] default time to wait for an answer (default 30000)
 * @property {number} [refreshAt] fraction of the token's lifetime after which it is
 *   refreshed (default 0.8)
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default the global one)
 * @property {() => number} [random] a number in [0, 1) (default Math.random)
 */

/**
 * A unique id for a message (`mid`) or a command (`cid`): 32 hex digits.
 * @returns {string}
 */
export function newId() {
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @template T
 * @typedef {object} Deferred
 * @property {Promise<T>} promise
 * @property {(value: T) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {boolean} settled
 */

/**
 * @template T
 * @returns {Deferred<T>}
 */
function deferred() {
  /** @type {Deferred<T>} */
  const d = /** @type {any} */ ({ settled: false });
  d.promise = new Promise((resolve, reject) => {
    d.resolve = (value) => {
      d.settled = true;
      resolve(value);
    };
    d.reject = (error) => {
      d.settled = true;
      reject(error);
    };
  });
  return d;
}

/**
 * @typedef {object} SubscribeOptions
 * @property {Position | null} [since] events: resume after this position
 * @property {(message: Message) => void} [onMessage] receives every delivery; without it
 *   deliveries queue for `next()` and `for await`
 * @property {(value: TensorValue) => void} [onTensor] receives decoded tensors: tensor
 *   frames of the channel are then decoded (gaps repaired with `resync`) rather than
 *   delivered as messages
 * @property {(error: Error | null) => void} [onEnd] the subscription ended (`null` when
 *   the application ended it)
 * @property {number} [timeoutMs]
 */

/** Deliveries of one channel: a callback, or an async iterator. */
export class Subscription extends SubscriptionState {
  /**
   * @param {FrysClient} client
   * @param {string} channel
   * @param {SubscribeOptions} options
   */
  constructor(client, channel, options) {
    super(channel, options.since ?? null);
    this.client = client;
    this.options = options;
    /** @type {Array<Message>} */
    this._queue = [];
    /** @type {Array<Deferred<Message | null>>} */
    this._waiting = [];
    /** @type {Error | null | undefined} */
    this._end = undefined;
    /** @type {TensorChannel | null} */
    this.tensors = options.onTensor ? new TensorChannel() : null;
  }

  /**
   * The next delivery (`null` once the subscription ended without an error).
   * @param {number} [timeoutMs]
   * @returns {Promise<Message | null>}
   */
  next(timeoutMs) {
    const queued = this._queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this._end !== undefined) {
      return this._end === null ? Promise.resolve(null) : Promise.reject(this._end);
    }
    /** @type {Deferred<Message | null>} */
    const waiter = deferred();
    this._waiting.push(waiter);
    if (timeoutMs === undefined) return waiter.promise;
    const timer = setTimeout(() => {
      this._waiting = this._waiting.filter((w) => w !== waiter);
      waiter.reject(new RequestTimeout(`no message on ${this.channel} within ${timeoutMs} ms`));
    }, timeoutMs);
    return waiter.promise.finally(() => clearTimeout(timer));
  }

  /** @returns {AsyncGenerator<Message>} */
  async *[Symbol.asyncIterator]() {
    for (;;) {
      const message = await this.next();
      if (message === null) return;
      yield message;
    }
  }

  /**
   * The current value of one of the channel's tensor streams (with `onTensor`).
   * @param {number} [stream]
   * @returns {TensorValue | null}
   */
  tensor(stream = 0) {
    return this.tensors?.current(stream) ?? null;
  }

  /** Stop the subscription. */
  async unsubscribe() {
    await this.client._unsubscribe(this);
  }

  /** @param {Message} message */
  _deliver(message) {
    if (this.tensors !== null && message.enc === "tensor" && message.data instanceof Uint8Array) {
      const fed = this.tensors.feed(message.data, performance.now() / 1000);
      if (fed === null) return;
      if ("value" in fed) {
        this.options.onTensor?.(fed.value);
      } else if ("gap" in fed) {
        this.client._resync(this.channel, fed.gap);
      } else {
        this.client._emit("tensorerror", { channel: this.channel, stream: fed.stream, error: fed.error });
      }
      return;
    }
    if (this.options.onMessage) {
      try {
        this.options.onMessage(message);
      } catch (error) {
        this.client._emit("handlererror", { channel: this.channel, error });
      }
      return;
    }
    const waiter = this._waiting.shift();
    if (waiter !== undefined) waiter.resolve(message);
    else this._queue.push(message);
  }

  /** @param {Error | null} error */
  _ended(error) {
    this._end = error;
    for (const waiter of this._waiting.splice(0)) {
      if (error === null) waiter.resolve(null);
      else waiter.reject(error);
    }
    this.options.onEnd?.(error);
  }
}

/**
 * A connection to Frys gateways. Listen with `addEventListener`:
 *
 * | event | detail |
 * |---|---|
 * | `state` | `{state}`: `connecting`, `connected`, `reconnecting`, `closed` |
 * | `connected` | `{sid, gw, url, resumed}` each time a session is established |
 * | `disconnected` | `{code, reason, delayMs}`: an outage; the client reconnects |
 * | `refused` | `{code, reason}`: the gateway refused this client; it stopped |
 * | `closed` | `{code, reason, error}`: the client stopped for good |
 * | `migrate` | `{url, delayMs}`: the gateway moves this client |
 * | `refreshed` | `{exp}`: the token was replaced before expiry |
 * | `gatewayerror` | `{code, reason}`: an `error` frame naming no call |
 * | `tensorerror` | `{channel, stream, error}`: a tensor frame that could not be decoded |
 */
export class FrysClient extends EventTarget {
  /**
   * @param {string | string[]} urls gateway WebSocket URLs (`ws(s)://host/ws`), tried in turn
   * @param {ClientOptions} [options]
   */
  constructor(urls, options = {}) {
    super();
    this.urls = Array.isArray(urls) ? [...urls] : [urls];
    if (this.urls.length === 0) throw new TypeError("at least one gateway URL is required");
    this.options = options;
    this.codec = codecFor(options.codec ?? "msgpack");
    /** @type {ConnState} */
    this.state = "connecting";
    /** WebSocket connections attempted so far. */
    this.attempts = 0;
    /** Sessions lost and reconnected after. */
    this.reconnects = 0;
    /** @type {{code: number | null, reason: string}} */
    this.lastClose = { code: null, reason: "" };
    /** Frames received, frames sent, `message` frames received. */
    this.counters = { framesIn: 0, framesOut: 0, messagesIn: 0 };
    /** @type {number | null} expiry of the token, Unix seconds */
    this.exp = null;
    this._token = options.token;
    this._core = new ClientCore();
    /** @type {WebSocket | null} */
    this._ws = null;
    this._urlIndex = 0;
    /** @type {string | null} */
    this._nextUrl = null;
    this._migrateDelayMs = 0;
    this._closing = false;
    /** @type {Error | null} */
    this._finalError = null;
    /** @type {Deferred<FrysClient>} */
    this._first = deferred();
    this._first.promise.catch(() => {});
    /** @type {Array<Deferred<void>>} */
    this._connectedWaiters = [];
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._refreshTimer = null;
    /** @type {(() => void) | null} */
    this._wake = null;
    this._started = false;
  }

  /** The session id (kept across a resume). */
  get sessionId() {
    return this._core.sessionId;
  }

  /** The gateway serving this client (changes when it moves). */
  get gatewayId() {
    return this._core.gatewayId;
  }

  /** The session's limits (§9). */
  get limits() {
    return this._core.limits;
  }

  /** The gateway URL in use, or tried next. */
  get url() {
    return this.urls[this._urlIndex];
  }

  /**
   * Start connecting; resolves once the first session is established, rejects when the
   * client stops before (a refusal, `close()`).
   * @returns {Promise<FrysClient>}
   */
  start() {
    if (!this._started) {
      this._started = true;
      this._supervise().catch((error) => this._finish(null, `internal error: ${error}`, error));
    }
    return this._first.promise;
  }

  /** Close for good: calls in flight fail, subscriptions end. */
  close() {
    if (this.state === "closed") return;
    this._closing = true;
    const ws = this._ws;
    if (ws !== null && ws.readyState <= 1) ws.close(CloseCode.NORMAL, "closed by the application");
    this._wake?.();
    this._finish(null, "closed by the application", null);
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {ConnState} state */
  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", { state });
  }

  // --- supervisor ------------------------------------------------------------------------

  async _supervise() {
    const options = this.options;
    const backoff = (/** @type {number} */ attempt) =>
      backoffDelay(attempt, { baseMs: options.backoffBaseMs, capMs: options.backoffCapMs, random: options.random });
    let attempt = 0;
    let delayMs = 0;
    while (!this._closing) {
      if (delayMs > 0) await this._sleep(delayMs);
      if (this._closing) return;
      const migrating = this._nextUrl !== null;
      const url = this._nextUrl ?? this.urls[this._urlIndex];
      this._nextUrl = null;
      const result = await this._open(url);
      if (this._closing) return;
      if (!result.connected) {
        if (migrating) {
          delayMs = 0; // a migrate target that fails in any way: back to the original URL
          continue;
        }
        let policy = reconnectPolicy(result.code);
        if (policy === "with_new_token") policy = (await this._newToken()) ? "yes" : "no";
        if (policy === "no" || options.reconnect === false) {
          this._finish(result.code, result.reason || "connection refused", null);
          return;
        }
        // The next gateway URL (behind a load balancer there is only one).
        this._urlIndex = (this._urlIndex + 1) % this.urls.length;
        attempt += 1;
        delayMs = backoff(attempt);
        this._setState(this.sessionId !== null ? "reconnecting" : "connecting");
        continue;
      }
      attempt = 0;
      const { code, reason } = result;
      this.lastClose = { code, reason };
      this._clearRefresh();
      let policy = reconnectPolicy(code);
      if (policy === "with_new_token") policy = (await this._newToken()) ? "yes" : "no";
      if (policy !== "yes" || options.reconnect === false) {
        this._finish(code, reason, null);
        return;
      }
      this.reconnects += 1;
      this._setState("reconnecting");
      this._core.connectionLost();
      const random = options.random ?? Math.random;
      if (code === CloseCode.MIGRATED && this._nextUrl !== null) {
        delayMs = this._migrateDelayMs;
      } else if (code === CloseCode.SERVICE_RESTART) {
        delayMs = delayFromReason(reason) + random() * 50;
      } else if (code === CloseCode.SLOW_CONSUMER) {
        delayMs = random() * (options.backoffBaseMs ?? 100);
      } else {
        attempt = 1;
        delayMs = backoff(attempt);
      }
      this._emit("disconnected", { code, reason, delayMs });
    }
  }

  /**
   * Wait `ms`, or less when the client closes meanwhile.
   * @param {number} ms
   * @returns {Promise<void>}
   */
  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this._wake = () => {
        this._wake = null;
        done();
      };
    });
  }

  /**
   * A new token for a reconnect after 4003/4401: only a different one helps.
   * @returns {Promise<boolean>}
   */
  async _newToken() {
    const provider = this.options.tokenProvider;
    if (provider === undefined) return false;
    try {
      const token = await provider();
      if (!token || token === this._token) return false;
      this._token = token;
      return true;
    } catch {
      return false;
    }
  }

  /**
   * One connection: upgrade, `connect`, then the session until the socket closes.
   * @param {string} url
   * @returns {Promise<{connected: boolean, code: number, reason: string}>}
   */
  _open(url) {
    return new Promise((resolve) => {
      const WebSocketClass = this.options.WebSocket ?? globalThis.WebSocket;
      this.attempts += 1;
      /** @type {WebSocket} */
      let ws;
      try {
        ws = new WebSocketClass(url, [this.codec.subprotocol]);
      } catch (error) {
        resolve({ connected: false, code: CloseCode.ABNORMAL, reason: String(error) });
        return;
      }
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      let connected = false;
      /** @type {{code: number, reason: string} | null} */
      let override = null;
      const timer = setTimeout(() => {
        override = { code: CloseCode.ABNORMAL, reason: "no connected frame in time" };
        ws.close(CloseCode.NORMAL);
      }, this.options.connectTimeoutMs ?? 10_000);
      ws.onopen = () => {
        const resume = this._core.resume || undefined;
        this._core.resume = ""; // a resume token is single use: sent at most once (§5.3)
        this._sendNow(
          {
            op: "connect",
            id: 0,
            token: this._token,
            name: this.options.name || undefined,
            resume,
            caps: this.options.caps,
          },
          ws,
        );
      };
      ws.onmessage = (event) => {
        /** @type {Frame} */
        let frame;
        try {
          frame = this.codec.decode(event.data);
        } catch (error) {
          this._emit("gatewayerror", { code: 0, reason: `undecodable frame: ${error}` });
          return;
        }
        this.counters.framesIn += 1;
        if (connected) {
          this._onFrame(frame);
          return;
        }
        if (frame.op === "connected") {
          connected = true;
          clearTimeout(timer);
          this._onConnected(frame, url, ws);
        } else {
          override = { code: CloseCode.ABNORMAL, reason: `unexpected first frame ${frame.op}` };
          ws.close(CloseCode.NORMAL);
        }
      };
      ws.onerror = () => {}; // a close event follows, with the code
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (this._ws === ws) this._ws = null;
        const code = override?.code ?? (event.code || CloseCode.ABNORMAL);
        const reason = override?.reason ?? event.reason ?? "";
        resolve({ connected, code, reason });
      };
    });
  }

  /**
   * @param {Frame} frame
   * @param {string} url
   * @param {WebSocket} ws
   */
  _onConnected(frame, url, ws) {
    const previous = this._core.sessionId;
    const resend = this._core.connected(frame);
    this.exp = frame.exp ?? null;
    this._setState("connected");
    this._emit("connected", { sid: frame.sid, gw: frame.gw, url, resumed: previous === frame.sid });
    for (const waiter of this._connectedWaiters.splice(0)) waiter.resolve();
    for (const out of resend) {
      if (!this._sendNow(out, ws)) break;
    }
    this._scheduleRefresh();
    this._first.resolve(this);
  }

  /** @param {Frame} frame */
  _onFrame(frame) {
    if (frame.op === "message") this.counters.messagesIn += 1;
    const event = this._core.receive(frame);
    if (event === null) return;
    if (event.type === "migrate") {
      this._nextUrl = event.url;
      this._migrateDelayMs = event.delayMs;
      this._emit("migrate", { url: event.url, delayMs: event.delayMs });
    } else if (event.type === "error") {
      this._emit("gatewayerror", { code: event.code, reason: event.reason });
    } else if (event.type === "keyframe") {
      this._emit("keyframe", { channel: event.channel, stream: event.stream });
    }
  }

  /**
   * @param {number | null} code
   * @param {string} reason
   * @param {Error | null} cause
   */
  _finish(code, reason, cause) {
    if (this.state === "closed") return;
    this._clearRefresh();
    const error = cause ?? new ConnectionClosed(code, reason);
    this._finalError = error;
    this.lastClose = { code, reason };
    this._setState("closed");
    this._core.close(error, this._closing ? null : error);
    for (const waiter of this._connectedWaiters.splice(0)) waiter.reject(error);
    if (isRefusal(code)) this._emit("refused", { code, reason });
    this._emit("closed", { code, reason, error });
    this._first.reject(error);
  }

  // --- token refresh --------------------------------------------------------------------

  _scheduleRefresh() {
    this._clearRefresh();
    if (this.exp === null || this.options.tokenProvider === undefined) return;
    const lifetimeMs = this.exp * 1000 - Date.now();
    const inMs = Math.max(1000, lifetimeMs * (this.options.refreshAt ?? 0.8));
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this._refreshNow().catch((error) => {
        this._emit("gatewayerror", { code: error.code ?? 0, reason: `token refresh failed: ${error.message}` });
        // Try again while the token lives; at expiry the gateway closes with 4003 and
        // the reconnect asks the provider once more.
        if (this.exp !== null && this.exp * 1000 - Date.now() > 2000 && this.state === "connected") {
          this._refreshTimer = setTimeout(() => this._scheduleRefresh(), 1000);
        }
      });
    }, inMs);
  }

  _clearRefresh() {
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  async _refreshNow() {
    const provider = this.options.tokenProvider;
    if (provider === undefined) return;
    const token = await provider();
    await this.refresh(token);
  }

  // --- sending ----------------------------------------------------------------------------

  /**
   * Send a frame on `ws`; false when the socket is not open.
   * @param {Frame} frame
   * @param {WebSocket | null} [ws]
   * @returns {boolean}
   */
  _sendNow(frame, ws = this._ws) {
    if (ws === null || ws.readyState !== 1) return false;
    ws.send(this.codec.encode(frame));
    this.counters.framesOut += 1;
    return true;
  }

  /**
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  _whenConnected(timeoutMs) {
    if (this.state === "connected") return Promise.resolve();
    if (this.state === "closed") return Promise.reject(this._finalError ?? new ConnectionClosed(null, "closed"));
    /** @type {Deferred<void>} */
    const waiter = deferred();
    this._connectedWaiters.push(waiter);
    const timer = setTimeout(() => {
      this._connectedWaiters = this._connectedWaiters.filter((w) => w !== waiter);
      waiter.reject(new RequestTimeout(`not connected within ${timeoutMs} ms`));
    }, timeoutMs);
    return waiter.promise.finally(() => clearTimeout(timer));
  }

  /**
   * Send a call and wait for its answer. A `resend` call stays registered across a
   * reconnect and is sent again by `_onConnected`; a `fail` call waits for a connection,
   * and fails if the connection drops before its answer.
   * @param {(ref: number) => Frame} make
   * @param {"resend" | "fail"} retry
   * @param {number} [timeoutMs]
   * @param {(frame: Frame) => unknown} [onAck]
   * @returns {Promise<any>}
   */
  async _call(make, retry, timeoutMs, onAck) {
    if (this.state === "closed") throw this._finalError ?? new ConnectionClosed(null, "closed");
    const limit = timeoutMs ?? this.options.callTimeoutMs ?? 30_000;
    const started = Date.now();
    if (retry === "fail") await this._whenConnected(limit);
    /** @type {Deferred<any>} */
    const answer = deferred();
    const call = this._core.call(make, answer, retry, onAck);
    if (this.state === "connected") {
      if (!this._sendNow(call.frame) && retry === "fail") {
        this._core.fail(call.ref, new ConnectionLost(`${call.frame.op}: not connected`));
      }
    }
    const remaining = Math.max(0, limit - (Date.now() - started));
    const timer = setTimeout(
      () => this._core.fail(call.ref, new RequestTimeout(`${call.frame.op}: no answer within ${limit} ms`)),
      remaining,
    );
    try {
      return await answer.promise;
    } finally {
      clearTimeout(timer);
      this._core.forget(call.ref);
    }
  }

  // --- operations ------------------------------------------------------------------------

  /**
   * Subscribe to a channel; for events, `since` resumes after a known position.
   * @param {string} channel
   * @param {SubscribeOptions} [options]
   * @returns {Promise<Subscription>}
   */
  async subscribe(channel, options = {}) {
    parseChannel(channel);
    if (this.state === "closed") throw this._finalError ?? new ConnectionClosed(null, "closed");
    const sub = new Subscription(this, channel, options);
    this._core.addSubscription(sub);
    // Sent now when connected, otherwise with every other subscription at the next connect.
    if (this.state === "connected") this._sendNow(this._core.subscribeFrame(sub));
    const limit = options.timeoutMs ?? this.options.callTimeoutMs ?? 30_000;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new RequestTimeout(`subscribe ${channel}: no answer within ${limit} ms`)), limit);
    });
    try {
      await Promise.race([sub.ready, timeout]);
    } catch (error) {
      this._core.removeSubscription(sub);
      sub.end(/** @type {Error} */ (error));
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return sub;
  }

  /** @param {Subscription} sub */
  async _unsubscribe(sub) {
    if (!this._core.removeSubscription(sub)) return;
    sub.end(null);
    if (this.state !== "connected") return;
    try {
      await this._call((ref) => ({ op: "unsubscribe", id: ref, ch: sub.channel }), "fail", 5000);
    } catch {
      // the gateway forgets it anyway when the session ends
    }
  }

  /**
   * Publish and wait for the gateway's ack. Where the stream stores the message (events,
   * and state values other than tensor frames) a message id is added when missing, so a
   * publish in flight across a reconnect is sent again and stored once.
   * @param {string} channel
   * @param {unknown} data
   * @param {{mid?: string, enc?: string, tc?: {traceparent: string, tracestate?: string}, timeoutMs?: number}} [options]
   * @returns {Promise<{seq: number | null, duplicate: boolean}>}
   */
  async publish(channel, data, options = {}) {
    const safe = resendSafe(channel, options.enc ?? null);
    const mid = options.mid ?? (safe ? newId() : undefined);
    const ack = await this._call(
      (ref) => ({ op: "publish", id: ref, ch: channel, mid, enc: options.enc, tc: options.tc, data }),
      safe ? "resend" : "fail",
      options.timeoutMs,
    );
    return { seq: ack.seq ?? null, duplicate: ack.dup === true };
  }

  /**
   * Send a control command and return the engine's reply. The command id (generated when
   * missing) makes a retry safe: the engine executes it at most once, and a request in
   * flight across a reconnect is sent again with it.
   * @param {string} channel `wf:{id}:control`
   * @param {unknown} data
   * @param {{cid?: string, timeoutMs?: number, tc?: {traceparent: string, tracestate?: string}}} [options]
   * @returns {Promise<unknown>}
   */
  async request(channel, data, options = {}) {
    const cid = options.cid ?? newId();
    const timeoutMs = options.timeoutMs ?? 5000;
    const reply = await this._call(
      (ref) => ({ op: "request", id: ref, ch: channel, cid, timeout_ms: timeoutMs, tc: options.tc, data }),
      "resend",
      timeoutMs + 5000,
    );
    return reply.data;
  }

  /**
   * The recorded reply of command `cid`, typically after a reconnect; rejects with a
   * `ClientError` 404 while none is recorded.
   * @param {string} channel
   * @param {string} cid
   * @returns {Promise<unknown>}
   */
  async outcome(channel, cid) {
    const ack = await this._call((ref) => ({ op: "outcome", id: ref, ch: channel, cid }), "fail");
    return ack.data;
  }

  /**
   * The members of a workflow, from its `wf:{id}:presence` channel.
   * @param {string} channel
   * @returns {Promise<Array<Record<string, unknown>>>}
   */
  async presence(channel) {
    const ack = await this._call((ref) => ({ op: "presence", id: ref, ch: channel }), "fail");
    return ack.members ?? [];
  }

  /**
   * The gateway's quality figures of a subscribed channel's tensor streams (§14.4).
   * @param {string} channel
   * @returns {Promise<{streams: Record<string, Record<string, unknown>>}>}
   */
  async stats(channel) {
    const ack = await this._call((ref) => ({ op: "stats", id: ref, ch: channel }), "fail");
    return ack.data ?? { streams: {} };
  }

  /**
   * Replace the session's token before it expires; resolves with the new expiry.
   * @param {string} token
   * @returns {Promise<number | null>}
   */
  async refresh(token) {
    const ack = await this._call((ref) => ({ op: "refresh", id: ref, token }), "fail");
    this._token = token;
    this.exp = ack.exp ?? null;
    this._emit("refreshed", { exp: this.exp });
    this._scheduleRefresh();
    return this.exp;
  }

  /**
   * An application-level round trip; resolves with its time in milliseconds.
   * @param {number} [timeoutMs]
   * @returns {Promise<number>}
   */
  async ping(timeoutMs = 5000) {
    const started = performance.now();
    await this._call((ref) => ({ op: "ping", id: ref }), "fail", timeoutMs);
    return performance.now() - started;
  }

  /**
   * Ask for a keyframe of a tensor stream after a gap (sent by subscriptions themselves).
   * @param {string} channel
   * @param {number} stream
   */
  _resync(channel, stream) {
    this._call((ref) => ({ op: "resync", id: ref, ch: channel, stream }), "fail", 10_000).catch(() => {});
  }
}

/**
 * Connect to a gateway (or the first reachable of several URLs); resolves once the first
 * session is established.
 * @param {string | string[]} urls
 * @param {ClientOptions} [options]
 * @returns {Promise<FrysClient>}
 */
export function connect(urls, options = {}) {
  return new FrysClient(urls, options).start();
}
