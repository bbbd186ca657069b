/**
 * The typed REST client, derived from the same `HttpApi` definition the server serves (`src/Http/Api.ts`):
 * every endpoint, its parameters, payloads, successes and errors come from there, so client and server cannot
 * drift apart.
 *
 * With Effect: `const client = yield* RestClient.make({ baseUrl })` (needs an `HttpClient`, e.g.
 * `FetchHttpClient.layer`), then `client.documents.create({ payload: { title } })`.
 * Without: `await RestClient.run({ baseUrl }, (client) => client.documents.list({ urlParams: {} }))`.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Cause, Effect, Exit } from "effect"
import { Api } from "../Http/Api.js"

export interface RestOptions {
  /** The server's base URL, `http(s)://host:port` (the client adds `/api/v1`). */
  readonly baseUrl: string
  /** JWT sent as `Authorization: Bearer` when the server has authentication on. */
  readonly token?: string
}

/** The derived client: `client.health.check()`, `client.documents.create({ payload })`, ... */
export const make = (options: RestOptions) =>
  HttpApiClient.make(Api, {
    baseUrl: options.baseUrl,
    transformClient: (client) => {
      const token = options.token
      return token === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.bearerToken(token))
    }
  })

export type RestClient = Effect.Effect.Success<ReturnType<typeof make>>

/**
 * Runs one or more calls with `fetch` and returns a Promise: it resolves with the result, or rejects with the
 * typed error the API declares (e.g. `DocumentNotFound`, with `_tag` and `message`), or the transport error.
 */
export const run = <A, E>(options: RestOptions, call: (client: RestClient) => Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromiseExit(Effect.flatMap(make(options), call).pipe(Effect.provide(FetchHttpClient.layer))).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  })
