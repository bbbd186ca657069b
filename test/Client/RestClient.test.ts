/**
 * The REST client derived from the HttpApi, against a real server on a free port.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as RestClient from "../../src/Client/RestClient.js"
import { startServer } from "../support/TestServer.js"

describe("RestClient", () => {
  it.scopedLive("creates, lists, gets, renames and deletes documents with typed calls (Effect)", () =>
    Effect.gen(function* () {
      const baseUrl = yield* startServer()
      const client = yield* RestClient.make({ baseUrl })
      const created = yield* client.documents.create({ payload: { title: "Notes" } })
      expect(created.title).toBe("Notes")
      expect(created.version).toBe(0)
      const page = yield* client.documents.list({ urlParams: { include_deleted: false, limit: 10 } })
      expect(page.items.map((d) => d.id)).toEqual([created.id])
      const renamed = yield* client.documents.rename({ path: { id: created.id as never }, payload: { title: "Plans" } })
      expect(renamed.title).toBe("Plans")
      const accepted = yield* client.documents.submitUpdate({
        path: { id: created.id as never },
        payload: { opId: "op-1", actorId: "rest", baseVersion: 0, deltaB64: "AQ==" }
      })
      expect(accepted).toEqual({ seq: 1, duplicate: false })
      yield* client.documents.delete({ path: { id: created.id as never } })
      const missing = yield* Effect.flip(client.documents.get({ path: { id: created.id as never }, urlParams: { include_deleted: false } }))
      expect(missing._tag).toBe("DocumentNotFound")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scopedLive("run: a Promise per call, rejecting with the typed error", () =>
    Effect.gen(function* () {
      const baseUrl = yield* startServer()
      const health = yield* Effect.promise(() => RestClient.run({ baseUrl, token: "ignored-without-auth" }, (c) => c.health.check()))
      expect(health).toEqual({ status: "ok" })
      const error = yield* Effect.promise(() =>
        RestClient.run({ baseUrl }, (c) => c.documents.get({ path: { id: "nope" as never }, urlParams: { include_deleted: false } })).then(
          () => undefined,
          (e: unknown) => e
        ))
      expect(error).toMatchObject({ _tag: "DocumentNotFound", documentId: "nope" })
    }))
})
