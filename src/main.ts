/**
 * Entry point: read the configuration from the environment, then run the server until SIGTERM/SIGINT.
 */
import { NodeRuntime } from "@effect/platform-node"
import { ConfigError, Console, Effect, Layer, Logger } from "effect"
import { formatConfigError, fromEnv, ServerConfig } from "./Config.js"
import * as Server from "./Http/Server.js"
import { layerFromConfig } from "./Storage/StorageLayer.js"

const main = Effect.flatMap(fromEnv, (config) =>
  Server.layer.pipe(
    Layer.provide(layerFromConfig),
    Layer.provide(Layer.succeed(ServerConfig, config)),
    Layer.launch,
    Logger.withMinimumLogLevel(config.logLevel)
  ))

main.pipe(
  // An invalid variable stops start-up with one line naming it, not a stack trace.
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    Console.error(formatConfigError(error)).pipe(Effect.zipRight(Effect.sync(() => (process.exitCode = 1))))),
  NodeRuntime.runMain
)
