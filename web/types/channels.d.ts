/**
 * Parse a channel name; throws `TypeError` for a name outside the grammar (the gateway
 * would answer it with error 422).
 *
 * @param {string} name
 * @returns {Channel}
 */
export function parseChannel(name: string): Channel;
/**
 * The channel of one workflow and kind, e.g. `workflowChannel("42", "events")`.
 *
 * @param {string} workflow
 * @param {Exclude<ChannelKind, "agent">} kind
 * @returns {string}
 */
export function workflowChannel(workflow: string, kind: Exclude<ChannelKind, "agent">): string;
/**
 * Whether a publish whose ack was never seen may be sent again after a reconnect: only
 * where the stream stores it and drops a repeated message id.
 *
 * @param {string} channel
 * @param {string | null} [enc] `tensor` for tensor frames
 * @returns {boolean}
 */
export function resendSafe(channel: string, enc?: string | null): boolean;
export type ChannelKind = "state" | "events" | "control" | "presence" | "collab" | "agent";
export type Channel = {
    /**
     * the channel as written
     */
    name: string;
    kind: ChannelKind;
    /**
     * the workflow id of `wf:` channels
     */
    workflow: string | null;
    /**
     * the agent id of `agent:` channels
     */
    agent: string | null;
};
