/**
 * The benchmark's durable floor (bench/durable-relay.ts) is only a floor if it does docsync's durable work: it stores
 * each update before it acks it, once per opId, at contiguous seqs per document, in docsync's tables.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { layerSqlite } from "../../src/Storage/SqlDocumentStorage.js"
import { startChild } from "../support/ChildServer.js"
import { connect } from "../support/WsClient.js"
import { tempDir } from "../Storage/helpers.js"

interface Db {
  prepare(sql: string): { all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>> }
  exec(sql: string): void
  pragma(sql: string): unknown
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(filename: string, options?: { readonly readonly?: boolean }) => Db

const withDb = <A>(file: string, f: (db: Db) => A): A => {
  const db = new Database(file, { readonly: true })
  try {
    return f(db)
  } finally {
    db.close()
  }
}

/** The updates stored for a document, read on a connection of the test's own. */
const storedUpdates = (file: string, documentId: string) =>
  withDb(file, (db) =>
    db.prepare("SELECT seq, op_id, actor_id, hex(delta) AS delta FROM document_updates WHERE document_id = ? ORDER BY seq").all(documentId))

/** Columns, keys and indexes of docsync's tables, as SQLite reports them. */
const shape = (file: string) =>
  withDb(file, (db) =>
    ["documents", "document_updates", "document_snapshots"].map((table) => ({
      table,
      columns: db.prepare(`PRAGMA table_info(${table})`).all(),
      foreignKeys: db.prepare(`PRAGMA foreign_key_list(${table})`).all().map(({ id: _, ...rest }) => rest),
      indexes: db.prepare(`PRAGMA index_list(${table})`).all().map(({ name, origin, partial, unique }) => ({
        origin,
        partial,
        unique,
        columns: db.prepare(`PRAGMA index_info(${String(name)})`).all().map((column) => column.name)
      }))
    })))

describe("the durable floor (bench/durable-relay.ts)", () => {
  it.scopedLive("acks an update only from the worker's transaction, relays it once, and answers a resent opId with its seq", () =>
    Effect.gen(function* () {
      const file = Path.join(yield* tempDir, "relay.db")
      // The relay's worker waits for the test's write lock for up to 30 s (not docsync's 5: a loaded machine).
      const relay = yield* startChild({ script: "bench/durable-relay.ts", env: { DATABASE_FILE: file, RELAY_BUSY_TIMEOUT_MS: "30000" } })
      const alice = yield* connect(relay.baseUrl, "doc-1")
      const bob = yield* connect(relay.baseUrl, "doc-1")
      const carol = yield* connect(relay.baseUrl, "doc-2")
      for (const client of [alice, bob, carol]) yield* client.take("state")
      yield* bob.send({ type: "update", opId: "b-0", baseVersion: 0, actorId: "bob", deltaB64: "AA==" })
      assert.strictEqual((yield* bob.take("ack")).seq, 1)

      // The test's own connection holds the write lock; a join to a new document makes the relay's worker wait for
      // it, so that what is sent meanwhile goes into one transaction once the lock is let go.
      const lock = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const db = new Database(file)
          db.pragma("busy_timeout = 5000")
          db.exec("BEGIN IMMEDIATE")
          return db
        }),
        (db) => Effect.sync(() => db.close())
      )
      yield* (yield* connect(relay.baseUrl, "doc-3")).take("state")
      // Two updates in two turns of the relay's event loop (each round trip ends the turn that read the update): two
      // messages to the worker, answered in order from one transaction.
      yield* alice.send({ type: "update", opId: "a-1", baseVersion: 1, actorId: "alice", deltaB64: "aGVsbG8=" })
      yield* alice.barrier
      yield* carol.send({ type: "update", opId: "c-1", baseVersion: 0, actorId: "carol", deltaB64: "IQ==" })
      yield* carol.barrier
      yield* bob.barrier
      // Each update has reached the relay, which has not acked or relayed it.
      assert.deepStrictEqual([alice.of("ack"), bob.of("remote_update"), carol.of("ack")], [[], [], []])
      lock.exec("COMMIT")

      const first = yield* alice.take("ack")
      // (Read as the ack arrives: the row is there. Whether the commit, not just the statements, came before the
      // ack cannot be forced from outside: in WAL mode nothing blocks a COMMIT.)
      assert.deepStrictEqual(storedUpdates(file, "doc-1").at(-1), { seq: 2, op_id: "a-1", actor_id: "alice", delta: "68656C6C6F" })
      assert.deepStrictEqual([first.opId, first.seq], ["a-1", 2])
      assert.deepStrictEqual([(yield* carol.take("ack")).seq, storedUpdates(file, "doc-2").length], [1, 1])
      const relayed = yield* bob.take("remote_update")
      assert.deepStrictEqual([relayed.seq, relayed.opId, relayed.deltaB64], [2, "a-1", "aGVsbG8="])

      yield* bob.send({ type: "update", opId: "b-1", baseVersion: 2, actorId: "bob", deltaB64: "IQ==" })
      assert.strictEqual((yield* bob.take("ack")).seq, 3)
      yield* alice.send({ type: "update", opId: "a-1", baseVersion: 3, actorId: "alice", deltaB64: "aGVsbG8=" })
      const resent = yield* alice.take("ack")
      assert.deepStrictEqual([resent.seq, resent.duplicate], [2, true])
      yield* bob.barrier
      assert.deepStrictEqual(bob.of("remote_update").map((frame) => frame.seq), [2])
      assert.deepStrictEqual(storedUpdates(file, "doc-1").map((row) => [row.seq, row.op_id]), [[1, "b-0"], [2, "a-1"], [3, "b-1"]])
    }), 60_000)

  it.scopedLive("asks the sender of every SNAPSHOT_EVERY-th update for a snapshot, stores it in place of the older one, and acks it", () =>
    Effect.gen(function* () {
      const file = Path.join(yield* tempDir, "relay.db")
      const relay = yield* startChild({ script: "bench/durable-relay.ts", env: { DATABASE_FILE: file, SNAPSHOT_EVERY: "2" } })
      const alice = yield* connect(relay.baseUrl, "doc-1")
      yield* alice.take("state")
      const snapshots = () => withDb(file, (db) => db.prepare("SELECT version, hex(data) AS data FROM document_snapshots").all())
      for (const round of [1, 2]) {
        for (const n of [1, 2]) {
          yield* alice.send({ type: "update", opId: `a-${round}-${n}`, baseVersion: 0, actorId: "alice", deltaB64: "AA==" })
        }
        const request = yield* alice.take("snapshot_request")
        assert.strictEqual(request.version, 2 * round)
        yield* alice.send({ type: "snapshot", version: 2 * round, snapshotB64: Buffer.from(`state ${round}`).toString("base64") })
        assert.strictEqual((yield* alice.take("snapshot_ack")).version, 2 * round)
        assert.deepStrictEqual(snapshots(), [{ version: 2 * round, data: Buffer.from(`state ${round}`).toString("hex").toUpperCase() }])
      }
      assert.strictEqual(alice.of("snapshot_request").length, 2)
    }), 60_000)

  it.scopedLive("keeps docsync's tables: the same columns, keys and indexes as its migration", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const relayFile = Path.join(dir, "relay.db")
      yield* startChild({ script: "bench/durable-relay.ts", env: { DATABASE_FILE: relayFile } })
      const docsyncFile = Path.join(dir, "docsync.db")
      yield* Effect.scoped(Layer.build(layerSqlite({ filename: docsyncFile })))
      assert.deepStrictEqual(shape(relayFile), shape(docsyncFile))
    }), 60_000)
})
