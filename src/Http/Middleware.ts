/**
 * The router-wide HTTP middleware: body limit (413), JSON bodies with a `message` for every error the router and
 * the HTTP layer answer themselves (404, malformed JSON, defects), a one-line `message` for schema decode errors,
 * a `WWW-Authenticate: Bearer` challenge on 401s, and one log line per request (method, path without query,
 * status, duration). Query strings are never logged: a WebSocket join may carry its token there.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerRespondable from "@effect/platform/HttpServerRespondable"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpServerError from "@effect/platform/HttpServerError"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Clock, Effect, Option, Schema } from "effect"
import { ServerConfig } from "../Config.js"

/**
 * Applies to every route of the router it is merged with (a global `HttpLayerRouter.middleware`), including routes
 * added later such as the WebSocket route.
 */
export const layer = HttpLayerRouter.middleware(
  Effect.gen(function* () {
    const config = yield* ServerConfig
    const maxBody = Option.some(config.maxMessageBytes)
    return (app) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const started = yield* Clock.currentTimeMillis
        const run = (effect: typeof app) =>
          effect.pipe(
            HttpIncomingMessage.withMaxBodySize(maxBody),
            Effect.catchAllCause((cause) => errorResponse(cause, request, config.maxMessageBytes)),
            Effect.map(conciseDecodeError),
            Effect.map(bearerChallenge)
          )
        const response = yield* (declaredLength(request) > config.maxMessageBytes
          ? Effect.succeed(tooLarge(config.maxMessageBytes))
          : isMultipart(request)
          // No endpoint takes multipart, and the platform's parser throws (no boundary) or waits forever (no body)
          // on malformed ones: refuse them before it runs.
          ? jsonError(415, "UnsupportedMediaType", "multipart bodies are not accepted; this API takes application/json")
          : isChunked(request)
          ? Effect.flatMap(
            bufferBody(request, config.maxMessageBytes),
            Option.match({
              onNone: () => Effect.succeed(tooLarge(config.maxMessageBytes)),
              onSome: (buffered) => run(Effect.provideService(app, HttpServerRequest.HttpServerRequest, buffered))
            })
          )
          : run(app))
        const finished = yield* Clock.currentTimeMillis
        yield* Effect.log(`${request.method} ${pathOf(request.url)} ${response.status} ${finished - started}ms`)
        return response
      }).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
            Effect.log(`${request.method} ${pathOf(request.url)} interrupted (client gone or server stopping)`))
        )
      )
  }),
  { global: true }
)

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

/** A JSON answer for a failure nobody else turned into a response; interruptions (client gone) pass through. */
const errorResponse = (
  cause: Cause.Cause<unknown>,
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
  const error = Option.getOrElse(Cause.failureOption(cause), () => Option.getOrUndefined(Cause.dieOption(cause)))
  if (error instanceof HttpServerError.RouteNotFound) {
    return jsonError(404, "NotFound", `no route for ${request.method} ${pathOf(request.url)}`)
  }
  if (error instanceof HttpServerError.RequestError) {
    if (isBodyTooLarge(error)) return Effect.succeed(tooLarge(maxBytes))
    if (error.cause instanceof SyntaxError) {
      return jsonError(400, "BadRequest", `the request body is not valid JSON: ${error.cause.message}`)
    }
    return jsonError(400, "BadRequest", error.description ?? "the request could not be read")
  }
  // Other errors that know their status (platform errors a route let through): keep it, give the body a message.
  if (HttpServerRespondable.isRespondable(error)) {
    return Effect.flatMap(HttpServerRespondable.toResponse(error), (response) =>
      response.body._tag !== "Empty"
        ? Effect.succeed(response)
        : jsonError(response.status, tagOf(error), error instanceof Error ? error.message : "request failed"))
  }
  return Effect.logError("request failed", cause).pipe(
    Effect.zipRight(jsonError(500, "InternalError", "internal server error"))
  )
}

/**
 * `HttpApiDecodeError` carries a multi-line schema tree as its message; clients get one line per failing field
 * instead ("title: is missing"), with the structured `issues` kept as they are.
 */
const conciseDecodeError = (response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  if (response.status !== 400 || response.body._tag !== "Uint8Array") return response
  const decoded = decodeErrorBody(new TextDecoder().decode(response.body.body))
  if (decoded === undefined) return response
  const seen = new Set<string>()
  const lines: Array<string> = []
  for (const issue of decoded.issues) {
    const path = issue.path.map(String).join(".")
    if (seen.has(path)) continue
    seen.add(path)
    lines.push(path === "" ? issue.message : `${path}: ${issue.message}`)
  }
  return HttpServerResponse.unsafeJson(
    { ...decoded, message: lines.length === 0 ? decoded.message : lines.join("; ") },
    { status: 400, headers: response.headers }
  )
}

/** RFC 6750: a 401 names the scheme the client should authenticate with. */
const bearerChallenge = (response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse =>
  response.status === 401 && response.headers["www-authenticate"] === undefined
    ? HttpServerResponse.setHeader(response, "www-authenticate", "Bearer realm=\"docsync\"")
    : response

const DecodeErrorBody = Schema.parseJson(
  Schema.Struct({
    _tag: Schema.Literal("HttpApiDecodeError"),
    message: Schema.String,
    issues: Schema.Array(Schema.Struct({ path: Schema.Array(Schema.Unknown), message: Schema.String }))
  })
)
const decodeErrorBody = (text: string) =>
  Option.getOrUndefined(Schema.decodeUnknownOption(DecodeErrorBody, { onExcessProperty: "preserve" })(text))

const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : "Error"

const jsonError = (status: number, tag: string, message: string) =>
  Effect.succeed(HttpServerResponse.unsafeJson({ _tag: tag, message }, { status }))

// The rest of the body is never read: close the connection rather than read it to keep it alive.
const tooLarge = (maxBytes: number) =>
  HttpServerResponse.unsafeJson(
    { _tag: "PayloadTooLarge", message: `the request body is larger than ${maxBytes} bytes` },
    { status: 413, headers: { connection: "close" } }
  )

const declaredLength = (request: HttpServerRequest.HttpServerRequest): number =>
  Number(request.headers["content-length"] ?? "0")

const isChunked = (request: HttpServerRequest.HttpServerRequest): boolean =>
  request.headers["content-length"] === undefined && request.headers["transfer-encoding"] !== undefined

/**
 * A body without Content-Length (chunked), read here with the limit: over it, platform-node would destroy the
 * socket and the client would get no answer; here it gets a 413. Within it, the handlers get a request over the
 * buffered bytes.
 */
const bufferBody = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Option.Option<HttpServerRequest.HttpServerRequest>> =>
  Effect.async<Option.Option<Uint8Array<ArrayBuffer>>>((resume) => {
    const source = NodeHttpServerRequest.toIncomingMessage(request)
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) return void chunks.push(chunk)
      cleanup()
      source.pause()
      resume(Effect.succeed(Option.none()))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Option.some(new Uint8Array(Buffer.concat(chunks)))))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.die(error))
    }
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  }).pipe(
    Effect.map(Option.map((body) => {
      const headers = new Headers()
      for (const [name, value] of Object.entries(request.headers)) {
        if (!HOP_BY_HOP.has(name)) headers.set(name, value)
      }
      return HttpServerRequest.fromWeb(
        new Request(`http://localhost${request.url}`, { method: request.method, headers, body })
      )
    }))
  )

const HOP_BY_HOP = new Set(["connection", "content-length", "host", "keep-alive", "transfer-encoding", "expect"])

const isMultipart = (request: HttpServerRequest.HttpServerRequest): boolean =>
  (request.headers["content-type"] ?? "").trim().toLowerCase().startsWith("multipart/")

// platform-node reports a body over MaxBodySize as a RequestError caused by `Error("maxBytes exceeded")`.
const isBodyTooLarge = (error: HttpServerError.RequestError): boolean =>
  error.cause instanceof Error && error.cause.message.includes("maxBytes")

/** A URL without its query string (which may carry a token): what request logs show. */
export const pathOf = (url: string): string => url.split("?", 1)[0] ?? url
