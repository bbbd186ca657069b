/**
 * ServerConfig: every setting of protocol section 3 (plus docsync's own limits), with defaults, descriptions
 * and validation. `layerFromEnv` reads the environment; `layer` takes a plain object (tests, embedding).
 */
import { Config, ConfigError, Context, Duration, Layer, LogLevel, Option, Redacted } from "effect"

export interface ServerConfigShape {
  /** HTTP and WebSocket port (0 picks a free one). */
  readonly port: number
  /** Bind address. */
  readonly host: string
  /** `sqlite:///./dev.db`, `sqlite:///abs/path.db`, `memory://` or `postgres://…`. */
  readonly databaseUrl: string
  /** Updates between snapshots (protocol 2.3). */
  readonly snapshotEvery: number
  /** How long a snapshot_request may stay unanswered before a later update asks again. */
  readonly snapshotRequestTimeout: Duration.Duration
  /** A connection that sends nothing for this long is shown as idle in presence (protocol 2.4). */
  readonly presenceIdle: Duration.Duration
  /** A document with no connection and no message for this long is unloaded from memory. */
  readonly documentIdle: Duration.Duration
  /** Largest WebSocket frame and REST body, in bytes. */
  readonly maxMessageBytes: number
  /** Largest decoded delta, in bytes. */
  readonly maxUpdateBytes: number
  /** Largest serialised presence state, in bytes. */
  readonly maxPresenceBytes: number
  /** Bytes a connection may have queued but unsent before it is closed with 4408 (slow consumer). */
  readonly maxBufferedBytes: number
  /** Commands a document's mailbox holds before senders wait. */
  readonly mailboxCapacity: number
  /** Most commands in one batch of a document (group commit). */
  readonly maxBatchSize: number
  /** Bytes of encoded updates a loaded document keeps in memory for joins (its log since the latest snapshot). */
  readonly logTailBytes: number
  /** SQLite only: `full` fsyncs every commit (acks survive power loss); `normal` survives a killed process only. */
  readonly sqliteSynchronous: "full" | "normal"
  /** A storage call of a document actor that takes longer fails (clients get `internal` and retry). */
  readonly storageTimeout: Duration.Duration
  /** Interval of WebSocket ping frames; a peer that has not answered the previous ping by the next is dropped. */
  readonly heartbeatInterval: Duration.Duration
  /** Messages per second a WebSocket connection may send on average (token bucket refill rate). */
  readonly rateLimitPerSecond: number
  /** Messages a WebSocket connection may send in a burst (token bucket size); over it → `rate_limited`. */
  readonly rateLimitBurst: number
  /** Open WebSocket connections per document; one more is closed with 4429. */
  readonly maxConnectionsPerDocument: number
  /** Open WebSocket connections in the whole server; one more is closed with 4429. */
  readonly maxConnections: number
  /** HS256 secret for JWTs; unset means no authentication. */
  readonly authSecret: Option.Option<Redacted.Redacted<string>>
  readonly logLevel: LogLevel.LogLevel
  /**
   * How the standalone server writes its log (`main.ts`; an embedding host's own logger applies instead): `pretty`
   * (multi-line, for a terminal), `logfmt` or `json` (one line per event), or `auto`: pretty on a terminal, logfmt
   * otherwise.
   */
  readonly logFormat?: LogFormat
}

export type LogFormat = "auto" | "pretty" | "logfmt" | "json"

export class ServerConfig extends Context.Tag("docsync/ServerConfig")<ServerConfig, ServerConfigShape>() {}

export const defaults: ServerConfigShape = {
  port: 8000,
  host: "127.0.0.1",
  databaseUrl: "sqlite:///./dev.db",
  snapshotEvery: 100,
  snapshotRequestTimeout: Duration.seconds(30),
  presenceIdle: Duration.millis(30_000),
  documentIdle: Duration.millis(60_000),
  maxMessageBytes: 8 * 1024 * 1024,
  maxUpdateBytes: 1024 * 1024,
  maxPresenceBytes: 8 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
  mailboxCapacity: 4096,
  maxBatchSize: 512,
  logTailBytes: 8 * 1024 * 1024,
  storageTimeout: Duration.seconds(10),
  sqliteSynchronous: "full",
  heartbeatInterval: Duration.seconds(30),
  rateLimitPerSecond: 1000,
  rateLimitBurst: 2000,
  maxConnectionsPerDocument: 1000,
  maxConnections: 10_000,
  authSecret: Option.none(),
  logLevel: LogLevel.Info,
  logFormat: "auto"
}

/** A config from a plain object: anything left out takes its default. Nothing is read from the environment. */
export const layer = (overrides: Partial<ServerConfigShape> = {}): Layer.Layer<ServerConfig> =>
  Layer.succeed(ServerConfig, { ...defaults, ...overrides })

const int = (name: string, description: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Config.integer(name).pipe(
    Config.validate({
      message: max === Number.MAX_SAFE_INTEGER
        ? `${name} must be an integer of at least ${min} (and below 2^53)`
        : `${name} must be an integer between ${min} and ${max}`,
      validation: (n) => n >= min && n <= max
    }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

const millis = (name: string, description: string, fallback: Duration.Duration, min = 1) =>
  int(name, description, Duration.toMillis(fallback), min).pipe(Config.map(Duration.millis))

const databaseUrl = Config.string("DATABASE_URL").pipe(
  Config.validate({
    message: "DATABASE_URL must be sqlite:///<path>, memory://, postgres://… or postgresql://…",
    validation: (url) => /^(sqlite:\/\/\/.+|memory:\/\/|postgres(ql)?:\/\/.+)$/.test(url)
  }),
  Config.withDefault(defaults.databaseUrl),
  Config.withDescription("Storage: sqlite:///./dev.db, sqlite:///abs/path.db, memory:// or postgres://…")
)

const logLevel = Config.literal("all", "trace", "debug", "info", "warning", "error", "fatal", "none")("LOG_LEVEL").pipe(
  Config.withDefault("info" as const),
  Config.map((level) => LogLevel.fromLiteral(level === "warning" ? "Warning" : capitalize(level))),
  Config.withDescription("Minimum log level: trace, debug, info, warning, error, fatal, none")
)

const logFormat = Config.literal("auto", "pretty", "logfmt", "json")("LOG_FORMAT").pipe(
  Config.withDefault("auto" as const),
  Config.withDescription("Log format: pretty, logfmt, json, or auto (pretty on a terminal, logfmt otherwise)")
)

/** Every variable, read from the environment (protocol section 3 plus docsync's own limits). */
export const fromEnv: Config.Config<ServerConfigShape> = Config.all({
  port: int("PORT", "HTTP and WebSocket port", defaults.port, 0, 65535),
  host: Config.string("HOST").pipe(
    Config.validate({ message: "HOST must not be empty", validation: (h) => h.trim().length > 0 }),
    Config.withDefault(defaults.host),
    Config.withDescription("Bind address")
  ),
  databaseUrl,
  snapshotEvery: int("SNAPSHOT_EVERY", "Updates between snapshots", defaults.snapshotEvery, 1),
  snapshotRequestTimeout: millis(
    "SNAPSHOT_REQUEST_TIMEOUT_MS",
    "How long a snapshot_request may go unanswered before another client is asked",
    defaults.snapshotRequestTimeout
  ),
  presenceIdle: millis("PRESENCE_IDLE_MS", "Presence idle timeout", defaults.presenceIdle),
  documentIdle: millis("DOCUMENT_IDLE_MS", "Unload a document idle this long", defaults.documentIdle),
  maxMessageBytes: int("MAX_MESSAGE_BYTES", "Largest WebSocket frame and REST body", defaults.maxMessageBytes, 1024),
  maxUpdateBytes: int("MAX_UPDATE_BYTES", "Largest decoded delta", defaults.maxUpdateBytes, 1),
  maxPresenceBytes: int("MAX_PRESENCE_BYTES", "Largest serialised presence state", defaults.maxPresenceBytes, 2),
  maxBufferedBytes: int(
    "MAX_BUFFERED_BYTES",
    "Unsent bytes a connection may queue before it is closed with 4408",
    defaults.maxBufferedBytes,
    1024
  ),
  mailboxCapacity: int("MAILBOX_CAPACITY", "Commands a document's mailbox holds", defaults.mailboxCapacity, 1),
  maxBatchSize: int("MAX_BATCH_SIZE", "Most commands in one batch of a document", defaults.maxBatchSize, 1, 10_000),
  logTailBytes: int("LOG_TAIL_BYTES", "Bytes of a document's log kept in memory for joins", defaults.logTailBytes, 0),
  sqliteSynchronous: Config.literal("full", "normal")("SQLITE_SYNCHRONOUS").pipe(
    Config.withDefault("full" as const),
    Config.withDescription("SQLite synchronous mode: full (fsync every commit) or normal (survives SIGKILL, not power loss)")
  ),
  storageTimeout: millis("STORAGE_TIMEOUT_MS", "Longest a document's storage call may take", defaults.storageTimeout),
  heartbeatInterval: millis("HEARTBEAT_MS", "WebSocket ping interval", defaults.heartbeatInterval, 100),
  rateLimitPerSecond: int(
    "RATE_LIMIT_PER_SECOND",
    "Messages per second a WebSocket connection may send on average",
    defaults.rateLimitPerSecond,
    1
  ),
  rateLimitBurst: int("RATE_LIMIT_BURST", "Messages a WebSocket connection may send in a burst", defaults.rateLimitBurst, 1),
  maxConnectionsPerDocument: int(
    "MAX_CONNECTIONS_PER_DOCUMENT",
    "Open WebSocket connections per document (one more is closed with 4429)",
    defaults.maxConnectionsPerDocument,
    1
  ),
  maxConnections: int(
    "MAX_CONNECTIONS",
    "Open WebSocket connections in the server (one more is closed with 4429)",
    defaults.maxConnections,
    1
  ),
  authSecret: Config.option(
    Config.redacted("AUTH_SECRET").pipe(
      Config.validate({
        message: "AUTH_SECRET must not be empty (unset it to run without authentication)",
        validation: (secret) => Redacted.value(secret).trim().length > 0
      }),
      Config.withDescription("HS256 secret for JWTs (use 32 random characters or more); unset: no authentication")
    )
  ),
  logLevel,
  logFormat
})

/** Fails with a `ConfigError` naming the variable when a value is invalid. */
export const layerFromEnv: Layer.Layer<ServerConfig, ConfigError.ConfigError> = Layer.effect(ServerConfig, fromEnv)

export const formatConfigError = (error: ConfigError.ConfigError): string =>
  // A validation under `Config.option` has an empty path ("at :"): its message names the variable itself.
  `invalid configuration: ${String(error).replace(/\s+/g, " ").replace(/\((Invalid data|Missing data) at : /g, "($1: ").trim()}`

function capitalize<S extends string>(s: S): Capitalize<S> {
  return (s.charAt(0).toUpperCase() + s.slice(1)) as Capitalize<S>
}
