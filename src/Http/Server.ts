/**
 * Server composition: every route on one `HttpLayerRouter`, served by a Node HTTP server built from `ServerConfig`.
 *
 * Adding a route: write it as a Layer (`HttpLayerRouter.add("GET", "/path/:param", handler)`, or
 * `HttpLayerRouter.use((router) => ...)`) and merge it into `routes` below. Services it needs are provided at the
 * bottom of `layer` (like `DocumentRegistry.layer`), so that they are built before the server listens and released
 * after it has drained.
 */
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option, Schedule } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { ServerConfig } from "../Config.js"
import * as DocumentRegistry from "../Document/DocumentRegistry.js"
import type { DocumentStorage } from "../Storage/DocumentStorage.js"
import { describeDatabaseUrl } from "../Storage/StorageLayer.js"
import { Api, PREFIX } from "./Api.js"
import * as Authorizer from "./Authorizer.js"
import * as DemoRoute from "./DemoRoute.js"
import { DocumentsHandlers } from "./DocumentsHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Limits from "./Limits.js"
import * as MetricsRoute from "./MetricsRoute.js"
import * as Middleware from "./Middleware.js"
import * as SyncSocket from "./SyncSocket.js"

/** How long shutdown waits for in-flight requests before cutting their connections. */
export const SHUTDOWN_GRACE = Duration.seconds(10)

/** The REST API (`/api/v1/...`) and its OpenAPI document (`/api/v1/openapi.json`). */
export const apiRoutes = HttpLayerRouter.addHttpApi(Api, { openapiPath: `${PREFIX}/openapi.json` }).pipe(
  Layer.provide([HealthHandlers, DocumentsHandlers]),
  // The documents group's security middleware: checks bearer tokens with the Authorizer.
  Layer.provide(Authorizer.layerAuthentication)
)

/** Swagger UI at `/docs`. */
export const docsRoute = HttpApiSwagger.layerHttpLayerRouter({ api: Api, path: "/docs" })

/**
 * Every route of the server: merge new route Layers here. Services they need are provided in `layer`.
 */
export const routes = Layer.mergeAll(apiRoutes, docsRoute, SyncSocket.route, MetricsRoute.route, DemoRoute.route)

/**
 * The HTTP server with the `Authorizer` left to the caller: an embedding application provides its own policy
 * (`Layer.provide(myAuthorizer)`); `layer` provides the one `ServerConfig` selects.
 */
export const layerWithAuthorizer: Layer.Layer<
  HttpServer.HttpServer,
  ServeError,
  DocumentStorage | ServerConfig | Authorizer.Authorizer
> = Layer.effectDiscard(logStartup()).pipe(
  Layer.provide(
    HttpLayerRouter.serve(Layer.mergeAll(routes, Middleware.layer), { disableLogger: true, disableListenLog: true }).pipe(
      // No tracing span for WebSocket joins: it would record the query string (where a browser client's token
      // travels) as `url.query`; and the finished request stays reachable while its socket is open (the
      // platform's close listener holds its fiber), so its span cost about 2.5 KB per connection.
      HttpMiddleware.withTracerDisabledWhen((request) => request.url.startsWith("/ws/"))
    )
  ),
  Layer.provideMerge(Layer.scoped(HttpServer.HttpServer, makeNodeServer())),
  Layer.provide(NodeHttpServer.layerContext),
  // Below the server: built before it listens, released after it has drained.
  Layer.provide(Layer.mergeAll(DocumentRegistry.layer, Limits.layer, Heartbeat.layer, SyncSocket.DirectUpgrades.layer))
)

/**
 * The HTTP server: listens on `config.host:config.port` and serves `routes`, with the document registry below it.
 * Provide `DocumentStorage` and `ServerConfig` below it in turn, so that shutdown stops the server first: it stops
 * accepting, lets in-flight requests finish (up to `SHUTDOWN_GRACE`), then the registry and storage are released.
 * Authentication follows `AUTH_SECRET` (`Authorizer.layerFromConfig`: JWT when set, open when unset).
 */
export const layer: Layer.Layer<HttpServer.HttpServer, ServeError, DocumentStorage | ServerConfig> = layerWithAuthorizer.pipe(
  Layer.provide(Authorizer.layerFromConfig)
)

/** The base URL clients use to reach `server` (`http://host:port`, with 0.0.0.0 / :: shown as 127.0.0.1). */
export const baseUrl = (server: HttpServer.HttpServer): string => {
  const address = server.address
  if (address._tag === "UnixAddress") return `http+unix://${address.path}`
  const host = address.hostname === "0.0.0.0" || address.hostname === "::" ? "127.0.0.1" : address.hostname
  return `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`
}

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

/** An upgraded socket's error listener (one for all of them: the socket is `this`). */
function destroyOnError(this: Duplex): void {
  this.destroy()
}

/**
 * A Node HTTP server whose `serve` also registers the graceful drain. The drain runs before the request handler
 * is detached (finalizers run in reverse), so requests already on a keep-alive connection still get answers.
 */
function makeNodeServer() {
  return Effect.gen(function* () {
    const config = yield* ServerConfig
    const node = createServer()
    // Upgrades (WebSockets) arrive as "upgrade", not "request": they are closed by their own route, not waited for.
    let inFlight = 0
    node.on("request", (_request, response) => {
      inFlight++
      response.once("close", () => {
        inFlight--
      })
    })
    // Upgraded sockets leave the HTTP server's books: track them, so that none outlives the server (an upgrade that
    // raced with shutdown may never reach its route's finalizer, and its client would wait forever).
    const upgrades = new Set<Duplex>()
    // Every upgrade is tracked (to cut what is left at shutdown); a WebSocket join goes straight to its route's
    // handler (`SyncSocket.DirectUpgrades`), ahead of the platform's "upgrade" listener and its HTTP pipeline.
    const direct = yield* SyncSocket.DirectUpgrades
    // One listener of each for every upgraded socket (called with the socket as `this`), not closures per socket.
    const untrack = function(this: Duplex) {
      upgrades.delete(this)
    }
    const emit = node.emit
    node.emit = function(this: typeof node, event: string | symbol, ...args: Array<unknown>): boolean {
      if (event === "upgrade") {
        const [request, socket, head] = args as [IncomingMessage, Duplex, Buffer]
        upgrades.add(socket)
        // "close" is emitted once.
        socket.on("close", untrack)
        // Node takes its own error listener off a socket it hands over for an upgrade: without one, a client that
        // resets the connection while its answer is written would crash the process.
        socket.on("error", destroyOnError)
        const handler = direct.get()
        if (handler !== undefined) {
          try {
            if (handler(request, socket, head)) return true
          } catch {
            socket.destroy()
            return true
          }
        }
      }
      return emit.apply(this, [event, ...args] as Parameters<typeof emit>)
    } as typeof node.emit
    const server = yield* NodeHttpServer.make(() => node, { host: config.host, port: config.port })
    // Runs after the routes are released (their sockets closed with 1001): whatever is still open is cut.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (upgrades.size === 0) return
        yield* Effect.logWarning(`shutting down: cutting ${upgrades.size} WebSocket connection(s) still open`)
        for (const socket of upgrades) socket.destroy()
      })
    )

    const drain = Effect.gen(function* () {
      node.close()
      if (inFlight > 0) yield* Effect.log(`shutting down: waiting for ${inFlight} in-flight request(s)`)
      const settled = yield* Effect.sync(() => {
        node.closeIdleConnections()
        return inFlight === 0
      }).pipe(
        Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("20 millis") }),
        Effect.timeoutOption(SHUTDOWN_GRACE)
      )
      if (Option.isNone(settled)) {
        yield* Effect.logWarning(`shutting down: ${inFlight} request(s) still running after ${Duration.format(SHUTDOWN_GRACE)}, closing their connections`)
        node.closeAllConnections()
      }
      yield* Effect.log("HTTP server drained: no request in flight, no longer accepting")
    })

    return HttpServer.make({
      address: server.address,
      serve: (app, middleware) =>
        (middleware === undefined ? server.serve(app) : server.serve(app, middleware)).pipe(
          Effect.zipRight(Effect.addFinalizer(() => drain))
        )
    })
  })
}

function logStartup() {
  return Effect.gen(function* () {
    const config = yield* ServerConfig
    const server = yield* HttpServer.HttpServer
    yield* Effect.log(`docsync listening on ${baseUrl(server)}`).pipe(
      Effect.annotateLogs({
        storage: describeDatabaseUrl(config.databaseUrl),
        authentication: Option.isSome(config.authSecret) ? "on" : "off",
        snapshotEvery: config.snapshotEvery,
        maxMessageBytes: config.maxMessageBytes,
        maxUpdateBytes: config.maxUpdateBytes,
        maxPresenceBytes: config.maxPresenceBytes,
        presenceIdle: Duration.format(config.presenceIdle),
        documentIdle: Duration.format(config.documentIdle),
        logLevel: config.logLevel.label
      })
    )
    if (Option.isNone(config.authSecret)) {
      yield* Effect.logWarning("AUTH_SECRET is unset: authentication is off, every client may read and write every document")
    }
  })
}
