/**
 * Test fixtures for the storage suites: fresh SQLite directories and fresh PostgreSQL schemas.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * This machine runs PostgreSQL with trust auth; CI points the variable at a fresh database. Without a user in the
 * URL, pg falls back to $USER, which is unset in some containers: fill in the OS user as libpq would.
 */
export const pgTestUrl = withUser(process.env["DOCSYNC_TEST_PG_URL"] ?? "postgres://127.0.0.1:5432/test")

/** A fresh directory, removed with the scope. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "docsync-storage-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A Layer built from a fresh SQLite file path (in a directory removed afterwards). */
export const withSqliteFile = <A, E, R>(f: (filename: string) => Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapScoped(Effect.map(tempDir, (dir) => f(Path.join(dir, "docsync.db"))))

/**
 * A fresh schema `docsync_test_<epoch seconds>_<random>`, dropped with the scope, and a URL whose connections have
 * it as `search_path` (pg passes the `options` query parameter to the server at connect time). Dies if PostgreSQL
 * is unreachable: these tests must fail loudly, never skip.
 */
export const freshPgSchema: Effect.Effect<{ readonly schema: string; readonly url: string }, never, Scope.Scope> =
  Effect.gen(function* () {
    // Wall-clock time on purpose (TestClock stands at 0): the stamp is compared across test processes.
    const now = Math.floor(Date.now() / 1000)
    const schema = `docsync_test_${now}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`
    const admin = yield* PgClient.make({ url: Redacted.make(pgTestUrl), maxConnections: 1 }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.orDieWith((error) =>
        new Error(`PostgreSQL at ${pgTestUrl} is required for these tests: ${String(error.cause)}`)
      )
    )
    // vitest skips the afterAll of a suite whose tests are all filtered out (`-t`), after its beforeAll built the
    // layer: sweep schemas left behind that way, once they are old enough not to belong to a running test.
    const stale = yield* Effect.orDie(admin<{ readonly nspname: string }>`
      SELECT nspname FROM pg_namespace WHERE nspname LIKE 'docsync\_test\_%'`)
    for (const { nspname } of stale) {
      const stamp = Number(/^docsync_test_(\d+)_/.exec(nspname)?.[1])
      if (stamp < now - STALE_SCHEMA_SECONDS) {
        yield* Effect.ignoreLogged(admin`DROP SCHEMA IF EXISTS ${admin(nspname)} CASCADE`)
      }
    }
    yield* Effect.acquireRelease(
      Effect.orDie(admin`CREATE SCHEMA ${admin(schema)}`),
      () => Effect.ignoreLogged(admin`DROP SCHEMA ${admin(schema)} CASCADE`)
    )
    const url = new URL(pgTestUrl)
    url.searchParams.set("options", `-c search_path=${schema}`)
    return { schema, url: url.toString() }
  })

const STALE_SCHEMA_SECONDS = 3_600

/** A Layer built from the URL of a fresh PostgreSQL schema (dropped afterwards). */
export const withPgSchema = <A, E, R>(f: (url: string) => Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapScoped(Effect.map(freshPgSchema, ({ url }) => f(url)))

function withUser(url: string): string {
  const parsed = new URL(url)
  if (parsed.username !== "" || parsed.searchParams.has("user")) return url
  parsed.username = process.env["PGUSER"] || process.env["USER"] || Os.userInfo().username
  return parsed.toString()
}
