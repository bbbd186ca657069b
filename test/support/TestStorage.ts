/**
 * Storage Layers for HTTP tests: the in-memory storage with some operations replaced.
 */
import { Effect, Layer } from "effect"
import {
  DocumentStorage,
  type DocumentStorageShape,
  makeMemory,
  StorageError
} from "../../src/Storage/DocumentStorage.js"

/** `layerMemory`, with the operations `override` returns replacing the memory ones (which it receives). */
export const layerMemoryWith = (
  override: (memory: DocumentStorageShape) => Partial<DocumentStorageShape>
): Layer.Layer<DocumentStorage> =>
  Layer.effect(
    DocumentStorage,
    Effect.map(makeMemory, (memory) => ({ ...memory, ...override(memory) }))
  )

/**
 * Memory storage whose `append` takes the path PostgreSQL's does: an Effect per call, one append of a document at a
 * time (the new `append` is not in `inOrderAppends`, so actors do not send a document's next batch while one is
 * stored, and `withTimeout` bounds it with a fiber as it bounds PostgreSQL's).
 */
export const layerMemorySequential: Layer.Layer<DocumentStorage> = layerMemoryWith((memory) => ({
  append: (id, updates) => memory.append(id, updates)
}))

/** Memory storage whose every call fails, as if the database were down (ping included). */
export const layerBroken: Layer.Layer<DocumentStorage> = layerMemoryWith(() => {
  const down = (operation: string) => Effect.fail(new StorageError({ operation, cause: new Error("connection refused") }))
  return {
    ping: down("ping"),
    create: () => down("create"),
    get: () => down("get"),
    list: () => down("list"),
    rename: () => down("rename"),
    softDelete: () => down("softDelete")
  }
})
