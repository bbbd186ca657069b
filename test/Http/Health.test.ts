import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, TestClock } from "effect"
import { PING_TIMEOUT } from "../../src/Http/HealthHandlers.js"
import { layerBroken, layerMemoryWith } from "../support/TestStorage.js"
import { request, startServer } from "../support/TestServer.js"

describe("GET /api/v1/health", () => {
  it.scoped("answers 200 {status: ok} when storage answers", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const reply = yield* request("GET", `${base}/api/v1/health`)
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(reply.body, { status: "ok" })
    }))

  it.scoped("answers 503 {status: error, message} when the ping fails", () =>
    Effect.gen(function* () {
      const base = yield* startServer({ storage: layerBroken })
      const reply = yield* request("GET", `${base}/api/v1/health`)
      assert.strictEqual(reply.status, 503)
      assert.include(reply.contentType, "application/json")
      assert.deepInclude(reply.body, { status: "error", message: "database unreachable" })
    }))

  it.scoped("answers 503 when the ping does not answer within PING_TIMEOUT", () =>
    Effect.gen(function* () {
      const pinged = yield* Deferred.make<void>()
      const base = yield* startServer({
        storage: layerMemoryWith(() => ({ ping: Effect.zipRight(Deferred.succeed(pinged, undefined), Effect.never) }))
      })
      const reply = yield* Effect.fork(request("GET", `${base}/api/v1/health`))
      yield* Deferred.await(pinged)
      yield* waitForSleep
      yield* TestClock.adjust(PING_TIMEOUT)
      const answered = yield* Fiber.join(reply)
      assert.strictEqual(answered.status, 503)
      assert.deepInclude(answered.body, { status: "error" })
    }))
})

/** The ping's timeout registers its sleep in a sibling fiber: wait (without time passing) until it has. */
const waitForSleep = Effect.gen(function* () {
  for (let i = 0; i < 10_000; i++) {
    if (Chunk.isNonEmpty(yield* TestClock.sleeps())) return
    yield* Effect.yieldNow()
  }
  assert.fail("the health check never started its timeout")
})
