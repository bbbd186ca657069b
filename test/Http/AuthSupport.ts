/**
 * Helpers of the Auth* suites: tokens (good, expired, forged, malformed), a server with authentication on, and a
 * raw WebSocket join that reports how the server answered (first frame or close code), with headers.
 */
import { Effect, Option, Redacted, type Scope } from "effect"
import { SignJWT } from "jose"
import WebSocket from "ws"
import { request, type Reply, type StartOptions, startServer } from "../support/TestServer.js"

export const SECRET = "test-secret-0123456789-abcdefghijklmnop"
export const OTHER_SECRET = "another-secret-0123456789-abcdefghijkl"

export type Role = "read" | "write" | "admin"

export interface TokenOptions {
  readonly sub?: string
  /** Seconds since the epoch; default: an hour from now. Null: no `exp` claim. */
  readonly exp?: number | null
  readonly secret?: string
  readonly alg?: "HS256" | "HS512"
}

/** A JWT with these claims (anything may be overridden, to make bad tokens too). */
export const sign = (claims: Record<string, unknown>, options: TokenOptions = {}): Effect.Effect<string> =>
  Effect.promise(() => {
    let jwt = new SignJWT({ sub: options.sub ?? "user-1", ...claims }).setProtectedHeader({ alg: options.alg ?? "HS256" })
    if (options.exp !== null) jwt = jwt.setExpirationTime(options.exp ?? nowSeconds() + 3600)
    return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET))
  })

/** A token granting `role` on `docs`. */
export const token = (role: Role, docs: ReadonlyArray<string>, options: TokenOptions = {}): Effect.Effect<string> =>
  sign({ role, docs }, options)

export const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** An unsigned token (`alg: none`), which must never be accepted. */
export const unsignedToken = (claims: Record<string, unknown>): string => {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
  return `${part({ alg: "none", typ: "JWT" })}.${part({ exp: nowSeconds() + 3600, ...claims })}.`
}

/**
 * Every token that must be refused with 401 / 4401, by name: missing, malformed, expired, forged, no `exp`, and
 * signed right but with claims that do not make a principal.
 */
export const badTokens: Effect.Effect<ReadonlyArray<readonly [string, string | undefined]>> = Effect.gen(function* () {
  return [
    ["missing", undefined],
    ["empty", ""],
    ["malformed", "not-a-jwt"],
    ["three garbage parts", "abc.def.ghi"],
    ["expired", yield* token("admin", ["*"], { exp: nowSeconds() - 60 })],
    ["wrong secret", yield* token("admin", ["*"], { secret: OTHER_SECRET })],
    ["no exp", yield* token("admin", ["*"], { exp: null })],
    ["alg none", unsignedToken({ sub: "u", role: "admin", docs: ["*"] })],
    ["HS512", yield* token("admin", ["*"], { alg: "HS512" })],
    ["unknown role", yield* sign({ role: "owner", docs: ["*"] })],
    ["no role", yield* sign({ docs: ["*"] })],
    ["docs not an array", yield* sign({ role: "admin", docs: "*" })],
    ["no docs", yield* sign({ role: "admin" })],
    ["empty sub", yield* sign({ role: "admin", docs: ["*"] }, { sub: "" })]
  ] as const
})

/** The real server with AUTH_SECRET set. */
export const startAuthServer = (options: StartOptions<never> = {}) =>
  startServer({ ...options, config: { authSecret: Option.some(Redacted.make(SECRET)), ...options.config } })

export const bearer = (jwt: string | undefined): Record<string, string> =>
  jwt === undefined ? {} : { authorization: `Bearer ${jwt}` }

/** A REST call with a bearer token. */
export const call = (method: string, url: string, jwt: string | undefined, body?: unknown): Effect.Effect<Reply> =>
  request(method, url, body, bearer(jwt))

/** Creates a document with an admin token; returns its id. */
export const createDocument = (base: string, title = "doc"): Effect.Effect<string> =>
  Effect.gen(function* () {
    const reply = yield* call("POST", `${base}/api/v1/documents`, yield* token("admin", ["*"]), { title })
    if (reply.status !== 201) return yield* Effect.dieMessage(`create failed: ${reply.status} ${reply.text}`)
    return (reply.body as { id: string }).id
  })

/** How the server answered a join: its first frame, or the close code when it closed first. */
export type JoinResult =
  | { readonly _tag: "Frame"; readonly frame: { readonly type: string } & Record<string, unknown> }
  | { readonly _tag: "Closed"; readonly code: number; readonly reason: string }

/** Joins with raw `ws` (so that headers can be set) and reports the first thing the server did. */
export const join = (
  base: string,
  documentId: string,
  options: { readonly query?: Record<string, string>; readonly headers?: Record<string, string> } = {}
): Effect.Effect<JoinResult, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const search = new URLSearchParams(options.query ?? {})
      const url = `${base.replace(/^http/, "ws")}/ws/documents/${encodeURIComponent(documentId)}${search.size > 0 ? `?${search}` : ""}`
      return new WebSocket(url, { headers: options.headers ?? {} })
    }),
    (ws) => Effect.sync(() => ws.terminate())
  ).pipe(
    Effect.flatMap((ws) =>
      Effect.async<JoinResult>((resume) => {
        ws.on("error", () => {})
        ws.once("message", (data) =>
          resume(Effect.succeed({ _tag: "Frame", frame: JSON.parse(data.toString()) as { type: string } & Record<string, unknown> })))
        ws.once("close", (code, reason) => resume(Effect.succeed({ _tag: "Closed", code, reason: reason.toString() })))
      })
    )
  )

/** The close code of a join the server must refuse (fails the test when a frame comes instead). */
export const refusal = (result: JoinResult): number => {
  if (result._tag === "Closed") return result.code
  throw new Error(`expected the join to be refused, got ${JSON.stringify(result.frame)}`)
}
