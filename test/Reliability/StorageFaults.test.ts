/**
 * Storage fault injection at the integration level: a real server on port 0 over memory storage whose calls for
 * one document fail, hang past STORAGE_TIMEOUT_MS, or commit and then hang (outcome unknown), toggled by the test.
 * Clients must get `internal` within a bounded time, nothing may be acked that was not stored, the document must
 * work again once storage recovers, and another document must not notice. Health follows the database ping.
 *
 * Real time on purpose (the server's timers run on the live clock): STORAGE_TIMEOUT_MS is 400 ms here, short but with
 * room for the healthy document to be served while a call of the sick one hangs, even on a busy machine.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { DocumentId } from "../../src/Domain/Document.js"
import { type DocumentStorageShape, StorageError } from "../../src/Storage/DocumentStorage.js"
import { request, startServer } from "../support/TestServer.js"
import { layerMemoryWith } from "../support/TestStorage.js"
import { connect, type Frame, type WsClient } from "../support/WsClient.js"

const STORAGE_TIMEOUT = Duration.millis(400)
/** Longest a client may wait for an answer while storage misbehaves: the timeout, twice, plus slack for a busy CI. */
const ANSWER_WITHIN = Duration.seconds(5)

/** What a document's storage calls do. */
type Mode = "ok" | "fail" | "hang" | "commitThenHang"

interface Faults {
  /** Per document; absent means "ok". */
  readonly documents: Map<string, Mode>
  ping: "ok" | "fail" | "hang"
  /** The memory storage underneath, to read the truth whatever the faults. */
  inner: DocumentStorageShape | undefined
}

/** Memory storage whose document-scoped calls obey `faults.documents`, and whose ping obeys `faults.ping`. */
const layerFaulty = (faults: Faults) =>
  layerMemoryWith((memory) => {
    faults.inner = memory
    const guard = <A>(id: string, operation: string, effect: Effect.Effect<A, StorageError>) =>
      Effect.suspend((): Effect.Effect<A, StorageError> => {
        switch (faults.documents.get(id) ?? "ok") {
          case "ok":
            return effect
          case "fail":
            return Effect.fail(new StorageError({ operation, cause: new Error("injected: connection reset") }))
          case "hang":
            return Effect.never
          case "commitThenHang":
            return operation === "append" ? Effect.zipRight(effect, Effect.never) : effect
        }
      })
    return {
      ping: Effect.suspend(() =>
        faults.ping === "ok"
          ? Effect.void
          : faults.ping === "fail"
          ? Effect.fail(new StorageError({ operation: "ping", cause: new Error("injected: connection refused") }))
          : Effect.never
      ),
      get: (id, includeDeleted) => guard(id, "get", memory.get(id, includeDeleted)),
      rename: (id, title) => guard(id, "rename", memory.rename(id, title)),
      softDelete: (id) => guard(id, "softDelete", memory.softDelete(id)),
      append: (id, updates) => guard(id, "append", memory.append(id, updates)),
      findByOpId: (id, opId) => guard(id, "findByOpId", memory.findByOpId(id, opId)),
      updatesAfter: (id, after, limit) => guard(id, "updatesAfter", memory.updatesAfter(id, after, limit)),
      latestVersion: (id) => guard(id, "latestVersion", memory.latestVersion(id)),
      putSnapshot: (id, snapshot) => guard(id, "putSnapshot", memory.putSnapshot(id, snapshot)),
      latestSnapshot: (id) => guard(id, "latestSnapshot", memory.latestSnapshot(id))
    }
  })

describe("storage faults (real server, injected failures)", () => {
  it.scopedLive("a failing, then hanging, then recovering document: internal errors, nothing acked unstored, others undisturbed", () =>
    Effect.gen(function* () {
      const faults: Faults = { documents: new Map(), ping: "ok", inner: undefined }
      const url = yield* startServer({ storage: layerFaulty(faults), config: { storageTimeout: STORAGE_TIMEOUT } })
      const sick = yield* createDocument(url, "sick")
      const healthy = yield* createDocument(url, "healthy")
      const writer = yield* connect(url, sick, { actorId: "writer" })
      const reader = yield* connect(url, sick, { actorId: "reader" })
      const other = yield* connect(url, healthy, { actorId: "other" })
      for (const client of [writer, reader, other]) yield* client.take("state")
      let otherOps = 0
      /** One update on the healthy document, acked promptly whatever the sick one is going through. */
      const otherWrites = Effect.gen(function* () {
        const opId = `b-${++otherOps}`
        yield* other.send(update(opId))
        const ack = yield* other.take("ack")
        assert.deepStrictEqual(ack, { type: "ack", opId, seq: otherOps })
      })

      yield* writer.send(update("a-1"))
      assert.deepStrictEqual(yield* writer.take("ack"), { type: "ack", opId: "a-1", seq: 1 })
      yield* otherWrites

      // 1. Errors: every update gets `internal` with its opId; joins fail with 1011; REST answers 500 with a message.
      faults.documents.set(sick, "fail")
      yield* writer.send(update("a-2"))
      yield* writer.send(update("a-3"))
      assert.deepStrictEqual(internalOpId(yield* answer(writer, "error")), "a-2")
      assert.deepStrictEqual(internalOpId(yield* answer(writer, "error")), "a-3")
      yield* otherWrites
      const late = yield* connect(url, sick)
      assert.strictEqual((yield* late.closed).code, 1011, "a join while storage fails closes with 1011")
      const restRead = yield* request("GET", `${url}/api/v1/documents/${sick}/updates`)
      assert.strictEqual(restRead.status, 500)
      assert.isString((restRead.body as { message?: unknown }).message)
      const restWrite = yield* request("POST", `${url}/api/v1/documents/${sick}/updates`, restUpdate("a-rest"))
      assert.strictEqual(restWrite.status, 500)
      assert.isString((restWrite.body as { message?: unknown }).message)
      assert.deepStrictEqual(yield* storedOpIds(faults, sick), ["a-1"])

      // 2. Hangs past STORAGE_TIMEOUT_MS: a bounded wait, then `internal`; the other document is served meanwhile.
      faults.documents.set(sick, "hang")
      const started = Date.now()
      yield* writer.send(update("a-4"))
      yield* otherWrites
      assert.strictEqual(writer.of("error").length, 2, "the healthy document answered before the hung call timed out")
      assert.strictEqual(internalOpId(yield* answer(writer, "error")), "a-4")
      assert.isAtLeast(Date.now() - started, Duration.toMillis(STORAGE_TIMEOUT) - 20)
      assert.deepStrictEqual(yield* storedOpIds(faults, sick), ["a-1"])

      // 3. The commit happens but its answer never comes (outcome unknown): `internal`, then the actor catches up
      //    from storage and relays the update to everybody, the sender included (docs/protocol.md, recovery).
      faults.documents.set(sick, "commitThenHang")
      yield* writer.send(update("a-5"))
      assert.strictEqual(internalOpId(yield* answer(writer, "error")), "a-5")
      assert.deepStrictEqual(yield* storedOpIds(faults, sick), ["a-1", "a-5"])
      assert.deepStrictEqual(pick(yield* answer(writer, "remote_update")), { seq: 2, opId: "a-5" })
      yield* otherWrites

      // 4. Recovery: retries with the same opIds store what was never stored, and call the stored one a duplicate.
      faults.documents.delete(sick)
      for (const opId of ["a-2", "a-3", "a-4", "a-5"]) yield* writer.send(update(opId))
      const acks = yield* Effect.forEach([1, 2, 3, 4], () => answer(writer, "ack"))
      assert.deepStrictEqual(acks, [
        { type: "ack", opId: "a-2", seq: 3 },
        { type: "ack", opId: "a-3", seq: 4 },
        { type: "ack", opId: "a-4", seq: 5 },
        { type: "ack", opId: "a-5", seq: 2, duplicate: true }
      ])
      const rejoined = yield* (yield* connect(url, sick)).take("state")
      assert.strictEqual(rejoined.version, 5)
      yield* otherWrites

      // Nothing acked or relayed that is not stored at that seq; the reader's stream is the stored log, gap-free.
      const log = yield* storedOpIds(faults, sick)
      assert.deepStrictEqual(log, ["a-1", "a-5", "a-2", "a-3", "a-4"])
      for (const ack of writer.of("ack")) {
        assert.strictEqual(log[(ack.seq as number) - 1], ack.opId, `ack ${String(ack.opId)} is stored at its seq`)
      }
      yield* reader.barrier
      assert.deepStrictEqual(reader.of("remote_update").map(pick), log.map((opId, i) => ({ seq: i + 1, opId })))
      assert.deepStrictEqual(reader.of("error"), [])
      // The healthy document never saw an error, and stored exactly what it acked.
      assert.deepStrictEqual(other.of("error"), [])
      assert.deepStrictEqual(yield* storedOpIds(faults, healthy), Array.from({ length: otherOps }, (_, i) => `b-${i + 1}`))
    }), 30_000)

  it.scopedLive("health answers 503 with a message while the database ping fails or hangs, and 200 after", () =>
    Effect.gen(function* () {
      const faults: Faults = { documents: new Map(), ping: "ok", inner: undefined }
      const url = yield* startServer({ storage: layerFaulty(faults), config: { storageTimeout: STORAGE_TIMEOUT } })
      const health = request("GET", `${url}/api/v1/health`)
      assert.strictEqual((yield* health).status, 200)
      for (const mode of ["fail", "hang"] as const) {
        faults.ping = mode
        const reply = yield* health.pipe(Effect.timeout(ANSWER_WITHIN))
        assert.strictEqual(reply.status, 503, mode)
        assert.deepInclude(reply.body, { status: "error" })
        assert.isString((reply.body as { message?: unknown }).message)
        faults.ping = "ok"
        assert.deepStrictEqual((yield* health).body, { status: "ok" })
      }
    }), 30_000)
})

const update = (opId: string) => ({
  type: "update",
  opId,
  baseVersion: 0,
  actorId: "writer",
  deltaB64: Buffer.from(opId).toString("base64")
})

const restUpdate = (opId: string) => ({ opId, actorId: "rest", baseVersion: 0, deltaB64: Buffer.from(opId).toString("base64") })

const createDocument = (url: string, title: string) =>
  Effect.map(request("POST", `${url}/api/v1/documents`, { title }), (reply) => {
    assert.strictEqual(reply.status, 201, reply.text)
    return (reply.body as { readonly id: string }).id
  })

/** The next frame of a type, within ANSWER_WITHIN. */
const answer = (client: WsClient, type: string) =>
  client.take(type).pipe(
    Effect.timeoutFail({ duration: ANSWER_WITHIN, onTimeout: () => new Error(`no ${type} within ${Duration.format(ANSWER_WITHIN)}`) }),
    Effect.orDie
  )

/** The opId of an `internal` error frame (fails on any other frame). */
const internalOpId = (frame: Frame): unknown => {
  assert.strictEqual(frame.code, "internal", JSON.stringify(frame))
  assert.isString(frame.message)
  return frame.opId
}

const pick = (frame: Frame) => ({ seq: frame.seq, opId: frame.opId })

/** The opIds stored for a document, in seq order, read beneath the faults. */
const storedOpIds = (faults: Faults, id: string) =>
  Effect.suspend(() => {
    const inner = faults.inner
    if (inner === undefined) return Effect.dieMessage("storage not built")
    return inner.updatesAfter(id as DocumentId, 0, 10_000).pipe(
      Effect.map((updates) => updates.map((u) => u.opId)),
      Effect.orDie
    )
  })
