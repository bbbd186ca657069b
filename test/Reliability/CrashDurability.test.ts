/**
 * Crash durability (protocol 2.2: "an acked update survives the server process being killed at any moment"),
 * against the real entry point as a child process, on SQLite and on PostgreSQL.
 *
 * Each scenario: 4 writers pipeline updates on 2 documents (32 in flight each) and record every ack; the server is
 * SIGKILLed after a few hundred acks, restarted on the same database and checked; then the writers go again, the
 * server gets SIGTERM (clients must see 1001, the exit code is 0) and is checked again after a restart. Finally every
 * opId ever sent is resent: each ends up stored exactly once, the ones already stored answered as duplicates with
 * their original seq.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import { type ChildServer, kill, startChild, waitExit } from "../support/ChildServer.js"
import { type Op, openPipeline, type PipelineReport } from "../support/Pipeline.js"
import { request } from "../support/TestServer.js"
import { freshPgSchema, tempDir } from "../Storage/helpers.js"

const WRITERS = 4
const DOCUMENTS = 2
const WINDOW = 32
/** Acks (over all writers) after which the server is stopped: mid-stream, with ~128 updates in flight. */
const STOP_AFTER_ACKS = 400
/** Bounds a round if the server were never stopped (it always is, long before). */
const MAX_OPS_PER_WRITER = 5_000

describe("crash durability (child process)", () => {
  it.scopedLive("SQLite: SIGKILL and SIGTERM mid-stream lose nothing acked; every opId is stored exactly once", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      yield* crashScenario(`sqlite:///${Path.join(dir, "crash.db")}`)
    }), 120_000)

  it.scopedLive("PostgreSQL: SIGKILL and SIGTERM mid-stream lose nothing acked; every opId is stored exactly once", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgSchema
      yield* crashScenario(url)
    }), 120_000)
})

/** Everything the clients were told, over every round. */
interface History {
  /** opId -> (document, op), for every update ever sent. */
  readonly sent: Map<string, { readonly documentId: string; readonly op: Op }>
  /** Every (opId, seq) a client was told is stored: acks and remote_updates. */
  readonly told: Array<{ readonly documentId: string; readonly opId: string; readonly seq: number; readonly how: string }>
}

const crashScenario = (databaseUrl: string) =>
  Effect.gen(function* () {
    const env = { DATABASE_URL: databaseUrl }
    const history: History = { sent: new Map(), told: [] }

    const first = yield* startChild({ env })
    const documents = yield* Effect.forEach(Array.from({ length: DOCUMENTS }, (_, i) => i), (i) => createDocument(first, `crash-${i}`))

    // Round 1: SIGKILL.
    const killed = yield* Effect.promise(() => round(first, documents, "k", "SIGKILL", history))
    assert.strictEqual(killed.exit.signal, "SIGKILL")
    const second = yield* startChild({ env })
    yield* checkStored(second, documents, history)
    for (const report of killed.reports) assert.deepStrictEqual(report.violations, [], "protocol violations before the kill")

    // Round 2: SIGTERM on the restarted server.
    const stopped = yield* Effect.promise(() => round(second, documents, "t", "SIGTERM", history))
    const third = yield* startChild({ env })
    const logs = yield* checkStored(third, documents, history)
    assert.deepStrictEqual(stopped.exit, { code: 0, signal: null }, second.output())
    for (const report of stopped.reports) {
      assert.strictEqual(report.closeCode, 1001, "clients see 1001 on SIGTERM")
      assert.deepStrictEqual(report.violations, [])
      assert.deepStrictEqual(report.errors, [], "no update failed during a graceful stop")
    }
    // SIGTERM drains: whatever it stored, it acked (or relayed) before closing.
    const toldOpIds = new Set(history.told.map((t) => t.opId))
    for (const log of logs.values()) {
      for (const row of log.updates) {
        if (row.opId.startsWith("t-")) assert.isTrue(toldOpIds.has(row.opId), `${row.opId} stored on SIGTERM but never acked`)
      }
    }

    // Resend every opId ever sent, acked or not: each is stored exactly once.
    yield* resendAll(third, documents, history, logs)
    yield* Effect.promise(() => kill(third, "SIGTERM"))
  })

interface RoundResult {
  readonly reports: ReadonlyArray<PipelineReport>
  readonly exit: { readonly code: number | null; readonly signal: NodeJS.Signals | null }
}

/**
 * WRITERS pipelines over the documents; `signal` goes to the server right after the STOP_AFTER_ACKS-th ack, from
 * inside the ack handler, so that updates are in flight at that moment. Resolves when every socket closed and the
 * process exited.
 */
const round = async (
  server: ChildServer,
  documents: ReadonlyArray<string>,
  prefix: string,
  signal: NodeJS.Signals,
  history: History
): Promise<RoundResult> => {
  let acked = 0
  let signalled = false
  const pipelines = await Promise.all(
    Array.from({ length: WRITERS }, (_, w) => {
      const documentId = documents[w % documents.length] ?? ""
      return openPipeline({
        baseUrl: server.baseUrl,
        documentId,
        window: WINDOW,
        actorId: `writer-${w}`,
        next: (n) => {
          if (n >= MAX_OPS_PER_WRITER) return undefined
          const opId = `${prefix}-${w}-${n}`
          const op = { opId, deltaB64: Buffer.from(`${opId}:${"x".repeat(n % 17)}`).toString("base64") }
          history.sent.set(opId, { documentId, op })
          return op
        },
        onAck: () => {
          acked++
          if (!signalled && acked >= STOP_AFTER_ACKS) {
            signalled = true
            server.child.kill(signal)
          }
        }
      })
    })
  )
  const reports = await Promise.all(pipelines.map((p) => p.finished))
  const exit = await waitExit(server)
  for (const report of reports) {
    for (const [opId, ack] of report.acks) {
      if (!ack.duplicate) history.told.push({ documentId: report.documentId, opId, seq: ack.seq, how: "ack" })
    }
    for (const [seq, opId] of report.remotes) {
      history.told.push({ documentId: report.documentId, opId, seq, how: "remote_update" })
    }
  }
  const totalSent = reports.reduce((sum, r) => sum + r.sent.size, 0)
  const totalAcked = reports.reduce((sum, r) => sum + r.acks.size, 0)
  if (!signalled) throw new Error(`the server was never sent ${signal}: only ${acked} acks`)
  // The point of the exercise: the stop came with updates in flight.
  if (totalSent <= totalAcked) throw new Error(`nothing was in flight at ${signal} (${totalSent} sent, ${totalAcked} acked)`)
  return { reports, exit }
}

interface StoredRow {
  readonly seq: number
  readonly opId: string
  readonly actorId: string
  readonly deltaB64: string
}

interface StoredLog {
  readonly version: number
  readonly updates: ReadonlyArray<StoredRow>
}

/**
 * The stored logs are contiguous from 1, hold every (opId, seq) a client was told, hold only updates that were sent
 * (with the payload that was sent) and hold each opId once.
 */
const checkStored = (server: ChildServer, documents: ReadonlyArray<string>, history: History) =>
  Effect.gen(function* () {
    const logs = new Map<string, StoredLog>()
    for (const documentId of documents) {
      const log = yield* storedLog(server, documentId)
      logs.set(documentId, log)
      assert.deepStrictEqual(
        log.updates.map((u) => u.seq),
        Array.from({ length: log.version }, (_, i) => i + 1),
        "seqs are contiguous 1..V"
      )
      assert.strictEqual(new Set(log.updates.map((u) => u.opId)).size, log.updates.length, "one row per opId")
      for (const row of log.updates) {
        const sent = history.sent.get(row.opId)
        assert.isDefined(sent, `stored ${row.opId} was never sent`)
        assert.strictEqual(sent?.documentId, documentId, `${row.opId} stored in the wrong document`)
        assert.strictEqual(row.deltaB64, sent?.op.deltaB64, `${row.opId} stored with another payload`)
      }
    }
    const lost = history.told.filter((told) => logs.get(told.documentId)?.updates[told.seq - 1]?.opId !== told.opId)
    assert.deepStrictEqual(
      lost.slice(0, 5),
      [],
      `${lost.length} of ${history.told.length} updates clients were told are stored are not stored at that seq`
    )
    return logs
  })

/** Resends every opId of every round on each document; each must end up stored exactly once. */
const resendAll = (
  server: ChildServer,
  documents: ReadonlyArray<string>,
  history: History,
  before: ReadonlyMap<string, StoredLog>
) =>
  Effect.gen(function* () {
    for (const documentId of documents) {
      const ops = Array.from(history.sent.values()).filter((s) => s.documentId === documentId).map((s) => s.op)
      const stored = new Map((before.get(documentId)?.updates ?? []).map((u) => [u.opId, u.seq]))
      const version = before.get(documentId)?.version ?? 0
      const report = yield* Effect.promise(async () => {
        const pipeline = await openPipeline({ baseUrl: server.baseUrl, documentId, window: 64, next: (n) => ops[n] })
        return pipeline.finished
      })
      assert.strictEqual(report.closeCode, 1000, "the resend finished by itself")
      assert.deepStrictEqual(report.violations, [])
      assert.deepStrictEqual(report.errors, [])
      assert.strictEqual(report.acks.size, ops.length, "every resent opId was answered")
      const fresh: Array<number> = []
      for (const op of ops) {
        const ack = report.acks.get(op.opId)
        const original = stored.get(op.opId)
        if (original !== undefined) {
          assert.deepStrictEqual(ack, { seq: original, duplicate: true }, `${op.opId} is a duplicate of seq ${original}`)
        } else {
          assert.strictEqual(ack?.duplicate, false, `${op.opId} was not stored: the resend stores it`)
          fresh.push(ack?.seq ?? -1)
        }
      }
      assert.deepStrictEqual(
        fresh.sort((a, b) => a - b),
        Array.from({ length: fresh.length }, (_, i) => version + i + 1)
      )
      const after = yield* storedLog(server, documentId)
      assert.strictEqual(after.version, version + fresh.length)
      assert.deepStrictEqual(after.updates.map((u) => u.seq), Array.from({ length: after.version }, (_, i) => i + 1))
      assert.deepStrictEqual(
        after.updates.map((u) => u.opId).sort(),
        ops.map((op) => op.opId).sort(),
        "every opId sent is stored exactly once"
      )
    }
  })

const createDocument = (server: ChildServer, title: string) =>
  Effect.map(request("POST", `${server.baseUrl}/api/v1/documents`, { title }), (reply) => {
    assert.strictEqual(reply.status, 201, reply.text)
    return (reply.body as { readonly id: string }).id
  })

const storedLog = (server: ChildServer, documentId: string) =>
  Effect.map(request("GET", `${server.baseUrl}/api/v1/documents/${documentId}/updates?after=0&limit=10000`), (reply) => {
    assert.strictEqual(reply.status, 200, reply.text)
    const log = reply.body as StoredLog
    assert.isBelow(log.updates.length, 10_000, "one page holds the whole log")
    return log
  })
