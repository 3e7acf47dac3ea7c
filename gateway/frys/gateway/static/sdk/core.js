/**
 * The client's protocol state without I/O: what to send, and what a received frame means.
 *
 * A port of the Python SDK's `frys.client.core`, kept free of sockets and timers so that
 * the rules that keep a stream exactly-once across reconnects are tested frame by frame:
 *
 * - calls in flight by request id: settled by their `ack`/`reply`/`pong` or by an `error`
 *   naming them, and, when the connection drops, either failed or kept for re-sending;
 * - subscriptions and their positions: an events subscription resumes after the last
 *   sequence it delivered (`since`), repeats are dropped, and a lost history is reported
 *   once (`gap: true` on the next message, after an ack with `recovered: false`); a state
 *   subscription drops values not newer than the one it delivered;
 * - the resend rule: after a reconnect every subscription is sent again first, then the
 *   calls that are safe to repeat (publishes the stream deduplicates by message id,
 *   control requests whose command id makes them idempotent); other calls fail with
 *   `ConnectionLost` instead of running twice.
 *
 * @module
 */
import { parseChannel } from "./channels.js";
import { ClientError, ConnectionLost } from "./errors.js";

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
  constructor(channel, since = null) {
    /** @type {string} */
    this.channel = channel;
    /** @type {import("./channels.js").ChannelKind} */
    this.kind = parseChannel(channel).kind;
    /** @type {Position | null} */
    this.position = since;
    /** How many times history could not be recovered. */
    this.gaps = 0;
    this.active = true;
    this._gapPending = false;
    /** @type {number | null} */
    this._lastStateSeq = null;
    /** @type {(value: void) => void} */
    let ready = () => {};
    /** @type {(error: Error) => void} */
    let refused = () => {};
    /**
     * Settles with the first answer to the subscribe: resolved by its ack, rejected when
     * the subscription ends before one (a refusal, the client closing).
     * @type {Promise<void>}
     */
    this.ready = new Promise((resolve, reject) => {
      ready = resolve;
      refused = reject;
    });
    this.ready.catch(() => {}); // a refusal nobody awaits is not an unhandled rejection
    this._ready = ready;
    this._refused = refused;
  }

  /**
   * Where a (re)subscribe resumes: after the last delivered event. Only events channels
   * replay history; the others start from now (state from its snapshot).
   * @returns {Position | null}
   */
  since() {
    return this.kind === "events" ? this.position : null;
  }

  /**
   * The gateway's answer to a (re)subscribe: where the stream stands now.
   * @param {Frame} frame
   */
  acked(frame) {
    this._ready();
    if (frame.op !== "ack" || frame.epoch === undefined) return;
    if (this.kind === "events") {
      if (frame.recovered === false) {
        // The history after our position is gone: carry on from here, and mark the next
        // delivery so the application knows it missed something.
        this.gaps += 1;
        this._gapPending = this.position !== null;
        this.position = { seq: frame.seq ?? 0, epoch: frame.epoch };
      } else if (this.position === null || this.position.epoch !== frame.epoch) {
        this.position = { seq: frame.seq ?? 0, epoch: frame.epoch };
      }
    } else if (this.kind === "state") {
      if (this.position !== null && this.position.epoch !== frame.epoch) {
        this._lastStateSeq = null; // a new stream: its sequences start over
      }
      this.position = { seq: frame.seq ?? 0, epoch: frame.epoch };
    }
  }

  /**
   * The delivery of a `message` frame, or `null` when it was delivered already (a replay
   * overlapping what arrived before a reconnect) or is older than the state shown.
   * @param {Frame} frame
   * @returns {Message | null}
   */
  received(frame) {
    const seq = frame.seq;
    if (this.kind === "events" && seq !== undefined) {
      if (this.position !== null) {
        if (seq <= this.position.seq) return null;
        this.position = { seq, epoch: this.position.epoch };
      }
      const gap = this._gapPending;
      this._gapPending = false;
      return message(this.channel, frame, gap);
    }
    if (this.kind === "state" && seq !== undefined) {
      if (this._lastStateSeq !== null && seq <= this._lastStateSeq) return null;
      this._lastStateSeq = seq;
    }
    return message(this.channel, frame, false);
  }

  /** @param {Frame} frame */
  onMessage(frame) {
    const delivered = this.received(frame);
    if (delivered !== null) this._deliver(delivered);
  }

  /**
   * No more deliveries; `error` says why when the application did not ask for it.
   * @param {Error | null} error
   */
  end(error) {
    if (this.active) {
      this.active = false;
      this._refused(error ?? new Error(`subscription of ${this.channel} ended`));
      this._ended(error);
    }
  }

  /**
   * Hand a delivery to the application (overridden).
   * @param {Message} _message
   */
  _deliver(_message) {}

  /**
   * The subscription ended (overridden).
   * @param {Error | null} _error
   */
  _ended(_error) {}
}

/**
 * @param {string} channel
 * @param {Frame} frame
 * @param {boolean} gap
 * @returns {Message}
 */
function message(channel, frame, gap) {
  return { channel, data: frame.data, seq: frame.seq, from: frame.from, gap, enc: frame.enc };
}

/**
 * What the shell has to act on after a received frame.
 * @typedef {{type: "migrate", url: string, delayMs: number}
 *   | {type: "keyframe", channel: string, stream: number}
 *   | {type: "error", code: number, reason: string}} CoreEvent
 */

/** Calls in flight and subscriptions of one client, across all its connections. */
export class ClientCore {
  constructor() {
    this._nextId = 1;
    /** @type {Map<number, PendingCall>} */
    this.pending = new Map();
    /** @type {Map<string, SubscriptionState>} */
    this.subs = new Map();
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {string | null} */
    this.gatewayId = null;
    /** @type {Record<string, number>} */
    this.limits = {};
    /** The gateway's resume token: sent once, on the next connect, to keep the session. */
    this.resume = "";
  }

  /**
   * Register a call under a fresh request id; `make` builds its frame.
   * @param {(ref: number) => Frame} make
   * @param {Waiter} waiter
   * @param {Retry} retry
   * @param {(frame: Frame) => unknown} [onAck]
   * @returns {PendingCall}
   */
  call(make, waiter, retry, onAck) {
    const ref = this._nextId++;
    const pending = { ref, frame: make(ref), waiter, retry, onAck };
    this.pending.set(ref, pending);
    return pending;
  }

  /** @param {number} ref */
  forget(ref) {
    this.pending.delete(ref);
  }

  /**
   * @param {number | undefined} ref
   * @param {Frame} frame
   */
  resolve(ref, frame) {
    if (ref === undefined) return;
    const pending = this.pending.get(ref);
    if (pending === undefined) return; // answered already, or given up on
    this.pending.delete(ref);
    let result = /** @type {unknown} */ (frame);
    if (pending.onAck !== undefined) {
      try {
        result = pending.onAck(frame);
      } catch (error) {
        pending.waiter.reject(/** @type {Error} */ (error));
        return;
      }
    }
    pending.waiter.resolve(result);
  }

  /**
   * Fail the call `ref`; false when no such call is in flight.
   * @param {number} ref
   * @param {Error} error
   * @returns {boolean}
   */
  fail(ref, error) {
    const pending = this.pending.get(ref);
    if (pending === undefined) return false;
    this.pending.delete(ref);
    pending.waiter.reject(error);
    return true;
  }

  /**
   * The socket dropped: calls that may not be repeated fail now; the others wait for the
   * next connection ({@link connected}).
   */
  connectionLost() {
    for (const [ref, pending] of [...this.pending]) {
      if (pending.retry === "fail") {
        this.fail(ref, new ConnectionLost(`${pending.frame.op} was in flight when the connection dropped`));
      }
    }
  }

  /**
   * The client is done: every call fails with `error`, every subscription ends.
   * @param {Error} error
   * @param {Error | null} subscriptionError
   */
  close(error, subscriptionError) {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const call of pending) call.waiter.reject(error);
    for (const sub of [...this.subs.values()]) sub.end(subscriptionError);
  }

  /** @param {SubscriptionState} sub */
  addSubscription(sub) {
    if (this.subs.has(sub.channel)) {
      throw new ClientError(409, `already subscribed to ${sub.channel}`);
    }
    this.subs.set(sub.channel, sub);
  }

  /**
   * Forget `sub` (not a newer subscription of the same channel).
   * @param {SubscriptionState} sub
   * @returns {boolean}
   */
  removeSubscription(sub) {
    if (this.subs.get(sub.channel) !== sub) return false;
    this.subs.delete(sub.channel);
    return true;
  }

  /**
   * A connection is up: the frames to send first, in order. Every subscription is sent
   * again from its position, then every call that may be repeated.
   * @param {Frame} frame the `connected` frame
   * @returns {Frame[]}
   */
  connected(frame) {
    this.sessionId = frame.sid;
    this.gatewayId = frame.gw;
    this.limits = { ...(frame.limits ?? {}) };
    this.resume = frame.resume ?? "";
    const resend = [...this.pending.values()].filter((p) => p.retry === "resend").map((p) => p.frame);
    /** @type {Frame[]} */
    const frames = [];
    for (const sub of this.subs.values()) {
      if (sub.active) frames.push(this.subscribeFrame(sub));
    }
    return frames.concat(resend);
  }

  /**
   * The `subscribe` frame of `sub` from its position, registered as a call: its ack
   * settles `sub.ready`, and a refusal ends the subscription.
   * @param {SubscriptionState} sub
   * @returns {Frame}
   */
  subscribeFrame(sub) {
    // Nobody awaits a resubscription, but a refusal (a revoked grant, a channel gone) ends
    // the subscription rather than leaving it silently deaf.
    const waiter = {
      resolve() {},
      /** @param {Error} error */
      reject: (error) => {
        if (error instanceof ClientError) {
          this.removeSubscription(sub);
          sub.end(error);
        }
      },
    };
    const since = sub.since();
    return this.call(
      (ref) => ({ op: "subscribe", id: ref, ch: sub.channel, since: since ?? undefined }),
      waiter,
      "fail",
      (ack) => sub.acked(ack),
    ).frame;
  }

  /**
   * Apply one frame from the gateway; what the shell must act on is returned.
   * @param {Frame} frame
   * @returns {CoreEvent | null}
   */
  receive(frame) {
    switch (frame.op) {
      case "message": {
        const sub = this.subs.get(frame.ch);
        if (sub !== undefined) sub.onMessage(frame);
        break;
      }
      case "ack":
      case "reply":
      case "pong":
        this.resolve(frame.id, frame);
        break;
      case "error":
        if (frame.ref === undefined || !this.fail(frame.ref, new ClientError(frame.code, frame.reason))) {
          return { type: "error", code: frame.code, reason: frame.reason };
        }
        break;
      case "migrate":
        return { type: "migrate", url: frame.url, delayMs: frame.delay_ms ?? 0 };
      case "unsubscribed": {
        const sub = this.subs.get(frame.ch);
        if (sub !== undefined) {
          this.subs.delete(frame.ch);
          sub.end(new ClientError(frame.code, frame.reason));
        }
        break;
      }
      case "keyframe":
        return { type: "keyframe", channel: frame.ch, stream: frame.stream };
      default:
        break; // unknown ops are ignored (§1)
    }
    return null;
  }
}
