/**
 * Schema migrations of `SqlDocumentStorage`, for SQLite and PostgreSQL, with what both modules share about that
 * schema: table names, column decoding, and turning every SQL failure into a `StorageError`.
 *
 * Hand-written rather than `@effect/sql`'s `Migrator`, because that one:
 * - creates its migrations table in PostgreSQL outside the transaction (`select 'x'::regclass`, then
 *   `CREATE TABLE`), so two instances starting on one empty database race and one fails;
 * - turns a failed migration into a defect (`orDie`) and silently skips a run it thinks is "locked";
 * - has one migrations table per database, so two table prefixes in one database would share it;
 * - needs `NodeContext` (FileSystem, Path, CommandExecutor) for SQLite even with `fromRecord`.
 * Here a run is one transaction; in PostgreSQL it first takes a transaction-scoped advisory lock, so racing
 * instances queue instead of failing; every statement is `CREATE ... IF NOT EXISTS`; applied ids are recorded
 * in `<prefix>docsync_migrations`; failures are `StorageError`s.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import { StorageError } from "./DocumentStorage.js"

/** The tables (and named constraints) of one storage instance, all carrying its prefix. */
export interface TableNames {
  readonly prefix: string
  readonly documents: string
  readonly updates: string
  readonly snapshots: string
  readonly migrations: string
}

/** Longest prefix: PostgreSQL truncates identifiers to 63 bytes, which could make two prefixes collide. */
export const MAX_TABLE_PREFIX_LENGTH = 32

/**
 * The table names for a prefix. Fails with `StorageError` unless the prefix is empty or matches
 * `/^[a-z_][a-z0-9_]*$/i` (it is spliced into DDL as part of identifiers) and is at most 32 characters.
 */
export const tableNames = (prefix: string): Effect.Effect<TableNames, StorageError> =>
  prefix === "" || (/^[a-z_][a-z0-9_]*$/i.test(prefix) && prefix.length <= MAX_TABLE_PREFIX_LENGTH)
    ? Effect.succeed({
      prefix,
      documents: `${prefix}documents`,
      updates: `${prefix}document_updates`,
      snapshots: `${prefix}document_snapshots`,
      migrations: `${prefix}docsync_migrations`
    })
    : Effect.fail(
      new StorageError({
        operation: "configure",
        cause: `invalid table prefix ${JSON.stringify(prefix)}: use letters, digits and _ (not first), ` +
          `at most ${MAX_TABLE_PREFIX_LENGTH} characters`
      })
    )

/**
 * Brings the schema of `tablePrefix` up to date and returns the names of the migrations it applied.
 * Idempotent, and safe to run from several instances at once.
 */
export const migrate = (
  tablePrefix = ""
): Effect.Effect<ReadonlyArray<string>, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const tables = yield* tableNames(tablePrefix)
    // The host's client may transform names (camelCase); our SQL spells columns as they are.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    return yield* sql.withTransaction(run(sql, tables)).pipe(orStorageError("migrate"))
  })

/**
 * Re-fails every `SqlError` as a `StorageError` of `operation`, including the ones `withTransaction` turns into
 * defects (a failed COMMIT or ROLLBACK) and rows that do not decode, so that `SqlError` never leaves the storage
 * modules. Shared with `SqlDocumentStorage`; not part of the public API.
 * @internal
 */
export const orStorageError = (operation: string) =>
<A, R>(effect: Effect.Effect<A, SqlError.SqlError | StorageError, R>): Effect.Effect<A, StorageError, R> =>
  effect.pipe(
    Effect.mapError((error) =>
      error._tag === "StorageError" ? error : new StorageError({ operation, cause: explain(error) })
    ),
    Effect.catchSomeDefect((defect) =>
      isSqlError(defect)
        ? Option.some(Effect.fail(new StorageError({ operation, cause: explain(defect) })))
        : defect instanceof UnexpectedColumn
        ? Option.some(Effect.fail(new StorageError({ operation, cause: defect })))
        : Option.none()
    ),
    Effect.withSpan(`DocumentStorage.${operation}`)
  )

/**
 * The SqlError with the driver's reason in its message: SqlError's own ("Failed to execute statement", "Failed to
 * connect") does not say what went wrong. The SqlError stays reachable as the cause.
 * @internal
 */
export const explain = (error: SqlError.SqlError): unknown =>
  error.cause instanceof Error ? new Error(`${error.message}: ${error.cause.message}`, { cause: error }) : error

/** Whether a failure is a unique-constraint violation (SQLite result code, or PostgreSQL SQLSTATE 23505). */
export const isUniqueViolation = (error: SqlError.SqlError): boolean => {
  const cause: unknown = error.cause
  if (typeof cause !== "object" || cause === null || !("code" in cause)) return false
  return cause.code === "SQLITE_CONSTRAINT_UNIQUE" || cause.code === "SQLITE_CONSTRAINT_PRIMARYKEY" ||
    cause.code === "23505"
}

/**
 * PostgreSQL returns BIGINT as a string, SQLite as a number (or a bigint with safeIntegers).
 * Throws `UnexpectedColumn`, which `orStorageError` turns into a `StorageError`.
 * @internal
 */
export const decodeInt = (value: unknown): number => {
  const n = typeof value === "number"
    ? value
    : typeof value === "string" || typeof value === "bigint"
    ? Number(value)
    : NaN
  if (!Number.isSafeInteger(n)) throw new UnexpectedColumn(`expected an integer column, got ${String(value)}`)
  return n
}

/**
 * Both drivers return a Buffer, possibly a slice of a shared pool: hand out a plain Uint8Array view of it.
 * Throws `UnexpectedColumn`, which `orStorageError` turns into a `StorageError`.
 * @internal
 */
export const decodeBytes = (value: unknown): Uint8Array => {
  if (!(value instanceof Uint8Array)) throw new UnexpectedColumn(`expected a binary column, got ${typeof value}`)
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
}

// Helpers

interface Migration {
  readonly id: number
  readonly name: string
  readonly run: (sql: SqlClient.SqlClient, tables: TableNames) => Effect.Effect<unknown, SqlError.SqlError>
}

/** Append only: a released migration never changes, a new one gets the next id. */
const migrations: ReadonlyArray<Migration> = [
  {
    id: 1,
    name: "create_documents_updates_snapshots",
    run: (sql, t) => {
      // `position` gives list() a creation order that stays stable while documents are created between pages.
      const position = sql.onDialectOrElse({
        pg: () => "position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        // AUTOINCREMENT: a position is never reused, even after the highest row went away.
        orElse: () => "position INTEGER PRIMARY KEY AUTOINCREMENT"
      })
      const bytes = sql.onDialectOrElse({ pg: () => "BYTEA", orElse: () => "BLOB" })
      return Effect.all([
        sql`CREATE TABLE IF NOT EXISTS ${sql(t.documents)} (
          ${sql.literal(position)},
          id TEXT NOT NULL UNIQUE,
          title TEXT NOT NULL,
          version BIGINT NOT NULL DEFAULT 0,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          deleted_at BIGINT
        )`,
        // The primary key and the opId constraint are the last line of defence against a duplicate seq or opId,
        // whatever the locking above them does.
        sql`CREATE TABLE IF NOT EXISTS ${sql(t.updates)} (
          document_id TEXT NOT NULL REFERENCES ${sql(t.documents)} (id),
          seq BIGINT NOT NULL,
          op_id TEXT NOT NULL,
          actor_id TEXT NOT NULL,
          delta ${sql.literal(bytes)} NOT NULL,
          CONSTRAINT ${sql(`${t.updates}_pkey`)} PRIMARY KEY (document_id, seq),
          CONSTRAINT ${sql(`${t.updates}_op_id_key`)} UNIQUE (document_id, op_id)
        )`,
        sql`CREATE TABLE IF NOT EXISTS ${sql(t.snapshots)} (
          document_id TEXT NOT NULL REFERENCES ${sql(t.documents)} (id),
          version BIGINT NOT NULL,
          data ${sql.literal(bytes)} NOT NULL,
          CONSTRAINT ${sql(`${t.snapshots}_pkey`)} PRIMARY KEY (document_id, version)
        )`
      ], { discard: true })
    }
  }
]

const run = (sql: SqlClient.SqlClient, tables: TableNames) =>
  Effect.gen(function* () {
    // Taken before any DDL: concurrent CREATE TABLE IF NOT EXISTS in PostgreSQL can still fail with a unique
    // violation in the catalog. The key includes the schema so that isolated schemas do not wait on each other.
    yield* sql.onDialectOrElse({
      pg: () =>
        sql`SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || ${tables.migrations}))`,
      orElse: () => Effect.void
    })
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(tables.migrations)} (
      id INTEGER NOT NULL PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at BIGINT NOT NULL
    )`
    const rows = yield* sql<{ readonly id: unknown }>`SELECT id FROM ${sql(tables.migrations)}`
    const applied = new Set(rows.map((row) => Number(row.id)))
    const ran: Array<string> = []
    for (const migration of migrations) {
      if (applied.has(migration.id)) continue
      yield* migration.run(sql, tables)
      const at = yield* Clock.currentTimeMillis
      yield* sql`INSERT INTO ${sql(tables.migrations)} (id, name, applied_at)
        VALUES (${migration.id}, ${migration.name}, ${at})`
      yield* Effect.logDebug(`applied migration ${migration.id}_${migration.name}`).pipe(
        Effect.annotateLogs("tablePrefix", tables.prefix)
      )
      ran.push(`${migration.id}_${migration.name}`)
    }
    return ran
  })

/** A column holds something our schema cannot produce: a storage failure, not a bug of the caller. */
class UnexpectedColumn extends TypeError {}

const isSqlError = (u: unknown): u is SqlError.SqlError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "SqlError"
