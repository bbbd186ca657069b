/**
 * Test helpers: the real server on a free port, and a tiny fetch-based client.
 */
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel, type Scope } from "effect"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as Config from "../../src/Config.js"
import * as Server from "../../src/Http/Server.js"
import { type DocumentStorage, layerMemory } from "../../src/Storage/DocumentStorage.js"

export interface StartOptions<E> {
  /** Overrides of the test config (port 0, 127.0.0.1, memory://, defaults otherwise). */
  readonly config?: Partial<Config.ServerConfigShape>
  /** Storage under the server; a fresh `layerMemory` by default. */
  readonly storage?: Layer.Layer<DocumentStorage, E>
  /** Minimum log level while the server runs; None by default to keep test output readable. */
  readonly logLevel?: LogLevel.LogLevel
}

/**
 * Starts `Server.layer` on a free port for the current scope and returns its base URL (`http://127.0.0.1:port`).
 * Closing the scope shuts the server down the way SIGTERM does.
 */
export const startServer = <E = never>(options: StartOptions<E> = {}): Effect.Effect<string, ServeError | E, Scope.Scope> =>
  Layer.build(
    Server.layer.pipe(
      Layer.provide(options.storage ?? layerMemory),
      Layer.provide(Config.layer({ port: 0, host: "127.0.0.1", databaseUrl: "memory://", ...options.config }))
    )
  ).pipe(
    Effect.map((context) => Server.baseUrl(Context.get(context, HttpServer.HttpServer))),
    Logger.withMinimumLogLevel(options.logLevel ?? LogLevel.None)
  )

export interface Reply {
  readonly status: number
  readonly contentType: string
  /** The parsed JSON body, or the text when the body is not JSON (undefined when empty). */
  readonly body: unknown
  readonly text: string
}

/** One HTTP request with fetch; `body` is sent as JSON unless it is already a string. */
export const request = (
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {}
): Effect.Effect<Reply> =>
  Effect.promise(async () => {
    const init: RequestInit = { method, headers: { "content-type": "application/json", ...headers } }
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body)
    const response = await fetch(url, init)
    const text = await response.text()
    const contentType = response.headers.get("content-type") ?? ""
    return {
      status: response.status,
      contentType,
      text,
      body: text === "" ? undefined : contentType.includes("json") ? (JSON.parse(text) as unknown) : text
    }
  })

/** The `message` of a JSON error body, or fails the test with what came instead. */
export const messageOf = (reply: Reply): string => {
  const body = reply.body
  if (typeof body === "object" && body !== null && "message" in body && typeof body.message === "string") {
    return body.message
  }
  throw new Error(`expected a JSON body with a message, got ${reply.status} ${reply.contentType} ${reply.text}`)
}

/** A logger Layer that records each message as text, with its annotations as key=value. */
export const capture = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message, annotations }) => {
      const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
      const extra = [...annotations].map(([key, value]) => `${key}=${String(value)}`).join(" ")
      lines.push(extra === "" ? text : `${text} ${extra}`)
    })
  )

/**
 * The first captured line that starts with `prefix`, once it is logged: the server logs some things (a client
 * leaving) only after the client saw its side of them. Waits turn by turn, no fixed sleep; the test's timeout
 * bounds it.
 */
export const loggedLine = (lines: ReadonlyArray<string>, prefix: string): Effect.Effect<string> =>
  Effect.promise(async () => {
    for (;;) {
      const line = lines.find((candidate) => candidate.startsWith(prefix))
      if (line !== undefined) return line
      await new Promise((resolve) => setImmediate(resolve))
    }
  })
