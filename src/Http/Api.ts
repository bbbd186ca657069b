/**
 * The REST API of protocol section 1, defined once: the server (`HttpApiBuilder`), the OpenAPI document and a
 * typed client (`HttpApiClient.make(Api)`) are all derived from it.
 *
 * To add an endpoint to an existing group, add it to the group below (e.g. `.add(getUpdates)` on `DocumentsGroup`)
 * and handle it in that group's handlers Layer (`DocumentsHandlers.ts`). A new group gets its own `.add(...)` on
 * `Api` *before* `.prefix("/api/v1")`, which only prefixes the groups already added.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { DocumentId, DocumentOut, Title, UpdateOut } from "../Domain/Document.js"
import {
  BadRequest,
  DocumentNotFound,
  Forbidden,
  InternalError,
  InvalidBaseVersion,
  ServiceUnavailable,
  SnapshotNotFound
} from "../Domain/Errors.js"
import { ActorId, OpId } from "../Domain/Protocol.js"
import { Authentication } from "./Authorizer.js"

/** Largest and default page size of `GET /documents`. */
export const MAX_PAGE_SIZE = 500
export const DEFAULT_PAGE_SIZE = 50

/** Every path of the REST API starts with this. */
export const PREFIX = "/api/v1"

// ---------------------------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------------------------

export const HealthOk = Schema.Struct({ status: Schema.Literal("ok") }).annotations({ identifier: "HealthOk" })

/** Body of `POST /documents` and `PATCH /documents/{id}`. */
export const TitleBody = Schema.Struct({ title: Title }).annotations({ identifier: "TitleBody" })

/** `"true"` or `"false"`; absent means false. */
const IncludeDeleted = Schema.optionalWith(
  Schema.BooleanFromString.annotations({ description: "true to include soft-deleted documents" }),
  { default: () => false }
)

const Limit = Schema.NumberFromString.pipe(
  Schema.int({ message: () => "limit must be an integer" }),
  Schema.between(1, MAX_PAGE_SIZE, { message: () => `limit must be between 1 and ${MAX_PAGE_SIZE}` })
).annotations({
  description: `Page size, 1..${MAX_PAGE_SIZE}`,
  jsonSchema: { type: "integer", minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }
})

export const ListDocumentsParams = Schema.Struct({
  include_deleted: IncludeDeleted,
  limit: Schema.optionalWith(Limit, { default: () => DEFAULT_PAGE_SIZE }),
  cursor: Schema.optional(
    Schema.String.annotations({ description: "Opaque: the nextCursor of the previous page" })
  )
})

export const GetDocumentParams = Schema.Struct({ include_deleted: IncludeDeleted })

export const DocumentPage = Schema.Struct({
  items: Schema.Array(DocumentOut),
  nextCursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` to get the next page; null on the last page"
  })
}).annotations({ identifier: "DocumentPage" })
export type DocumentPage = typeof DocumentPage.Type

/** Largest and default page size of `GET /documents/{id}/updates`. */
export const MAX_UPDATES_PAGE = 10_000
export const DEFAULT_UPDATES_PAGE = 1_000

export const ListUpdatesParams = Schema.Struct({
  after: Schema.optionalWith(
    Schema.NumberFromString.pipe(
      Schema.int({ message: () => "after must be an integer" }),
      Schema.nonNegative({ message: () => "after must be 0 or more" })
    ).annotations({ description: "Return updates with seq > after", jsonSchema: { type: "integer", minimum: 0, default: 0 } }),
    { default: () => 0 }
  ),
  limit: Schema.optionalWith(
    Schema.NumberFromString.pipe(
      Schema.int({ message: () => "limit must be an integer" }),
      Schema.between(1, MAX_UPDATES_PAGE, { message: () => `limit must be between 1 and ${MAX_UPDATES_PAGE}` })
    ).annotations({
      description: `Page size, 1..${MAX_UPDATES_PAGE}`,
      jsonSchema: { type: "integer", minimum: 1, maximum: MAX_UPDATES_PAGE, default: DEFAULT_UPDATES_PAGE }
    }),
    { default: () => DEFAULT_UPDATES_PAGE }
  )
})

export const UpdatesPage = Schema.Struct({
  version: Schema.Int,
  updates: Schema.Array(UpdateOut)
}).annotations({ identifier: "UpdatesPage" })

/** Body of `POST /documents/{id}/updates`: the fields of the WebSocket `update` message. */
export const UpdateBody = Schema.Struct({
  opId: OpId,
  actorId: ActorId,
  baseVersion: Schema.Int.pipe(Schema.nonNegative()),
  deltaB64: Schema.String.annotations({ description: "Standard padded base64, 1..MAX_UPDATE_BYTES decoded" })
}).annotations({ identifier: "UpdateBody" })

export const UpdateAccepted = Schema.Struct({
  seq: Schema.Int,
  duplicate: Schema.Boolean
}).annotations({ identifier: "UpdateAccepted" })

export const SnapshotOut = Schema.Struct({
  version: Schema.Int,
  snapshotB64: Schema.String
}).annotations({ identifier: "Snapshot" })

const id = HttpApiSchema.param("id", DocumentId)

// ---------------------------------------------------------------------------------------------------------------
// Endpoints and groups
// ---------------------------------------------------------------------------------------------------------------

export const HealthGroup = HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("check", "/health")
    .addSuccess(HealthOk)
    .addError(ServiceUnavailable)
    .annotate(OpenApi.Summary, "Liveness and database reachability")
)

export const DocumentsGroup = HttpApiGroup.make("documents")
  .add(
    HttpApiEndpoint.post("create", "/documents")
      .setPayload(TitleBody)
      .addSuccess(DocumentOut, { status: 201 })
      .annotate(OpenApi.Summary, "Create a document (version 0)")
  )
  .add(
    HttpApiEndpoint.get("list", "/documents")
      .setUrlParams(ListDocumentsParams)
      .addSuccess(DocumentPage)
      .addError(BadRequest)
      .annotate(OpenApi.Summary, "List documents in creation order, one page at a time")
  )
  .add(
    HttpApiEndpoint.get("get")`/documents/${id}`
      .setUrlParams(GetDocumentParams)
      .addSuccess(DocumentOut)
      .addError(DocumentNotFound)
      .annotate(OpenApi.Summary, "A document's metadata")
  )
  .add(
    HttpApiEndpoint.patch("rename")`/documents/${id}`
      .setPayload(TitleBody)
      .addSuccess(DocumentOut)
      .addError(DocumentNotFound)
      .annotate(OpenApi.Summary, "Rename a live document")
  )
  .add(
    HttpApiEndpoint.del("delete")`/documents/${id}`
      .addSuccess(HttpApiSchema.NoContent)
      .addError(DocumentNotFound)
      .annotate(OpenApi.Summary, "Soft-delete a live document")
  )
  .add(
    HttpApiEndpoint.get("listUpdates")`/documents/${id}/updates`
      .setUrlParams(ListUpdatesParams)
      .addSuccess(UpdatesPage)
      .addError(DocumentNotFound)
      .annotate(OpenApi.Summary, "Updates with seq > after, ascending, read in the document's order")
  )
  .add(
    HttpApiEndpoint.post("submitUpdate")`/documents/${id}/updates`
      .setPayload(UpdateBody)
      .addSuccess(UpdateAccepted)
      .addError(BadRequest)
      .addError(DocumentNotFound)
      .addError(InvalidBaseVersion)
      .annotate(
        OpenApi.Summary,
        "Append an update: ordered, deduplicated by opId and broadcast like a WebSocket update"
      )
  )
  .add(
    HttpApiEndpoint.get("snapshot")`/documents/${id}/snapshot`
      .addSuccess(SnapshotOut)
      .addError(DocumentNotFound)
      .addError(SnapshotNotFound)
      .annotate(OpenApi.Summary, "The latest snapshot")
  )
  // Every documents endpoint needs a bearer token when AUTH_SECRET is set: 401 without a valid one (from the
  // middleware), 403 when its role or `docs` do not grant the call (from the handler, via the Authorizer).
  .middleware(Authentication)
  .addError(Forbidden)

/**
 * The whole REST API. Every endpoint may also answer 400 (`HttpApiDecodeError`, added by `HttpApi.make`) and
 * 500 (`InternalError`).
 */
export class Api extends HttpApi.make("docsync")
  .add(HealthGroup)
  .add(DocumentsGroup)
  .addError(InternalError)
  .prefix(PREFIX)
  .annotateContext(
    OpenApi.annotations({
      title: "docsync",
      version: "1.0.0",
      description: "REST API of the docsync collaborative-document sync server (protocol v1, section 1)"
    })
  ) {}
