/**
 * The live memory of idle WebSocket connections: starts docsync (`--dist`, default `dist/`, from `npm run build`)
 * with `bench/gc-probe.cjs` on memory:// storage, opens `--connections` sockets over `--documents` documents, and reads
 * the heap and RSS after full GCs before and after. Complements the idle scenario, whose RSS includes uncollected
 * garbage. Also reports what a loaded document holds: the heap before and after the documents are first joined and
 * left (they stay loaded, each waiting out DOCUMENT_IDLE_MS), which includes the code those first joins warmed up.
 *
 * With `--target baseline` it measures the benchmark's baseline relay (`bench/baseline-relay.ts`) the same way, so
 * that the two can be compared without the garbage the idle scenario's RSS includes.
 *
 *   npm run build && node --import tsx bench/idle-heap.ts [--connections 2000] [--documents 200] [--dist dist] [--target baseline]
 */
import { spawn } from "node:child_process"
import { join, resolve } from "node:path"
import { WebSocket } from "ws"
import { num, parseFlags, sleep, str } from "./lib.js"

const flags = parseFlags(process.argv.slice(2))
const connections = num(flags, "connections", 2000)
const documents = num(flags, "documents", 200)
const dist = resolve(str(flags, "dist", "dist"))
const target = str(flags, "target", "docsync")
if (target !== "docsync" && target !== "baseline") throw new Error(`--target is docsync or baseline, not ${target}`)
const baseline = target === "baseline"
const port = 20_000 + Math.floor(Math.random() * 10_000)
const entry = baseline ? ["--import", "tsx", join(import.meta.dirname, "baseline-relay.ts")] : [join(dist, "main.js")]
const server = spawn(process.execPath, ["--expose-gc", "-r", join(import.meta.dirname, "gc-probe.cjs"), ...entry], {
  env: {
    ...process.env,
    PORT: String(port),
    DATABASE_URL: "memory://",
    LOG_LEVEL: "warning",
    MAX_CONNECTIONS: "1000000",
    MAX_CONNECTIONS_PER_DOCUMENT: "1000000"
  },
  stdio: ["ignore", "ignore", "pipe"]
})
type Memory = Record<"rss" | "heapUsed" | "external", number>
let memory: ((m: Memory) => void) | undefined
server.stderr.on("data", (chunk: Buffer) => {
  for (const line of String(chunk).split("\n")) {
    if (!line.startsWith("MEM ")) continue
    memory?.(Object.fromEntries(line.slice(4).split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)])) as Memory)
  }
})
const measure = () => new Promise<Memory>((done) => {
  memory = done
  server.kill("SIGUSR2")
})
const base = `http://127.0.0.1:${port}`
try {
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${base}/api/v1/health`).then(() => true, () => false)
    if (ok) break
    await sleep(100)
  }
  const ids: Array<string> = []
  for (let i = 0; i < documents; i++) {
    // The relay has no REST API: any id is a room.
    if (baseline) {
      ids.push(`room-${i}`)
      continue
    }
    const reply = await fetch(`${base}/api/v1/documents`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ title: `d${i}` }) })
    ids.push(((await reply.json()) as { id: string }).id)
  }
  const open = (id: string) => new Promise<WebSocket>((done, fail) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/documents/${id}`)
    ws.on("message", (data) => { if (String(data).includes('"type":"state"')) done(ws) })
    ws.on("error", fail)
  })
  const unloaded = await measure()
  // One round opened and closed first, so that documents are loaded and code is warm in both measurements.
  const warm = await Promise.all(ids.map(open))
  for (const ws of warm) ws.close()
  await sleep(500)
  const before = await measure()
  const sockets: Array<WebSocket> = []
  for (let i = 0; i < connections; i += 50) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(50, connections - i) }, (_, j) => open(ids[(i + j) % ids.length] as string))))
  }
  await sleep(1000)
  const after = await measure()
  const per = (key: keyof Memory) => ((after[key] - before[key]) / connections / 1024).toFixed(1)
  const perDocument = (key: keyof Memory) => ((before[key] - unloaded[key]) / ids.length / 1024).toFixed(1)
  // The relay drops a room when its last socket leaves: it keeps nothing per document between the two rounds.
  if (!baseline) {
    console.log(`${ids.length} documents loaded (and the code they warmed), per document after full GCs: heap ${perDocument("heapUsed")} KB, RSS ${perDocument("rss")} KB`)
  }
  console.log(`${connections} idle connections, per connection after full GCs: heap ${per("heapUsed")} KB, RSS ${per("rss")} KB`)
  // As the idle scenario counts (from before the documents were first joined), without its uncollected garbage;
  // for the relay, its rooms (made by these connections) and the code the first round warmed.
  const whole = (key: keyof Memory) => ((after[key] - unloaded[key]) / connections / 1024).toFixed(1)
  console.log(`counted from before the first round, as the idle scenario counts: heap ${whole("heapUsed")} KB, RSS ${whole("rss")} KB`)
  for (const ws of sockets) ws.terminate()
} finally {
  server.kill("SIGTERM")
}
