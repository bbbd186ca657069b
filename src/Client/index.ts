/**
 * The docsync client SDK: `DocSyncClient` (the WebSocket protocol) and `RestClient` (the REST API, derived from
 * the server's HttpApi). The Yjs binding is a separate module, `./YjsBinding.js`, so that using the client does
 * not require `yjs`.
 */
export * as Base64 from "./Base64.js"
export {
  type Ack,
  type ClientError,
  type ClientErrorCode,
  type ClientEvents,
  type ClientOptions,
  type CloseInfo,
  DocSyncClient,
  FATAL_CLOSE_CODES,
  type Peer,
  type PresenceChange,
  type PresenceEvent,
  type RemoteUpdate,
  type SnapshotData,
  type StateInfo,
  type Status,
  type WebSocketConstructor,
  type WebSocketLike
} from "./DocSyncClient.js"
export * as RestClient from "./RestClient.js"
export { backoffDelay, type BackoffOptions, type Cancel, defaultBackoff, type Scheduler } from "./Scheduler.js"
