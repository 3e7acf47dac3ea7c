/**
 * The delay before reconnect attempt `attempt` (1 for the first retry):
 * `random(0, min(cap, base · 2^attempt))`.
 *
 * @param {number} attempt how many attempts failed in a row
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [options]
 *   `random` returns a number in [0, 1); injectable for tests
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt: number, options?: {
    baseMs?: number;
    capMs?: number;
    random?: () => number;
}): number;
/**
 * The delay a draining gateway asks for in a 1012 close reason. Reasons are `key=value`
 * items separated by `;`, and unknown keys are ignored, so later gateways can add items.
 *
 * @param {string | null | undefined} reason the close reason
 * @returns {number} milliseconds (0 when the reason names none)
 */
export function delayFromReason(reason: string | null | undefined): number;
/**
 * Reconnect delays (docs/protocol.md §5.4).
 *
 * Full jitter spreads the clients of a failed gateway uniformly over the whole window, so
 * they do not come back in waves; the cap keeps a long outage from pushing the next try
 * minutes away.
 *
 * @module
 */
/** Default base of the exponential backoff, in milliseconds. */
export const BACKOFF_BASE_MS: 100;
/** Default cap of the exponential backoff, in milliseconds. */
export const BACKOFF_CAP_MS: 10000;
