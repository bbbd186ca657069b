/**
 * Authentication and authorization of the WebSocket route (protocol sections 2, 2.5 and 4) on a real server with
 * AUTH_SECRET set and real clients: 4401 for every bad token (query or header), 4403 for a document the token
 * does not grant, read-only connections (`forbidden`, nothing stored, presence allowed), expiry of an open
 * socket, and no token in any log line.
 *
 * `scopedLive`: token expiry is checked against the server's Clock, which must be the wall clock that signed them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, LogLevel } from "effect"
import { capture, request } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"
import {
  badTokens,
  bearer,
  call,
  createDocument,
  join,
  nowSeconds,
  refusal,
  startAuthServer,
  token
} from "./AuthSupport.js"

const b64 = (text: string) => Buffer.from(text).toString("base64")

const update = (opId: string, baseVersion = 0) => ({ type: "update", opId, baseVersion, actorId: "t", deltaB64: b64(opId) })

const storedOpIds = (base: string, id: string) =>
  Effect.gen(function* () {
    const reply = yield* call("GET", `${base}/api/v1/documents/${id}/updates`, yield* token("admin", ["*"]))
    return (reply.body as { updates: ReadonlyArray<{ opId: string }> }).updates.map((u) => u.opId)
  })

describe("WebSocket authentication", () => {
  it.scopedLive("every bad token is closed with 4401, sent as the query parameter or as a bearer header", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      for (const [name, jwt] of yield* badTokens) {
        const byQuery = yield* join(base, id, { query: jwt === undefined ? {} : { token: jwt } })
        assert.strictEqual(refusal(byQuery), 4401, `${name} (query)`)
        assert.isAbove(byQuery._tag === "Closed" ? byQuery.reason.length : 0, 0, name)
        if (jwt !== undefined) assert.strictEqual(refusal(yield* join(base, id, { headers: bearer(jwt) })), 4401, `${name} (header)`)
      }
    }))

  it.scopedLive("a good token joins through the query parameter or the header; the query parameter wins", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const good = yield* token("read", [id])
      const viaQuery = yield* join(base, id, { query: { token: good } })
      assert.strictEqual(viaQuery._tag === "Frame" ? viaQuery.frame.type : viaQuery.code, "state")
      const viaHeader = yield* join(base, id, { headers: bearer(good) })
      assert.strictEqual(viaHeader._tag === "Frame" ? viaHeader.frame.type : viaHeader.code, "state")
      assert.strictEqual(refusal(yield* join(base, id, { query: { token: "bad" }, headers: bearer(good) })), 4401)
    }))

  it.scopedLive("an open socket is closed with 4401 when its token expires", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const client = yield* connect(base, id, { token: yield* token("write", [id], { exp: nowSeconds() + 2 }) })
      yield* client.take("state")
      const closed = yield* client.closed
      assert.strictEqual(closed.code, 4401)
      assert.strictEqual(closed.reason, "token expired")
    }), { timeout: 10_000 })
})

describe("WebSocket authorization", () => {
  it.scopedLive("every role x document scope: the granted documents join, the others are closed with 4403", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const other = yield* createDocument(base)
      for (const role of ["read", "write", "admin"] as const) {
        for (const [scope, docs, expected] of [
          ["granted", [id], "state"],
          ["star", ["*"], "state"],
          ["several", [other, id], "state"],
          ["other", [other], 4403],
          ["none", [], 4403]
        ] as const) {
          const result = yield* join(base, id, { query: { token: yield* token(role, docs) } })
          assert.strictEqual(result._tag === "Frame" ? result.frame.type : result.code, expected, `${role} on ${scope}`)
        }
      }
    }))

  it.scopedLive("an unknown document is 4403 to a scoped token (nothing learnt) and 4404 to a token for every document", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      assert.strictEqual(refusal(yield* join(base, "no-such-doc", { query: { token: yield* token("admin", [id]) } })), 4403)
      assert.strictEqual(refusal(yield* join(base, "no-such-doc", { query: { token: yield* token("read", ["*"]) } })), 4404)
    }))

  it.scopedLive("a read token joins, sends presence and pings; update and snapshot get forbidden and store nothing", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer({ config: { snapshotEvery: 1 } })
      const id = yield* createDocument(base)
      const writer = yield* connect(base, id, { token: yield* token("write", [id]), actorId: "writer" })
      yield* writer.take("state")
      const reader = yield* connect(base, id, { token: yield* token("read", [id]), actorId: "reader" })
      yield* reader.take("state")
      assert.deepInclude(yield* writer.take("presence_join"), { actorId: "reader" })

      yield* reader.send({ type: "presence", state: { cursor: 3 } })
      assert.deepInclude(yield* writer.take("presence"), { actorId: "reader", state: { cursor: 3 } })

      yield* reader.send(update("from-reader"))
      const refused = yield* reader.take("error")
      assert.strictEqual(refused.code, "forbidden")
      assert.strictEqual(refused.opId, "from-reader")
      assert.include(String(refused.message), "write")
      yield* reader.send({ type: "snapshot", version: 0, snapshotB64: b64("state") })
      assert.deepInclude(yield* reader.take("error"), { code: "forbidden" })
      yield* reader.barrier
      assert.deepStrictEqual(yield* storedOpIds(base, id), [])
      yield* writer.barrier
      assert.deepStrictEqual(writer.of("remote_update"), [])

      // The writer writes; the reader still receives everything.
      yield* writer.send(update("from-writer"))
      assert.deepStrictEqual(yield* writer.take("ack"), { type: "ack", opId: "from-writer", seq: 1 })
      assert.deepInclude(yield* reader.take("remote_update"), { seq: 1, opId: "from-writer" })
      // A snapshot the server would accept is still forbidden to the reader, and accepted from the writer.
      yield* reader.send({ type: "snapshot", version: 1, snapshotB64: b64("merged") })
      assert.deepInclude(yield* reader.take("error"), { code: "forbidden" })
      const admin = yield* token("admin", ["*"])
      assert.strictEqual((yield* call("GET", `${base}/api/v1/documents/${id}/snapshot`, admin)).status, 404)
      yield* writer.take("snapshot_request")
      yield* writer.send({ type: "snapshot", version: 1, snapshotB64: b64("merged") })
      assert.deepStrictEqual(yield* writer.take("snapshot_ack"), { type: "snapshot_ack", version: 1 })
      assert.deepStrictEqual(yield* storedOpIds(base, id), ["from-writer"])
    }))

  it.scopedLive("write and admin tokens write on their documents", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const writer = yield* connect(base, id, { token: yield* token("write", [id]) })
      yield* writer.take("state")
      yield* writer.send(update("w-1"))
      assert.deepInclude(yield* writer.take("ack"), { seq: 1 })
      const admin = yield* connect(base, id, { token: yield* token("admin", [id]) })
      yield* admin.take("state")
      yield* admin.send(update("a-1", 1))
      assert.deepInclude(yield* admin.take("ack"), { seq: 2 })
      assert.deepStrictEqual(yield* storedOpIds(base, id), ["w-1", "a-1"])
    }))
})

describe("secrets in logs", () => {
  it.scopedLive("no token or secret appears in any log line, whether the token is good or bad, in the query or a header", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const base = yield* startAuthServer({ logLevel: LogLevel.All }).pipe(Effect.provide(capture(lines)))
      const id = yield* createDocument(base)
      const good = yield* token("write", [id])
      const forged = yield* token("admin", ["*"], { secret: "forged-secret-0123456789-abcdefghijkl" })
      const expired = yield* token("read", [id], { exp: nowSeconds() - 10 })
      const joined = yield* connect(base, id, { token: good })
      yield* joined.take("state")
      yield* joined.close
      for (const jwt of [forged, expired]) {
        yield* join(base, id, { query: { token: jwt } })
        yield* join(base, id, { headers: bearer(jwt) })
        yield* call("GET", `${base}/api/v1/documents/${id}?token=${jwt}`, jwt)
      }
      yield* join(base, id, { headers: bearer(good) })
      yield* request("GET", `${base}/api/v1/documents/${id}?token=${good}`, undefined, bearer(good))
      const all = lines.join("\n")
      assert.include(all, "client joined")
      assert.include(all, "client refused")
      for (const secret of [good, forged, expired, "test-secret-0123456789"]) {
        assert.notInclude(all, secret)
        // Nor any of its parts (a header or payload alone would leak the claims).
        for (const part of secret.split(".")) if (part.length > 8) assert.notInclude(all, part)
      }
    }))
})

