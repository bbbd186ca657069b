/**
 * The WebSocket route `GET /ws/documents/:id` (protocol section 2): one connection per socket, joined to its
 * document's actor through the DocumentRegistry.
 *
 * Admission, after the upgrade and before the join: the Authorizer authenticates the join (else close 4401),
 * authorizes `read` on the document (else 4403) and says whether the connection may `write` (else its `update`
 * and `snapshot` messages get `forbidden`); then the connection caps are checked (else 4429). An open socket is
 * closed with 4401 when its credentials expire.
 *
 * Frames are served synchronously in the socket's message callback, in arrival order: each takes a token from
 * the connection's bucket (else `rate_limited`, not served), is decoded, and its command goes straight into the
 * document's mailbox (see `SocketLifecycle.submit` for a full one). The actor writes outbound frames straight to the
 * socket, bounded by MAX_BUFFERED_BYTES, corked so that a batch costs one socket write per client. Pings are
 * the server-wide `Heartbeat`'s.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Socket from "@effect/platform/Socket"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Clock, Context, DefaultServices, Deferred, Duration, Effect, Either, Exit, Fiber, FiberId, FiberRef, FiberSet, HashMap, Inspectable, Layer, LogLevel, Option, Scope } from "effect"
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import { ServerConfig, type ServerConfigShape } from "../Config.js"
import * as CloseCodes from "../Domain/CloseCodes.js"
import type { DocumentId } from "../Domain/Document.js"
import * as Protocol from "../Domain/Protocol.js"
import * as DocumentActor from "../Document/DocumentActor.js"
import { DocumentRegistry, type Membership, type Session } from "../Document/DocumentRegistry.js"
import * as Metrics from "../Document/Metrics.js"
import { Authorizer, type AuthorizerShape, type Credentials, type Principal, socketCredentials } from "./Authorizer.js"
import { Heartbeat } from "./Heartbeat.js"
import { ConnectionLimits, makeTokenBucket, type TokenBucket } from "./Limits.js"
import { pathOf } from "./Middleware.js"

export const path = "/ws/documents/:id"

/**
 * How the standalone server hands this route's upgrades over before the HTTP pipeline sees them (see `route`):
 * `Server.ts` provides it; a host that mounts docsync on its own server does not, and its joins go through the
 * router.
 */
export class DirectUpgrades extends Context.Tag("docsync/DirectUpgrades")<DirectUpgrades, {
  /** Sets (or with undefined clears) the handler; it returns false for a request it leaves to the router. */
  readonly set: (handler: UpgradeHandler | undefined) => void
  /** The handler set, if any (the server asks on each upgrade). */
  readonly get: () => UpgradeHandler | undefined
}>() {
  /** A slot for one handler. */
  static readonly layer = Layer.sync(DirectUpgrades, () => {
    let current: UpgradeHandler | undefined
    return {
      set: (handler) => {
        current = handler
      },
      get: () => current
    }
  })
}

/** Takes an HTTP upgrade request (`http.Server`'s "upgrade" event) or returns false to leave it to the router. */
export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean

/**
 * The route, to merge beside the HttpApi on the HttpLayerRouter.
 *
 * On the standalone server (`DirectUpgrades` provided) a join never enters the HTTP pipeline: the Node server's
 * "upgrade" event comes straight here, `ws` completes the handshake, and the connection is one object
 * (`SocketLifecycle`) holding its membership of the document, with a fiber only while it is admitted and joined
 * and while it is ended (and a Scope only for an expiry timer, when its credentials expire). An
 * idle connection then costs little more than its `ws` objects (the pipeline kept a fiber per connection, with
 * its stack through the platform's `runRaw`, and the finished request's fiber: ~35 KB of heap together).
 *
 * Mounted on a host's router (`DocSync.mount`) the route serves joins itself: each connection is then one fiber,
 * the one running the platform's `runRaw`, which holds the socket open; the request's own fiber ends once the
 * socket is upgraded.
 *
 * Either way the connection is the same (`SocketLifecycle`). This Layer is released after the server has stopped
 * accepting and before it cuts the sockets still open. Its finalizer ends every connection as the protocol asks
 * (what it submitted is answered, then close 1001) before the FiberSet interrupts their fibers: interrupting first
 * would let `runRaw` close the socket with 1005.
 */
export const route = Layer.unwrapScoped(
  Effect.gen(function* () {
    const fibers = yield* FiberSet.make<void>()
    const connections: Connections = { run: yield* FiberSet.runtime(fibers)<never>(), live: new Set(), closing: false }
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        connections.closing = true
        return Effect.forEach(connections.live, (live) => live.atShutdown(), { concurrency: "unbounded", discard: true })
      })
    )
    const upgrades = yield* Effect.serviceOption(DirectUpgrades)
    if (Option.isSome(upgrades)) {
      // The standalone server builds this Layer with the services below it (a mount provides them per request).
      const services = yield* environment
      // No client tracking: connections are the route's (`connections.live`); ws's own Set would hold each one again.
      const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: services.config.maxMessageBytes })
      upgrades.value.set(directUpgrade(services, connections, wss))
      yield* Effect.addFinalizer(() => Effect.sync(() => upgrades.value.set(undefined)))
    }
    return HttpLayerRouter.add("GET", path, (request) => Effect.flatMap(environment, (services) => handle(request, services, connections)))
  })
)

/** @internal The route's connections: how to fork one, and how to end each one still open. Exported for tests. */
export interface Connections {
  readonly run: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  /** The connections open now, each with what the route's finalizer runs for it at shutdown. */
  readonly live: Set<{ readonly atShutdown: () => Effect.Effect<void> }>
  /** Set when the route's finalizer starts: a connection made from then on is closed with 1001, not admitted. */
  closing: boolean
}

/** @internal What a connection needs of the server. Exported for tests. */
export interface Services {
  readonly config: ServerConfigShape
  readonly clock: Clock.Clock
  readonly registry: Context.Tag.Service<DocumentRegistry>
  readonly authorizer: AuthorizerShape
  readonly limits: Context.Tag.Service<ConnectionLimits>
  readonly heartbeat: Context.Tag.Service<Heartbeat>
}

/** @internal Exported for tests. */
export const environment = Effect.all({
  config: ServerConfig,
  clock: Effect.clock,
  registry: DocumentRegistry,
  authorizer: Authorizer,
  limits: ConnectionLimits,
  heartbeat: Heartbeat
})

/** Frames received before the join completes beyond this pause reading from the socket until the join. */
const PAUSE_AT = 1024

/** The join as the router serves it (a host's server): the platform upgrades, and `runRaw` holds the socket. */
const handle = (request: HttpServerRequest.HttpServerRequest, services: Services, connections: Connections) =>
  Effect.gen(function* () {
    const params = yield* HttpRouter.params
    const query = parseQuery(request.url)
    if (typeof query === "string") {
      return yield* HttpServerResponse.json({ message: query }, { status: 400 })
    }
    // ws answers a bad handshake itself and never reports back: the platform's upgrade would wait forever, and
    // the connection's fiber with it (holding up shutdown). Refused here instead, as ws would.
    const badHandshake = handshakeProblem(request.headers)
    if (badHandshake !== undefined) {
      return yield* HttpServerResponse.json({ message: badHandshake }, { status: 400 })
    }
    const documentId = (params.id ?? "") as DocumentId
    const netSocket = NodeHttpServerRequest.toIncomingMessage(request).socket
    // Gone already: ws would drop it without a word, and the upgrade wait forever, as above. (499: client closed.)
    if (netSocket.destroyed || !netSocket.readable || !netSocket.writable) return HttpServerResponse.empty({ status: 499 })
    const socket = yield* request.upgrade
    const opened = yield* Deferred.make<void>()
    const connection = new SocketLifecycle(services, connections, documentId, query, socketCredentials(request), false)
    const lifetime = connections.run(
      socket.runRaw((data) => connection.onFrame(data), {
        onOpen: Effect.suspend(() => {
          const ws = rawWebSocket(netSocket, services.config.maxMessageBytes)
          // From here on frames come straight from ws (`setup` replaces runRaw's listener, which builds a
          // MessageEvent and checks for a Blob per frame, and served any frame before this).
          // ws closes the socket itself on a protocol error (a frame over MAX_MESSAGE_BYTES: 1009): the server's close.
          ws.once("error", (error: Error) => connection.onError(error))
          return Effect.zipRight(Deferred.succeed(opened, undefined), connection.setup(ws))
        })
      }).pipe(
        Effect.onExit((exit) => connection.ended(clientCloseCode(exit))),
        // How the socket ended is logged by `ended` ("client left"); a socket error ends runRaw as it should.
        Effect.catchAllCause((cause) =>
          Option.exists(Cause.failureOption(cause), Socket.isSocketError) ? Effect.void : logDefect(cause, documentId)
        )
      )
    )
    // This fiber ends once the socket is upgraded (ws has written the 101 itself; the response below only names it
    // for the request log), or once the connection ended before that (a defect, logged by the connection). If it
    // is interrupted before the upgrade (server stopping), the connection goes with it; after, the connection is
    // the route's to end.
    yield* Deferred.await(opened).pipe(
      Effect.raceFirst(Fiber.await(lifetime)),
      Effect.onInterrupt(() =>
        Effect.flatMap(Deferred.isDone(opened), (done) => (done ? Effect.void : Fiber.interruptFork(lifetime)))
      )
    )
    return HttpServerResponse.empty({ status: 101 })
  })

/** The route's path, matched on a raw request URL: the document id, or undefined for another path. */
const DIRECT_PATH = /^\/ws\/documents\/([^/?#]+)(?:\?[^#]*)?$/

/**
 * The join as the standalone server serves it: straight from the Node server's "upgrade" event, before the HTTP
 * pipeline. Answers what the router would (400 for a bad query or handshake, one request log line) and leaves
 * every other path and method to the router.
 */
const directUpgrade = (services: Services, connections: Connections, wss: WebSocketServer): UpgradeHandler =>
(request, socket, head) => {
  const url = request.url ?? ""
  const match = request.method === "GET" ? DIRECT_PATH.exec(url) : null
  if (match === null) return false
  let documentId: DocumentId
  try {
    documentId = decodeURIComponent(match[1] as string) as DocumentId
  } catch {
    return false
  }
  const started = services.clock.unsafeCurrentTimeMillis()
  /** The request's log line, timed when it is made. */
  const requestLine = (status: number) => `GET ${pathOf(url)} ${status} ${services.clock.unsafeCurrentTimeMillis() - started}ms`
  const headers = request.headers as Readonly<Record<string, string | undefined>>
  const query = parseQuery(url)
  const problem = typeof query === "string" ? query : handshakeProblem(headers)
  if (problem !== undefined) {
    // As the router path answers (ws would answer a bad handshake itself, without a body).
    const body = JSON.stringify({ message: problem })
    socket.end(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Connection: close\r\n\r\n${body}`
    )
    connections.run(Effect.log(requestLine(400)))
    return true
  }
  if (socket.destroyed || !socket.readable || !socket.writable) {
    socket.destroy()
    return true
  }
  const credentials = socketCredentials({ url, headers: Headers.fromInput(request.headers) })
  wss.handleUpgrade(request, socket, head, (ws) => {
    const connection = new SocketLifecycle(services, connections, documentId, query as Query, credentials, true)
    connection.attach(ws)
    connection.runLogged(connection.direct(ws, requestLine(101)))
  })
  return true
}

/**
 * A log line with annotations, handed to the fiber's loggers as `Effect.log` hands it, with the annotations added
 * to the fiber's for this line only. (`Effect.annotateLogs` scopes a FiberRef with `acquireUseRelease`: ~14 KB
 * allocated per line, even when the minimum level filters the line out, and a connection logs at each join and
 * leave.)
 */
const logAnnotated = (
  level: LogLevel.LogLevel,
  annotations: Record<string, unknown>,
  ...message: ReadonlyArray<unknown>
): Effect.Effect<void> =>
  Effect.withFiberRuntime<void>((fiber) => {
    if (LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), level)) return Effect.void
    let merged = fiber.getFiberRef(FiberRef.currentLogAnnotations)
    for (const key of Object.keys(annotations)) merged = HashMap.set(merged, key, annotations[key])
    const options = {
      fiberId: fiber.id(),
      logLevel: level,
      message,
      cause: Cause.empty,
      context: fiber.getFiberRefs(),
      spans: fiber.getFiberRef(FiberRef.currentLogSpan),
      annotations: merged,
      date: new Date(Context.get(fiber.getFiberRef(DefaultServices.currentServices), Clock.Clock).unsafeCurrentTimeMillis())
    }
    // As Effect.log does: loggers redact values (Redacted, Headers) in this context.
    Inspectable.withRedactableContext(options.context, () => {
      for (const logger of fiber.getFiberRef(FiberRef.currentLoggers)) logger.log(options)
    })
    return Effect.void
  })

/** Logs what ended a connection's fiber unexpectedly (a bug); interruption is how a fiber is stopped, not a bug. */
const logDefect = (cause: Cause.Cause<unknown>, documentId: DocumentId): Effect.Effect<void> =>
  Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("connection failed", cause).pipe(Effect.annotateLogs({ documentId }))

/** How long shutdown waits for a client to answer the server's close frame. */
const CLOSE_WAIT = Duration.seconds(2)

/** Waits until the socket has closed, at most CLOSE_WAIT. */
const closedOrTimeout = (ws: WebSocket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (ws.readyState === ws.CLOSED) return resume(Effect.void)
    const closed = () => resume(Effect.void)
    ws.once("close", closed)
    return Effect.sync(() => {
      ws.off("close", closed)
    })
  }).pipe(Effect.timeoutOption(CLOSE_WAIT), Effect.asVoid)

/** Where a socket keeps its connection, for the socket listeners every connection shares. */
const LIFECYCLE = Symbol("docsync/SocketLifecycle")

type Attached = WebSocket & { [LIFECYCLE]?: SocketLifecycle }

/** The socket listeners, one of each for all connections (ws calls them with the socket as `this`). */
function onMessage(this: Attached, data: Buffer, isBinary: boolean): void {
  this[LIFECYCLE]?.onFrame(isBinary ? data : data.toString())
}

function onDirectError(this: Attached, error: Error): void {
  this[LIFECYCLE]?.directError(error)
}

function onDirectClose(this: Attached, code: number): void {
  this[LIFECYCLE]?.directClose(code)
}

/**
 * One connection: a single object whose state is its fields and whose behaviour is its (shared) methods, so that
 * an idle connection costs little more than its `ws` objects. (As closures, the connection cost ~4 KB of heap
 * more: a function and a context per callback, Effect values kept for its end.)
 *
 * Frames are served synchronously in the socket's message callback, in arrival order: decoded, answered or turned
 * into a command that goes straight into the document's mailbox. No fiber or queue per frame. Until the join
 * completes they wait in `early` (reading paused past PAUSE_AT). When the mailbox is full, commands wait in order
 * in `overflow`, reading pauses, and one fiber offers them as room appears (waiting like any sender), then
 * resumes reading.
 *
 * @internal Exported for tests.
 */
export class SocketLifecycle implements FrameLimit {
  /** The connection's place in the document: left by `finish`, whichever way the connection ends. */
  private membership: Membership | undefined = undefined
  /** The expiry timer's scope, made only for a principal whose credentials expire; closed by `finish`. */
  private scope: Scope.CloseableScope | undefined = undefined
  /** Whether the connection holds a slot of the connection caps, and the socket the heartbeat watches: released by
   * `finish` too, the watch before the leave and the slot after it (plain fields, as the membership is: a scope
   * and its finalizers cost ~1 KB per connection). */
  private counted = false
  private watched: WebSocket | undefined = undefined
  /** The fiber a full mailbox needs (see `submit`), while it runs. */
  private overflowFiber: Fiber.RuntimeFiber<void> | undefined = undefined
  private connection: WsConnection | undefined = undefined
  private annotations: Record<string, unknown>
  private joined = false
  private finished: boolean
  /** Frames received before the join completes; undefined once they are served. */
  private early: Array<string | Uint8Array> | undefined = []
  private raw: WebSocket | undefined = undefined
  private wsError: Error | undefined = undefined
  /** Set by the first `finish` (a Deferred made on first use: `Effect.cached` cost about 3 KB per connection). */
  private finishing: Deferred.Deferred<void> | undefined = undefined
  /** Handed to admission once, then let go: they hold the token and a copy of the request's headers. */
  private credentials: Credentials | undefined
  // Once joined: the document's session and what the connection may send (FrameLimit).
  private session: Session | undefined = undefined
  /** Set at admission, before any frame is served. */
  bucket!: TokenBucket
  writeDenied: Option.Option<string> = Option.none()
  /** Commands waiting for room in the mailbox, in order, while `draining`. */
  private overflow: Array<DocumentActor.Command> | undefined = undefined
  private draining = false
  // The standalone server's socket end (see `direct`): ready once admission and join are done.
  private ready = false
  private closed: number | "normal" | undefined = undefined
  private endedOnce = false

  constructor(
    private readonly services: Services,
    private readonly connections: Connections,
    private readonly documentId: DocumentId,
    private readonly query: Query,
    credentials: Credentials,
    /**
     * At shutdown, after closing with 1001, wait (at most CLOSE_WAIT) for the client's close frame: needed where the
     * server cuts the sockets still open right after this route is released (a socket cut with unread frames in
     * hand is reset, which can lose the close frame on its way to the client). runRaw's fiber does its own waiting.
     */
    private readonly awaitClose: boolean
  ) {
    this.credentials = credentials
    this.finished = connections.closing
    this.annotations = { documentId }
    connections.live.add(this)
  }

  onFrame(data: string | Uint8Array): void {
    if (this.finished) return
    const early = this.early
    if (early === undefined) return this.serve(data)
    early.push(data)
    if (early.length >= PAUSE_AT) this.raw?.pause()
  }

  onError(error: Error): void {
    this.wsError ??= error
  }

  /**
   * Ends the connection, once: a frame that arrives from now on could be stored but never acked, so it is not
   * served (the client resends it after reconnecting); commands waiting in the overflow list go into the mailbox
   * before `Leave` does; then the expiry timer stops, the connection leaves the document, and the socket is closed
   * with 1001 (a no-op if it is closed).
   * At shutdown both the route's finalizer and the connection's own end run it: the second waits for the first.
   */
  finish(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.finishing !== undefined) return Deferred.await(this.finishing)
      const done = Deferred.unsafeMake<void>(FiberId.none)
      this.finishing = done
      this.finished = true
      return (this.overflowFiber === undefined ? Effect.void : Fiber.await(this.overflowFiber)).pipe(
        // No more pings: the leave below may wait (a full mailbox), and a socket already closed must not be
        // judged dead by the heartbeat meanwhile (its "client left" line would say the server closed it).
        Effect.zipRight(Effect.sync(() => this.unwatch())),
        Effect.zipRight(this.scope === undefined ? Effect.void : Scope.close(this.scope, Exit.void)),
        Effect.zipRight(this.leave()),
        Effect.ensuring(Effect.sync(() => {
          this.unwatch()
          this.releaseSlot()
        })),
        Effect.zipRight(Effect.sync(() => this.closeGoingAway())),
        Effect.ensuring(Deferred.done(done, Exit.void))
      )
    })
  }

  /** Keeps the connection's membership for `finish`, or leaves at once if `finish` has begun. */
  keep(membership: Membership): Effect.Effect<void> {
    if (this.finished) return membership.leave()
    this.membership = membership
    return Effect.void
  }

  /** Leaves the document, once (the join itself leaves if it completes after `finish` came here). */
  private leave(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const membership = this.membership
      this.membership = undefined
      return membership === undefined ? Effect.void : membership.leave()
    })
  }

  /** Stops the heartbeat's watch, once. */
  private unwatch(): void {
    if (this.watched !== undefined) this.services.heartbeat.unwatch(this.watched)
    this.watched = undefined
  }

  /** Gives back the connection's slot of the caps, once: after its leave. */
  private releaseSlot(): void {
    if (this.counted) this.services.limits.release(this.documentId)
    this.counted = false
  }

  /** Closes with 1001 (a no-op on a closed socket); before admission made the connection, the socket itself. */
  private closeGoingAway(): void {
    const reason = CloseCodes.reason[CloseCodes.GoingAway] ?? "going away"
    if (this.connection !== undefined) return this.connection.close(CloseCodes.GoingAway, reason)
    const raw = this.raw
    if (raw !== undefined && (raw.readyState === raw.OPEN || raw.readyState === raw.CONNECTING)) raw.close(CloseCodes.GoingAway, reason)
  }

  /** What the route's finalizer runs for this connection if it is still open at shutdown. */
  atShutdown(): Effect.Effect<void> {
    if (!this.awaitClose) return this.finish()
    return Effect.zipRight(this.finish(), Effect.suspend(() => (this.raw === undefined ? Effect.void : closedOrTimeout(this.raw))))
  }

  /** Admission and join, once the socket is open (frames meanwhile wait in `early`). */
  setup(ws: WebSocket): Effect.Effect<void> {
    const self = this
    return Effect.gen(function* () {
      const { authorizer, config, heartbeat, limits, registry } = self.services
      const documentId = self.documentId
      self.raw = ws
      ;(ws as Attached)[LIFECYCLE] = self
      // Frames that came before this (the upgrade's own packet may carry some) may already fill `early`.
      if ((self.early?.length ?? 0) >= PAUSE_AT) ws.pause()
      ws.removeAllListeners("message")
      ws.on("message", onMessage)
      // The server began shutting down before this connection was made: it is not admitted. (Then `finish` ran before
      // anything was acquired: nothing may be acquired before this line.)
      if (self.finished) return self.closeGoingAway()
      const open = new WsConnection(ws, self.query.actorId, config.maxBufferedBytes)
      self.connection = open
      const admission = yield* admit(authorizer, self.credentials as Credentials, documentId)
      // Not needed past admission: not kept for the socket's life.
      self.credentials = undefined
      if (Either.isLeft(admission)) {
        yield* logAnnotated(LogLevel.Info, { documentId, closeCode: admission.left.code, reason: admission.left.message }, "client refused")
        return open.close(admission.left.code, closeReason(admission.left.message))
      }
      // Shutdown began meanwhile: `finish` has run; do not load the document now.
      if (self.finished) return self.closeGoingAway()
      const { principal, writeDenied } = admission.right
      const refusal = limits.acquire(documentId)
      if (refusal === undefined) self.counted = true
      else {
        const message = refusal === "server"
          ? `too many connections: the server holds MAX_CONNECTIONS (${config.maxConnections}); retry later`
          : `too many connections: the document holds MAX_CONNECTIONS_PER_DOCUMENT (${config.maxConnectionsPerDocument}); retry later`
        yield* logAnnotated(LogLevel.Warning, { documentId, closeCode: CloseCodes.TooManyConnections, reason: message }, "client refused")
        return open.close(CloseCodes.TooManyConnections, closeReason(message))
      }
      self.bucket = yield* makeTokenBucket({ perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst })
      self.writeDenied = writeDenied
      // Kept before `enter` returns (an interruption after would drop it): left by `finish`, unless it began during
      // the join, then here, now (it may be past its leave already).
      const [outcome, session] = yield* registry.enter(documentId, open, self.query.since, (membership) => self.keep(membership))
      self.annotations = { documentId, clientId: open.clientId, subject: principal.subject }
      switch (outcome._tag) {
        case "NotFound":
          yield* logAnnotated(LogLevel.Info, { ...self.annotations, closeCode: CloseCodes.NotFound, reason: "document not found" }, "client refused")
          return open.close(CloseCodes.NotFound, "document not found")
        case "Deleted":
          yield* logAnnotated(LogLevel.Info, { ...self.annotations, closeCode: CloseCodes.Gone, reason: "document deleted" }, "client refused")
          return open.close(CloseCodes.Gone, "document deleted")
        case "Failed":
          yield* logAnnotated(LogLevel.Warning, { ...self.annotations, closeCode: CloseCodes.InternalError, reason: outcome.message }, "join failed")
          return open.close(CloseCodes.InternalError, "internal error; reconnect later")
        case "Joined":
          break
      }
      // Shutdown began during the join: `finish` has run, and frames are no longer served.
      if (self.finished) return self.closeGoingAway()
      self.joined = true
      // Watched before anything that may yield: `finish` (at shutdown) could run meanwhile and not see it.
      heartbeat.watch(ws)
      self.watched = ws
      yield* logAnnotated(
        LogLevel.Info,
        { ...self.annotations, version: outcome.version, since: self.query.since ?? "none" },
        "client joined"
      )
      if (Option.isSome(principal.expiresAt)) {
        const scope = yield* Scope.make()
        self.scope = scope
        yield* closeAtExpiry(principal.expiresAt.value, open).pipe(Effect.forkIn(scope))
        // `finish` ran meanwhile (during the log line above) and may not have seen the scope.
        if (self.finished) yield* Scope.close(scope, Exit.void)
      }
      self.session = session
      // Resumed before the replay: if the replay fills the mailbox, `submit` pauses reading again.
      const early = self.early ?? []
      if (early.length >= PAUSE_AT) ws.resume()
      // From here on frames are served as they come; those that came before, first (nothing comes in between:
      // this is synchronous).
      self.early = undefined
      for (const frame of early) self.serve(frame)
    })
  }

  /** Serves one frame (see `frameCommand`). */
  private serve(frame: string | Uint8Array): void {
    const connection = this.connection as WsConnection
    const session = this.session as Session
    const command = serveSafely(
      () => frameCommand(frame, connection, session, this.services.config, this, this.services.clock.unsafeCurrentTimeNanos()),
      connection
    )
    if (command !== undefined) this.submit(command)
  }

  /**
   * Puts a command into the document's mailbox without a fiber while the mailbox has room. When it is full, the
   * command and every later one wait in order in `overflow`, reading from the socket pauses, and one fiber offers
   * them as room appears (waiting like any sender), then resumes reading.
   */
  private submit(command: DocumentActor.Command): void {
    if (!this.draining && (this.session as Session).offer(command)) return
    const overflow = (this.overflow ??= [])
    overflow.push(command)
    if (this.draining) return
    this.draining = true
    this.raw?.pause()
    this.overflowFiber = this.connections.run(this.drain())
  }

  private drain(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const overflow = this.overflow ?? []
      if (overflow.length === 0) {
        this.draining = false
        this.raw?.resume()
        return Effect.void
      }
      return (this.session as Session).submitAll(overflow.splice(0, overflow.length)).pipe(
        Effect.zipRight(Effect.suspend(() => this.drain()))
      )
    })
  }

  ended(clientCode: number | "normal"): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.connections.live.delete(this)
      // Read before `finish`, which closes with 1001 (a no-op on the socket if the client closed it).
      const serverCode = this.connection?.closeCode()
      return Effect.zipRight(
        this.finish(),
        Effect.suspend(() => {
          if (!this.joined) return Effect.void
          const raw = this.raw
          const wsError = this.wsError
          return logAnnotated(LogLevel.Info, {
            ...this.annotations,
            ...(serverCode !== undefined
              ? { closedBy: "server", closeCode: serverCode }
              : wsError !== undefined
              ? { closedBy: "server", closeCode: statusCodeOf(wsError) ?? "protocol error", reason: wsError.message }
              : raw !== undefined && this.services.heartbeat.timedOut(raw)
              ? { closedBy: "server", closeCode: "no pong (heartbeat)" }
              : { closedBy: "client", closeCode: clientCode })
          }, "client left")
        })
      )
    })
  }

  // The standalone server's path (see `directUpgrade`): the socket's listeners from the upgrade on, and the fiber
  // that admits and joins.

  /** Listens to a socket just upgraded: frames wait in `early`; its close or a protocol error ends it. */
  attach(ws: WebSocket): void {
    this.raw = ws
    ;(ws as Attached)[LIFECYCLE] = this
    ws.on("message", onMessage)
    ws.on("error", onDirectError)
    // Listened for at once: a client may close before the connection is made. ("close" is emitted once.)
    ws.on("close", onDirectClose)
  }

  /** Runs an effect of this connection in the route, logging a defect. */
  runLogged(effect: Effect.Effect<void>): void {
    this.connections.run(Effect.catchAllCause(effect, (cause) => logDefect(cause, this.documentId)))
  }

  /** Logs the upgrade, then admits and joins; the socket's end waits for that, as runRaw's fiber does on the router. */
  direct(ws: WebSocket, upgraded: string): Effect.Effect<void> {
    return Effect.zipRight(Effect.log(upgraded), this.setup(ws)).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          // A defect in admission or join (an Authorizer that dies, say): close, so that the client reconnects
          // and the close ends the connection (its membership, its count), as runRaw's end does on the router.
          if (Exit.isFailure(exit) && !Exit.isInterrupted(exit) && ws.readyState === ws.OPEN) {
            ws.close(CloseCodes.InternalError, "internal error; reconnect later")
          }
          this.ready = true
          this.endWhenReady()
        })
      )
    )
  }

  /** A protocol error: ws closes the socket itself, and that ends the connection, as it ends runRaw on the router. */
  directError(error: Error): void {
    this.onError(error)
    this.closed ??= "normal"
    this.endWhenReady()
  }

  directClose(code: number): void {
    this.closed ??= code === 1000 || code === 1006 ? "normal" : code
    this.endWhenReady()
  }

  private endWhenReady(): void {
    if (this.endedOnce || !this.ready || this.closed === undefined) return
    this.endedOnce = true
    this.runLogged(this.ended(this.closed))
  }
}

/** Protocol tokens (RFC 7230) separated by commas, as ws accepts in Sec-WebSocket-Protocol. */
const SUBPROTOCOLS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*$/

/**
 * What ws would refuse in a handshake (its `handleUpgrade` checks, in its order), as a message for a 400; undefined
 * for a handshake it accepts. ws's own refusal never reaches the platform, whose upgrade then waits forever.
 */
export const handshakeProblem = (headers: Readonly<Record<string, string | undefined>>): string | undefined => {
  if (headers.upgrade?.toLowerCase() !== "websocket") return "not a WebSocket handshake: Upgrade must be websocket"
  if (!/^[+/0-9A-Za-z]{22}==$/.test(headers["sec-websocket-key"] ?? "")) {
    return "missing or invalid Sec-WebSocket-Key header"
  }
  const version = Number(headers["sec-websocket-version"])
  if (version !== 13 && version !== 8) return "missing or invalid Sec-WebSocket-Version header (13 is supported, and 8)"
  const protocols = headers["sec-websocket-protocol"]
  if (protocols !== undefined) {
    const names = protocols.split(",").map((name) => name.trim())
    if (!SUBPROTOCOLS.test(protocols.trim()) || new Set(names).size !== names.length) {
      return "invalid Sec-WebSocket-Protocol header"
    }
  }
  return undefined
}

interface Query {
  readonly since: number | undefined
  readonly actorId: string | undefined
}

/** The query of a join, or a message saying what is wrong with it. */
const parseQuery = (url: string): Query | string => {
  const search = new URL(url, "http://localhost").searchParams
  const sinceText = search.get("since")
  let since: number | undefined
  if (sinceText !== null) {
    since = Number(sinceText)
    if (!/^\d+$/.test(sinceText) || !Number.isSafeInteger(since)) return "since must be a non-negative integer"
  }
  const actorId = search.get("actorId") ?? undefined
  if (actorId !== undefined && (actorId.length < 1 || actorId.length > 128)) {
    return "actorId must be 1..128 characters"
  }
  return { since, actorId }
}

interface SocketConnection extends DocumentActor.Connection {
  /** The code the server closed with, if it did. */
  readonly closeCode: () => number | undefined
}

/** @internal Exported for tests. */
export const makeConnection = (ws: WebSocket, actorId: string | undefined, config: ServerConfigShape): SocketConnection =>
  new WsConnection(ws, actorId, config.maxBufferedBytes)

/** A connection's socket as the actor sees it: one object per connection, its methods shared. */
class WsConnection implements SocketConnection {
  readonly clientId = crypto.randomUUID()
  readonly actorId: string
  private readonly socket: Duplex
  private closedWith: number | undefined = undefined
  private corked = false
  constructor(private readonly ws: WebSocket, actorId: string | undefined, private readonly maxBufferedBytes: number) {
    this.actorId = actorId ?? this.clientId
    this.socket = (ws as unknown as { readonly _socket: Duplex })._socket
  }

  send(frame: DocumentActor.Frame): void {
    const { socket, ws } = this
    if (this.closedWith !== undefined || ws.readyState !== ws.OPEN) return
    // Unflushed bytes past the bound: close rather than grow without limit or skip a frame (a gap).
    if (ws.bufferedAmount + DocumentActor.frameLength(frame) > this.maxBufferedBytes) {
      Metrics.add(Metrics.slowConsumerCloses, 1)
      return this.close(CloseCodes.SlowConsumer, CloseCodes.reason[CloseCodes.SlowConsumer] ?? "slow consumer")
    }
    if (!this.corked) {
      this.corked = true
      socket.cork()
      uncorkSoon(this)
    }
    // With an extension (compression, which this server never offers) frames go through ws.
    if (ws.extensions !== "") {
      if (typeof frame === "string") ws.send(frame)
      else ws.send(frame instanceof Uint8Array ? frame : Buffer.concat(frame), { binary: false })
      return
    }
    // Otherwise frames are written to the socket whole, as ws writes them (safe beside ws's own writes: without
    // an extension ws writes each frame whole and at once, so nothing comes between these writes). A frame for
    // many connections (the same bytes, sent to every member in turn) is framed once: ws would build a header
    // and write twice per socket, which was most of its cost under fanout.
    if (typeof frame === "string") socket.write(textFrame(frame))
    else if (frame instanceof Uint8Array) socket.write(framedOnce(frame))
    else {
      // One text frame written from its parts as they are: the header, then the parts, with no copy into one
      // buffer (a state of 10,000 updates is ~2 MB, and a fresh buffer that size costs several ms in page faults).
      socket.write(textFrameHeader(DocumentActor.frameLength(frame)))
      for (const part of frame) socket.write(part)
    }
  }

  close(code: number, reason: string): void {
    if (this.closedWith !== undefined) return
    this.closedWith = code
    const ws = this.ws
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason)
  }

  closeCode(): number | undefined {
    return this.closedWith
  }

  uncork(): void {
    this.corked = false
    this.socket.uncork()
  }
}

/** The header of an unmasked, unfragmented text frame (RFC 6455, 5.2) of `length` bytes, as a server sends it. */
export const textFrameHeader = (length: number): Buffer => {
  const header = Buffer.allocUnsafe(headerLength(length))
  writeHeader(header, length)
  return header
}

const headerLength = (length: number): number => (length < 126 ? 2 : length < 65_536 ? 4 : 10)

/** Writes a text frame's header for `length` bytes at the start of `target`; returns the header's length. */
const writeHeader = (target: Buffer, length: number): number => {
  target[0] = 0x81
  if (length < 126) {
    target[1] = length
    return 2
  }
  if (length < 65_536) {
    target[1] = 126
    target.writeUInt16BE(length, 2)
    return 4
  }
  target[1] = 127
  target.writeUInt32BE(Math.floor(length / 2 ** 32), 2)
  target.writeUInt32BE(length >>> 0, 6)
  return 10
}

/** A whole text frame (header and payload, one buffer) of a string or of UTF-8 bytes. */
export const textFrame = (payload: string | Uint8Array): Buffer => {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length
  const frame = Buffer.allocUnsafe(headerLength(length) + length)
  const at = writeHeader(frame, length)
  if (typeof payload === "string") frame.write(payload, at)
  else frame.set(payload, at)
  return frame
}

/**
 * `textFrame`, remembering the last payload framed: a broadcast sends one payload to every member in turn, so it
 * is framed once. (The last payload and its frame are kept until the next one.)
 */
const framedOnce = (payload: Uint8Array): Buffer => {
  if (payload !== lastPayload) {
    lastFramed = textFrame(payload)
    lastPayload = payload
  }
  return lastFramed as Buffer
}

let lastPayload: Uint8Array | undefined
let lastFramed: Buffer | undefined

/**
 * Sockets written to in this turn of the event loop, uncorked together once the turn's synchronous work and
 * microtasks (the actor's batch) are done: every frame a client gets from one batch goes out in one write.
 */
const corkedSockets: Array<WsConnection> = []

const uncorkSoon = (connection: WsConnection): void => {
  corkedSockets.push(connection)
  if (corkedSockets.length === 1) process.nextTick(uncorkAll)
}

const uncorkAll = (): void => {
  const connections = corkedSockets.splice(0, corkedSockets.length)
  for (const connection of connections) connection.uncork()
}

/** What a connection may send: its rate, and whether it may write (None) or why not (Some). */
interface FrameLimit {
  readonly bucket: TokenBucket
  readonly writeDenied: Option.Option<string>
}

/**
 * Serves one frame: answers it directly (errors, pong) or returns the command to submit to the document.
 * Synchronous: it runs for every frame.
 */
const frameCommand = (
  frame: string | Uint8Array,
  connection: SocketConnection,
  session: Session,
  config: ServerConfigShape,
  limit: FrameLimit,
  receivedAt: bigint
): DocumentActor.Command | undefined => {
  const reply = (message: Protocol.ServerMessage) => {
    if (message.type === "error") Metrics.add(Metrics.errors, 1, Metrics.tags({ code: message.code }))
    connection.send(JSON.stringify(message))
  }
  session.touch()
  if (!limit.bucket.tryTake()) {
    reply(Protocol.errorMessage(
      "rate_limited",
      `over ${config.rateLimitPerSecond} messages per second (burst ${config.rateLimitBurst}); this message was not processed`,
      opIdOf(frame)
    ))
    return undefined
  }
  if (typeof frame !== "string") {
    reply(Protocol.errorMessage("bad_message", "binary frames are not supported; send JSON text"))
    return undefined
  }
  if (Buffer.byteLength(frame) > config.maxMessageBytes) {
    connection.close(CloseCodes.MessageTooBig, CloseCodes.reason[CloseCodes.MessageTooBig] ?? "message too big")
    return undefined
  }
  const decoded = Protocol.decodeClientFrame(frame, config)
  if (Protocol.isErrorMessage(decoded)) {
    reply(decoded)
    return undefined
  }
  switch (decoded.type) {
    case "ping":
      reply({ type: "pong" })
      return undefined
    case "update":
      if (Option.isSome(limit.writeDenied)) {
        reply(Protocol.errorMessage("forbidden", limit.writeDenied.value, decoded.opId))
        return undefined
      }
      return {
        _tag: "Update",
        origin: connection,
        opId: decoded.opId,
        baseVersion: decoded.baseVersion,
        actorId: decoded.actorId,
        delta: decoded.delta,
        deltaB64: decoded.deltaB64,
        receivedAt,
        reply: DocumentActor.once((outcome) => reply(updateReply(decoded.opId, outcome)))
      }
    case "presence":
      return { _tag: "Presence", connection, state: decoded.state }
    case "snapshot":
      if (Option.isSome(limit.writeDenied)) {
        reply(Protocol.errorMessage("forbidden", limit.writeDenied.value))
        return undefined
      }
      return {
        _tag: "Snapshot",
        connection,
        version: decoded.version,
        data: decoded.data,
        reply: DocumentActor.once((outcome) => reply(snapshotReply(outcome)))
      }
  }
}

const snapshotReply = (outcome: DocumentActor.SnapshotOutcome): Protocol.ServerMessage => {
  switch (outcome._tag) {
    case "Accepted":
      return { type: "snapshot_ack", version: outcome.version }
    case "Rejected":
      return Protocol.errorMessage("snapshot_rejected", outcome.message)
    case "NotFound":
      return Protocol.errorMessage("snapshot_rejected", "the document is no longer available")
    case "Failed":
      return Protocol.errorMessage("internal", outcome.message)
  }
}

const updateReply = (opId: string, outcome: DocumentActor.UpdateOutcome): Protocol.ServerMessage => {
  switch (outcome._tag) {
    case "Stored":
      return { type: "ack", opId, seq: outcome.seq }
    case "Duplicate":
      return { type: "ack", opId, seq: outcome.seq, duplicate: true }
    case "InvalidBaseVersion":
      return Protocol.errorMessage(
        "invalid_base_version",
        `baseVersion is ahead of the document version ${outcome.version}`,
        opId
      )
    case "NotFound":
      return Protocol.errorMessage("internal", "the document is no longer available", opId)
    case "Failed":
      return Protocol.errorMessage("internal", outcome.message, opId)
  }
}

/** A refused join: the close code and a message saying why. */
interface Refused {
  readonly code: number
  readonly message: string
}

/**
 * Who joins and what they may do: authenticated (else 4401) and allowed to read the document (else 4403); asked
 * once whether they may write.
 */
const admit = (
  authorizer: AuthorizerShape,
  credentials: Parameters<AuthorizerShape["authenticate"]>[0],
  documentId: DocumentId
): Effect.Effect<Either.Either<{ readonly principal: Principal; readonly writeDenied: Option.Option<string> }, Refused>> =>
  Effect.gen(function* () {
    const principal = yield* Effect.either(authorizer.authenticate(credentials))
    if (Either.isLeft(principal)) return Either.left({ code: CloseCodes.Unauthorized, message: principal.left.message })
    const read = yield* Effect.either(authorizer.authorize(principal.right, "read", documentId))
    if (Either.isLeft(read)) return Either.left({ code: CloseCodes.Forbidden, message: read.left.message })
    const write = yield* Effect.either(authorizer.authorize(principal.right, "write", documentId))
    return Either.right({
      principal: principal.right,
      writeDenied: Either.match(write, { onLeft: (error) => Option.some(error.message), onRight: () => Option.none() })
    })
  })

/** Closes the connection with 4401 once its credentials have expired (sleeping in steps JS timers can hold). */
const closeAtExpiry = (expiresAt: number, connection: SocketConnection) =>
  Effect.gen(function* () {
    let now = yield* Clock.currentTimeMillis
    while (now < expiresAt) {
      yield* Effect.sleep(Duration.millis(Math.min(expiresAt - now, MAX_SLEEP_MILLIS)))
      now = yield* Clock.currentTimeMillis
    }
    connection.close(CloseCodes.Unauthorized, "token expired")
  })

/** Below the longest timer Node accepts (about 24.8 days); Effect treats longer sleeps as infinite. */
const MAX_SLEEP_MILLIS = 24 * 60 * 60 * 1000

/** The opId of an update frame, to name it in an error when it is refused before being decoded. */
const opIdOf = (frame: string | Uint8Array): string | undefined => {
  if (typeof frame !== "string") return undefined
  try {
    const parsed: unknown = JSON.parse(frame)
    if (typeof parsed !== "object" || parsed === null || !("opId" in parsed)) return undefined
    const opId = parsed.opId
    return typeof opId === "string" && opId.length >= 1 && opId.length <= 128 ? opId : undefined
  } catch {
    return undefined
  }
}

/** A close reason fits in 123 bytes of UTF-8 (ws throws otherwise). */
const closeReason = (message: string): string => {
  const characters = Array.from(message)
  while (Buffer.byteLength(characters.join("")) > 123) characters.pop()
  return characters.join("")
}

/**
 * The `ws` socket behind an upgraded request. @effect/platform does not expose it outside `runRaw`'s frame
 * fibers, but we need it at open: for `bufferedAmount` (slow consumers), pings, pausing reads, and the frame
 * size limit, which its WebSocketServer leaves at ws's 100 MiB default. `ws` keeps itself on the net socket
 * under a symbol described "websocket".
 */
const rawWebSocket = (netSocket: object, maxMessageBytes: number): WebSocket => {
  const ws = symbolSlot(netSocket, "websocket") as (WebSocket & { _receiver?: { _maxPayload?: number } }) | undefined
  if (ws === undefined) throw new Error("upgraded request has no ws WebSocket")
  if (ws._receiver !== undefined) ws._receiver._maxPayload = maxMessageBytes
  return ws
}

/** A frame that makes decoding throw (a bug) gets `internal` instead of taking the connection down. */
const serveSafely = (
  serve: () => DocumentActor.Command | undefined,
  connection: SocketConnection
): DocumentActor.Command | undefined => {
  try {
    return serve()
  } catch {
    Metrics.add(Metrics.errors, 1, Metrics.tags({ code: "internal" }))
    connection.send(JSON.stringify(Protocol.errorMessage("internal", "the server could not process this message")))
    return undefined
  }
}

/** The close code ws closed with after a protocol error (it keeps it on the error under a symbol "status-code"). */
const statusCodeOf = (error: Error): number | undefined => {
  const code = symbolSlot(error, "status-code")
  return typeof code === "number" ? code : undefined
}

/** What `ws` keeps on one of its objects under a private symbol, found by the symbol's description. */
const symbolSlot = (target: object, description: string): unknown => {
  const slots = target as Record<symbol, unknown>
  const key = Object.getOwnPropertySymbols(slots).find((symbol) => symbol.description === description)
  return key === undefined ? undefined : slots[key]
}

/** The close code of a socket the client closed: the reader ends with it unless it was 1000 or 1006. */
const clientCloseCode = (exit: Exit.Exit<unknown, unknown>): number | "normal" => {
  if (Exit.isSuccess(exit)) return "normal"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) && Socket.isSocketError(failure.value) && failure.value.reason === "Close"
    ? failure.value.code
    : "normal"
}

