/**
 * WebSocket heartbeats for every connection of a server: one fiber pings all watched sockets each HEARTBEAT_MS
 * and terminates those that did not answer the previous ping. (A fiber per connection held about 7 KB each.)
 * Follows the Effect `Clock`, so `TestClock` drives it in tests and a host's clock when embedded.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { WebSocket } from "ws"
import { ServerConfig } from "../Config.js"

export interface HeartbeatShape {
  /**
   * Pings `ws` with the others until `unwatch`; a peer that misses a round is terminated. Plain functions, not a
   * scope's finalizer: each finalizer cost a connection ~270 bytes of heap for as long as it was open.
   */
  readonly watch: (ws: WebSocket) => void
  readonly unwatch: (ws: WebSocket) => void
  /** How many sockets are watched now. */
  readonly watching: () => number
  /** Whether the heartbeat terminated `ws` (it missed a round), for the log line that says who closed it. */
  readonly timedOut: (ws: WebSocket) => boolean
}

export class Heartbeat extends Context.Tag("docsync/Heartbeat")<Heartbeat, HeartbeatShape>() {}

export const make: Effect.Effect<HeartbeatShape, never, Scope.Scope | ServerConfig> = Effect.gen(function* () {
  const config = yield* ServerConfig
  /** The watched sockets, and whether each answered since the last ping. */
  const sockets = new Map<WebSocket, boolean>()
  const terminated = new WeakSet<WebSocket>()
  const round = Effect.sync(() => {
    for (const [ws, alive] of sockets) {
      // Reading is paused (its document's mailbox is full): its pongs cannot be read, it is not dead.
      if (ws.isPaused) continue
      if (!alive) {
        sockets.delete(ws)
        terminated.add(ws)
        ws.terminate()
        continue
      }
      sockets.set(ws, false)
      try {
        ws.ping()
      } catch {
        // Not open any more: its close ends its watch.
      }
    }
  })
  // One listener for every socket (ws calls it with the socket as `this`): a closure per socket would cost more.
  function answered(this: WebSocket): void {
    if (sockets.has(this)) sockets.set(this, true)
  }
  yield* Effect.sleep(config.heartbeatInterval).pipe(
    Effect.zipRight(round),
    Effect.forever,
    Effect.forkScoped
  )
  return {
    watch: (ws) => {
      sockets.set(ws, true)
      ws.on("pong", answered)
    },
    unwatch: (ws) => {
      sockets.delete(ws)
      ws.off("pong", answered)
    },
    watching: () => sockets.size,
    timedOut: (ws) => terminated.has(ws)
  }
})

export const layer: Layer.Layer<Heartbeat, never, ServerConfig> = Layer.scoped(Heartbeat, make)
