/**
 * The real entry point (`src/main.ts` through tsx) as a child process, for tests and scripts that kill it, restart
 * it on the same database, or watch its memory: things an in-process server (TestServer) cannot show.
 *
 * The port is picked here (a free loopback port, retried if another process takes it first) because the server
 * logs its address only at level info, and crash tests want LOG_LEVEL=warning.
 *
 * How the child runs `src/main.ts`: by default from a bundle of our sources that esbuild (already installed for tsx
 * and vite) writes once per test process, with every package left external: `node --import tsx` spends 5-9 s of
 * start-up on a loaded 2-core machine running every Effect module through its loader, the bundle about 1-2 s, and
 * the crash tests start six servers. The code is the same; `DOCSYNC_TEST_CHILD=tsx` runs it through tsx instead.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, type Scope } from "effect"
import * as esbuild from "esbuild"

/** The repository root: the child runs from here. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url))

export interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface ChildServer {
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string
  readonly port: number
  readonly pid: number
  readonly child: ChildProcess
  /** Everything the child wrote to stdout and stderr so far. */
  readonly output: () => string
  /** Resolves when the process has exited. */
  readonly exited: Promise<ChildExit>
  /** Whether the process is still running. */
  readonly running: () => boolean
}

export interface SpawnOptions {
  /** Variables on top of a clean docsync environment (HOST=127.0.0.1, LOG_LEVEL=warning, a free PORT). */
  readonly env: Record<string, string>
  /** How long the server may take to answer its health check (default 45 s: tsx compiles on the first start). */
  readonly readyWithinMs?: number
  /** Called with every chunk of output, as it arrives. */
  readonly onOutput?: (chunk: string) => void
  /** Extra node options before the entry point (e.g. `--cpu-prof`). */
  readonly nodeArgs?: ReadonlyArray<string>
  /** Another entry point, run through tsx instead of docsync (the benchmark's relays, e.g. `bench/durable-relay.ts`). */
  readonly script?: string
}

/**
 * Spawns `src/main.ts` (or `options.script`) and resolves once `GET /api/v1/health` answers 200. Rejects (after killing the child) if it
 * exits first or does not become healthy in time, with its output in the message.
 */
export const spawnServer = async (options: SpawnOptions): Promise<ChildServer> => {
  let lastError: Error | undefined
  const args = options.script === undefined ? await entryArgs() : ["--import", "tsx", options.script]
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort()
    const server = launch(args, port, options)
    const ready = await waitHealthy(server, options.readyWithinMs ?? 45_000)
    if (ready === "ready") return server
    await kill(server, "SIGKILL")
    lastError = new Error(`${options.script ?? "docsync"} did not start (${ready}):\n${server.output()}`)
    // Only a lost race for the port is worth another attempt.
    if (!/EADDRINUSE/.test(server.output())) break
  }
  throw lastError ?? new Error(`${options.script ?? "docsync"} did not start`)
}

/**
 * Sends `signal` unless the process already exited, then waits for the exit (SIGKILL after `graceMs`). Send a signal
 * once: a second SIGTERM ends a server that is still draining with the default signal action.
 */
export const kill = (server: ChildServer, signal: NodeJS.Signals, graceMs = 20_000): Promise<ChildExit> => {
  if (server.running()) server.child.kill(signal)
  return waitExit(server, graceMs)
}

/** Waits for the process to exit, with SIGKILL after `graceMs`. */
export const waitExit = async (server: ChildServer, graceMs = 20_000): Promise<ChildExit> => {
  const timer = setTimeout(() => server.running() && server.child.kill("SIGKILL"), graceMs)
  try {
    return await server.exited
  } finally {
    clearTimeout(timer)
  }
}

/** A server for the current scope: killed with SIGKILL when the scope closes if it is still running. */
export const startChild = (options: SpawnOptions): Effect.Effect<ChildServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => spawnServer(options)),
    (server) => Effect.promise(() => kill(server, "SIGKILL"))
  )

/** VmRSS of a process in bytes, from /proc (Linux). */
export const rssBytes = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(match[1]) * 1024
}

/** A TCP port nobody listens on right now (another process may still take it before the child binds it). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = Net.createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error("no port"))))
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------

const PORT_ATTEMPTS = 3
const POLL_MS = 50

let bundled: Promise<string> | undefined

/** The node arguments that run `src/main.ts`: see the module comment. */
async function entryArgs(): Promise<ReadonlyArray<string>> {
  if (process.env["DOCSYNC_TEST_CHILD"] === "tsx") return ["--import", "tsx", "src/main.ts"]
  bundled ??= bundleMain()
  return ["--enable-source-maps", await bundled]
}

/**
 * `src/main.ts` and our other sources in one ESM file, packages external. It lives under node_modules so that
 * node resolves those packages from the repository; one file per process, removed when the process exits.
 */
async function bundleMain(): Promise<string> {
  const dir = Path.join(ROOT, "node_modules", ".cache", "docsync-test")
  Fs.mkdirSync(dir, { recursive: true })
  // A test worker may be killed without an "exit" event: sweep bundles left by processes that are gone.
  for (const name of Fs.readdirSync(dir)) {
    const owner = Number(/^main-(\d+)-/.exec(name)?.[1])
    if (Number.isInteger(owner) && owner !== process.pid && !alive(owner)) Fs.rmSync(Path.join(dir, name), { force: true })
  }
  const outfile = Path.join(dir, `main-${process.pid}-${crypto.randomUUID().slice(0, 8)}.mjs`)
  await esbuild.build({
    entryPoints: [Path.join(ROOT, "src", "main.ts")],
    outfile,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    logLevel: "silent"
  })
  process.once("exit", () => Fs.rmSync(outfile, { force: true }))
  return outfile
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

function launch(args: ReadonlyArray<string>, port: number, options: SpawnOptions): ChildServer {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env["PATH"] ?? "",
      NO_COLOR: "1",
      HOST: "127.0.0.1",
      LOG_LEVEL: "warning",
      ...options.env,
      PORT: String(port)
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  // Keep the head (start-up errors) and a tail: a long soak run must not grow this without bound.
  let head = ""
  let tail = ""
  const collect = (chunk: string) => {
    if (head.length < OUTPUT_HEAD) head += chunk
    else tail = (tail + chunk).slice(-OUTPUT_TAIL)
    options.onOutput?.(chunk)
  }
  child.stdout?.setEncoding("utf8").on("data", collect)
  child.stderr?.setEncoding("utf8").on("data", collect)
  let exit: ChildExit | undefined
  const exited = new Promise<ChildExit>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = { code, signal }
      resolve(exit)
    })
  })
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    child,
    output: () => (tail === "" ? head : `${head}\n…\n${tail}`),
    exited,
    running: () => exit === undefined
  }
}

const OUTPUT_HEAD = 64 * 1024
const OUTPUT_TAIL = 192 * 1024

async function waitHealthy(server: ChildServer, withinMs: number): Promise<string> {
  const deadline = Date.now() + withinMs
  while (Date.now() < deadline) {
    if (!server.running()) return "it exited"
    try {
      const response = await fetch(`${server.baseUrl}/api/v1/health`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) return "ready"
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
  return `no healthy answer within ${withinMs} ms`
}
