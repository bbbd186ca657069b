/**
 * `npm run bench`: the benchmark of issue 6. For every scenario, repeat and target (docsync on a storage backend, the
 * baseline relay, or the durable floor: bench/durable-relay.ts), it starts the server as a child process on a free
 * loopback port, runs the load generator (bench/load.ts) in its own process, samples the server's and the
 * generator's CPU and RSS from /proc (every second and at the generator's phase marks), stops the server, and
 * finally prints a table of medians (docsync / baseline, and the floor / baseline where it ran) with the targets of
 * issue 6, and writes everything to bench/results/<timestamp>.json.
 *
 *   npm run bench                                   # every scenario, 3 repeats (~10 min on 2 cores)
 *   npm run bench -- --quick                        # shorter scenarios, 1 repeat (~2 min)
 *   npm run bench -- --scenarios fanout,join --repeats 5
 *   npm run bench -- --soak                         # adds the 60 s memory-flatness fanout run
 *   npm run bench -- --scenarios fanout --repeats 1 --cpu-prof   # profile docsync (node --cpu-prof)
 *   npm run bench -- --fanout.duration 20 --idle.sockets 2000   # per-scenario load flags (see bench/README.md)
 *   npm run bench -- --scenarios many-docs --targets docsync-memory,docsync-sqlite,baseline   # other servers
 */
import { execFileSync, fork, spawn, type ChildProcess } from "node:child_process"
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { availableParallelism, getPriority, release, setPriority, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  bool,
  cpuPercent,
  cpuOfCommand,
  linearFit,
  machineCpu,
  machinePercent,
  median,
  runWaitPercent,
  num,
  parseFlags,
  type ProcSample,
  round,
  sampleProc,
  setClockTicks,
  sleep,
  str
} from "./lib.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const benchDir = join(root, "bench")

// ---------------------------------------------------------------------------------------------------------------
// configuration

const RUNNER_FLAGS = new Set(["priority", "ref", "noisy", "retries", "quiet", "quiet-wait", "quick", "repeats", "scenarios", "soak", "server", "build", "out", "cpu-prof", "cpu-prof-dir", "pg", "help", "targets"])
const flags = parseFlags(process.argv.slice(2))
if (bool(flags, "help", false)) {
  console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("*/")[0])
  process.exit(0)
}
const quick = bool(flags, "quick", false)
const repeats = num(flags, "repeats", quick ? 1 : 3)
const serverMode = str(flags, "server", "dist")
if (serverMode !== "tsx" && serverMode !== "dist") throw new Error("--server must be tsx or dist")
const cpuProf = bool(flags, "cpu-prof", false)
const cpuProfDir = str(flags, "cpu-prof-dir", join(tmpdir(), `docsync-bench-prof-${Date.now()}`))
const usePg = bool(flags, "pg", true)
/**
 * Scheduling priority (nice) of the runner, inherited by the servers and the generator it starts (not by PostgreSQL's
 * backends): -10 by default when allowed (root or CAP_SYS_NICE), so that other work on a shared machine disturbs the
 * measurement less. `--priority 0` leaves it alone.
 */
const priority = (() => {
  const wanted = Number(flags.get("priority") ?? -10)
  if (!Number.isInteger(wanted) || wanted < -20 || wanted > 19) throw new Error("--priority must be an integer in -20..19")
  try {
    if (wanted !== 0) setPriority(process.pid, wanted)
    // With sched_autogroup (a group per session), nice only ranks processes inside the session: give the session's
    // group the same nice so that it counts against other sessions too.
    // The group outlives the runner (it is the session's): its previous nice is restored at exit.
    if (wanted !== 0 && existsSync("/proc/self/autogroup")) {
      const before = /nice\s+(-?\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"))?.[1]
      writeFileSync("/proc/self/autogroup", String(wanted))
      if (before !== undefined) {
        process.on("exit", () => {
          try {
            writeFileSync("/proc/self/autogroup", before)
          } catch {
            // nothing to do
          }
        })
      }
    }
    return getPriority(process.pid)
  } catch {
    return getPriority(process.pid)
  }
})()
/** Before each run, wait (at most --quiet-wait s, 0: off) until other processes use less than --quiet % of one core. */
const quietPercent = num(flags, "quiet", 25)
const quietWaitSec = num(flags, "quiet-wait", 0)
/**
 * A run is noisy, and repeated (at most --retries times), when the server's or the generator's main thread spent
 * more than --noisy % of the measurement waiting for a CPU (run-queue time from /proc/<pid>/schedstat): that is
 * the share of the run that other work on the machine took from it.
 */
const noisyPercent = num(flags, "noisy", 25)
const retries = num(flags, "retries", quick ? 0 : 1)
try {
  setClockTicks(Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()))
} catch {
  // 100 is the Linux default
}

/**
 * The durable floor (bench/durable-relay.ts) and its two bounds: one append-only table with no index; no fsync at
 * all. Every variable is set, so that the runner's own environment does not leak into them.
 */
const FLOOR_ENV = {
  "durable-floor": { RELAY_TABLES: "docsync", SQLITE_SYNCHRONOUS: "full" },
  "durable-floor-log": { RELAY_TABLES: "log", SQLITE_SYNCHRONOUS: "full" },
  "durable-floor-nosync": { RELAY_TABLES: "docsync", SQLITE_SYNCHRONOUS: "off" }
} as const
type FloorName = keyof typeof FLOOR_ENV
const FLOOR_NAMES = Object.keys(FLOOR_ENV) as Array<FloorName>
const isFloor = (target: TargetName): target is FloorName => target in FLOOR_ENV

type TargetName = "docsync-sqlite" | "docsync-sqlite-normal" | "docsync-memory" | "docsync-postgres" | FloorName | "baseline"

/** Servers that are not docsync and speak only the relay's subset of the protocol (no REST: any document id works). */
const isRelay = (target: TargetName) => target === "baseline" || isFloor(target)

interface ScenarioDef {
  /** name in the table and in --scenarios */
  readonly name: string
  /** scenario of bench/load.ts */
  readonly load: string
  readonly args: Record<string, number>
  readonly quickArgs: Record<string, number>
  readonly targets: ReadonlyArray<TargetName>
  /** extra server environment */
  readonly env?: Record<string, string>
  /** run once, not `repeats` times */
  readonly once?: boolean
}

const FANOUT = { docs: 1, writers: 1, readers: 10, inflight: 16, "delta-bytes": 80 }
const SCENARIOS: ReadonlyArray<ScenarioDef> = [
  {
    name: "fanout",
    load: "fanout",
    args: { ...FANOUT, warmup: 2, duration: 5 },
    quickArgs: { ...FANOUT, warmup: 1, duration: 3 },
    targets: ["docsync-sqlite", "baseline"]
  },
  {
    name: "fanout-wide",
    load: "fanout",
    args: { ...FANOUT, docs: 10, writers: 2, warmup: 2, duration: 5 },
    quickArgs: { ...FANOUT, docs: 10, writers: 2, warmup: 1, duration: 3 },
    targets: ["docsync-sqlite", "baseline"]
  },
  {
    name: "many-docs",
    load: "many-docs",
    args: { docs: 200, clients: 4, rate: 5, warmup: 1, duration: 20, drain: 10 },
    quickArgs: { docs: 200, clients: 4, rate: 5, warmup: 1, duration: 5, drain: 5 },
    // the durable floor: what storing each update with docsync's SQL costs before any of docsync's own work
    targets: ["docsync-sqlite", "durable-floor", "baseline"]
  },
  {
    name: "idle",
    load: "idle",
    args: { sockets: 5000, docs: 500, concurrency: 100, settle: 2, hold: 3 },
    quickArgs: { sockets: 2000, docs: 200, concurrency: 100, settle: 1, hold: 2 },
    targets: ["docsync-sqlite", "baseline"]
  },
  {
    name: "join",
    load: "join",
    args: { updates: 10_000, joins: 20, "cold-joins": 3, "cold-gap": 1.2, "snapshot-bytes": 32_768, "snapshot-every": 100 },
    quickArgs: { updates: 10_000, joins: 10, "cold-joins": 0, "snapshot-bytes": 32_768, "snapshot-every": 100 },
    targets: ["docsync-sqlite", "baseline"],
    env: { SNAPSHOT_EVERY: "100", DOCUMENT_IDLE_MS: "500" }
  },
  {
    name: "durability",
    load: "fanout",
    args: { ...FANOUT, warmup: 2, duration: 5 },
    quickArgs: { ...FANOUT, warmup: 1, duration: 3 },
    // every backend and the baseline interleaved in each repeat, so that they meet the same conditions
    targets: ["docsync-memory", "docsync-sqlite", "docsync-sqlite-normal", "docsync-postgres", "baseline"]
  },
  {
    name: "soak",
    load: "fanout",
    // 30 s of warm-up: the heap and SQLite's caches are still growing to their working size during the first ~40 s
    args: { ...FANOUT, warmup: 30, duration: 60 },
    quickArgs: { ...FANOUT, warmup: 10, duration: 30 },
    targets: ["docsync-sqlite"],
    once: true
  }
]

const DEFAULT_SCENARIOS = ["fanout", "fanout-wide", "many-docs", "idle", "join", "durability"]
const selected = str(flags, "scenarios", DEFAULT_SCENARIOS.join(",")).split(",").map((s) => s.trim()).filter(Boolean)
if (bool(flags, "soak", false) && !selected.includes("soak")) selected.push("soak")
for (const name of selected) {
  if (!SCENARIOS.some((s) => s.name === name)) throw new Error(`unknown scenario ${name}; one of ${SCENARIOS.map((s) => s.name).join(", ")}`)
}

const TARGET_NAMES: ReadonlyArray<TargetName> = [
  "docsync-sqlite",
  "docsync-sqlite-normal",
  "docsync-memory",
  "docsync-postgres",
  ...FLOOR_NAMES,
  "baseline"
]
/** `--targets a,b`: the servers every selected scenario runs against, instead of its own list (e.g. many-docs on memory://). */
const targetsFlag = flags.get("targets")?.split(",").map((t) => t.trim()).filter(Boolean) as Array<TargetName> | undefined
for (const name of targetsFlag ?? []) {
  if (!TARGET_NAMES.includes(name)) throw new Error(`unknown target ${name}; one of ${TARGET_NAMES.join(", ")}`)
}

/** Load flags for a scenario: its defaults, then `--flag v` (all scenarios), then `--<scenario>.flag v`. */
const loadArgs = (def: ScenarioDef): Record<string, string> => {
  const args: Record<string, string> = {}
  for (const [k, v] of Object.entries(quick ? def.quickArgs : def.args)) args[k] = String(v)
  for (const [k, v] of flags) {
    if (RUNNER_FLAGS.has(k)) continue
    const dot = k.indexOf(".")
    if (dot < 0) args[k] = v
  }
  for (const [k, v] of flags) {
    const dot = k.indexOf(".")
    if (dot >= 0 && k.slice(0, dot) === def.name) args[k.slice(dot + 1)] = v
  }
  return args
}

// ---------------------------------------------------------------------------------------------------------------
// servers

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const psql = (sql: string): void => {
  execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql], {
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 30_000
  })
}

/** Stops whatever is running (server, generator) if the runner itself is interrupted. */
const cleanups = new Set<() => void>()
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the server and the load generator\n`)
    for (const cleanup of cleanups) {
      try {
        cleanup()
      } catch {
        // best effort
      }
    }
    process.exit(130)
  })
}

let pgAvailable: boolean | undefined
const postgresAvailable = (): boolean => {
  if (pgAvailable === undefined) {
    try {
      psql("SELECT 1")
      pgAvailable = true
    } catch {
      pgAvailable = false
    }
  }
  return pgAvailable
}

interface Server {
  readonly process: ChildProcess
  readonly url: string
  readonly logFile: string
  stop(): Promise<void>
}

/** Compiled like `npm run build`, but into node_modules/.cache so that the project's dist/ is left alone. */
const buildDir = join(root, "node_modules", ".cache", "docsync-bench")

const buildDocsync = (ref: string | undefined): void => {
  let project = root
  if (ref !== undefined) {
    // a committed version, without the uncommitted work in the tree: `git archive` into node_modules/.cache (so
    // that its imports resolve to the project's node_modules), compiled from there
    project = join(root, "node_modules", ".cache", "docsync-bench-src")
    rmSync(project, { recursive: true, force: true })
    mkdirSync(project, { recursive: true })
    const archive = execFileSync("git", ["archive", ref, "src", "tsconfig.json", "tsconfig.build.json"], { cwd: root, maxBuffer: 256 * 2 ** 20 })
    execFileSync("tar", ["-x", "-C", project], { input: archive })
  }
  process.stderr.write(`compiling docsync (${ref === undefined ? "working tree" : `git ${ref}`}) into node_modules/.cache/docsync-bench...\n`)
  rmSync(buildDir, { recursive: true, force: true })
  try {
    execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(project, "tsconfig.build.json"), "--outDir", buildDir], {
      cwd: project,
      stdio: ["ignore", "pipe", "pipe"]
    })
  } catch (error) {
    // tsc still emits on type errors (work in progress elsewhere); only a missing entry point is fatal
    process.stderr.write(`tsc reported errors (emitted anyway):\n${String((error as { stdout?: Buffer }).stdout ?? "").slice(0, 1500)}\n`)
  }
  // node_modules ends Node's search for a package scope: mark the output as ESM like the project
  writeFileSync(join(buildDir, "package.json"), '{ "type": "module" }\n')
}
const startServer = async (target: TargetName, env: Record<string, string>, label: string): Promise<Server> => {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "docsync-bench-"))
  const logFile = join(dir, "server.log")
  const log = openSync(logFile, "a")
  let dropDb: (() => void) | undefined
  let args: Array<string>
  const serverEnv: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warning",
    // Policy limits are not costs: lift them so that the baseline (which has none) and docsync do the same work.
    RATE_LIMIT_PER_SECOND: "1000000",
    RATE_LIMIT_BURST: "1000000",
    MAX_CONNECTIONS_PER_DOCUMENT: "100000",
    MAX_CONNECTIONS: "100000",
    ...env
  }
  if (target === "baseline") {
    args = ["--import", "tsx", join(benchDir, "baseline-relay.ts")]
  } else if (isFloor(target)) {
    Object.assign(serverEnv, FLOOR_ENV[target], { DATABASE_FILE: join(dir, "relay.db") })
    args = ["--import", "tsx", join(benchDir, "durable-relay.ts")]
  } else {
    if (target === "docsync-sqlite") serverEnv.DATABASE_URL = `sqlite:///${join(dir, "bench.db")}`
    else if (target === "docsync-sqlite-normal") {
      // WAL with synchronous = NORMAL: no fsync per commit; acks survive SIGKILL (the protocol's "durably"), not power loss
      serverEnv.DATABASE_URL = `sqlite:///${join(dir, "bench.db")}`
      serverEnv.SQLITE_SYNCHRONOUS = "normal"
    }
    else if (target === "docsync-memory") serverEnv.DATABASE_URL = "memory://"
    else {
      const db = `docsync_bench_${process.pid}_${Date.now()}`
      psql(`CREATE DATABASE ${db}`)
      dropDb = () => psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
      serverEnv.DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${db}`
    }
    const prof = cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${join(cpuProfDir, label)}`] : []
    if (serverMode === "dist") {
      args = [...prof, join(buildDir, "main.js")]
    } else {
      args = [...prof, "--import", "tsx", join(root, "src", "main.ts")]
    }
  }
  const child = spawn(process.execPath, args, { cwd: root, env: serverEnv, stdio: ["ignore", log, log] })
  closeSync(log)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const cleanup = () => {
    cleanups.delete(interrupted)
    try {
      dropDb?.()
    } catch (error) {
      process.stderr.write(`could not drop the benchmark database: ${String(error)}\n`)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const interrupted = () => {
    child.kill("SIGKILL")
    cleanup()
  }
  cleanups.add(interrupted)
  const url = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000)
      await exited
      clearTimeout(timer)
    }
    cleanup()
  }
  const deadline = Date.now() + 60_000
  while (true) {
    if (child.exitCode !== null) {
      const text = readFileSync(logFile, "utf8")
      cleanup()
      throw new Error(`${target} exited with ${child.exitCode} at start:\n${text.slice(-2000)}`)
    }
    try {
      const response = await fetch(`${url}/api/v1/health`, { signal: AbortSignal.timeout(1000) })
      if (response.status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`${target} did not answer /api/v1/health within 60 s`)
    }
    await sleep(100)
  }
  return { process: child, url, logFile, stop }
}

// ---------------------------------------------------------------------------------------------------------------
// one run: server + load generator + /proc sampling

interface Sampled {
  readonly server: ProcSample
  readonly load: ProcSample | undefined
  /** CPU seconds of the PostgreSQL server processes (docsync-postgres only): part of the server, not "others" */
  readonly db: number | undefined
}

interface RunRecord {
  readonly scenario: string
  readonly target: TargetName
  readonly repeat: number
  readonly ok: boolean
  readonly error?: string
  readonly quiet?: { readonly waitedSec: number; readonly othersPercent: number }
  readonly load?: Record<string, unknown>
  readonly server?: Record<string, unknown>
  readonly metrics?: Record<string, number>
  /** other processes took more than --noisy % of a core during the measurement */
  noisy?: boolean
  /** replaced by a later attempt (kept in the JSON, left out of the medians) */
  discarded?: boolean
}

const runOne = async (def: ScenarioDef, target: TargetName, repeat: number): Promise<RunRecord> => {
  const label = `${def.name}-${target}-${repeat}`
  const base = { scenario: def.name, target, repeat }
  if (target === "docsync-postgres" && (!usePg || !postgresAvailable())) {
    return { ...base, ok: false, error: "PostgreSQL not reachable at 127.0.0.1:5432 as postgres (or --no-pg)" }
  }
  let server: Server | undefined
  try {
    const quiet = await waitForQuiet()
    server = await startServer(target, def.env ?? {}, label)
    const pid = server.process.pid!
    const args = loadArgs(def)
    const argv = ["--scenario", def.load, "--url", server.url, "--kind", isRelay(target) ? "baseline" : "docsync"]
    for (const [k, v] of Object.entries(args)) argv.push(`--${k}`, v)
    const child = fork(join(benchDir, "load.ts"), argv, { cwd: root, execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] })
    const killLoad = () => child.kill("SIGKILL")
    cleanups.add(killLoad)
    child.once("exit", () => cleanups.delete(killLoad))
    const samples: Array<ProcSample> = []
    const marks: Record<string, Sampled> = {}
    /** CLOCK_MONOTONIC µs of each mark: the clock of V8's profile timestamps, to cut a profile to the window */
    const monotonicMarks: Record<string, number> = {}
    const first = sampleProc(pid)
    if (first) samples.push(first)
    const sampler = setInterval(() => {
      const s = sampleProc(pid)
      if (s) samples.push(s)
    }, 1000)
    let result: Record<string, unknown> | undefined
    child.on("message", (message: { type: string; id?: number; name?: string; result?: Record<string, unknown> }) => {
      if (message.type === "mark") {
        const s = sampleProc(pid)
        monotonicMarks[message.name!] = Number(process.hrtime.bigint() / 1000n)
        if (s) {
          samples.push(s)
          marks[message.name!] = { server: s, load: sampleProc(child.pid!), db: target === "docsync-postgres" ? cpuOfCommand("postgres") : undefined }
        }
        child.send({ type: "marked", id: message.id })
      } else if (message.type === "result") {
        result = message.result
      }
    })
    const duration = Number(args.warmup ?? 0) + Number(args.duration ?? 0)
    const timeoutMs = (duration + 180) * 1000
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
      child.once("exit", (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    clearInterval(sampler)
    const last = sampleProc(pid)
    if (last) samples.push(last)
    const serverMetrics = isRelay(target) ? undefined : await scrapeMetrics(server.url)
    await server.stop()
    if (cpuProf && !isRelay(target)) {
      // next to the profile this server just wrote (a retried run writes a second profile in the same directory)
      const dir = join(cpuProfDir, label)
      for (const file of readdirSync(dir)) {
        const marksFile = join(dir, file.replace(/\.cpuprofile$/, ".marks.json"))
        if (file.endsWith(".cpuprofile") && !existsSync(marksFile)) writeFileSync(marksFile, JSON.stringify(monotonicMarks, null, 2) + "\n")
      }
    }
    if (code !== 0 || result === undefined) {
      return { ...base, ok: false, error: `load generator exited with ${code}; server log: ${tail(server.logFile)}` }
    }
    const serverStats = serverFigures(samples.sort((a, b) => a.t - b.t), marks, result)
    if (serverMetrics !== undefined) serverStats.metrics = serverMetrics
    return { ...base, ok: true, quiet, load: result, server: serverStats, metrics: metricsOf(def, result, serverStats) }
  } catch (error) {
    await server?.stop().catch(() => {})
    return { ...base, ok: false, error: error instanceof Error ? error.message : String(error) }
  }
}

/** Waits until the machine's processes use less than `quietPercent` of one core over a second (bounded). */
const waitForQuiet = async (): Promise<{ waitedSec: number; othersPercent: number }> => {
  const t0 = Date.now()
  let busy = 0
  if (quietWaitSec <= 0) return { waitedSec: 0, othersPercent: Number.NaN }
  do {
    const a = machineCpu()
    await sleep(1000)
    busy = round((machineCpu().proc - a.proc) * 100, 1)
    if (busy < quietPercent) break
    process.stderr.write(Date.now() - t0 < 1500 ? `(waiting for other processes, ${busy}% CPU) ` : ".")
  } while (Date.now() - t0 < quietWaitSec * 1000)
  return { waitedSec: round((Date.now() - t0) / 1000 - 1, 1), othersPercent: busy }
}

/**
 * docsync's own view from `GET /metrics` after the run (whole run, warm-up included): mean storage batch size and
 * commit time (group commit at work), mean ack latency inside the server. Undefined when the route is absent.
 */
const scrapeMetrics = async (url: string): Promise<Record<string, number> | undefined> => {
  try {
    const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })
    if (response.status !== 200) return undefined
    const text = await response.text()
    const value = (name: string): number | undefined => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, "m").exec(text)
      return m ? Number(m[1]) : undefined
    }
    const mean = (name: string, scale = 1) => {
      const sum = value(`${name}_sum`)
      const count = value(`${name}_count`)
      return sum !== undefined && count ? round((sum / count) * scale, 3) : undefined
    }
    const out: Record<string, number> = {}
    const put = (k: string, v: number | undefined) => {
      if (v !== undefined && Number.isFinite(v)) out[k] = v
    }
    put("transactions", value("docsync_storage_batch_size_count"))
    put("meanBatchSize", mean("docsync_storage_batch_size"))
    put("meanCommitMs", mean("docsync_storage_commit_seconds", 1000))
    put("meanAckMsInServer", mean("docsync_ack_latency_seconds", 1000))
    put("slowConsumerCloses", value("docsync_slow_consumer_closes_total"))
    return out
  } catch {
    return undefined
  }
}

const tail = (file: string): string => {
  try {
    return readFileSync(file, "utf8").slice(-1500)
  } catch {
    return "(gone)"
  }
}

/** Server CPU/RSS over the measurement window, RSS per idle connection, RSS slope after warm-up. */
const serverFigures = (samples: ReadonlyArray<ProcSample>, marks: Record<string, Sampled>, result: Record<string, unknown>) => {
  const out: Record<string, unknown> = { peakRssMB: round(Math.max(...samples.map((s) => s.rss)) / 2 ** 20, 1) }
  const start = marks["measure-start"]
  const end = marks["measure-end"]
  if (start && end) {
    out.cpuPercent = cpuPercent(start.server, end.server)
    out.rssMB = round(end.server.rss / 2 ** 20, 1)
    if (start.load && end.load) out.loadCpuPercent = cpuPercent(start.load, end.load)
    const window = samples.filter((s) => s.t >= start.server.t && s.t <= end.server.t)
    if (window.length >= 3) {
      const xs = window.map((s) => (s.t - start.server.t) / 1000)
      const ys = window.map((s) => s.rss / 2 ** 20)
      const all = linearFit(xs, ys)
      const half = Math.floor(window.length / 2)
      const second = linearFit(xs.slice(half), ys.slice(half))
      const seconds = xs[xs.length - 1]!
      // RSS saw-tooths with garbage collection; the floor (lowest sample of each 10 s) tracks what is retained.
      const floors: Array<number> = []
      for (let from = 0; from + 10 <= seconds + 0.5; from += 10) {
        const bucket = ys.filter((_, i) => xs[i]! >= from && xs[i]! < from + 10)
        if (bucket.length > 0) floors.push(Math.min(...bucket))
      }
      out.rss = {
        samples: window.length,
        seconds: round(seconds, 1),
        firstMB: round(ys[0]!, 1),
        lastMB: round(ys[ys.length - 1]!, 1),
        meanMB: round(ys.reduce((a, b) => a + b, 0) / ys.length, 1),
        slopeMBPerMin: round(all.slope * 60, 2),
        r2: round(all.r2, 2),
        secondHalfSlopeMBPerMin: round(second.slope * 60, 2),
        fittedGrowthMB: round(all.slope * seconds, 2),
        floorsMB: floors.map((f) => round(f, 1)),
        floorGrowthMB: floors.length >= 2 ? round(floors[floors.length - 1]! - floors[0]!, 1) : undefined
      }
    }
  }
  // The rest of the machine over the marked part of the run: other processes (a noisy neighbour) and interrupt
  // time (loopback traffic is largely processed in softirq, charged to no process).
  const ordered = Object.values(marks).sort((a, b) => a.server.t - b.server.t)
  const first = ordered[0]
  const last = ordered[ordered.length - 1]
  if (first && last && last.server.t > first.server.t) {
    const machine = machinePercent(first.server, last.server)
    const seconds = (last.server.t - first.server.t) / 1000
    const db = first.db !== undefined && last.db !== undefined ? round(((last.db - first.db) / seconds) * 100, 1) : undefined
    const load = first.load && last.load ? cpuPercent(first.load, last.load) : 0
    out.machineCpuPercent = machine
    if (db !== undefined) out.dbCpuPercent = db
    out.otherCpuPercent = round(Math.max(0, machine.proc - cpuPercent(first.server, last.server) - load - (db ?? 0)), 1)
    out.irqCpuPercent = machine.irq
    out.serverRunWaitPercent = runWaitPercent(first.server, last.server)
    if (first.load && last.load) out.loadRunWaitPercent = runWaitPercent(first.load, last.load)
  }
  const before = marks["idle-before"]
  const holdStart = marks["hold-start"]
  const holdEnd = marks["hold-end"]
  if (before && holdStart && holdEnd) {
    const hold = samples.filter((s) => s.t >= holdStart.server.t && s.t <= holdEnd.server.t).map((s) => s.rss)
    const sockets = Number((result.shape as Record<string, number>).sockets)
    const holdRss = median(hold)
    out.rssBeforeMB = round(before.server.rss / 2 ** 20, 1)
    out.rssHeldMB = round(holdRss / 2 ** 20, 1)
    out.rssPerConnKB = round((holdRss - before.server.rss) / sockets / 1024, 2)
    const halfStart = marks["half-hold-start"]
    const halfEnd = marks["half-hold-end"]
    if (halfStart && halfEnd) {
      const halfHold = median(samples.filter((s) => s.t >= halfStart.server.t && s.t <= halfEnd.server.t).map((s) => s.rss))
      const half = Number((result.shape as Record<string, number>).half)
      out.rssHalfHeldMB = round(halfHold / 2 ** 20, 1)
      out.rssMarginalPerConnKB = round((holdRss - halfHold) / (sockets - half) / 1024, 2)
    }
    out.cpuPercentHeld = cpuPercent(holdStart.server, holdEnd.server)
  }
  return out
}

/** The flat figures of one run that the summary takes medians of. */
const metricsOf = (def: ScenarioDef, load: Record<string, any>, server: Record<string, any>): Record<string, number> => {
  const m: Record<string, number> = {}
  const put = (k: string, v: unknown) => {
    if (typeof v === "number" && Number.isFinite(v)) m[k] = v
  }
  put("serverCpu", server.cpuPercent)
  put("loadCpu", server.loadCpuPercent ?? load.loadCpuPercent)
  put("serverRssMB", server.rssMB)
  put("otherCpu", server.otherCpuPercent)
  put("irqCpu", server.irqCpuPercent)
  put("serverRunWait", server.serverRunWaitPercent)
  put("loadRunWait", server.loadRunWaitPercent)
  put("dbCpu", server.dbCpuPercent)
  put("meanBatchSize", server.metrics?.meanBatchSize)
  put("meanCommitMs", server.metrics?.meanCommitMs)
  const errors = Object.values(load.errors ?? {}).reduce((a: number, b) => a + (b as number), 0)
  const closes = Object.values(load.unexpectedCloses ?? {}).reduce((a: number, b) => a + (b as number), 0)
  put("errors", errors)
  put("unexpectedCloses", closes)
  put("gaps", load.gaps)
  switch (def.load) {
    case "fanout":
      put("deliveredPerSec", load.deliveredPerSec)
      put("ackedPerSec", load.ackedPerSec)
      for (const q of ["p50", "p95", "p99", "max"]) put(`latency.${q}`, load.latency?.[q])
      put("ack.p50", load.ackLatency?.p50)
      put("ack.p99", load.ackLatency?.p99)
      put("rssSlopeMBPerMin", server.rss?.slopeMBPerMin)
      put("rssSecondHalfSlopeMBPerMin", server.rss?.secondHalfSlopeMBPerMin)
      put("rssFittedGrowthMB", server.rss?.fittedGrowthMB)
      put("rssMeanMB", server.rss?.meanMB)
      put("rssFloorGrowthMB", server.rss?.floorGrowthMB)
      put("rssFirstFloorMB", server.rss?.floorsMB?.[0])
      break
    case "many-docs":
      put("sentPerSec", load.sentPerSec)
      put("deliveredRatio", load.expectedDeliveries > 0 ? round(load.delivered / load.expectedDeliveries, 4) : undefined)
      for (const q of ["p50", "p95", "p99", "max"]) put(`latency.${q}`, load.latency?.[q])
      put("ack.p99", load.ackLatency?.p99)
      break
    case "idle":
      put("connectPerSec", load.connectPerSec)
      put("connect.p99", load.connectLatency?.p99)
      put("rssPerConnKB", server.rssPerConnKB)
      put("rssMarginalPerConnKB", server.rssMarginalPerConnKB)
      put("rssHeldMB", server.rssHeldMB)
      put("idleCpu", server.cpuPercentHeld)
      put("stillOpen", load.stillOpen)
      break
    case "join":
      for (const row of ["plain", "snapshot"]) {
        put(`${row}.warm.openToState`, load.rows?.[row]?.warm?.openToStateMs?.median)
        put(`${row}.warm.connectToState`, load.rows?.[row]?.warm?.connectToStateMs?.median)
        put(`${row}.cold.openToState`, load.rows?.[row]?.cold?.openToStateMs?.median)
        put(`${row}.stateKB`, load.rows?.[row]?.warm?.stateBytes !== undefined ? round(load.rows[row].warm.stateBytes / 1024, 1) : undefined)
        put(`${row}.stateUpdates`, load.rows?.[row]?.warm?.updates)
      }
      put("seedPerSec", load.seeding?.plain?.perSec)
      break
  }
  return m
}

// ---------------------------------------------------------------------------------------------------------------
// summary and table

type Summary = Record<string, Partial<Record<TargetName, Record<string, number>>>>

const summarise = (allRuns: ReadonlyArray<RunRecord>): Summary => {
  const runs = allRuns.filter((r) => !r.discarded)
  const summary: Summary = {}
  for (const run of runs) {
    if (!run.ok || run.metrics === undefined) continue
    const scenario = (summary[run.scenario] ??= {})
    const target = (scenario[run.target] ??= {})
    for (const key of Object.keys(run.metrics)) {
      if (key in target) continue
      const values = runs
        .filter((r) => r.ok && r.scenario === run.scenario && r.target === run.target && r.metrics?.[key] !== undefined)
        .map((r) => r.metrics![key]!)
      target[key] = round(median(values), 3)
    }
  }
  return summary
}

const fmt = (x: number | undefined, digits = 1): string => {
  if (x === undefined || Number.isNaN(x)) return "–"
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US")
  return x.toFixed(Math.abs(x) >= 100 ? 0 : digits)
}

interface Row { readonly scenario: string; readonly metric: string; readonly docsync?: number; readonly baseline?: number; readonly digits?: number; readonly ratio?: boolean }

const tableRows = (s: Summary): Array<Row> => {
  const rows: Array<Row> = []
  const pair = (scenario: string, metric: string, key: string, options: { digits?: number; ratio?: boolean; label?: string; target?: TargetName } = {}) => {
    const d = s[scenario]?.[options.target ?? "docsync-sqlite"]?.[key]
    const b = s[scenario]?.baseline?.[key]
    if (d === undefined && b === undefined) return
    rows.push({ scenario: options.label ?? scenario, metric, ...(d !== undefined && { docsync: d }), ...(b !== undefined && { baseline: b }), digits: options.digits ?? 1, ratio: options.ratio ?? true })
  }
  for (const [name, label] of [["fanout", "fanout 1×1×10"], ["fanout-wide", "fanout 10×2×10"]] as const) {
    pair(name, "delivered remote_update/s", "deliveredPerSec", { label })
    pair(name, "latency p50 / ms", "latency.p50", { label, digits: 2 })
    pair(name, "latency p95 / ms", "latency.p95", { label, digits: 2 })
    pair(name, "latency p99 / ms", "latency.p99", { label, digits: 2 })
    pair(name, "server CPU %", "serverCpu", { label, ratio: false })
    pair(name, "load-gen CPU %", "loadCpu", { label, ratio: false })
    pair(name, "other processes CPU %", "otherCpu", { label, ratio: false })
    pair(name, "server waiting for a CPU %", "serverRunWait", { label, ratio: false })
    pair(name, "server RSS MB", "serverRssMB", { label })
  }
  const md = "many-docs 200×4"
  pair("many-docs", "updates sent/s", "sentPerSec", { label: md })
  pair("many-docs", "latency p50 / ms", "latency.p50", { label: md, digits: 2 })
  pair("many-docs", "latency p95 / ms", "latency.p95", { label: md, digits: 2 })
  pair("many-docs", "latency p99 / ms", "latency.p99", { label: md, digits: 2 })
  pair("many-docs", "latency max / ms", "latency.max", { label: md, digits: 2 })
  pair("many-docs", "delivered before the cut-off / expected", "deliveredRatio", { label: md, digits: 3, ratio: false })
  pair("many-docs", "server CPU %", "serverCpu", { label: md, ratio: false })
  pair("many-docs", "load-gen CPU %", "loadCpu", { label: md, ratio: false })
  pair("many-docs", "other processes CPU %", "otherCpu", { label: md, ratio: false })
  pair("many-docs", "server waiting for a CPU %", "serverRunWait", { label: md, ratio: false })
  // the same load on the durable floor (bench/durable-relay.ts) in place of docsync: what durable storage alone costs
  for (const target of FLOOR_NAMES) {
    if (s["many-docs"]?.[target] === undefined) continue
    const floor = { label: `many-docs on ${target}`, target }
    pair("many-docs", "latency p50 / ms", "latency.p50", { ...floor, digits: 2 })
    pair("many-docs", "latency p95 / ms", "latency.p95", { ...floor, digits: 2 })
    pair("many-docs", "latency p99 / ms", "latency.p99", { ...floor, digits: 2 })
    pair("many-docs", "server CPU %", "serverCpu", { ...floor, ratio: false })
  }
  const id = "idle 5,000/500"
  pair("idle", "connects/s", "connectPerSec", { label: id })
  pair("idle", "RSS per connection / KB", "rssPerConnKB", { label: id, digits: 2 })
  pair("idle", "RSS per connection, second half / KB", "rssMarginalPerConnKB", { label: id, digits: 2 })
  pair("idle", "server RSS held / MB", "rssHeldMB", { label: id })
  pair("idle", "server CPU % while idle", "idleCpu", { label: id, ratio: false })
  const jn = "join 10,000 updates"
  pair("join", "open → state, median ms", "plain.warm.openToState", { label: jn, digits: 2 })
  pair("join", "connect → state, median ms", "plain.warm.connectToState", { label: jn, digits: 2 })
  pair("join", "cold (document unloaded) open → state ms", "plain.cold.openToState", { label: jn, digits: 2 })
  pair("join", "state frame KB", "plain.stateKB", { label: jn, ratio: false })
  const js = "join, snapshot every 100"
  pair("join", "open → state, median ms", "snapshot.warm.openToState", { label: js, digits: 2, ratio: false })
  pair("join", "cold (document unloaded) open → state ms", "snapshot.cold.openToState", { label: js, digits: 2 })
  pair("join", "state frame KB", "snapshot.stateKB", { label: js, ratio: false })
  return rows
}

const renderTable = (s: Summary): string => {
  const lines = ["| scenario | metric | docsync / baseline | ratio |", "|---|---|---|---|"]
  for (const row of tableRows(s)) {
    const ratio = row.ratio && row.docsync !== undefined && row.baseline ? `${(row.docsync / row.baseline).toFixed(2)}×` : ""
    lines.push(`| ${row.scenario} | ${row.metric} | ${fmt(row.docsync, row.digits)} / ${fmt(row.baseline, row.digits)} | ${ratio} |`)
  }
  return lines.join("\n")
}

const durabilityTable = (s: Summary): string | undefined => {
  const sources: Array<[string, Record<string, number> | undefined]> = [
    ["memory://", s.durability?.["docsync-memory"]],
    ["SQLite, synchronous = FULL (default)", s.durability?.["docsync-sqlite"]],
    ["SQLite, synchronous = NORMAL", s.durability?.["docsync-sqlite-normal"]],
    ["PostgreSQL", s.durability?.["docsync-postgres"]],
    ["baseline", s.durability?.baseline]
  ]
  if (s.durability === undefined) return undefined
  const lines = [
    "| fanout 1×1×10 on | delivered/s | vs baseline | ack p50 / p99 ms | latency p99 ms | server CPU % (+ database) | waiting for a CPU % | mean batch / commit ms |",
    "|---|---|---|---|---|---|---|---|"
  ]
  const baseline = sources[sources.length - 1]![1]?.deliveredPerSec
  for (const [name, m] of sources) {
    if (m === undefined) {
      lines.push(`| ${name} | not run | | | | | | |`)
      continue
    }
    lines.push(
      `| ${name} | ${fmt(m.deliveredPerSec)} | ${baseline ? (m.deliveredPerSec! / baseline).toFixed(2) + "×" : ""} | ${fmt(m["ack.p50"], 2)} / ${fmt(m["ack.p99"], 2)} | ${fmt(m["latency.p99"], 2)} | ${fmt(m.serverCpu)}${m.dbCpu !== undefined ? ` + ${fmt(m.dbCpu)}` : ""} | ${fmt(m.serverRunWait)} | ${m.meanBatchSize !== undefined ? `${fmt(m.meanBatchSize)} / ${fmt(m.meanCommitMs, 2)}` : "–"} |`
    )
  }
  return lines.join("\n")
}

interface Verdict { readonly target: string; readonly measured: string; readonly met: boolean | null }

const verdicts = (s: Summary): Array<Verdict> => {
  const out: Array<Verdict> = []
  const ratio = (a?: number, b?: number) => (a !== undefined && b ? a / b : undefined)
  const r1 = ratio(s.fanout?.["docsync-sqlite"]?.deliveredPerSec, s.fanout?.baseline?.deliveredPerSec)
  out.push({ target: "fanout delivered/s ≥ 0.65 × baseline", measured: r1 === undefined ? "not run" : `${r1.toFixed(2)}×`, met: r1 === undefined ? null : r1 >= 0.65 })
  const r2 = ratio(s["many-docs"]?.["docsync-sqlite"]?.["latency.p99"], s["many-docs"]?.baseline?.["latency.p99"])
  const floor = ratio(s["many-docs"]?.["durable-floor"]?.["latency.p99"], s["many-docs"]?.baseline?.["latency.p99"])
  out.push({
    target: "many-docs p99 ≤ 2 × baseline p99",
    measured: r2 === undefined
      ? "not run"
      : `${r2.toFixed(2)}× (${fmt(s["many-docs"]!["docsync-sqlite"]!["latency.p99"], 2)} ms / ${fmt(s["many-docs"]!.baseline!["latency.p99"], 2)} ms)` +
        (floor === undefined ? "" : `; the durable floor ${floor.toFixed(2)}×`),
    met: r2 === undefined ? null : r2 <= 2
  })
  const r3 = ratio(s.idle?.["docsync-sqlite"]?.rssPerConnKB, s.idle?.baseline?.rssPerConnKB)
  out.push({ target: "idle RSS per connection ≤ 1.3 × baseline", measured: r3 === undefined ? "not run" : `${r3.toFixed(2)}× (${fmt(s.idle!["docsync-sqlite"]!.rssPerConnKB)} KB / ${fmt(s.idle!.baseline!.rssPerConnKB)} KB)`, met: r3 === undefined ? null : r3 <= 1.3 })
  const j = s.join?.["docsync-sqlite"]?.["plain.warm.openToState"]
  out.push({ target: "join of 10,000 updates ≤ 10 ms median (open → state)", measured: j === undefined ? "not run" : `${fmt(j, 2)} ms` + (s.join?.["docsync-sqlite"]?.["plain.cold.openToState"] !== undefined ? ` (cold: ${fmt(s.join["docsync-sqlite"]["plain.cold.openToState"], 2)} ms)` : ""), met: j === undefined ? null : j <= 10 })
  const soak = s.soak?.["docsync-sqlite"]
  if (soak === undefined) out.push({ target: "memory flat over a 60 s fanout run", measured: "not run (add --soak)", met: null })
  else {
    // Flat: the RSS floor (lowest sample of each 10 s window) grows by at most 5% from the first window to the last.
    const growth = soak.rssFloorGrowthMB
    const flat = growth === undefined ? null : growth <= 0.05 * (soak.rssFirstFloorMB ?? 0)
    out.push({
      target: "memory flat over a 60 s fanout run",
      measured: `RSS floor ${fmt(soak.rssFirstFloorMB)} → ${fmt((soak.rssFirstFloorMB ?? 0) + (growth ?? 0))} MB (${growth !== undefined && growth >= 0 ? "+" : ""}${fmt(growth)} MB); least-squares slope ${fmt(soak.rssSlopeMBPerMin, 2)} MB/min`,
      met: flat
    })
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------------

const machine = () => {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8")
  let commit = "unknown"
  let dirty = false
  try {
    const ref = flags.get("ref")
    commit = execFileSync("git", ["rev-parse", "--short", ref ?? "HEAD"], { cwd: root, encoding: "utf8" }).trim()
    // with --ref the committed sources are measured; otherwise say whether src/ had uncommitted changes
    dirty = ref === undefined && execFileSync("git", ["status", "--porcelain", "src"], { cwd: root, encoding: "utf8" }).trim() !== ""
  } catch {
    // not a git checkout
  }
  return {
    cpus: availableParallelism(),
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGB: round(totalmem() / 2 ** 30, 1),
    kernel: release(),
    node: process.version,
    commit,
    srcDirty: dirty
  }
}

const main = async () => {
  const startedAt = new Date()
  const info = machine()
  process.stderr.write(`docsync bench: ${selected.join(", ")}; ${repeats} repeat(s)${quick ? " (quick)" : ""}; ${info.cpus} × ${info.cpuModel}, Node ${info.node}\n`)
  const runs: Array<RunRecord> = []
  const defs = SCENARIOS.filter((s) => selected.includes(s.name))
  if (serverMode === "dist" && bool(flags, "build", true)) buildDocsync(flags.get("ref"))
  for (const def of defs) {
    const targets = [...(targetsFlag ?? def.targets)]
    const n = def.once ? 1 : repeats
    for (let repeat = 1; repeat <= n; repeat++) {
      for (const target of targets) {
        for (let attempt = 0; attempt <= retries; attempt++) {
          const t0 = Date.now()
          process.stderr.write(`  ${def.name} ${target} #${repeat}${attempt > 0 ? ` (retry ${attempt})` : ""} ... `)
          const record = await runOne(def, target, repeat)
          const wait = Math.max(record.metrics?.serverRunWait ?? 0, record.metrics?.loadRunWait ?? 0)
          record.noisy = record.ok && wait > noisyPercent
          runs.push(record)
          process.stderr.write(record.ok ? `${((Date.now() - t0) / 1000).toFixed(1)} s ${brief(record)}\n` : `FAILED: ${record.error?.split("\n")[0]}\n`)
          if (!record.ok && record.error && record.error.includes("\n")) process.stderr.write(`${record.error}\n`)
          if (!record.noisy) break
          if (attempt < retries) {
            process.stderr.write(`    waited for a CPU ${wait}% of the measurement (other processes used ${record.metrics?.otherCpu}% of a core): repeating\n`)
            record.discarded = true
          }
        }
      }
    }
  }
  const summary = summarise(runs)
  const table = renderTable(summary)
  const durability = durabilityTable(summary)
  const targets = verdicts(summary)
  const elapsedSec = round((Date.now() - startedAt.getTime()) / 1000, 1)
  const report = [
    "",
    `Medians of ${repeats} run(s); each figure docsync (SQLite) / baseline relay (the floor / baseline in its rows). ${elapsedSec} s in all.`,
    "",
    table,
    ...(durability ? ["", "Durability cost (same run):", "", durability] : []),
    "",
    "Targets (issue 6):",
    "",
    "| target | measured | met |",
    "|---|---|---|",
    ...targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met === null ? "–" : t.met ? "met" : "NOT met"} |`)
  ].join("\n")
  console.log(report)
  const noisy = runs.filter((r) => r.noisy && !r.discarded)
  if (noisy.length > 0) {
    const list = noisy.map((r) => `${r.scenario}/${r.target}#${r.repeat} (${Math.max(r.metrics?.serverRunWait ?? 0, r.metrics?.loadRunWait ?? 0)}%)`)
    console.log(`\n${noisy.length} run(s) in the medians waited for a CPU more than ${noisyPercent}% of the time (other work on the machine): ${list.join(", ")}`)
  }
  const failed = runs.filter((r) => !r.ok)
  if (failed.length > 0) console.log(`\n${failed.length} run(s) failed: ${failed.map((r) => `${r.scenario}/${r.target}#${r.repeat}`).join(", ")}`)
  const outDir = join(benchDir, "results")
  mkdirSync(outDir, { recursive: true })
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-")
  const out = str(flags, "out", join(outDir, `${stamp}.json`))
  const config = { quick, repeats, scenarios: selected, server: serverMode, priority, quietPercent, quietWaitSec, noisyPercent, retries, ref: flags.get("ref") ?? "working tree", cpuProf, argv: process.argv.slice(2), load: Object.fromEntries(defs.map((d) => [d.name, loadArgs(d)])) }
  writeFileSync(out, JSON.stringify({ startedAt: startedAt.toISOString(), elapsedSec, machine: info, config, summary, targets, table, durability, runs }, null, 2) + "\n")
  console.log(`\nresults: ${out}`)
  if (cpuProf) console.log(`CPU profiles: ${cpuProfDir} (summarise with: node --import tsx bench/profile-summary.ts <dir>)`)
}

const brief = (r: RunRecord): string => {
  const m = r.metrics ?? {}
  const parts: Array<string> = []
  if (m.deliveredPerSec !== undefined) parts.push(`${fmt(m.deliveredPerSec)} delivered/s`)
  if (m.sentPerSec !== undefined) parts.push(`${fmt(m.sentPerSec)} sent/s`)
  if (m["latency.p99"] !== undefined) parts.push(`p99 ${fmt(m["latency.p99"], 2)} ms`)
  if (m.connectPerSec !== undefined) {
    parts.push(`${fmt(m.connectPerSec)} connects/s, ${fmt(m.rssPerConnKB, 2)} KB/conn (second half ${fmt(m.rssMarginalPerConnKB, 2)})`)
  }
  if (m["plain.warm.openToState"] !== undefined) parts.push(`join ${fmt(m["plain.warm.openToState"], 2)} ms / snapshot ${fmt(m["snapshot.warm.openToState"], 2)} ms`)
  if (m.serverCpu !== undefined) parts.push(`server ${fmt(m.serverCpu)}% CPU`)
  if (m.loadCpu !== undefined) parts.push(`load ${fmt(m.loadCpu)}%`)
  if (m.otherCpu !== undefined) parts.push(`others ${fmt(m.otherCpu)}%`)
  if (m.serverRunWait !== undefined) parts.push(`run-queue wait ${fmt(m.serverRunWait)}% / ${fmt(m.loadRunWait)}%`)
  if (m.meanBatchSize !== undefined) parts.push(`batch ${fmt(m.meanBatchSize)}, commit ${fmt(m.meanCommitMs, 2)} ms`)
  if (m.errors) parts.push(`${m.errors} error frames`)
  if (m.unexpectedCloses) parts.push(`${m.unexpectedCloses} unexpected closes`)
  if (m.gaps) parts.push(`${m.gaps} GAPS`)
  return parts.join(", ")
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error)
  process.exit(1)
})
