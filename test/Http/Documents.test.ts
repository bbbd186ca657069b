import { FetchHttpClient, HttpApiClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { DocumentId } from "../../src/Domain/Document.js"
import { Api } from "../../src/Http/Api.js"
import { layerBroken } from "../support/TestStorage.js"
import { messageOf, type Reply, request, startServer } from "../support/TestServer.js"

interface DocumentJson {
  readonly id: string
  readonly title: string
  readonly version: number
  readonly createdAt: string
  readonly updatedAt: string
  readonly deletedAt: string | null
}

interface PageJson {
  readonly items: ReadonlyArray<DocumentJson>
  readonly nextCursor: string | null
}

const asDocument = (reply: Reply): DocumentJson => reply.body as DocumentJson
const asPage = (reply: Reply): PageJson => reply.body as PageJson

const create = (base: string, title: string) =>
  request("POST", `${base}/api/v1/documents`, { title }).pipe(
    Effect.tap((reply) => assert.strictEqual(reply.status, 201, reply.text)),
    Effect.map(asDocument)
  )

const ids = (page: PageJson) => page.items.map((item) => item.id)

/** Every page of `GET /documents?limit=...`, calling `between` after each page but the last. */
const walk = (base: string, limit: number, between: Effect.Effect<void> = Effect.void) =>
  Effect.gen(function* () {
    const seen: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
      const reply = yield* request("GET", `${base}/api/v1/documents?limit=${limit}${query}`)
      assert.strictEqual(reply.status, 200, reply.text)
      const page = asPage(reply)
      assert.isAtMost(page.items.length, limit)
      seen.push(...ids(page))
      cursor = page.nextCursor
      if (cursor !== null) yield* between
      assert.isBelow(++pages, 100, "pagination does not end")
    } while (cursor !== null)
    return seen
  })

describe("documents REST API", () => {
  it.scoped("create, get, list, rename, delete and list again", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const created = yield* create(base, "Design notes")
      assert.strictEqual(created.title, "Design notes")
      assert.strictEqual(created.version, 0)
      assert.strictEqual(created.deletedAt, null)
      assert.strictEqual(created.createdAt, created.updatedAt)
      assert.match(created.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)

      const got = yield* request("GET", `${base}/api/v1/documents/${created.id}`)
      assert.strictEqual(got.status, 200)
      assert.deepStrictEqual(got.body, created)

      const listed = yield* request("GET", `${base}/api/v1/documents`)
      assert.strictEqual(listed.status, 200)
      assert.deepStrictEqual(asPage(listed), { items: [created], nextCursor: null })

      yield* TestClock.adjust("1 second")
      const renamed = yield* request("PATCH", `${base}/api/v1/documents/${created.id}`, { title: "Design notes v2" })
      assert.strictEqual(renamed.status, 200, renamed.text)
      assert.strictEqual(asDocument(renamed).title, "Design notes v2")
      assert.strictEqual(asDocument(renamed).createdAt, created.createdAt)
      assert.isAbove(Date.parse(asDocument(renamed).updatedAt), Date.parse(created.updatedAt))

      const deleted = yield* request("DELETE", `${base}/api/v1/documents/${created.id}`)
      assert.strictEqual(deleted.status, 204)
      assert.strictEqual(deleted.text, "")

      assert.deepStrictEqual(asPage(yield* request("GET", `${base}/api/v1/documents`)).items, [])
      const withDeleted = asPage(yield* request("GET", `${base}/api/v1/documents?include_deleted=true`))
      assert.deepStrictEqual(ids(withDeleted), [created.id])
      assert.isString(withDeleted.items[0]?.deletedAt)
      assert.strictEqual(withDeleted.items[0]?.title, "Design notes v2")

      const gone = yield* request("GET", `${base}/api/v1/documents/${created.id}`)
      assert.strictEqual(gone.status, 404)
      assert.include(messageOf(gone), created.id)
      const kept = yield* request("GET", `${base}/api/v1/documents/${created.id}?include_deleted=true`)
      assert.strictEqual(kept.status, 200)
      assert.isString(asDocument(kept).deletedAt)
    }))

  it.scoped("deleting twice, and renaming or reading an unknown or deleted document, answer 404", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const doc = yield* create(base, "short-lived")
      assert.strictEqual((yield* request("DELETE", `${base}/api/v1/documents/${doc.id}`)).status, 204)
      const again = yield* request("DELETE", `${base}/api/v1/documents/${doc.id}`)
      assert.strictEqual(again.status, 404)
      assert.include(messageOf(again), "not found")
      const renameDeleted = yield* request("PATCH", `${base}/api/v1/documents/${doc.id}`, { title: "back" })
      assert.strictEqual(renameDeleted.status, 404)
      messageOf(renameDeleted)

      const unknown = "00000000-0000-0000-0000-000000000000"
      for (const [method, body] of [["GET", undefined], ["PATCH", { title: "x" }], ["DELETE", undefined]] as const) {
        const reply = yield* request(method, `${base}/api/v1/documents/${unknown}`, body)
        assert.strictEqual(reply.status, 404, `${method}: ${reply.text}`)
        assert.include(messageOf(reply), unknown)
      }
    }))

  it.scoped("titles are trimmed, and bad titles answer 400 with a message", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const doc = yield* create(base, "  \t padded title \n ")
      assert.strictEqual(doc.title, "padded title")
      assert.strictEqual(asDocument(yield* request("GET", `${base}/api/v1/documents/${doc.id}`)).title, "padded title")
      assert.strictEqual(
        asDocument(yield* request("PATCH", `${base}/api/v1/documents/${doc.id}`, { title: "  renamed  " })).title,
        "renamed"
      )
      yield* create(base, "x".repeat(256))

      const bad: ReadonlyArray<readonly [string, unknown]> = [
        ["missing", {}],
        ["empty", { title: "" }],
        ["whitespace only", { title: " \t\n " }],
        ["257 characters", { title: "x".repeat(257) }],
        ["a number", { title: 42 }],
        ["null", { title: null }],
        ["an array body", [{ title: "x" }]],
        ["a string body", JSON.stringify("title")]
      ]
      for (const [name, body] of bad) {
        for (const [method, path] of [["POST", "/api/v1/documents"], ["PATCH", `/api/v1/documents/${doc.id}`]] as const) {
          const reply = yield* request(method, `${base}${path}`, body)
          assert.strictEqual(reply.status, 400, `${method} ${name}: ${reply.text}`)
          assert.include(reply.contentType, "application/json")
          assert.notStrictEqual(messageOf(reply), "", name)
        }
      }
      const missing = yield* request("POST", `${base}/api/v1/documents`, {})
      assert.strictEqual(messageOf(missing), "title: is missing")
      const blank = yield* request("POST", `${base}/api/v1/documents`, { title: "  " })
      assert.strictEqual(messageOf(blank), "title: title must not be empty or only whitespace")
      const long = yield* request("POST", `${base}/api/v1/documents`, { title: "y".repeat(257) })
      assert.strictEqual(messageOf(long), "title: title must be at most 256 characters")

      // Nothing of the rejected requests was stored.
      assert.deepStrictEqual(
        asPage(yield* request("GET", `${base}/api/v1/documents`)).items.map((d) => d.title),
        ["renamed", "x".repeat(256)]
      )
    }))

  it.scoped("malformed JSON answers 400 with a JSON message", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      for (const body of ["{\"title\": ", "not json", "{'title': 'x'}"]) {
        const reply = yield* request("POST", `${base}/api/v1/documents`, body)
        assert.strictEqual(reply.status, 400, reply.text)
        assert.include(reply.contentType, "application/json")
        assert.include(messageOf(reply), "not valid JSON")
      }
      const doc = yield* create(base, "target")
      const patch = yield* request("PATCH", `${base}/api/v1/documents/${doc.id}`, "{")
      assert.strictEqual(patch.status, 400)
      assert.include(messageOf(patch), "not valid JSON")
    }))

  it.scoped("bad limits, include_deleted values and cursors answer 400", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      for (const limit of ["0", "501", "x", "-1", "2.5", ""]) {
        const reply = yield* request("GET", `${base}/api/v1/documents?limit=${limit}`)
        assert.strictEqual(reply.status, 400, `limit=${limit}: ${reply.text}`)
        assert.include(messageOf(reply), "limit")
      }
      for (const limit of ["1", "500"]) {
        assert.strictEqual((yield* request("GET", `${base}/api/v1/documents?limit=${limit}`)).status, 200)
      }
      const flag = yield* request("GET", `${base}/api/v1/documents?include_deleted=yes`)
      assert.strictEqual(flag.status, 400)
      assert.include(messageOf(flag), "include_deleted")

      for (const cursor of ["garbage!", "bm9wZQ", "djE6", "djE6LTE", Buffer.from("v2:3").toString("base64url")]) {
        const reply = yield* request("GET", `${base}/api/v1/documents?cursor=${cursor}`)
        assert.strictEqual(reply.status, 400, `cursor=${cursor}: ${reply.text}`)
        assert.strictEqual(messageOf(reply), "cursor is malformed")
      }
    }))

  it.scoped("limit=2 pages walk every document exactly once, in creation order", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const created: Array<string> = []
      for (let i = 0; i < 7; i++) created.push((yield* create(base, `doc ${i}`)).id)
      assert.deepStrictEqual(yield* walk(base, 2), created)
      assert.deepStrictEqual(yield* walk(base, 7), created)
      assert.deepStrictEqual(yield* walk(base, 500), created)

      const firstPage = asPage(yield* request("GET", `${base}/api/v1/documents?limit=3`))
      assert.deepStrictEqual(ids(firstPage), created.slice(0, 3))
      assert.isString(firstPage.nextCursor)
    }))

  it.scoped("pagination stays correct when documents are created and deleted between pages", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const created: Array<string> = []
      for (let i = 0; i < 5; i++) created.push((yield* create(base, `before ${i}`)).id)
      const toDelete = created[4]
      let round = 0
      const between = Effect.gen(function* () {
        round++
        created.push((yield* create(base, `during ${round}`)).id)
        if (round === 1 && toDelete !== undefined) {
          assert.strictEqual((yield* request("DELETE", `${base}/api/v1/documents/${toDelete}`)).status, 204)
        }
      }).pipe(Effect.orDie)
      // Creating one document per page while walking two per page still ends, since creations only append.
      const seen = yield* walk(base, 2, Effect.suspend(() => (round < 4 ? between : Effect.void)))
      assert.deepStrictEqual(seen, created.filter((id) => id !== toDelete))
      assert.strictEqual(new Set(seen).size, seen.length)
    }))

  it.scoped("storage failures answer 500 with a message", () =>
    Effect.gen(function* () {
      const base = yield* startServer({ storage: layerBroken })
      for (const [method, path, body] of [
        ["POST", "/api/v1/documents", { title: "x" }],
        ["GET", "/api/v1/documents", undefined],
        ["GET", "/api/v1/documents/abc", undefined],
        ["PATCH", "/api/v1/documents/abc", { title: "x" }],
        ["DELETE", "/api/v1/documents/abc", undefined]
      ] as const) {
        const reply = yield* request(method, `${base}${path}`, body)
        assert.strictEqual(reply.status, 500, `${method} ${path}: ${reply.text}`)
        assert.include(messageOf(reply), "storage")
        assert.notInclude(reply.text, "connection refused")
      }
    }))

  it.scoped("the typed client derived from Api talks to the server", () =>
    Effect.gen(function* () {
      const base = yield* startServer()
      const client = yield* HttpApiClient.make(Api, { baseUrl: base })
      // The client encodes the Type side: titles are already trimmed, defaults are explicit.
      const doc = yield* client.documents.create({ payload: { title: "typed" } })
      const id = DocumentId.make(doc.id)
      const page = yield* client.documents.list({ urlParams: { limit: 10, include_deleted: false } })
      assert.deepStrictEqual(page.items.map((d) => d.id), [doc.id])
      const error = yield* Effect.flip(
        client.documents.get({ path: { id: DocumentId.make("unknown") }, urlParams: { include_deleted: false } })
      )
      assert.strictEqual(error._tag, "DocumentNotFound")
      yield* client.documents.delete({ path: { id } })
      const again = yield* client.documents.get({ path: { id }, urlParams: { include_deleted: true } })
      assert.isNotNull(again.deletedAt)
      assert.deepStrictEqual(yield* client.health.check(), { status: "ok" })
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
