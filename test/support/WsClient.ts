/**
 * A real WebSocket client for integration tests: records every frame and lets a test take the next frame of a
 * type. Waiting is bounded by vitest's test timeout; nothing here sleeps.
 */
import { Effect, type Scope } from "effect"
import WebSocket from "ws"

export type Frame = Record<string, unknown> & { readonly type: string }

export interface Closed {
  readonly code: number
  readonly reason: string
}

export interface WsClient {
  readonly ws: WebSocket
  /** Every frame received so far, in order. */
  readonly frames: ReadonlyArray<Frame>
  /** The next frame of this type not taken yet (any type when omitted), waiting for it if needed. */
  readonly take: (type?: string) => Effect.Effect<Frame>
  /** Frames of a type received so far. */
  readonly of: (type: string) => ReadonlyArray<Frame>
  readonly send: (message: unknown) => Effect.Effect<void>
  readonly sendRaw: (data: string | Buffer) => Effect.Effect<void>
  /** Round trip: after it, every frame the server sent before our ping has arrived. */
  readonly barrier: Effect.Effect<void>
  /** Resolves when the socket closes. */
  readonly closed: Effect.Effect<Closed>
  readonly close: Effect.Effect<void>
}

/** Connects to `ws://…/ws/documents/:id`; the socket is closed with the scope. */
export const connect = (
  baseUrl: string,
  documentId: string,
  query: Record<string, string | number> = {},
  headers: Record<string, string> = {}
): Effect.Effect<WsClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => open(baseUrl, documentId, query, headers)),
    (client) => client.close
  )

const open = (
  baseUrl: string,
  documentId: string,
  query: Record<string, string | number>,
  headers: Record<string, string>
): Promise<WsClient> => {
  const search = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]))
  const url = `${baseUrl.replace(/^http/, "ws")}/ws/documents/${encodeURIComponent(documentId)}${search.size > 0 ? `?${search}` : ""}`
  const ws = new WebSocket(url, { headers })
  const frames: Array<Frame> = []
  const taken = new Set<number>()
  const waiters: Array<() => void> = []
  let closedWith: Closed | undefined
  const closeWaiters: Array<(closed: Closed) => void> = []

  ws.on("message", (data, isBinary) => {
    frames.push(JSON.parse(isBinary ? "{}" : data.toString()) as Frame)
    for (const wake of waiters.splice(0)) wake()
  })
  ws.on("close", (code, reason) => {
    closedWith = { code, reason: reason.toString() }
    for (const resolve of closeWaiters.splice(0)) resolve(closedWith)
    for (const wake of waiters.splice(0)) wake()
  })
  ws.on("error", () => {})

  const find = (type: string | undefined) => frames.findIndex((f, i) => !taken.has(i) && (type === undefined || f.type === type))

  const take = (type?: string): Effect.Effect<Frame> =>
    Effect.async<Frame>((resume) => {
      const attempt = () => {
        const index = find(type)
        if (index >= 0) {
          taken.add(index)
          resume(Effect.succeed(frames[index] as Frame))
        } else if (closedWith !== undefined) {
          resume(Effect.dieMessage(`socket closed (${closedWith.code}) while waiting for ${type ?? "a frame"}`))
        } else {
          waiters.push(attempt)
        }
      }
      attempt()
    })

  const send = (data: string | Buffer) =>
    Effect.async<void>((resume) => ws.send(data, (error) => resume(error ? Effect.die(error) : Effect.void)))

  const client: WsClient = {
    ws,
    frames,
    take,
    of: (type) => frames.filter((f) => f.type === type),
    send: (message) => send(JSON.stringify(message)),
    sendRaw: send,
    barrier: Effect.zipRight(send(JSON.stringify({ type: "ping" })), take("pong")).pipe(Effect.asVoid),
    closed: Effect.async<Closed>((resume) => {
      if (closedWith !== undefined) return resume(Effect.succeed(closedWith))
      closeWaiters.push((closed) => resume(Effect.succeed(closed)))
    }),
    close: Effect.async<void>((resume) => {
      if (ws.readyState === WebSocket.CLOSED) return resume(Effect.void)
      ws.once("close", () => resume(Effect.void))
      ws.close(1000)
    })
  }
  return new Promise((resolve) => {
    ws.once("open", () => resolve(client))
    ws.once("close", () => resolve(client))
  })
}
