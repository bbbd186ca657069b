/**
 * Chooses the DocumentStorage Layer from `DATABASE_URL` (ServerConfig.databaseUrl):
 * `memory://`, `sqlite:///<path>` or `postgres://…` / `postgresql://…`.
 */
import * as Path from "node:path"
import { type Duration, Effect, Either, Layer, Redacted } from "effect"
import { ServerConfig } from "../Config.js"
import { DocumentStorage, layerMemory, StorageError } from "./DocumentStorage.js"
import { layerPg, layerSqlite } from "./SqlDocumentStorage.js"

/** Where a `DATABASE_URL` points. */
export type DatabaseTarget =
  | { readonly _tag: "Memory" }
  | { readonly _tag: "Sqlite"; readonly filename: string }
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }

/**
 * Storage for `ServerConfig.databaseUrl`, logging at info which storage it opened (without the password), and a
 * warning for `memory://`. Fails with `StorageError` for a URL it does not understand, a database it cannot open
 * or reach, or a failed migration.
 */
export const layerFromConfig: Layer.Layer<DocumentStorage, StorageError, ServerConfig> = Layer.unwrapEffect(
  Effect.map(ServerConfig, (config) =>
    layerFromUrl(config.databaseUrl, { sqliteSynchronous: config.sqliteSynchronous, storageTimeout: config.storageTimeout }))
)

/** Storage for a `DATABASE_URL`; see `layerFromConfig`. */
export const layerFromUrl = (
  url: string,
  options: { readonly sqliteSynchronous?: "full" | "normal"; readonly storageTimeout?: Duration.Duration } = {}
): Layer.Layer<DocumentStorage, StorageError> =>
  Either.match(parseDatabaseUrl(url), {
    onLeft: (error) => Layer.fail(error),
    onRight: (target) => {
      switch (target._tag) {
        case "Memory":
          return layerMemory.pipe(
            Layer.tap(() => Effect.logWarning("memory:// storage: nothing persists across restarts"))
          )
        case "Sqlite":
          return layerSqlite({
            filename: target.filename,
            synchronous: options.sqliteSynchronous ?? "full",
            ...(options.storageTimeout === undefined ? {} : { timeout: options.storageTimeout })
          }).pipe(
            Layer.tap(() =>
              Effect.logInfo(
                `storage: SQLite ${target.filename === ":memory:" ? ":memory:" : Path.resolve(target.filename)} ` +
                  `(synchronous=${options.sqliteSynchronous ?? "full"})`
              )
            )
          )
        case "Postgres":
          return layerPg({ url: target.url }).pipe(
            Layer.tap(() => Effect.logInfo(`storage: PostgreSQL ${describeDatabaseUrl(url)}`))
          )
      }
    }
  })

/**
 * Parses a `DATABASE_URL`.
 *
 * SQLite: everything after `sqlite:///` (three slashes) is the path, percent-decoded:
 * - starting with `./` or `../`: relative to the working directory (`sqlite:///./dev.db` is `./dev.db`);
 * - `:memory:`: a private in-memory database;
 * - anything else is absolute, with or without a fourth slash (`sqlite:///abs/x.db` and `sqlite:////abs/x.db` are
 *   both `/abs/x.db`). Unlike SQLAlchemy, `sqlite:///dev.db` is therefore `/dev.db`: a relative path must say `./`.
 * `sqlite://dev.db` (two slashes: a host) and query strings are rejected rather than guessed at.
 */
export const parseDatabaseUrl = (url: string): Either.Either<DatabaseTarget, StorageError> => {
  const invalid = (reason: string) =>
    Either.left(
      new StorageError({
        operation: "configure",
        cause: `DATABASE_URL ${JSON.stringify(describeDatabaseUrl(url))} ${reason}`
      })
    )
  if (url === "memory://") return Either.right({ _tag: "Memory" })
  if (url.startsWith("sqlite:")) {
    if (!url.startsWith("sqlite:///")) return invalid("must be sqlite:///<path> (three slashes, then the path)")
    const raw = url.slice("sqlite:///".length)
    if (/[?#]/.test(raw)) return invalid("must not have a query string or fragment")
    let path: string
    try {
      path = decodeURIComponent(raw)
    } catch {
      return invalid("is not correctly percent-encoded")
    }
    if (path === "" || path === "/") return invalid("names no file")
    if (path.includes("\0")) return invalid("contains a NUL character")
    const filename = path === ":memory:" || path.startsWith("./") || path.startsWith("../") || path.startsWith("/")
      ? path
      : `/${path}`
    return Either.right({ _tag: "Sqlite", filename })
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return invalid("is not a valid URL")
    }
    if (parsed.hostname === "" && !parsed.searchParams.has("host")) return invalid("names no host")
    return Either.right({ _tag: "Postgres", url: Redacted.make(url) })
  }
  return invalid("must start with memory://, sqlite:///, postgres:// or postgresql://")
}

/**
 * The URL with its password (user-info and `password` / `sslpassword` query parameters) replaced by `***`,
 * for logs and error messages. Works on strings that are not valid URLs, erring towards hiding too much.
 */
export const describeDatabaseUrl = (url: string): string => {
  let described = url
  const scheme = url.indexOf("://")
  if (scheme >= 0) {
    const rest = url.slice(scheme + 3)
    // The last `@` ends the user-info even when an unencoded password contains `/`, `?` or `@`.
    const at = rest.lastIndexOf("@")
    if (at >= 0) {
      const userInfo = rest.slice(0, at)
      const colon = userInfo.indexOf(":")
      if (colon >= 0) {
        described = `${url.slice(0, scheme + 3)}${userInfo.slice(0, colon)}:***${rest.slice(at)}`
      }
    }
  }
  return described.replace(/([?&](?:ssl)?password=)[^&#]*/gi, "$1***")
}
