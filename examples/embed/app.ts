/**
 * A host application that embeds docsync: its own route (`GET /app/hello`), its own SQLite database shared with
 * docsync, its own authentication, and docsync mounted under `/collab`.
 *
 * In your application, import from "docsync" instead of "../../src/index.js".
 */
import { HttpLayerRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Option } from "effect"
import { createServer } from "node:http"
import * as DocSync from "../../src/index.js"

/**
 * Our gateway has signed the user in and passes `x-user` (who) and `x-role` (`editor` or anything else) on every
 * request. Anyone signed in may read and list documents; editors may also write, create, rename and delete.
 */
export const HeaderAuthorizer = DocSync.Authorizer.make({
  authenticate: ({ headers }) => {
    const user = headers["x-user"] ?? ""
    return user === ""
      ? Effect.fail(new DocSync.Unauthorized({ message: "sign in first: no x-user header" }))
      : Effect.succeed({
        subject: user,
        role: headers["x-role"] === "editor" ? "write" : "read",
        documents: "all",
        expiresAt: Option.none()
      })
  },
  authorize: (principal, action) =>
    principal.role === "write" || action === "read" || action === "list"
      ? Effect.void
      : Effect.fail(new DocSync.Forbidden({ message: `${principal.subject} may not ${action}: editors only` }))
})

/** The host's own route, on the host's own table in the same database. */
export const HelloRoute = HttpLayerRouter.add(
  "GET",
  "/app/hello",
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const request = yield* HttpServerRequest.HttpServerRequest
    const user = request.headers["x-user"] ?? "stranger"
    yield* sql`CREATE TABLE IF NOT EXISTS app_visits (user TEXT NOT NULL)`
    yield* sql`INSERT INTO app_visits ${sql.insert({ user })}`
    const [row] = yield* sql<{ readonly visits: number }>`SELECT count(*) AS visits FROM app_visits WHERE user = ${user}`
    return yield* HttpServerResponse.json({ hello: user, visits: row?.visits ?? 0 })
  }).pipe(Effect.orDie)
)

export interface AppOptions {
  readonly port: number
  /** The application's SQLite database file (`:memory:` for a throwaway one). */
  readonly filename: string
  /** docsync settings (timers, limits); defaults otherwise. */
  readonly collab?: Partial<DocSync.Config.ServerConfigShape>
}

/** The whole application: provides the HTTP server (its address tells the port when `port` is 0). */
export const makeApp = (options: AppOptions) => {
  const Collab = DocSync.mount({
    prefix: "/collab",
    // docsync's tables (collab_documents, ...) live in our database, created by docsync's own migrations.
    storage: DocSync.Storage.layerSqlClient({ tablePrefix: "collab_" }),
    authorizer: HeaderAuthorizer,
    config: options.collab ?? {}
  })
  return HttpLayerRouter.serve(Layer.mergeAll(HelloRoute, Collab)).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: "127.0.0.1" })),
    Layer.provide(SqliteClient.layer({ filename: options.filename }))
  )
}
