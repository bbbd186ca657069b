/**
 * Time for the client, injectable: the real timers by default, a fake clock in tests, so that backoff,
 * reconnects and timeouts are tested without sleeping.
 */

/** Cancels a scheduled callback; calling it after the callback ran, or twice, does nothing. */
export type Cancel = () => void

export interface Scheduler {
  /** Milliseconds since some fixed origin (only differences are used). */
  readonly now: () => number
  /** Runs `callback` once after `ms` milliseconds. */
  readonly setTimeout: (callback: () => void, ms: number) => Cancel
}

/** The host's own timers (`globalThis.setTimeout`, `Date.now`). */
export const real: Scheduler = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = globalThis.setTimeout(callback, ms)
    return () => globalThis.clearTimeout(handle)
  }
}

/** Exponential backoff with jitter between reconnect attempts. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter (ms). */
  readonly initialMs: number
  /** Largest delay, before jitter (ms). */
  readonly maxMs: number
  /** Growth per attempt. */
  readonly factor: number
}

export const defaultBackoff: BackoffOptions = { initialMs: 250, maxMs: 10_000, factor: 2 }

/**
 * The delay before retry number `attempt` (0 for the first): `min(maxMs, initialMs * factor^attempt)`, with
 * "equal jitter": half of it fixed, half random. The fixed half keeps a crowd of clients from hammering a server
 * that just restarted; the random half spreads them out.
 */
export const backoffDelay = (options: BackoffOptions, attempt: number, random: () => number): number => {
  const ceiling = Math.min(options.maxMs, options.initialMs * Math.pow(options.factor, attempt))
  return Math.round(ceiling / 2 + (ceiling / 2) * random())
}
