/**
 * @typedef {import("./codec.js").Frame} Frame
 * @typedef {{seq: number, epoch: string}} Position
 */
/**
 * One delivery as the application sees it.
 * @typedef {object} Message
 * @property {string} channel
 * @property {unknown} data
 * @property {number | undefined} seq set on events and state channels
 * @property {string | undefined} from who published it
 * @property {boolean} gap true on the first events message after history was lost
 * @property {string | undefined} enc `tensor` when `data` is a tensor frame
 */
/**
 * Where the outcome of a call goes.
 * @typedef {object} Waiter
 * @property {(value: any) => void} resolve
 * @property {(error: Error) => void} reject
 */
/**
 * @typedef {"resend" | "fail"} Retry
 * What happens to a call in flight when the connection drops.
 */
/**
 * @typedef {object} PendingCall
 * @property {number} ref
 * @property {Frame} frame
 * @property {Waiter} waiter
 * @property {Retry} retry
 * @property {((frame: Frame) => unknown) | undefined} onAck turns the answer into the result
 */
/** A subscription's position and delivery rules; the client's subscription extends it. */
export class SubscriptionState {
    /**
     * @param {string} channel
     * @param {Position | null} [since] resume an events channel after this position
     */
    constructor(channel: string, since?: Position | null);
    /** @type {string} */
    channel: string;
    /** @type {import("./channels.js").ChannelKind} */
    kind: import("./channels.js").ChannelKind;
    /** @type {Position | null} */
    position: Position | null;
    /** How many times history could not be recovered. */
    gaps: number;
    active: boolean;
    _gapPending: boolean;
    /** @type {number | null} */
    _lastStateSeq: number | null;
    /**
     * Settles with the first answer to the subscribe: resolved by its ack, rejected when
     * the subscription ends before one (a refusal, the client closing).
     * @type {Promise<void>}
     */
    ready: Promise<void>;
    _ready: (value: void) => void;
    _refused: (error: Error) => void;
    /**
     * Where a (re)subscribe resumes: after the last delivered event. Only events channels
     * replay history; the others start from now (state from its snapshot).
     * @returns {Position | null}
     */
    since(): Position | null;
    /**
     * The gateway's answer to a (re)subscribe: where the stream stands now.
     * @param {Frame} frame
     */
    acked(frame: Frame): void;
    /**
     * The delivery of a `message` frame, or `null` when it was delivered already (a replay
     * overlapping what arrived before a reconnect) or is older than the state shown.
     * @param {Frame} frame
     * @returns {Message | null}
     */
    received(frame: Frame): Message | null;
    /** @param {Frame} frame */
    onMessage(frame: Frame): void;
    /**
     * No more deliveries; `error` says why when the application did not ask for it.
     * @param {Error | null} error
     */
    end(error: Error | null): void;
    /**
     * Hand a delivery to the application (overridden).
     * @param {Message} _message
     */
    _deliver(_message: Message): void;
    /**
     * The subscription ended (overridden).
     * @param {Error | null} _error
     */
    _ended(_error: Error | null): void;
}
/**
 * What the shell has to act on after a received frame.
 * @typedef {{type: "migrate", url: string, delayMs: number}
 *   | {type: "keyframe", channel: string, stream: number}
 *   | {type: "error", code: number, reason: string}} CoreEvent
 */
/** Calls in flight and subscriptions of one client, across all its connections. */
export class ClientCore {
    _nextId: number;
    /** @type {Map<number, PendingCall>} */
    pending: Map<number, PendingCall>;
    /** @type {Map<string, SubscriptionState>} */
    subs: Map<string, SubscriptionState>;
    /** @type {string | null} */
    sessionId: string | null;
    /** @type {string | null} */
    gatewayId: string | null;
    /** @type {Record<string, number>} */
    limits: Record<string, number>;
    /** The gateway's resume token: sent once, on the next connect, to keep the session. */
    resume: string;
    /**
     * Register a call under a fresh request id; `make` builds its frame.
     * @param {(ref: number) => Frame} make
     * @param {Waiter} waiter
     * @param {Retry} retry
     * @param {(frame: Frame) => unknown} [onAck]
     * @returns {PendingCall}
     */
    call(make: (ref: number) => Frame, waiter: Waiter, retry: Retry, onAck?: (frame: Frame) => unknown): PendingCall;
    /** @param {number} ref */
    forget(ref: number): void;
    /**
     * @param {number | undefined} ref
     * @param {Frame} frame
     */
    resolve(ref: number | undefined, frame: Frame): void;
    /**
     * Fail the call `ref`; false when no such call is in flight.
     * @param {number} ref
     * @param {Error} error
     * @returns {boolean}
     */
    fail(ref: number, error: Error): boolean;
    /**
     * The socket dropped: calls that may not be repeated fail now; the others wait for the
     * next connection ({@link connected}).
     */
    connectionLost(): void;
    /**
     * The client is done: every call fails with `error`, every subscription ends.
     * @param {Error} error
     * @param {Error | null} subscriptionError
     */
    close(error: Error, subscriptionError: Error | null): void;
    /** @param {SubscriptionState} sub */
    addSubscription(sub: SubscriptionState): void;
    /**
     * Forget `sub` (not a newer subscription of the same channel).
     * @param {SubscriptionState} sub
     * @returns {boolean}
     */
    removeSubscription(sub: SubscriptionState): boolean;
    /**
     * A connection is up: the frames to send first, in order. Every subscription is sent
     * again from its position, then every call that may be repeated.
     * @param {Frame} frame the `connected` frame
     * @returns {Frame[]}
     */
    connected(frame: Frame): Frame[];
    /**
     * The `subscribe` frame of `sub` from its position, registered as a call: its ack
     * settles `sub.ready`, and a refusal ends the subscription.
     * @param {SubscriptionState} sub
     * @returns {Frame}
     */
    subscribeFrame(sub: SubscriptionState): Frame;
    /**
     * Apply one frame from the gateway; what the shell must act on is returned.
     * @param {Frame} frame
     * @returns {CoreEvent | null}
     */
    receive(frame: Frame): CoreEvent | null;
}
export type Frame = import("./codec.js").Frame;
export type Position = {
    seq: number;
    epoch: string;
};
/**
 * One delivery as the application sees it.
 */
export type Message = {
    channel: string;
    data: unknown;
    /**
     * set on events and state channels
     */
    seq: number | undefined;
    /**
     * who published it
     */
    from: string | undefined;
    /**
     * true on the first events message after history was lost
     */
    gap: boolean;
    /**
     * `tensor` when `data` is a tensor frame
     */
    enc: string | undefined;
};
/**
 * Where the outcome of a call goes.
 */
export type Waiter = {
    resolve: (value: any) => void;
    reject: (error: Error) => void;
};
/**
 * What happens to a call in flight when the connection drops.
 */
export type Retry = "resend" | "fail";
export type PendingCall = {
    ref: number;
    frame: Frame;
    waiter: Waiter;
    retry: Retry;
    /**
     * turns the answer into the result
     */
    onAck: ((frame: Frame) => unknown) | undefined;
};
/**
 * What the shell has to act on after a received frame.
 */
export type CoreEvent = {
    type: "migrate";
    url: string;
    delayMs: number;
} | {
    type: "keyframe";
    channel: string;
    stream: number;
} | {
    type: "error";
    code: number;
    reason: string;
};
