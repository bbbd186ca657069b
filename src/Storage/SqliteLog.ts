/**
 * SqliteLog: the hot path of `layerSqlite` (appending updates and storing snapshots, reading updates back), with
 * prepared statements and no Effect per statement.
 *
 * Appends and snapshots run on a worker thread with a connection of its own, so a commit's `fsync` never blocks the event loop:
 * while one transaction is being written, the loop goes on reading sockets and posting appends, and the worker
 * puts every append that reached it meanwhile into its next transaction. That is group commit across documents: one `fsync` for all the documents'
 * waiting batches. Each document's batch runs in a savepoint; a batch that fails (unknown document, constraint) is
 * rolled back and failed alone, the others commit. A failed COMMIT fails every batch of the transaction. If the
 * worker dies, its transaction's batches fail (nothing acked) and the next append starts a new worker.
 *
 * Reads (`updatesAfter`) run on the main thread on a second connection: in WAL mode they never wait for a writer.
 */
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { Effect, Exit, type Scope } from "effect"
import type { DocumentId, Snapshot, StoredUpdate } from "../Domain/Document.js"
import { type AppendInOrder, type AppendResult, boundsItself, inOrderAppends, type NewUpdate, StorageError } from "./DocumentStorage.js"
import type { TableNames } from "./Migrations.js"
import { Outstanding } from "./Outstanding.js"

export interface SqliteLog {
  /** `DocumentStorage.append`, committed together with every other document's appends waiting at that moment. */
  readonly append: (id: DocumentId, updates: ReadonlyArray<NewUpdate>) => Effect.Effect<ReadonlyArray<AppendResult>, StorageError>
  /** `DocumentStorage.putSnapshot`, committed on the worker with the appends (a snapshot's fsync is no lighter). */
  readonly putSnapshot: (id: DocumentId, snapshot: Snapshot) => Effect.Effect<void, StorageError>
  /** `DocumentStorage.updatesAfter`. */
  readonly updatesAfter: (id: DocumentId, after: number, limit: number) => Effect.Effect<ReadonlyArray<StoredUpdate>, StorageError>
  /** Transactions committed so far (each one `fsync` with `synchronous = full`). */
  readonly transactions: () => number
  /**
   * Stops the commit worker once its transaction in hand is done, the way a crash between transactions would (for
   * tests): what was posted to it after that fails with a StorageError, and the next write starts a new worker.
   */
  readonly stopWorker: () => Promise<void>
}

export interface SqliteLogOptions {
  readonly filename: string
  readonly synchronous: "full" | "normal"
  readonly tables: TableNames
  /** How long a transaction may wait for another connection's write lock before it fails. */
  readonly busyTimeoutMillis: number
  /**
   * How long an append may take in all (waiting for its transaction included) before it fails with a
   * StorageError; its outcome is then unknown, as with any failure reported after a commit was sent.
   */
  readonly timeoutMillis: number
}

/** What this module needs of better-sqlite3 (loaded untyped: its types are not a dependency of ours). */
interface Database {
  prepare(sql: string): { all(...params: ReadonlyArray<unknown>): Array<unknown> }
  exec(sql: string): void
  close(): void
}

const require = createRequire(import.meta.url)
const driverPath = require.resolve("better-sqlite3")
const BetterSqlite3 = require(driverPath) as new(filename: string) => Database

/** A write waiting for its transaction: an append or a snapshot. */
interface Request {
  readonly id: DocumentId
  readonly write: { readonly op: "append"; readonly at: number; readonly updates: ReadonlyArray<NewUpdate> } | {
    readonly op: "snapshot"
    readonly version: number
    readonly data: Uint8Array
  }
  /** When it was asked for, by the wall clock (its timeout). */
  readonly since: number
  /** Not answered yet (it is among the outstanding requests). */
  open: boolean
  /** Answers it, once (a timed-out request may be answered again by its transaction). */
  readonly resume: (exit: Exit.Exit<unknown, StorageError>) => void
}

/**
 * What is posted to the worker for the requests of one flush: their fields, and every delta and snapshot's bytes
 * packed into one buffer, transferred rather than copied. Posting a view (a `Uint8Array` or `Buffer`) clones the
 * whole `ArrayBuffer` under it: for a small delta decoded from base64, Node's shared 8 KiB pool.
 */
interface Posted {
  readonly bytes: ArrayBuffer
  readonly writes: ReadonlyArray<
    | {
      readonly op: "append"
      readonly id: DocumentId
      readonly at: number
      readonly updates: ReadonlyArray<{ readonly opId: string; readonly actorId: string; readonly offset: number; readonly length: number }>
    }
    | { readonly op: "snapshot"; readonly id: DocumentId; readonly version: number; readonly offset: number; readonly length: number }
  >
}

/** The fields the worker needs of `requests` (callers' updates may carry more: an actor's command, with its reply). */
const posted = (requests: ReadonlyArray<Request>): Posted => {
  let size = 0
  for (const { write } of requests) {
    if (write.op === "snapshot") size += write.data.byteLength
    else for (const update of write.updates) size += update.delta.byteLength
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  const put = (data: Uint8Array) => {
    bytes.set(data, offset)
    offset += data.byteLength
    return { offset: offset - data.byteLength, length: data.byteLength }
  }
  const writes = requests.map(({ id, write }) =>
    write.op === "append"
      ? { op: "append" as const, id, at: write.at, updates: write.updates.map(({ actorId, delta, opId }) => ({ opId, actorId, ...put(delta) })) }
      : { op: "snapshot" as const, id, version: write.version, ...put(write.data) }
  )
  return { bytes: bytes.buffer, writes }
}

/** The worker's answer to one transaction: a result per batch, or why the whole transaction failed. */
type Reply =
  | {
    /** Which transaction of the worker it was in (several messages can share one). */
    readonly transaction: number
    readonly results: ReadonlyArray<{ readonly ok: unknown } | { readonly error: string }>
  }
  | { readonly error: string }

/** Opens the log on a database `layerSqlite` has already opened and migrated. */
export const make = (options: SqliteLogOptions): Effect.Effect<SqliteLog, StorageError, Scope.Scope> =>
  Effect.gen(function* () {
    // When each update was stored (its `created_at`), by the Effect clock (so `TestClock` in tests).
    const clock = yield* Effect.clock
    const reader = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new BetterSqlite3(options.filename),
        catch: (cause) => new StorageError({ operation: `open SQLite database ${options.filename}`, cause })
      }),
      (db) => Effect.sync(() => db.close())
    )
    const after = yield* Effect.try({
      try: () =>
        reader.prepare(`SELECT seq, op_id, actor_id, delta FROM ${options.tables.updates}
          WHERE document_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
      catch: (cause) => new StorageError({ operation: `prepare statements on ${options.filename}`, cause })
    })

    let worker: Worker | undefined
    const pending: Array<Request> = []
    /** Messages posted to the worker and not answered yet, oldest first: the worker answers in order. */
    const inFlight: Array<ReadonlyArray<Request>> = []
    let scheduled = false
    let closed = false
    let transactions = 0
    let lastTransaction: number | undefined

    const failAll = (batch: ReadonlyArray<Request>, cause: unknown) => {
      for (const request of batch) request.resume(Exit.fail(new StorageError({ operation: operationOf(request), cause })))
    }

    const settle = (reply: Reply) => {
      const batch = inFlight.shift() ?? []
      if (inFlight.length === 0) worker?.unref()
      if ("results" in reply) {
        if (reply.transaction !== lastTransaction) {
          lastTransaction = reply.transaction
          transactions++
        }
        batch.forEach((request, i) => {
          const result = reply.results[i]
          request.resume(
            result !== undefined && "ok" in result
              ? Exit.succeed(result.ok)
              : Exit.fail(new StorageError({ operation: operationOf(request), cause: result?.error ?? "no result" }))
          )
        })
      } else {
        failAll(batch, reply.error)
      }
    }

    /** The worker is gone, or let go: its late replies are ignored, and what was posted to it fails, in order. */
    const letGo = (cause: unknown) => {
      worker = undefined
      lastTransaction = undefined
      for (const batch of inFlight.splice(0, inFlight.length)) failAll(batch, cause)
    }

    const start = (): Worker => {
      const started = new Worker(workerSource, {
        eval: true,
        workerData: {
          driver: pathToFileURL(driverPath).href,
          filename: options.filename,
          synchronous: options.synchronous === "normal" ? "NORMAL" : "FULL",
          busyTimeoutMillis: options.busyTimeoutMillis,
          documents: options.tables.documents,
          updates: options.tables.updates,
          snapshots: options.tables.snapshots
        }
      })
      // Replies of a worker that died are not for the batches posted since to its successor.
      started.on("message", (reply: Reply) => {
        if (worker === started) settle(reply)
      })
      const died = (cause: unknown) => {
        if (worker === started) letGo(cause)
      }
      started.on("error", died)
      started.on("exit", (code) => died(`the SQLite worker exited with code ${code}`))
      // Keeps the process alive only while a transaction is in flight.
      started.unref()
      return started
    }

    /**
     * Posts what is waiting as one message, without waiting for the transactions in flight: the worker puts every
     * message that reached it during its previous commit into its next transaction, so it never idles while
     * there is work, and one fsync covers everything that arrived while the previous one was written.
     */
    const flush = () => {
      scheduled = false
      if (pending.length === 0) return
      // Closing: the finalizer fails what was not posted once the messages in flight are answered (in order).
      if (closed) return inFlight.length === 0 ? failAll(pending.splice(0, pending.length), "the storage is closed") : undefined
      // Emptied in place: a long-lived array handed on with what it holds would keep that alive as a dead Set's
      // table would (see Outstanding).
      const batch = pending.splice(0)
      worker ??= start()
      try {
        const message = posted(batch)
        worker.postMessage(message, [message.bytes])
      } catch (cause) {
        // Answers go out in the order writes were made (appends of a document may be in flight together): the
        // messages posted before this one are failed first, their outcome unknown, as when the worker dies, and
        // this worker is let go (its late replies are not for the next one's messages).
        const dropped = worker
        letGo(cause)
        dropped.unref()
        void askToExit(dropped, 10_000)
        return failAll(batch, cause)
      }
      inFlight.push(batch)
      worker.ref()
    }

    /**
     * Asks a worker to exit once the transaction in hand is done, and waits for it (at most `waitMillis`). Never
     * `terminate()`: a worker terminated inside a statement makes better-sqlite3 abort the whole process.
     */
    const askToExit = (target: Worker, waitMillis: number) =>
      new Promise<void>((resolve) => {
        const timeout = setTimeout(resolve, waitMillis)
        target.once("exit", () => {
          clearTimeout(timeout)
          resolve()
        })
        target.postMessage("exit")
      })

    // Closing waits for the transaction in flight (its batches may be committing: they get their real answer),
    // fails what never started, and stops the worker. One still inside a statement after that (a commit stuck
    // for seconds) is left to finish and exit on its own.
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true
        const deadline = Date.now() + options.busyTimeoutMillis + 1_000
        while (inFlight.length > 0 && worker !== undefined && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        failAll(pending.splice(0, pending.length), "the storage is closed")
        for (const batch of inFlight.splice(0, inFlight.length)) failAll(batch, "the storage is closed")
        if (timer !== undefined) clearTimeout(timer)
        const last = worker
        worker = undefined
        if (last !== undefined) {
          last.unref()
          await askToExit(last, 1_000)
        }
      })
    )

    /** Every unanswered request, oldest first, for the timeout: one timer for all, set for the oldest. */
    const outstanding = new Outstanding<Request>()
    let timer: ReturnType<typeof setTimeout> | undefined
    const expire = () => {
      timer = undefined
      const { due, nextInMillis } = outstanding.due(Date.now(), options.timeoutMillis)
      if (nextInMillis !== undefined) timer = setTimeout(expire, Math.min(nextInMillis, MAX_TIMER_MILLIS)).unref()
      for (const request of due) {
        request.resume(Exit.fail(new StorageError({ operation: operationOf(request), cause: `no answer within ${options.timeoutMillis} ms` })))
      }
      // What was not posted yet will never be: only a transaction already with the worker can still commit.
      // (Before, this ran only when every outstanding request was due: one that timed out behind one that was not
      // could still be posted and commit.) Filtered in place, as `flush` empties it in place.
      let kept = 0
      for (const request of pending) if (request.open) pending[kept++] = request
      pending.length = kept
    }

    /** Queues a write for the next message to the worker; `done` gets its outcome once. */
    const submitThen = (id: DocumentId, write: Request["write"], done: (exit: Exit.Exit<unknown, StorageError>) => void) => {
      const request: Request = {
        id,
        write,
        since: Date.now(),
        open: true,
        resume: (exit) => {
          if (outstanding.close(request)) done(exit)
        }
      }
      outstanding.add(request)
      // Unref'd: the worker keeps the process alive while a transaction is in flight; this timer need not.
      timer ??= setTimeout(expire, Math.min(options.timeoutMillis, MAX_TIMER_MILLIS)).unref()
      pending.push(request)
      // Posted after the rest of this turn of the event loop: every socket read in the turn has reached
      // its actor by then.
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    }

    /** An append without a fiber: `done` gets its outcome once. */
    const appendThen: AppendInOrder = (id, updates, done) =>
      submitThen(id, { op: "append", at: clock.unsafeCurrentTimeMillis(), updates }, done as (exit: Exit.Exit<unknown, StorageError>) => void)

    const append = (id: DocumentId, updates: ReadonlyArray<NewUpdate>) =>
      Effect.async<ReadonlyArray<AppendResult>, StorageError>((resume) => appendThen(id, updates, resume))
    const putSnapshot = (id: DocumentId, snapshot: Snapshot) =>
      Effect.async<unknown, StorageError>((resume) =>
        submitThen(id, { op: "snapshot", version: snapshot.version, data: snapshot.data }, resume)
      ).pipe(Effect.asVoid)
    // The worker answers messages in the order they were posted, and a document's appends go into transactions in
    // that order: an actor may send its next batch before the previous one has committed.
    inOrderAppends.set(append, appendThen)
    // Bounded here (the timer above; reads are synchronous and never wait for a writer in WAL mode), so the
    // registry does not add a fiber per call to time them.
    boundsItself.add(append)
    boundsItself.add(putSnapshot)

    const updatesAfter = (id: DocumentId, afterSeq: number, limit: number) =>
      Effect.try({
        try: () =>
          (after.all(id, afterSeq, Math.max(0, limit)) as Array<UpdateRow>).map((row) => ({
            seq: Number(row.seq),
            opId: row.op_id,
            actorId: row.actor_id,
            delta: new Uint8Array(row.delta.buffer, row.delta.byteOffset, row.delta.byteLength)
          })),
        catch: (cause) => new StorageError({ operation: "updatesAfter", cause })
      })
    boundsItself.add(updatesAfter)

    const stopWorker = () => (worker === undefined ? Promise.resolve() : askToExit(worker, 10_000))

    return { append, putSnapshot, updatesAfter, transactions: () => transactions, stopWorker }
  })

/** Node's longest timer (about 24.8 days); a longer one would fire after 1 ms. */
const MAX_TIMER_MILLIS = 2_147_483_647

const operationOf = (request: Request): string => (request.write.op === "append" ? "append" : "putSnapshot")

interface UpdateRow {
  readonly seq: number
  readonly op_id: string
  readonly actor_id: string
  readonly delta: Buffer
}

/**
 * The worker: plain JavaScript run with `eval` (no file to resolve in source or compiled form), loading the same
 * better-sqlite3 as the main thread. One message = one transaction; it blocks only this thread, so it may wait
 * for the write lock (busy_timeout) and for `fsync`.
 */
const workerSource = `
import("node:worker_threads").then(async ({ parentPort, receiveMessageOnPort, workerData: w }) => {
  const { default: Database } = await import(w.driver)
  const db = new Database(w.filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = " + w.synchronous)
  db.pragma("busy_timeout = " + w.busyTimeoutMillis)
  db.pragma("foreign_keys = ON")
  const s = {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    savepoint: db.prepare("SAVEPOINT batch"),
    release: db.prepare("RELEASE batch"),
    rollbackTo: db.prepare("ROLLBACK TO batch"),
    version: db.prepare("SELECT version FROM " + w.documents + " WHERE id = ?"),
    findOpId: db.prepare("SELECT seq FROM " + w.updates + " WHERE document_id = ? AND op_id = ?"),
    insert: db.prepare("INSERT INTO " + w.updates + " (document_id, seq, op_id, actor_id, delta) VALUES (?, ?, ?, ?, ?)"),
    setVersion: db.prepare("UPDATE " + w.documents + " SET version = ?, updated_at = ? WHERE id = ?"),
    putSnapshot: db.prepare("INSERT INTO " + w.snapshots + " (document_id, version, data) VALUES (?, ?, ?) ON CONFLICT (document_id, version) DO NOTHING"),
    // Joins only ever start from the latest snapshot; older ones are dead weight (each holds a whole document).
    dropOlder: db.prepare("DELETE FROM " + w.snapshots + " WHERE document_id = ? AND version < (SELECT MAX(version) FROM " + w.snapshots + " WHERE document_id = ?)")
  }
  // A message's deltas and snapshots are views of its one buffer (see Posted).
  const putSnapshot = (request, all) => {
    if (s.version.get(request.id) === undefined) throw new Error("unknown document " + request.id)
    s.putSnapshot.run(request.id, request.version, all.subarray(request.offset, request.offset + request.length))
    s.dropOlder.run(request.id, request.id)
    return null
  }
  // One document's batch, inside the open transaction; throws on failure.
  const appendOne = (request, all) => {
    const row = s.version.get(request.id)
    if (row === undefined) throw new Error("unknown document " + request.id)
    let version = Number(row.version)
    const known = new Map()
    const results = []
    for (const update of request.updates) {
      // An opId stored earlier, or earlier in this batch: a duplicate with its original seq.
      let seq = known.get(update.opId)
      if (seq === undefined) {
        const stored = s.findOpId.get(request.id, update.opId)
        if (stored !== undefined) seq = Number(stored.seq)
      }
      if (seq !== undefined) {
        results.push({ opId: update.opId, seq, duplicate: true })
        continue
      }
      version += 1
      s.insert.run(request.id, version, update.opId, update.actorId, all.subarray(update.offset, update.offset + update.length))
      known.set(update.opId, version)
      results.push({ opId: update.opId, seq: version, duplicate: false })
    }
    if (known.size > 0) s.setVersion.run(version, request.at, request.id)
    return results
  }
  const message = (error) => (error && error.message) || String(error)
  let transaction = 0
  // One transaction for this message and every other one already waiting: they arrived while the previous
  // transaction was being committed. One reply per message, in order.
  // "exit": asked to stop once the transaction in hand is done (closing, or a test standing in for a crash).
  // Messages behind it are not served: their requests fail on the main thread when this thread exits.
  const exit = () => {
    db.close()
    process.exit(0)
  }
  parentPort.on("message", (first) => {
    if (first === "exit") return exit()
    const messages = [first]
    let exitAfter = false
    for (let next = receiveMessageOnPort(parentPort); next !== undefined; next = receiveMessageOnPort(parentPort)) {
      if (next.message === "exit") {
        exitAfter = true
        break
      }
      messages.push(next.message)
    }
    transaction++
    const replies = messages.map(() => ({ transaction, results: [] }))
    try {
      s.begin.run()
      messages.forEach(({ bytes, writes }, m) => {
        const all = new Uint8Array(bytes)
        for (const request of writes) {
          s.savepoint.run()
          try {
            replies[m].results.push({ ok: request.op === "append" ? appendOne(request, all) : putSnapshot(request, all) })
            s.release.run()
          } catch (error) {
            s.rollbackTo.run()
            s.release.run()
            replies[m].results.push({ error: message(error) })
          }
        }
      })
      s.commit.run()
    } catch (error) {
      try { s.rollback.run() } catch {}
      for (const _ of messages) parentPort.postMessage({ error: message(error) })
      if (exitAfter) exit()
      return
    }
    for (const reply of replies) parentPort.postMessage(reply)
    if (exitAfter) exit()
  })
})
`
