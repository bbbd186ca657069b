/**
 * One contract for every DocumentStorage backend (memory, SQLite, PostgreSQL), plus what only SQL storage has
 * (restart, table prefixes, migrations racing, the unique-constraint backstop) and the DATABASE_URL layer.
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, expect, it, layer } from "@effect/vitest"
import { Cause, Clock, Context, Duration, Effect, Either, Exit, Layer, Logger, Option, Redacted, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as ServerConfig from "../../src/Config.js"
import type { DocumentId } from "../../src/Domain/Document.js"
import {
  type AppendResult,
  DocumentStorage,
  type DocumentStorageShape,
  inOrderAppends,
  layerMemory,
  withTimeout,
  type NewUpdate,
  StorageError
} from "../../src/Storage/DocumentStorage.js"
import { migrate } from "../../src/Storage/Migrations.js"
import * as SqlDocumentStorage from "../../src/Storage/SqlDocumentStorage.js"
import { describeDatabaseUrl, layerFromConfig, parseDatabaseUrl } from "../../src/Storage/StorageLayer.js"
import { freshPgSchema, tempDir, withPgSchema, withSqliteFile } from "./helpers.js"

const contract = (name: string, storageLayer: Layer.Layer<DocumentStorage, StorageError>) =>
  layer(storageLayer, { timeout: "20 seconds" })(name, (it) => {
    it.effect("ping answers", () => Effect.flatMap(DocumentStorage, (storage) => storage.ping))

    it.effect("create stamps both times from the Clock, starts at version 0, and get finds it", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        yield* TestClock.adjust("1 second")
        const at = yield* Clock.currentTimeMillis
        const document = yield* storage.create("Notes")
        expect(document).toMatchObject({ title: "Notes", version: 0, createdAt: at, updatedAt: at, deletedAt: null })
        expect(document.id).toMatch(/^[0-9a-f-]{36}$/)
        expect(yield* storage.get(document.id)).toEqual(Option.some(document))
        expect(yield* storage.get(unknownId)).toEqual(Option.none())
      }))

    it.effect("rename moves title and updatedAt of a live document only", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("before")
        yield* TestClock.adjust("5 seconds")
        const renamed = yield* storage.rename(document.id, "after")
        expect(renamed).toEqual(
          Option.some({ ...document, title: "after", updatedAt: document.createdAt + 5_000 })
        )
        expect(yield* storage.get(document.id)).toEqual(renamed)
        expect(yield* storage.rename(unknownId, "x")).toEqual(Option.none())
      }))

    it.effect("softDelete hides a document unless includeDeleted; then rename and softDelete give none", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("doomed")
        yield* TestClock.adjust("2 seconds")
        const deleted = yield* storage.softDelete(document.id)
        const at = document.createdAt + 2_000
        expect(deleted).toEqual(Option.some({ ...document, deletedAt: at, updatedAt: at }))
        expect(yield* storage.get(document.id)).toEqual(Option.none())
        expect(yield* storage.get(document.id, true)).toEqual(deleted)
        expect(yield* storage.softDelete(document.id)).toEqual(Option.none())
        expect(yield* storage.rename(document.id, "revived")).toEqual(Option.none())
        expect(yield* storage.softDelete(unknownId)).toEqual(Option.none())
        const live = yield* allIds(storage, false)
        const all = yield* allIds(storage, true)
        expect(live).not.toContain(document.id)
        expect(all).toContain(document.id)
      }))

    it.effect("list with limit 2 walks every document once, in order, with documents created between pages", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const created: Array<string> = []
        for (let i = 0; i < 5; i++) created.push((yield* storage.create(`page ${i}`)).id)
        const deleted = yield* storage.create("deleted")
        yield* storage.softDelete(deleted.id)
        const seen: Array<string> = []
        let after = Option.none<number>()
        for (let page = 0; ; page++) {
          assert.isBelow(page, 10_000, "list never ended")
          const result = yield* storage.list({ after, includeDeleted: false, limit: 2 })
          assert.isAtMost(result.items.length, 2)
          seen.push(...result.items.map((d) => d.id))
          if (page < 3) created.push((yield* storage.create(`between ${page}`)).id)
          if (Option.isNone(result.next)) break
          after = result.next
        }
        expect(new Set(seen).size).toBe(seen.length)
        expect(seen.filter((id) => created.includes(id))).toEqual(created)
        expect(seen).not.toContain(deleted.id)
      }))

    it.effect("list: next is set exactly when the page is full", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const total = (yield* allIds(storage, true)).length
        const full = yield* storage.list({ after: Option.none(), includeDeleted: true, limit: total })
        expect(full.items.length).toBe(total)
        assert.isTrue(Option.isSome(full.next))
        const rest = yield* storage.list({ after: full.next, includeDeleted: true, limit: 5 })
        expect(rest).toEqual({ items: [], next: Option.none() })
      }))

    it.effect("append gives contiguous seqs across batches and moves version and updatedAt", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("log")
        const first = yield* storage.append(document.id, [update("a"), update("b"), update("c")])
        yield* TestClock.adjust("1 second")
        const second = yield* storage.append(document.id, [update("d"), update("e")])
        expect(first).toEqual(acks([["a", 1], ["b", 2], ["c", 3]]))
        expect(second).toEqual(acks([["d", 4], ["e", 5]]))
        expect(yield* storage.latestVersion(document.id)).toBe(5)
        const stored = yield* storage.updatesAfter(document.id, 0, 100)
        expect(stored.map((u) => [u.seq, u.opId, u.actorId])).toEqual([
          [1, "a", "actor-a"], [2, "b", "actor-b"], [3, "c", "actor-c"], [4, "d", "actor-d"], [5, "e", "actor-e"]
        ])
        for (const u of stored) {
          assert.instanceOf(u.delta, Uint8Array)
          assert.isFalse(Buffer.isBuffer(u.delta), "a Buffer leaked out")
          expect(Array.from(u.delta)).toEqual(Array.from(update(u.opId).delta))
        }
        const reloaded = yield* storage.get(document.id)
        expect(Option.map(reloaded, (d) => [d.version, d.updatedAt])).toEqual(
          Option.some([5, document.createdAt + 1_000])
        )
      }))

    it.effect("an opId stored earlier is a duplicate with its original seq; nothing is added", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("dupes")
        yield* storage.append(document.id, [update("a"), update("b")])
        const results = yield* storage.append(document.id, [update("c"), update("a"), update("d")])
        expect(results).toEqual([
          { opId: "c", seq: 3, duplicate: false },
          { opId: "a", seq: 1, duplicate: true },
          { opId: "d", seq: 4, duplicate: false }
        ])
        expect(yield* storage.append(document.id, [update("b")])).toEqual([{ opId: "b", seq: 2, duplicate: true }])
        expect(yield* storage.latestVersion(document.id)).toBe(4)
        expect((yield* storage.updatesAfter(document.id, 0, 100)).map((u) => u.opId)).toEqual(["a", "b", "c", "d"])
      }))

    it.effect("the second of two equal opIds in one batch is a duplicate of the first", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("batch dupes")
        const results = yield* storage.append(document.id, [update("x"), update("y"), update("x")])
        expect(results).toEqual([
          { opId: "x", seq: 1, duplicate: false },
          { opId: "y", seq: 2, duplicate: false },
          { opId: "x", seq: 1, duplicate: true }
        ])
        expect((yield* storage.updatesAfter(document.id, 0, 100)).map((u) => u.seq)).toEqual([1, 2])
      }))

    it.effect("an empty batch stores nothing", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("empty")
        expect(yield* storage.append(document.id, [])).toEqual([])
        expect(yield* storage.latestVersion(document.id)).toBe(0)
      }))

    it.effect("large batches (beyond one statement's worth of parameters) keep seqs contiguous", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("large")
        const first = Array.from({ length: 1_200 }, (_, i) => update(`big-${i}`))
        expect((yield* storage.append(document.id, first)).map((r) => r.seq)).toEqual(range(1, 1_200))
        // Half already stored, half new, interleaved.
        const second = Array.from({ length: 1_200 }, (_, i) => update(i % 2 === 0 ? `big-${i}` : `more-${i}`))
        const results = yield* storage.append(document.id, second)
        expect(results.filter((r) => r.duplicate).map((r) => r.seq)).toEqual(range(1, 1_200).filter((s) => s % 2 === 1))
        expect(results.filter((r) => !r.duplicate).map((r) => r.seq)).toEqual(range(1_201, 1_800))
        const stored = yield* storage.updatesAfter(document.id, 0, 10_000)
        expect(stored.map((u) => u.seq)).toEqual(range(1, 1_800))
      }))

    it.effect("20 fibers x 10 appends on one document: seqs are exactly 1..200, each ack matches the log", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("contended")
        const results = yield* Effect.forEach(
          range(1, 20),
          (fiber) =>
            Effect.forEach(range(1, 10), (i) => storage.append(document.id, [update(`f${fiber}-${i}`)]), {
              concurrency: 1
            }),
          { concurrency: "unbounded" }
        )
        const stored = yield* storage.updatesAfter(document.id, 0, 1_000)
        expect(stored.map((u) => u.seq)).toEqual(range(1, 200))
        expect(new Set(stored.map((u) => u.opId)).size).toBe(200)
        expect(yield* storage.latestVersion(document.id)).toBe(200)
        for (const fiberResults of results) {
          const seqs = fiberResults.flat().map((r) => r.seq)
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
          for (const result of fiberResults.flat()) {
            assert.isFalse(result.duplicate)
            expect(stored[result.seq - 1]?.opId).toBe(result.opId)
          }
        }
      }))

    it.effect("the same opId appended by 10 fibers at once is stored once", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("racing opId")
        const results = (yield* Effect.all(
          Array.from({ length: 10 }, () => storage.append(document.id, [update("same")])),
          { concurrency: "unbounded" }
        )).flat()
        expect(results.filter((r) => !r.duplicate).length).toBe(1)
        expect(new Set(results.map((r) => r.seq))).toEqual(new Set([1]))
        expect((yield* storage.updatesAfter(document.id, 0, 100)).length).toBe(1)
      }))

    it.effect("updatesAfter pages by seq", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("paging")
        yield* storage.append(document.id, range(1, 10).map((i) => update(`p${i}`)))
        expect((yield* storage.updatesAfter(document.id, 3, 4)).map((u) => u.seq)).toEqual([4, 5, 6, 7])
        expect((yield* storage.updatesAfter(document.id, 8, 100)).map((u) => u.seq)).toEqual([9, 10])
        expect(yield* storage.updatesAfter(document.id, 10, 100)).toEqual([])
        expect(yield* storage.updatesAfter(document.id, 0, 0)).toEqual([])
        expect(yield* storage.updatesAfter(unknownId, 0, 100)).toEqual([])
        expect(yield* storage.latestVersion(unknownId)).toBe(0)
      }))

    it.effect("findByOpId finds a stored update of that document only", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("find")
        const other = yield* storage.create("other")
        yield* storage.append(document.id, [update("one"), update("two")])
        const found = yield* storage.findByOpId(document.id, "two")
        expect(Option.map(found, (u) => [u.seq, u.opId, u.actorId, Array.from(u.delta)])).toEqual(
          Option.some([2, "two", "actor-two", Array.from(update("two").delta)])
        )
        expect(yield* storage.findByOpId(document.id, "three")).toEqual(Option.none())
        expect(yield* storage.findByOpId(other.id, "two")).toEqual(Option.none())
        expect(yield* storage.findByOpId(unknownId, "two")).toEqual(Option.none())
      }))

    it.effect("latestSnapshot returns the highest version; putting one again is harmless", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("snapshots")
        expect(yield* storage.latestSnapshot(document.id)).toEqual(Option.none())
        yield* storage.putSnapshot(document.id, snapshot(5))
        yield* storage.putSnapshot(document.id, snapshot(10))
        yield* storage.putSnapshot(document.id, snapshot(7))
        yield* storage.putSnapshot(document.id, snapshot(10))
        const latest = yield* storage.latestSnapshot(document.id)
        expect(Option.map(latest, (s) => [s.version, Array.from(s.data)])).toEqual(
          Option.some([10, Array.from(snapshot(10).data)])
        )
        assert.isFalse(Option.exists(latest, (s) => Buffer.isBuffer(s.data)), "a Buffer leaked out")
        expect(yield* storage.latestSnapshot(unknownId)).toEqual(Option.none())
      }))

    it.effect("stores the bytes a delta or snapshot had when given: a view of a buffer the caller reuses keeps them", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const document = yield* storage.create("reused buffer")
        // As a small delta decoded from base64 is: a view of a larger buffer that is written again later (a
        // Buffer: its `slice` is a view too).
        const shared = Buffer.alloc(8_192)
        shared.set([1, 2, 3], 100)
        shared.set([4, 5, 6, 7], 200)
        yield* storage.append(document.id, [{ opId: "a", actorId: "actor", delta: shared.subarray(100, 103) }])
        yield* storage.putSnapshot(document.id, { version: 1, data: shared.subarray(200, 204) })
        shared.fill(0)
        const [stored] = yield* storage.updatesAfter(document.id, 0, 10)
        expect(Array.from(stored?.delta ?? [])).toEqual([1, 2, 3])
        const latest = yield* storage.latestSnapshot(document.id)
        expect(Option.map(latest, (s) => Array.from(s.data))).toEqual(Option.some([4, 5, 6, 7]))
      }))

    it.effect("append and putSnapshot on an unknown document fail with StorageError", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        const appendError = yield* Effect.flip(storage.append(unknownId, [update("lost")]))
        assert.instanceOf(appendError, StorageError)
        expect(appendError.operation).toBe("append")
        const snapshotError = yield* Effect.flip(storage.putSnapshot(unknownId, snapshot(1)))
        assert.instanceOf(snapshotError, StorageError)
        expect(yield* storage.findByOpId(unknownId, "lost")).toEqual(Option.none())
      }))
  })

contract("memory", layerMemory)

describe("memory storage", () => {
  it.effect("appends in order without a fiber: stored at once, answered after the caller's synchronous code, in order", () =>
    Effect.gen(function* () {
      const storage = yield* DocumentStorage
      const document = yield* storage.create("Notes")
      const appendThen = inOrderAppends.get(storage.append)
      assert.isDefined(appendThen)
      const answers: Array<string> = []
      const answered = (name: string) => (exit: Exit.Exit<ReadonlyArray<AppendResult>, StorageError>) =>
        answers.push(Exit.match(exit, { onFailure: () => `${name} failed`, onSuccess: (results) => `${name} ${results.map((r) => r.seq).join(",")}` }))
      yield* Effect.sync(() => {
        appendThen(document.id, [update("a"), update("b")], answered("first"))
        appendThen(document.id, [update("c"), update("a")], answered("second"))
        appendThen(unknownId, [update("lost")], answered("unknown"))
        // Not answered yet, but stored: the caller goes on before its answers come.
        expect(answers).toEqual([])
      })
      expect((yield* storage.updatesAfter(document.id, 0, 10)).map((u) => u.opId)).toEqual(["a", "b", "c"])
      yield* Effect.promise(() => Promise.resolve())
      expect(answers).toEqual(["first 1,2", "second 3,1", "unknown failed"])
      expect(Option.map(yield* storage.get(document.id), (d) => d.version)).toEqual(Option.some(3))
      // The registry bounds storage with `withTimeout`; the actors find the in-order append through it.
      const bounded = yield* Effect.scoped(withTimeout(storage, Duration.seconds(10)))
      expect(inOrderAppends.get(bounded.append)).toBe(appendThen)
    }).pipe(Effect.provide(layerMemory)))
})
contract("SQLite", withSqliteFile((filename) => SqlDocumentStorage.layerSqlite({ filename })))
contract(
  "SQLite client from the host, with a table prefix",
  withSqliteFile((filename) =>
    SqlDocumentStorage.layerSqlClient({ tablePrefix: "host_" }).pipe(
      Layer.provide(Layer.orDie(SqliteClient.layer({ filename })))
    )
  )
)
contract("PostgreSQL", withPgSchema((url) => SqlDocumentStorage.layerPg({ url })))

describe("SQLite storage", () => {
  it.scoped("a restart on the same file keeps every document, update and snapshot", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "restart.db")
      const before = yield* withStorage(SqlDocumentStorage.layerSqlite({ filename }), (storage) =>
        Effect.gen(function* () {
          const kept = yield* storage.create("kept")
          const gone = yield* storage.create("gone")
          yield* storage.softDelete(gone.id)
          yield* storage.append(kept.id, [update("a"), update("b"), update("c")])
          yield* storage.putSnapshot(kept.id, snapshot(2))
          return { kept: yield* storage.get(kept.id), gone: yield* storage.get(gone.id, true) }
        }))
      yield* withStorage(SqlDocumentStorage.layerSqlite({ filename }), (storage) =>
        Effect.gen(function* () {
          const kept = Option.getOrThrow(before.kept)
          expect(yield* storage.get(kept.id)).toEqual(before.kept)
          expect(yield* storage.get(Option.getOrThrow(before.gone).id, true)).toEqual(before.gone)
          expect((yield* storage.updatesAfter(kept.id, 0, 10)).map((u) => u.opId)).toEqual(["a", "b", "c"])
          expect(Option.map(yield* storage.latestSnapshot(kept.id), (s) => s.version)).toEqual(Option.some(2))
          expect(yield* storage.append(kept.id, [update("a"), update("d")])).toEqual([
            { opId: "a", seq: 1, duplicate: true },
            { opId: "d", seq: 4, duplicate: false }
          ])
          expect((yield* storage.list({ after: Option.none(), includeDeleted: true, limit: 10 })).items.length).toBe(2)
        }))
      // WAL is a property of the file: a connection that does not ask for it still sees it.
      const plain = yield* Layer.build(Layer.orDie(SqliteClient.layer({ filename, disableWAL: true, readonly: true })))
      const sql = Context.get(plain, SqlClient.SqlClient)
      expect(yield* Effect.orDie(sql<{ journal_mode: string }>`PRAGMA journal_mode`)).toEqual([{ journal_mode: "wal" }])
    }))

  it.scoped("table prefixes keep two instances apart in one database", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "shared.db")
      const client = yield* Layer.build(Layer.orDie(SqliteClient.layer({ filename })))
      const [a, b] = yield* Effect.all([instance("a_"), instance("b_")]).pipe(Effect.provide(client))
      yield* expectApart(a, b)
    }))

  it.scoped("a unique-constraint violation rolls the whole batch back as a StorageError", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "rogue.db")
      const client = yield* Layer.build(Layer.orDie(SqliteClient.layer({ filename })))
      const sql = Context.get(client, SqlClient.SqlClient)
      const storage = yield* instance("").pipe(Effect.provide(client))
      const document = yield* storage.create("rogue")
      // A writer that bypassed storage took seq 1 without moving the version.
      yield* Effect.orDie(
        sql`INSERT INTO document_updates (document_id, seq, op_id, actor_id, delta)
          VALUES (${document.id}, 1, 'rogue', 'x', ${Buffer.from([1])})`
      )
      const error = yield* Effect.flip(storage.append(document.id, [update("a"), update("b")]))
      assert.instanceOf(error, StorageError)
      expect(error.operation).toBe("append")
      expect(error.message).toMatch(/constraint/i)
      expect((yield* storage.updatesAfter(document.id, 0, 10)).map((u) => u.opId)).toEqual(["rogue"])
      expect(yield* storage.latestVersion(document.id)).toBe(0)
    }))

  it.scoped("migrations are recorded once and rerun as a no-op", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "migrate.db")
      const client = yield* Layer.build(Layer.orDie(SqliteClient.layer({ filename })))
      const first = yield* migrate("m_").pipe(Effect.provide(client))
      const second = yield* migrate("m_").pipe(Effect.provide(client))
      expect(first.length).toBeGreaterThan(0)
      expect(second).toEqual([])
    }))

  it.effect("an unopenable file is a StorageError, not a defect", () =>
    Effect.gen(function* () {
      const filename = "/nonexistent-docsync-dir/deeper/docsync.db"
      const error = yield* expectStorageError(Layer.build(SqlDocumentStorage.layerSqlite({ filename })))
      expect(error.message).toContain(filename)
    }).pipe(Effect.scoped))

  it.effect("a file that is not a database is a StorageError, not a defect", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "garbage.db")
      Fs.writeFileSync(filename, "this is not an SQLite database, not even a little bit ".repeat(100))
      yield* expectStorageError(Layer.build(SqlDocumentStorage.layerSqlite({ filename })))
    }).pipe(Effect.scoped))

  it.effect("an invalid table prefix is a StorageError", () =>
    Effect.gen(function* () {
      for (const tablePrefix of ["1abc", "a-b", "x; DROP TABLE documents; --", "a".repeat(33)]) {
        yield* expectStorageError(
          Layer.build(SqlDocumentStorage.layerSqlite({ filename: ":memory:", tablePrefix }))
        )
      }
    }).pipe(Effect.scoped))
})

describe("PostgreSQL storage", () => {
  it.scoped("instances racing to migrate one empty schema all start", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgSchema
      const contexts = yield* Effect.all(
        Array.from({ length: 4 }, () => Layer.build(SqlDocumentStorage.layerPg({ url, tablePrefix: "race_" }))),
        { concurrency: "unbounded" }
      )
      const [first, second] = contexts.map((context) => Context.get(context, DocumentStorage))
      assert.isDefined(first)
      assert.isDefined(second)
      const document = yield* first.create("raced")
      expect(yield* second.get(document.id)).toEqual(Option.some(document))
    }))

  it.scoped("table prefixes keep two instances apart in one schema", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgSchema
      const [a, b] = yield* Effect.all(
        ["a_", "b_"].map((tablePrefix) =>
          Effect.map(Layer.build(SqlDocumentStorage.layerPg({ url, tablePrefix })), Context.get(DocumentStorage))
        )
      )
      assert.isDefined(a)
      assert.isDefined(b)
      yield* expectApart(a, b)
    }))

  it.effect("an unreachable server is a StorageError, not a defect", () =>
    Effect.gen(function* () {
      const error = yield* expectStorageError(
        Layer.build(SqlDocumentStorage.layerPg({ url: "postgres://docsync:secret@127.0.0.1:1/nowhere" }))
      )
      expect(error.message).toContain("connect to PostgreSQL")
      expect(error.message).not.toContain("secret")
    }).pipe(Effect.scoped))
})

describe("StorageLayer", () => {
  const target = (url: string) => Either.getOrThrowWith(parseDatabaseUrl(url), (e) => e)

  it("memory:// is memory", () => {
    expect(target("memory://")).toEqual({ _tag: "Memory" })
  })

  it("sqlite:/// then ./ or ../ is relative; anything else after three slashes is absolute", () => {
    expect(target("sqlite:///./dev.db")).toEqual({ _tag: "Sqlite", filename: "./dev.db" })
    expect(target("sqlite:///../data/dev.db")).toEqual({ _tag: "Sqlite", filename: "../data/dev.db" })
    expect(target("sqlite:///abs/path.db")).toEqual({ _tag: "Sqlite", filename: "/abs/path.db" })
    expect(target("sqlite:////abs/path.db")).toEqual({ _tag: "Sqlite", filename: "/abs/path.db" })
    expect(target("sqlite:///./my%20notes.db")).toEqual({ _tag: "Sqlite", filename: "./my notes.db" })
    expect(target("sqlite:///:memory:")).toEqual({ _tag: "Sqlite", filename: ":memory:" })
  })

  it("postgres:// and postgresql:// are PostgreSQL, the URL kept redacted", () => {
    for (const url of ["postgres://u:pw@db.example:5432/app", "postgresql://db.example/app"]) {
      const parsed = target(url)
      assert(parsed._tag === "Postgres")
      expect(Redacted.value(parsed.url)).toBe(url)
      expect(String(parsed.url)).not.toContain("pw")
    }
  })

  it("rejects URLs it would have to guess at, without echoing a password", () => {
    for (const url of [
      "",
      "memory",
      "memory://x",
      "sqlite://dev.db",
      "sqlite:///",
      "sqlite:////",
      "sqlite:///./dev.db?mode=ro",
      "sqlite:///%zz",
      "mysql://u:pw@host/db",
      "postgres://",
      "postgres://u:hunter2@[::1/db"
    ]) {
      const result = parseDatabaseUrl(url)
      assert(Either.isLeft(result), `accepted ${url}`)
      assert.instanceOf(result.left, StorageError)
      expect(result.left.message).not.toContain("hunter2")
    }
  })

  it("describeDatabaseUrl hides passwords", () => {
    expect(describeDatabaseUrl("postgres://app:s3cret@db:5432/docs")).toBe("postgres://app:***@db:5432/docs")
    expect(describeDatabaseUrl("postgres://app:p@ss/w0rd@db/docs")).toBe("postgres://app:***@db/docs")
    expect(describeDatabaseUrl("postgres://db/docs?user=app&password=s3cret&sslmode=require")).toBe(
      "postgres://db/docs?user=app&password=***&sslmode=require"
    )
    expect(describeDatabaseUrl("postgres://app@db/docs")).toBe("postgres://app@db/docs")
    expect(describeDatabaseUrl("sqlite:///./dev.db")).toBe("sqlite:///./dev.db")
    expect(describeDatabaseUrl("memory://")).toBe("memory://")
  })

  it.scoped("memory:// warns that nothing persists", () =>
    Effect.gen(function* () {
      const logs = yield* fromConfig("memory://")
      expect(logs).toContainEqual("WARN memory:// storage: nothing persists across restarts")
    }))

  it.scoped("sqlite:/// opens the file and says which", () =>
    Effect.gen(function* () {
      const filename = Path.join(yield* tempDir, "config.db")
      const logs = yield* fromConfig(`sqlite://${filename}`)
      expect(logs).toContainEqual(`INFO storage: SQLite ${filename} (synchronous=full)`)
      assert.isTrue(Fs.existsSync(filename))
    }))

  it.scoped("postgres:// opens the database and never logs the password", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgSchema
      const withPassword = new URL(url)
      // Trust auth ignores it; a real password from CI's URL is kept and must not show either.
      if (withPassword.password === "") {
        withPassword.username ||= process.env["USER"] ?? "postgres"
        withPassword.password = "s3cret-pw"
      }
      const logs = yield* fromConfig(withPassword.toString())
      expect(logs.some((line) => line.startsWith("INFO storage: PostgreSQL"))).toBe(true)
      for (const line of logs) expect(line).not.toContain(withPassword.password)
    }))

  it.effect("a bad URL or an unopenable file fails with StorageError, not a defect", () =>
    Effect.gen(function* () {
      yield* expectStorageError(fromConfig("sqlite://dev.db"))
      const error = yield* expectStorageError(fromConfig("sqlite:///nonexistent-docsync-dir/x/dev.db"))
      expect(error.message).toContain("/nonexistent-docsync-dir/x/dev.db")
    }).pipe(Effect.scoped))
})

// Helpers

const unknownId = "00000000-0000-4000-8000-000000000000" as DocumentId

const update = (opId: string): NewUpdate => ({
  opId,
  actorId: `actor-${opId}`,
  delta: new TextEncoder().encode(`delta of ${opId}`)
})

const snapshot = (version: number) => ({ version, data: new TextEncoder().encode(`state at ${version}`) })

const acks = (pairs: ReadonlyArray<readonly [string, number]>): Array<AppendResult> =>
  pairs.map(([opId, seq]) => ({ opId, seq, duplicate: false }))

const range = (from: number, to: number): Array<number> => Array.from({ length: to - from + 1 }, (_, i) => from + i)

const allIds = (storage: DocumentStorageShape, includeDeleted: boolean) =>
  Effect.map(storage.list({ after: Option.none(), includeDeleted, limit: 1_000_000 }), (page) =>
    page.items.map((d) => d.id)
  )

/** Builds a storage Layer, uses it, and releases it (closing the database) before returning. */
const withStorage = <A, E>(
  storageLayer: Layer.Layer<DocumentStorage, StorageError>,
  use: (storage: DocumentStorageShape) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(Layer.build(storageLayer), (context) => use(Context.get(context, DocumentStorage))))

/** A migrated storage with this prefix on the SqlClient in context. */
const instance = (tablePrefix: string) =>
  Effect.zipRight(migrate(tablePrefix), SqlDocumentStorage.make({ tablePrefix }))

const expectApart = (a: DocumentStorageShape, b: DocumentStorageShape) =>
  Effect.gen(function* () {
    const inA = yield* a.create("only in a")
    yield* a.append(inA.id, [update("op")])
    expect(yield* b.get(inA.id, true)).toEqual(Option.none())
    expect((yield* allIds(b, true))).not.toContain(inA.id)
    expect(yield* b.findByOpId(inA.id, "op")).toEqual(Option.none())
    const inB = yield* b.create("only in b")
    // The same opId in the other instance is new there.
    expect(yield* b.append(inB.id, [update("op")])).toEqual(acks([["op", 1]]))
    expect(yield* allIds(a, true)).toEqual([inA.id])
    expect(yield* allIds(b, true)).toEqual([inB.id])
  })

/** The failure must be a typed StorageError: a defect or an interruption fails the test. */
const expectStorageError = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(effect)
    assert(Exit.isFailure(exit), "expected a failure")
    const failure = Cause.failureOption(exit.cause)
    assert(Option.isSome(failure), `expected a typed failure, got ${Cause.pretty(exit.cause)}`)
    assert.instanceOf(failure.value, StorageError)
    return failure.value as StorageError
  })

/** Builds `layerFromConfig` for a URL and returns what it logged, as "LEVEL message" lines. */
const fromConfig = (databaseUrl: string) =>
  Effect.gen(function* () {
    const logs: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      logs.push(`${logLevel.label} ${text}`)
    })
    yield* Layer.build(layerFromConfig.pipe(Layer.provide(ServerConfig.layer({ databaseUrl })))).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger))
    )
    return logs
  })
