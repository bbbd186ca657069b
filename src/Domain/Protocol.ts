/**
 * The WebSocket wire protocol (protocol section 2): one titled union per direction.
 */
import { Schema } from "effect"
import * as Base64 from "./Base64.js"
import { UpdateOut } from "./Document.js"

const Id = (what: string) =>
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(128),
    Schema.filter(isWellFormed, { message: () => `${what} must be well-formed Unicode (no lone surrogates)` }),
    Schema.filter((text) => !text.includes("\u0000"), { message: () => `${what} must not contain U+0000` })
  ).annotations({
    description: `${what}: 1..128 characters of well-formed Unicode`
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

// ---------------------------------------------------------------------------------------------------------------
// Decoding client frames

/** Limits a frame is checked against. */
export interface FrameLimits {
  readonly maxUpdateBytes: number
  readonly maxPresenceBytes: number
}

/** A client message, decoded and validated, with its binary payload decoded. */
export type ClientCommand =
  | {
    readonly type: "update"
    readonly opId: string
    readonly baseVersion: number
    readonly actorId: string
    readonly delta: Uint8Array
    readonly deltaB64: string
  }
  | { readonly type: "snapshot"; readonly version: number; readonly data: Uint8Array }
  | { readonly type: "presence"; readonly state: Readonly<Record<string, unknown>> }
  | { readonly type: "ping" }

/**
 * Decodes one text frame. Hand-written rather than a Schema decode: it runs once per frame on the hot path and
 * must tell `bad_message` from `too_large` with a message naming the field.
 */
export const decodeClientFrame = (text: string, limits: FrameLimits): ClientCommand | ErrorMessage => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return errorMessage(
      "bad_message",
      error instanceof RangeError ? "frame is nested too deeply" : "frame is not valid JSON"
    )
  }
  if (!isObject(value)) return errorMessage("bad_message", "frame must be a JSON object")
  switch (value.type) {
    case "update":
      return decodeUpdate(value, limits)
    case "snapshot": {
      if (!isVersion(value.version)) return errorMessage("bad_message", "snapshot.version must be a non-negative integer")
      const data = decodePayload(value.snapshotB64, "snapshotB64", Number.MAX_SAFE_INTEGER)
      return "type" in data ? data : { type: "snapshot", version: value.version, data: data.bytes }
    }
    case "presence": {
      if (!isObject(value.state)) return errorMessage("bad_message", "presence.state must be a JSON object")
      if (depth(value.state, MAX_PRESENCE_DEPTH) > MAX_PRESENCE_DEPTH) {
        return errorMessage("bad_message", `presence.state is nested deeper than ${MAX_PRESENCE_DEPTH} levels`)
      }
      const size = utf8Length(JSON.stringify(value.state))
      if (size > limits.maxPresenceBytes) {
        return errorMessage("too_large", `presence state is ${size} bytes; the limit is ${limits.maxPresenceBytes}`)
      }
      return { type: "presence", state: value.state }
    }
    case "ping":
      return { type: "ping" }
    default:
      return errorMessage(
        "bad_message",
        typeof value.type === "string" ? `unknown message type ${JSON.stringify(value.type.slice(0, 64))}` : "missing type"
      )
  }
}

/** Whether a decoded frame is an error to send back. */
export const isErrorMessage = (decoded: ClientCommand | ErrorMessage): decoded is ErrorMessage => decoded.type === "error"

const decodeUpdate = (value: Record<string, unknown>, limits: FrameLimits): ClientCommand | ErrorMessage => {
  const opId = value.opId
  // Echo the opId whenever it is a short string, even a malformed one, so that the client can match the error.
  const echo = typeof opId === "string" && opId.length >= 1 && opId.length <= 128 ? opId : undefined
  const withOpId = (code: ErrorCode, message: string) => errorMessage(code, message, echo)
  if (!isId(opId)) {
    return withOpId("bad_message", "update.opId must be a string of 1..128 characters of well-formed Unicode without U+0000")
  }
  if (!isId(value.actorId)) {
    return withOpId("bad_message", "update.actorId must be a string of 1..128 characters of well-formed Unicode without U+0000")
  }
  if (!isVersion(value.baseVersion)) {
    return withOpId("bad_message", "update.baseVersion must be a non-negative integer")
  }
  const payload = decodePayload(value.deltaB64, "deltaB64", limits.maxUpdateBytes)
  if ("type" in payload) return withOpId(payload.code, payload.message)
  return {
    type: "update",
    opId,
    baseVersion: value.baseVersion,
    actorId: value.actorId,
    delta: payload.bytes,
    deltaB64: value.deltaB64 as string
  }
}

/** Decodes a base64 payload field: `bad_message` unless non-empty padded base64, `too_large` past `maxBytes`. */
export const decodePayload = (
  value: unknown,
  field: string,
  maxBytes: number
): { readonly bytes: Uint8Array } | ErrorMessage => {
  if (typeof value !== "string" || value.length === 0) {
    return errorMessage("bad_message", `${field} must be a non-empty base64 string`)
  }
  if (!Base64.isBase64(value)) return errorMessage("bad_message", `${field} is not valid padded base64`)
  const size = Base64.decodedLength(value)
  if (size === 0) return errorMessage("bad_message", `${field} must not be empty`)
  if (size > maxBytes) return errorMessage("too_large", `${field} decodes to ${size} bytes; the limit is ${maxBytes}`)
  return { bytes: Base64.decode(value) }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const isId = (value: unknown): value is string =>
  typeof value === "string" && value.length >= 1 && value.length <= 128 && isWellFormed(value) &&
  !value.includes("\u0000")

/** Lone surrogates would not survive storage as UTF-8: such an opId could never be found again as a duplicate. */
function isWellFormed(text: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)
}

/** Deepest nesting of a presence state; deeper ones are refused before they are serialised or relayed. */
export const MAX_PRESENCE_DEPTH = 32

/** Nesting depth of a JSON value, counting stops past `limit` (so a hostile value costs at most that much). */
const depth = (value: unknown, limit: number): number => {
  if (typeof value !== "object" || value === null) return 0
  if (limit < 0) return 1
  let deepest = 0
  for (const child of Object.values(value)) {
    deepest = Math.max(deepest, depth(child, limit - 1))
    if (deepest > limit) break
  }
  return deepest + 1
}

const isVersion = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0

const encoder = new TextEncoder()
const utf8Length = (text: string): number => encoder.encode(text).byteLength
