/**
 * Soak check (issue 5, item 6): not a unit test, a script to run by hand or in a nightly job.
 *
 *   npx tsx scripts/soak.ts [--seconds 60] [--connections 2000] [--documents 200]
 *                           [--update-ms 10000] [--session-ms 3000-9000] [--idle-ms 2000] [--warmup-seconds 15]
 *                           [--json results.json] [--cpu-prof <dir>]
 *
 * Starts docsync as a child process on loopback (SQLite in a temp directory, DOCUMENT_IDLE_MS small), then keeps
 * `connections` WebSocket clients joining and leaving `documents` documents: each client joins a random document
 * (half the time resuming with `since`), announces presence, sends an update every ~`update-ms`, answers snapshot
 * requests, and leaves after a random session, once its updates are acked; then it joins another. A warm-up round of
 * the same load comes first (as long as the soak unless --warmup-seconds), and the server's RSS once that went idle is
 * the baseline.
 *
 * Afterwards it checks, and exits 1 if any check fails:
 * - every document unloaded and no connection left (`docsync_documents_loaded` and `docsync_connections` from
 *   `GET /metrics`), within DOCUMENT_IDLE_MS plus a margin;
 * - RSS (VmRSS from /proc/<pid>/status) back within 20% of the baseline (both measured idle, after full GCs
 *   forced through the server's inspector on a loopback port; the V8 heap in use is reported beside it);
 * - the stored logs hold exactly the acked updates, with contiguous seqs;
 * - no error frame and no close the clients did not ask for.
 * The figures are printed (and written as JSON with --json); docs/operations.md records a run.
 *
 * Plain async code rather than Effect: it is a driver of sockets and timers, and reads best as one.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { parseArgs } from "node:util"
import WebSocket from "ws"
import { type ChildServer, kill, rssBytes, spawnServer } from "../test/support/ChildServer.js"

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    connections: { type: "string", default: "2000" },
    documents: { type: "string", default: "200" },
    "update-ms": { type: "string", default: "10000" },
    "session-ms": { type: "string", default: "3000-9000" },
    "idle-ms": { type: "string", default: "2000" },
    "warmup-seconds": { type: "string", default: "" },
    json: { type: "string" },
    "cpu-prof": { type: "string" }
  }
})

const positive = (name: string, text: string | undefined): number => {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${text}`)
  return n
}
const SECONDS = positive("seconds", args.seconds)
const CONNECTIONS = Math.floor(positive("connections", args.connections))
const DOCUMENTS = Math.floor(positive("documents", args.documents))
const UPDATE_MS = positive("update-ms", args["update-ms"])
const sessionRange = (args["session-ms"] ?? "").split("-").map((part) => positive("session-ms", part))
const SESSION_MIN = sessionRange[0] ?? 3000
const SESSION_MAX = sessionRange[1] ?? SESSION_MIN
const IDLE_MS = positive("idle-ms", args["idle-ms"])
/**
 * A full round of the same load by default: a V8 process does not hand its grown heap and malloc arenas back after a
 * load, so RSS is compared between idle-after-one-round and idle-after-the-next, which is what a leak would grow.
 */
const WARMUP_SECONDS = args["warmup-seconds"] === "" ? SECONDS : positive("warmup-seconds", args["warmup-seconds"])
/** RSS may end at most this much above the idle baseline. */
const RSS_TOLERANCE = 0.2
/** How long to wait for unloading (past DOCUMENT_IDLE_MS) and for RSS to settle. */
const SETTLE_MS = 30_000
/** Bound on any single wait for the server (join, acks of a leaving client, close). */
const WAIT_MS = 15_000

interface Stats {
  joins: number
  joinMs: Array<number>
  sinceJoins: number
  updatesSent: number
  acks: number
  ackMs: Array<number>
  remoteUpdates: number
  snapshotsSent: number
  snapshotAcks: number
  errors: Record<string, number>
  /** Closes the client did not ask for, by code. */
  unexpectedCloses: Record<string, number>
  /** Clients that gave up waiting (join, acks or close): the server did not answer within WAIT_MS. */
  timeouts: number
  /** Socket errors before or after the join (connection refused or reset...), by code. */
  socketErrors: Record<string, number>
  /** opId -> document, for every acked update. */
  acked: Map<string, string>
}

const newStats = (): Stats => ({
  joins: 0,
  joinMs: [],
  sinceJoins: 0,
  updatesSent: 0,
  acks: 0,
  ackMs: [],
  remoteUpdates: 0,
  snapshotsSent: 0,
  snapshotAcks: 0,
  errors: {},
  unexpectedCloses: {},
  timeouts: 0,
  socketErrors: {},
  acked: new Map()
})

const main = async (): Promise<number> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "docsync-soak-"))
  const server = await spawnServer({
    env: { DATABASE_URL: `sqlite:///${Path.join(dir, "soak.db")}`, DOCUMENT_IDLE_MS: String(IDLE_MS), LOG_LEVEL: "warning" },
    // The inspector (loopback, random port) lets the script force a full GC before it measures memory, so that
    // garbage not yet collected is not mistaken for a leak.
    nodeArgs: ["--inspect=127.0.0.1:0", ...(args["cpu-prof"] === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", args["cpu-prof"]])]
  })
  console.log(`docsync pid ${server.pid} at ${server.baseUrl}; ${CONNECTIONS} connections, ${DOCUMENTS} documents, ${SECONDS} s`)
  try {
    const documents: Array<string> = []
    for (let i = 0; i < DOCUMENTS; i++) documents.push(await createDocument(server, `soak-${i}`))
    const rssStart = rssBytes(server.pid)

    console.log(`warm-up: ${WARMUP_SECONDS} s of the same load`)
    const warmup = newStats()
    await load(server, documents, WARMUP_SECONDS * 1000, warmup, "w")
    const warmIdle = await settle(server)
    const memoryBaseline = await memoryAfterGc(server)
    const rssBaseline = rssBytes(server.pid)
    console.log(`baseline RSS ${mb(rssBaseline)} (start ${mb(rssStart)}), heap ${mb(memoryBaseline.heapUsed)}; idle after warm-up: ${JSON.stringify(warmIdle)}`)

    console.log(`soak: ${SECONDS} s`)
    const stats = newStats()
    // The driver's own lag: when it is high, latencies measured here are the driver's, not the server's.
    const driverDelay = monitorEventLoopDelay({ resolution: 10 })
    driverDelay.enable()
    const sampler = samplePeaks(server)
    const soakStarted = Date.now()
    await load(server, documents, SECONDS * 1000, stats, "s")
    const soakMs = Date.now() - soakStarted
    const peak = sampler.stop()
    driverDelay.disable()
    const metricsAtEnd = await metrics(server)

    const idleStarted = Date.now()
    const idle = await settle(server)
    const unloadMs = Date.now() - idleStarted
    const memoryFinal = await memoryAfterGc(server)
    const rssFinal = await rssSettled(server, rssBaseline)
    const stored = await checkStored(server, documents, new Map([...warmup.acked, ...stats.acked]))

    const checks = {
      "every document unloaded": idle.documentsLoaded === 0,
      "no connection left": idle.connections === 0,
      [`RSS within ${RSS_TOLERANCE * 100}% of baseline`]: rssFinal <= rssBaseline * (1 + RSS_TOLERANCE),
      "stored logs = acked updates, contiguous": stored.problems.length === 0,
      "no error frames": Object.keys(stats.errors).length === 0 && Object.keys(warmup.errors).length === 0,
      "no unexpected closes": Object.keys(stats.unexpectedCloses).length === 0,
      "no client timeouts": stats.timeouts === 0 && warmup.timeouts === 0
    }
    const results = {
      settings: { seconds: SECONDS, connections: CONNECTIONS, documents: DOCUMENTS, updateMs: UPDATE_MS, sessionMs: [SESSION_MIN, SESSION_MAX], idleMs: IDLE_MS, warmupSeconds: WARMUP_SECONDS, cpus: Os.cpus().length, node: process.version },
      soak: {
        seconds: round(soakMs / 1000),
        joins: stats.joins,
        joinsPerSecond: round(stats.joins / (soakMs / 1000)),
        joinsWithSince: stats.sinceJoins,
        joinLatencyMs: percentiles(stats.joinMs),
        updatesAcked: stats.acks,
        updatesPerSecond: round(stats.acks / (soakMs / 1000)),
        ackLatencyMs: percentiles(stats.ackMs),
        remoteUpdatesReceived: stats.remoteUpdates,
        snapshotsSent: stats.snapshotsSent,
        snapshotAcks: stats.snapshotAcks,
        errors: stats.errors,
        unexpectedCloses: stats.unexpectedCloses,
        timeouts: stats.timeouts,
        socketErrors: stats.socketErrors,
        driverEventLoopDelayMs: { p99: round(driverDelay.percentile(99) / 1e6), max: round(driverDelay.max / 1e6) },
        serverPeaks: { connections: peak.connections, documentsLoaded: peak.documentsLoaded, eventLoopDelayMaxMs: round(peak.eventLoopDelayMaxMs) },
        serverAtEnd: {
          updatesStored: metricsAtEnd["docsync_updates_total{outcome=\"stored\"}"] ?? 0,
          transactions: metricsAtEnd["docsync_storage_batch_size_count"] ?? 0,
          meanCommitMs: round(((metricsAtEnd["docsync_storage_commit_seconds_sum"] ?? 0) / Math.max(1, metricsAtEnd["docsync_storage_commit_seconds_count"] ?? 0)) * 1000),
          slowConsumerCloses: metricsAtEnd["docsync_slow_consumer_closes_total"] ?? 0
        }
      },
      memory: {
        rssStartMb: toMb(rssStart),
        rssBaselineMb: toMb(rssBaseline),
        rssPeakMb: toMb(peak.rss),
        rssFinalMb: toMb(rssFinal),
        finalOverBaseline: round(rssFinal / rssBaseline),
        afterFullGc: {
          baseline: { heapUsedMb: toMb(memoryBaseline.heapUsed), externalMb: toMb(memoryBaseline.external), arrayBuffersMb: toMb(memoryBaseline.arrayBuffers) },
          final: { heapUsedMb: toMb(memoryFinal.heapUsed), externalMb: toMb(memoryFinal.external), arrayBuffersMb: toMb(memoryFinal.arrayBuffers) }
        }
      },
      afterwards: { ...idle, unloadedWithinMs: unloadMs, storedUpdates: stored.total, storageProblems: stored.problems.slice(0, 10) },
      checks
    }
    console.log(JSON.stringify(results, null, 2))
    if (args.json !== undefined) Fs.writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`)
    const failed = Object.entries(checks).filter(([, ok]) => !ok).map(([name]) => name)
    console.log(failed.length === 0 ? "soak check: PASS" : `soak check: FAIL (${failed.join("; ")})`)
    return failed.length === 0 ? 0 : 1
  } finally {
    const exit = await kill(server, "SIGTERM")
    if (exit.code !== 0) console.log(`server exit ${JSON.stringify(exit)}:\n${server.output().slice(-4000)}`)
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------------------------

/** CONNECTIONS clients, each joining one random document after another until `durationMs` is over. */
const load = async (server: ChildServer, documents: ReadonlyArray<string>, durationMs: number, stats: Stats, prefix: string) => {
  const deadline = Date.now() + durationMs
  const slots = Array.from({ length: CONNECTIONS }, async (_, slot) => {
    // Spread the first joins over a second rather than 2,000 at once.
    await sleep(Math.random() * 1000)
    const known = new Map<string, number>()
    for (let session = 0; Date.now() < deadline; session++) {
      const documentId = documents[Math.floor(Math.random() * documents.length)] ?? ""
      const stay = SESSION_MIN + Math.random() * (SESSION_MAX - SESSION_MIN)
      const since = Math.random() < 0.5 ? known.get(documentId) : undefined
      const last = await clientSession(server, documentId, `${prefix}${slot}-${session}`, Math.min(stay, deadline - Date.now()), since, stats)
      if (last !== undefined) known.set(documentId, last)
      await sleep(Math.random() * 200)
    }
  })
  await Promise.all(slots)
}

/**
 * One client on one document: join, presence, updates every ~UPDATE_MS, answer snapshot requests, then leave once
 * every update is acked. Resolves with the last version it saw, or undefined if it never joined.
 */
const clientSession = (
  server: ChildServer,
  documentId: string,
  name: string,
  stayMs: number,
  since: number | undefined,
  stats: Stats
): Promise<number | undefined> =>
  new Promise((resolve) => {
    const query = new URLSearchParams({ actorId: name })
    if (since !== undefined) query.set("since", String(since))
    const started = Date.now()
    const ws = new WebSocket(`${server.baseUrl.replace("http", "ws")}/ws/documents/${documentId}?${query}`)
    const pending = new Map<string, number>()
    let version: number | undefined
    let leaving = false
    let n = 0
    let updateTimer: NodeJS.Timeout | undefined
    let waitTimer: NodeJS.Timeout | undefined
    const timers: Array<NodeJS.Timeout> = []

    let gaveUp = false
    const giveUp = (what: string) => {
      gaveUp = true
      stats.timeouts++
      if (stats.timeouts <= 5) console.log(`client ${name}: no ${what} within ${WAIT_MS} ms`)
      ws.terminate()
    }
    const leave = () => {
      leaving = true
      clearTimeout(updateTimer)
      if (pending.size === 0) return ws.close(1000)
      waitTimer = setTimeout(() => giveUp(`acks for ${pending.size} updates`), WAIT_MS)
    }
    const scheduleUpdate = () => {
      updateTimer = setTimeout(() => {
        if (leaving || ws.readyState !== WebSocket.OPEN) return
        const opId = `${name}-${n++}`
        pending.set(opId, Date.now())
        stats.updatesSent++
        ws.send(JSON.stringify({ type: "update", opId, baseVersion: version ?? 0, actorId: name, deltaB64: Buffer.from(`${opId};`).toString("base64") }))
        scheduleUpdate()
      }, UPDATE_MS * (0.5 + Math.random()))
    }
    const joinTimer = setTimeout(() => giveUp("state"), WAIT_MS)
    timers.push(joinTimer)

    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString()) as Record<string, unknown>
      const seq = typeof frame["seq"] === "number" ? frame["seq"] : undefined
      switch (frame["type"]) {
        case "state":
          clearTimeout(joinTimer)
          version = Number(frame["version"])
          stats.joins++
          if (since !== undefined) stats.sinceJoins++
          stats.joinMs.push(Date.now() - started)
          ws.send(JSON.stringify({ type: "presence", state: { cursor: Math.floor(Math.random() * 1000), name } }))
          timers.push(setTimeout(leave, stayMs))
          return scheduleUpdate()
        case "ack": {
          const sentAt = pending.get(String(frame["opId"]))
          if (sentAt !== undefined) {
            pending.delete(String(frame["opId"]))
            stats.acks++
            stats.ackMs.push(Date.now() - sentAt)
            stats.acked.set(String(frame["opId"]), documentId)
          }
          if (seq !== undefined && frame["duplicate"] !== true) version = Math.max(version ?? 0, seq)
          if (leaving && pending.size === 0) {
            clearTimeout(waitTimer)
            ws.close(1000)
          }
          return
        }
        case "remote_update":
          stats.remoteUpdates++
          if (seq !== undefined) version = Math.max(version ?? 0, seq)
          return
        case "snapshot_request":
          stats.snapshotsSent++
          return ws.send(JSON.stringify({ type: "snapshot", version: frame["version"], snapshotB64: Buffer.from(`snapshot of ${documentId} at ${String(frame["version"])}`).toString("base64") }))
        case "snapshot_ack":
          stats.snapshotAcks++
          return
        case "error": {
          const code = String(frame["code"])
          // A snapshot that lost a race with another client's is fine; anything else is counted as a problem.
          if (code === "snapshot_rejected") return
          stats.errors[code] = (stats.errors[code] ?? 0) + 1
          if (typeof frame["opId"] === "string") pending.delete(frame["opId"])
          return
        }
        default:
          return
      }
    })
    ws.on("error", (error: NodeJS.ErrnoException) => {
      if (gaveUp) return
      const code = error.code ?? error.message.slice(0, 40)
      stats.socketErrors[code] = (stats.socketErrors[code] ?? 0) + 1
    })
    ws.on("close", (code) => {
      clearTimeout(updateTimer)
      clearTimeout(waitTimer)
      for (const timer of timers) clearTimeout(timer)
      // Our own terminate() after a timeout is counted as a timeout, not as a close.
      if (!gaveUp && (!leaving || code !== 1000)) stats.unexpectedCloses[code] = (stats.unexpectedCloses[code] ?? 0) + 1
      resolve(version)
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// Server-side figures
// ---------------------------------------------------------------------------------------------------------------

interface Idle {
  readonly documentsLoaded: number
  readonly connections: number
}

/** Waits (bounded) until the server reports no loaded document and no connection; returns what it saw last. */
const settle = async (server: ChildServer): Promise<Idle> => {
  const deadline = Date.now() + IDLE_MS + SETTLE_MS
  let seen: Idle = { documentsLoaded: -1, connections: -1 }
  while (Date.now() < deadline) {
    const m = await metrics(server)
    seen = { documentsLoaded: m["docsync_documents_loaded"] ?? -1, connections: m["docsync_connections"] ?? -1 }
    if (seen.documentsLoaded === 0 && seen.connections === 0) break
    await sleep(250)
  }
  return seen
}

/** Polls RSS (bounded) until it is within the tolerance of the baseline; returns the last sample. */
const rssSettled = async (server: ChildServer, baseline: number): Promise<number> => {
  const deadline = Date.now() + SETTLE_MS
  let rss = rssBytes(server.pid)
  while (rss > baseline * (1 + RSS_TOLERANCE) && Date.now() < deadline) {
    await sleep(1000)
    rss = rssBytes(server.pid)
  }
  return rss
}

/** Peaks while the load runs: RSS every 500 ms, the server's gauges every 2 s. */
const samplePeaks = (server: ChildServer) => {
  const peaks = { rss: rssBytes(server.pid), connections: 0, documentsLoaded: 0, eventLoopDelayMaxMs: 0 }
  const rssTimer = setInterval(() => {
    peaks.rss = Math.max(peaks.rss, rssBytes(server.pid))
  }, 500)
  const metricsTimer = setInterval(() => {
    metrics(server).then((m) => {
      peaks.connections = Math.max(peaks.connections, m["docsync_connections"] ?? 0)
      peaks.documentsLoaded = Math.max(peaks.documentsLoaded, m["docsync_documents_loaded"] ?? 0)
      peaks.eventLoopDelayMaxMs = Math.max(peaks.eventLoopDelayMaxMs, (m["nodejs_eventloop_delay_max_seconds"] ?? 0) * 1000)
    }, () => {})
  }, 2000)
  return {
    stop: () => {
      clearInterval(rssTimer)
      clearInterval(metricsTimer)
      return peaks
    }
  }
}

/** The gauges and counters of `GET /metrics` (series of one name summed over their labels). */
const metrics = async (server: ChildServer): Promise<Record<string, number>> => {
  const response = await fetch(`${server.baseUrl}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) })
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}: docsync has no metrics endpoint?`)
  const out: Record<string, number> = {}
  for (const line of (await response.text()).split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (match === null) continue
    const [, name = "", labels = "", value = "0"] = match
    const key = name.endsWith("_bucket") ? undefined : labels.includes("outcome=") || labels.includes("code=") ? `${name}${labels}` : name
    if (key !== undefined) out[key] = (out[key] ?? 0) + Number(value)
  }
  return out
}

/** Every document's stored log: contiguous seqs, and exactly the acked opIds. */
const checkStored = async (server: ChildServer, documents: ReadonlyArray<string>, acked: ReadonlyMap<string, string>) => {
  const problems: Array<string> = []
  const expected = new Map<string, Set<string>>()
  for (const [opId, documentId] of acked) {
    const set = expected.get(documentId) ?? new Set<string>()
    set.add(opId)
    expected.set(documentId, set)
  }
  let total = 0
  for (const documentId of documents) {
    const opIds: Array<string> = []
    let after = 0
    for (let page = 0; page < 1_000; page++) {
      const response = await fetch(`${server.baseUrl}/api/v1/documents/${documentId}/updates?after=${after}&limit=10000`)
      const body = (await response.json()) as { updates: Array<{ seq: number; opId: string }> }
      for (const update of body.updates) {
        if (update.seq !== opIds.length + 1) problems.push(`${documentId}: seq ${update.seq} after ${opIds.length}`)
        opIds.push(update.opId)
      }
      if (body.updates.length < 10_000) break
      after = opIds.length
    }
    total += opIds.length
    const want = expected.get(documentId) ?? new Set<string>()
    const stored = new Set(opIds)
    if (stored.size !== opIds.length) problems.push(`${documentId}: an opId stored twice`)
    for (const opId of want) if (!stored.has(opId)) problems.push(`${documentId}: acked ${opId} is not stored`)
    for (const opId of stored) if (!want.has(opId)) problems.push(`${documentId}: ${opId} stored but never acked`)
  }
  return { total, problems }
}

interface MemoryUsage {
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
}

/**
 * Two full garbage collections in the server (through its inspector, `HeapProfiler.collectGarbage`), then its
 * `process.memoryUsage()`.
 */
const memoryAfterGc = async (server: ChildServer): Promise<MemoryUsage> => {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(server.output())?.[1]
  if (url === undefined) throw new Error("the server's inspector address is not in its output")
  const ws = new WebSocket(url)
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve())
    ws.once("error", reject)
  })
  let id = 0
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const mine = ++id
      const timer = setTimeout(() => reject(new Error(`inspector: no answer to ${method}`)), WAIT_MS)
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown> }
        if (message.id !== mine) return
        clearTimeout(timer)
        ws.off("message", onMessage)
        resolve(message.result ?? {})
      }
      ws.on("message", onMessage)
      ws.send(JSON.stringify({ id: mine, method, params }))
    })
  try {
    await call("HeapProfiler.collectGarbage")
    await call("HeapProfiler.collectGarbage")
    const result = await call("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true })
    const value = (result["result"] as { value?: unknown } | undefined)?.value
    return JSON.parse(String(value)) as MemoryUsage
  } finally {
    ws.close()
  }
}

const createDocument = async (server: ChildServer, title: string): Promise<string> => {
  const response = await fetch(`${server.baseUrl}/api/v1/documents`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title })
  })
  if (response.status !== 201) throw new Error(`create answered ${response.status}: ${await response.text()}`)
  return ((await response.json()) as { id: string }).id
}

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const round = (n: number) => Math.round(n * 100) / 100
const toMb = (bytes: number) => round(bytes / 1024 / 1024)
const mb = (bytes: number) => `${toMb(bytes)} MB`

const percentiles = (samples: ReadonlyArray<number>) => {
  if (samples.length === 0) return { p50: null, p99: null, max: null }
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? null }
}

process.exitCode = await main()
