/**
 * The WebSocket wire protocol (protocol section 2): one titled union per direction.
 */
import { Schema } from "effect"
import { UpdateOut } from "./Document.js"

const Id = (what: string) =>
  Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)).annotations({
    description: `${what}: 1..128 characters`
  })

/** The client's retry key: unique per document for the document's lifetime. */
export const OpId = Id("opId")
export const ActorId = Id("actorId")
const Version = Schema.Int.pipe(Schema.nonNegative())

// ---------------------------------------------------------------------------------------------------------------
// Client -> server

export const UpdateMessage = Schema.TaggedStruct("update", {
  opId: OpId,
  baseVersion: Version,
  actorId: ActorId,
  deltaB64: Schema.String
}).annotations({ title: "update" })
export type UpdateMessage = typeof UpdateMessage.Type

export const SnapshotMessage = Schema.TaggedStruct("snapshot", {
  version: Version,
  snapshotB64: Schema.String
}).annotations({ title: "snapshot" })
export type SnapshotMessage = typeof SnapshotMessage.Type

export const PresenceMessage = Schema.TaggedStruct("presence", {
  state: Schema.Record({ key: Schema.String, value: Schema.Unknown })
}).annotations({ title: "presence" })
export type PresenceMessage = typeof PresenceMessage.Type

export const PingMessage = Schema.TaggedStruct("ping", {}).annotations({ title: "ping" })

export const ClientMessage = Schema.Union(UpdateMessage, SnapshotMessage, PresenceMessage, PingMessage)
export type ClientMessage = typeof ClientMessage.Type

// ---------------------------------------------------------------------------------------------------------------
// Server -> client

export const PresenceEntry = Schema.Struct({
  clientId: Schema.String,
  actorId: Schema.String,
  state: Schema.NullOr(Schema.Unknown)
})
export type PresenceEntry = typeof PresenceEntry.Type

export interface StateMessage {
  readonly type: "state"
  readonly documentId: string
  readonly clientId: string
  readonly version: number
  readonly snapshot: { readonly version: number; readonly snapshotB64: string } | null
  readonly updates: ReadonlyArray<UpdateOut>
  readonly presence: ReadonlyArray<PresenceEntry>
  readonly reset?: true
}

export interface AckMessage {
  readonly type: "ack"
  readonly opId: string
  readonly seq: number
  readonly duplicate?: true
}

export interface RemoteUpdateMessage {
  readonly type: "remote_update"
  readonly seq: number
  readonly opId: string
  readonly actorId: string
  readonly deltaB64: string
}

export type ErrorCode =
  | "bad_message"
  | "invalid_base_version"
  | "too_large"
  | "snapshot_rejected"
  | "forbidden"
  | "rate_limited"
  | "internal"

export interface ErrorMessage {
  readonly type: "error"
  readonly code: ErrorCode
  readonly message: string
  readonly opId?: string
}

export interface SnapshotRequestMessage {
  readonly type: "snapshot_request"
  readonly version: number
}

export interface SnapshotAckMessage {
  readonly type: "snapshot_ack"
  readonly version: number
}

export interface PresenceJoinMessage {
  readonly type: "presence_join"
  readonly clientId: string
  readonly actorId: string
}

export interface PresenceUpdateMessage {
  readonly type: "presence"
  readonly clientId: string
  readonly actorId: string
  readonly state: unknown
}

export interface PresenceLeaveMessage {
  readonly type: "presence_leave"
  readonly clientId: string
  readonly actorId: string
  readonly reason: "idle" | "disconnect"
}

export interface PongMessage {
  readonly type: "pong"
}

export type ServerMessage =
  | StateMessage
  | AckMessage
  | RemoteUpdateMessage
  | ErrorMessage
  | SnapshotRequestMessage
  | SnapshotAckMessage
  | PresenceJoinMessage
  | PresenceUpdateMessage
  | PresenceLeaveMessage
  | PongMessage

export const errorMessage = (code: ErrorCode, message: string, opId?: string): ErrorMessage =>
  opId === undefined ? { type: "error", code, message } : { type: "error", code, message, opId }
