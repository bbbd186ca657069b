/**
 * Per-connection and per-server limits of the WebSocket route: a token bucket per connection (messages per
 * second with a burst, RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST) and the connection caps
 * (MAX_CONNECTIONS_PER_DOCUMENT / MAX_CONNECTIONS). The REST body limit is in `Middleware.ts`.
 */
import { type Clock, Context, Effect, Layer } from "effect"
import { ServerConfig } from "../Config.js"
import type { DocumentId } from "../Domain/Document.js"

/** A token bucket: `burst` tokens at most, refilled continuously at `perSecond`; one message takes one token. */
export interface TokenBucket {
  /** Takes a token if one is available (true: the message may be served). Synchronous: called for every frame. */
  readonly tryTake: () => boolean
  /** Tokens available now (fractional while refilling). */
  readonly available: () => number
}

/** A full bucket whose refills follow `Clock` (so `TestClock.adjust` drives them in tests). */
export const makeTokenBucket = (options: { readonly perSecond: number; readonly burst: number }): Effect.Effect<TokenBucket> =>
  Effect.map(Effect.clock, (clock) => new ClockBucket(clock, options.perSecond, options.burst))

/** One object per connection, its methods shared (closures would cost a context and a function each). */
class ClockBucket implements TokenBucket {
  private tokens: number
  private last: number
  constructor(private readonly clock: Clock.Clock, private readonly perSecond: number, private readonly burst: number) {
    this.tokens = burst
    this.last = clock.unsafeCurrentTimeMillis()
  }

  tryTake(): boolean {
    this.refill()
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  available(): number {
    this.refill()
    return this.tokens
  }

  private refill(): void {
    const now = this.clock.unsafeCurrentTimeMillis()
    if (now > this.last) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000)
    this.last = now
  }
}

/** Which cap refused a connection. */
export type Refusal = "server" | "document"

export interface ConnectionLimitsShape {
  /**
   * Takes one connection slot of `documentId` (and of the server), held until `release`. Returns the cap that
   * refuses it, if any; a refused connection holds nothing. Plain functions, not a scope's finalizer: each finalizer
   * cost a connection ~270 bytes of heap for as long as it was open.
   */
  readonly acquire: (documentId: DocumentId) => Refusal | undefined
  /** Gives back a slot `acquire` took. */
  readonly release: (documentId: DocumentId) => void
  /** Connections held now: in the server, and on one document. */
  readonly count: (documentId?: DocumentId) => Effect.Effect<number>
}

/** Counts WebSocket connections against MAX_CONNECTIONS and MAX_CONNECTIONS_PER_DOCUMENT. */
export class ConnectionLimits extends Context.Tag("docsync/ConnectionLimits")<ConnectionLimits, ConnectionLimitsShape>() {}

/** In-process counters: one Node process serves a document, so they are the whole truth. */
export const makeConnectionLimits = (caps: {
  readonly maxConnections: number
  readonly maxConnectionsPerDocument: number
}): ConnectionLimitsShape => {
  let total = 0
  const perDocument = new Map<DocumentId, number>()
  return {
    acquire: (documentId) => {
      if (total >= caps.maxConnections) return "server"
      const onDocument = perDocument.get(documentId) ?? 0
      if (onDocument >= caps.maxConnectionsPerDocument) return "document"
      total++
      perDocument.set(documentId, onDocument + 1)
      return undefined
    },
    release: (documentId) => {
      total--
      const left = (perDocument.get(documentId) ?? 1) - 1
      if (left === 0) perDocument.delete(documentId)
      else perDocument.set(documentId, left)
    },
    count: (documentId) => Effect.sync(() => (documentId === undefined ? total : perDocument.get(documentId) ?? 0))
  }
}

/** The caps from `ServerConfig`. */
export const layer: Layer.Layer<ConnectionLimits, never, ServerConfig> = Layer.effect(
  ConnectionLimits,
  Effect.map(ServerConfig, makeConnectionLimits)
)
