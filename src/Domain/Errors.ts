/**
 * Errors that cross the HTTP boundary, each annotated with its status. Every body carries a `message`.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** Missing, malformed, forged or expired credentials (protocol section 4). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401, description: "Missing, malformed, forged or expired token" })
) {}

/** Valid credentials that do not grant this action on this document (protocol section 4). */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403, description: "The token does not grant this action or document" })
) {}

export class DocumentNotFound extends Schema.TaggedError<DocumentNotFound>()(
  "DocumentNotFound",
  { message: Schema.String, documentId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  static of(documentId: string): DocumentNotFound {
    return new DocumentNotFound({ documentId, message: `document ${documentId} not found` })
  }
}

export class SnapshotNotFound extends Schema.TaggedError<SnapshotNotFound>()(
  "SnapshotNotFound",
  { message: Schema.String, documentId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** baseVersion is ahead of the document: the client must resynchronise. Carries what it needs to recover. */
export class InvalidBaseVersion extends Schema.TaggedError<InvalidBaseVersion>()(
  "InvalidBaseVersion",
  {
    code: Schema.Literal("invalid_base_version"),
    message: Schema.String,
    baseVersion: Schema.Int,
    version: Schema.Int
  },
  HttpApiSchema.annotations({ status: 409 })
) {
  static of(baseVersion: number, version: number): InvalidBaseVersion {
    return new InvalidBaseVersion({
      code: "invalid_base_version",
      baseVersion,
      version,
      message: `baseVersion ${baseVersion} is ahead of the document version ${version}`
    })
  }
}

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 413 })
) {}

/** The server failed (storage unreachable or broken); nothing was stored. Safe to retry. */
export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { status: Schema.Literal("error"), message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}
