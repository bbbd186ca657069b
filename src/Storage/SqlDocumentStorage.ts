/**
 * DocumentStorage on SQL: SQLite (better-sqlite3) and PostgreSQL share one set of statements; the few places where
 * the dialects differ use `sql.onDialectOrElse`. Every `SqlError` is re-failed as a `StorageError`.
 *
 * Concurrency: `append` runs in one transaction that first locks the document (PostgreSQL: `SELECT ... FOR
 * UPDATE`; SQLite: a write as first statement takes the database's single write lock), so seqs are assigned from a
 * version nobody else can move. The `(document_id, seq)` primary key and `(document_id, op_id)` unique constraint
 * back that up: a violation rolls the whole batch back, never leaving a duplicate or a gap.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Clock, Duration, Effect, Layer, Option, Redacted, type Scope } from "effect"
import { type Document, type DocumentId, newDocument, type Snapshot, type StoredUpdate } from "../Domain/Document.js"
import {
  type AppendResult,
  DocumentStorage,
  type DocumentStorageShape,
  type NewUpdate,
  StorageError
} from "./DocumentStorage.js"
import {
  decodeBytes,
  decodeInt,
  explain,
  isUniqueViolation,
  migrate,
  orStorageError,
  tableNames
} from "./Migrations.js"
import * as SqliteLog from "./SqliteLog.js"

/** Options of every SQL storage. */
export interface SqlDocumentStorageOptions {
  /**
   * Prepended to every table and constraint name, so several instances can share one database.
   * Empty by default; otherwise letters, digits and `_` (not first), at most 32 characters.
   */
  readonly tablePrefix?: string
}

/**
 * Storage on the `SqlClient` in context. Does not migrate: use the layers, or run `Migrations.migrate` first.
 * Fails only for an invalid `tablePrefix`.
 */
export const make = (
  options: SqlDocumentStorageOptions = {}
): Effect.Effect<DocumentStorageShape, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const names = yield* tableNames(options.tablePrefix ?? "")
    // A host-provided client may transform names (e.g. to camelCase); our SQL spells columns as they are.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const documents = sql(names.documents)
    const updates = sql(names.updates)
    const snapshots = sql(names.snapshots)
    const documentColumns = sql.literal("position, id, title, version, created_at, updated_at, deleted_at")
    const updateColumns = sql.literal("seq, op_id, actor_id, delta")
    const now = Clock.currentTimeMillis

    const selectDocument = (id: DocumentId, includeDeleted: boolean) =>
      sql<DocumentRow>`SELECT ${documentColumns} FROM ${documents}
        WHERE id = ${id} ${includeDeleted ? sql`` : sql`AND deleted_at IS NULL`}`

    const create = (title: string) =>
      Effect.gen(function* () {
        // PostgreSQL hands out identity values at INSERT but makes rows visible at COMMIT, so two concurrent creates
        // could become visible out of position order and a reader paging by position would skip the earlier one.
        // Serialising creates (rare) makes commit order equal position order. SQLite has one writer anyway.
        yield* sql.onDialectOrElse({
          pg: () =>
            sql`SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || ${names.documents}))`,
          orElse: () => Effect.void
        })
        const at = yield* now
        const document = newDocument(title, at)
        yield* sql`INSERT INTO ${documents} ${
          sql.insert({ id: document.id, title, version: 0, created_at: at, updated_at: at, deleted_at: null })
        }`
        return document
      }).pipe(sql.withTransaction)

    const lockDocument = (id: DocumentId) =>
      sql.onDialectOrElse({
        pg: () => sql<VersionRow>`SELECT version FROM ${documents} WHERE id = ${id} FOR UPDATE`,
        // SQLite has no row locks. Writing first takes the write lock now (waiting up to busy_timeout) instead of
        // upgrading a read transaction later, which fails at once with SQLITE_BUSY_SNAPSHOT if another connection
        // wrote in between.
        orElse: () => sql<VersionRow>`UPDATE ${documents} SET version = version WHERE id = ${id} RETURNING version`
      })

    const appendOnce = (id: DocumentId, batch: ReadonlyArray<NewUpdate>) =>
      Effect.gen(function* () {
        const [locked] = yield* lockDocument(id)
        if (locked === undefined) {
          return yield* new StorageError({ operation: "append", cause: `unknown document ${id}` })
        }
        let version = decodeInt(locked.version)
        const known = new Map<string, number>()
        for (const opIds of chunksOf(Array.from(new Set(batch.map((u) => u.opId))), IN_CHUNK)) {
          const rows = yield* sql<OpIdRow>`SELECT op_id, seq FROM ${updates}
            WHERE document_id = ${id} AND op_id IN ${sql.in(opIds)}`
          for (const row of rows) known.set(row.op_id, decodeInt(row.seq))
        }
        const results: Array<AppendResult> = []
        const rows: Array<UpdateInsert> = []
        for (const update of batch) {
          const stored = known.get(update.opId)
          if (stored !== undefined) {
            // Also catches the second of two equal opIds in one batch: the first was put into `known` below.
            results.push({ opId: update.opId, seq: stored, duplicate: true })
            continue
          }
          version += 1
          known.set(update.opId, version)
          rows.push({
            document_id: id,
            seq: version,
            op_id: update.opId,
            actor_id: update.actorId,
            delta: toBuffer(update.delta)
          })
          results.push({ opId: update.opId, seq: version, duplicate: false })
        }
        for (const chunk of chunksOf(rows, INSERT_CHUNK)) {
          yield* sql`INSERT INTO ${updates} ${sql.insert(chunk)}`
        }
        if (rows.length > 0) {
          const at = yield* now
          yield* sql`UPDATE ${documents} SET version = ${version}, updated_at = ${at} WHERE id = ${id}`
        }
        return results
      }).pipe(sql.withTransaction)

    const storage: DocumentStorageShape = {
      ping: sql`SELECT 1`.pipe(Effect.asVoid, orStorageError("ping")),

      create: (title) => create(title).pipe(orStorageError("create")),

      get: (id, includeDeleted = false) =>
        selectDocument(id, includeDeleted).pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decodeDocument)),
          orStorageError("get")
        ),

      list: ({ after, includeDeleted, limit }) =>
        sql<DocumentRow>`SELECT ${documentColumns} FROM ${documents}
          WHERE position > ${Option.getOrElse(after, () => 0)}
          ${includeDeleted ? sql`` : sql`AND deleted_at IS NULL`}
          ORDER BY position LIMIT ${Math.max(0, limit)}`.pipe(
          Effect.map((rows) => {
            const last = rows.at(-1)
            return {
              items: rows.map(decodeDocument),
              next: rows.length === limit && last !== undefined ? Option.some(decodeInt(last.position)) : Option.none()
            }
          }),
          orStorageError("list")
        ),

      rename: (id, title) =>
        Effect.flatMap(now, (at) =>
          sql<DocumentRow>`UPDATE ${documents} SET title = ${title}, updated_at = ${at}
            WHERE id = ${id} AND deleted_at IS NULL RETURNING ${documentColumns}`).pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decodeDocument)),
          orStorageError("rename")
        ),

      softDelete: (id) =>
        Effect.flatMap(now, (at) =>
          sql<DocumentRow>`UPDATE ${documents} SET deleted_at = ${at}, updated_at = ${at}
            WHERE id = ${id} AND deleted_at IS NULL RETURNING ${documentColumns}`).pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decodeDocument)),
          orStorageError("softDelete")
        ),

      append: (id, batch) =>
        appendOnce(id, batch).pipe(
          // Only reachable if something bypassed the lock (another writer, a bug): the retry sees the committed
          // rows, reports their opIds as duplicates and numbers after them. A second violation becomes a StorageError.
          Effect.retry({ times: 1, while: (error) => error._tag === "SqlError" && isUniqueViolation(error) }),
          orStorageError("append")
        ),

      findByOpId: (id, opId) =>
        sql<UpdateRow>`SELECT ${updateColumns} FROM ${updates} WHERE document_id = ${id} AND op_id = ${opId}`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decodeUpdate)),
          orStorageError("findByOpId")
        ),

      updatesAfter: (id, after, limit) =>
        sql<UpdateRow>`SELECT ${updateColumns} FROM ${updates}
          WHERE document_id = ${id} AND seq > ${after} ORDER BY seq LIMIT ${Math.max(0, limit)}`.pipe(
          Effect.map((rows) => rows.map(decodeUpdate)),
          orStorageError("updatesAfter")
        ),

      latestVersion: (id) =>
        sql<VersionRow>`SELECT version FROM ${documents} WHERE id = ${id}`.pipe(
          Effect.map((rows) => rows[0] === undefined ? 0 : decodeInt(rows[0].version)),
          orStorageError("latestVersion")
        ),

      putSnapshot: (id, snapshot) =>
        Effect.gen(function* () {
          const exists = yield* sql`SELECT 1 AS found FROM ${documents} WHERE id = ${id}`
          if (exists.length === 0) {
            return yield* new StorageError({ operation: "putSnapshot", cause: `unknown document ${id}` })
          }
          yield* sql`INSERT INTO ${snapshots} ${
            sql.insert({ document_id: id, version: snapshot.version, data: toBuffer(snapshot.data) })
          } ON CONFLICT (document_id, version) DO NOTHING`
          // Joins only ever start from the latest snapshot; older ones are dead weight (each holds a whole document).
          yield* sql`DELETE FROM ${snapshots} WHERE document_id = ${id}
            AND version < (SELECT MAX(version) FROM ${snapshots} WHERE document_id = ${id})`
        }).pipe(sql.withTransaction, orStorageError("putSnapshot")),

      latestSnapshot: (id) =>
        sql<SnapshotRow>`SELECT version, data FROM ${snapshots}
          WHERE document_id = ${id} ORDER BY version DESC LIMIT 1`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decodeSnapshot)),
          orStorageError("latestSnapshot")
        )
    }
    return withoutImpossibleIds(storage)
  })

/**
 * Ids with U+0000 cannot be stored (PostgreSQL text cannot hold it, and the query itself would fail): they are
 * answered as unknown without asking the database, so a client's odd id is a 404, not a storage failure.
 */
const withoutImpossibleIds = (storage: DocumentStorageShape): DocumentStorageShape => {
  const impossible = (text: string) => text.includes("\u0000")
  return {
    ...storage,
    get: (id, includeDeleted) => (impossible(id) ? Effect.succeedNone : storage.get(id, includeDeleted)),
    rename: (id, title) => (impossible(id) ? Effect.succeedNone : storage.rename(id, title)),
    softDelete: (id) => (impossible(id) ? Effect.succeedNone : storage.softDelete(id)),
    findByOpId: (id, opId) => (impossible(id) || impossible(opId) ? Effect.succeedNone : storage.findByOpId(id, opId)),
    updatesAfter: (id, after, limit) => (impossible(id) ? Effect.succeed([]) : storage.updatesAfter(id, after, limit)),
    latestVersion: (id) => (impossible(id) ? Effect.succeed(0) : storage.latestVersion(id)),
    latestSnapshot: (id) => (impossible(id) ? Effect.succeedNone : storage.latestSnapshot(id))
  }
}

/**
 * Storage on the `SqlClient` the host already provides (for instance one shared with `@effect/cluster`).
 * Runs the migrations when built. Connection settings (SQLite pragmas, pool size) stay the host's business.
 */
export const layerSqlClient = (
  options: SqlDocumentStorageOptions = {}
): Layer.Layer<DocumentStorage, StorageError, SqlClient.SqlClient> =>
  Layer.effect(DocumentStorage, Effect.zipRight(migrate(options.tablePrefix ?? ""), make(options)))

/** Options of `layerSqlite`. */
export interface SqliteOptions extends SqlDocumentStorageOptions {
  /** Path of the database file, relative to the working directory or absolute; `:memory:` for a throwaway one. */
  readonly filename: string
  /**
   * `full` (default): every commit is fsynced before the ack, so an ack survives power loss. `normal`: commits reach
   * the OS but the WAL is fsynced only at checkpoints: an ack survives a killed process (SIGKILL), and power loss or
   * an OS crash can lose the last acknowledged commits. Much faster (no fsync per transaction).
   */
  readonly synchronous?: "full" | "normal"
  /** An append that takes longer fails with a StorageError (default 10 seconds, like STORAGE_TIMEOUT_MS). */
  readonly timeout?: Duration.DurationInput
}

/**
 * SQLite in WAL mode with `synchronous = FULL` (or `NORMAL`, see `SqliteOptions.synchronous`), migrated when built. Fails with `StorageError` if the file cannot
 * be opened (missing directory, not a database, no permission) or the migration fails.
 */
export const layerSqlite = (options: SqliteOptions): Layer.Layer<DocumentStorage, StorageError> =>
  Layer.scoped(
    DocumentStorage,
    Effect.gen(function* () {
      const client = yield* SqliteClient.make({ filename: options.filename }).pipe(
        // better-sqlite3 throws from its constructor, which Effect reports as a defect: it is an open failure.
        Effect.catchAllDefect((cause) =>
          Effect.fail(new StorageError({ operation: `open SQLite database ${options.filename}`, cause }))
        )
      )
      // Pragmas are per connection and SqliteClient has no option for them; it keeps one connection, so once is
      // enough. synchronous = FULL fsyncs the WAL at every commit: NORMAL (this build's WAL default) already
      // survives SIGKILL, but can lose the last acknowledged commits on power loss. foreign_keys is off by default.
      yield* Effect.forEach(
        sqlitePragmas(options),
        (pragma) => client.unsafe(pragma),
        { discard: true }
      ).pipe(orStorageError(`configure SQLite database ${options.filename}`))
      const storage = yield* Effect.zipRight(migrate(options.tablePrefix ?? ""), make(options)).pipe(
        Effect.provideService(SqlClient.SqlClient, client)
      )
      // A throwaway database exists only on its one connection: no second connection for the log.
      if (options.filename === ":memory:" || options.filename === "") return storage
      const log = yield* SqliteLog.make({
        filename: options.filename,
        synchronous: options.synchronous ?? "full",
        tables: yield* tableNames(options.tablePrefix ?? ""),
        busyTimeoutMillis: SQLITE_BUSY_TIMEOUT_MS,
        timeoutMillis: Duration.toMillis(options.timeout ?? Duration.seconds(10))
      })
      return { ...storage, append: log.append, putSnapshot: log.putSnapshot, updatesAfter: log.updatesAfter }
    })
  ).pipe(Layer.provide(Reactivity.layer))

/** The pragmas `layerSqlite` runs on its connection. */
export const sqlitePragmas = (options: Pick<SqliteOptions, "synchronous">): ReadonlyArray<string> => [
  `PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`,
  `PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`,
  "PRAGMA foreign_keys = ON"
]

/** Options of `layerPg`. */
export interface PgOptions extends SqlDocumentStorageOptions {
  /** `postgres://user:password@host:port/database`; query parameters such as `sslmode` or `options` pass through. */
  readonly url: string | Redacted.Redacted<string>
  /** Most pooled connections (default 10). */
  readonly maxConnections?: number
}

/**
 * PostgreSQL through a connection pool, migrated when built. Fails with `StorageError` if the server cannot be
 * reached (within 5 s) or the migration fails.
 */
export const layerPg = (options: PgOptions): Layer.Layer<DocumentStorage, StorageError> =>
  Layer.scoped(
    DocumentStorage,
    Effect.gen(function* () {
      const url = typeof options.url === "string" ? Redacted.make(options.url) : options.url
      const client = yield* connectPg(url, options.maxConnections)
      return yield* Effect.zipRight(migrate(options.tablePrefix ?? ""), make(options)).pipe(
        Effect.provideService(SqlClient.SqlClient, client)
      )
    })
  ).pipe(Layer.provide(Reactivity.layer))

// Helpers

/** How long a write waits for another connection's write lock before failing with SQLITE_BUSY. */
const SQLITE_BUSY_TIMEOUT_MS = 5_000

/** Rows per multi-row INSERT: 5 parameters each stays far below SQLite's 32766 and PostgreSQL's 65535. */
const INSERT_CHUNK = 500
/** opIds per `IN (...)` lookup. */
const IN_CHUNK = 1_000

interface VersionRow {
  readonly version: unknown
}
interface OpIdRow {
  readonly op_id: string
  readonly seq: unknown
}
interface DocumentRow {
  readonly position: unknown
  readonly id: string
  readonly title: string
  readonly version: unknown
  readonly created_at: unknown
  readonly updated_at: unknown
  readonly deleted_at: unknown
}
interface UpdateRow {
  readonly seq: unknown
  readonly op_id: string
  readonly actor_id: string
  readonly delta: unknown
}
interface SnapshotRow {
  readonly version: unknown
  readonly data: unknown
}
type UpdateInsert = {
  readonly document_id: string
  readonly seq: number
  readonly op_id: string
  readonly actor_id: string
  readonly delta: Buffer
}

const connectPg = (
  url: Redacted.Redacted<string>,
  maxConnections: number | undefined
): Effect.Effect<SqlClient.SqlClient, StorageError, Scope.Scope | Reactivity.Reactivity> =>
  PgClient.make({
    url,
    applicationName: "docsync",
    connectTimeout: "5 seconds",
    ...(maxConnections === undefined ? {} : { maxConnections })
  }).pipe(
    Effect.mapError((cause) => new StorageError({ operation: connecting(url), cause: explain(cause) })),
    Effect.catchAllDefect((cause) => Effect.fail(new StorageError({ operation: connecting(url), cause })))
  )

/** Names the server without the user or password, which must not reach logs. */
const connecting = (url: Redacted.Redacted<string>): string => {
  try {
    const { host, pathname } = new URL(Redacted.value(url))
    return `connect to PostgreSQL at ${host}${pathname}`
  } catch {
    return "connect to PostgreSQL"
  }
}

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const decodeDocument = (row: DocumentRow): Document => ({
  id: row.id as DocumentId,
  title: row.title,
  version: decodeInt(row.version),
  createdAt: decodeInt(row.created_at),
  updatedAt: decodeInt(row.updated_at),
  deletedAt: row.deleted_at === null ? null : decodeInt(row.deleted_at)
})

const decodeUpdate = (row: UpdateRow): StoredUpdate => ({
  seq: decodeInt(row.seq),
  opId: row.op_id,
  actorId: row.actor_id,
  delta: decodeBytes(row.delta)
})

const decodeSnapshot = (row: SnapshotRow): Snapshot => ({
  version: decodeInt(row.version),
  data: decodeBytes(row.data)
})

const chunksOf = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const chunks: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size))
  return chunks
}
