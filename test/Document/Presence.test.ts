/**
 * Presence lifecycle (protocol 2.4), driven by TestClock: no real time passes in these tests.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import type { DocumentId } from "../../src/Domain/Document.js"
import { DocumentRegistry } from "../../src/Document/DocumentRegistry.js"
import { DocumentStorage } from "../../src/Storage/DocumentStorage.js"
import { collectGarbage, recordingConnection, registryLayer, wrapStorage } from "./support.js"

const IDLE = Duration.millis(30_000)

const setup = Effect.gen(function* () {
  const registry = yield* DocumentRegistry
  const id: DocumentId = (yield* Effect.flatMap(DocumentStorage, (s) => s.create("presence"))).id
  const join = (connection = recordingConnection()) =>
    Effect.map(registry.join(id, connection, undefined), ([, session]) => ({ connection, session }))
  return { id, join }
})

/** Lets the mailboxes serve what was submitted (and the idle timers' checks), without moving the clock. */
const settle = Effect.repeatN(
  Effect.zipRight(Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))), Effect.yieldNow()),
  5
)

describe("presence", () => {
  it.effect("a silent client goes idle exactly after PRESENCE_IDLE_MS, not before", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      const a = yield* join()
      const b = yield* join()
      yield* TestClock.adjust(Duration.millis(29_999))
      yield* settle
      assert.deepStrictEqual(a.connection.of("presence_leave"), [])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      assert.deepStrictEqual(a.connection.of("presence_leave"), [
        { type: "presence_leave", clientId: b.connection.clientId, actorId: b.connection.actorId, reason: "idle" }
      ])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))

  it.effect("silent clients of two documents go idle each at its own time (one timer for all documents)", () =>
    Effect.gen(function* () {
      const first = yield* setup
      const second = yield* setup
      const a = yield* first.join()
      const b = yield* first.join()
      yield* TestClock.adjust(Duration.millis(10_000))
      const c = yield* second.join()
      const d = yield* second.join()
      yield* TestClock.adjust(Duration.millis(19_999))
      yield* settle
      assert.deepStrictEqual(a.connection.of("presence_leave"), [])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      assert.deepStrictEqual(a.connection.of("presence_leave").map((f) => f.clientId), [b.connection.clientId])
      assert.deepStrictEqual(c.connection.of("presence_leave"), [], "the second document's clients joined 10 s later")
      yield* TestClock.adjust(Duration.millis(9_999))
      yield* settle
      assert.deepStrictEqual(c.connection.of("presence_leave"), [])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      assert.deepStrictEqual(c.connection.of("presence_leave").map((f) => f.clientId), [d.connection.clientId])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))

  it.effect("a first member whose join waited for its document to load goes idle from its join's start, not its end", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      // The document takes 5 s to load: a's session starts at 0, its join ends at 5 s.
      const joining = yield* Effect.fork(join())
      yield* TestClock.adjust(Duration.seconds(5))
      const a = yield* Fiber.join(joining)
      const b = yield* join()
      yield* TestClock.adjust(Duration.millis(24_999))
      yield* settle
      assert.deepStrictEqual(b.connection.of("presence_leave"), [])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      assert.deepStrictEqual(b.connection.of("presence_leave").map((f) => f.clientId), [a.connection.clientId], "at 30 s")
    }).pipe(
      Effect.scoped,
      Effect.provide(registryLayer(
        { presenceIdle: IDLE },
        wrapStorage((inner) => ({ get: (id, includeDeleted) => Effect.delay(inner.get(id, includeDeleted), Duration.seconds(5)) }))
      ))
    ))

  it.effect("any message (a ping) keeps a client present; its next presence re-announces it after idling", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      const a = yield* join()
      const b = yield* join()
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust(Duration.millis(20_000))
        a.session.touch()
        b.session.touch()
        yield* settle
      }
      assert.deepStrictEqual(a.connection.of("presence_leave"), [], "pings every 20 s keep b present")
      yield* TestClock.adjust(Duration.millis(30_000))
      yield* settle
      assert.strictEqual(a.connection.of("presence_leave").length, 1)
      b.session.touch()
      yield* b.session.submit({ _tag: "Presence", connection: b.connection, state: { cursor: 7 } })
      yield* settle
      assert.deepStrictEqual(a.connection.of("presence").at(-1), {
        type: "presence",
        clientId: b.connection.clientId,
        actorId: b.connection.actorId,
        state: { cursor: 7 }
      })
      const late = yield* join()
      const state = late.connection.of("state")[0]
      assert.deepStrictEqual(
        (state?.presence as Array<{ clientId: string; state: unknown }>).find((p) => p.clientId === b.connection.clientId)?.state,
        { cursor: 7 }
      )
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))

  it.effect("joins announce, presence is relayed to the others only, and a disconnect says so once", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      const a = yield* join()
      const scope = yield* Scope.make()
      const b = yield* join().pipe(Scope.extend(scope))
      assert.deepStrictEqual(a.connection.of("presence_join"), [
        { type: "presence_join", clientId: b.connection.clientId, actorId: b.connection.actorId }
      ])
      const bState = b.connection.of("state")[0]
      assert.deepStrictEqual(bState?.presence, [{ clientId: a.connection.clientId, actorId: a.connection.actorId, state: null }])
      yield* b.session.submit({ _tag: "Presence", connection: b.connection, state: { name: "bea" } })
      yield* settle
      assert.strictEqual(a.connection.of("presence").length, 1)
      assert.strictEqual(b.connection.of("presence").length, 0, "no echo to the sender")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(a.connection.of("presence_leave").map((f) => f.reason), ["disconnect"])
      yield* TestClock.adjust(Duration.minutes(5))
      yield* settle
      assert.strictEqual(a.connection.of("presence_leave").length, 1, "nothing more from b")
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))

  it.effect("an idle client that disconnects is not announced twice", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      const a = yield* join()
      const scope = yield* Scope.make()
      yield* join().pipe(Scope.extend(scope))
      a.session.touch()
      yield* TestClock.adjust(IDLE)
      yield* settle
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(a.connection.of("presence_leave").map((f) => f.reason), ["idle"])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))

  it.effect("a member that left is not kept alive by its document (its socket can be collected)", () =>
    Effect.gen(function* () {
      const { join } = yield* setup
      const a = yield* join()
      // b joins and leaves in a function of its own, so that only the document could still hold its connection.
      const leftBehind = yield* Effect.gen(function* () {
        const scope = yield* Scope.make()
        const b = yield* join().pipe(Scope.extend(scope))
        // The idle timer wakes when a is first due, looks at both members (b last: neither is due, both were
        // active since), and sleeps again.
        yield* TestClock.adjust(Duration.millis(20_000))
        a.session.touch()
        b.session.touch()
        yield* TestClock.adjust(Duration.millis(10_000))
        yield* settle
        yield* Scope.close(scope, Exit.void)
        yield* settle
        return new WeakRef(b.connection)
      })
      assert.deepStrictEqual(a.connection.of("presence_leave").map((f) => f.reason), ["disconnect"])
      // A WeakRef's target is kept until the current job ends.
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      collectGarbage()
      assert.isUndefined(leftBehind.deref(), "the loaded document no longer holds the connection that left")
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ presenceIdle: IDLE }))))
})
