/**
 * In-process micro-benchmark of the per-frame work around the actor (issue 6, item 4): decoding and validating a
 * client's `update` frame, and encoding the `remote_update` broadcast, once for all members as docsync does and once
 * per member as a relay using `ws.send` per socket would. Pure functions, no sockets, no actor, no storage.
 *
 *   node --import tsx bench/micro-frame.ts [--delta-bytes 80] [--members 10] [--rounds 5] [--iterations 200000]
 *
 * Prints, per operation, the median over the rounds of the mean time (ns) and the operations per second.
 */
import { remoteUpdateFrame } from "../src/Document/DocumentActor.js"
import * as Protocol from "../src/Domain/Protocol.js"
import { textFrame } from "../src/Http/SyncSocket.js"
import { num, parseFlags } from "./lib.js"

const flags = parseFlags(process.argv.slice(2))
const deltaBytes = num(flags, "delta-bytes", 80)
const members = num(flags, "members", 10)
const rounds = num(flags, "rounds", 5)
const iterations = num(flags, "iterations", 200_000)

const limits: Protocol.FrameLimits = { maxUpdateBytes: 1024 * 1024, maxPresenceBytes: 4096 }
const deltaB64 = Buffer.alloc(deltaBytes, 7).toString("base64")
const frames = Array.from({ length: 1024 }, (_, i) =>
  JSON.stringify({ type: "update", opId: `op-${i}-0123456789abcdef`, baseVersion: i, actorId: "actor-0123456789", deltaB64 }))

/** Keeps results alive so that the work is not optimised away. */
let sink = 0

const cases: ReadonlyArray<{ readonly name: string; readonly run: (i: number) => void }> = [
  {
    name: "decode + validate an update frame",
    run: (i) => {
      const decoded = Protocol.decodeClientFrame(frames[i & 1023] as string, limits)
      sink += decoded.type.length
    }
  },
  {
    name: "JSON.parse of the same frame alone (for reference)",
    run: (i) => {
      sink += (JSON.parse(frames[i & 1023] as string) as { type: string }).type.length
    }
  },
  {
    name: `encode a remote_update for ${members} members as docsync does: JSON and frame once, shared`,
    run: (i) => {
      const fragment = JSON.stringify({ seq: i, opId: "op-0123456789abcdef", actorId: "actor-0123456789", deltaB64 })
      sink += textFrame(remoteUpdateFrame(fragment)).length
    }
  },
  {
    name: `encode a remote_update for ${members} members: JSON once, framed per member`,
    run: (i) => {
      const text = JSON.stringify({ type: "remote_update", seq: i, opId: "op-0123456789abcdef", actorId: "actor-0123456789", deltaB64 })
      for (let m = 0; m < members; m++) sink += textFrame(text).length
    }
  }
]

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

for (const { name, run } of cases) {
  for (let i = 0; i < 20_000; i++) run(i)
  const perOp: Array<number> = []
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) run(i)
    perOp.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  const ns = median(perOp)
  console.log(`${name}: ${ns.toFixed(0)} ns (${Math.round(1e9 / ns).toLocaleString("en-US")}/s)`)
}
if (sink === 0) console.log("(nothing measured)")
