/**
 * The library surface (src/DocSync.ts): instances mounted side by side in one host server stay apart, the
 * prefix and docsync's middleware apply to docsync's routes only, and the standalone `layer` runs.
 */
import { HttpLayerRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { createServer } from "node:http"
import * as DocSync from "../src/index.js"
import { request } from "./support/TestServer.js"
import { connect } from "./support/WsClient.js"

/** Serves `app` the way a host does, on a free port; the base URL. */
const serve = <E, R>(app: Layer.Layer<never, E, R>) =>
  Layer.build(
    HttpLayerRouter.serve(app, { disableLogger: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
    )
  ).pipe(
    Effect.map((context) => baseUrl(Context.get(context, HttpServer.HttpServer))),
    Logger.withMinimumLogLevel(LogLevel.None)
  )

const baseUrl = (server: HttpServer.HttpServer) =>
  server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : "unreachable"

const open = DocSync.Authorizer.open

const create = (url: string, title: string) =>
  Effect.map(request("POST", `${url}/api/v1/documents`, { title }), (reply) => {
    assert.strictEqual(reply.status, 201, reply.text)
    return (reply.body as { id: string }).id
  })

const titles = (url: string) =>
  Effect.map(request("GET", `${url}/api/v1/documents`), (reply) =>
    (reply.body as { items: Array<{ title: string }> }).items.map((d) => d.title))

describe("two mounts in one host", () => {
  it.scoped("keep documents, updates and sockets apart, even when built from the same Layer values", () =>
    Effect.gen(function* () {
      // Same storage Layer value twice: each mount must still get its own instance.
      const url = yield* serve(Layer.mergeAll(
        DocSync.mount({ prefix: "/a", storage: DocSync.Storage.layerMemory, authorizer: open }),
        DocSync.mount({ prefix: "/b", storage: DocSync.Storage.layerMemory, authorizer: open })
      ))
      const a = `${url}/a`
      const b = `${url}/b`
      const inA = yield* create(a, "only in a")
      const inB = yield* create(b, "only in b")
      assert.deepStrictEqual(yield* titles(a), ["only in a"])
      assert.deepStrictEqual(yield* titles(b), ["only in b"])
      assert.strictEqual((yield* request("GET", `${b}/api/v1/documents/${inA}`)).status, 404)

      const reader = yield* connect(a, inA)
      yield* reader.take("state")
      const writer = yield* connect(a, inA)
      yield* writer.take("state")
      yield* writer.send({ type: "update", opId: "a-1", baseVersion: 0, actorId: "w", deltaB64: "AQ==" })
      yield* writer.take("ack")
      assert.strictEqual((yield* reader.take("remote_update")).opId, "a-1")

      // The other instance knows neither the document nor its updates.
      const stranger = yield* connect(b, inA)
      assert.strictEqual((yield* stranger.closed).code, 4404)
      const other = yield* connect(b, inB)
      const state = yield* other.take("state")
      assert.strictEqual(state.version, 0)
      const updates = yield* request("GET", `${a}/api/v1/documents/${inA}/updates`)
      assert.strictEqual((updates.body as { version: number }).version, 1)
      assert.strictEqual((yield* request("GET", `${b}/api/v1/documents/${inA}/updates`)).status, 404)
    }))

  it.scoped("share the host's SqlClient with their tables apart by tablePrefix", () =>
    Effect.gen(function* () {
      const mounts = Layer.mergeAll(
        DocSync.mount({ prefix: "/a", storage: DocSync.Storage.layerSqlClient({ tablePrefix: "a_" }), authorizer: open }),
        DocSync.mount({ prefix: "/b", storage: DocSync.Storage.layerSqlClient({ tablePrefix: "b_" }), authorizer: open })
      )
      const database = yield* Layer.build(SqliteClient.layer({ filename: ":memory:" }))
      const url = yield* serve(mounts).pipe(Effect.provide(database))
      yield* create(`${url}/a`, "one")
      yield* create(`${url}/a`, "two")
      yield* create(`${url}/b`, "three")
      const count = (table: string) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ readonly n: number }>`SELECT count(*) AS n FROM ${sql(table)}`).pipe(
          Effect.map((rows) => rows[0]?.n),
          Effect.provide(database)
        )
      assert.strictEqual(yield* count("a_documents"), 2)
      assert.strictEqual(yield* count("b_documents"), 1)
      assert.deepStrictEqual(yield* titles(`${url}/b`), ["three"])
    }))
})

describe("routes under a prefix", () => {
  it.scoped("docsync's limits and JSON errors apply to its own routes only; OpenAPI names the prefix", () =>
    Effect.gen(function* () {
      const host = HttpLayerRouter.add("POST", "/echo", (req) =>
        Effect.map(req.text, (text) => HttpServerResponse.text(`${text.length}`)).pipe(Effect.orDie))
      const url = yield* serve(Layer.mergeAll(
        host,
        DocSync.mount({
          prefix: "/collab/v2",
          storage: DocSync.Storage.layerMemory,
          authorizer: open,
          config: DocSync.Config.layer({ maxMessageBytes: 1024 })
        })
      ))
      const big = "x".repeat(4096)
      assert.strictEqual((yield* request("POST", `${url}/collab/v2/api/v1/documents`, { title: big })).status, 413)
      const echoed = yield* request("POST", `${url}/echo`, big)
      assert.strictEqual(echoed.text, "4096", "the host's route has no docsync body limit")
      const missing = yield* request("GET", `${url}/nowhere`)
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.text, "", "the host's 404 is the host's, not docsync's JSON")
      const spec = yield* request("GET", `${url}/collab/v2/api/v1/openapi.json`)
      assert.deepStrictEqual((spec.body as { servers: unknown }).servers, [{ url: "/collab/v2" }])
      assert.strictEqual((yield* request("GET", `${url}/collab/v2/api/v1/health`)).status, 200)
    }))

  it.scoped("routes() at the root, with services the host provides itself", () =>
    Effect.gen(function* () {
      const services = Layer.mergeAll(DocSync.DocumentRegistry.layer, Layer.succeed(DocSync.Authorizer.Authorizer, open)).pipe(
        Layer.provideMerge(DocSync.Storage.layerMemory),
        Layer.provideMerge(DocSync.Config.layer())
      )
      const url = yield* serve(DocSync.routes().pipe(Layer.provide(services)))
      const id = yield* create(url, "root")
      const client = yield* connect(url, id)
      assert.strictEqual((yield* client.take("state")).version, 0)
    }))

  it("rejects a prefix that is not a path", () => {
    for (const prefix of ["collab", "/collab/", "/a b", "/:id"]) {
      assert.throws(() => DocSync.routes({ prefix }), /invalid route prefix/)
    }
  })
})

describe("the standalone layer", () => {
  it.scoped("serves every route from plain settings, storage chosen by databaseUrl", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(DocSync.layer({ config: { port: 0, databaseUrl: "memory://" } })).pipe(
        Logger.withMinimumLogLevel(LogLevel.None)
      )
      const url = baseUrl(Context.get(context, HttpServer.HttpServer))
      assert.strictEqual((yield* request("GET", `${url}/api/v1/health`)).status, 200)
      yield* create(url, "standalone")
      assert.deepStrictEqual(yield* titles(url), ["standalone"])
    }))

  it.scoped("takes a storage Layer and an authorizer policy", () =>
    Effect.gen(function* () {
      const nobody = DocSync.Authorizer.make({
        authenticate: () => Effect.fail(new DocSync.Unauthorized({ message: "nobody gets in" }))
      })
      const context = yield* Layer.build(
        DocSync.layer({ config: { port: 0 }, storage: DocSync.Storage.layerMemory, authorizer: nobody })
      ).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      const url = baseUrl(Context.get(context, HttpServer.HttpServer))
      assert.strictEqual((yield* request("GET", `${url}/api/v1/documents`)).status, 401)
    }))
})
