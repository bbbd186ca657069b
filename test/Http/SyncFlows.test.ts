/**
 * Snapshots, presence, restarts, REST updates and heartbeats against a real server with real WebSocket clients.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope, TestClock } from "effect"
import * as Path from "node:path"
import WebSocket from "ws"
import { layerSqlite } from "../../src/Storage/SqlDocumentStorage.js"
import { tempDir } from "../Storage/helpers.js"
import { request, startServer } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"

const b64 = (text: string) => Buffer.from(text).toString("base64")

const createDocument = (baseUrl: string) =>
  Effect.map(request("POST", `${baseUrl}/api/v1/documents`, { title: "flows" }), (reply) => (reply.body as { id: string }).id)

const update = (opId: string, baseVersion = 0) => ({
  type: "update",
  opId,
  baseVersion,
  actorId: "tester",
  deltaB64: b64(opId)
})

describe("snapshots over the socket", () => {
  it.scoped("SNAPSHOT_EVERY=10: request, ack, joins from it, REST snapshot, rejections, and it survives a restart", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const storage = layerSqlite({ filename: Path.join(dir, "snap.db") })
      const config = { snapshotEvery: 10 }
      const first = yield* Scope.make()
      const url = yield* startServer({ config, storage }).pipe(Scope.extend(first))
      const id = yield* createDocument(url)
      const a = yield* connect(url, id)
      yield* a.take("state")
      for (let i = 1; i <= 9; i++) yield* a.send(update(`op-${i}`))
      for (let i = 1; i <= 9; i++) yield* a.take("ack")
      yield* a.barrier
      assert.deepStrictEqual(a.of("snapshot_request"), [], "not before SNAPSHOT_EVERY updates")
      yield* a.send(update("op-10"))
      yield* a.take("ack")
      assert.deepStrictEqual(yield* a.take("snapshot_request"), { type: "snapshot_request", version: 10 })
      yield* a.send(update("op-11"))
      yield* a.send(update("op-12"))
      yield* a.take("ack")
      yield* a.take("ack")

      yield* a.send({ type: "snapshot", version: 13, snapshotB64: b64("ahead") })
      assert.strictEqual((yield* a.take("error")).code, "snapshot_rejected")
      yield* a.send({ type: "snapshot", version: 10, snapshotB64: b64("merged@10") })
      assert.deepStrictEqual(yield* a.take("snapshot_ack"), { type: "snapshot_ack", version: 10 })
      yield* a.send({ type: "snapshot", version: 12, snapshotB64: b64("too soon") })
      const tooSoon = yield* a.take("error")
      assert.strictEqual(tooSoon.code, "snapshot_rejected")
      assert.match(tooSoon.message as string, /SNAPSHOT_EVERY/)

      const late = yield* (yield* connect(url, id)).take("state")
      assert.deepStrictEqual(late.snapshot, { version: 10, snapshotB64: b64("merged@10") })
      assert.deepStrictEqual((late.updates as Array<{ seq: number }>).map((u) => u.seq), [11, 12])
      const rest = yield* request("GET", `${url}/api/v1/documents/${id}/snapshot`)
      assert.deepStrictEqual(rest.body, { version: 10, snapshotB64: b64("merged@10") })
      yield* a.close
      yield* Scope.close(first, Exit.void)

      const url2 = yield* startServer({ config, storage })
      const again = yield* request("GET", `${url2}/api/v1/documents/${id}/snapshot`)
      assert.deepStrictEqual(again.body, { version: 10, snapshotB64: b64("merged@10") })
      const joined = yield* (yield* connect(url2, id)).take("state")
      assert.deepStrictEqual((joined.updates as Array<{ seq: number }>).map((u) => u.seq), [11, 12])
    }))

  it.scoped("if the asked client disconnects before answering, another client is asked after the next update", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { snapshotEvery: 10 } })
      const id = yield* createDocument(url)
      const asked = yield* connect(url, id)
      const other = yield* connect(url, id)
      yield* asked.take("state")
      yield* other.take("state")
      for (let i = 1; i <= 10; i++) yield* asked.send(update(`op-${i}`))
      for (let i = 1; i <= 10; i++) yield* asked.take("ack")
      yield* asked.take("snapshot_request")
      yield* asked.close
      yield* other.take("presence_leave")
      yield* other.send(update("op-11"))
      yield* other.take("ack")
      assert.deepStrictEqual(yield* other.take("snapshot_request"), { type: "snapshot_request", version: 11 })
      assert.deepStrictEqual(
        (yield* request("GET", `${url}/api/v1/documents/${id}/snapshot`)).status,
        404,
        "no snapshot yet"
      )
    }))
})

describe("presence over the socket", () => {
  it.scoped("B's presence reaches A with B's ids; B's disconnect says so; bad presence is rejected, not broadcast", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxPresenceBytes: 64 } })
      const id = yield* createDocument(url)
      const a = yield* connect(url, id, { actorId: "alice" })
      yield* a.take("state")
      const b = yield* connect(url, id, { actorId: "bob" })
      const bState = yield* b.take("state")
      const joined = yield* a.take("presence_join")
      assert.deepStrictEqual(joined, { type: "presence_join", clientId: bState.clientId, actorId: "bob" })
      assert.deepStrictEqual(bState.presence, [{ clientId: a.frames[0]?.clientId, actorId: "alice", state: null }])

      yield* b.send({ type: "presence", state: { cursor: 3 } })
      assert.deepStrictEqual(yield* a.take("presence"), {
        type: "presence",
        clientId: bState.clientId,
        actorId: "bob",
        state: { cursor: 3 }
      })
      yield* b.send({ type: "presence", state: { big: "x".repeat(100) } })
      assert.strictEqual((yield* b.take("error")).code, "too_large")
      yield* b.send({ type: "presence", state: [1, 2] })
      assert.strictEqual((yield* b.take("error")).code, "bad_message")
      yield* b.send({ type: "presence", state: "hello" })
      assert.strictEqual((yield* b.take("error")).code, "bad_message")
      yield* b.barrier
      yield* a.barrier
      assert.strictEqual(a.of("presence").length, 1, "rejected presence is not broadcast")

      yield* b.close
      assert.deepStrictEqual(yield* a.take("presence_leave"), {
        type: "presence_leave",
        clientId: bState.clientId,
        actorId: "bob",
        reason: "disconnect"
      })
      yield* a.barrier
      assert.strictEqual(a.of("presence").length + a.of("presence_leave").length, 2, "nothing more from B")
    }))

  it.scoped("a silent socket goes idle on the server's clock and comes back with its next presence", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { presenceIdle: Duration.seconds(30), heartbeatInterval: Duration.hours(1) } })
      const id = yield* createDocument(url)
      const a = yield* connect(url, id)
      const b = yield* connect(url, id, { actorId: "bob" })
      yield* a.take("state")
      yield* b.take("state")
      yield* a.take("presence_join")
      yield* TestClock.adjust(Duration.seconds(20))
      yield* a.barrier
      yield* TestClock.adjust(Duration.seconds(10))
      assert.deepStrictEqual((yield* a.take("presence_leave")).reason, "idle", "b said nothing for 30 s")
      yield* a.send(update("while-b-idle"))
      yield* a.take("ack")
      yield* b.take("remote_update")
      yield* b.send({ type: "presence", state: { back: true } })
      assert.deepStrictEqual((yield* a.take("presence")).state, { back: true })
    }))
})

describe("durable dedupe and REST updates", () => {
  it.scoped("the same opId after a server restart (SQLite) gets the original seq with duplicate:true", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const storage = layerSqlite({ filename: Path.join(dir, "restart.db") })
      const first = yield* Scope.make()
      const url = yield* startServer({ storage }).pipe(Scope.extend(first))
      const id = yield* createDocument(url)
      const a = yield* connect(url, id)
      yield* a.send(update("op-1"))
      yield* a.send(update("op-2"))
      yield* a.take("ack")
      yield* a.take("ack")
      yield* a.close
      yield* Scope.close(first, Exit.void)

      const url2 = yield* startServer({ storage })
      const b = yield* connect(url2, id)
      const watcher = yield* connect(url2, id)
      yield* b.take("state")
      yield* watcher.take("state")
      yield* b.send(update("op-1", 2))
      assert.deepStrictEqual(yield* b.take("ack"), { type: "ack", opId: "op-1", seq: 1, duplicate: true })
      yield* watcher.barrier
      assert.strictEqual(watcher.of("remote_update").length, 0)
      const log = yield* request("GET", `${url2}/api/v1/documents/${id}/updates`)
      assert.deepStrictEqual((log.body as { version: number }).version, 2)
    }))

  it.scoped("REST updates are ordered, deduplicated and broadcast like socket updates", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxUpdateBytes: 8 } })
      const id = yield* createDocument(url)
      const socket = yield* connect(url, id)
      yield* socket.take("state")
      const post = (body: unknown) => request("POST", `${url}/api/v1/documents/${id}/updates`, body)
      const body = { opId: "r-1", actorId: "rest", baseVersion: 0, deltaB64: b64("hi") }
      assert.deepStrictEqual((yield* post(body)).body, { seq: 1, duplicate: false })
      assert.deepStrictEqual(yield* socket.take("remote_update"), {
        type: "remote_update",
        seq: 1,
        opId: "r-1",
        actorId: "rest",
        deltaB64: b64("hi")
      })
      assert.deepStrictEqual((yield* post(body)).body, { seq: 1, duplicate: true })
      yield* socket.send(update("s-2", 1))
      yield* socket.take("ack")
      const conflict = yield* post({ ...body, opId: "r-3", baseVersion: 7 })
      assert.strictEqual(conflict.status, 409)
      assert.deepStrictEqual(
        [(conflict.body as { code: string }).code, (conflict.body as { version: number }).version],
        ["invalid_base_version", 2]
      )
      for (const bad of [
        { ...body, opId: "" },
        { ...body, deltaB64: "%%%" },
        { ...body, deltaB64: "" },
        { ...body, deltaB64: b64("way too large") },
        { ...body, baseVersion: -1 }
      ]) {
        const reply = yield* post(bad)
        assert.strictEqual(reply.status, 400, JSON.stringify(bad))
        assert.isString((reply.body as { message: string }).message)
      }
      assert.strictEqual((yield* request("POST", `${url}/api/v1/documents/nope/updates`, body)).status, 404)
      const page = yield* request("GET", `${url}/api/v1/documents/${id}/updates?after=1&limit=1`)
      assert.deepStrictEqual(page.body, {
        version: 2,
        updates: [{ seq: 2, opId: "s-2", actorId: "tester", deltaB64: b64("s-2") }]
      })
      for (const query of ["after=-1", "limit=0", "limit=10001", "after=x"]) {
        assert.strictEqual((yield* request("GET", `${url}/api/v1/documents/${id}/updates?${query}`)).status, 400, query)
      }
      assert.strictEqual((yield* request("GET", `${url}/api/v1/documents/nope/updates`)).status, 404)
      yield* request("DELETE", `${url}/api/v1/documents/${id}`)
      assert.strictEqual((yield* post({ ...body, opId: "after-delete" })).status, 404)
      assert.strictEqual((yield* request("GET", `${url}/api/v1/documents/${id}/updates`)).status, 404)
      assert.strictEqual((yield* request("GET", `${url}/api/v1/documents/${id}/snapshot`)).status, 404)
    }))
})

describe("heartbeat", () => {
  it.scoped("a peer that stops answering WebSocket pings is dropped; one that answers stays", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { heartbeatInterval: Duration.seconds(30) } })
      const id = yield* createDocument(url)
      const alive = yield* connect(url, id)
      yield* alive.take("state")
      const dead = new WebSocket(`${url.replace("http", "ws")}/ws/documents/${id}`, { autoPong: false })
      let pings = 0
      dead.on("ping", () => {
        pings++
      })
      const closed = new Promise<number>((resolve) => dead.once("close", (code) => resolve(code)))
      const stateArrived = new Promise<void>((resolve) => dead.once("message", () => resolve()))
      yield* Effect.promise(() => stateArrived)
      yield* TestClock.adjust(Duration.seconds(30))
      yield* alive.barrier
      yield* TestClock.adjust(Duration.seconds(30))
      assert.strictEqual(yield* Effect.promise(() => closed), 1006)
      assert.isAtLeast(pings, 1)
      yield* alive.barrier
      assert.strictEqual(alive.ws.readyState, WebSocket.OPEN)
    }))
})
