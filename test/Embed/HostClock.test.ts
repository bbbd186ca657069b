/**
 * How a host team tests its application with docsync inside: `@effect/vitest`'s `it.effect` runs on a `TestClock`,
 * and docsync's timers (presence idleness, document unloading) follow it, through real sockets. Nothing sleeps.
 */
import { HttpLayerRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Logger, LogLevel, TestClock } from "effect"
import { createServer } from "node:http"
import * as DocSync from "../../src/index.js"
import { HeaderAuthorizer, makeApp } from "../../examples/embed/app.js"
import { request } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"

const ada = { "x-user": "ada", "x-role": "editor" }
const bob = { "x-user": "bob" }

const urlOf = (context: Context.Context<HttpServer.HttpServer>) => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "unreachable"
}

describe("our app's collaboration, on the test clock", () => {
  it.effect("a silent user shows as idle to the others after 30 seconds, not before", () =>
    Effect.gen(function* () {
      const app = yield* Layer.build(
        // Heartbeats are on the same clock; push them out of the way of this test.
        makeApp({ port: 0, filename: ":memory:", collab: { presenceIdle: Duration.seconds(30), heartbeatInterval: Duration.hours(1) } })
      )
      const collab = `${urlOf(app)}/collab`
      const created = yield* request("POST", `${collab}/api/v1/documents`, { title: "Standup" }, ada)
      const id = (created.body as { id: string }).id

      const adaSocket = yield* connect(collab, id, {}, ada)
      yield* adaSocket.take("state")
      const bobSocket = yield* connect(collab, id, {}, bob)
      yield* bobSocket.take("state")
      const bobJoined = yield* adaSocket.take("presence_join")

      yield* TestClock.adjust(Duration.seconds(29))
      yield* adaSocket.barrier // ada pings (so she stays active); every frame sent before has arrived
      assert.deepStrictEqual(adaSocket.of("presence_leave"), [])

      yield* TestClock.adjust(Duration.seconds(1))
      assert.deepStrictEqual(yield* adaSocket.take("presence_leave"), {
        type: "presence_leave",
        clientId: bobJoined.clientId,
        actorId: bobJoined.actorId,
        reason: "idle"
      })
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None)))

  it.effect("a document nobody uses is unloaded after documentIdle, and reloads from storage", () =>
    Effect.gen(function* () {
      // Composed from the parts, so that the test can look at the registry the routes use.
      const services = yield* Layer.build(
        Layer.mergeAll(DocSync.DocumentRegistry.layer, Layer.succeed(DocSync.Authorizer.Authorizer, HeaderAuthorizer)).pipe(
          Layer.provideMerge(DocSync.Storage.layerMemory),
          Layer.provideMerge(DocSync.Config.layer({ documentIdle: Duration.minutes(5) }))
        )
      )
      const registry = Context.get(services, DocSync.DocumentRegistry.DocumentRegistry)
      const server = yield* Layer.build(
        HttpLayerRouter.serve(DocSync.routes({ prefix: "/collab" }).pipe(Layer.provide(Layer.succeedContext(services)))).pipe(
          Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
        )
      )
      const collab = `${urlOf(server)}/collab`
      const created = yield* request("POST", `${collab}/api/v1/documents`, { title: "Quiet" }, ada)
      const id = DocSync.DocumentId.make((created.body as { id: string }).id)
      const update = { opId: "op-1", baseVersion: 0, actorId: "ada", deltaB64: "AQ==" }
      assert.strictEqual((yield* request("POST", `${collab}/api/v1/documents/${id}/updates`, update, ada)).status, 200)
      assert.deepStrictEqual(yield* registry.loaded, [id])

      yield* TestClock.adjust(Duration.minutes(5).pipe(Duration.subtract(Duration.millis(1))))
      assert.deepStrictEqual(yield* registry.loaded, [id])
      yield* TestClock.adjust(Duration.millis(1))
      assert.deepStrictEqual(yield* registry.loaded, [])

      const updates = yield* request("GET", `${collab}/api/v1/documents/${id}/updates`, undefined, bob)
      assert.strictEqual((updates.body as { version: number }).version, 1)
      assert.deepStrictEqual(yield* registry.loaded, [id])
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None)))
})
