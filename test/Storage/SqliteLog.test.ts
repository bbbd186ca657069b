/**
 * SqliteLog, the append path of `layerSqlite`: one transaction for every document's appends of a turn, a failing
 * batch rolled back alone, and waiting (on a timer, not blocking) for a write lock held by the other connection.
 */
import { assert, describe, it } from "@effect/vitest"
import { vi } from "vitest"
import { Duration, Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { Worker } from "node:worker_threads"
import type { DocumentId } from "../../src/Domain/Document.js"
import { type AppendInOrder, DocumentStorage, inOrderAppends, withTimeout } from "../../src/Storage/DocumentStorage.js"
import { tableNames } from "../../src/Storage/Migrations.js"
import { layerSqlite } from "../../src/Storage/SqlDocumentStorage.js"
import * as SqliteLog from "../../src/Storage/SqliteLog.js"
import { tempDir } from "./helpers.js"

const Database = createRequire(import.meta.url)("better-sqlite3") as new(filename: string) => {
  exec(sql: string): void
  close(): void
}

/** Waits for the next turn of the event loop (the log posts to its worker then). */
const nextTurn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

/** A second connection to the database (to hold its write lock), closed with the test's scope. */
const otherConnection = (filename: string) =>
  Effect.acquireRelease(Effect.sync(() => new Database(filename)), (db) => Effect.sync(() => db.close()))

/** Outcomes in the order they came: [name, "stored" or the failure]. */
const recorder = () => {
  const outcomes: Array<[string, string]> = []
  const record = (name: string) => (exit: Exit.Exit<unknown, unknown>) => {
    outcomes.push([name, Exit.isSuccess(exit) ? "stored" : String(Exit.isFailure(exit) ? exit.cause : "")])
  }
  return { outcomes, record }
}

const update = (opId: string) => ({ opId, actorId: "tester", delta: new TextEncoder().encode(opId) })

/**
 * Appends "early" at 0 s and "later" at 6 s (through the log's append without a fiber), then lets the clock run to 10 s + `moreMillis`, with only the log's
 * timer and the wall clock faked: its post to the worker waits for the (real) next turn, so neither is posted
 * meanwhile. With the default bound (10 s), "early" is due at 10 s and "later" at 16 s.
 */
const earlyThenLater = (
  log: SqliteLog.SqliteLog,
  id: DocumentId,
  record: (name: string) => (exit: Exit.Exit<unknown, unknown>) => void,
  moreMillis: number
) => {
  const appendThen = inOrderAppends.get(log.append) as AppendInOrder
  assert.isDefined(appendThen)
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] })
  try {
    appendThen(id, [update("early")], record("early"))
    vi.advanceTimersByTime(6_000)
    appendThen(id, [update("later")], record("later"))
    vi.advanceTimersByTime(4_000 + moreMillis)
  } finally {
    vi.useRealTimers()
  }
}

/** The bytes of every distinct ArrayBuffer in `value` (under typed arrays too), as structured cloning copies them. */
const bufferBytes = (value: unknown): number => {
  const seen = new Set<ArrayBufferLike>()
  const visit = (v: unknown): void => {
    if (v instanceof ArrayBuffer) seen.add(v)
    else if (ArrayBuffer.isView(v)) seen.add(v.buffer)
    else if (typeof v === "object" && v !== null) Object.values(v).forEach(visit)
  }
  visit(value)
  let bytes = 0
  for (const buffer of seen) bytes += buffer.byteLength
  return bytes
}

/** A migrated database with `n` documents, its storage, and a second log on it to look at. */
const setup = (n: number, busyTimeoutMillis = 5_000, timeoutMillis = 10_000) =>
  Effect.gen(function* () {
    const filename = Path.join(yield* tempDir, "log.db")
    const context = yield* Layer.build(layerSqlite({ filename }))
    const storage = context.unsafeMap.get(DocumentStorage.key) as DocumentStorage["Type"]
    const ids: Array<DocumentId> = []
    for (let i = 0; i < n; i++) ids.push((yield* storage.create(`doc ${i}`)).id)
    const log = yield* SqliteLog.make({ filename, synchronous: "full", tables: yield* tableNames(""), busyTimeoutMillis, timeoutMillis })
    return { filename, storage, log, ids }
  })

describe("SqliteLog", () => {
  it.scoped("appends to several documents in one turn share one transaction, each numbered on its own", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(3)
      const results = yield* Effect.all(
        ids.map((id, d) => log.append(id, [update(`${d}-a`), update(`${d}-b`), update(`${d}-a`)])),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(log.transactions(), 1)
      for (const [d, result] of results.entries()) {
        assert.deepStrictEqual(result, [
          { opId: `${d}-a`, seq: 1, duplicate: false },
          { opId: `${d}-b`, seq: 2, duplicate: false },
          { opId: `${d}-a`, seq: 1, duplicate: true }
        ])
      }
      const stored = yield* storage.updatesAfter(ids[0] as DocumentId, 0, 10)
      assert.deepStrictEqual(stored.map((u) => [u.seq, u.opId]), [[1, "0-a"], [2, "0-b"]])
      const again = yield* log.append(ids[1] as DocumentId, [update("1-b"), update("1-c")])
      assert.deepStrictEqual(again, [
        { opId: "1-b", seq: 2, duplicate: true },
        { opId: "1-c", seq: 3, duplicate: false }
      ])
      assert.strictEqual((yield* storage.latestVersion(ids[1] as DocumentId)), 3)
    }))

  it.scoped("a batch that fails is rolled back alone: the other documents of the transaction are stored", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(2)
      const [first, unknown, second] = yield* Effect.all(
        [
          Effect.exit(log.append(ids[0] as DocumentId, [update("x")])),
          Effect.exit(log.append("no-such-document" as DocumentId, [update("y")])),
          Effect.exit(log.append(ids[1] as DocumentId, [update("z")]))
        ],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(log.transactions(), 1)
      assert.isTrue(Exit.isSuccess(first) && Exit.isSuccess(second))
      assert.isTrue(Exit.isFailure(unknown))
      assert.include(String(Exit.isFailure(unknown) ? unknown.cause : ""), "unknown document")
      assert.strictEqual((yield* storage.latestVersion(ids[0] as DocumentId)), 1)
      assert.strictEqual((yield* storage.latestVersion(ids[1] as DocumentId)), 1)
      assert.deepStrictEqual((yield* storage.updatesAfter("no-such-document" as DocumentId, 0, 10)), [])
    }))

  it.live("waits for a write lock another connection holds, without blocking the event loop, and fails after the bound", () =>
    Effect.gen(function* () {
      const { filename, ids, log } = yield* setup(1, 300)
      const other = yield* otherConnection(filename)
      const id = ids[0] as DocumentId
      other.exec("BEGIN IMMEDIATE")
      let ticks = 0
      const timer = setInterval(() => ticks++, 5)
      const waiting = yield* Effect.fork(log.append(id, [update("held")]))
      yield* Effect.sleep("100 millis")
      other.exec("COMMIT")
      const stored = yield* waiting.await
      clearInterval(timer)
      assert.isTrue(Exit.isSuccess(stored), "stored once the lock was released")
      assert.isAtLeast(ticks, 5, "the event loop kept running while the append waited")
      other.exec("BEGIN IMMEDIATE")
      const refused = yield* Effect.exit(log.append(id, [update("never")]))
      other.exec("ROLLBACK")
      assert.isTrue(Exit.isFailure(refused), "failed after waiting busyTimeoutMillis")
      assert.include(String(Exit.isFailure(refused) ? refused.cause : ""), "database is locked")
    }).pipe(Effect.scoped))

  it.live("an append that gets no answer within timeoutMillis fails (outcome unknown) and the log goes on", () =>
    Effect.gen(function* () {
      const { filename, ids, log } = yield* setup(1, 5_000, 200)
      const other = yield* otherConnection(filename)
      const id = ids[0] as DocumentId
      other.exec("BEGIN IMMEDIATE")
      const started = Date.now()
      const timedOut = yield* Effect.exit(log.append(id, [update("late")]))
      assert.isAtLeast(Date.now() - started, 190)
      assert.isTrue(Exit.isFailure(timedOut))
      assert.include(String(Exit.isFailure(timedOut) ? timedOut.cause : ""), "no answer within 200 ms")
      other.exec("COMMIT")
      // The timed-out batch was committed once the lock was free: "failed" meant "unknown", as documented.
      assert.deepStrictEqual(yield* log.append(id, [update("next"), update("late")]), [
        { opId: "next", seq: 2, duplicate: false },
        { opId: "late", seq: 1, duplicate: true }
      ])
    }).pipe(Effect.scoped))

  it.live("a worker that dies fails what was posted to it, and the next append starts a new one", () =>
    Effect.gen(function* () {
      const { filename, ids, log, storage } = yield* setup(1)
      const other = yield* otherConnection(filename)
      const id = ids[0] as DocumentId
      assert.deepStrictEqual(yield* log.append(id, [update("before")]), [{ opId: "before", seq: 1, duplicate: false }])
      // The worker waits for the write lock with "held" in hand; it is told to stop, then "lost" is posted behind.
      other.exec("BEGIN IMMEDIATE")
      const held = yield* Effect.fork(log.append(id, [update("held")]))
      yield* Effect.sleep("50 millis")
      const stopped = log.stopWorker()
      const lost = yield* Effect.fork(log.append(id, [update("lost")]))
      yield* Effect.sleep("50 millis")
      other.exec("COMMIT")
      yield* Effect.promise(() => stopped)
      assert.deepStrictEqual(yield* Fiber.join(held), [{ opId: "held", seq: 2, duplicate: false }])
      const failed = yield* lost.await
      assert.isTrue(Exit.isFailure(failed), "what the worker had not taken fails when it exits")
      assert.include(String(Exit.isFailure(failed) ? failed.cause : ""), "exited")
      // A new worker serves the next append; "lost" never committed, so its retry is stored, not a duplicate.
      assert.deepStrictEqual(yield* log.append(id, [update("after"), update("lost")]), [
        { opId: "after", seq: 3, duplicate: false },
        { opId: "lost", seq: 4, duplicate: false }
      ])
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["before", "held", "after", "lost"])
    }).pipe(Effect.scoped))

  it.live("a post to the worker that throws fails what that worker had first, then the batch, in order; the next append starts a new worker", () =>
    Effect.gen(function* () {
      const { filename, ids, log, storage } = yield* setup(1)
      const other = yield* otherConnection(filename)
      const id = ids[0] as DocumentId
      const appendThen = inOrderAppends.get(log.append)
      assert.isDefined(appendThen)
      const { outcomes, record } = recorder()
      // "held" is with the worker, which waits for the write lock; the next post cannot be cloned and throws.
      other.exec("BEGIN IMMEDIATE")
      appendThen!(id, [update("held")], record("held"))
      yield* nextTurn
      appendThen!(id, [{ ...update("bad"), actorId: Symbol("not cloneable") as unknown as string }], record("bad"))
      yield* nextTurn
      assert.deepStrictEqual(outcomes.map(([name]) => name), ["held", "bad"], "answered in the order they were made")
      for (const [, outcome] of outcomes) assert.include(outcome, "could not be cloned")
      other.exec("COMMIT")
      // The dropped worker finishes the transaction in hand (so "held" is stored after all: its failure said the
      // outcome is unknown) and exits; a new worker serves the next append.
      yield* Effect.repeat(storage.updatesAfter(id, 0, 10), { until: (stored) => stored.length > 0, schedule: Schedule.spaced("5 millis") })
      assert.deepStrictEqual(yield* log.append(id, [update("held"), update("after")]), [
        { opId: "held", seq: 1, duplicate: true },
        { opId: "after", seq: 2, duplicate: false }
      ])
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["held", "after"])
    }).pipe(Effect.scoped))

  it.live("closing answers the transaction in flight first, then fails what was not posted", () =>
    Effect.gen(function* () {
      const { filename, ids, storage } = yield* setup(1)
      const other = yield* otherConnection(filename)
      const id = ids[0] as DocumentId
      const scope = yield* Scope.make()
      const log = yield* SqliteLog.make({ filename, synchronous: "full", tables: yield* tableNames(""), busyTimeoutMillis: 5_000, timeoutMillis: 10_000 }).pipe(
        Scope.extend(scope)
      )
      const appendThen = inOrderAppends.get(log.append)!
      const { outcomes, record } = recorder()
      other.exec("BEGIN IMMEDIATE")
      appendThen(id, [update("in-flight")], record("in-flight"))
      yield* nextTurn
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* nextTurn
      appendThen(id, [update("late")], record("late"))
      yield* nextTurn
      assert.deepStrictEqual(outcomes, [], "closing waits for the transaction in flight")
      other.exec("COMMIT")
      yield* Fiber.join(closing)
      assert.deepStrictEqual(outcomes.map(([name]) => name), ["in-flight", "late"])
      assert.strictEqual(outcomes[0]![1], "stored")
      assert.include(outcomes[1]![1], "the storage is closed")
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["in-flight"])
    }).pipe(Effect.scoped))

  it.live("an append that times out before it was posted to the worker is dropped, never committed", () =>
    Effect.gen(function* () {
      // The default bound (10 s) is long enough for the follow-up append below to start the worker even on a
      // loaded machine.
      const { ids, log, storage } = yield* setup(1)
      const id = ids[0] as DocumentId
      // Only the log's timer and the wall clock are faked: its post to the worker waits for the (real) next turn
      // of the event loop, and the timeout fires before that.
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] })
      let dropped: Fiber.RuntimeFiber<unknown, unknown>
      try {
        dropped = Effect.runFork(log.append(id, [update("never-posted")]))
        vi.advanceTimersByTime(10_000)
      } finally {
        vi.useRealTimers()
      }
      const failed = yield* dropped.await
      assert.isTrue(Exit.isFailure(failed))
      assert.include(String(Exit.isFailure(failed) ? failed.cause : ""), "no answer within 10000 ms")
      // Nothing was posted: once the turn that would have posted it has run, no transaction ran, nothing was
      // stored, and the next append is the first.
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      assert.strictEqual(log.transactions(), 0)
      assert.deepStrictEqual(yield* log.append(id, [update("next")]), [{ opId: "next", seq: 1, duplicate: false }])
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["next"])
    }).pipe(Effect.scoped))

  it.live("of appends waiting to be posted, one that times out is dropped even while a later one is not due yet; the later one's timeout comes in its turn", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(1)
      const id = ids[0] as DocumentId
      const { outcomes, record } = recorder()
      earlyThenLater(log, id, record, 6_000)
      assert.deepStrictEqual(outcomes.map(([name]) => name), ["early", "later"], "the timer was set again for later")
      for (const [, outcome] of outcomes) assert.include(outcome, "no answer within 10000 ms")
      yield* nextTurn
      assert.strictEqual(log.transactions(), 0, "neither was posted")
      assert.deepStrictEqual(yield* log.append(id, [update("next")]), [{ opId: "next", seq: 1, duplicate: false }])
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["next"])
    }).pipe(Effect.scoped))

  it.live("an append that times out before it was posted is dropped while the one behind it, not due yet, is posted", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(1)
      const id = ids[0] as DocumentId
      const { outcomes, record } = recorder()
      earlyThenLater(log, id, record, 0)
      assert.deepStrictEqual(outcomes.map(([name]) => name), ["early"], "early is due at 10 s, later at 16 s")
      // The turn that posts: "later" goes to the worker and is stored; "early" failed and is not posted.
      yield* Effect.repeat(Effect.sync(() => outcomes.length), { until: (n) => n === 2, schedule: Schedule.spaced("5 millis") })
      assert.deepStrictEqual(outcomes, [["early", outcomes[0]?.[1] ?? ""], ["later", "stored"]])
      assert.include(outcomes[0]?.[1] ?? "", "no answer within 10000 ms")
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => u.opId), ["later"])
    }).pipe(Effect.scoped))

  it.scoped("the registry's timeout wrapper leaves the log's self-bounded methods as they are (no fiber per call)", () =>
    Effect.gen(function* () {
      const { storage } = yield* setup(0)
      const bounded = yield* withTimeout(storage, Duration.seconds(1))
      assert.strictEqual(bounded.append, storage.append)
      assert.strictEqual(bounded.updatesAfter, storage.updatesAfter)
      assert.strictEqual(bounded.putSnapshot, storage.putSnapshot)
      assert.notStrictEqual(bounded.get, storage.get)
    }))

  it.scoped("snapshots are written by the worker too, in the same transaction as the turn's appends", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(1)
      const id = ids[0] as DocumentId
      const data = new Uint8Array([1, 2, 3])
      const [appended, snapshot, unknown] = yield* Effect.all(
        [
          log.append(id, [update("a"), update("b")]),
          Effect.exit(log.putSnapshot(id, { version: 2, data })),
          Effect.exit(log.putSnapshot("no-such-document" as DocumentId, { version: 1, data }))
        ],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(log.transactions(), 1)
      assert.deepStrictEqual(appended.map((r) => r.seq), [1, 2])
      assert.isTrue(Exit.isSuccess(snapshot))
      assert.isTrue(Exit.isFailure(unknown))
      const latest = yield* storage.latestSnapshot(id)
      assert.deepStrictEqual(latest.pipe((o) => (o._tag === "Some" ? [o.value.version, Array.from(o.value.data)] : null)), [2, [1, 2, 3]])
    }))

  it.scoped("deltas and snapshots that are views of a larger buffer go to the worker as their own bytes, and are stored as such", () =>
    Effect.gen(function* () {
      const { ids, log, storage } = yield* setup(1)
      const id = ids[0] as DocumentId
      // As a small delta decoded from base64 is: a view of Node's shared 8 KiB pool.
      const pool = new Uint8Array(64 * 1024).fill(7)
      const view = (at: number, bytes: ReadonlyArray<number>) => {
        pool.set(bytes, at)
        return pool.subarray(at, at + bytes.length)
      }
      // The bytes of the ArrayBuffers in each message to the worker: posting clones (or transfers) each whole.
      const posted: Array<number> = []
      const left: Array<number> = []
      const post = Worker.prototype.postMessage
      const spy = vi.spyOn(Worker.prototype, "postMessage").mockImplementation(function(this: Worker, message, transfer) {
        if (typeof message === "string") return post.call(this, message, transfer)
        posted.push(bufferBytes(message))
        post.call(this, message, transfer)
        // Transferred, not copied: what is left on this side is detached (empty).
        left.push(bufferBytes(message))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => spy.mockRestore()))
      const [appended] = yield* Effect.all(
        [
          log.append(id, [
            { opId: "a", actorId: "tester", delta: view(100, [1, 2, 3]) },
            { opId: "b", actorId: "tester", delta: view(5_000, [4, 5]) }
          ]),
          log.putSnapshot(id, { version: 2, data: view(40_000, [9, 8, 7, 6]) })
        ],
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(appended.map((r) => r.seq), [1, 2])
      assert.strictEqual(posted.length, 1, "one message for the turn")
      assert.strictEqual(posted[0], 9, "the bytes of the views, not the 64 KiB buffer under them")
      assert.deepStrictEqual(left, [0], "the packed buffer was transferred")
      assert.deepStrictEqual((yield* storage.updatesAfter(id, 0, 10)).map((u) => Array.from(u.delta)), [[1, 2, 3], [4, 5]])
      const latest = yield* storage.latestSnapshot(id)
      assert.deepStrictEqual(latest.pipe((o) => (o._tag === "Some" ? Array.from(o.value.data) : null)), [9, 8, 7, 6])
    }))
})
