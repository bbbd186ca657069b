/**
 * Property: for random interleavings of joins, leaves, updates (pipelined or awaited), repeated opIds, actor
 * crashes (before or after the commit) and unloads, every client's view (state + acks + remote_updates) is a
 * gap-free, overlap-free run of the stored log, and the stored seqs are contiguous. Twice: on storage that commits
 * one batch at a time, and on storage that commits a document's appends in order, as SQLite's commit worker does
 * (batches in flight, commands taken at once by the actor), where the commits come at random points and a
 * "crash" is a batch reported failed (before or after it committed).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Scope, TestClock, TestContext } from "effect"
import fc from "fast-check"
import type { DocumentId } from "../../src/Domain/Document.js"
import * as DocumentActor from "../../src/Document/DocumentActor.js"
import { DocumentRegistry, type Session } from "../../src/Document/DocumentRegistry.js"
import { boundsItself, DocumentStorage, type DocumentStorageShape, inOrderAppends, StorageError } from "../../src/Storage/DocumentStorage.js"
import { delta, recordingConnection, type RecordingConnection, registryLayer, wrapStorage } from "./support.js"

type Op =
  | { readonly _tag: "join"; readonly client: number; readonly resume: boolean }
  | { readonly _tag: "leave"; readonly client: number }
  | { readonly _tag: "update"; readonly client: number; readonly reuse: number | null; readonly await: boolean }
  | { readonly _tag: "crash"; readonly when: "before" | "after" | "late" }
  | { readonly _tag: "idle" }
  | { readonly _tag: "commit" }

const CLIENTS = 4

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("join" as const), client: fc.nat(CLIENTS - 1), resume: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("leave" as const), client: fc.nat(CLIENTS - 1) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("update" as const),
      client: fc.nat(CLIENTS - 1),
      reuse: fc.option(fc.nat(30), { nil: null }),
      await: fc.boolean()
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("crash" as const), when: fc.constantFrom("before" as const, "after" as const, "late" as const) })
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "idle" as const }) },
  { weight: 3, arbitrary: fc.constant({ _tag: "commit" as const }) }
)

/** The storage under test, and how the test moves its commits along. */
interface Harness {
  readonly layer: Layer.Layer<DocumentStorage>
  /**
   * The next append fails: before it is stored, or after; or (storage that commits in order) it is reported failed
   * and stored later, before the appends after it (a timeout, then the commit).
   */
  readonly crashNext: (when: "before" | "after" | "late") => void
  /** Commits the oldest append waiting, if any (storage that commits in order). */
  readonly commitOne: Effect.Effect<void>
  /** Runs an effect, committing waiting appends while it waits for them. */
  readonly drive: <A>(effect: Effect.Effect<A>) => Effect.Effect<A>
}

/** Storage that commits one batch at a time (PostgreSQL's path), an actor defect standing for a crash. */
const sequential = (): Harness => {
  let crash: "before" | "after" | undefined
  const layer = wrapStorage((inner) => ({
    append: (id, updates) => {
      const mode = crash
      crash = undefined
      if (mode === "before") return Effect.die("crash before commit")
      const appended = inner.append(id, updates)
      return mode === "after" ? Effect.zipRight(appended, Effect.die("crash after commit")) : appended
    }
  }))
  return {
    layer,
    crashNext: (when) => {
      crash = when === "late" ? "after" : when
    },
    commitOne: Effect.void,
    drive: (effect) => effect
  }
}

/** Storage whose appends start with a callback and commit in order when the test says (`inOrderAppends`). */
const inOrder = (): Harness => {
  let crash: "before" | "after" | "late" | undefined
  const waiting: Array<Effect.Effect<void>> = []
  /** Wakes a `drive` that waits for an append to commit. */
  let appended: (() => void) | undefined
  const layer = wrapStorage((inner) => {
    const append: DocumentStorageShape["append"] = (id, updates) => inner.append(id, updates)
    boundsItself.add(append)
    inOrderAppends.set(append, (id, updates, done) => {
      const mode = crash
      crash = undefined
      const failed = Exit.fail(new StorageError({ operation: "append", cause: `injected: ${mode}` }))
      waiting.push(
        mode === "before"
          ? Effect.sync(() => done(failed))
          : mode === "late"
          ? Effect.sync(() => {
            done(failed)
            waiting.unshift(Effect.asVoid(Effect.exit(inner.append(id, updates))))
          })
          : Effect.flatMap(Effect.exit(inner.append(id, updates)), (exit) => Effect.sync(() => done(mode === "after" ? failed : exit)))
      )
      appended?.()
    })
    return { append }
  })
  const commitOne = Effect.suspend(() => waiting.shift() ?? Effect.void)
  return {
    layer,
    crashNext: (when) => {
      crash = when
    },
    commitOne,
    // Waits suspended (not polling), so that TestClock.adjust, which waits for the test's fibers to suspend, can run.
    drive: (effect) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(effect)
        const append = Effect.async<Option.Option<Exit.Exit<unknown>>>((resume) => {
          if (waiting.length > 0) return resume(Effect.succeedNone)
          appended = () => {
            appended = undefined
            resume(Effect.succeedNone)
          }
        })
        while (true) {
          // It runs as far as it can without a commit (so appends not waited for pile up: several batches in
          // flight); then one commit at a time, letting the document's fiber run in between (it may catch up).
          yield* Effect.repeatN(Effect.yieldNow(), 10)
          const done = fiber.unsafePoll()
          if (done !== null) return yield* (done as Exit.Exit<never>)
          if (waiting.length > 0) {
            yield* commitOne
            continue
          }
          const ended = yield* Effect.raceFirst(Effect.asSome(Fiber.await(fiber)), append)
          if (Option.isSome(ended)) return yield* (ended.value as Exit.Exit<never>)
        }
      })
  }
}

interface Client {
  readonly connection: RecordingConnection
  readonly scope: Scope.CloseableScope
  readonly session: Session
}

const run = (ops: ReadonlyArray<Op>, harness: Harness) => {
  const { drive } = harness
  return Effect.gen(function* () {
    const registry = yield* DocumentRegistry
    const store = yield* DocumentStorage
    const id: DocumentId = (yield* store.create("prop")).id
    const clients = new Map<number, Client>()
    const views: Array<{ readonly connection: RecordingConnection; readonly since: number | undefined }> = []
    const pending: Array<Deferred.Deferred<DocumentActor.UpdateOutcome>> = []
    let nextOp = 0
    let known = 0

    for (const step of ops) {
      switch (step._tag) {
        case "join": {
          if (clients.has(step.client)) break
          const connection = recordingConnection(`actor-${step.client}`)
          const scope = yield* Scope.make()
          const since = step.resume ? Math.floor(known / 2) : undefined
          const [outcome, session] = yield* drive(registry.join(id, connection, since).pipe(Scope.extend(scope)))
          if (outcome._tag !== "Joined") {
            yield* drive(Scope.close(scope, Exit.void))
            break
          }
          clients.set(step.client, { connection, scope, session })
          views.push({ connection, since })
          break
        }
        case "leave": {
          const client = clients.get(step.client)
          if (client === undefined) break
          clients.delete(step.client)
          yield* drive(Scope.close(client.scope, Exit.void))
          break
        }
        case "update": {
          const client = clients.get(step.client)
          const opId = step.reuse !== null && step.reuse < nextOp ? `op-${step.reuse}` : `op-${nextOp++}`
          const done = yield* Deferred.make<DocumentActor.UpdateOutcome>()
          // Like the socket route: a stored update is acked to its origin as a frame.
          const reply = DocumentActor.once((o: DocumentActor.UpdateOutcome) => {
            if (o._tag === "Stored") client?.connection.send(JSON.stringify({ type: "ack", opId, seq: o.seq }))
            Deferred.unsafeDone(done, Exit.succeed(o))
          })
          const body = { opId, baseVersion: 0, actorId: `actor-${step.client}`, ...delta(opId) }
          if (client === undefined) {
            yield* Effect.fork(Effect.flatMap(registry.update(id, body), (o) => Effect.sync(() => reply(o))))
          } else {
            yield* drive(client.session.submit({ _tag: "Update", origin: client.connection, ...body, reply }))
          }
          pending.push(done)
          if (step.await) {
            const outcome = yield* drive(Deferred.await(done))
            if (outcome._tag === "Stored") known = Math.max(known, outcome.seq)
          }
          break
        }
        case "crash":
          harness.crashNext(step.when)
          break
        case "idle":
          if (clients.size === 0) yield* drive(TestClock.adjust(Duration.minutes(2)))
          break
        case "commit":
          yield* harness.commitOne
          break
      }
    }
    yield* drive(Effect.forEach(pending, Deferred.await))
    for (const client of clients.values()) yield* drive(Scope.close(client.scope, Exit.void))

    const log = yield* store.updatesAfter(id, 0, 1_000_000)
    assert.deepStrictEqual(log.map((u) => u.seq), log.map((_, i) => i + 1), "stored seqs are contiguous")
    assert.strictEqual(new Set(log.map((u) => u.opId)).size, log.length, "no opId stored twice")
    const bySeq = new Map(log.map((u) => [u.seq, u]))

    for (const { connection, since } of views) {
      const state = connection.of("state")[0]
      assert.ok(state !== undefined, "first frame is state")
      assert.strictEqual(connection.frames[0]?.type, "state")
      const base = state.reset === true || since === undefined ? 0 : since
      const seen: Array<{ seq: number; opId: string }> = (state.updates as Array<{ seq: number; opId: string }>).map((u) => ({
        seq: u.seq,
        opId: u.opId
      }))
      for (const frame of connection.frames) {
        if (frame.type === "remote_update" || frame.type === "ack") {
          seen.push({ seq: frame.seq as number, opId: frame.opId as string })
        }
      }
      seen.forEach((s, i) => {
        assert.strictEqual(s.seq, base + i + 1, "no gap and no overlap")
        assert.strictEqual(s.opId, bySeq.get(s.seq)?.opId, "the view equals the stored log")
      })
    }
  }).pipe(Effect.scoped, Effect.provide(registryLayer({ documentIdle: Duration.minutes(1) }, harness.layer)))
}

describe("DocumentActor (property)", () => {
  it("every client's view equals the stored log, with contiguous seqs", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) =>
        Effect.runPromise(run(ops, sequential()).pipe(Effect.provide(TestContext.TestContext)))
      ),
      { numRuns: 150, seed: 20261125 }
    )
  })

  it("the same on storage that commits a document's appends in order (batches in flight, commands taken at once)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) =>
        Effect.runPromise(run(ops, inOrder()).pipe(Effect.provide(TestContext.TestContext)))
      ),
      { numRuns: 150, seed: 20261204 }
    )
  })
})
