/**
 * Documents and their log: the shapes storage keeps and the REST API returns.
 */
import { Schema } from "effect"
import * as Base64 from "./Base64.js"

/** A document id as the server issues it (a UUID); unknown ids are simply not found. */
export const DocumentId = Schema.String.pipe(Schema.brand("DocumentId"))
export type DocumentId = typeof DocumentId.Type

/** Largest title, in characters after trimming. */
export const MAX_TITLE_LENGTH = 256

/** A title as clients send it: trimmed, then 1..256 characters. */
export const Title = Schema.Trim.pipe(
  Schema.minLength(1, { message: () => "title must not be empty or only whitespace" }),
  Schema.maxLength(MAX_TITLE_LENGTH, { message: () => `title must be at most ${MAX_TITLE_LENGTH} characters` }),
  // No database can be trusted with U+0000 in text (PostgreSQL refuses it).
  Schema.filter((title) => !title.includes("\u0000"), { message: () => "title must not contain U+0000" })
).annotations({
  title: "Title",
  description: "Trimmed, 1..256 characters after trimming",
  jsonSchema: { type: "string", minLength: 1, maxLength: MAX_TITLE_LENGTH }
})

/** A document's metadata as the server keeps it. Timestamps are epoch milliseconds. */
export interface Document {
  readonly id: DocumentId
  readonly title: string
  /** Seq of the latest update, 0 when there is none. */
  readonly version: number
  readonly createdAt: number
  readonly updatedAt: number
  readonly deletedAt: number | null
}

/** A new document: version 0, created and updated `at` (epoch millis), with a fresh id. */
export const newDocument = (title: string, at: number): Document => ({
  id: crypto.randomUUID() as DocumentId,
  title,
  version: 0,
  createdAt: at,
  updatedAt: at,
  deletedAt: null
})

/** One update of a document's log: an opaque CRDT delta with its server-assigned seq. */
export interface StoredUpdate {
  readonly seq: number
  readonly opId: string
  readonly actorId: string
  readonly delta: Uint8Array
}

/** The merged state of every update with seq <= version, as uploaded by a client. */
export interface Snapshot {
  readonly version: number
  readonly data: Uint8Array
}

/** `DocumentOut` of the protocol. */
export class DocumentOut extends Schema.Class<DocumentOut>("DocumentOut")({
  id: Schema.String,
  title: Schema.String,
  version: Schema.Int,
  createdAt: Schema.String.annotations({ description: "ISO-8601 UTC" }),
  updatedAt: Schema.String.annotations({ description: "ISO-8601 UTC" }),
  deletedAt: Schema.NullOr(Schema.String).annotations({ description: "ISO-8601 UTC, null unless soft-deleted" })
}) {
  static fromDocument(document: Document): DocumentOut {
    return new DocumentOut({
      id: document.id,
      title: document.title,
      version: document.version,
      createdAt: iso(document.createdAt),
      updatedAt: iso(document.updatedAt),
      deletedAt: document.deletedAt === null ? null : iso(document.deletedAt)
    })
  }
}

/** `Update` of the protocol: a stored update with its delta in base64. */
export const UpdateOut = Schema.Struct({
  seq: Schema.Int,
  opId: Schema.String,
  actorId: Schema.String,
  deltaB64: Schema.String
}).annotations({ identifier: "Update" })
export type UpdateOut = typeof UpdateOut.Type

export const updateOut = (update: StoredUpdate): UpdateOut => ({
  seq: update.seq,
  opId: update.opId,
  actorId: update.actorId,
  deltaB64: Base64.encode(update.delta)
})

const iso = (millis: number): string => new Date(millis).toISOString()
