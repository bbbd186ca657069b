/**
 * Fuzzing the WebSocket protocol with fast-check against a real server (port 0, SQLite storage in a temp file).
 *
 * Every generated frame (random JSON, well-formed messages with one field wrong or missing, huge and odd numbers,
 * deep nesting, unicode and lone surrogates, invalid base64, binary frames, oversized frames) is sent on one
 * connection, followed by a ping. The server must answer each frame with exactly one valid message (an error with
 * a known code, an ack, a pong, a snapshot_ack; nothing for a valid presence), or close with 1009 for an oversized
 * frame and nothing else; it must never hang; and the stored log and snapshot must change only by what it acked.
 *
 * Seeded: a failure prints the seed and the counterexample (fast-check's report); rerun one with
 * DOCSYNC_FUZZ_SEED=<seed>.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import fc from "fast-check"
import * as Path from "node:path"
import WebSocket from "ws"
import { layerPg, layerSqlite } from "../../src/Storage/SqlDocumentStorage.js"
import { freshPgSchema, tempDir } from "../Storage/helpers.js"
import { request, startServer } from "../support/TestServer.js"
import { connect, type Frame, type WsClient } from "../support/WsClient.js"

const SEED = Number(process.env["DOCSYNC_FUZZ_SEED"] ?? 20_240_611)
const RUNS = 300
const LIMITS = { maxMessageBytes: 64 * 1024, maxUpdateBytes: 512, maxPresenceBytes: 256, snapshotEvery: 3 }
/** Longest wait for any answer: a server that takes longer is hung. */
const ANSWER_WITHIN = Duration.seconds(3)

describe("fuzzing the WebSocket protocol (real server, SQLite)", () => {
  it.scopedLive("every frame gets a valid answer or a 2.5 close; nothing hangs; only acked input changes the log", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const url = yield* startServer({ storage: layerSqlite({ filename: Path.join(dir, "fuzz.db") }), config: LIMITS })
      const id = yield* createDocument(url)
      const watcher = yield* connect(url, id, { actorId: "watcher" })
      yield* watcher.take("state")
      const session = yield* Effect.acquireRelease(Effect.sync(() => new Session(url, id)), (s) => s.close)

      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fuzzFrame, (frame) => Effect.runPromise(session.check(frame))),
          { seed: SEED, numRuns: RUNS }
        )
      )

      // The watcher saw every stored update once, in order: rejected input never reached other clients either.
      yield* watcher.barrier
      const log = yield* storedLog(url, id)
      assert.deepStrictEqual(yield* storedSnapshot(url, id), session.lastSnapshot(), "the snapshot moved only on snapshot_ack")
      assert.deepStrictEqual(
        watcher.of("remote_update").map((f) => [f.seq, f.opId, f.deltaB64]),
        log.updates.map((u) => [u.seq, u.opId, u.deltaB64])
      )
    }), 60_000)

  it.scopedLive("a text frame that is not UTF-8 is closed with 1007 (RFC 6455) and the server goes on", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: LIMITS })
      const id = yield* createDocument(url)
      const client = yield* connect(url, id)
      yield* client.take("state")
      // ws validates text frames before docsync sees them; 1007 is not in the table of protocol 2.5.
      yield* Effect.async<void>((resume) =>
        client.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }, () => resume(Effect.void))
      )
      assert.strictEqual((yield* client.closed).code, 1007)
      const again = yield* connect(url, id)
      yield* again.take("state")
      yield* again.barrier
    }))
})

/** Regressions: what the fuzzer found (issue 5). Each of these failed until its bug was fixed (fdc552e, 6cfc914). */
describe("fuzzing finds", () => {
  it.scopedLive("a presence state nested thousands deep gets an error frame and the connection stays open", () =>
    Effect.gen(function* () {
      // Depth 6,000 is 36 KB, well within MAX_MESSAGE_BYTES. JSON.parse takes it; JSON.stringify of the state (the
      // MAX_PRESENCE_BYTES check in Protocol.decodeClientFrame) threw RangeError, the connection's fiber died and
      // the socket was closed with 1001 "server shutting down" while the server was not shutting down.
      const url = yield* startServer({ config: LIMITS })
      const id = yield* createDocument(url)
      const client = yield* connect(url, id)
      yield* client.take("state")
      yield* client.sendRaw(nested(6_000, "object", "presence"))
      yield* client.sendRaw(JSON.stringify({ type: "ping" }))
      const answer = yield* client.take().pipe(
        Effect.map((frame) => ({ frame })),
        Effect.catchAllDefect(() => Effect.map(client.closed, (closed) => ({ closed })))
      )
      assert.strictEqual("frame" in answer && answer.frame.type, "error", JSON.stringify(answer))
      assert.include(["too_large", "bad_message"], "frame" in answer ? answer.frame.code : undefined)
    }))

  it.scopedLive("an opId that is not well-formed UTF-16 is refused, or stored and read back as it was acked", () =>
    Effect.gen(function* () {
      // JSON may escape a lone surrogate ("\ud800"). docsync acked such an opId, then SQLite stored it as WTF-8 and
      // read it back as "\ufffd\ufffd\ufffd" (on PostgreSQL as "\ufffd": two different opIds then collided on the
      // unique key and every batch holding the second failed with `internal`, innocent updates included).
      const dir = yield* tempDir
      const url = yield* startServer({ storage: layerSqlite({ filename: Path.join(dir, "surrogate.db") }), config: LIMITS })
      const id = yield* createDocument(url)
      const client = yield* connect(url, id)
      yield* client.take("state")
      const opId = "op-\ud800"
      yield* client.send({ type: "update", opId, baseVersion: 0, actorId: "a", deltaB64: "AA==" })
      const answer = yield* client.take()
      if (answer.type === "error") return assert.strictEqual(answer.code, "bad_message")
      assert.strictEqual(answer.type, "ack")
      const log = yield* storedLog(url, id)
      assert.deepStrictEqual(log.updates.map((u) => u.opId), [opId], "the stored opId is the acked one")
    }))
})

describe("fuzzing finds (PostgreSQL)", () => {
  it.scopedLive("an opId with U+0000 does not make the updates stored beside it fail", () =>
    Effect.gen(function* () {
      // PostgreSQL text cannot hold U+0000 ("invalid byte sequence for encoding UTF8: 0x00"). The protocol let such
      // an opId (or actorId) through, the group commit put it in one transaction with whatever else was queued, and
      // the whole batch failed: every update in it got `internal`, and the bad one failed on every retry.
      const { url: pgUrl } = yield* freshPgSchema
      const url = yield* startServer({ storage: layerPg({ url: pgUrl }), config: LIMITS })
      const id = yield* createDocument(url)
      const client = yield* connect(url, id)
      yield* client.take("state")
      const frame = (opId: string) => JSON.stringify({ type: "update", opId, baseVersion: 0, actorId: "a", deltaB64: "AA==" })
      // Back to back: the last two queue behind the first one's commit and are committed together.
      yield* client.sendRaw(frame("first"))
      yield* client.sendRaw(frame("nul-\u0000"))
      yield* client.sendRaw(frame("innocent"))
      const answers = yield* Effect.forEach([1, 2, 3], () => within(client.take(), "an answer"))
      const byOpId = new Map(answers.map((f) => [f.opId, f]))
      assert.deepInclude(byOpId.get("innocent"), { type: "ack" }, JSON.stringify(answers))
      const nul = byOpId.get("nul-\u0000")
      assert.isTrue(nul?.type === "ack" || nul?.code === "bad_message", JSON.stringify(nul))
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// The session: one fuzzed connection, reopened after a close it was allowed to get.
// ---------------------------------------------------------------------------------------------------------------

type FuzzFrame =
  | { readonly kind: "text"; readonly text: string; readonly label: string }
  | { readonly kind: "binary"; readonly bytes: Uint8Array; readonly label: string }

class Session {
  private current: { readonly client: WsClient; readonly scope: Scope.CloseableScope } | undefined
  /** The stored log and snapshot after the last frame: nobody else writes to the document. */
  private known: { readonly log: StoredLog; readonly snapshot: unknown } | undefined

  constructor(private readonly url: string, private readonly documentId: string) {}

  /** The snapshot as of the last checked frame. */
  lastSnapshot(): unknown {
    return this.known?.snapshot
  }

  readonly close = Effect.suspend(() => (this.current === undefined ? Effect.void : Scope.close(this.current.scope, Exit.void)))

  /** The open connection, opening a new one (and reading its `state`) when the last one was closed. */
  private readonly client = Effect.gen(this, function* () {
    if (this.current !== undefined && this.current.client.ws.readyState === WebSocket.OPEN) return this.current.client
    yield* this.close
    const scope = yield* Scope.make()
    const client = yield* connect(this.url, this.documentId, { actorId: "fuzzer" }).pipe(Scope.extend(scope))
    this.current = { client, scope }
    const state = yield* within(client.take(), "state")
    assert.strictEqual(state.type, "state", JSON.stringify(state))
    return client
  })

  /** Sends one frame and checks the answer and the stored state. */
  check(frame: FuzzFrame): Effect.Effect<void> {
    const url = this.url
    const documentId = this.documentId
    const open = this.client
    const session = this
    return Effect.gen(function* () {
      const client = yield* open
      session.known ??= { log: yield* storedLog(url, documentId), snapshot: yield* storedSnapshot(url, documentId) }
      const before = session.known.log
      const snapshotBefore = session.known.snapshot
      // Forget what we knew until this frame is checked: a failed check must not leave a stale "before".
      session.known = undefined
      const seen = server(frame)

      yield* client.sendRaw(frame.kind === "text" ? frame.text : Buffer.from(frame.bytes))
      if (seen.oversized) {
        const closed = yield* within(client.closed, "close")
        assert.strictEqual(closed.code, 1009, `${frame.label}: an oversized frame closes with 1009`)
      } else {
        yield* client.sendRaw(JSON.stringify({ type: "ping" }))
        const got: Array<Frame> = []
        // Frames are answered in order, so the barrier's pong comes after every synchronous answer...
        let pongs = 0
        while (pongs < (seen.type === "ping" ? 2 : 1)) {
          const next = yield* nextFrame(client, frame.label)
          got.push(next)
          if (next.type === "pong") pongs++
        }
        // ...but updates and snapshots are answered by the document's actor, possibly after the pong.
        if ((seen.type === "update" || seen.type === "snapshot") && !got.some(isActorAnswer)) {
          while (true) {
            const next = yield* nextFrame(client, frame.label)
            got.push(next)
            if (isActorAnswer(next)) break
          }
        }
        for (const f of got) assert.isTrue(isServerMessage(f), `${frame.label}: not a server message: ${JSON.stringify(f)}`)
        const answers = got.filter(isAnswer)
        // The last pong is the barrier's.
        answers.splice(answers.map((f) => f.type).lastIndexOf("pong"), 1)
        if (seen.type === "presence") {
          assert.isAtMost(answers.length, 1, `${frame.label}: ${JSON.stringify(answers)}`)
          assert.isTrue(answers.every((f) => f.type === "error"), `${frame.label}: ${JSON.stringify(answers)}`)
        } else {
          assert.strictEqual(answers.length, 1, `${frame.label}: one answer per frame, got ${JSON.stringify(got)}`)
        }
        yield* checkStored(answers[0], seen, before, snapshotBefore, frame.label)
        return
      }
      yield* checkStored(undefined, seen, before, snapshotBefore, frame.label)
    })

    function checkStored(answer: Frame | undefined, seen: Seen, before: StoredLog, snapshotBefore: unknown, label: string) {
      return Effect.gen(function* () {
        const after = yield* storedLog(url, documentId)
        if (answer?.type === "ack" && answer.duplicate !== true) {
          assert.strictEqual(answer.opId, seen.value?.["opId"], `${label}: the ack names the update's opId`)
          assert.strictEqual(answer.seq, before.version + 1, `${label}: a new update gets the next seq`)
          assert.deepStrictEqual(after.updates.slice(0, before.updates.length), before.updates, `${label}: the log only grows`)
          assert.deepStrictEqual(
            after.updates.slice(before.updates.length).map((u) => [u.seq, u.opId, u.deltaB64]),
            [[answer.seq, answer.opId, seen.value?.["deltaB64"]]],
            `${label}: the acked update is stored as acked`
          )
        } else {
          assert.deepStrictEqual(after, before, `${label}: rejected or duplicate input leaves the log alone`)
          if (answer?.type === "ack") {
            assert.strictEqual(before.updates[(answer.seq as number) - 1]?.opId, answer.opId, `${label}: a duplicate names its original seq`)
          }
        }
        // Only snapshot messages may touch the snapshot; the others are checked against it at the end.
        const snapshotAfter = seen.type === "snapshot" ? yield* storedSnapshot(url, documentId) : snapshotBefore
        if (answer?.type === "snapshot_ack") {
          assert.deepStrictEqual(snapshotAfter, { version: answer.version, snapshotB64: seen.value?.["snapshotB64"] })
        } else {
          assert.deepStrictEqual(snapshotAfter, snapshotBefore, `${label}: only an acked snapshot replaces the stored one`)
        }
        session.known = { log: after, snapshot: snapshotAfter }
      })
    }
  }
}

interface Seen {
  /** The frame as the server decodes it: JSON of the UTF-8 text (lone surrogates in raw text become U+FFFD). */
  readonly value: Record<string, unknown> | undefined
  readonly type: string | undefined
  readonly oversized: boolean
}

const server = (frame: FuzzFrame): Seen => {
  if (frame.kind === "binary") return { value: undefined, type: undefined, oversized: frame.bytes.byteLength > LIMITS.maxMessageBytes }
  const wire = Buffer.from(frame.text, "utf8")
  let value: unknown
  try {
    value = JSON.parse(wire.toString("utf8"))
  } catch {
    value = undefined
  }
  const object = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  return {
    value: object,
    type: typeof object?.["type"] === "string" ? object["type"] : undefined,
    oversized: wire.byteLength > LIMITS.maxMessageBytes
  }
}

const isAnswer = (f: Frame) => f.type === "ack" || f.type === "error" || f.type === "pong" || f.type === "snapshot_ack"
const isActorAnswer = (f: Frame) => f.type === "ack" || f.type === "error" || f.type === "snapshot_ack"

const ERROR_CODES = new Set(["bad_message", "invalid_base_version", "too_large", "snapshot_rejected", "forbidden", "rate_limited", "internal"])
const isInt = (u: unknown, min: number) => typeof u === "number" && Number.isSafeInteger(u) && u >= min
const isString = (u: unknown) => typeof u === "string"

/** A frame of protocol 2 as the server may send it. */
const isServerMessage = (f: Frame): boolean => {
  switch (f.type) {
    case "ack":
      return isString(f.opId) && isInt(f.seq, 1) && (f.duplicate === undefined || f.duplicate === true)
    case "error":
      return ERROR_CODES.has(String(f.code)) && isString(f.message) && (f.opId === undefined || isString(f.opId))
    case "pong":
      return Object.keys(f).length === 1
    case "snapshot_ack":
    case "snapshot_request":
      return isInt(f.version, 0)
    case "remote_update":
      return isInt(f.seq, 1) && isString(f.opId) && isString(f.actorId) && isString(f.deltaB64)
    case "presence_join":
    case "presence":
    case "presence_leave":
      return isString(f.clientId) && isString(f.actorId)
    default:
      return false
  }
}

/** The next frame, within ANSWER_WITHIN; a close instead fails with its code. */
const nextFrame = (client: WsClient, label: string) =>
  within(client.take(), `an answer to ${label}`).pipe(
    Effect.catchAllDefect((defect) =>
      client.ws.readyState === WebSocket.OPEN
        ? Effect.die(defect)
        : Effect.flatMap(client.closed, (closed) =>
          Effect.dieMessage(`${label}: the server closed the connection with ${closed.code} ${closed.reason}`))
    )
  )

const within = <A>(effect: Effect.Effect<A>, what: string) =>
  effect.pipe(
    Effect.timeoutFail({ duration: ANSWER_WITHIN, onTimeout: () => new Error(`no ${what} within ${Duration.format(ANSWER_WITHIN)}: hung?`) }),
    Effect.orDie
  )

interface StoredLog {
  readonly version: number
  readonly updates: ReadonlyArray<{ readonly seq: number; readonly opId: string; readonly deltaB64: string }>
}

const createDocument = (url: string) =>
  Effect.map(request("POST", `${url}/api/v1/documents`, { title: "fuzz" }), (reply) => (reply.body as { readonly id: string }).id)

const storedLog = (url: string, id: string) =>
  Effect.map(request("GET", `${url}/api/v1/documents/${id}/updates?after=0&limit=10000`), (reply) => {
    assert.strictEqual(reply.status, 200, reply.text)
    return reply.body as StoredLog
  })

const storedSnapshot = (url: string, id: string) =>
  Effect.map(request("GET", `${url}/api/v1/documents/${id}/snapshot`), (reply) => (reply.status === 200 ? reply.body : reply.status))

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------------------

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64")

const oddNumber = fc.constantFrom(1e308, -1e308, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), Number.MIN_VALUE, -0, 0.5, 1e21, -1, 1.5)
/** Number literals JSON.stringify never writes: overflow to Infinity, lose precision, or parse to a plain integer. */
const oddLiteral = fc.constantFrom("1e999", "-1e999", "9007199254740993", "1.0", "1e2", "-0", "0.0000001", "123456789012345678901234567890", "0e0")
const oddString = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.constantFrom("", " ", "\u0000", "\ud800", "x\udc00", "\u202e", "😀".repeat(64), "a".repeat(128), "a".repeat(129), "__proto__", "constructor")
)
const badBase64 = fc.oneof(
  fc.constantFrom("", "A", "AA", "AAA", "A===", "====", "AA==AA==", "AA=A", "-_-_", "AA AA==", "AA==\n", "😀😀==", "Zm9v YmFy", "AAAA===="),
  fc.base64String({ minLength: 4, maxLength: 40 }).map((s) => `${s}!`),
  oddString
)
/** Valid base64; past maxUpdateBytes (512) it is too_large. */
const goodBase64 = fc.uint8Array({ minLength: 1, maxLength: 700 }).map(b64)
const json = fc.jsonValue({ maxDepth: 3 })
/** A value of the wrong type (or the right type with a wrong value) for any field. */
const wrongValue = fc.oneof(json, oddNumber, oddString, badBase64, fc.constant(null), fc.boolean(), fc.array(json, { maxLength: 3 }), fc.integer(), fc.double())
/** A few fixed opIds (duplicates), odd ones (lone surrogates: JSON escapes them, and the server gets them), random ones. */
const opId = fc.oneof(
  fc.constantFrom("op-1", "op-2", "op-3"),
  fc.constantFrom("op-\ud800", "op-\udfff", "\udc00\ud800", "op-😀"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 130 })
)

/** Mostly valid, so that plenty are stored: the interesting checks are on what gets acked. */
const update = fc.record({
  type: fc.constant("update"),
  opId,
  baseVersion: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(12) }),
  actorId: fc.oneof({ weight: 3, arbitrary: fc.constant("fuzzer") }, { weight: 1, arbitrary: oddString }),
  deltaB64: fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 48 }).map(b64) },
    { weight: 1, arbitrary: goodBase64 },
    { weight: 1, arbitrary: badBase64 }
  )
})
const snapshot = fc.record({ type: fc.constant("snapshot"), version: fc.nat(20), snapshotB64: fc.oneof(goodBase64, badBase64) })
const presence = fc.record({
  type: fc.constant("presence"),
  state: fc.oneof(fc.dictionary(fc.string(), json, { maxKeys: 6 }), wrongValue)
})
const ping = fc.record({ type: fc.constant("ping") }).chain((p) => fc.dictionary(fc.string(), json, { maxKeys: 2 }).map((extra) => ({ ...extra, ...p })))
const message = fc.oneof({ weight: 3, arbitrary: update }, snapshot, presence, ping)

/** A well-formed message with one field replaced by a wrong value, or removed. */
const mutated = fc.tuple(fc.oneof(update, snapshot, presence), fc.nat(), wrongValue, fc.boolean()).map(([msg, i, value, remove]) => {
  const keys = Object.keys(msg)
  const key = keys[i % keys.length] ?? "type"
  const copy: Record<string, unknown> = { ...msg }
  if (remove) delete copy[key]
  else copy[key] = value
  return { text: JSON.stringify(copy), label: `${msg.type} with ${key} ${remove ? "removed" : `= ${JSON.stringify(value)?.slice(0, 60)}`}` }
})

/** An odd number literal spliced into a field where an integer goes. */
const literal = fc.tuple(fc.constantFrom("baseVersion", "version"), oddLiteral).map(([field, text]) => ({
  text: field === "baseVersion"
    ? `{"type":"update","opId":"lit-${text}","baseVersion":${text},"actorId":"fuzzer","deltaB64":"AA=="}`
    : `{"type":"snapshot","version":${text},"snapshotB64":"AA=="}`,
  label: `${field} ${text}`
}))

/** Nested arrays or objects, at the top or inside a field. */
const nestedFrame = fc.tuple(fc.integer({ min: 1, max: 6_000 }), fc.constantFrom("array" as const, "object" as const), fc.constantFrom("top" as const, "presence" as const, "deltaB64" as const, "opId" as const))
  .map(([depth, shape, where]) => ({ text: nested(depth, shape, where), label: `${shape} nested ${depth} deep in ${where}` }))

function nested(depth: number, shape: "array" | "object", where: "top" | "presence" | "deltaB64" | "opId"): string {
  const inner = shape === "array" ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${"{\"a\":".repeat(depth)}1${"}".repeat(depth)}`
  switch (where) {
    case "top":
      return inner
    case "presence":
      return `{"type":"presence","state":${shape === "array" ? `{"a":${inner}}` : inner}}`
    case "deltaB64":
      return `{"type":"update","opId":"nest","baseVersion":0,"actorId":"fuzzer","deltaB64":${inner}}`
    case "opId":
      return `{"type":"update","opId":${inner},"baseVersion":0,"actorId":"fuzzer","deltaB64":"AA=="}`
  }
}

const text = (label: string) => (t: string): FuzzFrame => ({ kind: "text", text: t, label: `${label} ${JSON.stringify(t.slice(0, 80))}` })
const labelled = ({ text: t, label }: { readonly text: string; readonly label: string }): FuzzFrame => ({ kind: "text", text: t, label })

/** Counterexamples print as their label and a bounded excerpt (a frame may be 64 KB), not the whole text. */
const printable = (frame: FuzzFrame): FuzzFrame =>
  Object.assign(frame, {
    [fc.toStringMethod]: () => {
      const body = frame.kind === "text" ? frame.text : Buffer.from(frame.bytes).toString("hex")
      return `${frame.label} (${frame.kind}, ${body.length} chars: ${JSON.stringify(body.slice(0, 300))}${body.length > 300 ? "…" : ""})`
    }
  })

const fuzzFrame: fc.Arbitrary<FuzzFrame> = fc.oneof(
  { weight: 4, arbitrary: message.map((m) => labelled({ text: JSON.stringify(m), label: `${m.type} ${JSON.stringify(m).slice(0, 80)}` })) },
  { weight: 4, arbitrary: mutated.map(labelled) },
  { weight: 2, arbitrary: json.map((v) => JSON.stringify(v)).map(text("json")) },
  {
    weight: 1,
    arbitrary: fc.anything({ maxDepth: 3 })
      .map((v) => JSON.stringify(v) as string | undefined)
      .filter((t): t is string => typeof t === "string")
      .map(text("anything"))
  },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 60 }).map(text("raw text")) },
  { weight: 1, arbitrary: literal.map(labelled) },
  { weight: 1, arbitrary: nestedFrame.map(labelled) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes): FuzzFrame => ({ kind: "binary", bytes, label: `binary ${bytes.byteLength} bytes` })) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 4096 }), fc.boolean()).map(([extra, asUpdate]): FuzzFrame => {
      const size = LIMITS.maxMessageBytes + extra
      return asUpdate
        ? { kind: "text", text: JSON.stringify({ type: "update", opId: "big", baseVersion: 0, actorId: "f", deltaB64: "A".repeat(size) }), label: `oversized update (${size}+ bytes)` }
        : { kind: "binary", bytes: new Uint8Array(size), label: `oversized binary (${size} bytes)` }
    })
  }
).map(printable)
