import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, LogLevel, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { defaults, formatConfigError, fromEnv } from "../src/Config.js"

const read = (env: Record<string, string>) =>
  fromEnv.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

/** The one-line message start-up prints for an invalid environment. */
const failure = (env: Record<string, string>) => read(env).pipe(Effect.flip, Effect.map(formatConfigError))

describe("Config.fromEnv", () => {
  it.effect("takes every default from an empty environment", () =>
    Effect.gen(function* () {
      const config = yield* read({})
      assert.strictEqual(config.port, 8000)
      assert.strictEqual(config.host, "127.0.0.1")
      assert.strictEqual(config.databaseUrl, "sqlite:///./dev.db")
      assert.strictEqual(config.snapshotEvery, 100)
      assert.strictEqual(Duration.toMillis(config.presenceIdle), 30_000)
      assert.strictEqual(Duration.toMillis(config.documentIdle), 60_000)
      assert.strictEqual(config.maxMessageBytes, 8_388_608)
      assert.strictEqual(config.maxUpdateBytes, 1_048_576)
      assert.strictEqual(config.maxPresenceBytes, 8192)
      assert.isTrue(Option.isNone(config.authSecret))
      assert.strictEqual(config.logLevel, LogLevel.Info)
      assert.strictEqual(config.logFormat, "auto")
      for (const key of Object.keys(defaults) as Array<keyof typeof defaults>) {
        const expected = defaults[key]
        const actual = config[key]
        if (Duration.isDuration(expected) && Duration.isDuration(actual)) {
          assert.strictEqual(Duration.toMillis(actual), Duration.toMillis(expected), key)
        } else if (Option.isOption(expected) && Option.isOption(actual)) {
          assert.strictEqual(Option.isSome(actual), Option.isSome(expected), key)
        } else {
          assert.strictEqual(actual, expected, key)
        }
      }
    }))

  it.effect("parses every variable", () =>
    Effect.gen(function* () {
      const config = yield* read({
        PORT: "9001",
        HOST: "0.0.0.0",
        DATABASE_URL: "postgres://u:p@db:5432/docsync",
        SNAPSHOT_EVERY: "7",
        SNAPSHOT_REQUEST_TIMEOUT_MS: "1500",
        PRESENCE_IDLE_MS: "1000",
        DOCUMENT_IDLE_MS: "2000",
        MAX_MESSAGE_BYTES: "4096",
        MAX_UPDATE_BYTES: "2048",
        MAX_PRESENCE_BYTES: "512",
        MAX_BUFFERED_BYTES: "65536",
        MAILBOX_CAPACITY: "16",
        MAX_BATCH_SIZE: "32",
        LOG_TAIL_BYTES: "1024",
        HEARTBEAT_MS: "250",
        AUTH_SECRET: "s3cret",
        LOG_LEVEL: "warning",
        LOG_FORMAT: "json"
      })
      assert.strictEqual(config.port, 9001)
      assert.strictEqual(config.host, "0.0.0.0")
      assert.strictEqual(config.databaseUrl, "postgres://u:p@db:5432/docsync")
      assert.strictEqual(config.snapshotEvery, 7)
      assert.strictEqual(Duration.toMillis(config.snapshotRequestTimeout), 1500)
      assert.strictEqual(Duration.toMillis(config.presenceIdle), 1000)
      assert.strictEqual(Duration.toMillis(config.documentIdle), 2000)
      assert.strictEqual(config.maxMessageBytes, 4096)
      assert.strictEqual(config.maxUpdateBytes, 2048)
      assert.strictEqual(config.maxPresenceBytes, 512)
      assert.strictEqual(config.maxBufferedBytes, 65536)
      assert.strictEqual(config.mailboxCapacity, 16)
      assert.strictEqual(config.maxBatchSize, 32)
      assert.strictEqual(config.logTailBytes, 1024)
      assert.strictEqual(Duration.toMillis(config.heartbeatInterval), 250)
      assert.strictEqual(Option.map(config.authSecret, Redacted.value).pipe(Option.getOrNull), "s3cret")
      assert.strictEqual(config.logLevel, LogLevel.Warning)
      assert.strictEqual(config.logFormat, "json")
      // The secret never shows when the config is printed.
      assert.notInclude(String(config.authSecret), "s3cret")
    }))

  it.effect("accepts every documented DATABASE_URL form and log level", () =>
    Effect.gen(function* () {
      for (const url of ["sqlite:///./dev.db", "sqlite:///tmp/x.db", "memory://", "postgres://h/db", "postgresql://h/db"]) {
        assert.strictEqual((yield* read({ DATABASE_URL: url })).databaseUrl, url)
      }
      const levels = { all: LogLevel.All, trace: LogLevel.Trace, debug: LogLevel.Debug, info: LogLevel.Info,
        warning: LogLevel.Warning, error: LogLevel.Error, fatal: LogLevel.Fatal, none: LogLevel.None }
      for (const [name, level] of Object.entries(levels)) {
        assert.strictEqual((yield* read({ LOG_LEVEL: name })).logLevel, level, name)
      }
      for (const format of ["auto", "pretty", "logfmt", "json"] as const) {
        assert.strictEqual((yield* read({ LOG_FORMAT: format })).logFormat, format)
      }
    }))

  it.effect("an invalid value fails with a one-line message naming the variable", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ PORT: "abc" }, "PORT"],
        [{ PORT: "70000" }, "PORT"],
        [{ SNAPSHOT_EVERY: "0" }, "SNAPSHOT_EVERY"],
        [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
        [{ HOST: " " }, "HOST"],
        [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
        [{ LOG_FORMAT: "xml" }, "LOG_FORMAT"],
        [{ MAX_MESSAGE_BYTES: "10" }, "MAX_MESSAGE_BYTES"],
        [{ PRESENCE_IDLE_MS: "soon" }, "PRESENCE_IDLE_MS"],
        [{ HEARTBEAT_MS: "5" }, "HEARTBEAT_MS"]
      ]
      for (const [env, variable] of cases) {
        const message = yield* failure(env)
        assert.include(message, variable, JSON.stringify(env))
        assert.notInclude(message, "\n")
        assert.match(message, /^invalid configuration: /)
      }
      // A range says its bounds, and a range with no upper bound says only its lower one.
      assert.include(yield* failure({ PORT: "70000" }), "PORT must be an integer between 0 and 65535")
      const unbounded = yield* failure({ SNAPSHOT_EVERY: "0" })
      assert.include(unbounded, "SNAPSHOT_EVERY must be an integer of at least 1")
      assert.notInclude(unbounded, String(Number.MAX_SAFE_INTEGER))
      const emptySecret = yield* failure({ AUTH_SECRET: " " })
      assert.include(emptySecret, "AUTH_SECRET must not be empty")
      assert.notInclude(emptySecret, "at :", "no empty path")
    }))

  it("every variable the server reads is in .env.example and in the README's table", () => {
    const source = readFileSync(new URL("../src/Config.ts", import.meta.url), "utf8")
    const names = [...new Set([...source.matchAll(/\(\s*"([A-Z][A-Z0-9_]{2,})"/g)].map((match) => match[1] as string))]
    assert.isAtLeast(names.length, 20, "the variables' names are found in src/Config.ts")
    const example = readFileSync(new URL("../.env.example", import.meta.url), "utf8")
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
    assert.deepStrictEqual(names.filter((name) => !new RegExp(`^(# )?${name}=`, "m").test(example)), [], "missing from .env.example")
    assert.deepStrictEqual(names.filter((name) => !readme.includes(`| \`${name}\` |`)), [], "missing from the README's table")
  })
})
