/**
 * In-process micro-benchmark of the document actor's hot path (issue 6, item 4): one document, `--readers` joined
 * connections that only count bytes, and one writer that keeps `--inflight` updates unacknowledged, submitting
 * through `Session.offer` like the socket route does. No sockets, no JSON parsing of frames: what is left is the
 * mailbox, the actor, storage and the encoding of acks and broadcasts.
 *
 *   node --import tsx bench/micro-actor.ts [--storage memory|sqlite|sqlite-normal] [--updates 50000] [--readers 10] [--inflight 16]
 *
 * Prints updates/s and CPU µs per update (the process's user + system time).
 */
import { Deferred, Effect, Layer, Logger, LogLevel } from "effect"
import * as Config from "../src/Config.js"
import { type Connection, type Frame, frameLength, once, type UpdateOutcome } from "../src/Document/DocumentActor.js"
import * as DocumentRegistry from "../src/Document/DocumentRegistry.js"
import { DocumentStorage } from "../src/Storage/DocumentStorage.js"
import { num, parseFlags, str } from "./lib.js"
import { storageFromFlag } from "./micro-storage-flag.js"

const flags = parseFlags(process.argv.slice(2))
const total = num(flags, "updates", 50_000)
const readers = num(flags, "readers", 10)
const inflight = num(flags, "inflight", 16)

const storageKind = str(flags, "storage", "memory")
const storage = storageFromFlag(storageKind)

const counting = (name: string): Connection & { bytes: number } => {
  const connection = {
    clientId: name,
    actorId: name,
    bytes: 0,
    send: (frame: Frame) => {
      connection.bytes += frameLength(frame)
    },
    close: () => {}
  }
  return connection
}

const program = Effect.gen(function* () {
  const registry = yield* DocumentRegistry.DocumentRegistry
  const store = yield* DocumentStorage
  const document = yield* store.create("micro")
  for (let i = 0; i < readers; i++) yield* registry.join(document.id, counting(`reader-${i}`), undefined)
  const writer = counting("writer")
  const [, session] = yield* registry.join(document.id, writer, undefined)
  const delta = new Uint8Array(60).fill(7)
  const deltaB64 = Buffer.from(delta).toString("base64")
  const done = yield* Deferred.make<void>()
  let sent = 0
  let acked = 0
  const send = () => {
    const n = sent++
    session.offer({
      _tag: "Update",
      origin: writer,
      opId: `op-${n}`,
      baseVersion: 0,
      actorId: "writer",
      delta,
      deltaB64,
      reply: once((outcome: UpdateOutcome) => {
        if (outcome._tag !== "Stored") throw new Error(`unexpected ${outcome._tag}`)
        acked++
        if (acked === total) Deferred.unsafeDone(done, Effect.void)
        else if (sent < total) send()
      })
    })
  }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < inflight; i++) send()
  yield* Deferred.await(done)
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  console.log(
    `${storageKind}: ${total} updates × ${readers} readers in ${ms.toFixed(0)} ms: ` +
      `${Math.round(total / (ms / 1000))} updates/s, ${((cpu.user + cpu.system) / total).toFixed(1)} µs CPU per update`
  )
})

await Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(
      DocumentRegistry.layer.pipe(
        Layer.provideMerge(storage.layer),
        Layer.provideMerge(Config.layer({ mailboxCapacity: 4096 })),
        Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))
      )
    )
  )
)
storage.dispose()
