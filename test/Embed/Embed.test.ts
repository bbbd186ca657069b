/**
 * The embedding example (examples/embed) as its users meet it: started on port 0 with a SQLite file, its own route
 * and docsync's REST API and WebSocket under /collab, through the host's header authentication.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import * as Path from "node:path"
import { makeApp } from "../../examples/embed/app.js"
import { tempDir } from "../Storage/helpers.js"
import { request } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"

const ada = { "x-user": "ada", "x-role": "editor" }
const bob = { "x-user": "bob" }

const startApp = (filename: string) =>
  Effect.map(
    Layer.build(makeApp({ port: 0, filename })).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
    (context) => {
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
      return `http://127.0.0.1:${address.port}`
    }
  )

describe("examples/embed", () => {
  it.scoped("serves the host's route and docsync under /collab, in the host's database, behind the host's authorizer", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "app.db")
      const url = yield* startApp(filename)

      const hello = yield* request("GET", `${url}/app/hello`, undefined, { "x-user": "ada" })
      assert.deepStrictEqual(hello.body, { hello: "ada", visits: 1 })

      const created = yield* request("POST", `${url}/collab/api/v1/documents`, { title: "Plans" }, ada)
      assert.strictEqual(created.status, 201)
      const id = (created.body as { id: string }).id
      assert.strictEqual((yield* request("POST", `${url}/collab/api/v1/documents`, { title: "x" }, bob)).status, 403)
      assert.strictEqual((yield* request("GET", `${url}/collab/api/v1/documents`)).status, 401)
      assert.strictEqual((yield* request("GET", `${url}/collab/api/v1/documents/${id}`, undefined, bob)).status, 200)
      assert.strictEqual((yield* request("GET", `${url}/api/v1/health`)).status, 404, "nothing of docsync outside /collab")

      const collab = `${url}/collab`
      const writer = yield* connect(collab, id, {}, ada)
      const reader = yield* connect(collab, id, {}, bob)
      yield* writer.take("state")
      yield* reader.take("state")
      yield* writer.send({ type: "update", opId: "op-1", baseVersion: 0, actorId: "ada", deltaB64: "AQID" })
      assert.deepStrictEqual(yield* writer.take("ack"), { type: "ack", opId: "op-1", seq: 1 })
      const remote = yield* reader.take("remote_update")
      assert.strictEqual(remote.seq, 1)
      assert.strictEqual(remote.deltaB64, "AQID")
      yield* reader.send({ type: "update", opId: "op-2", baseVersion: 1, actorId: "bob", deltaB64: "AQ==" })
      const refused = yield* reader.take("error")
      assert.strictEqual(refused.code, "forbidden")

      const stranger = yield* connect(collab, id)
      assert.strictEqual((yield* stranger.closed).code, 4401)

      // docsync's migrations made its tables in the host's database, next to the host's own.
      const tables = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ readonly name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`).pipe(
        Effect.provide(SqliteClient.layer({ filename, readonly: true }))
      )
      assert.includeMembers(tables.map((table) => table.name), ["app_visits", "collab_documents", "collab_document_updates", "collab_docsync_migrations"])
    }))
})
