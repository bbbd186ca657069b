/**
 * The WebSocket sync protocol (sections 2, 2.1, 2.2, 2.5) against a real server on port 0 with real clients.
 */
import { assert, describe, it } from "@effect/vitest"
import { Headers, HttpServer } from "@effect/platform"
import { Context, Deferred, Effect, Exit, Fiber, Layer, LogLevel, Option, Redacted, Scope, TestClock, TestServices, Tracer } from "effect"
import { EventEmitter } from "node:events"
import * as net from "node:net"
import WebSocket from "ws"
import * as wsModule from "ws"
import type { ServerConfigShape } from "../../src/Config.js"
import { connect, type Frame } from "../support/WsClient.js"
import * as Config from "../../src/Config.js"
import * as CloseCodes from "../../src/Domain/CloseCodes.js"
import { defaults } from "../../src/Config.js"
import { Authorizer, layerOpen } from "../../src/Http/Authorizer.js"
import * as Server from "../../src/Http/Server.js"
import { layerMemory } from "../../src/Storage/DocumentStorage.js"
import * as DocumentRegistry from "../../src/Document/DocumentRegistry.js"
import * as Heartbeat from "../../src/Http/Heartbeat.js"
import * as Limits from "../../src/Http/Limits.js"
import { DocumentStorage } from "../../src/Storage/DocumentStorage.js"
import {
  type Connections,
  environment,
  handshakeProblem,
  makeConnection,
  SocketLifecycle,
  textFrame,
  textFrameHeader
} from "../../src/Http/SyncSocket.js"
import { capture, loggedLine, request, startServer } from "../support/TestServer.js"
import { layerMemoryWith } from "../support/TestStorage.js"

/** Sends one raw HTTP request (headers as given) and returns the whole reply as text, once the server closes. */
const rawRequest = (port: number, path: string, headers: Record<string, string>, method = "GET") =>
  Effect.async<string>((resume) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
      socket.write([`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", ...lines, "", ""].join("\r\n"))
    })
    let text = ""
    socket.on("data", (chunk) => {
      text += String(chunk)
      if (/\r\n\r\n[\s\S]*\}/.test(text)) socket.end()
    })
    socket.on("close", () => resume(Effect.succeed(text)))
    socket.on("error", () => {})
  })

const b64 = (text: string) => Buffer.from(text).toString("base64")

const createDocument = (baseUrl: string, title = "doc") =>
  Effect.map(request("POST", `${baseUrl}/api/v1/documents`, { title }), (reply) => (reply.body as { id: string }).id)

const update = (opId: string, baseVersion = 0, text = opId) => ({
  type: "update",
  opId,
  baseVersion,
  actorId: "tester",
  deltaB64: b64(text)
})

const storedLog = (baseUrl: string, id: string) =>
  Effect.map(request("GET", `${baseUrl}/api/v1/documents/${id}/updates?after=0&limit=10000`), (reply) =>
    (reply.body as { updates: Array<{ seq: number; opId: string; deltaB64: string }> }).updates
  )

/** 3 writers pipeline 200 updates each while a reader watches: every ack, broadcast and stored row in one order. */
const pipelined = (config: Partial<ServerConfigShape>) =>
  Effect.gen(function* () {
    const url = yield* startServer({ config })
    const id = yield* createDocument(url)
    const reader = yield* connect(url, id)
    const writers = yield* Effect.all([connect(url, id), connect(url, id), connect(url, id)])
    yield* reader.take("state")
    for (const w of writers) yield* w.take("state")
    yield* Effect.forEach(
      writers,
      (w, n) => Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => w.send(update(`w${n}-${i}`)), { discard: true }),
      { concurrency: "unbounded", discard: true }
    )
    const acks: Array<Array<Frame>> = []
    for (const w of writers) acks.push(yield* Effect.forEach(Array.from({ length: 200 }), () => w.take("ack")))
    const seqs = acks.flat().map((f) => f.seq as number).sort((x, y) => x - y)
    assert.deepStrictEqual(seqs, Array.from({ length: 600 }, (_, i) => i + 1))
    const seen = yield* Effect.forEach(Array.from({ length: 600 }), () => reader.take("remote_update"))
    assert.deepStrictEqual(seen.map((f) => f.seq), seqs, "the reader sees every update once, in order")
    // Each writer sees exactly the others' 400 updates, in order, interleaved with its own acks without gaps.
    for (const w of writers) {
      yield* Effect.forEach(Array.from({ length: 400 }), () => w.take("remote_update"))
      const stream = w.frames.filter((f) => f.type === "ack" || f.type === "remote_update").map((f) => f.seq)
      assert.deepStrictEqual(stream, seqs)
    }
    const log = yield* storedLog(url, id)
    assert.deepStrictEqual(
      log.map((u) => [u.seq, u.opId, u.deltaB64]),
      seen.map((f) => [f.seq, f.opId, f.deltaB64])
    )
  })

describe("WebSocket sync", () => {
  it.scoped("acks the sender, relays to the others, never echoes", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const id = yield* createDocument(url)
      const a = yield* connect(url, id, { actorId: "alice" })
      const b = yield* connect(url, id)
      const stateA = yield* a.take("state")
      assert.deepStrictEqual(stateA.version, 0)
      assert.deepStrictEqual(stateA.snapshot, null)
      assert.deepStrictEqual(stateA.updates, [])
      assert.strictEqual(stateA.documentId, id)
      yield* b.take("state")
      yield* a.send({ ...update("op-1"), actorId: "alice" })
      assert.deepStrictEqual(yield* a.take("ack"), { type: "ack", opId: "op-1", seq: 1 })
      assert.deepStrictEqual(yield* b.take("remote_update"), {
        type: "remote_update",
        seq: 1,
        opId: "op-1",
        actorId: "alice",
        deltaB64: b64("op-1")
      })
      yield* a.barrier
      assert.deepStrictEqual(a.of("remote_update"), [])
    }))

  it.scoped("state carries the whole log as one message: older updates read from storage, then the in-memory tail", () =>
    Effect.gen(function* () {
      // A tail of ~2 updates: a join reads the rest from storage and splices both runs into one state frame.
      const url = yield* startServer({ config: { logTailBytes: 300 } })
      const id = yield* createDocument(url)
      const actorId = "zoë-🙂"
      const writer = yield* connect(url, id, { actorId })
      yield* writer.take("state")
      for (let i = 1; i <= 10; i++) {
        yield* writer.send({ ...update(`op-${i}`, i - 1, `délta ${i}`), actorId })
        yield* writer.take("ack")
      }
      const stored = yield* storedLog(url, id)
      assert.strictEqual(stored.length, 10)
      const expected = stored.map(({ seq, opId, deltaB64 }) => ({ seq, opId, actorId, deltaB64 }))
      const reader = yield* connect(url, id)
      const state = yield* reader.take("state")
      assert.deepStrictEqual(state.updates, expected)
      assert.strictEqual(state.version, 10)
      // Resuming: only what follows `since`, from the tail and storage alike.
      const resumed = yield* connect(url, id, { since: 4 })
      assert.deepStrictEqual((yield* resumed.take("state")).updates, expected.slice(4))
      yield* reader.barrier
      assert.strictEqual(reader.of("state").length, 1)
    }))

  it.scoped("a repeated opId, from any connection, gets the original seq with duplicate:true and is not broadcast", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const id = yield* createDocument(url)
      const a = yield* connect(url, id)
      const b = yield* connect(url, id)
      yield* a.send(update("op-1"))
      yield* a.take("ack")
      yield* b.take("remote_update")
      yield* a.send(update("op-1"))
      assert.deepStrictEqual(yield* a.take("ack"), { type: "ack", opId: "op-1", seq: 1, duplicate: true })
      yield* b.send(update("op-1", 1))
      assert.deepStrictEqual(yield* b.take("ack"), { type: "ack", opId: "op-1", seq: 1, duplicate: true })
      yield* a.barrier
      yield* b.barrier
      assert.strictEqual(a.of("remote_update").length, 0)
      assert.strictEqual(b.of("remote_update").length, 1)
      assert.strictEqual((yield* storedLog(url, id)).length, 1)
    }))

  it.scoped("3 writers x 200 pipelined updates: acks are exactly 1..600 and a reader sees the stored log in order", () =>
    pipelined({}))

  it.scoped("the same through a mailbox of 2: frames wait (reading paused) instead of being dropped or reordered", () =>
    pipelined({ mailboxCapacity: 2, maxBatchSize: 2 }))

  it.scoped("late joiners get every update; since=k gets only k+1..V; since > V gets reset:true", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const id = yield* createDocument(url)
      const writer = yield* connect(url, id)
      for (let i = 0; i < 5; i++) yield* writer.send(update(`op-${i}`))
      for (let i = 0; i < 5; i++) yield* writer.take("ack")
      const seqsOf = (state: Frame) => (state.updates as Array<{ seq: number }>).map((u) => u.seq)
      const late = yield* (yield* connect(url, id)).take("state")
      assert.deepStrictEqual(seqsOf(late), [1, 2, 3, 4, 5])
      assert.strictEqual(late.version, 5)
      const resumed = yield* (yield* connect(url, id, { since: 3 })).take("state")
      assert.deepStrictEqual(seqsOf(resumed), [4, 5])
      assert.strictEqual(resumed.reset, undefined)
      const ahead = yield* (yield* connect(url, id, { since: 9 })).take("state")
      assert.deepStrictEqual(seqsOf(ahead), [1, 2, 3, 4, 5])
      assert.strictEqual(ahead.reset, true)
    }))

  it.scoped("two documents have independent seqs and no cross-talk", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const one = yield* createDocument(url, "one")
      const two = yield* createDocument(url, "two")
      const a = yield* connect(url, one)
      const b = yield* connect(url, two)
      yield* a.send(update("x"))
      yield* b.send(update("x"))
      assert.strictEqual((yield* a.take("ack")).seq, 1)
      assert.strictEqual((yield* b.take("ack")).seq, 1)
      yield* a.barrier
      yield* b.barrier
      assert.deepStrictEqual([a.of("remote_update").length, b.of("remote_update").length], [0, 0])
    }))

  it.scoped("each bad input gets its error code, stores nothing, and the connection still answers ping", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxUpdateBytes: 16 } })
      const id = yield* createDocument(url)
      const c = yield* connect(url, id)
      yield* c.take("state")
      const cases: ReadonlyArray<readonly [string | Buffer, string]> = [
        ["not json", "bad_message"],
        ["[1,2]", "bad_message"],
        ["42", "bad_message"],
        [JSON.stringify({ type: "dance" }), "bad_message"],
        [JSON.stringify({ opId: "x" }), "bad_message"],
        [JSON.stringify({ ...update("a"), opId: "" }), "bad_message"],
        [JSON.stringify({ ...update("a"), opId: "x".repeat(129) }), "bad_message"],
        [JSON.stringify({ ...update("a"), actorId: 7 }), "bad_message"],
        [JSON.stringify({ ...update("a"), baseVersion: -1 }), "bad_message"],
        [JSON.stringify({ ...update("a"), baseVersion: 1.5 }), "bad_message"],
        [JSON.stringify({ ...update("a"), deltaB64: "not base64!" }), "bad_message"],
        [JSON.stringify({ ...update("a"), deltaB64: "" }), "bad_message"],
        [JSON.stringify({ ...update("a"), deltaB64: b64("x".repeat(17)) }), "too_large"],
        [JSON.stringify(update("a", 3)), "invalid_base_version"],
        [Buffer.from([1, 2, 3]), "bad_message"]
      ]
      for (const [frame, code] of cases) {
        yield* c.sendRaw(frame)
        const error = yield* c.take("error")
        assert.strictEqual(error.code, code, `${String(frame).slice(0, 60)} -> ${code}`)
        assert.isString(error.message)
        yield* c.barrier
      }
      assert.strictEqual((yield* c.take("error").pipe(Effect.timeout(0), Effect.option))._tag, "None")
      const invalid = c.of("error").find((e) => e.code === "invalid_base_version")
      assert.strictEqual(invalid?.opId, "a")
      assert.strictEqual((yield* storedLog(url, id)).length, 0)
    }))

  it.scoped("a message rejected as it is read is answered at once, before an earlier update's ack (replies match by opId)", () =>
    Effect.gen(function* () {
      // Commits wait for the test: the first update's ack cannot go out before the gate opens.
      const gate = yield* Deferred.make<void>()
      const storage = layerMemoryWith((memory) => ({
        append: (id, updates) => Effect.zipRight(Deferred.await(gate), memory.append(id, updates))
      }))
      const url = yield* startServer({ storage })
      const id = yield* createDocument(url)
      const c = yield* connect(url, id)
      yield* c.take("state")
      yield* c.send(update("u-1"))
      yield* c.send({ ...update("u-2", 1), deltaB64: "not base64!" })
      // The pong comes after everything the server sent before it: the error, and no ack.
      yield* c.barrier
      assert.deepStrictEqual(c.frames.slice(1).map((frame) => [frame.type, frame.opId ?? null]), [
        ["error", "u-2"],
        ["pong", null]
      ])
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* c.take("ack"), { type: "ack", opId: "u-1", seq: 1 })
      assert.deepStrictEqual((yield* storedLog(url, id)).map((row) => row.opId), ["u-1"])
    }))

  it.scoped("a frame over MAX_MESSAGE_BYTES closes the connection with 1009, logged as the server's close", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const url = yield* startServer({ config: { maxMessageBytes: 2048 }, logLevel: LogLevel.Info }).pipe(
        Effect.provide(capture(lines))
      )
      const id = yield* createDocument(url)
      const c = yield* connect(url, id)
      yield* c.take("state")
      yield* c.sendRaw(JSON.stringify(update("big", 0, "x".repeat(4096))))
      assert.strictEqual((yield* c.closed).code, 1009)
      const left = yield* loggedLine(lines, "client left")
      assert.include(left, "closedBy=server", lines.join("\n"))
      assert.include(left, "closeCode=1009")
    }))

  it.scoped("a protocol error ends the connection at once, though its client never answers the close", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxMessageBytes: 2048 } })
      const id = yield* createDocument(url)
      const watcher = yield* connect(url, id)
      yield* watcher.take("state")
      // A client that completes the handshake, then sends the header of a frame over MAX_MESSAGE_BYTES and never
      // answers the server's close (ws waits 30 s for that before it cuts the socket).
      const raw = yield* Effect.acquireRelease(
        Effect.async<net.Socket>((resume) => {
          // Half-open allowed: it does not even end its side when the server ends its own.
          const socket = net.connect({ port: Number(new URL(url).port), host: "127.0.0.1", allowHalfOpen: true }, () => {
            socket.write(
              `GET /ws/documents/${id} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
          })
          socket.once("data", (data) => {
            assert.include(String(data), "101 Switching Protocols")
            resume(Effect.succeed(socket))
          })
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      const joined = yield* watcher.take("presence_join")
      const header = Buffer.alloc(14)
      header[0] = 0x81
      header[1] = 0x80 | 127
      header.writeUInt32BE(1_000_000, 6)
      raw.write(header)
      // ws would cut the socket after 30 s: the leave must come well before that.
      const left = yield* watcher.take("presence_leave").pipe(Effect.timeout("5 seconds"), TestServices.provideLive)
      assert.deepInclude(left, { clientId: joined.clientId, reason: "disconnect" })
    }))

  it.scoped("unknown documents close with 4404, deleted ones with 4410, and DELETE closes live sockets with 4410; refusals are logged", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const url = yield* startServer({ logLevel: LogLevel.Info }).pipe(Effect.provide(capture(lines)))
      assert.strictEqual((yield* (yield* connect(url, "no-such-doc")).closed).code, 4404)
      const notFound = yield* loggedLine(lines, "client refused")
      for (const part of ["documentId=no-such-doc", "closeCode=4404", "reason=document not found"]) assert.include(notFound, part)
      const id = yield* createDocument(url)
      const live = yield* connect(url, id)
      yield* live.take("state")
      assert.strictEqual((yield* request("DELETE", `${url}/api/v1/documents/${id}`)).status, 204)
      assert.strictEqual((yield* live.closed).code, 4410)
      assert.strictEqual((yield* (yield* connect(url, id)).closed).code, 4410)
      const deleted = lines.filter((line) => line.startsWith("client refused") && line.includes(`documentId=${id}`))
      assert.strictEqual(deleted.length, 1, lines.join("\n"))
      for (const part of ["closeCode=4410", "reason=document deleted"]) assert.include(deleted[0], part)
    }))

  it.scoped("a reader that stops reading is closed with 4408 while the writer and other readers go on", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxBufferedBytes: 1024 * 1024 } })
      const id = yield* createDocument(url)
      const slow = yield* connect(url, id)
      const fast = yield* connect(url, id)
      const writer = yield* connect(url, id)
      yield* slow.take("state")
      // Stop reading: the kernel buffers fill, then the server's unsent bytes for this socket grow.
      slow.ws.pause()
      const payload = "y".repeat(16 * 1024)
      const windows = 100
      const window = 16
      for (let w = 0; w < windows; w++) {
        for (let i = 0; i < window; i++) yield* writer.send(update(`op-${w}-${i}`, 0, payload))
        for (let i = 0; i < window; i++) yield* writer.take("ack")
      }
      const total = windows * window
      const relayed = yield* Effect.forEach(Array.from({ length: total }), () => fast.take("remote_update"))
      assert.deepStrictEqual(relayed.map((f) => f.seq), Array.from({ length: total }, (_, i) => i + 1))
      slow.ws.resume()
      const closed = yield* slow.closed
      assert.strictEqual(closed.code, 4408)
      // What the slow reader did get is a gap-free prefix of the log.
      const got = slow.of("remote_update").map((f) => f.seq)
      assert.deepStrictEqual(got, Array.from({ length: got.length }, (_, i) => i + 1))
      assert.isBelow(got.length, total)
      assert.strictEqual(fast.ws.readyState, fast.ws.OPEN)
    }))

  it.scoped("shutdown closes sockets with 1001 after acking what it accepted", () =>
    Effect.gen(function* () {
      const serverScope = yield* Scope.make()
      const url = yield* startServer().pipe(Scope.extend(serverScope))
      const id = yield* createDocument(url)
      const c = yield* connect(url, id)
      yield* c.take("state")
      yield* c.send(update("op-1"))
      yield* c.take("ack")
      yield* Scope.close(serverScope, Exit.void)
      assert.strictEqual((yield* c.closed).code, 1001)
    }))

  it.scoped("the upgrade request is answered once the socket is open, and the connection outlives it", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const url = yield* startServer({ logLevel: LogLevel.Info }).pipe(Effect.provide(capture(lines)))
      const id = yield* createDocument(url)
      const c = yield* connect(url, id)
      yield* c.take("state")
      // The request's fiber has ended (its log line is written when it does) while the socket is open...
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      assert.match(lines.join("\n"), new RegExp(`^GET /ws/documents/${id} 101 \\d+ms`, "m"))
      // ...and the connection still serves: its own update, and the end of it logged when the client leaves.
      yield* c.send(update("after-upgrade"))
      assert.deepInclude(yield* c.take("ack"), { opId: "after-upgrade", seq: 1 })
      yield* c.close
      assert.include(yield* loggedLine(lines, "client left"), "closedBy=client", lines.join("\n"))
    }))

  it.scoped("a join records no tracing span (its query may carry a token); REST requests still do", () =>
    Effect.gen(function* () {
      const spans: Array<Tracer.Span> = []
      const base = yield* Effect.tracer
      const recording = Tracer.make({
        span: (...args) => {
          const span = base.span(...args)
          spans.push(span)
          return span
        },
        context: base.context
      })
      const url = yield* startServer().pipe(Effect.withTracer(recording))
      const id = yield* createDocument(url)
      const c = yield* connect(url, id, { token: "query-token-123" })
      yield* c.take("state")
      const attributes = spans.map((span) => JSON.stringify([...span.attributes]))
      assert.isTrue(attributes.some((text) => text.includes("/api/v1/documents")), "REST requests are traced")
      assert.isFalse(attributes.some((text) => text.includes("/ws/documents")), attributes.join("\n"))
      assert.isFalse(attributes.some((text) => text.includes("query-token-123")))
    }))

  it.scoped("a handshake ws would refuse gets a JSON 400 from us, and leaves nothing behind to hold up shutdown", () =>
    Effect.gen(function* () {
      const serverScope = yield* Scope.make()
      const url = yield* startServer().pipe(Scope.extend(serverScope))
      const id = yield* createDocument(url)
      const { port } = new URL(url)
      const good = { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13" }
      const cases: Array<[Record<string, string>, string]> = [
        [{ ...good, "Sec-WebSocket-Key": "" }, "Sec-WebSocket-Key"],
        [{ ...good, "Sec-WebSocket-Key": "short" }, "Sec-WebSocket-Key"],
        [{ ...good, "Sec-WebSocket-Version": "12" }, "Sec-WebSocket-Version"],
        [{ ...good, "Sec-WebSocket-Protocol": "a, a" }, "Sec-WebSocket-Protocol"],
        [{ ...good, "Sec-WebSocket-Protocol": "bad token" }, "Sec-WebSocket-Protocol"],
        [{ ...good, Upgrade: "h2c" }, "Upgrade"]
      ]
      for (const [headers, named] of cases) {
        const reply = yield* rawRequest(Number(port), `/ws/documents/${id}`, headers)
        assert.match(reply, /^HTTP\/1\.1 400 /, reply)
        assert.include(reply, named)
      }
      // The same server still upgrades a good handshake, and shuts down promptly (a stuck upgrade would hang it).
      const c = yield* connect(url, id)
      yield* c.take("state")
      yield* Scope.close(serverScope, Exit.void).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("shutdown hung") })
      )
      assert.strictEqual((yield* c.closed).code, 1001)
    }))

  it.scoped("on the standalone server: other paths and methods are left to the router, a bad query gets a JSON 400", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const url = yield* startServer({ logLevel: LogLevel.Info }).pipe(Effect.provide(capture(lines)))
      const id = yield* createDocument(url)
      const port = Number(new URL(url).port)
      const good = { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13" }
      for (const path of ["/ws/documents/", `/ws/documents/${id}/more`, "/ws/documents/%E0%A4%A"]) {
        const reply = yield* rawRequest(port, path, good)
        assert.match(reply, /^HTTP\/1\.1 404 /, `${path}: ${reply}`)
      }
      // The router's answer (JSON), not a handshake refused by ws.
      const post = yield* rawRequest(port, `/ws/documents/${id}`, good, "POST")
      assert.match(post, /^HTTP\/1\.1 404 [\s\S]*"message"/, post)
      const badQuery = yield* rawRequest(port, `/ws/documents/${id}?since=soon`, good)
      assert.match(badQuery, /^HTTP\/1\.1 400 /, badQuery)
      assert.include(badQuery, JSON.stringify({ message: "since must be a non-negative integer" }))
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      assert.match(lines.join("\n"), new RegExp(`^GET /ws/documents/${id} 400 \\d+ms`, "m"))
    }))

  it.scoped("frames sent while the join waits stop being read past a limit, and are all served once it is joined", () =>
    Effect.gen(function* () {
      // Admission of the token "wait" waits until the test lets it go.
      const admitted = yield* Deferred.make<void>()
      const slow = Layer.succeed(Authorizer, {
        authenticate: (credentials) =>
          Effect.as(
            Option.exists(credentials.token, (token) => Redacted.value(token) === "wait") ? Deferred.await(admitted) : Effect.void,
            { subject: "u", role: "admin" as const, documents: "all" as const, expiresAt: Option.none() }
          ),
        authorize: () => Effect.void
      })
      const url = yield* Layer.build(
        Server.layerWithAuthorizer.pipe(
          Layer.provide(slow),
          Layer.provide(layerMemory),
          Layer.provide(Config.layer({ port: 0, host: "127.0.0.1", databaseUrl: "memory://" }))
        )
      ).pipe(Effect.map((context) => Server.baseUrl(Context.get(context, HttpServer.HttpServer))))
      const id = yield* createDocument(url)
      const client = yield* connect(url, id, { token: "wait" })
      // Enough small frames to reach the limit (1,024), then 24 MB more: more than the kernel's buffers hold.
      const pings = 1100
      for (let i = 0; i < pings; i++) client.ws.send(JSON.stringify({ type: "ping" }))
      const big = JSON.stringify({ type: "ping", pad: "x".repeat(1024 * 1024) })
      for (let i = 0; i < 24; i++) client.ws.send(big)
      // Client and server share this event loop: a server that kept reading would empty the client's buffer here.
      const turn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      yield* Effect.repeat(turn, { while: () => client.ws.bufferedAmount > 0, times: 5000 })
      assert.isAbove(client.ws.bufferedAmount, 4 * 1024 * 1024, "the server stopped reading")
      yield* Deferred.succeed(admitted, undefined)
      assert.strictEqual((yield* client.take("state")).type, "state")
      // Reading resumed: every frame is answered, in order, after the state.
      yield* Effect.forEach(Array.from({ length: pings + 24 }), () => client.take(), { discard: true })
      assert.strictEqual(client.ws.bufferedAmount, 0)
      assert.strictEqual(client.of("pong").length, client.frames.length - 1)
    }))

  it.scoped("an upgrade whose client resets the connection while it is answered does not take the server down", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const id = yield* createDocument(url)
      const port = Number(new URL(url).port)
      // A bad handshake is answered with a 400 on the upgraded socket, which Node hands over with no error listener:
      // the client's reset makes that write fail.
      const resetWhileAnswered = Effect.async<void>((resume) => {
        const socket = net.connect(port, "127.0.0.1", () => {
          socket.write(`GET /ws/documents/${id}?since=soon HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`)
          socket.resetAndDestroy()
        })
        socket.on("error", () => {})
        socket.on("close", () => resume(Effect.void))
      })
      yield* Effect.forEach(Array.from({ length: 50 }), () => resetWhileAnswered, { concurrency: 10, discard: true })
      // Let the server read the resets and fail its writes.
      yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.promise(() => new Promise((resolve) => setImmediate(resolve))), { discard: true })
      const c = yield* connect(url, id)
      assert.strictEqual((yield* c.take("state")).type, "state")
    }))

  it.scoped("below the minimum log level a connection's info lines are left out, its warnings are not", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const url = yield* startServer({ config: { maxConnectionsPerDocument: 1 }, logLevel: LogLevel.Warning }).pipe(
        Effect.provide(capture(lines))
      )
      const id = yield* createDocument(url)
      const first = yield* connect(url, id)
      yield* first.take("state")
      const second = yield* connect(url, id)
      assert.strictEqual((yield* second.closed).code, CloseCodes.TooManyConnections)
      const refused = yield* loggedLine(lines, "client refused")
      assert.include(refused, `closeCode=${CloseCodes.TooManyConnections}`)
      assert.include(refused, `documentId=${id}`)
      // Why, as an annotation: a second message would print a second `message=` key in logfmt.
      assert.match(refused, /^client refused (\S+=.* )?reason=too many connections: the document holds MAX_CONNECTIONS_PER_DOCUMENT/)
      assert.isFalse(lines.some((line) => line.includes("client joined")), lines.join("\n"))
    }))

  it.scoped("on the standalone server: clients that close before their join completes leave no member and no count behind", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { maxConnectionsPerDocument: 1 } })
      const id = yield* createDocument(url)
      const wsUrl = `${url.replace("http", "ws")}/ws/documents/${id}`
      for (let i = 0; i < 5; i++) {
        yield* Effect.promise(() =>
          new Promise<void>((resolve) => {
            const ws = new WebSocket(wsUrl)
            ws.on("open", () => ws.terminate())
            ws.on("error", () => {})
            ws.on("close", () => resolve())
          })
        )
      }
      // The server ends them after their joins; with one connection allowed per document, a leftover would refuse
      // this one (4429), and a leftover member would show in its presence.
      let state: Frame | undefined
      for (let attempt = 0; attempt < 200 && state === undefined; attempt++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        const c = yield* connect(url, id)
        const first = yield* Effect.race(c.take("state"), Effect.map(c.closed, () => undefined))
        if (first !== undefined) state = first
        else yield* c.close
      }
      assert.isDefined(state, "a join was refused every time: a connection was left counted")
      assert.deepStrictEqual(state?.presence, [])
    }))

  it.scoped("on the standalone server: a join whose admission dies is closed with 1011, and the server goes on", () =>
    Effect.gen(function* () {
      // An Authorizer with a bug: it dies for one token.
      const buggy = Layer.succeed(Authorizer, {
        authenticate: (credentials) =>
          Option.exists(credentials.token, (token) => Redacted.value(token) === "die")
            ? Effect.dieMessage("authorizer bug")
            : Effect.succeed({ subject: "u", role: "admin" as const, documents: "all" as const, expiresAt: Option.none() }),
        authorize: () => Effect.void
      })
      const url = yield* Layer.build(
        Server.layerWithAuthorizer.pipe(
          Layer.provide(buggy),
          Layer.provide(layerMemory),
          Layer.provide(Config.layer({ port: 0, host: "127.0.0.1", databaseUrl: "memory://", maxConnectionsPerDocument: 1 }))
        )
      ).pipe(Effect.map((context) => Server.baseUrl(Context.get(context, HttpServer.HttpServer))))
      const id = yield* createDocument(url)
      const dying = yield* connect(url, id, { token: "die" })
      assert.strictEqual((yield* dying.closed).code, 1011)
      // Nothing of it is left: the one connection this document allows is free.
      const next = yield* connect(url, id)
      assert.strictEqual((yield* next.take("state")).version, 0)
    }))

  /**
   * A connection outside any server: the services it needs on memory://, a document, the route's books (`closing`
   * when the route's finalizer has begun) and a fake socket that records the codes it is closed with.
   */
  const detached = (closing: boolean) =>
    Effect.gen(function* () {
      const context = yield* Layer.build(
        Layer.mergeAll(DocumentRegistry.layer, layerOpen, Limits.layer, Heartbeat.layer).pipe(
          Layer.provideMerge(layerMemory),
          Layer.provideMerge(Config.layer({}))
        )
      )
      const services = yield* Effect.provide(environment, context)
      const document = yield* Effect.flatMap(DocumentStorage, (storage) => storage.create("doc")).pipe(Effect.provide(context))
      const connections: Connections = { run: (effect) => Effect.runFork(effect), live: new Set(), closing }
      const closed: Array<number> = []
      const fake = Object.assign(new EventEmitter(), {
        OPEN: 1,
        CONNECTING: 0,
        readyState: 1,
        pause: () => {},
        resume: () => {},
        bufferedAmount: 0,
        extensions: "",
        _socket: { cork: () => {}, uncork: () => {}, write: () => true },
        close: (code: number) => {
          closed.push(code)
          fake.readyState = 2
        }
      })
      const args = [services, connections, document.id, { since: undefined, actorId: undefined }, {
        token: Option.none(),
        headers: Headers.empty
      }] as const
      return { services, connections, args, closed, ws: fake as unknown as WebSocket }
    })

  it.scoped("a connection made after shutdown began is closed with 1001, neither admitted nor joined", () =>
    Effect.gen(function* () {
      // The route's finalizer has begun (`closing`) when this connection's join starts.
      const { args, closed, services, ws } = yield* detached(true)
      const connection = new SocketLifecycle(...args, true)
      yield* connection.setup(ws)
      assert.deepStrictEqual(closed, [1001])
      assert.deepStrictEqual(yield* services.registry.loaded, [], "the document was not even loaded")
      assert.strictEqual(yield* services.limits.count(), 0)
    }))

  it.scoped("a shutdown that catches a standalone connection before admission closes its socket with 1001, once", () =>
    Effect.gen(function* () {
      const { args, closed, connections, services, ws } = yield* detached(false)
      const connection = new SocketLifecycle(...args, false)
      // Upgraded, not yet admitted (its fiber has not run) when the route's finalizer ends it.
      connection.attach(ws)
      assert.strictEqual(connections.live.size, 1)
      yield* connection.atShutdown()
      assert.deepStrictEqual(closed, [1001])
      // The admission that runs after it admits nothing and closes nothing again.
      yield* connection.setup(ws)
      assert.deepStrictEqual(closed, [1001])
      assert.deepStrictEqual(yield* services.registry.loaded, [])
      assert.strictEqual(yield* services.limits.count(), 0)
    }))

  it.scoped("a connection that ends gives back its slot of the caps and is no longer watched by the heartbeat", () =>
    Effect.gen(function* () {
      const { args, services, ws } = yield* detached(false)
      const connection = new SocketLifecycle(...args, false)
      connection.attach(ws)
      yield* connection.setup(ws)
      assert.deepStrictEqual(yield* services.registry.loaded, [args[2]], "joined")
      assert.strictEqual(yield* services.limits.count(), 1)
      assert.strictEqual(services.heartbeat.watching(), 1)
      yield* connection.ended("normal")
      assert.strictEqual(yield* services.limits.count(), 0)
      assert.strictEqual(services.heartbeat.watching(), 0)
    }))

  it.scoped("a connection that ends stops its heartbeat watch before it leaves the document", () =>
    Effect.gen(function* () {
      const { args, services, ws } = yield* detached(false)
      const [, connections, documentId, query, credentials] = args
      // What happens, in order: the heartbeat's unwatch, and the leave as another member sees it.
      const events: Array<string> = []
      const heartbeat = {
        ...services.heartbeat,
        unwatch: (socket: WebSocket) => {
          events.push("unwatch")
          services.heartbeat.unwatch(socket)
        }
      }
      const other = {
        clientId: "other",
        actorId: "other",
        send: (frame: string | Uint8Array | ReadonlyArray<Uint8Array>) => {
          const text = typeof frame === "string" ? frame : Buffer.concat(frame instanceof Uint8Array ? [frame] : [...frame]).toString()
          if (text.includes('"presence_leave"')) events.push("presence_leave")
        },
        close: () => {}
      }
      yield* services.registry.join(documentId, other, undefined)
      const connection = new SocketLifecycle({ ...services, heartbeat }, connections, documentId, query, credentials, false)
      connection.attach(ws)
      yield* connection.setup(ws)
      yield* connection.ended("normal")
      assert.deepStrictEqual(events, ["unwatch", "presence_leave"])
    }))

  it.scoped("a connection that ends while its join waits leaves once the join completes, once, and lets go of the document", () =>
    Effect.gen(function* () {
      const { args, services, ws } = yield* detached(false)
      const [, connections, documentId, query, credentials] = args
      // The registry's answer waits for `answer` (`asked` once it waits); each leave of the membership is recorded.
      const asked = yield* Deferred.make<void>()
      const answer = yield* Deferred.make<void>()
      const leaves: Array<string> = []
      const registry: DocumentRegistry.DocumentRegistryShape = {
        ...services.registry,
        enter: (id, connection, since, keep) =>
          Effect.zipRight(
            Effect.zipRight(Deferred.succeed(asked, undefined), Deferred.await(answer)),
            services.registry.enter(id, connection, since, (membership) =>
              keep === undefined
                ? Effect.void
                : keep({ leave: () => Effect.zipLeft(membership.leave(), Effect.sync(() => leaves.push("leave"))) }))
          )
      }
      // Another member sees the connection join, then leave.
      const seen: Array<string> = []
      const other = {
        clientId: "other",
        actorId: "other",
        send: (frame: string | Uint8Array | ReadonlyArray<Uint8Array>) => {
          const text = typeof frame === "string" ? frame : Buffer.concat(frame instanceof Uint8Array ? [frame] : [...frame]).toString()
          const type = /"type":"(presence_join|presence_leave)"/.exec(text)?.[1]
          if (type !== undefined) seen.push(type)
        },
        close: () => {}
      }
      const [, , otherMembership] = yield* services.registry.enter(documentId, other, undefined)
      const connection = new SocketLifecycle({ ...services, registry }, connections, documentId, query, credentials, false)
      connection.attach(ws)
      const joining = yield* Effect.fork(connection.setup(ws))
      yield* Deferred.await(asked)
      yield* connection.ended("normal")
      assert.deepStrictEqual(leaves, [], "nothing to leave before the join completes")
      yield* Deferred.succeed(answer, undefined)
      yield* Fiber.join(joining)
      assert.deepStrictEqual(leaves, ["leave"])
      assert.deepStrictEqual(seen, ["presence_join", "presence_leave"])
      // The connection let go of the document: the other member's leave leaves nobody holding it, and it unloads.
      yield* otherMembership.leave()
      yield* TestClock.adjust(services.config.documentIdle)
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* services.registry.loaded, [])
    }))

  it("textFrameHeader and textFrame are what ws writes for a server's text frame, at every length encoding", () => {
    const wsFrame = (data: Buffer) =>
      (wsModule as unknown as {
        Sender: { frame(data: Buffer, options: Record<string, unknown>): ReadonlyArray<Buffer> }
      }).Sender.frame(data, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: true }).map((part) => Buffer.from(part))
    for (const length of [0, 1, 125, 126, 127, 65_535, 65_536, 2_000_000]) {
      const payload = Buffer.alloc(length, "é".repeat(length))
      const [header, data = Buffer.alloc(0)] = wsFrame(payload)
      assert.deepStrictEqual(textFrameHeader(length), header, `length ${length}`)
      const whole = Buffer.concat([header as Buffer, data])
      assert.isTrue(textFrame(payload).equals(whole), `bytes of length ${length}`)
      // A string is framed by its UTF-8 length, not its length in UTF-16 units.
      assert.isTrue(textFrame(payload.toString()).equals(textFrame(Buffer.from(payload.toString()))), `string of length ${length}`)
    }
    const text = "ack é 😀"
    assert.isTrue(textFrame(text).equals(Buffer.concat(wsFrame(Buffer.from(text)))))
    // Past 32 bits (not allocated here): 127, then the length in 64 bits, big-endian.
    assert.deepStrictEqual(textFrameHeader(2 ** 32 + 5), Buffer.from([0x81, 127, 0, 0, 0, 1, 0, 0, 0, 5]))
  })

  it.effect("frames are written whole to the socket, corked per turn; with an extension negotiated they go through ws", () =>
    Effect.gen(function* () {
      const fake = (extensions: string) => {
        const written: Array<Buffer> = []
        const sent: Array<{ data: unknown; options: unknown }> = []
        let corks = 0
        const ws = {
          OPEN: 1,
          CONNECTING: 0,
          readyState: 1,
          bufferedAmount: 0,
          extensions,
          send: (data: unknown, options?: unknown) => sent.push({ data, options }),
          _socket: {
            cork: () => corks++,
            uncork: () => {},
            write: (chunk: Buffer) => written.push(Buffer.from(chunk))
          }
        }
        const connection = makeConnection(ws as unknown as WebSocket, "actor", defaults)
        return { connection, written, sent, corks: () => corks }
      }
      const shared = Buffer.from('{"type":"remote_update","seq":1}')
      const parts = [Buffer.from('{"type":"state",'), Buffer.from('"updates":[]}')]

      const plain = fake("")
      plain.connection.send('{"type":"ack","seq":1,"actorId":"é"}')
      plain.connection.send(shared)
      plain.connection.send(shared)
      plain.connection.send(parts)
      assert.deepStrictEqual(plain.sent, [])
      assert.strictEqual(plain.corks(), 1)
      assert.deepStrictEqual(Buffer.concat(plain.written), Buffer.concat([
        textFrame('{"type":"ack","seq":1,"actorId":"é"}'),
        textFrame(shared),
        textFrame(shared),
        textFrame(Buffer.concat(parts))
      ]))

      const compressed = fake("permessage-deflate")
      compressed.connection.send("text")
      compressed.connection.send(shared)
      compressed.connection.send(parts)
      assert.deepStrictEqual(compressed.written, [])
      assert.deepStrictEqual(compressed.sent.map(({ data }) => typeof data === "string" ? data : Buffer.from(data as Buffer).toString()), [
        "text",
        shared.toString(),
        Buffer.concat(parts).toString()
      ])
      assert.deepStrictEqual(compressed.sent.slice(1).map(({ options }) => options), [{ binary: false }, { binary: false }])
      yield* Effect.promise(() => new Promise((resolve) => process.nextTick(resolve)))
    }))

  it("handshakeProblem accepts what ws accepts", () => {
    const good = { upgrade: "WebSocket", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    assert.isUndefined(handshakeProblem(good))
    assert.isUndefined(handshakeProblem({ ...good, "sec-websocket-version": "8" }))
    assert.isUndefined(handshakeProblem({ ...good, "sec-websocket-protocol": "docsync.v1, json" }))
    assert.isDefined(handshakeProblem({ ...good, "sec-websocket-protocol": "docsync.v1,,json" }))
    assert.isDefined(handshakeProblem({ ...good, upgrade: undefined }))
  })

  it.scoped("a bad query is refused before the upgrade with a JSON 400", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const id = yield* createDocument(url)
      for (const query of ["since=-1", "since=abc", `actorId=${"z".repeat(129)}`]) {
        const status = yield* Effect.async<number>((resume) => {
          const ws = new WebSocket(`${url.replace("http", "ws")}/ws/documents/${id}?${query}`)
          ws.on("unexpected-response", (_request, response) => resume(Effect.succeed(response.statusCode ?? 0)))
          ws.on("open", () => resume(Effect.succeed(101)))
          ws.on("error", () => {})
        })
        assert.strictEqual(status, 400, query)
      }
    }))
})
