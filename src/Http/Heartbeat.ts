/**
 * WebSocket heartbeats for every connection of a server: one fiber pings all watched sockets each HEARTBEAT_MS
 * and terminates those that did not answer the previous ping. (A fiber per connection held about 7 KB each.)
 * Follows the Effect `Clock`, so `TestClock` drives it in tests and a host's clock when embedded.
 */
import { Context, Effect, Layer, Scope } from "effect"
import type { WebSocket } from "ws"
import { ServerConfig } from "../Config.js"

export interface HeartbeatShape {
  /** Pings `ws` with the others until the current scope closes; a peer that misses a round is terminated. */
  readonly watch: (ws: WebSocket) => Effect.Effect<void, never, Scope.Scope>
  /** Whether the heartbeat terminated `ws` (it missed a round), for the log line that says who closed it. */
  readonly timedOut: (ws: WebSocket) => boolean
}

export class Heartbeat extends Context.Tag("docsync/Heartbeat")<Heartbeat, HeartbeatShape>() {}

/** Whether a watched socket answered since the last ping. */
interface Liveness {
  alive: boolean
}

export const make: Effect.Effect<HeartbeatShape, never, Scope.Scope | ServerConfig> = Effect.gen(function* () {
  const config = yield* ServerConfig
  const sockets = new Map<WebSocket, Liveness>()
  const terminated = new WeakSet<WebSocket>()
  const round = Effect.sync(() => {
    for (const [ws, liveness] of sockets) {
      // Reading is paused (its document's mailbox is full): its pongs cannot be read, it is not dead.
      if (ws.isPaused) continue
      if (!liveness.alive) {
        sockets.delete(ws)
        terminated.add(ws)
        ws.terminate()
        continue
      }
      liveness.alive = false
      try {
        ws.ping()
      } catch {
        // Not open any more: its close ends its watch.
      }
    }
  })
  // One listener for every socket (ws calls it with the socket as `this`): a closure per socket would cost more.
  function answered(this: WebSocket): void {
    const liveness = sockets.get(this)
    if (liveness !== undefined) liveness.alive = true
  }
  yield* Effect.sleep(config.heartbeatInterval).pipe(
    Effect.zipRight(round),
    Effect.forever,
    Effect.forkScoped
  )
  return {
    // On the scope itself: `acquireRelease` would keep a copy of the fiber's FiberRefs per connection.
    // Uninterruptible like an acquire: a socket watched is always unwatched.
    watch: (ws) =>
      Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) => {
        sockets.set(ws, { alive: true })
        ws.on("pong", answered)
        return Scope.addFinalizer(scope, Effect.sync(() => sockets.delete(ws)))
      })),
    timedOut: (ws) => terminated.has(ws)
  }
})

export const layer: Layer.Layer<Heartbeat, never, ServerConfig> = Layer.scoped(Heartbeat, make)
