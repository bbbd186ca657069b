#!/usr/bin/env node
// Bundles the demo page (demo/main.ts and what it imports: the client SDK, the Yjs binding, the REST client)
// into dist/demo/app.js for browsers, and copies demo/index.html beside it. The server serves that folder at
// `/` and `/demo` (src/Http/DemoRoute.ts). Usage: node scripts/build-demo.mjs [outdir]
import { build } from "esbuild"
import { copyFile, mkdir, stat } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const outdir = resolve(process.argv[2] ?? join(root, "dist", "demo"))

await mkdir(outdir, { recursive: true })
await build({
  entryPoints: [join(root, "demo", "main.ts")],
  outfile: join(outdir, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning"
})
await copyFile(join(root, "demo", "index.html"), join(outdir, "index.html"))
const { size } = await stat(join(outdir, "app.js"))
console.log(`demo bundled: ${join(outdir, "app.js")} (${Math.round(size / 1024)} KiB)`)
