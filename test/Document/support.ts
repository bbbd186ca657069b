/**
 * Helpers for actor tests: a recording connection and a registry on in-memory storage.
 */
import { Layer, Logger, LogLevel } from "effect"
import * as Config from "../../src/Config.js"
import type { Connection } from "../../src/Document/DocumentActor.js"
import * as DocumentRegistry from "../../src/Document/DocumentRegistry.js"
import { type DocumentStorage, layerMemory } from "../../src/Storage/DocumentStorage.js"
import { layerMemorySequential, layerMemoryWith } from "../support/TestStorage.js"

export interface RecordingConnection extends Connection {
  readonly frames: Array<Record<string, unknown>>
  readonly closed: Array<number>
  /** Frames of one type. */
  readonly of: (type: string) => Array<Record<string, unknown>>
}

let counter = 0

export const recordingConnection = (actorId = `actor-${++counter}`): RecordingConnection => {
  const frames: Array<Record<string, unknown>> = []
  const closed: Array<number> = []
  return {
    clientId: `client-${++counter}`,
    actorId,
    send: (frame) => {
      if (closed.length !== 0) return
      const text = typeof frame === "string" || frame instanceof Uint8Array
        ? Buffer.from(frame).toString()
        : Buffer.concat(frame).toString()
      frames.push(JSON.parse(text) as Record<string, unknown>)
    },
    close: (code) => {
      closed.push(code)
    },
    frames,
    closed,
    of: (type) => frames.filter((frame) => frame.type === type)
  }
}

/** A registry on the given storage layer (in-memory by default). */
export const registryLayer = (
  config: Partial<Config.ServerConfigShape> = {},
  storage: Layer.Layer<DocumentStorage> = layerMemory
) =>
  DocumentRegistry.layer.pipe(
    Layer.provideMerge(storage),
    Layer.provideMerge(Config.layer(config)),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.None))
  )

/**
 * The two ways an actor stores its batches, for suites that run on both: in order, without a fiber (SQLite's commit
 * worker, memory://), and one append at a time in an Effect (PostgreSQL).
 */
export const appendPaths: ReadonlyArray<readonly [string, Layer.Layer<DocumentStorage>]> = [
  ["in order (memory://, SQLite)", layerMemory],
  ["one at a time (PostgreSQL)", layerMemorySequential]
]

/** In-memory storage with some of its methods replaced (the same helper the HTTP tests use). */
export const wrapStorage = layerMemoryWith

export const delta = (text: string) => {
  const bytes = new TextEncoder().encode(text)
  return { delta: bytes, deltaB64: Buffer.from(bytes).toString("base64") }
}

/** A full garbage collection: V8's `gc`, exposed by vitest.config.ts (--expose-gc). */
export const collectGarbage = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with --expose-gc (vitest.config.ts passes it)")
  gc()
}
