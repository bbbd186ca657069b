/**
 * docsync, the server side, as a library (`import * as DocSync from "docsync"`). The client SDK is `docsync/client`.
 * See docs/embedding.md for what each Layer needs and provides.
 *
 * - `mount({ prefix, storage, authorizer, config })`: a whole docsync instance inside the host's `HttpLayerRouter`.
 * - `routes({ prefix })`: only the REST API and WebSocket route, for hosts that provide the services themselves.
 * - `layer({ config, storage, authorizer })`: the standalone server.
 * - `Config`, `Storage`, `DocumentRegistry`, `Authorizer`: the services and their Layers.
 * - `Api`: the REST API definition, for typed clients (`HttpApiClient.make(Api, { baseUrl })`) and OpenAPI.
 */

// Composition
export {
  apiPath,
  type AuthorizerInput,
  type ConfigInput,
  type HostServices,
  layer,
  type LayerOptions,
  mount,
  type MountOptions,
  routes,
  type RoutesOptions,
  webSocketPath
} from "./DocSync.js"

// Services and their Layers
export * as Authorizer from "./Http/Authorizer.js"
export * as Config from "./Config.js"
export * as DocumentRegistry from "./Document/DocumentRegistry.js"
export * as Storage from "./Storage/index.js"

// The REST API and what crosses it
export { Api, DocumentsGroup, HealthGroup } from "./Http/Api.js"
export { DocumentId, DocumentOut, Title, UpdateOut } from "./Domain/Document.js"
export {
  BadRequest,
  DocumentNotFound,
  Forbidden,
  InternalError,
  InvalidBaseVersion,
  ServiceUnavailable,
  SnapshotNotFound,
  Unauthorized
} from "./Domain/Errors.js"
