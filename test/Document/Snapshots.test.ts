/**
 * Snapshot policy (protocol 2.3) at the actor: requests, acceptance rules, joins from the latest snapshot.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Option, Scope, TestClock } from "effect"
import type { DocumentId } from "../../src/Domain/Document.js"
import * as DocumentActor from "../../src/Document/DocumentActor.js"
import { DocumentRegistry, type Session } from "../../src/Document/DocumentRegistry.js"
import { DocumentStorage } from "../../src/Storage/DocumentStorage.js"
import { appendPaths, delta, recordingConnection, registryLayer } from "./support.js"

const settings = { snapshotEvery: 10, snapshotRequestTimeout: Duration.seconds(30) }

const setup = Effect.gen(function* () {
  const registry = yield* DocumentRegistry
  const id: DocumentId = (yield* Effect.flatMap(DocumentStorage, (s) => s.create("snapshots"))).id
  return { registry, id }
})

const updates = (registry: DocumentRegistry["Type"], id: DocumentId, from: number, to: number) =>
  Effect.forEach(
    Array.from({ length: to - from + 1 }, (_, i) => from + i),
    (n) => registry.update(id, { opId: `op-${n}`, baseVersion: n - 1, actorId: "rest", ...delta(`d${n}`) }),
    { discard: true }
  )

const snapshot = (
  session: Session,
  connection: DocumentActor.Connection,
  version: number,
  data: Uint8Array = new TextEncoder().encode(`merged@${version}`)
) =>
  Effect.gen(function* () {
    const done = yield* Deferred.make<DocumentActor.SnapshotOutcome>()
    yield* session.submit({
      _tag: "Snapshot",
      connection,
      version,
      data,
      reply: DocumentActor.once((o) => Deferred.unsafeDone(done, Exit.succeed(o)))
    })
    return yield* Deferred.await(done)
  })

describe.each(appendPaths)("snapshots, appends %s", (_path, storage) => {
  it.effect("asks a client that applied the version after SNAPSHOT_EVERY updates; joins start from it", () =>
    Effect.gen(function* () {
      const { registry, id } = yield* setup
      const a = recordingConnection()
      const [, session] = yield* registry.join(id, a, undefined)
      yield* updates(registry, id, 1, 9)
      assert.deepStrictEqual(a.of("snapshot_request"), [])
      yield* updates(registry, id, 10, 10)
      assert.deepStrictEqual(a.of("snapshot_request"), [{ type: "snapshot_request", version: 10 }])
      yield* updates(registry, id, 11, 12)
      assert.strictEqual(a.of("snapshot_request").length, 1, "at most one request outstanding")
      assert.deepStrictEqual(yield* snapshot(session, a, 10), { _tag: "Accepted", version: 10 })
      const storage = yield* DocumentStorage
      assert.deepStrictEqual(Option.map(yield* storage.latestSnapshot(id), (s) => s.version), Option.some(10))

      const late = recordingConnection()
      yield* registry.join(id, late, undefined)
      const state = late.of("state")[0]
      assert.deepStrictEqual(state?.snapshot, {
        version: 10,
        snapshotB64: Buffer.from("merged@10").toString("base64")
      })
      assert.deepStrictEqual((state?.updates as Array<{ seq: number }>).map((u) => u.seq), [11, 12])

      const resumed = recordingConnection()
      yield* registry.join(id, resumed, 11)
      assert.strictEqual(resumed.of("state")[0]?.snapshot, null, "a client past the snapshot does not get it")
      assert.deepStrictEqual((resumed.of("state")[0]?.updates as Array<{ seq: number }>).map((u) => u.seq), [12])
    }).pipe(Effect.scoped, Effect.provide(registryLayer(settings, storage))))

  it.effect("keeps its own copy of an accepted snapshot: a view of a buffer written again later does not change later joins", () =>
    Effect.gen(function* () {
      const { registry, id } = yield* setup
      const a = recordingConnection()
      const [, session] = yield* registry.join(id, a, undefined)
      yield* updates(registry, id, 1, 10)
      // As a small snapshot decoded from base64 is: a view of Node's shared pool.
      const shared = Buffer.alloc(8_192)
      shared.write("merged@10", 100)
      assert.deepStrictEqual(yield* snapshot(session, a, 10, shared.subarray(100, 109)), { _tag: "Accepted", version: 10 })
      shared.fill(0)
      const late = recordingConnection()
      yield* registry.join(id, late, undefined)
      assert.deepStrictEqual(late.of("state")[0]?.snapshot, { version: 10, snapshotB64: Buffer.from("merged@10").toString("base64") })
    }).pipe(Effect.scoped, Effect.provide(registryLayer(settings, storage))))

  it.effect("rejects a snapshot ahead of the document or too close to the latest one", () =>
    Effect.gen(function* () {
      const { registry, id } = yield* setup
      const a = recordingConnection()
      const [, session] = yield* registry.join(id, a, undefined)
      yield* updates(registry, id, 1, 12)
      const ahead = yield* snapshot(session, a, 13)
      assert.strictEqual(ahead._tag, "Rejected")
      assert.match(ahead._tag === "Rejected" ? ahead.message : "", /ahead/)
      const tooSoon = yield* snapshot(session, a, 9)
      assert.strictEqual(tooSoon._tag, "Rejected")
      assert.deepStrictEqual(yield* snapshot(session, a, 10), { _tag: "Accepted", version: 10 })
      const again = yield* snapshot(session, a, 12)
      assert.strictEqual(again._tag, "Rejected", "only 2 past the latest snapshot")
    }).pipe(Effect.scoped, Effect.provide(registryLayer(settings, storage))))

  it.effect("if the asked client leaves, another one is asked on the next update", () =>
    Effect.gen(function* () {
      const { registry, id } = yield* setup
      const scope = yield* Scope.make()
      const a = recordingConnection()
      const [, sessionA] = yield* registry.join(id, a, undefined).pipe(Scope.extend(scope))
      const b = recordingConnection()
      yield* registry.join(id, b, undefined)
      // a's own update crosses the threshold: a is asked.
      yield* updates(registry, id, 1, 9)
      const done = yield* Deferred.make<DocumentActor.UpdateOutcome>()
      yield* sessionA.submit({
        _tag: "Update",
        origin: a,
        opId: "op-10",
        baseVersion: 9,
        actorId: a.actorId,
        ...delta("d10"),
        reply: DocumentActor.once((o) => Deferred.unsafeDone(done, Exit.succeed(o)))
      })
      yield* Deferred.await(done)
      assert.strictEqual(a.of("snapshot_request").length, 1)
      assert.strictEqual(b.of("snapshot_request").length, 0)
      yield* Scope.close(scope, Exit.void)
      yield* updates(registry, id, 11, 11)
      assert.deepStrictEqual(b.of("snapshot_request"), [{ type: "snapshot_request", version: 11 }])
    }).pipe(Effect.scoped, Effect.provide(registryLayer(settings, storage))))

  it.effect("a request left unanswered past its timeout is sent again on a later update", () =>
    Effect.gen(function* () {
      const { registry, id } = yield* setup
      const a = recordingConnection()
      const b = recordingConnection()
      yield* registry.join(id, a, undefined)
      yield* registry.join(id, b, undefined)
      yield* updates(registry, id, 1, 10)
      const asked = [...a.of("snapshot_request"), ...b.of("snapshot_request")]
      assert.strictEqual(asked.length, 1)
      yield* TestClock.adjust(Duration.seconds(29))
      yield* updates(registry, id, 11, 11)
      assert.strictEqual(a.of("snapshot_request").length + b.of("snapshot_request").length, 1)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* updates(registry, id, 12, 12)
      assert.strictEqual(a.of("snapshot_request").length + b.of("snapshot_request").length, 2)
      assert.strictEqual(a.of("snapshot_request").length, 1, "the other client is asked this time")
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ ...settings, presenceIdle: Duration.hours(1) }, storage))))
})
