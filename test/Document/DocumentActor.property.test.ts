/**
 * Property: for random interleavings of joins, leaves, updates (pipelined or awaited), repeated opIds, actor
 * crashes (before or after the commit) and unloads, every client's view (state + acks + remote_updates) is a
 * gap-free, overlap-free run of the stored log, and the stored seqs are contiguous.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Scope, TestClock, TestContext } from "effect"
import fc from "fast-check"
import type { DocumentId } from "../../src/Domain/Document.js"
import * as DocumentActor from "../../src/Document/DocumentActor.js"
import { DocumentRegistry, type Session } from "../../src/Document/DocumentRegistry.js"
import { DocumentStorage } from "../../src/Storage/DocumentStorage.js"
import { delta, recordingConnection, type RecordingConnection, registryLayer, wrapStorage } from "./support.js"

type Op =
  | { readonly _tag: "join"; readonly client: number; readonly resume: boolean }
  | { readonly _tag: "leave"; readonly client: number }
  | { readonly _tag: "update"; readonly client: number; readonly reuse: number | null; readonly await: boolean }
  | { readonly _tag: "crash"; readonly when: "before" | "after" }
  | { readonly _tag: "idle" }

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
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("crash" as const), when: fc.constantFrom("before" as const, "after" as const) }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "idle" as const }) }
)

interface Client {
  readonly connection: RecordingConnection
  readonly scope: Scope.CloseableScope
  readonly session: Session
}

const run = (ops: ReadonlyArray<Op>) => {
  let crash: "before" | "after" | undefined
  const storage = wrapStorage((inner) => ({
    append: (id, updates) => {
      const mode = crash
      crash = undefined
      if (mode === "before") return Effect.die("crash before commit")
      const appended = inner.append(id, updates)
      return mode === "after" ? Effect.zipRight(appended, Effect.die("crash after commit")) : appended
    }
  }))
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
          const [outcome, session] = yield* registry.join(id, connection, since).pipe(Scope.extend(scope))
          if (outcome._tag !== "Joined") {
            yield* Scope.close(scope, Exit.void)
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
          yield* Scope.close(client.scope, Exit.void)
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
            yield* client.session.submit({ _tag: "Update", origin: client.connection, ...body, reply })
          }
          pending.push(done)
          if (step.await) {
            const outcome = yield* Deferred.await(done)
            if (outcome._tag === "Stored") known = Math.max(known, outcome.seq)
          }
          break
        }
        case "crash":
          crash = step.when
          break
        case "idle":
          if (clients.size === 0) yield* TestClock.adjust(Duration.minutes(2))
          break
      }
    }
    yield* Effect.forEach(pending, Deferred.await)
    for (const client of clients.values()) yield* Scope.close(client.scope, Exit.void)

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
  }).pipe(Effect.scoped, Effect.provide(registryLayer({ documentIdle: Duration.minutes(1) }, storage)))
}

describe("DocumentActor (property)", () => {
  it("every client's view equals the stored log, with contiguous seqs", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) =>
        Effect.runPromise(run(ops).pipe(Effect.provide(TestContext.TestContext)))
      ),
      { numRuns: 150, seed: 20261125 }
    )
  })
})
