/**
 * The Authorizer service on its own: the JWT policy (expiry on TestClock), the role policy, the open policy,
 * the choice made from the config, and how a WebSocket join's credentials are read.
 */
import { assert, describe, it } from "@effect/vitest"
import { HttpServerRequest } from "@effect/platform"
import { Effect, Exit, Layer, Option, Redacted, TestClock } from "effect"
import { SignJWT } from "jose"
import * as Config from "../../src/Config.js"
import type { DocumentId } from "../../src/Domain/Document.js"
import {
  type Action,
  Authorizer,
  authorizeByRole,
  type Credentials,
  layerFromConfig,
  makeJwt,
  open,
  type Principal,
  type Role,
  socketCredentials
} from "../../src/Http/Authorizer.js"
import { badTokens, SECRET } from "./AuthSupport.js"

const jwt = makeJwt(Redacted.make(SECRET))

const credentials = (token: string | undefined): Credentials => ({
  token: token === undefined ? Option.none() : Option.some(Redacted.make(token)),
  headers: HttpServerRequest.fromWeb(new Request("http://localhost/")).headers
})

/** A token whose `exp` is in seconds on the TestClock's timeline (which starts at the epoch). */
const signAt = (claims: Record<string, unknown>, exp: number) =>
  Effect.promise(() =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setExpirationTime(exp).sign(new TextEncoder().encode(SECRET))
  )

const principal = (role: Role, documents: Principal["documents"]): Principal => ({
  subject: "u",
  role,
  documents,
  expiresAt: Option.none()
})

const A = "doc-a" as DocumentId
const B = "doc-b" as DocumentId

describe("Authorizer.makeJwt", () => {
  it.effect("a valid token becomes a principal with its role, its documents and its expiry", () =>
    Effect.gen(function* () {
      const token = yield* signAt({ sub: "alice", role: "write", docs: [A, B] }, 100)
      const alice = yield* jwt.authenticate(credentials(token))
      assert.strictEqual(alice.subject, "alice")
      assert.strictEqual(alice.role, "write")
      assert.deepStrictEqual(alice.documents, new Set([A, B]))
      assert.deepStrictEqual(alice.expiresAt, Option.some(100_000))
      const star = yield* jwt.authenticate(credentials(yield* signAt({ sub: "root", role: "admin", docs: ["*"] }, 100)))
      assert.strictEqual(star.documents, "all")
    }))

  it.effect("expiry follows the Clock: valid before exp, `token expired` from exp on", () =>
    Effect.gen(function* () {
      const token = yield* signAt({ sub: "alice", role: "read", docs: ["*"] }, 60)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(jwt.authenticate(credentials(token)))))
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(jwt.authenticate(credentials(token)))))
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(jwt.authenticate(credentials(token)))
      assert.strictEqual(error._tag, "Unauthorized")
      assert.strictEqual(error.message, "token expired")
    }))

  // Live clock: these tokens are made against the wall clock.
  it.live("every bad token is Unauthorized with a message that does not repeat the token", () =>
    Effect.gen(function* () {
      for (const [name, token] of yield* badTokens) {
        const error = yield* Effect.flip(jwt.authenticate(credentials(token)))
        assert.strictEqual(error._tag, "Unauthorized", name)
        assert.isAbove(error.message.length, 0, name)
        if (token !== undefined && token.length > 0) assert.notInclude(error.message, token, name)
      }
    }))

  it.live("names what is wrong: missing, expired, bad signature, alg, claims", () =>
    Effect.gen(function* () {
      const messages = new Map<string, string>()
      for (const [name, token] of yield* badTokens) {
        messages.set(name, (yield* Effect.flip(jwt.authenticate(credentials(token)))).message)
      }
      assert.include(messages.get("missing"), "missing token")
      assert.include(messages.get("empty"), "missing token")
      assert.strictEqual(messages.get("expired"), "token expired")
      assert.include(messages.get("wrong secret"), "bad signature")
      assert.include(messages.get("HS512"), "HS256")
      assert.include(messages.get("no exp"), "exp")
      assert.include(messages.get("unknown role"), "role")
      assert.include(messages.get("no docs"), "docs")
      assert.include(messages.get("malformed"), "not a well-formed JWT")
    }))
})

describe("Authorizer.authorizeByRole", () => {
  const allowed = (who: Principal, action: Action, documentId?: DocumentId) =>
    Effect.map(Effect.exit(authorizeByRole(who, action, documentId)), Exit.isSuccess)

  it.effect("each role includes the ones below it; create, list, rename and delete need admin", () =>
    Effect.gen(function* () {
      const expected: Record<Role, ReadonlyArray<Action>> = {
        read: ["read"],
        write: ["read", "write"],
        admin: ["read", "write", "create", "list", "rename", "delete"]
      }
      const actions: ReadonlyArray<Action> = ["read", "write", "create", "list", "rename", "delete"]
      for (const role of ["read", "write", "admin"] as const) {
        for (const action of actions) {
          const documentId = action === "create" || action === "list" ? undefined : A
          assert.strictEqual(
            yield* allowed(principal(role, "all"), action, documentId),
            expected[role].includes(action),
            `${role} ${action}`
          )
        }
      }
    }))

  it.effect("docs scope every action on a document, for every role, admin included", () =>
    Effect.gen(function* () {
      for (const role of ["read", "write", "admin"] as const) {
        const scoped = principal(role, new Set([A]))
        assert.isTrue(yield* allowed(scoped, "read", A), role)
        assert.isFalse(yield* allowed(scoped, "read", B), role)
        assert.isFalse(yield* allowed(principal(role, new Set()), "read", A), role)
      }
      const admin = principal("admin", new Set([A]))
      assert.isTrue(yield* allowed(admin, "delete", A))
      assert.isFalse(yield* allowed(admin, "delete", B))
      assert.isTrue(yield* allowed(admin, "create"))
      assert.isTrue(yield* allowed(admin, "list"))
    }))

  it.effect("a refusal says why", () =>
    Effect.gen(function* () {
      const role = yield* Effect.flip(authorizeByRole(principal("read", "all"), "write", A))
      assert.strictEqual(role._tag, "Forbidden")
      assert.include(role.message, "write role")
      const scope = yield* Effect.flip(authorizeByRole(principal("write", new Set([A])), "write", B))
      assert.include(scope.message, `document ${B}`)
    }))
})

describe("Authorizer.open and layerFromConfig", () => {
  it.effect("open: no credentials needed, everything allowed", () =>
    Effect.gen(function* () {
      const anyone = yield* open.authenticate(credentials(undefined))
      assert.strictEqual(anyone.role, "admin")
      yield* open.authorize(anyone, "delete", A)
      yield* open.authorize(principal("read", new Set()), "write", B)
    }))

  it.effect("layerFromConfig: open without authSecret, JWT with it", () =>
    Effect.gen(function* () {
      const unset = yield* Effect.provide(Authorizer, layerFromConfig.pipe(Layer.provide(Config.layer())))
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(unset.authenticate(credentials(undefined)))))
      const set = yield* Effect.provide(
        Authorizer,
        layerFromConfig.pipe(Layer.provide(Config.layer({ authSecret: Option.some(Redacted.make(SECRET)) })))
      )
      assert.isTrue(Exit.isFailure(yield* Effect.exit(set.authenticate(credentials(undefined)))))
    }))
})

describe("Authorizer.socketCredentials", () => {
  const requestOf = (url: string, headers: Record<string, string> = {}) =>
    HttpServerRequest.fromWeb(new Request(`http://localhost${url}`, { headers }))
  const tokenOf = (c: Credentials) => Option.getOrUndefined(Option.map(c.token, Redacted.value))

  it("reads the token query parameter, else the bearer header; the query parameter wins", () => {
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x?token=q"))), "q")
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x", { authorization: "Bearer h" }))), "h")
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x", { authorization: "bearer h" }))), "h")
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x?token=q", { authorization: "Bearer h" }))), "q")
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x", { authorization: "Basic dTpw" }))), undefined)
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x?token="))), undefined)
    assert.strictEqual(tokenOf(socketCredentials(requestOf("/ws/documents/x"))), undefined)
  })

  it("keeps the token redacted and passes every header on (for cookie policies)", () => {
    const c = socketCredentials(requestOf("/ws/documents/x?token=secret-value", { cookie: "session=abc" }))
    assert.notInclude(String(c.token), "secret-value")
    assert.strictEqual(c.headers["cookie"], "session=abc")
  })
})
