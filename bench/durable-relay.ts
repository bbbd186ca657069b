/**
 * The durable floor of the benchmark (issue 6): the baseline relay (`baseline-relay.ts`) plus what durable acks
 * cannot do without, and nothing else. Each update is stored in SQLite before it is acked and relayed, with
 * docsync's SQL: its tables (migration 1 of `src/Storage/Migrations.ts`), WAL with `synchronous = FULL`, and per
 * update the same statements on the same kind of worker thread (a savepoint, the version, the opId lookup, the
 * insert, the new version; docsync takes the savepoint and the version once per document per batch, the same
 * while a batch holds one update of a document, as under the many-docs load), with group commit (what arrives
 * while a transaction commits goes into the next one).
 * Snapshots as docsync takes them: every SNAPSHOT_EVERY updates (default 100, docsync's default) the sender of
 * the latest is asked for one, which is stored in the same transactions as the updates (the older ones deleted)
 * and acked. No validation, no limits, no Effect, no presence, no metrics, no logs.
 *
 * What it measures: the latency that storing each update this way costs on this machine before any of docsync's
 * own work. It is one implementation of docsync's SQL, not a proof about every possible one; where it is already
 * over a target, docsync with these tables on this machine is too.
 *
 * Same wire shapes as the baseline, so the same load generator (`--kind baseline`) drives it: any document id
 * works (its row is created on the first join). It listens once its tables exist. Env: PORT (default 8002), HOST
 * (default 127.0.0.1), DATABASE_FILE (default a new file under the OS's temp directory, removed on exit),
 * SNAPSHOT_EVERY, RELAY_BUSY_TIMEOUT_MS (default 5000, docsync's), SQLITE_SYNCHRONOUS (`full`, `normal`, or `off`: no fsync at all, not durable), RELAY_TABLES (`docsync`, or `log`:
 * one append-only table with no index, so no opId lookup and nothing a join could read by document; not a design,
 * a lower bound on what a commit costs). The tables are written out here rather than imported from docsync, so that
 * the floor is not moved by a change to docsync; `test/bench/DurableRelay.test.ts` checks that they still match.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join as joinPath } from "node:path"
import { Worker } from "node:worker_threads"
import { WebSocket } from "ws"
import { serveRelay } from "./relay-http.js"

interface Room {
  readonly sockets: Set<WebSocket>
  /** The highest seq relayed: a joining socket's `state` version. */
  version: number
  /** The version of the latest snapshot stored, or asked for and not answered yet. */
  snapshotVersion: number
}
interface Waiting { readonly ws: WebSocket; readonly room: Room; readonly opId: string; readonly actorId: string; readonly deltaB64: string }

const oneOf = <A extends string>(name: string, values: ReadonlyArray<A>): A => {
  const value = process.env[name] ?? values[0]
  if (!values.includes(value as A)) throw new Error(`${name} must be one of ${values.join(", ")}, not ${value}`)
  return value as A
}
const synchronous = oneOf("SQLITE_SYNCHRONOUS", ["full", "normal", "off"]).toUpperCase()
const tables = oneOf("RELAY_TABLES", ["docsync", "log"])
const positive = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback)
  if (!(Number.isInteger(value) && value >= 1)) throw new Error(`${name} must be an integer ≥ 1, not ${process.env[name]}`)
  return value
}
const snapshotEvery = positive("SNAPSHOT_EVERY", 100)
// docsync's SQLITE_BUSY_TIMEOUT_MS; longer in the floor's test, which holds the write lock for a few round trips.
const busyTimeoutMillis = positive("RELAY_BUSY_TIMEOUT_MS", 5000)
const dir = process.env.DATABASE_FILE === undefined ? mkdtempSync(joinPath(tmpdir(), "durable-relay-")) : undefined
const file = process.env.DATABASE_FILE ?? joinPath(dir ?? ".", "relay.db")

const workerSource = `
const { parentPort, receiveMessageOnPort, workerData: w } = require("node:worker_threads")
const Database = require(w.driver)
const db = new Database(w.file)
db.pragma("journal_mode = WAL")
db.pragma("synchronous = " + w.synchronous)
db.pragma("busy_timeout = " + w.busyTimeoutMillis)
db.pragma("foreign_keys = ON")
db.exec(\`CREATE TABLE IF NOT EXISTS documents (position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL, version BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  deleted_at BIGINT)\`)
db.exec(\`CREATE TABLE IF NOT EXISTS document_updates (document_id TEXT NOT NULL REFERENCES documents (id),
  seq BIGINT NOT NULL, op_id TEXT NOT NULL, actor_id TEXT NOT NULL, delta BLOB NOT NULL,
  CONSTRAINT document_updates_pkey PRIMARY KEY (document_id, seq),
  CONSTRAINT document_updates_op_id_key UNIQUE (document_id, op_id))\`)
db.exec(\`CREATE TABLE IF NOT EXISTS document_snapshots (document_id TEXT NOT NULL REFERENCES documents (id),
  version BIGINT NOT NULL, data BLOB NOT NULL, CONSTRAINT document_snapshots_pkey PRIMARY KEY (document_id, version))\`)
db.exec(\`CREATE TABLE IF NOT EXISTS log (document_id TEXT NOT NULL, seq BIGINT NOT NULL, op_id TEXT NOT NULL,
  actor_id TEXT NOT NULL, delta BLOB NOT NULL)\`)
const s = {
  append: db.prepare("INSERT INTO log (document_id, seq, op_id, actor_id, delta) VALUES (?, ?, ?, ?, ?)"),
  begin: db.prepare("BEGIN IMMEDIATE"),
  commit: db.prepare("COMMIT"),
  savepoint: db.prepare("SAVEPOINT batch"),
  release: db.prepare("RELEASE batch"),
  document: db.prepare("INSERT OR IGNORE INTO documents (id, title, created_at, updated_at) VALUES (?, '', ?, ?)"),
  version: db.prepare("SELECT version FROM documents WHERE id = ?"),
  findOpId: db.prepare("SELECT seq FROM document_updates WHERE document_id = ? AND op_id = ?"),
  insert: db.prepare("INSERT INTO document_updates (document_id, seq, op_id, actor_id, delta) VALUES (?, ?, ?, ?, ?)"),
  setVersion: db.prepare("UPDATE documents SET version = ?, updated_at = ? WHERE id = ?"),
  putSnapshot: db.prepare("INSERT INTO document_snapshots (document_id, version, data) VALUES (?, ?, ?) ON CONFLICT (document_id, version) DO NOTHING"),
  dropOlder: db.prepare("DELETE FROM document_snapshots WHERE document_id = ? AND version < (SELECT MAX(version) FROM document_snapshots WHERE document_id = ?)")
}
const snapshot = ([id, version, snapshotB64]) => {
  s.savepoint.run()
  s.version.get(id)
  s.putSnapshot.run(id, version, Buffer.from(snapshotB64, "base64"))
  s.dropOlder.run(id, id)
  s.release.run()
  return version
}
// RELAY_TABLES=log: seqs counted here (from 1 per run), each update one row at the end of one table.
const versions = new Map()
const append = ([id, opId, actorId, deltaB64]) => {
  const seq = (versions.get(id) ?? 0) + 1
  versions.set(id, seq)
  s.append.run(id, seq, opId, actorId, Buffer.from(deltaB64, "base64"))
  return { seq, duplicate: false }
}
const store = ([id, opId, actorId, deltaB64]) => {
  s.savepoint.run()
  const version = Number(s.version.get(id).version)
  const stored = s.findOpId.get(id, opId)
  if (stored === undefined) {
    s.insert.run(id, version + 1, opId, actorId, Buffer.from(deltaB64, "base64"))
    s.setVersion.run(version + 1, Date.now(), id)
  }
  s.release.run()
  return stored === undefined ? { seq: version + 1, duplicate: false } : { seq: Number(stored.seq), duplicate: true }
}
const exit = () => {
  db.close()
  process.exit(0)
}
// A message is { join: id } (the document's row, before its first update), { updates: [[id, opId, ...], ...] },
// { snapshot: [id, version, snapshotB64] }, or "exit" (after the transaction in hand: a worker stopped inside a
// statement aborts the whole process). One reply per message but "join" and "exit".
const joinOf = (message) => s.document.run(message.join, Date.now(), Date.now())
parentPort.on("message", (first) => {
  if (first === "exit") return exit()
  if (first.join !== undefined) return void joinOf(first)
  const messages = [first]
  let exitAfter = false
  for (let next = receiveMessageOnPort(parentPort); next !== undefined; next = receiveMessageOnPort(parentPort)) {
    if (next.message === "exit") {
      // As docsync's worker: what is behind "exit" is not served.
      exitAfter = true
      break
    } else if (next.message.join !== undefined) joinOf(next.message)
    else messages.push(next.message)
  }
  s.begin.run()
  const replies = messages.map((message) =>
    message.snapshot !== undefined ? snapshot(message.snapshot) : message.updates.map(w.tables === "log" ? append : store))
  s.commit.run()
  for (const reply of replies) parentPort.postMessage(reply)
  if (exitAfter) exit()
})
parentPort.postMessage("ready")
`
const worker = new Worker(workerSource, {
  eval: true,
  workerData: { driver: createRequire(import.meta.url).resolve("better-sqlite3"), file, synchronous, tables, busyTimeoutMillis }
})
worker.on("error", (error) => {
  console.error(error)
  process.exit(1)
})

type Stored = ReadonlyArray<{ readonly seq: number; readonly duplicate: boolean }>
// The worker answers messages in order: each reply is for the oldest message in flight.
const inFlight: Array<(reply: Stored | number) => void> = []
let pending: Array<[string, Waiting]> = []
let scheduled = false
const flush = () => {
  scheduled = false
  const batch = pending.map(([, waiting]) => waiting)
  inFlight.push((reply) => {
    if (!Array.isArray(reply) || reply.length !== batch.length) throw new Error(`a reply of ${String(reply)} for ${batch.length} updates`)
    batch.forEach((waiting, i) => answer(waiting, (reply as Stored)[i]))
  })
  worker.postMessage({ updates: pending.map(([id, { actorId, deltaB64, opId }]) => [id, opId, actorId, deltaB64]) })
  pending = []
}
const answer = ({ actorId, deltaB64, opId, room, ws }: Waiting, result: Stored[number] | undefined) => {
  if (result === undefined) throw new Error(`no result for ${opId}`)
  ws.send(JSON.stringify(result.duplicate ? { type: "ack", opId, seq: result.seq, duplicate: true } : { type: "ack", opId, seq: result.seq }))
  // A duplicate was relayed when it was stored.
  if (result.duplicate) return
  room.version = Math.max(room.version, result.seq)
  const out = JSON.stringify({ type: "remote_update", seq: result.seq, opId, actorId, deltaB64 })
  for (const other of room.sockets) if (other !== ws && other.readyState === WebSocket.OPEN) other.send(out)
  // As docsync: the sender of the latest update is asked for a snapshot every `snapshotEvery` updates.
  if (room.version - room.snapshotVersion >= snapshotEvery) {
    room.snapshotVersion = room.version
    ws.send(JSON.stringify({ type: "snapshot_request", version: room.version }))
  }
}
const ready = new Promise<void>((resolve) => {
  worker.on("message", (reply: "ready" | Stored | number) => {
    if (reply === "ready") return resolve()
    const waiting = inFlight.shift()
    if (waiting === undefined) throw new Error("a reply from the worker with nothing in flight")
    waiting(reply)
  })
})

const rooms = new Map<string, Room>()
const { http, wss } = serveRelay(join)

function join(documentId: string, ws: WebSocket): void {
  let room = rooms.get(documentId)
  if (room === undefined) {
    rooms.set(documentId, (room = { sockets: new Set(), version: 0, snapshotVersion: 0 }))
    worker.postMessage({ join: documentId })
  }
  const r = room
  r.sockets.add(ws)
  ws.send(JSON.stringify({ type: "state", documentId, clientId: "c", version: r.version, snapshot: null, updates: [], presence: [] }))
  ws.on("message", (data) => {
    let msg: { type?: unknown; opId?: unknown; actorId?: unknown; deltaB64?: unknown; version?: unknown; snapshotB64?: unknown }
    try {
      msg = JSON.parse(String(data))
    } catch {
      return void ws.send('{"type":"error","code":"bad_message","message":"not JSON"}')
    }
    if (msg?.type === "ping") return void ws.send('{"type":"pong"}')
    if (msg?.type === "snapshot") {
      const version = Number(msg.version)
      inFlight.push((reply) => {
        if (reply !== version) throw new Error(`a reply of ${String(reply)} for the snapshot at ${version}`)
        ws.send(JSON.stringify({ type: "snapshot_ack", version }))
      })
      return void worker.postMessage({ snapshot: [documentId, version, String(msg.snapshotB64)] })
    }
    if (msg?.type !== "update") return
    pending.push([documentId, { ws, room: r, opId: String(msg.opId), actorId: String(msg.actorId), deltaB64: String(msg.deltaB64) }])
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  })
  ws.on("close", () => r.sockets.delete(ws))
  ws.on("error", () => ws.terminate())
}

void ready.then(() => http.listen(Number(process.env.PORT ?? 8002), process.env.HOST ?? "127.0.0.1"))
const stop = () => {
  for (const ws of wss.clients) ws.close(1001, "going away")
  http.close()
  // The worker finishes the transaction in hand, closes the database and exits (see "exit" in its source).
  worker.once("exit", () => process.exit(0))
  worker.postMessage("exit")
  setTimeout(() => process.exit(0), 5000).unref()
}
process.on("exit", () => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
