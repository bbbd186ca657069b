/**
 * The benchmark's durable floor (bench/durable-relay.ts) is only a floor if it really stores each update before it
 * acks it, once per opId, at contiguous seqs: what docsync is compared with must do what docsync promises.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { kill, startChild } from "../support/ChildServer.js"
import { connect } from "../support/WsClient.js"
import { tempDir } from "../Storage/helpers.js"

const Database = createRequire(import.meta.url)("better-sqlite3") as new(filename: string, options?: { readonly readonly?: boolean }) => {
  prepare(sql: string): { all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>> }
  close(): void
}

/** The updates stored for a document, read on a connection of the test's own. */
const storedUpdates = (file: string, documentId: string) => {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare("SELECT seq, op_id, actor_id, hex(delta) AS delta FROM updates WHERE document_id = ? ORDER BY seq").all(documentId)
  } finally {
    db.close()
  }
}

describe("the durable floor (bench/durable-relay.ts)", () => {
  it.scopedLive("acks an update once it is committed, relays it, and answers a resent opId with its seq", () =>
    Effect.gen(function* () {
      const file = Path.join(yield* tempDir, "relay.db")
      const relay = yield* startChild({ script: "bench/durable-relay.ts", env: { DATABASE_FILE: file } })
      const alice = yield* connect(relay.baseUrl, "doc-1")
      const bob = yield* connect(relay.baseUrl, "doc-1")
      yield* alice.take("state")
      yield* bob.take("state")

      yield* alice.send({ type: "update", opId: "a-1", baseVersion: 0, actorId: "alice", deltaB64: "aGVsbG8=" })
      const first = yield* alice.take("ack")
      // Read when the ack arrives: the row is there already.
      assert.deepStrictEqual(storedUpdates(file, "doc-1"), [{ seq: 1, op_id: "a-1", actor_id: "alice", delta: "68656C6C6F" }])
      assert.deepStrictEqual([first.opId, first.seq], ["a-1", 1])
      const relayed = yield* bob.take("remote_update")
      assert.deepStrictEqual([relayed.seq, relayed.opId, relayed.deltaB64], [1, "a-1", "aGVsbG8="])

      yield* bob.send({ type: "update", opId: "b-1", baseVersion: 1, actorId: "bob", deltaB64: "IQ==" })
      assert.strictEqual((yield* bob.take("ack")).seq, 2)
      yield* alice.send({ type: "update", opId: "a-1", baseVersion: 2, actorId: "alice", deltaB64: "aGVsbG8=" })
      assert.strictEqual((yield* alice.take("ack")).seq, 1)
      assert.deepStrictEqual(storedUpdates(file, "doc-1").map((row) => [row.seq, row.op_id]), [[1, "a-1"], [2, "b-1"]])

      // Committed with fsync, so a killed relay loses nothing it acked.
      yield* Effect.promise(() => kill(relay, "SIGKILL"))
      assert.strictEqual(storedUpdates(file, "doc-1").length, 2)
    }), 60_000)
})
