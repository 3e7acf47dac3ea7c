/**
 * Channel names (docs/protocol.md §6.1) and the resend rule of a publish.
 *
 * The resend rule mirrors `frys.shared.protocol.publish.resend_safe`: only a publish the
 * stream stores (events, and state values other than live tensor frames) is deduplicated
 * by its message id, so only those may be sent again after a reconnect without the risk
 * of being stored twice.
 *
 * @module
 */

/** @typedef {"state" | "events" | "control" | "presence" | "collab" | "agent"} ChannelKind */

/**
 * @typedef {object} Channel
 * @property {string} name the channel as written
 * @property {ChannelKind} kind
 * @property {string | null} workflow the workflow id of `wf:` channels
 * @property {string | null} agent the agent id of `agent:` channels
 */

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const KINDS = new Set(["state", "events", "control", "presence", "collab"]);

/**
 * Parse a channel name; throws `TypeError` for a name outside the grammar (the gateway
 * would answer it with error 422).
 *
 * @param {string} name
 * @returns {Channel}
 */
export function parseChannel(name) {
  const parts = typeof name === "string" ? name.split(":") : [];
  if (parts.length === 3 && parts[0] === "wf" && ID.test(parts[1]) && KINDS.has(parts[2])) {
    return {
      name,
      kind: /** @type {ChannelKind} */ (parts[2]),
      workflow: parts[1],
      agent: null,
    };
  }
  if (parts.length === 2 && parts[0] === "agent" && ID.test(parts[1])) {
    return { name, kind: "agent", workflow: null, agent: parts[1] };
  }
  throw new TypeError(`invalid channel ${JSON.stringify(name)}`);
}

/**
 * The channel of one workflow and kind, e.g. `workflowChannel("42", "events")`.
 *
 * @param {string} workflow
 * @param {Exclude<ChannelKind, "agent">} kind
 * @returns {string}
 */
export function workflowChannel(workflow, kind) {
  return parseChannel(`wf:${workflow}:${kind}`).name;
}

/**
 * Whether a publish whose ack was never seen may be sent again after a reconnect: only
 * where the stream stores it and drops a repeated message id.
 *
 * @param {string} channel
 * @param {string | null} [enc] `tensor` for tensor frames
 * @returns {boolean}
 */
export function resendSafe(channel, enc = null) {
  const { kind } = parseChannel(channel);
  if (kind === "events") return true;
  if (kind === "state") return enc == null;
  return false;
}
