/**
 * SqliteLog: the hot path of `layerSqlite` (appending updates, reading them back) on a connection of its own,
 * with prepared statements and no Effect per statement.
 *
 * Group commit across documents: every `append` asked for during one turn of the event loop (all the actors that
 * had updates from the sockets read in that turn) is stored in ONE transaction, so one `fsync` covers them all.
 * Each document's batch runs in a savepoint: a batch that fails (unknown document, constraint) is rolled back and
 * failed alone, the others commit. A failed COMMIT fails every batch of the transaction.
 *
 * The transaction is synchronous (BEGIN IMMEDIATE ... COMMIT in one call), so it never holds SQLite's write lock
 * across an await. The other connection (`@effect/sql`'s, for migrations and the rare writes: create, rename,
 * delete, snapshots) can hold it across fiber yields, so this connection does not wait for it with a blocking
 * busy_timeout (that would block the event loop the other transaction needs to finish): it retries BEGIN on a
 * timer instead.
 */
import { createRequire } from "node:module"
import { Clock, Effect, type Scope } from "effect"
import type { DocumentId, StoredUpdate } from "../Domain/Document.js"
import { type AppendResult, type NewUpdate, StorageError } from "./DocumentStorage.js"
import type { TableNames } from "./Migrations.js"

export interface SqliteLog {
  /** `DocumentStorage.append`, committed together with the other documents' appends of this turn. */
  readonly append: (id: DocumentId, updates: ReadonlyArray<NewUpdate>) => Effect.Effect<ReadonlyArray<AppendResult>, StorageError>
  /** `DocumentStorage.updatesAfter`. */
  readonly updatesAfter: (id: DocumentId, after: number, limit: number) => Effect.Effect<ReadonlyArray<StoredUpdate>, StorageError>
  /** Transactions committed so far (each one `fsync` with `synchronous = full`). */
  readonly transactions: () => number
}

export interface SqliteLogOptions {
  readonly filename: string
  readonly synchronous: "full" | "normal"
  readonly tables: TableNames
  /** How long an append may wait for the other connection's write lock before it fails. */
  readonly busyTimeoutMillis: number
}

/** What this module needs of better-sqlite3 (loaded untyped: its types are not a dependency of ours). */
interface Database {
  prepare(sql: string): Statement
  exec(sql: string): void
  close(): void
}
interface Statement {
  run(...params: ReadonlyArray<unknown>): unknown
  get(...params: ReadonlyArray<unknown>): unknown
  all(...params: ReadonlyArray<unknown>): Array<unknown>
}

const BetterSqlite3 = createRequire(import.meta.url)("better-sqlite3") as new(filename: string) => Database

/** An append waiting for the next transaction. */
interface Request {
  readonly id: DocumentId
  readonly updates: ReadonlyArray<NewUpdate>
  /** When it was asked for, by the caller's `Clock` (the document's `updated_at`). */
  readonly at: number
  /** When it was queued, by the wall clock (how long it has waited for the write lock). */
  readonly since: number
  readonly resume: (effect: Effect.Effect<ReadonlyArray<AppendResult>, StorageError>) => void
}

/** Opens the log's connection on a database `layerSqlite` has already opened and migrated. */
export const make = (options: SqliteLogOptions): Effect.Effect<SqliteLog, StorageError, Scope.Scope> =>
  Effect.gen(function* () {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const db = new BetterSqlite3(options.filename)
          db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"};
            PRAGMA busy_timeout = 0; PRAGMA foreign_keys = ON`)
          return db
        },
        catch: (cause) => new StorageError({ operation: `open SQLite database ${options.filename}`, cause })
      }),
      (db) => Effect.sync(() => db.close())
    )
    const { documents, updates } = options.tables
    const statements = yield* Effect.try({
      try: () => ({
        begin: db.prepare("BEGIN IMMEDIATE"),
        commit: db.prepare("COMMIT"),
        rollback: db.prepare("ROLLBACK"),
        savepoint: db.prepare("SAVEPOINT batch"),
        release: db.prepare("RELEASE batch"),
        rollbackTo: db.prepare("ROLLBACK TO batch"),
        version: db.prepare(`SELECT version FROM ${documents} WHERE id = ?`),
        findOpId: db.prepare(`SELECT seq FROM ${updates} WHERE document_id = ? AND op_id = ?`),
        insert: db.prepare(`INSERT INTO ${updates} (document_id, seq, op_id, actor_id, delta) VALUES (?, ?, ?, ?, ?)`),
        setVersion: db.prepare(`UPDATE ${documents} SET version = ?, updated_at = ? WHERE id = ?`),
        after: db.prepare(`SELECT seq, op_id, actor_id, delta FROM ${updates}
          WHERE document_id = ? AND seq > ? ORDER BY seq LIMIT ?`)
      }),
      catch: (cause) => new StorageError({ operation: `prepare statements on ${options.filename}`, cause })
    })

    let pending: Array<Request> = []
    let scheduled = false
    let transactions = 0

    /** One document's batch, inside the open transaction. Throws (and is rolled back to its savepoint) on failure. */
    const appendOne = (request: Request): ReadonlyArray<AppendResult> => {
      const row = statements.version.get(request.id) as { readonly version: number } | undefined
      if (row === undefined) throw new Error(`unknown document ${request.id}`)
      let version = Number(row.version)
      const known = new Map<string, number>()
      const results: Array<AppendResult> = []
      for (const update of request.updates) {
        // An opId stored earlier, or earlier in this batch: a duplicate with its original seq.
        let seq = known.get(update.opId)
        if (seq === undefined) {
          const stored = statements.findOpId.get(request.id, update.opId) as { readonly seq: number } | undefined
          seq = stored === undefined ? undefined : Number(stored.seq)
        }
        if (seq !== undefined) {
          results.push({ opId: update.opId, seq, duplicate: true })
          continue
        }
        version += 1
        statements.insert.run(request.id, version, update.opId, update.actorId, toBuffer(update.delta))
        known.set(update.opId, version)
        results.push({ opId: update.opId, seq: version, duplicate: false })
      }
      if (known.size > 0) statements.setVersion.run(version, request.at, request.id)
      return results
    }

    const flush = () => {
      scheduled = false
      const batch = pending
      pending = []
      try {
        statements.begin.run()
      } catch (cause) {
        if (isBusy(cause)) return retryLater(batch, cause)
        return failAll(batch, cause)
      }
      const outcomes: Array<Effect.Effect<ReadonlyArray<AppendResult>, StorageError>> = []
      try {
        for (const request of batch) {
          statements.savepoint.run()
          try {
            outcomes.push(Effect.succeed(appendOne(request)))
            statements.release.run()
          } catch (cause) {
            statements.rollbackTo.run()
            statements.release.run()
            outcomes.push(Effect.fail(new StorageError({ operation: "append", cause })))
          }
        }
        statements.commit.run()
        transactions++
      } catch (cause) {
        try {
          statements.rollback.run()
        } catch {
          // Already rolled back by SQLite (a failed COMMIT can end the transaction itself).
        }
        return failAll(batch, cause)
      }
      batch.forEach((request, i) => request.resume(outcomes[i] as Effect.Effect<ReadonlyArray<AppendResult>, StorageError>))
    }

    const retryLater = (batch: ReadonlyArray<Request>, cause: unknown) => {
      const now = Date.now()
      const waited = batch.filter((request) => now - request.since >= options.busyTimeoutMillis)
      failAll(waited, cause)
      const waiting = batch.filter((request) => now - request.since < options.busyTimeoutMillis)
      if (waiting.length === 0) return
      pending = waiting.concat(pending)
      if (!scheduled) {
        scheduled = true
        setTimeout(flush, 1)
      }
    }

    const failAll = (batch: ReadonlyArray<Request>, cause: unknown) => {
      for (const request of batch) request.resume(Effect.fail(new StorageError({ operation: "append", cause })))
    }

    return {
      append: (id, updates) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) =>
          Effect.async<ReadonlyArray<AppendResult>, StorageError>((resume) => {
            pending.push({ id, updates, at, since: Date.now(), resume })
            if (!scheduled) {
              scheduled = true
              // After the poll phase: every socket read in this turn has handed its updates to its actor by then.
              setImmediate(flush)
            }
          })),
      updatesAfter: (id, after, limit) =>
        Effect.try({
          try: () =>
            (statements.after.all(id, after, Math.max(0, limit)) as Array<UpdateRow>).map((row) => ({
              seq: Number(row.seq),
              opId: row.op_id,
              actorId: row.actor_id,
              delta: new Uint8Array(row.delta.buffer, row.delta.byteOffset, row.delta.byteLength)
            })),
          catch: (cause) => new StorageError({ operation: "updatesAfter", cause })
        }),
      transactions: () => transactions
    }
  })

interface UpdateRow {
  readonly seq: number
  readonly op_id: string
  readonly actor_id: string
  readonly delta: Buffer
}

const isBusy = (cause: unknown): boolean =>
  typeof cause === "object" && cause !== null && "code" in cause &&
  (cause.code === "SQLITE_BUSY" || cause.code === "SQLITE_LOCKED")

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
