/**
 * In-process micro-benchmark of storage alone under the many-docs load (issue 6, item 4: "append a batch"): open-loop
 * arrivals at `--rate` updates/s (exponential gaps) spread over `--docs` documents, appended through the real
 * `DocumentStorage` the way document actors do (one append in flight per document; what arrives meanwhile goes
 * into that document's next append). No sockets, no actor, no JSON: the latency from an update's arrival to its
 * append being answered is the floor any server on this storage can reach for the many-docs scenario.
 *
 *   node --import tsx bench/micro-storage.ts [--storage sqlite|sqlite-normal|memory] [--rate 4000] [--docs 200] [--duration 20]
 *
 * Prints latency p50/p95/p99/max in ms and how many appends carried the updates.
 */
import { Effect, Runtime } from "effect"
import type { DocumentId } from "../src/Domain/Document.js"
import { DocumentStorage } from "../src/Storage/DocumentStorage.js"
import { Histogram, num, parseFlags, round, str } from "./lib.js"
import { storageFromFlag } from "./micro-storage-flag.js"

const flags = parseFlags(process.argv.slice(2))
const rate = num(flags, "rate", 4_000)
const docs = num(flags, "docs", 200)
const durationSec = num(flags, "duration", 20)

const storageKind = str(flags, "storage", "sqlite")
const storage = storageFromFlag(storageKind)

interface Waiting {
  readonly opId: string
  readonly arrived: number
}

const program = Effect.gen(function* () {
  const store = yield* DocumentStorage
  const runtime = yield* Effect.runtime<never>()
  const ids: Array<DocumentId> = []
  for (let i = 0; i < docs; i++) ids.push((yield* store.create(`doc ${i}`)).id)
  const delta = new Uint8Array(80).fill(7)
  // Warm-up, not measured: starts the SQLite commit worker (it starts on the first write, and its ~100 ms start
  // would otherwise be the p99 of a short run) and brings every document's pages into the cache.
  yield* Effect.forEach(ids, (id) => store.append(id, [{ opId: `warm-${id}`, actorId: "bench", delta }]), {
    concurrency: "unbounded",
    discard: true
  })
  const latency = new Histogram()
  const waiting = new Map<DocumentId, Array<Waiting>>()
  const busy = new Set<DocumentId>()
  let appends = 0
  let failures = 0
  let opCounter = 0

  const appendNext = (id: DocumentId): void => {
    const batch = waiting.get(id) ?? []
    if (batch.length === 0 || busy.has(id)) return
    waiting.set(id, [])
    busy.add(id)
    appends++
    const updates = batch.map(({ opId }) => ({ opId, actorId: "bench", delta }))
    Runtime.runCallback(runtime)(store.append(id, updates), {
      onExit: (exit) => {
        const now = performance.now()
        if (exit._tag === "Success") for (const { arrived } of batch) latency.record(now - arrived)
        else failures += batch.length
        busy.delete(id)
        appendNext(id)
      }
    })
  }

  const started = performance.now()
  const end = started + durationSec * 1000
  let next = started
  yield* Effect.async<void>((resume) => {
    const tick = () => {
      const now = performance.now()
      while (next <= now && next < end) {
        const id = ids[Math.floor(Math.random() * ids.length)] as DocumentId
        const list = waiting.get(id)
        const entry = { opId: `op-${opCounter++}`, arrived: now }
        if (list === undefined) waiting.set(id, [entry])
        else list.push(entry)
        appendNext(id)
        next += (-Math.log(1 - Math.random()) * 1000) / rate
      }
      // Polled with a 1 ms timer, and each update stamped when it is handed to storage (not at its scheduled
      // time): the latency is storage's alone. Polling with setImmediate kept a whole core busy, which the
      // commit worker then had to share on a 2-core machine (a server's event loop idles between events).
      if (now < end || busy.size > 0) setTimeout(tick, 1)
      else resume(Effect.void)
    }
    tick()
  })
  const elapsed = (performance.now() - started) / 1000
  const summary = latency.summary()
  console.log(
    `storage ${storageKind}, ${docs} documents, ${rate} updates/s for ${durationSec} s: ` +
      `latency p50 ${summary.p50} ms, p95 ${summary.p95} ms, p99 ${summary.p99} ms, max ${summary.max} ms; ` +
      `${summary.count} updates in ${appends} appends, ${failures} failed, in ${round(elapsed, 1)} s`
  )
})

try {
  await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(storage.layer))))
} finally {
  storage.dispose()
}
