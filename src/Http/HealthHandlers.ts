/**
 * `GET /health`: 200 when a trivial round trip to the database succeeds within `PING_TIMEOUT`, else 503.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Duration, Effect } from "effect"
import { ServiceUnavailable } from "../Domain/Errors.js"
import { DocumentStorage } from "../Storage/DocumentStorage.js"
import { Api } from "./Api.js"

/** How long the health check waits for the database before answering 503. */
export const PING_TIMEOUT = Duration.seconds(2)

export const HealthHandlers = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function* () {
    const storage = yield* DocumentStorage
    return handlers.handle("check", () =>
      storage.ping.pipe(
        Effect.timeoutFail({
          duration: PING_TIMEOUT,
          onTimeout: () => `no answer within ${Duration.format(PING_TIMEOUT)}`
        }),
        Effect.as({ status: "ok" as const }),
        Effect.catchAll((error) =>
          Effect.logWarning("health check failed", typeof error === "string" ? error : error.message).pipe(
            Effect.zipRight(
              Effect.fail(new ServiceUnavailable({ status: "error", message: "database unreachable" }))
            )
          )
        )
      )
    )
  })
)
