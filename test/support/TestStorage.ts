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
