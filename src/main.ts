/**
 * Entry point: read the configuration from the environment, then run the server until SIGTERM/SIGINT.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, ConfigError, Console, Effect, Exit, Layer, Logger } from "effect"
import { formatConfigError, fromEnv, type LogFormat, ServerConfig } from "./Config.js"
import * as Server from "./Http/Server.js"
import { layerFromConfig } from "./Storage/StorageLayer.js"

/**
 * The logger for LOG_FORMAT. One line per event unless on a terminal: the pretty logger writes each annotation as a
 * line of its own (a write each), which log collectors split apart, and it cost ~9 KB of allocation per line.
 */
const logger = (format: LogFormat): Layer.Layer<never> => {
  switch (format === "auto" ? (process.stdout.isTTY ? "pretty" : "logfmt") : format) {
    case "pretty":
      return Logger.pretty
    case "logfmt":
      return Logger.logFmt
    case "json":
      return Logger.json
  }
}

const main = Effect.flatMap(fromEnv, (config) =>
  Server.layer.pipe(
    Layer.provide(layerFromConfig),
    Layer.provide(Layer.succeed(ServerConfig, config)),
    Layer.launch,
    Logger.withMinimumLogLevel(config.logLevel),
    // What stopped the server (storage that does not open, a port in use), in LOG_FORMAT like every other line
    // (runMain's own report, disabled below, would use Effect's default logger); whatever LOG_LEVEL says.
    Effect.tapErrorCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("docsync stopped", cause))),
    // After SIGTERM/SIGINT, the line that says shutdown is complete: every Layer released, the storage closed. (In
    // `onExit`: an interrupted fiber runs no further effect of its own, its finalizers excepted.)
    Effect.onExit((exit) =>
      Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
        ? Effect.logInfo("docsync stopped: connections closed, storage closed").pipe(Logger.withMinimumLogLevel(config.logLevel))
        : Effect.void
    ),
    Effect.provide(logger(config.logFormat ?? "auto"))
  ))

main.pipe(
  // An invalid variable stops start-up with one line naming it, not a stack trace.
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    Console.error(formatConfigError(error)).pipe(Effect.zipRight(Effect.sync(() => (process.exitCode = 1))))),
  // The logger is LOG_FORMAT's (above), not runMain's pretty one, and a failure is reported above.
  NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true })
)
