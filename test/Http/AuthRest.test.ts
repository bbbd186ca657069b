/**
 * Authentication and authorization of the REST API (protocol section 4) on a real server with AUTH_SECRET set:
 * every bad token on every endpoint (401), every role x document scope x endpoint (2xx / 403), health without a
 * token, the bearer scheme in the OpenAPI document, and a policy of the embedder's own plugged in.
 *
 * `scopedLive`: token expiry is checked against the server's Clock, which must be the wall clock that signed them.
 */
import { assert, describe, it } from "@effect/vitest"
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as Config from "../../src/Config.js"
import { Forbidden, Unauthorized } from "../../src/Domain/Errors.js"
import * as Authorizer from "../../src/Http/Authorizer.js"
import * as Server from "../../src/Http/Server.js"
import { layerMemory } from "../../src/Storage/DocumentStorage.js"
import { messageOf, type Reply, request } from "../support/TestServer.js"
import { badTokens, bearer, call, createDocument, join, refusal, type Role, startAuthServer, token } from "./AuthSupport.js"

const b64 = (text: string) => Buffer.from(text).toString("base64")

type Endpoint = "create" | "list" | "get" | "rename" | "listUpdates" | "submitUpdate" | "snapshot" | "delete"

/** Every documents endpoint, on document `id`, with the status it answers when the call is allowed. */
const endpoints = (id: string): ReadonlyArray<{
  readonly name: Endpoint
  readonly method: string
  readonly path: string
  readonly body?: unknown
  readonly allowed: number
}> => [
  { name: "create", method: "POST", path: "/documents", body: { title: "new" }, allowed: 201 },
  { name: "list", method: "GET", path: "/documents", allowed: 200 },
  { name: "get", method: "GET", path: `/documents/${id}`, allowed: 200 },
  { name: "rename", method: "PATCH", path: `/documents/${id}`, body: { title: "renamed" }, allowed: 200 },
  { name: "listUpdates", method: "GET", path: `/documents/${id}/updates`, allowed: 200 },
  {
    name: "submitUpdate",
    method: "POST",
    path: `/documents/${id}/updates`,
    body: { opId: `op-${Math.random()}`, actorId: "t", baseVersion: 0, deltaB64: b64("x") },
    allowed: 200
  },
  // No snapshot yet: an allowed call reaches the handler, which answers 404 SnapshotNotFound.
  { name: "snapshot", method: "GET", path: `/documents/${id}/snapshot`, allowed: 404 },
  // Last: it deletes the document.
  { name: "delete", method: "DELETE", path: `/documents/${id}`, allowed: 204 }
]

/** What each role may call (protocol section 4), on the documents its token names. */
const grants: Record<Role, ReadonlyArray<Endpoint>> = {
  read: ["get", "listUpdates", "snapshot"],
  write: ["get", "listUpdates", "snapshot", "submitUpdate"],
  admin: ["create", "list", "get", "rename", "listUpdates", "submitUpdate", "snapshot", "delete"]
}

const isCollection = (name: Endpoint) => name === "create" || name === "list"

describe("REST authentication", () => {
  it.scopedLive("every bad token, on every documents endpoint, gets 401 with a message and a Bearer challenge", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      for (const [name, jwt] of yield* badTokens) {
        for (const endpoint of endpoints(id)) {
          const reply = yield* call(endpoint.method, `${base}/api/v1${endpoint.path}`, jwt, endpoint.body)
          assert.strictEqual(reply.status, 401, `${name}: ${endpoint.method} ${endpoint.path} ${reply.text}`)
          assert.include(reply.contentType, "application/json")
          assert.deepInclude(reply.body, { _tag: "Unauthorized" })
          assert.isAbove(messageOf(reply).length, 0)
          if (jwt !== undefined && jwt.length > 0) assert.notInclude(reply.text, jwt)
        }
      }
      // The document is untouched by all of that.
      const admin = yield* token("admin", ["*"])
      const after = yield* call("GET", `${base}/api/v1/documents/${id}/updates`, admin)
      assert.deepStrictEqual(after.body, { version: 0, updates: [] })
      const listed = yield* call("GET", `${base}/api/v1/documents`, admin)
      assert.strictEqual((listed.body as { items: ReadonlyArray<unknown> }).items.length, 1)
    }))

  it.scopedLive("the 401 carries WWW-Authenticate: Bearer; a Basic header is no bearer token", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const response = yield* Effect.promise(() => fetch(`${base}/api/v1/documents`))
      assert.strictEqual(response.status, 401)
      assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer/)
      const basic = yield* request("GET", `${base}/api/v1/documents`, undefined, { authorization: "Basic dXNlcjpwYXNz" })
      assert.strictEqual(basic.status, 401)
    }))

  it.scopedLive("health needs no token, and ignores a bad one", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      assert.strictEqual((yield* request("GET", `${base}/api/v1/health`)).status, 200)
      assert.strictEqual((yield* call("GET", `${base}/api/v1/health`, "garbage")).status, 200)
    }))

  it.scopedLive("the OpenAPI document declares the bearer scheme on the documents endpoints, not on health", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const reply = yield* request("GET", `${base}/api/v1/openapi.json`)
      assert.strictEqual(reply.status, 200)
      const spec = reply.body as {
        components: { securitySchemes: Record<string, { type: string; scheme?: string }> }
        paths: Record<string, Record<string, { security?: ReadonlyArray<unknown>; responses: Record<string, unknown> }>>
      }
      assert.deepInclude(spec.components.securitySchemes["bearer"], { type: "http", scheme: "bearer" })
      const get = spec.paths["/api/v1/documents/{id}"]?.["get"]
      assert.deepStrictEqual(get?.security, [{ bearer: [] }])
      assert.includeMembers(Object.keys(get?.responses ?? {}), ["401", "403"])
      assert.deepStrictEqual(spec.paths["/api/v1/health"]?.["get"]?.security ?? [], [])
    }))
})

describe("REST authorization", () => {
  it.scopedLive("every role x document scope x endpoint: allowed calls succeed, the others get 403 and change nothing", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const admin = yield* token("admin", ["*"])
      for (const role of ["read", "write", "admin"] as const) {
        for (const scope of ["granted", "star", "other", "none"] as const) {
          const id = yield* createDocument(base, `${role}-${scope}`)
          const other = yield* createDocument(base, "other")
          const docs = scope === "granted" ? [id] : scope === "star" ? ["*"] : scope === "other" ? [other] : []
          const jwt = yield* token(role, docs)
          for (const endpoint of endpoints(id)) {
            const reply = yield* call(endpoint.method, `${base}/api/v1${endpoint.path}`, jwt, endpoint.body)
            const documentGranted = scope === "granted" || scope === "star" || isCollection(endpoint.name)
            const expected = grants[role].includes(endpoint.name) && documentGranted ? endpoint.allowed : 403
            const label = `${role} on ${scope}: ${endpoint.method} ${endpoint.path}`
            assert.strictEqual(reply.status, expected, `${label} ${reply.text}`)
            if (expected === 403) {
              assert.deepInclude(reply.body, { _tag: "Forbidden" }, label)
              assert.isAbove(messageOf(reply).length, 0)
            }
          }
          // A refused update stored nothing; a refused delete or rename did not happen.
          const doc = yield* call("GET", `${base}/api/v1/documents/${id}?include_deleted=true`, admin)
          const wrote = grants[role].includes("submitUpdate") && scope !== "other" && scope !== "none"
          assert.strictEqual((doc.body as { version: number }).version, wrote ? 1 : 0, `${role} on ${scope}`)
          const deleted = role === "admin" && scope !== "other" && scope !== "none"
          assert.strictEqual((doc.body as { deletedAt: string | null }).deletedAt !== null, deleted, `${role} on ${scope}`)
        }
      }
    }))

  it.scopedLive("a caller without the document learns nothing about it: 403 for unknown ids too; with it, 404", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const scoped = yield* token("admin", [id])
      assert.strictEqual((yield* call("GET", `${base}/api/v1/documents/no-such-doc`, scoped)).status, 403)
      const star = yield* token("read", ["*"])
      assert.strictEqual((yield* call("GET", `${base}/api/v1/documents/no-such-doc`, star)).status, 404)
    }))

  it.scopedLive("a 403 comes before the delta is decoded: a forbidden caller does not learn it was bad", () =>
    Effect.gen(function* () {
      const base = yield* startAuthServer()
      const id = yield* createDocument(base)
      const reader = yield* token("read", [id])
      const reply = yield* call("POST", `${base}/api/v1/documents/${id}/updates`, reader, { opId: "o", actorId: "a", baseVersion: 0, deltaB64: "!!" })
      assert.strictEqual(reply.status, 403)
    }))
})

describe("an embedder's own Authorizer", () => {
  it.scopedLive("a cookie session policy plugged into Server.layerWithAuthorizer governs REST and WebSocket", () =>
    Effect.gen(function* () {
      // Sessions of the host application; docsync only sees the Authorizer.
      const sessions = new Map([
        ["s-alice", { user: "alice", role: "admin" as const }],
        ["s-bob", { user: "bob", role: "write" as const }]
      ])
      const policy = Layer.succeed(
        Authorizer.Authorizer,
        Authorizer.make({
          authenticate: ({ headers }) => {
            const session = /(?:^|;\s*)session=([^;]+)/.exec(headers["cookie"] ?? "")?.[1]
            const found = session === undefined ? undefined : sessions.get(session)
            return found === undefined
              ? Effect.fail(new Unauthorized({ message: "not signed in" }))
              : Effect.succeed({ subject: found.user, role: found.role, documents: "all", expiresAt: Option.none() })
          },
          // The host's own rule on top of the roles: only alice deletes.
          authorize: (principal, action, documentId) =>
            action === "delete" && principal.subject !== "alice"
              ? Effect.fail(new Forbidden({ message: "only alice deletes" }))
              : Authorizer.authorizeByRole(principal, action, documentId)
        })
      )
      const context = yield* Layer.build(
        Server.layerWithAuthorizer.pipe(
          Layer.provide(policy),
          Layer.provide(layerMemory),
          Layer.provide(Config.layer({ port: 0, host: "127.0.0.1", databaseUrl: "memory://" }))
        )
      ).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      const base = Server.baseUrl(Context.get(context, HttpServer.HttpServer))
      const as = (session: string) => ({ cookie: `session=${session}` })
      const cookieCall = (method: string, path: string, session: string, body?: unknown): Effect.Effect<Reply> =>
        request(method, `${base}/api/v1${path}`, body, as(session))

      assert.strictEqual((yield* request("GET", `${base}/api/v1/documents`)).status, 401)
      const created = yield* cookieCall("POST", "/documents", "s-alice", { title: "host doc" })
      assert.strictEqual(created.status, 201)
      const id = (created.body as { id: string }).id
      assert.strictEqual((yield* cookieCall("POST", "/documents", "s-bob", { title: "no" })).status, 403)
      assert.strictEqual((yield* cookieCall("GET", `/documents/${id}`, "s-bob")).status, 200)
      const bobDelete = yield* cookieCall("DELETE", `/documents/${id}`, "s-bob")
      assert.strictEqual(bobDelete.status, 403)
      assert.strictEqual(messageOf(bobDelete), "only alice deletes")
      // A bearer header means nothing to this policy.
      assert.strictEqual((yield* request("GET", `${base}/api/v1/documents/${id}`, undefined, bearer("x"))).status, 401)

      // The WebSocket route asks the same Authorizer (here through the cookie header of the upgrade).
      assert.strictEqual(refusal(yield* join(base, id)), 4401)
      const joined = yield* join(base, id, { headers: as("s-bob") })
      assert.strictEqual(joined._tag === "Frame" ? joined.frame.type : joined.code, "state")
      assert.strictEqual((yield* cookieCall("DELETE", `/documents/${id}`, "s-alice")).status, 204)
    }))
})
