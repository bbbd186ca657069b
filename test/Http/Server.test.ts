import { assert, describe, it } from "@effect/vitest"
import { HttpLayerRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, LogLevel, Option, Redacted, Scope } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { createServer, request as httpRequest } from "node:http"
import { join } from "node:path"
import * as Config from "../../src/Config.js"
import * as Middleware from "../../src/Http/Middleware.js"
import * as Server from "../../src/Http/Server.js"
import { DocumentStorage, makeMemory } from "../../src/Storage/DocumentStorage.js"
import { capture, messageOf, request, startServer } from "../support/TestServer.js"

describe("HTTP server", () => {
  it("the server imports @effect/platform module by module, never its index (which loads the Scalar docs UI, ~13 MB of heap)", () => {
    const src = join(import.meta.dirname, "..", "..", "src")
    const files = readdirSync(src, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"))
    assert.isAbove(files.length, 20)
    const barrel = files.filter((file) => /from "@effect\/platform"/.test(readFileSync(join(src, file), "utf8")))
    assert.deepStrictEqual(barrel, [])
  })

  it.scoped("serves the OpenAPI document with every path", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const reply = yield* request("GET", `${base}/api/v1/openapi.json`)
      assert.strictEqual(reply.status, 200)
      assert.include(reply.contentType, "application/json")
      const spec = reply.body as { openapi: string; info: { title: string }; paths: Record<string, Record<string, unknown>> }
      assert.strictEqual(spec.info.title, "docsync")
      assert.includeMembers(Object.keys(spec.paths), ["/api/v1/health", "/api/v1/documents", "/api/v1/documents/{id}"])
      assert.includeMembers(Object.keys(spec.paths["/api/v1/documents/{id}"] ?? {}), ["get", "patch", "delete"])
      assert.includeMembers(Object.keys(spec.paths["/api/v1/documents"] ?? {}), ["get", "post"])
      // Title keeps its length limits in the schema (Schema.Trim alone would lose them).
      assert.include(reply.text, "\"maxLength\":256")
    }))

  it.scoped("serves Swagger UI at /docs", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const reply = yield* request("GET", `${base}/docs`)
      assert.strictEqual(reply.status, 200)
      assert.include(reply.contentType, "text/html")
      assert.include(reply.text, "swagger-ui")
    }))

  it.scoped("unknown routes and methods answer 404 with a JSON message", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      for (const [method, path] of [["GET", "/nope"], ["GET", "/api/v1/nope?x=1"], ["PUT", "/api/v1/documents"]] as const) {
        const reply = yield* request(method, `${base}${path}`)
        assert.strictEqual(reply.status, 404, `${method} ${path}`)
        assert.include(reply.contentType, "application/json")
        assert.include(messageOf(reply), "no route")
      }
    }))

  it.scoped("bodies over maxMessageBytes answer 413 with a JSON message", () =>
    Effect.gen(function* () {
      const base = yield* startServer({ config: { maxMessageBytes: 1024 } })
      const big = JSON.stringify({ title: "x".repeat(2000) })
      const declared = yield* request("POST", `${base}/api/v1/documents`, big)
      assert.strictEqual(declared.status, 413)
      assert.include(messageOf(declared), "1024 bytes")

      // Without a Content-Length (chunked), the limit applies while reading.
      const chunked = yield* postChunked(`${base}/api/v1/documents`, [big.slice(0, 600), big.slice(600)])
      assert.strictEqual(chunked.status, 413)
      assert.include(messageOf(chunked), "1024 bytes")

      const small = yield* request("POST", `${base}/api/v1/documents`, { title: "fits" })
      assert.strictEqual(small.status, 201)
      const smallChunked = yield* postChunked(`${base}/api/v1/documents`, ["{\"title\":", " \"chunked\"}"])
      assert.strictEqual(smallChunked.status, 201, smallChunked.text)
      assert.deepInclude(smallChunked.body, { title: "chunked" })
      const badChunked = yield* postChunked(`${base}/api/v1/documents`, ["{\"title\":", "]"])
      assert.strictEqual(badChunked.status, 400, badChunked.text)
    }))

  it.scoped("logs one line per request, the start-up summary and the authentication warning", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const base = yield* startServer({
        config: { databaseUrl: "postgres://docsync:hunter2@db.internal:5432/docsync" },
        logLevel: LogLevel.Info
      }).pipe(Effect.provide(capture(lines)))
      yield* request("POST", `${base}/api/v1/documents`, { title: "logged" })
      yield* request("GET", `${base}/api/v1/documents?token=secret-token`)
      yield* request("GET", `${base}/api/v1/missing`)
      const all = lines.join("\n")
      assert.match(all, /^POST \/api\/v1\/documents 201 \d+ms/m)
      assert.match(all, /^GET \/api\/v1\/documents 200 \d+ms/m)
      assert.match(all, /^GET \/api\/v1\/missing 404 \d+ms/m)
      assert.include(all, `docsync listening on ${base}`)
      assert.include(all, "postgres://docsync:***@db.internal:5432/docsync")
      assert.include(all, "authentication is off")
      assert.notInclude(all, "hunter2")
      assert.notInclude(all, "secret-token")
    }))

  it.scoped("does not warn about authentication when AUTH_SECRET is set, nor log the secret", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      yield* startServer({
        config: { authSecret: Option.some(Redacted.make("s3cr3t-value")) },
        logLevel: LogLevel.Info
      }).pipe(Effect.provide(capture(lines)))
      const all = lines.join("\n")
      assert.include(all, "docsync listening on")
      assert.notInclude(all, "authentication is off")
      assert.notInclude(all, "s3cr3t-value")
    }))

  it.live("shutdown stops accepting, finishes in-flight requests, then releases storage", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const events: Array<string> = []
      // Memory storage whose create waits for `gate`, and which records when it is released.
      const storage = Layer.scoped(
        DocumentStorage,
        Effect.gen(function* () {
          yield* Effect.addFinalizer(() => Effect.sync(() => events.push("storage released")))
          const memory = yield* makeMemory
          return {
            ...memory,
            create: (title: string) =>
              Deferred.succeed(started, undefined).pipe(
                Effect.zipRight(Deferred.await(gate)),
                Effect.zipRight(memory.create(title)),
                Effect.tap(() => Effect.sync(() => events.push("stored")))
              )
          }
        })
      )
      const scope = yield* Scope.make()
      const base = yield* startServer({ storage }).pipe(Scope.extend(scope))

      const inFlight = yield* Effect.fork(request("POST", `${base}/api/v1/documents`, { title: "in flight" }))
      yield* Deferred.await(started)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))

      // New connections are refused once shutdown has begun.
      const refused = yield* Effect.either(
        Effect.tryPromise(() => fetch(`${base}/api/v1/health`, { headers: { connection: "close" } }))
      ).pipe(Effect.repeat({ until: (result) => result._tag === "Left", times: 200 }))
      assert.strictEqual(refused._tag, "Left")
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)), "shutdown did not wait for the in-flight request")
      assert.deepStrictEqual(events, [])

      yield* Deferred.succeed(gate, undefined)
      const reply = yield* Fiber.join(inFlight)
      assert.strictEqual(reply.status, 201, reply.text)
      yield* Fiber.join(closing)
      assert.deepStrictEqual(events, ["stored", "storage released"])
    }))
})


/** POST without Content-Length: Node sends the chunks with Transfer-Encoding: chunked. */
const postChunked = (url: string, chunks: ReadonlyArray<string>) =>
  Effect.async<{ status: number; body: unknown; text: string; contentType: string }>((resume) => {
    const req = httpRequest(url, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (text += chunk))
      res.on("end", () =>
        resume(
          Effect.succeed({
            status: res.statusCode ?? 0,
            contentType: String(res.headers["content-type"]),
            text,
            body: JSON.parse(text) as unknown
          })
        ))
    })
    req.on("error", (error) => resume(Effect.die(error)))
    for (const chunk of chunks) req.write(chunk)
    req.end()
  })

describe("Middleware", () => {
  /** A bare router with `routes` and the middleware, on a free port. */
  const serveWith = <E, R>(routes: Layer.Layer<never, E, R>) =>
    Effect.gen(function* () {
      const context = yield* Layer.build(
        HttpLayerRouter.serve(Layer.mergeAll(routes, Middleware.layer), { disableLogger: true, disableListenLog: true }).pipe(
          Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
          Layer.provide(Config.layer())
        )
      ).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      return Server.baseUrl(Context.get(context, HttpServer.HttpServer))
    })

  it.scoped("turns defects into 500 with a JSON message, and platform errors into their status with one", () =>
    Effect.gen(function* () {
      const base = yield* serveWith(
        Layer.mergeAll(
          HttpLayerRouter.add("GET", "/boom", Effect.die(new Error("secret detail"))),
          HttpLayerRouter.add("GET", "/upgrade", (request) => Effect.as(request.upgrade, HttpServerResponse.empty()))
        )
      )
      const boom = yield* request("GET", `${base}/boom`)
      assert.strictEqual(boom.status, 500)
      assert.strictEqual(messageOf(boom), "internal server error")
      assert.notInclude(boom.text, "secret detail")

      const upgrade = yield* request("GET", `${base}/upgrade`)
      assert.strictEqual(upgrade.status, 400)
      assert.include(messageOf(upgrade), "not an upgradeable")
    }))
})
