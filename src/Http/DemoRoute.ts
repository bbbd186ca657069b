/**
 * The demo page: `GET /` and `GET /demo` (also with a trailing slash) answer its HTML, `GET /demo/:file` its bundle (`app.js`, source map).
 * The files are built by `npm run build` (scripts/build-demo.mjs) into `dist/demo/`; they are looked up on each
 * request, so a server started before the build serves the page once it exists, and says how to build it until
 * then.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Option } from "effect"
import { readFile } from "node:fs/promises"
import { extname, join } from "node:path"
import { fileURLToPath } from "node:url"

/**
 * Where the built page is looked for, in order: beside the compiled server (`dist/Http` -> `dist/demo`), and the
 * project's `dist/demo` when the server runs from source (`src/Http`, with tsx).
 */
export const defaultDirectories: ReadonlyArray<string> = [
  fileURLToPath(new URL("../demo/", import.meta.url)),
  fileURLToPath(new URL("../../dist/demo/", import.meta.url))
]

/** The demo routes, serving the files of the first of `directories` that has them. */
export const layerWith = (directories: ReadonlyArray<string>) => {
  const page = serve(directories, "index.html")
  return Layer.mergeAll(
    HttpLayerRouter.add("GET", "/", page),
    HttpLayerRouter.add("GET", "/demo", page),
    HttpLayerRouter.add(
      "GET",
      "/demo/:file",
      Effect.flatMap(HttpRouter.params, (params) => serve(directories, params.file ?? ""))
    )
  )
}

/** The demo routes of the server (merged into `Server.routes`). */
export const route = layerWith(defaultDirectories)

// ---------------------------------------------------------------------------------------------------------------
// helpers

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".css": "text/css; charset=utf-8"
}

/** A plain file name with a known type: nothing else (no paths, no dot files) is ever read. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/

// Function declarations: `route` above is built when the module loads, before these lines run.
function serve(directories: ReadonlyArray<string>, name: string) {
  return Effect.gen(function* () {
    const type = CONTENT_TYPES[extname(name)]
    if (!SAFE_NAME.test(name) || type === undefined) return notFound
    const found = yield* firstReadable(directories.map((directory) => join(directory, name)))
    return Option.match(found, {
      onNone: () => (name === "index.html" ? notBuilt : notFound),
      onSome: (bytes) =>
        HttpServerResponse.uint8Array(bytes, { contentType: type, headers: { "cache-control": "no-cache" } })
    })
  })
}

function firstReadable(paths: ReadonlyArray<string>) {
  return Effect.promise(async () => {
    for (const path of paths) {
      try {
        return Option.some<Uint8Array>(await readFile(path))
      } catch {
        // not there: try the next place
      }
    }
    return Option.none<Uint8Array>()
  })
}

const notFound = HttpServerResponse.unsafeJson({ message: "not found" }, { status: 404 })

const notBuilt = HttpServerResponse.text(
  "The demo page is not built yet: run `npm run build` (or `npm start`, which builds first), then reload.\n",
  { status: 503, contentType: "text/plain; charset=utf-8" }
)
