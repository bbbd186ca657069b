/**
 * The `--storage memory|sqlite|sqlite-normal` flag of the in-process micro-benchmarks: a fresh store, SQLite in a
 * temporary directory that `dispose` removes.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Layer } from "effect"
import { type DocumentStorage, layerMemory } from "../src/Storage/DocumentStorage.js"
import { layerSqlite } from "../src/Storage/SqlDocumentStorage.js"

export const storageFromFlag = (kind: string): { readonly layer: Layer.Layer<DocumentStorage>; readonly dispose: () => void } => {
  if (kind !== "memory" && kind !== "sqlite" && kind !== "sqlite-normal") {
    throw new Error(`--storage must be memory, sqlite or sqlite-normal, got ${kind}`)
  }
  const dir = mkdtempSync(join(tmpdir(), "docsync-micro-"))
  const layer = kind === "memory"
    ? layerMemory
    : layerSqlite({ filename: join(dir, "micro.db"), synchronous: kind === "sqlite-normal" ? "normal" : "full" }).pipe(Layer.orDie)
  return { layer, dispose: () => rmSync(dir, { recursive: true, force: true }) }
}
