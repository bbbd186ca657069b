/**
 * Authorizer: who is calling (`authenticate`) and what they may do (`authorize`), for the REST API and the
 * WebSocket route alike. It is a replaceable service: docsync ships the JWT policy of protocol section 4
 * (`layerJwt`), an open policy for when AUTH_SECRET is unset (`layerOpen`), and `layerFromConfig` choosing
 * between them. An embedding application plugs in its own policy by providing another `Authorizer` Layer:
 *
 * ```ts
 * // Session cookies instead of bearer tokens; the default role policy decides per document.
 * const SessionAuthorizer = Layer.effect(Authorizer, Effect.gen(function* () {
 *   const sessions = yield* Sessions
 *   return Authorizer.make({
 *     authenticate: ({ headers }) => sessions.fromCookie(headers["cookie"]).pipe(
 *       Effect.map((user) => ({ subject: user.id, role: user.role, documents: "all", expiresAt: Option.none() })),
 *       Effect.mapError(() => new Unauthorized({ message: "not signed in" }))
 *     )
 *   })
 * }))
 * ```
 *
 * REST: the `Authentication` middleware (bearer security, shown in the OpenAPI document) authenticates every
 * call of the `documents` group (401) and provides the `CurrentPrincipal`; each handler then asks `authorize`
 * for its action (403). WebSocket: `SyncSocket` authenticates the join (close 4401), authorizes `read` on the
 * document (close 4403), and asks once whether the connection may `write` (else `update`/`snapshot` get the
 * `forbidden` error frame).
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import type * as Headers from "@effect/platform/Headers"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as OpenApi from "@effect/platform/OpenApi"
import { Clock, Context, Effect, Layer, Option, ParseResult, Redacted, Schema } from "effect"
import { errors as JoseErrors, jwtVerify } from "jose"
import { ServerConfig } from "../Config.js"
import type { DocumentId } from "../Domain/Document.js"
import { Forbidden, Unauthorized } from "../Domain/Errors.js"

/** The roles of protocol section 4, each including the rights of the ones before it. */
export const Role = Schema.Literal("read", "write", "admin")
export type Role = typeof Role.Type

/**
 * What a caller wants to do. `read` and `write` are about one document; `create` and `list` about the collection;
 * `rename` and `delete` about one document's existence. The default policy maps each to the role it needs
 * (`requiredRole`); an embedder's policy may treat them separately (anyone may `create`, only owners `delete`).
 */
export type Action = "read" | "write" | "create" | "list" | "rename" | "delete"

/** Who is calling, as `authenticate` found out. */
export interface Principal {
  /** The user (the JWT `sub`). Appears in logs; must not be a secret. */
  readonly subject: string
  /** The highest role granted. */
  readonly role: Role
  /** The documents the role applies to: every document, or these ids (the JWT `docs` claim). */
  readonly documents: "all" | ReadonlySet<string>
  /**
   * When the credentials stop being valid (epoch milliseconds; the JWT `exp`). A WebSocket that is still open
   * then is closed with 4401, so that the client reconnects with fresh credentials. None: never.
   */
  readonly expiresAt: Option.Option<number>
}

/** What a request presents; a policy reads what it needs. */
export interface Credentials {
  /**
   * The bearer token: the `Authorization: Bearer <token>` header, or on a WebSocket join the `token` query
   * parameter (which wins when both are sent). None when neither is present or the token is empty.
   */
  readonly token: Option.Option<Redacted.Redacted<string>>
  /** Every header of the request (cookies included), for policies that do not use bearer tokens. */
  readonly headers: Headers.Headers
}

export interface AuthorizerShape {
  /**
   * Establishes who is calling. Fails with `Unauthorized` (REST 401, WebSocket close 4401) when the credentials
   * are missing, malformed, forged or expired. Called once per REST request and once per WebSocket join.
   */
  readonly authenticate: (credentials: Credentials) => Effect.Effect<Principal, Unauthorized>
  /**
   * Decides whether `principal` may perform `action`, on `documentId` when the action is about one document
   * (`read`, `write`, `rename`, `delete`); `create` and `list` come without one. Fails with `Forbidden` (REST
   * 403; WebSocket close 4403 for `read` at join, the `forbidden` error frame for `write`). A WebSocket asks
   * `read` and `write` once, at join.
   */
  readonly authorize: (principal: Principal, action: Action, documentId?: DocumentId) => Effect.Effect<void, Forbidden>
}

export class Authorizer extends Context.Tag("docsync/Authorizer")<Authorizer, AuthorizerShape>() {}

/** The principal of the current REST request, provided by the `Authentication` middleware. */
export class CurrentPrincipal extends Context.Tag("docsync/CurrentPrincipal")<CurrentPrincipal, Principal>() {}

/**
 * The REST security middleware of the `documents` group: a bearer token (shown in the OpenAPI document), checked
 * by the `Authorizer` in context. Fails with `Unauthorized` (401); on success handlers find `CurrentPrincipal`.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("docsync/Authentication", {
  failure: Unauthorized,
  provides: CurrentPrincipal,
  security: {
    bearer: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "A JWT signed HS256 with AUTH_SECRET: claims sub, role (read | write | admin), docs (ids or [\"*\"]), exp. " +
          "Not needed when the server runs without AUTH_SECRET."
      ),
      HttpApiSecurity.annotate(OpenApi.Format, "JWT")
    )
  }
}) {}

/** The role each action needs under the default policy. */
export const requiredRole: Record<Action, Role> = {
  read: "read",
  write: "write",
  create: "admin",
  list: "admin",
  rename: "admin",
  delete: "admin"
}

/**
 * The default policy (protocol section 4): the principal's role must include the action's `requiredRole`, and
 * an action on a document needs that document in the principal's `documents`, whatever the role (an admin
 * token scoped to some documents is admin of those only; `create` and `list` need the admin role alone).
 */
export const authorizeByRole = (principal: Principal, action: Action, documentId?: DocumentId): Effect.Effect<void, Forbidden> => {
  const needed = requiredRole[action]
  if (RANK[principal.role] < RANK[needed]) {
    return Effect.fail(new Forbidden({ message: `${action} needs the ${needed} role; this token grants ${principal.role}` }))
  }
  if (documentId !== undefined && principal.documents !== "all" && !principal.documents.has(documentId)) {
    return Effect.fail(new Forbidden({ message: `this token does not grant document ${documentId}` }))
  }
  return Effect.void
}

/** An Authorizer from an `authenticate` function; `authorize` defaults to `authorizeByRole`. */
export const make = (policy: {
  readonly authenticate: AuthorizerShape["authenticate"]
  readonly authorize?: AuthorizerShape["authorize"]
}): AuthorizerShape => ({ authenticate: policy.authenticate, authorize: policy.authorize ?? authorizeByRole })

/** Everyone is an admin of every document. For running without AUTH_SECRET (Server.ts warns at start). */
export const open: AuthorizerShape = {
  authenticate: () => Effect.succeed(ANONYMOUS),
  authorize: () => Effect.void
}

/**
 * The JWT policy of protocol section 4: an HS256 token signed with `secret`, `exp` required, claims `sub`,
 * `role` and `docs`; time comes from `Clock` (so `TestClock` drives expiry in tests).
 */
export const makeJwt = (secret: Redacted.Redacted<string>): AuthorizerShape => {
  const key = new TextEncoder().encode(Redacted.value(secret))
  return make({
    authenticate: ({ token }) =>
      Effect.gen(function* () {
        const jwt = Option.getOrElse(Option.map(token, Redacted.value), () => "").trim()
        if (jwt === "") {
          return yield* unauthorized("missing token: send Authorization: Bearer <jwt> (or ?token=<jwt> on a WebSocket)")
        }
        const now = yield* Clock.currentTimeMillis
        const payload = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(jwt, key, {
              algorithms: ["HS256"],
              requiredClaims: ["exp"],
              currentDate: new Date(now)
            }),
          catch: (error) => new Unauthorized({ message: rejection(error) })
        })
        const claims = yield* Schema.decodeUnknown(Claims)(payload.payload).pipe(
          Effect.mapError((error) =>
            new Unauthorized({ message: `invalid token claims: ${ParseResult.ArrayFormatter.formatErrorSync(error).map(formatIssue).join("; ")}` })
          )
        )
        return {
          subject: claims.sub,
          role: claims.role,
          documents: claims.docs.includes("*") ? "all" : new Set(claims.docs),
          expiresAt: Option.some(claims.exp * 1000)
        } satisfies Principal
      })
  })
}

/** The JWT policy with this secret. */
export const layerJwt = (secret: Redacted.Redacted<string>): Layer.Layer<Authorizer> =>
  Layer.succeed(Authorizer, makeJwt(secret))

/** The open policy: no authentication, everyone may do everything. */
export const layerOpen: Layer.Layer<Authorizer> = Layer.succeed(Authorizer, open)

/** JWT when `authSecret` is set, else open. */
export const layerFromConfig: Layer.Layer<Authorizer, never, ServerConfig> = Layer.effect(
  Authorizer,
  Effect.map(ServerConfig, (config) => Option.match(config.authSecret, { onNone: () => open, onSome: makeJwt }))
)

/** The `Authentication` middleware over the `Authorizer` in context. */
export const layerAuthentication: Layer.Layer<Authentication, never, Authorizer> = Layer.effect(
  Authentication,
  Effect.map(Authorizer, (authorizer) => ({
    bearer: (token: Redacted.Redacted<string>) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        authorizer.authenticate({ token: nonEmpty(token), headers: request.headers }))
  }))
)

/** The credentials of a WebSocket join: the `token` query parameter, else the bearer header. */
export const socketCredentials = (request: Pick<HttpServerRequest.HttpServerRequest, "url" | "headers">): Credentials => {
  const query = new URL(request.url, "http://localhost").searchParams.get("token")
  const header = request.headers["authorization"]
  const token = query ?? (header !== undefined && /^bearer /i.test(header) ? header.slice(7) : "")
  return { token: nonEmpty(Redacted.make(token)), headers: request.headers }
}

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

const RANK: Record<Role, number> = { read: 0, write: 1, admin: 2 }

const ANONYMOUS: Principal = { subject: "anonymous", role: "admin", documents: "all", expiresAt: Option.none() }

const Claims = Schema.Struct({
  sub: Schema.String.pipe(Schema.minLength(1)),
  role: Role,
  docs: Schema.Array(Schema.String),
  exp: Schema.Number
})

const unauthorized = (message: string) => Effect.fail(new Unauthorized({ message }))

const nonEmpty = (token: Redacted.Redacted<string>): Option.Option<Redacted.Redacted<string>> =>
  Redacted.value(token).trim() === "" ? Option.none() : Option.some(token)

// jose's messages name the failing check, never the token; keep them short for close reasons (123 bytes).
const rejection = (error: unknown): string => {
  if (error instanceof JoseErrors.JWTExpired) return "token expired"
  if (error instanceof JoseErrors.JWTClaimValidationFailed) return `invalid token: ${error.claim} claim check failed`
  if (error instanceof JoseErrors.JWSSignatureVerificationFailed) return "invalid token: bad signature"
  if (error instanceof JoseErrors.JOSEAlgNotAllowed) return "invalid token: only HS256 is accepted"
  return "invalid token: not a well-formed JWT"
}

const formatIssue = (issue: ParseResult.ArrayFormatterIssue): string =>
  issue.path.length === 0 ? issue.message : `${issue.path.map(String).join(".")}: ${issue.message}`
