/**
 * WebSocket upgrades that race with shutdown: every socket ends up closed, none is left hanging.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import WebSocket from "ws"
import { request, startServer } from "../support/TestServer.js"

describe("shutdown", () => {
  it.live("sockets opened while the server shuts down are all closed, none left hanging", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const url = yield* startServer().pipe(Scope.extend(scope))
      const id = ((yield* request("POST", `${url}/api/v1/documents`, { title: "race" })).body as { id: string }).id
      const sockets: Array<WebSocket> = []
      const joined: Array<Promise<void>> = []
      const open = (i: number) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}/ws/documents/${id}?actorId=c${i}`)
        sockets.push(ws)
        ws.on("error", () => {})
        joined.push(new Promise<void>((resolve) => ws.once("message", () => resolve())))
        return new Promise<void>((resolve) => ws.once("close", () => resolve()))
      }
      // Half of them joined, half of them on their way in when the shutdown starts.
      const ended = Array.from({ length: 100 }, (_, i) => open(i))
      yield* Effect.promise(() => Promise.all(joined))
      ended.push(...Array.from({ length: 100 }, (_, i) => open(100 + i)))
      yield* Scope.close(scope, Exit.void)
      const settled = yield* Effect.promise(() =>
        Promise.race([Promise.all(ended).then(() => "all closed"), new Promise((r) => setTimeout(() => r("timeout"), 5000))])
      )
      const hanging = sockets.filter((ws) => ws.readyState !== WebSocket.CLOSED).length
      assert.strictEqual(settled, "all closed", `${hanging} socket(s) neither closed nor failed 5 s after shutdown`)
    }))
})
