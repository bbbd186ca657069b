/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): the top functions by self time, and self time by file
 * or package, so the hot path is visible without a GUI.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile | directory> [--top 25]
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { num, parseFlags } from "./lib.js"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

const [target, ...rest] = process.argv.slice(2)
if (target === undefined) {
  console.error("usage: profile-summary.ts <file.cpuprofile | directory> [--top N]")
  process.exit(2)
}
const options = parseFlags(rest)
const top = num(options, "top", 25)
/** `--window all` keeps the whole profile; by default a run's marks.json (from the runner) cuts it to the window. */
const wholeProfile = options.get("window") === "all"
const files = statSync(target).isDirectory()
  ? readdirSync(target).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(target, f))
  : [target]

/** A short location: package/file for node_modules, src/... for the project (also when compiled), node: internals. */
const where = (url: string): string => {
  if (url === "") return "(native/vm)"
  const bench = url.indexOf("/.cache/docsync-bench/")
  if (bench >= 0) return `src/${url.slice(bench + 22).replace(/\.js$/, ".ts")}`
  const nm = url.lastIndexOf("node_modules/")
  if (nm >= 0) {
    const parts = url.slice(nm + 13).split("/")
    const pkg = parts[0]!.startsWith("@") ? `${parts.shift()}/${parts.shift()}` : parts.shift()!
    const rest = parts.join("/").replace(/^dist\/(esm|cjs)\//, "").replace(/^lib\//, "")
    return `${pkg}/${rest}`
  }
  if (url.startsWith("node:")) return url
  const m = /\/(src|bench|dist)\/(.*)$/.exec(url)
  return m ? `${m[1]}/${m[2]}` : url
}

const isProject = (url: string): boolean => where(url).startsWith("src/")

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // The runner writes the marks of the load generator (CLOCK_MONOTONIC µs, V8's profile clock) next to the profile:
  // keep the measurement window (or, for idle, the connecting phase).
  let from = Number.NEGATIVE_INFINITY
  let to = Number.POSITIVE_INFINITY
  let windowNote = "whole profile"
  const marksFile = file.replace(/\.cpuprofile$/, ".marks.json")
  if (!wholeProfile && existsSync(marksFile)) {
    const marks = JSON.parse(readFileSync(marksFile, "utf8")) as Record<string, number>
    const [a, b] = marks["measure-start"] !== undefined ? ["measure-start", "measure-end"] : ["idle-before", "hold-start"]
    if (marks[a!] !== undefined && marks[b!] !== undefined) {
      from = marks[a!]!
      to = marks[b!]!
      windowNote = `${a} → ${b} (${((to - from) / 1e6).toFixed(1)} s; --window all for the whole profile)`
    }
  }
  const selfUs = new Map<number, number>()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t < from || t > to) continue
    const id = profile.samples[i]!
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0)
  let idle = 0
  const byFunction = new Map<string, number>()
  const byPlace = new Map<string, number>()
  const byOwner = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame
    const name = frame.functionName || "(anonymous)"
    if (name === "(idle)") {
      idle += us
      continue
    }
    const key = frame.url === "" ? name : `${name}  ${where(frame.url)}:${frame.lineNumber + 1}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + us)
    const place = frame.url === "" ? (name.startsWith("(") ? name : "(native: syscalls, JSON, regexp...)") : where(frame.url)
    byPlace.set(place, (byPlace.get(place) ?? 0) + us)
    // the nearest project function on the stack: which of our functions the time is spent under
    let owner = "(no project frame on the stack)"
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame
      if (isProject(f.url)) {
        owner = `${f.functionName || "(anonymous)"}  ${where(f.url)}:${f.lineNumber + 1}`
        break
      }
    }
    byOwner.set(owner, (byOwner.get(owner) ?? 0) + us)
  }
  const byLayer = new Map<string, number>()
  for (const [place, us] of byPlace) {
    const layer = place.startsWith("src/")
      ? "docsync (src/)"
      : place === "@effect/sql-sqlite-node/SqliteClient.js"
        ? "SQLite statements (better-sqlite3 run/all, incl. fsync)"
        : place.startsWith("effect/")
          ? "Effect runtime (effect/*)"
          : place.startsWith("@effect/")
            ? "@effect/* (sql, platform)"
            : place.startsWith("ws/")
              ? "ws"
              : place.startsWith("better-sqlite3/")
                ? "better-sqlite3 (JS)"
                : place.startsWith("node:")
                  ? "Node internals (streams, net, timers)"
                  : place.startsWith("(native")
                    ? "native (syscalls such as writev, JSON, regexp)"
                    : place === "(garbage collector)"
                      ? "garbage collector"
                      : "other"
    byLayer.set(layer, (byLayer.get(layer) ?? 0) + us)
  }
  const busy = total - idle
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`
  const list = (title: string, map: Map<string, number>) => {
    console.log(`\n  ${title}:`)
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)} ${ms(us)}  ${key}`)
  }
  console.log(`\n${file}\n  window: ${windowNote}\n  ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (percentages are of busy time)`)
  list("self time by layer", byLayer)
  list(`top ${top} functions by self time`, byFunction)
  list("self time by file", byPlace)
  list("time under the nearest project (src/) function on the stack", byOwner)
}
