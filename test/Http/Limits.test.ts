/**
 * Limits: the token bucket on TestClock (no sleeping), the connection counters, and on a real server the
 * per-connection rate limit (`rate_limited`, nothing served), the connection caps (close 4429) and the REST body
 * limit (413). Also the configuration of each limit.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Schedule, TestClock } from "effect"
import { defaults, formatConfigError, fromEnv } from "../../src/Config.js"
import * as CloseCodes from "../../src/Domain/CloseCodes.js"
import type { DocumentId } from "../../src/Domain/Document.js"
import { makeConnectionLimits, makeTokenBucket } from "../../src/Http/Limits.js"
import { messageOf, request, startServer } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"

const b64 = (text: string) => Buffer.from(text).toString("base64")
const update = (opId: string, baseVersion = 0) => ({ type: "update", opId, baseVersion, actorId: "t", deltaB64: b64(opId) })

const createDocument = (base: string) =>
  Effect.map(request("POST", `${base}/api/v1/documents`, { title: "doc" }), (reply) => (reply.body as { id: string }).id)

const takeAll = (bucket: { readonly tryTake: () => boolean }, attempts: number) =>
  Array.from({ length: attempts }, () => bucket.tryTake()).filter(Boolean).length

describe("token bucket", () => {
  it.effect("starts full: a burst passes, the next message does not", () =>
    Effect.gen(function* () {
      const bucket = yield* makeTokenBucket({ perSecond: 10, burst: 5 })
      assert.strictEqual(takeAll(bucket, 5), 5)
      assert.isFalse(bucket.tryTake())
    }))

  it.effect("refills at perSecond on the Clock, continuously, up to the burst and no further", () =>
    Effect.gen(function* () {
      const bucket = yield* makeTokenBucket({ perSecond: 10, burst: 5 })
      takeAll(bucket, 5)
      yield* TestClock.adjust("99 millis")
      assert.isFalse(bucket.tryTake())
      yield* TestClock.adjust("1 millis")
      assert.isTrue(bucket.tryTake())
      assert.isFalse(bucket.tryTake())
      yield* TestClock.adjust("350 millis")
      assert.strictEqual(takeAll(bucket, 10), 3)
      assert.closeTo(bucket.available(), 0.5, 1e-9)
      yield* TestClock.adjust("1 hour")
      assert.strictEqual(bucket.available(), 5)
      assert.strictEqual(takeAll(bucket, 10), 5)
    }))

  it.effect("a steady sender at the rate is never refused; a faster one gets the burst plus the refill", () =>
    Effect.gen(function* () {
      const steady = yield* makeTokenBucket({ perSecond: 100, burst: 10 })
      let refused = 0
      for (let i = 0; i < 50; i++) {
        yield* TestClock.adjust("10 millis")
        if (!steady.tryTake()) refused++
      }
      assert.strictEqual(refused, 0)
      // 200 per second (one every 5 ms, from t = 0 to t = 295 ms) against 100 per second with a burst of 10:
      // the burst, plus the 29 whole tokens that 295 ms of refill bring.
      const fast = yield* makeTokenBucket({ perSecond: 100, burst: 10 })
      let passed = 0
      for (let i = 0; i < 60; i++) {
        if (fast.tryTake()) passed++
        yield* TestClock.adjust("5 millis")
      }
      assert.strictEqual(passed, 39)
    }))
})

describe("connection counters", () => {
  const A = "a" as DocumentId
  const B = "b" as DocumentId

  it.effect("hold a slot until released; a refusal holds nothing", () =>
    Effect.gen(function* () {
      const limits = makeConnectionLimits({ maxConnections: 3, maxConnectionsPerDocument: 2 })
      assert.strictEqual(limits.acquire(A), undefined)
      assert.strictEqual(limits.acquire(A), undefined)
      assert.strictEqual(limits.acquire(A), "document")
      assert.strictEqual(yield* limits.count(A), 2)
      assert.strictEqual(limits.acquire(B), undefined)
      assert.strictEqual(limits.acquire(B), "server")
      assert.strictEqual(yield* limits.count(), 3)
      limits.release(A)
      assert.strictEqual(yield* limits.count(A), 1)
      assert.strictEqual(yield* limits.count(), 2)
      limits.release(A)
      limits.release(B)
      assert.strictEqual(yield* limits.count(), 0)
      assert.strictEqual(yield* limits.count(A), 0)
      assert.strictEqual(limits.acquire(A), undefined, "a released slot is taken again")
    }))
})

describe("rate limit on a real server", () => {
  it.scoped("over the burst, messages get rate_limited (with their opId) and are not served; the rest are", () =>
    Effect.gen(function* () {
      // The server runs on the TestClock: no refill happens unless the test moves time.
      const base = yield* startServer({ config: { rateLimitPerSecond: 2, rateLimitBurst: 5 } })
      const id = yield* createDocument(base)
      const client = yield* connect(base, id)
      yield* client.take("state")
      for (let i = 1; i <= 3; i++) yield* client.send(update(`op-${i}`, 0))
      yield* client.send({ type: "ping" })
      yield* client.send({ type: "presence", state: { n: 1 } })
      // Over the burst: an update, a ping, a bad frame.
      yield* client.send(update("op-4"))
      yield* client.send({ type: "ping" })
      yield* client.sendRaw("not json")
      const acks = yield* Effect.forEach([1, 2, 3], () => client.take("ack"))
      assert.deepStrictEqual(acks.map((a) => a.opId), ["op-1", "op-2", "op-3"])
      yield* client.take("pong")
      const errors = yield* Effect.forEach([1, 2, 3], () => client.take("error"))
      assert.deepStrictEqual(errors.map((e) => e.code), ["rate_limited", "rate_limited", "rate_limited"])
      assert.strictEqual(errors[0]?.opId, "op-4")
      assert.include(String(errors[0]?.message), "not processed")
      assert.isUndefined(errors[1]?.opId)
      // Frames are served in order: a pong for the refused ping would have come before the last error.
      assert.strictEqual(client.of("pong").length, 1)
      const log = yield* request("GET", `${base}/api/v1/documents/${id}/updates`)
      assert.deepStrictEqual((log.body as { updates: ReadonlyArray<{ opId: string }> }).updates.map((u) => u.opId), ["op-1", "op-2", "op-3"])

      // Half a second refills one token: the retry of op-4 goes through.
      yield* TestClock.adjust("500 millis")
      yield* client.send(update("op-4", 3))
      assert.deepStrictEqual(yield* client.take("ack"), { type: "ack", opId: "op-4", seq: 4 })
      // Each connection has its own bucket.
      const other = yield* connect(base, id)
      yield* other.take("state")
      yield* other.barrier
    }))
})

describe("connection caps on a real server", () => {
  // Live: the reuse check at the end retries on the wall clock.
  it.scopedLive("one more than MAX_CONNECTIONS_PER_DOCUMENT or MAX_CONNECTIONS is closed with 4429; a freed slot is reused", () =>
    Effect.gen(function* () {
      const base = yield* startServer({ config: { maxConnectionsPerDocument: 2, maxConnections: 3 } })
      const [a, b, c] = yield* Effect.all([createDocument(base), createDocument(base), createDocument(base)])
      const a1 = yield* connect(base, a)
      yield* a1.take("state")
      const a2 = yield* connect(base, a)
      yield* a2.take("state")
      const a3 = yield* connect(base, a)
      const refusedA = yield* a3.closed
      assert.strictEqual(refusedA.code, CloseCodes.TooManyConnections)
      assert.include(refusedA.reason, "MAX_CONNECTIONS_PER_DOCUMENT")
      // Refused connections hold no slot: the server still has room for one on another document.
      const b1 = yield* connect(base, b)
      yield* b1.take("state")
      const c1 = yield* connect(base, c)
      const refusedC = yield* c1.closed
      assert.strictEqual(refusedC.code, 4429)
      assert.include(refusedC.reason, "MAX_CONNECTIONS")

      // When a client leaves, its slot is released as its handler finishes, just after the close: retry briefly.
      yield* a1.close
      const joinOnce = Effect.gen(function* () {
        const client = yield* connect(base, a)
        const joined = yield* Effect.race(Effect.as(client.take("state"), true), Effect.as(client.closed, false))
        return joined ? client : yield* Effect.fail("refused" as const)
      })
      const again = yield* joinOnce.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))))
      assert.strictEqual(again.ws.readyState, again.ws.OPEN)
    }))
})

describe("REST body limit", () => {
  it.scoped("a body over MAX_MESSAGE_BYTES gets 413 with a JSON message, on every endpoint that takes one", () =>
    Effect.gen(function* () {
      const base = yield* startServer({ config: { maxMessageBytes: 2048 } })
      const id = yield* createDocument(base)
      const big = "x".repeat(4096)
      for (const [method, path, body] of [
        ["POST", "/documents", { title: big }],
        ["PATCH", `/documents/${id}`, { title: big }],
        ["POST", `/documents/${id}/updates`, { opId: "o", actorId: "a", baseVersion: 0, deltaB64: b64(big) }]
      ] as const) {
        const reply = yield* request(method, `${base}/api/v1${path}`, body)
        assert.strictEqual(reply.status, 413, `${method} ${path}`)
        assert.include(messageOf(reply), "2048 bytes")
      }
    }))
})

describe("limits configuration", () => {
  const read = (env: Record<string, string>) =>
    fromEnv.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

  it.effect("defaults, parsing, and a message naming the variable when invalid", () =>
    Effect.gen(function* () {
      const config = yield* read({})
      assert.strictEqual(config.rateLimitPerSecond, defaults.rateLimitPerSecond)
      assert.strictEqual(config.rateLimitBurst, defaults.rateLimitBurst)
      assert.strictEqual(config.maxConnectionsPerDocument, defaults.maxConnectionsPerDocument)
      assert.strictEqual(config.maxConnections, defaults.maxConnections)
      const set = yield* read({
        RATE_LIMIT_PER_SECOND: "50",
        RATE_LIMIT_BURST: "80",
        MAX_CONNECTIONS_PER_DOCUMENT: "7",
        MAX_CONNECTIONS: "9"
      })
      assert.deepInclude(set, { rateLimitPerSecond: 50, rateLimitBurst: 80, maxConnectionsPerDocument: 7, maxConnections: 9 })
      for (const name of ["RATE_LIMIT_PER_SECOND", "RATE_LIMIT_BURST", "MAX_CONNECTIONS_PER_DOCUMENT", "MAX_CONNECTIONS"]) {
        for (const value of ["0", "-1", "1.5", "lots"]) {
          const message = formatConfigError(yield* Effect.flip(read({ [name]: value })))
          assert.include(message, name, `${name}=${value}`)
        }
      }
    }))

  it.effect("AUTH_SECRET may not be empty (unset it to turn authentication off)", () =>
    Effect.gen(function* () {
      assert.include(formatConfigError(yield* Effect.flip(read({ AUTH_SECRET: " " }))), "AUTH_SECRET")
      const set = yield* read({ AUTH_SECRET: "x".repeat(32) })
      assert.isTrue(Option.isSome(set.authSecret))
    }))
})
