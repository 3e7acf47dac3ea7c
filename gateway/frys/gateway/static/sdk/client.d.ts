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
export function newId(): string;
/**
 * Connect to a gateway (or the first reachable of several URLs); resolves once the first
 * session is established.
 * @param {string | string[]} urls
 * @param {ClientOptions} [options]
 * @returns {Promise<FrysClient>}
 */
export function connect(urls: string | string[], options?: ClientOptions): Promise<FrysClient>;
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
    constructor(client: FrysClient, channel: string, options: SubscribeOptions);
    client: FrysClient;
    options: SubscribeOptions;
    /** @type {Array<Message>} */
    _queue: Array<Message>;
    /** @type {Array<Deferred<Message | null>>} */
    _waiting: Array<Deferred<Message | null>>;
    /** @type {Error | null | undefined} */
    _end: Error | null | undefined;
    /** @type {TensorChannel | null} */
    tensors: TensorChannel | null;
    /**
     * The next delivery (`null` once the subscription ended without an error).
     * @param {number} [timeoutMs]
     * @returns {Promise<Message | null>}
     */
    next(timeoutMs?: number): Promise<Message | null>;
    /**
     * The current value of one of the channel's tensor streams (with `onTensor`).
     * @param {number} [stream]
     * @returns {TensorValue | null}
     */
    tensor(stream?: number): TensorValue | null;
    /** Stop the subscription. */
    unsubscribe(): Promise<void>;
    /** @returns {AsyncGenerator<Message>} */
    [Symbol.asyncIterator](): AsyncGenerator<Message>;
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
    constructor(urls: string | string[], options?: ClientOptions);
    urls: string[];
    options: ClientOptions;
    codec: import("./codec.js").WireCodec;
    /** @type {ConnState} */
    state: ConnState;
    /** WebSocket connections attempted so far. */
    attempts: number;
    /** Sessions lost and reconnected after. */
    reconnects: number;
    /** @type {{code: number | null, reason: string}} */
    lastClose: {
        code: number | null;
        reason: string;
    };
    /** Frames received, frames sent, `message` frames received. */
    counters: {
        framesIn: number;
        framesOut: number;
        messagesIn: number;
    };
    /** @type {number | null} expiry of the token, Unix seconds */
    exp: number | null;
    _token: string | undefined;
    _core: ClientCore;
    /** @type {WebSocket | null} */
    _ws: WebSocket | null;
    _urlIndex: number;
    /** @type {string | null} */
    _nextUrl: string | null;
    _migrateDelayMs: number;
    _closing: boolean;
    /** @type {Error | null} */
    _finalError: Error | null;
    /** @type {Deferred<FrysClient>} */
    _first: Deferred<FrysClient>;
    /** @type {Array<Deferred<void>>} */
    _connectedWaiters: Array<Deferred<void>>;
    /** @type {ReturnType<typeof setTimeout> | null} */
    _refreshTimer: ReturnType<typeof setTimeout> | null;
    /** @type {(() => void) | null} */
    _wake: (() => void) | null;
    _started: boolean;
    /** The session id (kept across a resume). */
    get sessionId(): string | null;
    /** The gateway serving this client (changes when it moves). */
    get gatewayId(): string | null;
    /** The session's limits (§9). */
    get limits(): Record<string, number>;
    /** The gateway URL in use, or tried next. */
    get url(): string;
    /**
     * Start connecting; resolves once the first session is established, rejects when the
     * client stops before (a refusal, `close()`).
     * @returns {Promise<FrysClient>}
     */
    start(): Promise<FrysClient>;
    /** Close for good: calls in flight fail, subscriptions end. */
    close(): void;
    /**
     * @param {string} type
     * @param {unknown} detail
     */
    _emit(type: string, detail: unknown): void;
    /** @param {ConnState} state */
    _setState(state: ConnState): void;
    _supervise(): Promise<void>;
    /**
     * Wait `ms`, or less when the client closes meanwhile.
     * @param {number} ms
     * @returns {Promise<void>}
     */
    _sleep(ms: number): Promise<void>;
    /**
     * A new token for a reconnect after 4003/4401: only a different one helps.
     * @returns {Promise<boolean>}
     */
    _newToken(): Promise<boolean>;
    /**
     * One connection: upgrade, `connect`, then the session until the socket closes.
     * @param {string} url
     * @returns {Promise<{connected: boolean, code: number, reason: string}>}
     */
    _open(url: string): Promise<{
        connected: boolean;
        code: number;
        reason: string;
    }>;
    /**
     * @param {Frame} frame
     * @param {string} url
     * @param {WebSocket} ws
     */
    _onConnected(frame: Frame, url: string, ws: WebSocket): void;
    /** @param {Frame} frame */
    _onFrame(frame: Frame): void;
    /**
     * @param {number | null} code
     * @param {string} reason
     * @param {Error | null} cause
     */
    _finish(code: number | null, reason: string, cause: Error | null): void;
    _scheduleRefresh(): void;
    _clearRefresh(): void;
    _refreshNow(): Promise<void>;
    /**
     * Send a frame on `ws`; false when the socket is not open.
     * @param {Frame} frame
     * @param {WebSocket | null} [ws]
     * @returns {boolean}
     */
    _sendNow(frame: Frame, ws?: WebSocket | null): boolean;
    /**
     * @param {number} timeoutMs
     * @returns {Promise<void>}
     */
    _whenConnected(timeoutMs: number): Promise<void>;
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
    _call(make: (ref: number) => Frame, retry: "resend" | "fail", timeoutMs?: number, onAck?: (frame: Frame) => unknown): Promise<any>;
    /**
     * Subscribe to a channel; for events, `since` resumes after a known position.
     * @param {string} channel
     * @param {SubscribeOptions} [options]
     * @returns {Promise<Subscription>}
     */
    subscribe(channel: string, options?: SubscribeOptions): Promise<Subscription>;
    /** @param {Subscription} sub */
    _unsubscribe(sub: Subscription): Promise<void>;
    /**
     * Publish and wait for the gateway's ack. Where the stream stores the message (events,
     * and state values other than tensor frames) a message id is added when missing, so a
     * publish in flight across a reconnect is sent again and stored once.
     * @param {string} channel
     * @param {unknown} data
     * @param {{mid?: string, enc?: string, tc?: {traceparent: string, tracestate?: string}, timeoutMs?: number}} [options]
     * @returns {Promise<{seq: number | null, duplicate: boolean}>}
     */
    publish(channel: string, data: unknown, options?: {
        mid?: string;
        enc?: string;
        tc?: {
            traceparent: string;
            tracestate?: string;
        };
        timeoutMs?: number;
    }): Promise<{
        seq: number | null;
        duplicate: boolean;
    }>;
    /**
     * Send a control command and return the engine's reply. The command id (generated when
     * missing) makes a retry safe: the engine executes it at most once, and a request in
     * flight across a reconnect is sent again with it.
     * @param {string} channel `wf:{id}:control`
     * @param {unknown} data
     * @param {{cid?: string, timeoutMs?: number, tc?: {traceparent: string, tracestate?: string}}} [options]
     * @returns {Promise<unknown>}
     */
    request(channel: string, data: unknown, options?: {
        cid?: string;
        timeoutMs?: number;
        tc?: {
            traceparent: string;
            tracestate?: string;
        };
    }): Promise<unknown>;
    /**
     * The recorded reply of command `cid`, typically after a reconnect; rejects with a
     * `ClientError` 404 while none is recorded.
     * @param {string} channel
     * @param {string} cid
     * @returns {Promise<unknown>}
     */
    outcome(channel: string, cid: string): Promise<unknown>;
    /**
     * The members of a workflow, from its `wf:{id}:presence` channel.
     * @param {string} channel
     * @returns {Promise<Array<Record<string, unknown>>>}
     */
    presence(channel: string): Promise<Array<Record<string, unknown>>>;
    /**
     * The gateway's quality figures of a subscribed channel's tensor streams (§14.4).
     * @param {string} channel
     * @returns {Promise<{streams: Record<string, Record<string, unknown>>}>}
     */
    stats(channel: string): Promise<{
        streams: Record<string, Record<string, unknown>>;
    }>;
    /**
     * Replace the session's token before it expires; resolves with the new expiry.
     * @param {string} token
     * @returns {Promise<number | null>}
     */
    refresh(token: string): Promise<number | null>;
    /**
     * An application-level round trip; resolves with its time in milliseconds.
     * @param {number} [timeoutMs]
     * @returns {Promise<number>}
     */
    ping(timeoutMs?: number): Promise<number>;
    /**
     * Ask for a keyframe of a tensor stream after a gap (sent by subscriptions themselves).
     * @param {string} channel
     * @param {number} stream
     */
    _resync(channel: string, stream: number): void;
}
export type Frame = import("./codec.js").Frame;
export type Message = import("./core.js").Message;
export type Position = import("./core.js").Position;
export type TensorValue = import("./tensor.js").TensorValue;
export type ConnState = "connecting" | "connected" | "reconnecting" | "closed";
export type ClientOptions = {
    /**
     * the JWT sent in `connect`
     */
    token?: string | undefined;
    /**
     * supplies a fresh token:
     * before the current one expires (then sent with `refresh`) and after the gateway
     * refused or expired it (then used to reconnect)
     */
    tokenProvider?: (() => (string | Promise<string>)) | undefined;
    /**
     * display name in presence records
     */
    name?: string | undefined;
    /**
     * capabilities announced to other members
     */
    caps?: string[] | undefined;
    /**
     * subprotocol (default `msgpack`)
     */
    codec?: string | undefined;
    /**
     * reconnect after an outage (default true)
     */
    reconnect?: boolean | undefined;
    /**
     * default 100
     */
    backoffBaseMs?: number | undefined;
    /**
     * default 10000
     */
    backoffCapMs?: number | undefined;
    /**
     * time for the upgrade and `connected` (default 10000)
     */
    connectTimeoutMs?: number | undefined;
    /**
     * default time to wait for an answer (default 30000)
     */
    callTimeoutMs?: number | undefined;
    /**
     * fraction of the token's lifetime after which it is
     * refreshed (default 0.8)
     */
    refreshAt?: number | undefined;
    /**
     * the WebSocket class (default the global one)
     */
    WebSocket?: {
        new (url: string | URL, protocols?: string | string[]): WebSocket;
        prototype: WebSocket;
        readonly CONNECTING: 0;
        readonly OPEN: 1;
        readonly CLOSING: 2;
        readonly CLOSED: 3;
    } | undefined;
    /**
     * a number in [0, 1) (default Math.random)
     */
    random?: (() => number) | undefined;
};
export type Deferred<T> = {
    promise: Promise<T>;
    resolve: (value: T) => void;
    reject: (error: Error) => void;
    settled: boolean;
};
export type SubscribeOptions = {
    /**
     * events: resume after this position
     */
    since?: import("./core.js").Position | null | undefined;
    /**
     * receives every delivery; without it
     * deliveries queue for `next()` and `for await`
     */
    onMessage?: ((message: Message) => void) | undefined;
    /**
     * receives decoded tensors: tensor
     * frames of the channel are then decoded (gaps repaired with `resync`) rather than
     * delivered as messages
     */
    onTensor?: ((value: TensorValue) => void) | undefined;
    /**
     * the subscription ended (`null` when
     * the application ended it)
     */
    onEnd?: ((error: Error | null) => void) | undefined;
    timeoutMs?: number | undefined;
};
import { SubscriptionState } from "./core.js";
import { TensorChannel } from "./tensor.js";
import { ClientCore } from "./core.js";
