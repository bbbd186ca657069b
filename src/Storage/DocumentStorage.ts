/**
 * DocumentStorage: where documents, their update logs and snapshots live. One interface, several Layers:
 * `layerMemory` here, SQLite and PostgreSQL in `SqlDocumentStorage`. Every failure is a `StorageError`.
 */
import { Context, Data, Duration, Effect, Exit, FiberId, Layer, Option, type Scope } from "effect"
import { type Document, type DocumentId, newDocument, type Snapshot, type StoredUpdate } from "../Domain/Document.js"

/** The storage backend failed; nothing of the failed call was stored. */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `storage failed during ${this.operation}: ${describe(this.cause)}`
  }
}

/** An update to append; the seq is assigned by storage. */
export interface NewUpdate {
  readonly opId: string
  readonly actorId: string
  readonly delta: Uint8Array
}

/** What became of one appended update: stored at `seq`, or already stored at `seq` (duplicate opId). */
export interface AppendResult {
  readonly opId: string
  readonly seq: number
  readonly duplicate: boolean
}

export interface ListOptions {
  readonly includeDeleted: boolean
  readonly limit: number
  /** Position of the last document of the previous page (from `DocumentPage.next`). */
  readonly after: Option.Option<number>
}

export interface DocumentPage {
  readonly items: ReadonlyArray<Document>
  /** Position to continue after, when there may be more. */
  readonly next: Option.Option<number>
}

export interface DocumentStorageShape {
  /** A trivial round trip to the database (health check). */
  readonly ping: Effect.Effect<void, StorageError>
  /** Creates a document with version 0. `title` is already validated and trimmed. */
  readonly create: (title: string) => Effect.Effect<Document, StorageError>
  /** The document, if it exists (and is not deleted, unless `includeDeleted`). */
  readonly get: (id: DocumentId, includeDeleted?: boolean) => Effect.Effect<Option.Option<Document>, StorageError>
  /** A page of documents in creation order, stable while documents are created between pages. */
  readonly list: (options: ListOptions) => Effect.Effect<DocumentPage, StorageError>
  /** Renames a live document and moves `updatedAt`; none if unknown or deleted. */
  readonly rename: (id: DocumentId, title: string) => Effect.Effect<Option.Option<Document>, StorageError>
  /** Soft-deletes a live document (sets `deletedAt`); none if unknown or already deleted. */
  readonly softDelete: (id: DocumentId) => Effect.Effect<Option.Option<Document>, StorageError>
  /**
   * Appends updates in one transaction, giving each new opId the next seq (contiguous from the stored version + 1)
   * and reporting an opId already stored (earlier, or earlier in the same batch) as a duplicate with its original
   * seq. All or nothing: on failure nothing of the batch is stored. The document must exist.
   */
  readonly append: (id: DocumentId, updates: ReadonlyArray<NewUpdate>) => Effect.Effect<ReadonlyArray<AppendResult>, StorageError>
  /** The stored update with this opId, if any. */
  readonly findByOpId: (id: DocumentId, opId: string) => Effect.Effect<Option.Option<StoredUpdate>, StorageError>
  /** Up to `limit` updates with seq > `after`, ascending. */
  readonly updatesAfter: (id: DocumentId, after: number, limit: number) => Effect.Effect<ReadonlyArray<StoredUpdate>, StorageError>
  /** Seq of the latest update (0 when none). */
  readonly latestVersion: (id: DocumentId) => Effect.Effect<number, StorageError>
  /** Stores a snapshot; a later `latestSnapshot` returns the one with the highest version. */
  readonly putSnapshot: (id: DocumentId, snapshot: Snapshot) => Effect.Effect<void, StorageError>
  /** The snapshot with the highest version, if any. */
  readonly latestSnapshot: (id: DocumentId) => Effect.Effect<Option.Option<Snapshot>, StorageError>
}

export class DocumentStorage extends Context.Tag("docsync/DocumentStorage")<DocumentStorage, DocumentStorageShape>() {}

/** In-memory storage: nothing survives a restart. Serialises writes like a database would. */
export const makeMemory: Effect.Effect<DocumentStorageShape> = Effect.gen(function* () {
  interface Entry {
    position: number
    document: Document
    readonly updates: Array<StoredUpdate>
    readonly byOpId: Map<string, StoredUpdate>
    snapshot: Option.Option<Snapshot>
  }
  const entries = new Map<string, Entry>()
  const ordered: Array<Entry> = []
  const lock = yield* Effect.makeSemaphore(1)
  let position = 0

  const live = (id: DocumentId, includeDeleted = false): Option.Option<Entry> => {
    const entry = entries.get(id)
    return entry !== undefined && (includeDeleted || entry.document.deletedAt === null) ? Option.some(entry) : Option.none()
  }
  const existing = (id: DocumentId, operation: string) =>
    Option.match(live(id, true), {
      onNone: () => Effect.fail(new StorageError({ operation, cause: `unknown document ${id}` })),
      onSome: Effect.succeed
    })
  const now = Effect.clockWith((clock) => clock.currentTimeMillis)
  const clock = yield* Effect.clock

  /** Stores what is new in one synchronous step (nothing can come between), answering an opId already stored with its seq. */
  const appendNow = (entry: Entry, updates: ReadonlyArray<NewUpdate>, at: number): ReadonlyArray<AppendResult> => {
    const results: Array<AppendResult> = []
    for (const update of updates) {
      const stored = entry.byOpId.get(update.opId)
      if (stored !== undefined) {
        results.push({ opId: update.opId, seq: stored.seq, duplicate: true })
        continue
      }
      const seq = entry.updates.length + 1
      // A copy of its own: a small delta is a view of Node's shared 8 KiB pool, which it would keep alive.
      const row: StoredUpdate = { seq, opId: update.opId, actorId: update.actorId, delta: new Uint8Array(update.delta) }
      entry.updates.push(row)
      entry.byOpId.set(update.opId, row)
      results.push({ opId: update.opId, seq, duplicate: false })
    }
    if (results.some((r) => !r.duplicate)) {
      entry.document = { ...entry.document, version: entry.updates.length, updatedAt: at }
    }
    return results
  }

  const append = (id: DocumentId, updates: ReadonlyArray<NewUpdate>) =>
    lock.withPermits(1)(
      Effect.flatMap(existing(id, "append"), (entry) => Effect.map(now, (at) => appendNow(entry, updates, at)))
    )
  // The actors' path: stored at once, answered after the caller's synchronous code (as SQLite's commit worker
  // answers later), in the order the appends were made. No fiber per append.
  const appendThen: AppendInOrder = (id, updates, done) => {
    const entry = live(id, true)
    const exit = Option.isNone(entry)
      ? Exit.fail(new StorageError({ operation: "append", cause: `unknown document ${id}` }))
      : Exit.succeed(appendNow(entry.value, updates, clock.unsafeCurrentTimeMillis()))
    queueMicrotask(() => done(exit))
  }
  inOrderAppends.set(append, appendThen)
  boundsItself.add(append)

  return {
    ping: Effect.void,
    create: (title) =>
      lock.withPermits(1)(
        Effect.map(now, (at) => {
          const document = newDocument(title, at)
          const entry: Entry = { position: ++position, document, updates: [], byOpId: new Map(), snapshot: Option.none() }
          entries.set(document.id, entry)
          ordered.push(entry)
          return document
        })
      ),
    get: (id, includeDeleted = false) => Effect.sync(() => Option.map(live(id, includeDeleted), (e) => e.document)),
    list: ({ after, includeDeleted, limit }) =>
      Effect.sync(() => {
        const from = Option.getOrElse(after, () => 0)
        const items: Array<Entry> = []
        for (const entry of ordered) {
          if (items.length >= limit) break
          if (entry.position <= from || (!includeDeleted && entry.document.deletedAt !== null)) continue
          items.push(entry)
        }
        const last = items.at(-1)
        return {
          items: items.map((e) => e.document),
          next: items.length === limit && last !== undefined ? Option.some(last.position) : Option.none()
        }
      }),
    rename: (id, title) =>
      lock.withPermits(1)(
        Effect.flatMap(now, (at) =>
          Effect.sync(() =>
            Option.map(live(id), (entry) => {
              entry.document = { ...entry.document, title, updatedAt: at }
              return entry.document
            })
          )
        )
      ),
    softDelete: (id) =>
      lock.withPermits(1)(
        Effect.flatMap(now, (at) =>
          Effect.sync(() =>
            Option.map(live(id), (entry) => {
              entry.document = { ...entry.document, deletedAt: at, updatedAt: at }
              return entry.document
            })
          )
        )
      ),
    append,
    findByOpId: (id, opId) =>
      Effect.sync(() => Option.flatMap(live(id, true), (e) => Option.fromNullable(e.byOpId.get(opId)))),
    updatesAfter: (id, after, limit) =>
      Effect.sync(() =>
        Option.match(live(id, true), {
          onNone: () => [],
          onSome: (e) => e.updates.slice(Math.max(0, after), Math.max(0, after) + limit)
        })
      ),
    latestVersion: (id) => Effect.sync(() => Option.match(live(id, true), { onNone: () => 0, onSome: (e) => e.updates.length })),
    putSnapshot: (id, snapshot) =>
      lock.withPermits(1)(
        Effect.flatMap(existing(id, "putSnapshot"), (entry) =>
          Effect.sync(() => {
            if (!Option.exists(entry.snapshot, (s) => s.version >= snapshot.version)) {
              entry.snapshot = Option.some({ ...snapshot, data: new Uint8Array(snapshot.data) })
            }
          })
        )
      ),
    latestSnapshot: (id) => Effect.sync(() => Option.flatMap(live(id, true), (e) => e.snapshot))
  }
})

/**
 * Storage methods that bound their own calls (they fail with a StorageError past their own timeout, without a
 * fiber per call), which `withTimeout` leaves as they are. Not part of the public API.
 * @internal
 */
export const boundsItself = new WeakSet<object>()

/**
 * `append` for a storage that commits each document's appends in the order they are made, started without a fiber:
 * `done` is called once with the outcome, in the order the appends were made, and within the storage's own
 * timeout (such an `append` is also in `boundsItself`).
 * @internal
 */
export type AppendInOrder = (
  id: DocumentId,
  updates: ReadonlyArray<NewUpdate>,
  done: (exit: Exit.Exit<ReadonlyArray<AppendResult>, StorageError>) => void
) => void

/**
 * The `AppendInOrder` of a storage's `append`, for the storages that have one (SQLite's commit worker, memory://):
 * on them a document actor sends its next batch while the previous one commits, without a fiber. PostgreSQL, with a
 * pool of connections, may commit two appends of a document in either order. Not part of the public API.
 * @internal
 */
export const inOrderAppends = new WeakMap<object, AppendInOrder>()

/**
 * Bounds every call of `storage` by `timeout` (by the Effect `Clock`): a call still running then fails with a
 * StorageError and is interrupted. Each call runs in a fiber of its own and one timer fiber, for all calls,
 * sleeps until the earliest deadline; `Effect.timeout` would race two fibers per call, several times the cost of
 * the call on the actors' hot path. Interrupting the caller interrupts its call. Methods in `boundsItself` are
 * left as they are.
 */
export const withTimeout = (
  storage: DocumentStorageShape,
  timeout: Duration.Duration
): Effect.Effect<DocumentStorageShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const millis = Duration.toMillis(timeout)
    interface Call {
      readonly deadline: number
      readonly expire: () => void
    }
    /** Calls in progress, in start order: deadlines only grow. */
    const calls = new Set<Call>()
    let wake: (() => void) | undefined
    const timer = Effect.gen(function* () {
      while (true) {
        if (calls.size === 0) {
          yield* Effect.async<void>((resume) => {
            wake = () => {
              wake = undefined
              resume(Effect.void)
            }
          })
        }
        const now = clock.unsafeCurrentTimeMillis()
        let next: number | undefined
        for (const call of calls) {
          if (call.deadline > now) {
            next = call.deadline
            break
          }
          call.expire()
        }
        if (next !== undefined) yield* Effect.sleep(Duration.millis(next - now))
      }
    })
    yield* Effect.forkScoped(timer)

    const bound = <A>(operation: string, effect: Effect.Effect<A, StorageError>): Effect.Effect<A, StorageError> =>
      Effect.flatMap(Effect.forkDaemon(Effect.interruptible(effect)), (work) =>
        Effect.async<A, StorageError>((resume) => {
          const call: Call = {
            deadline: clock.unsafeCurrentTimeMillis() + millis,
            expire: () => {
              calls.delete(call)
              work.unsafeInterruptAsFork(FiberId.none)
              resume(Effect.fail(new StorageError({ operation, cause: `no answer within ${Duration.format(timeout)}` })))
            }
          }
          calls.add(call)
          wake?.()
          work.addObserver((exit) => {
            if (calls.delete(call)) resume(exit)
          })
          return Effect.sync(() => {
            if (calls.delete(call)) work.unsafeInterruptAsFork(FiberId.none)
          })
        }))
    const own = <K extends keyof DocumentStorageShape>(name: K, wrapped: DocumentStorageShape[K]): DocumentStorageShape[K] =>
      boundsItself.has(storage[name]) ? storage[name] : wrapped
    return {
      ping: bound("ping", storage.ping),
      create: (title) => bound("create", storage.create(title)),
      get: (id, includeDeleted) => bound("get", storage.get(id, includeDeleted)),
      list: (options) => bound("list", storage.list(options)),
      rename: (id, title) => bound("rename", storage.rename(id, title)),
      softDelete: (id) => bound("softDelete", storage.softDelete(id)),
      append: own("append", (id, updates) => bound("append", storage.append(id, updates))),
      findByOpId: (id, opId) => bound("findByOpId", storage.findByOpId(id, opId)),
      updatesAfter: own("updatesAfter", (id, after, limit) => bound("updatesAfter", storage.updatesAfter(id, after, limit))),
      latestVersion: (id) => bound("latestVersion", storage.latestVersion(id)),
      putSnapshot: own("putSnapshot", (id, snapshot) => bound("putSnapshot", storage.putSnapshot(id, snapshot))),
      latestSnapshot: (id) => bound("latestSnapshot", storage.latestSnapshot(id))
    }
  })

/** In-memory storage; nothing survives a restart. */
export const layerMemory: Layer.Layer<DocumentStorage> = Layer.effect(DocumentStorage, makeMemory)

function describe(cause: unknown): string {
  if (cause instanceof Error) return cause.message
  return typeof cause === "string" ? cause : JSON.stringify(cause)
}
