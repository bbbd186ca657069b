/**
 * A host application written against the packed docsync, as a user would: its own route, docsync mounted under
 * /collab with its own policy, then the client SDK talking to it. Exits 0 when everything answered as expected.
 */
import { HttpLayerRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import * as DocSync from "docsync"
import { DocSyncClient, RestClient } from "docsync/client"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { createServer } from "node:http"

const everyoneWrites = DocSync.Authorizer.make({
  authenticate: () => Effect.succeed({ subject: "anyone", role: "admin", documents: "all", expiresAt: Option.none() })
})

const Collab = DocSync.mount({
  prefix: "/collab",
  storage: DocSync.Storage.layerMemory,
  authorizer: everyoneWrites,
  config: DocSync.Config.layer({ presenceIdle: Duration.seconds(10) })
})
const Hello = HttpLayerRouter.add("GET", "/hello", HttpServerResponse.text("hello"))

const program = Effect.gen(function* () {
  const context = yield* Layer.build(
    HttpLayerRouter.serve(Layer.mergeAll(Hello, Collab), { disableLogger: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("no TCP address")
  const base = `http://127.0.0.1:${address.port}`

  const hello = yield* Effect.promise(() => fetch(`${base}/hello`).then((r) => r.text()))
  if (hello !== "hello") return yield* Effect.dieMessage(`host route answered ${hello}`)

  const collab = `${base}/collab`
  const document = yield* Effect.promise(() =>
    RestClient.run({ baseUrl: collab }, (client) => client.documents.create({ payload: { title: "packed" } }))
  )
  const client = new DocSyncClient({ url: collab, documentId: document.id })
  yield* Effect.promise(() => client.whenSynced())
  const acked = new Promise<number>((resolve) => client.once("ack", (ack) => resolve(ack.seq)))
  client.submit(new Uint8Array([1, 2, 3]))
  const seq = yield* Effect.promise(() => acked)
  client.close()
  const updates = yield* Effect.promise(() =>
    RestClient.run({ baseUrl: collab }, (api) =>
      api.documents.listUpdates({ path: { id: DocSync.DocumentId.make(document.id) }, urlParams: { after: 0, limit: 10 } }))
  )
  if (seq !== 1 || updates.version !== 1) return yield* Effect.dieMessage(`expected version 1, got ${updates.version}`)

  // Everything but the two entry points stays inside the package.
  const internal = yield* Effect.promise(() =>
    import("docsync/dist/Http/Server.js" as string).then(() => "importable", (error: { code?: string }) => error.code)
  )
  if (internal !== "ERR_PACKAGE_PATH_NOT_EXPORTED") return yield* Effect.dieMessage(`internal module: ${internal}`)
  console.log(`check-pack: host served /hello and /collab; document ${document.id} at version ${updates.version}`)
}).pipe(Effect.scoped)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
