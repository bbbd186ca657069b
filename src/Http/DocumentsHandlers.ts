/**
 * Handlers of the `documents` group: document CRUD over `DocumentStorage`, deletes through the `DocumentRegistry`. Endpoints added to `DocumentsGroup` in
 * `Api.ts` must be handled here too (one more `.handle(name, ...)`), or the group Layer does not type-check.
 *
 * Every handler starts with `allow(action, id)`: the `Authentication` middleware has already established the
 * `CurrentPrincipal` (401 otherwise), and the `Authorizer` decides whether it may do this (403 otherwise) before
 * anything is read, so a caller without the right learns nothing, not even whether the document exists.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Either, Option } from "effect"
import { ServerConfig } from "../Config.js"
import * as Base64 from "../Domain/Base64.js"
import { type Document, type DocumentId, DocumentOut, type UpdateOut, updateOut } from "../Domain/Document.js"
import * as Protocol from "../Domain/Protocol.js"
import { DocumentRegistry } from "../Document/DocumentRegistry.js"
import { BadRequest, DocumentNotFound, InternalError, InvalidBaseVersion, SnapshotNotFound } from "../Domain/Errors.js"
import { DocumentStorage, StorageError } from "../Storage/DocumentStorage.js"
import { Api } from "./Api.js"
import { type Action, Authorizer, CurrentPrincipal } from "./Authorizer.js"
import * as Cursor from "./Cursor.js"

export const DocumentsHandlers = HttpApiBuilder.group(Api, "documents", (handlers) =>
  Effect.gen(function* () {
    const storage = yield* DocumentStorage
    const registry = yield* DocumentRegistry
    const config = yield* ServerConfig
    const authorizer = yield* Authorizer

    const allow = (action: Action, documentId?: DocumentId) =>
      Effect.flatMap(CurrentPrincipal, (principal) => authorizer.authorize(principal, action, documentId))

    const found = (id: DocumentId) =>
      Option.match({
        onNone: () => Effect.fail(DocumentNotFound.of(id)),
        onSome: (document: Document) =>
          Effect.succeed(DocumentOut.fromDocument(document))
      })

    return handlers
      .handle("create", ({ payload }) =>
        allow("create").pipe(
          Effect.zipRight(storage.create(payload.title)),
          Effect.map(DocumentOut.fromDocument),
          refailStorage
        )
      )
      .handle("list", ({ urlParams }) =>
        Effect.gen(function* () {
          yield* allow("list")
          const after = urlParams.cursor === undefined
            ? Option.none<number>()
            : Option.some(
              yield* Either.match(Cursor.decode(urlParams.cursor), {
                onLeft: (message) => Effect.fail(new BadRequest({ message })),
                onRight: Effect.succeed
              })
            )
          const page = yield* storage.list({ includeDeleted: urlParams.include_deleted, limit: urlParams.limit, after })
          return {
            items: page.items.map(DocumentOut.fromDocument),
            nextCursor: Option.getOrNull(Option.map(page.next, Cursor.encode))
          }
        }).pipe(refailStorage)
      )
      .handle("get", ({ path, urlParams }) =>
        allow("read", path.id).pipe(
          Effect.zipRight(storage.get(path.id, urlParams.include_deleted)),
          Effect.flatMap(found(path.id)),
          refailStorage
        )
      )
      .handle("rename", ({ path, payload }) =>
        allow("rename", path.id).pipe(
          Effect.zipRight(storage.rename(path.id, payload.title)),
          Effect.flatMap(found(path.id)),
          refailStorage
        )
      )
      // Through the registry: a loaded document must stop taking updates and close its sockets (4410).
      .handle("delete", ({ path }) =>
        Effect.flatMap(Effect.zipRight(allow("delete", path.id), registry.remove(path.id)), (outcome): Effect.Effect<void, DocumentNotFound | InternalError> => {
          switch (outcome._tag) {
            case "Deleted":
              return Effect.void
            case "NotFound":
              return Effect.fail(DocumentNotFound.of(path.id))
            case "Failed":
              return internal(`delete of ${path.id} failed: ${outcome.message}`)
          }
        })
      )
      .handle("listUpdates", ({ path, urlParams }) =>
        Effect.flatMap(Effect.zipRight(allow("read", path.id), registry.read(path.id, urlParams.after, urlParams.limit)), (outcome): Effect.Effect<
          { readonly version: number; readonly updates: ReadonlyArray<UpdateOut> },
          DocumentNotFound | InternalError
        > => {
          switch (outcome._tag) {
            case "Read":
              return Effect.succeed({ version: outcome.version, updates: outcome.updates.map(updateOut) })
            case "NotFound":
              return Effect.fail(DocumentNotFound.of(path.id))
            case "Failed":
              return internal(`read of ${path.id} failed: ${outcome.message}`)
          }
        })
      )
      .handle("submitUpdate", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* allow("write", path.id)
          const decoded = Protocol.decodePayload(payload.deltaB64, "deltaB64", config.maxUpdateBytes)
          if ("type" in decoded) return yield* Effect.fail(new BadRequest({ message: decoded.message }))
          const outcome = yield* registry.update(path.id, { ...payload, delta: decoded.bytes })
          switch (outcome._tag) {
            case "Stored":
              return { seq: outcome.seq, duplicate: false }
            case "Duplicate":
              return { seq: outcome.seq, duplicate: true }
            case "InvalidBaseVersion":
              return yield* Effect.fail(InvalidBaseVersion.of(payload.baseVersion, outcome.version))
            case "NotFound":
              return yield* Effect.fail(DocumentNotFound.of(path.id))
            case "Failed":
              return yield* internal(`update of ${path.id} failed: ${outcome.message}`)
          }
        })
      )
      .handle("snapshot", ({ path }) =>
        Effect.gen(function* () {
          yield* allow("read", path.id)
          if (Option.isNone(yield* storage.get(path.id))) return yield* Effect.fail(DocumentNotFound.of(path.id))
          const snapshot = yield* storage.latestSnapshot(path.id)
          if (Option.isNone(snapshot)) {
            return yield* Effect.fail(
              new SnapshotNotFound({ documentId: path.id, message: `document ${path.id} has no snapshot yet` })
            )
          }
          return { version: snapshot.value.version, snapshotB64: Base64.encode(snapshot.value.data) }
        }).pipe(refailStorage)
      )
  })
)

const internal = (detail: string) =>
  Effect.logError(detail).pipe(Effect.zipRight(Effect.fail(new InternalError({ message: STORAGE_FAILED }))))

/**
 * Logs a `StorageError` with its cause and answers 500 with a message that gives nothing of the backend away.
 * Nothing was stored, so the client may retry.
 */
export const refailStorage = <A, E, R>(
  effect: Effect.Effect<A, E | StorageError, R>
): Effect.Effect<A, Exclude<E, StorageError> | InternalError, R> =>
  Effect.catchIf(
    effect,
    (error): error is StorageError => error instanceof StorageError,
    (error) =>
      Effect.logError(`storage failed during ${error.operation}`, error.cause).pipe(
        Effect.zipRight(
          Effect.fail(new InternalError({ message: STORAGE_FAILED }))
        )
      )
  )

const STORAGE_FAILED = "the server could not reach its storage; nothing was changed, retry later"
