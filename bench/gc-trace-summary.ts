/**
 * Summarises a `node --trace-gc` log of the server (not used by the benchmark itself): how much the main thread
 * promoted to V8's old generation per second, and when full collections (Mark-Compact) ran. What a young
 * collection promotes is what outlived two of them; under a steady load, objects that should die young and are
 * promoted anyway (kept by a dead old object, for instance) show here long before they show in the RSS.
 *
 *   DATABASE_URL=sqlite:///./gc.db node --trace-gc dist/main.js > server.log 2>&1 &
 *   node --import tsx bench/load.ts --scenario fanout --url http://127.0.0.1:8000 --warmup 5 --duration 20
 *   node --import tsx bench/gc-trace-summary.ts --log server.log [--from 8000]
 *
 * `--from` (milliseconds of the isolate's clock, default 8000) skips the start-up. The main thread is the isolate
 * of the first Mark-Compact line (the SQLite commit worker has an isolate of its own, with a far smaller heap).
 */
import { readFileSync } from "node:fs"
import { num, parseFlags, str } from "./lib.js"

const flags = parseFlags(process.argv.slice(2))
const file = str(flags, "log", "")
if (file === "") throw new Error("usage: gc-trace-summary.ts --log <trace-gc log> [--from ms]")
const from = num(flags, "from", 8000)

// Also "Mark-Compact (reduce) …" (a full collection that shrinks the heap).
const LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+(\d+) ms: (Scavenge|Mark-Compact)(?: \([^)]*\))?\s+([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\)/
let main: string | undefined
let previousAfter: number | undefined
const promoted: Array<number> = []
const at: Array<number> = []
const fullCollections: Array<string> = []
for (const line of readFileSync(file, "utf8").split("\n")) {
  const match = LINE.exec(line)
  if (match === null) continue
  const [, isolate, ms, kind, , , after] = match as unknown as [string, string, string, string, string, string, string]
  if (main === undefined && kind === "Mark-Compact") main = isolate
  if (isolate !== main) continue
  const t = Number(ms)
  if (kind === "Mark-Compact") {
    if (t >= from) fullCollections.push(`${(t / 1000).toFixed(1)} s (${line.slice(line.indexOf("Mark-Compact") + 13).split(",")[0]})`)
    previousAfter = undefined
    continue
  }
  // The heap after a young collection grows by what it promoted (the young generation's survivors stay level),
  // and by what was allocated in the old generation directly since the last one (large objects, some tables).
  if (previousAfter !== undefined && t >= from) {
    promoted.push(Number(after) - previousAfter)
    at.push(t)
  }
  previousAfter = Number(after)
}
const seconds = at.length > 1 ? ((at[at.length - 1] as number) - (at[0] as number)) / 1000 : 0
const total = promoted.reduce((a, b) => a + b, 0)
console.log(`young collections: ${promoted.length}, every ${promoted.length > 0 ? ((seconds * 1000) / promoted.length).toFixed(0) : "-"} ms`)
console.log(`promoted: ${promoted.length > 0 ? (total / promoted.length).toFixed(3) : "-"} MB per young collection, ${seconds > 0 ? (total / seconds).toFixed(2) : "-"} MB/s`)
console.log(`full collections from ${from} ms: ${fullCollections.length}${fullCollections.length > 0 ? `\n  ${fullCollections.join("\n  ")}` : ""}`)
