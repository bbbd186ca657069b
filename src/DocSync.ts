/**
 * docsync as a library: the Layers a host application composes.
 *
 * - `mount(options)`: everything docsync needs (its config, storage, document registry, authorizer, REST API and
 *   WebSocket route) under a path prefix of the host's `HttpLayerRouter`. Needs only the router (and whatever the
 *   storage and authorizer Layers need, such as the host's `SqlClient`). Each mount is a separate instance.
 * - `routes(options)`: the REST API and WebSocket route alone, for a host that provides the services itself.
 * - `layer(options)`: the standalone server (Node HTTP server on `config.host:config.port`), as `main.ts` runs it.
 *
 * Why `mount` is `Layer.fresh` and `routes` binds its services to its own routes: Layers are memoized by
 * reference across one whole application, so two mounts built from the same constant Layers
 * (`DocumentRegistry.layer`, `layerMemory`, `HttpApiBuilder`'s route collector) would share one instance; and
 * `HttpLayerRouter` looks up the services of a plain route in the request context, which is the same for every
 * route of the host. A fresh subtree per mount, and a route middleware that provides the mount's own services,
 * keep two instances apart in one process.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as OpenApi from "@effect/platform/OpenApi"
import type * as Etag from "@effect/platform/Etag"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import type * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Path from "@effect/platform/Path"
import type { ServeError } from "@effect/platform/HttpServerError"
import { Context, Effect, Layer } from "effect"
import { ServerConfig, type ServerConfigShape } from "./Config.js"
import * as Config from "./Config.js"
import * as DocumentRegistry from "./Document/DocumentRegistry.js"
import { Api, PREFIX } from "./Http/Api.js"
import * as Authorizer from "./Http/Authorizer.js"
import { DocumentsHandlers } from "./Http/DocumentsHandlers.js"
import { HealthHandlers } from "./Http/HealthHandlers.js"
import * as Heartbeat from "./Http/Heartbeat.js"
import * as Limits from "./Http/Limits.js"
import * as Middleware from "./Http/Middleware.js"
import * as Server from "./Http/Server.js"
import * as SyncSocket from "./Http/SyncSocket.js"
import { DocumentStorage } from "./Storage/DocumentStorage.js"
import type { StorageError } from "./Storage/DocumentStorage.js"
import { layerFromConfig as storageFromConfig } from "./Storage/StorageLayer.js"

/** The REST API's paths, relative to a mount's prefix: `<prefix>/api/v1/documents`, ... */
export const apiPath = PREFIX

/** The WebSocket route, relative to a mount's prefix: `<prefix>/ws/documents/:id`. */
export const webSocketPath = SyncSocket.path

/**
 * What docsync's routes need from the host's server: its `HttpLayerRouter`, and the platform services that
 * `NodeHttpServer.layer` provides (used for the OpenAPI document). The `Request` entries are type-level markers
 * of the errors the routes leave to the server (none in practice: docsync answers its own errors with JSON), which
 * `HttpLayerRouter.serve` removes from what it asks for.
 */
export type HostServices =
  | HttpLayerRouter.HttpRouter
  | HttpPlatform.HttpPlatform
  | Etag.Generator
  | FileSystem.FileSystem
  | Path.Path
  | HttpLayerRouter.Request<"Error", unknown>
  | HttpLayerRouter.Request<"GlobalError", unknown>

/** Settings as a plain object (anything left out takes its default), or a Layer providing `ServerConfig`. */
export type ConfigInput<E = never, R = never> = Partial<ServerConfigShape> | Layer.Layer<ServerConfig, E, R>

/** An authorization policy (`Authorizer.make(...)`), or a Layer providing one (when it needs services). */
export type AuthorizerInput<E = never, R = never> = Authorizer.AuthorizerShape | Layer.Layer<Authorizer.Authorizer, E, R>

export interface RoutesOptions {
  /**
   * Path prefix of every docsync route: `"/collab"` gives `/collab/api/v1/...` and `/collab/ws/documents/:id`.
   * Empty (the default) mounts at the root. Segments of letters, digits, `-`, `_`, `.` and `~`; no trailing `/`.
   */
  readonly prefix?: string
}

export interface MountOptions<ES, RS, EA, RA, EC, RC> extends RoutesOptions {
  /** Where documents live: `Storage.layerSqlClient({ tablePrefix })` on the host's database, `layerSqlite`, ... */
  readonly storage: Layer.Layer<DocumentStorage, ES, RS>
  /** Who may do what: the host's policy, `Authorizer.layerJwt(secret)`, or `Authorizer.open` (everyone, everything). */
  readonly authorizer: AuthorizerInput<EA, RA>
  /** docsync's settings; `port`, `host`, `databaseUrl` and `logLevel` are the host's business and ignored here. */
  readonly config?: ConfigInput<EC, RC>
}

/**
 * A complete docsync instance under `prefix` on the host's `HttpLayerRouter`: its own config, storage, document
 * registry (actors, presence and idle timers) and authorizer, none of which is shared with the host or with another
 * mount. Provides nothing to the host; needs the `HttpRouter` and what `storage` and `authorizer` need (minus
 * `ServerConfig`, which the mount provides to them).
 *
 * ```ts
 * const Collab = mount({
 *   prefix: "/collab",
 *   storage: Storage.layerSqlClient({ tablePrefix: "collab_" }), // needs the host's SqlClient
 *   authorizer: myPolicy
 * })
 * HttpLayerRouter.serve(Layer.mergeAll(HostRoutes, Collab))
 * ```
 */
export const mount = <ES = never, RS = never, EA = never, RA = never, EC = never, RC = never>(
  options: MountOptions<ES, RS, EA, RA, EC, RC>
): Layer.Layer<
  never,
  ES | EA | EC,
  HostServices | Exclude<RS, ServerConfig> | Exclude<RA, ServerConfig> | RC
> => {
  const config = configLayer(options.config ?? {})
  const services = Layer.mergeAll(DocumentRegistry.layer, authorizerLayer(options.authorizer)).pipe(
    Layer.provideMerge(options.storage),
    Layer.provideMerge(config)
  )
  return Layer.fresh(routes(options).pipe(Layer.provide(services)))
}

/**
 * docsync's routes under `prefix`: the REST API (`<prefix>/api/v1/...`, OpenAPI at `<prefix>/api/v1/openapi.json`)
 * and the WebSocket route (`<prefix>/ws/documents/:id`), with docsync's body limit and JSON error bodies applied
 * to these routes only. The services come from the Layers provided to it, and serve these routes only, so that
 * two `routes` with different prefixes and services can share one router.
 */
export const routes = (
  options: RoutesOptions = {}
): Layer.Layer<
  never,
  never,
  HostServices | ServerConfig | DocumentStorage | DocumentRegistry.DocumentRegistry | Authorizer.Authorizer
> => {
  const prefix = checkPrefix(options.prefix ?? "")
  const api = prefix === "" ? Api : Api.annotate(OpenApi.Servers, [{ url: prefix }])
  const rest = HttpLayerRouter.addHttpApi(api, { openapiPath: `${PREFIX}/openapi.json` }).pipe(
    Layer.provide([HealthHandlers, DocumentsHandlers]),
    Layer.provide(Authorizer.layerAuthentication)
  )
  const socket = SyncSocket.route.pipe(Layer.provide(ownServices))
  return Layer.mergeAll(rest, socket, Middleware.layer).pipe(
    Layer.provide(Layer.effect(HttpLayerRouter.HttpRouter, Effect.map(HttpLayerRouter.HttpRouter, (router) => under(router, prefix)))),
    Layer.provide(Layer.mergeAll(Limits.layer, Heartbeat.layer)),
    // Fresh: HttpApiBuilder collects the handlers of every HttpApi group in one memoized router; a second
    // `routes` in the same application would otherwise pick up the first one's handlers for the same paths.
    Layer.fresh
  )
}

export interface LayerOptions<ES, RS, EA, RA, EC, RC> {
  /** Settings; `port` and `host` say where to listen. Defaults as documented in the README. */
  readonly config?: ConfigInput<EC, RC>
  /** Storage; by default chosen by `config.databaseUrl` (SQLite `./dev.db` unless set). */
  readonly storage?: Layer.Layer<DocumentStorage, ES, RS>
  /** Authorization; by default JWT when `config.authSecret` is set, else open (with a warning at start). */
  readonly authorizer?: AuthorizerInput<EA, RA>
}

/**
 * The standalone docsync server: a Node HTTP server on `config.host:config.port` with every route (REST API,
 * Swagger UI at `/docs`, WebSocket, `/metrics`), graceful drain on shutdown, and the services below it. Reads no
 * environment variable: `main.ts` reads them (`Config.layerFromEnv`) and passes them in.
 */
export const layer = <ES = never, RS = never, EA = never, RA = never, EC = never, RC = never>(
  options: LayerOptions<ES, RS, EA, RA, EC, RC> = {}
): Layer.Layer<
  HttpServer.HttpServer,
  ServeError | StorageError | ES | EA | EC,
  Exclude<RS, ServerConfig> | Exclude<RA, ServerConfig> | RC
> => {
  const storage: Layer.Layer<DocumentStorage, ES | StorageError, RS | ServerConfig> = options.storage ?? storageFromConfig
  const authorizer: Layer.Layer<Authorizer.Authorizer, EA, RA | ServerConfig> = options.authorizer === undefined
    ? Authorizer.layerFromConfig
    : authorizerLayer(options.authorizer)
  return Server.layerWithAuthorizer.pipe(
    Layer.provide(authorizer),
    Layer.provide(storage),
    Layer.provide(configLayer(options.config ?? {}))
  )
}

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

const configLayer = <E, R>(input: ConfigInput<E, R>): Layer.Layer<ServerConfig, E, R> =>
  isLayer(input) ? input : Config.layer(input)

const authorizerLayer = <E, R>(input: AuthorizerInput<E, R>): Layer.Layer<Authorizer.Authorizer, E, R> =>
  isLayer(input) ? input : Layer.succeed(Authorizer.Authorizer, input)

// `Layer.isLayer` narrows to `Layer<unknown, unknown, unknown>`, which loses the input's type parameters.
const isLayer = <L extends Layer.Layer<never, unknown, unknown>>(input: L | object): input is L => Layer.isLayer(input)

/**
 * Provides the WebSocket route's services from the Layers below `routes` rather than from the request context:
 * the request context is the host server's, shared by every route (a second mount would see the first one's
 * registry, or none at all).
 */
const ownServices = HttpLayerRouter.middleware<{
  provides:
    | ServerConfig
    | DocumentRegistry.DocumentRegistry
    | Authorizer.Authorizer
    | Limits.ConnectionLimits
    | Heartbeat.Heartbeat
}>()(
  Effect.gen(function* () {
    const services = Context.make(ServerConfig, yield* ServerConfig).pipe(
      Context.add(DocumentRegistry.DocumentRegistry, yield* DocumentRegistry.DocumentRegistry),
      Context.add(Authorizer.Authorizer, yield* Authorizer.Authorizer),
      Context.add(Limits.ConnectionLimits, yield* Limits.ConnectionLimits),
      Context.add(Heartbeat.Heartbeat, yield* Heartbeat.Heartbeat)
    )
    return (effect) => Effect.mapInputContext(effect, (request: Context.Context<never>) => Context.merge(request, services))
  })
).layer

/**
 * The host's router seen from docsync's routes: paths get `prefix`, and docsync's router-wide middleware
 * (`Middleware.layer`, which registers itself as global) applies to docsync's own routes only, not the host's.
 * Middleware registered after a route was added still applies to it, as with a real global middleware.
 */
const under = (host: HttpLayerRouter.HttpRouter, prefix: string): HttpLayerRouter.HttpRouter => {
  const router = prefix === "" ? host : host.prefixed(prefix)
  const middleware: Array<(effect: Handler) => Handler> = []
  const wrap = (handler: Handler): Handler =>
    Effect.suspend(() => middleware.reduceRight((effect, apply) => apply(effect), handler))
  const bind = <E, R>(route: HttpLayerRouter.Route<E, R>): HttpLayerRouter.Route<E, R> =>
    ({ ...route, handler: wrap(route.handler as Handler) as typeof route.handler })
  const self: HttpLayerRouter.HttpRouter = {
    ...router,
    prefixed: (more) => under(host, `${prefix}${more}`),
    // The same routes, each with the same types: only the handler is wrapped.
    addAll: (routes) => router.addAll(routes.map(bind) as unknown as typeof routes),
    add: (method, path, handler, options) => router.addAll([bind(HttpLayerRouter.route(method, path, handler, options))]),
    addGlobalMiddleware: (fn) =>
      Effect.sync(() => {
        // A global middleware handles every response and error of whatever it wraps; so does it here.
        middleware.push(fn as unknown as (effect: Handler) => Handler)
      })
  }
  return self
}

type Handler = Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, never>

const checkPrefix = (prefix: string): string => {
  if (prefix !== "" && !/^(\/[A-Za-z0-9._~-]+)+$/.test(prefix)) {
    throw new TypeError(
      `docsync: invalid route prefix ${JSON.stringify(prefix)}: use "" or segments like "/collab" (no trailing slash)`
    )
  }
  return prefix
}
