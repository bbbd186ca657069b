/**
 * The demo page routes: served from the first directory that has the built files, 503 with a hint before the
 * build, nothing outside the directory.
 */
import { HttpLayerRouter } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as DemoRoute from "../../src/Http/DemoRoute.js"
import { request, startServer } from "../support/TestServer.js"

const withHandler = async <A>(directories: ReadonlyArray<string>, use: (get: (path: string) => Promise<Response>) => Promise<A>) => {
  const { handler, dispose } = HttpLayerRouter.toWebHandler(DemoRoute.layerWith(directories), { disableLogger: true })
  try {
    return await use((path) => handler(new Request(`http://demo.test${path}`)))
  } finally {
    await dispose()
  }
}

describe("DemoRoute", () => {
  it("serves the page at /, /demo and /demo/, and its bundle, from the first directory that has them", async () => {
    const empty = await mkdtemp(join(tmpdir(), "demo-empty-"))
    const built = await mkdtemp(join(tmpdir(), "demo-built-"))
    try {
      await writeFile(join(built, "index.html"), "<title>docsync demo</title>")
      await writeFile(join(built, "app.js"), "console.log(1)")
      await writeFile(join(built, "app.js.map"), "{}")
      await writeFile(join(built, ".secret.js"), "no")
      await withHandler([empty, built], async (get) => {
        for (const path of ["/", "/demo", "/demo/", "/demo/index.html"]) {
          const response = await get(path)
          expect(response.status).toBe(200)
          expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8")
          expect(await response.text()).toContain("docsync demo")
        }
        const script = await get("/demo/app.js")
        expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
        expect(script.headers.get("cache-control")).toBe("no-cache")
        expect(await script.text()).toBe("console.log(1)")
        expect((await get("/demo/app.js.map")).headers.get("content-type")).toBe("application/json; charset=utf-8")
        for (const path of ["/demo/.secret.js", "/demo/missing.js", "/demo/readme.txt", "/demo/..%2Fpackage.json"]) {
          expect((await get(path)).status).toBe(404)
        }
      })
    } finally {
      await rm(empty, { recursive: true })
      await rm(built, { recursive: true })
    }
  })

  it("says how to build the page when it is not built", async () => {
    const empty = await mkdtemp(join(tmpdir(), "demo-empty-"))
    try {
      await withHandler([empty], async (get) => {
        const response = await get("/")
        expect(response.status).toBe(503)
        expect(await response.text()).toContain("npm run build")
      })
    } finally {
      await rm(empty, { recursive: true })
    }
  })

  it.scopedLive("is part of the server's routes", () =>
    Effect.gen(function* () {
      const baseUrl = yield* startServer()
      const reply = yield* request("GET", `${baseUrl}/demo`)
      // 200 once `npm run build` has run, 503 with the hint before: never a 404.
      expect([200, 503]).toContain(reply.status)
      expect(DemoRoute.defaultDirectories.some((d) => d.endsWith(join("dist", "demo/")))).toBe(true)
    }))
})
