/**
 * Small helpers shared by the benchmark scripts: CLI flags, a log-bucketed latency histogram, statistics,
 * /proc sampling of another process, and a bounded-concurrency pool.
 */
import { readdirSync, readFileSync } from "node:fs"

// ---------------------------------------------------------------------------------------------------------------
// CLI flags: `--name value`, `--name=value`, `--flag` (true), `--no-flag` (false)

export type Flags = Map<string, string>

export const parseFlags = (argv: ReadonlyArray<string>): Flags => {
  const flags: Flags = new Map()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${JSON.stringify(arg)} (flags are --name value)`)
    const body = arg.slice(2)
    const eq = body.indexOf("=")
    if (eq >= 0) flags.set(body.slice(0, eq), body.slice(eq + 1))
    else if (body.startsWith("no-")) flags.set(body.slice(3), "false")
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) flags.set(body, argv[++i]!)
    else flags.set(body, "true")
  }
  return flags
}

export const num = (flags: Flags, name: string, fallback: number): number => {
  const raw = flags.get(name)
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number, got ${raw}`)
  return value
}

export const str = (flags: Flags, name: string, fallback: string): string => flags.get(name) ?? fallback

export const bool = (flags: Flags, name: string, fallback: boolean): boolean => {
  const raw = flags.get(name)
  return raw === undefined ? fallback : raw !== "false" && raw !== "0"
}

// ---------------------------------------------------------------------------------------------------------------
// Latency histogram: buckets 1% wide on a log scale from 1 µs to ~100 s, exact count and max. Recording is O(1),
// so millions of samples cost nothing; quantiles are within ±0.5%.

const PER_LN = 1 / Math.log(1.01)
const BUCKETS = Math.ceil(Math.log(1e8) * PER_LN) + 2

export class Histogram {
  readonly counts = new Float64Array(BUCKETS)
  count = 0
  max = 0
  sum = 0

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const us = ms * 1000
    const index = us <= 1 ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(us) * PER_LN))
    this.counts[index]!++
    this.count++
    this.sum += ms
    if (ms > this.max) this.max = ms
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!
    this.count += other.count
    this.sum += other.sum
    this.max = Math.max(this.max, other.max)
  }

  /** The q-quantile in milliseconds (geometric middle of its bucket), 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!
      if (seen >= rank) {
        if (i === 0) return 0.001
        const low = Math.exp((i - 1) / PER_LN)
        const high = Math.exp(i / PER_LN)
        return Math.min(Math.sqrt(low * high) / 1000, this.max)
      }
    }
    return this.max
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      mean: this.count === 0 ? 0 : round(this.sum / this.count),
      p50: round(this.quantile(0.5)),
      p95: round(this.quantile(0.95)),
      p99: round(this.quantile(0.99)),
      max: round(this.max)
    }
  }
}

export interface LatencySummary {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

// ---------------------------------------------------------------------------------------------------------------
// statistics

export const round = (x: number, digits = 3): number => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Least-squares slope and R² of y over x. */
export const linearFit = (xs: ReadonlyArray<number>, ys: ReadonlyArray<number>): { slope: number; r2: number } => {
  const n = xs.length
  if (n < 2) return { slope: 0, r2: 0 }
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my)
    sxx += (xs[i]! - mx) ** 2
    syy += (ys[i]! - my) ** 2
  }
  const slope = sxx === 0 ? 0 : sxy / sxx
  return { slope, r2: sxx === 0 || syy === 0 ? 0 : (sxy * sxy) / (sxx * syy) }
}

// ---------------------------------------------------------------------------------------------------------------
// /proc sampling (Linux)

export interface ProcSample {
  /** performance.now() of the sampling process, ms */
  readonly t: number
  /** user + system CPU time of the process, seconds */
  readonly cpuSec: number
  /** resident set size, bytes */
  readonly rss: number
  /** time the main thread spent runnable but waiting for a CPU (run queue, /proc/<pid>/schedstat), seconds */
  readonly runWaitSec: number
  /** CPU time of the whole machine, seconds (see machineCpu) */
  readonly machine: { readonly proc: number; readonly irq: number; readonly steal: number }
}

let clockTicks = 100
export const setClockTicks = (ticks: number): void => {
  if (Number.isFinite(ticks) && ticks > 0) clockTicks = ticks
}

/** CPU time and RSS of `pid` from /proc/<pid>/stat and /proc/<pid>/status; undefined once the process is gone. */
export const sampleProc = (pid: number): ProcSample | undefined => {
  try {
    const t = performance.now()
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const cpuSec = (Number(fields[11]) + Number(fields[12])) / clockTicks
    const status = readFileSync(`/proc/${pid}/status`, "latin1")
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(status)
    let runWaitSec = 0
    try {
      runWaitSec = Number(readFileSync(`/proc/${pid}/schedstat`, "latin1").split(" ")[1]) / 1e9
    } catch {
      // no schedstats in this kernel
    }
    return { t, cpuSec, rss: match ? Number(match[1]) * 1024 : 0, runWaitSec, machine: machineCpu() }
  } catch {
    return undefined
  }
}

/**
 * CPU time of the whole machine (all cores, from the first line of /proc/stat), seconds: `proc` is time spent in
 * processes (user, nice, system), `irq` is interrupt and softirq time (loopback TCP is mostly processed there and
 * is charged to no process), `steal` is time the hypervisor gave to other guests.
 */
export const machineCpu = (): { proc: number; irq: number; steal: number } => {
  try {
    const line = readFileSync("/proc/stat", "latin1").split("\n", 1)[0]!
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number)
    return { proc: (user + nice + system) / clockTicks, irq: (irq + softirq) / clockTicks, steal: steal / clockTicks }
  } catch {
    return { proc: 0, irq: 0, steal: 0 }
  }
}

/** Total CPU time (seconds) of every process whose command name is `comm` (e.g. the PostgreSQL server's). */
export const cpuOfCommand = (comm: string): number => {
  let ticks = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1")
      const open = stat.indexOf("(")
      const close = stat.lastIndexOf(")")
      if (stat.slice(open + 1, close) !== comm) continue
      const fields = stat.slice(close + 2).split(" ")
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // exited meanwhile
    }
  }
  return ticks / clockTicks
}

/** CPU use between two samples, in percent of one core. */
export const cpuPercent = (a: ProcSample, b: ProcSample): number =>
  b.t > a.t ? round(((b.cpuSec - a.cpuSec) / ((b.t - a.t) / 1000)) * 100, 1) : 0

/** Time spent waiting for a CPU between two samples, in percent of the elapsed time: contention, made visible. */
export const runWaitPercent = (a: ProcSample, b: ProcSample): number =>
  b.t > a.t ? round(((b.runWaitSec - a.runWaitSec) / ((b.t - a.t) / 1000)) * 100, 1) : 0

/** CPU use of the whole machine between two samples, in percent of one core (200% = two busy cores). */
export const machinePercent = (a: ProcSample, b: ProcSample): { proc: number; irq: number; steal: number } => {
  const seconds = (b.t - a.t) / 1000
  const pct = (x: number) => (seconds > 0 ? round((x / seconds) * 100, 1) : 0)
  return { proc: pct(b.machine.proc - a.machine.proc), irq: pct(b.machine.irq - a.machine.irq), steal: pct(b.machine.steal - a.machine.steal) }
}

// ---------------------------------------------------------------------------------------------------------------
// concurrency

/** Runs `task(0..count-1)` with at most `limit` running at once; resolves with every result in order. */
export const pool = async <T>(count: number, limit: number, task: (index: number) => Promise<T>): Promise<Array<T>> => {
  const results = new Array<T>(count)
  let next = 0
  const worker = async () => {
    while (next < count) {
      const index = next++
      results[index] = await task(index)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, count)) }, worker))
  return results
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects with `what` when `promise` has not settled after `ms`. */
export const withTimeout = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })
