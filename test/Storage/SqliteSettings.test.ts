import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as Config from "../../src/Config.js"
import { sqlitePragmas } from "../../src/Storage/SqlDocumentStorage.js"

describe("SQLite durability setting", () => {
  it("fsyncs every commit unless told otherwise", () => {
    assert.include(sqlitePragmas({}), "PRAGMA synchronous = FULL")
    assert.include(sqlitePragmas({ synchronous: "full" }), "PRAGMA synchronous = FULL")
    assert.include(sqlitePragmas({ synchronous: "normal" }), "PRAGMA synchronous = NORMAL")
  })

  it.effect("SQLITE_SYNCHRONOUS is full by default, accepts normal, and rejects anything else naming the variable", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        Effect.withConfigProvider(Config.fromEnv, ConfigProvider.fromMap(new Map(Object.entries(env))))
      assert.strictEqual((yield* read({})).sqliteSynchronous, "full")
      assert.strictEqual((yield* read({ SQLITE_SYNCHRONOUS: "normal" })).sqliteSynchronous, "normal")
      const error = yield* Effect.flip(read({ SQLITE_SYNCHRONOUS: "off" }))
      assert.include(Config.formatConfigError(error), "SQLITE_SYNCHRONOUS")
    }))
})
