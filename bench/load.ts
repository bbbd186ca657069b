/**
 * The load generator of the benchmark (issue 6), in its own process. It speaks protocol v1 over loopback to one
 * server, docsync or the baseline relay (`--kind baseline`: documents are not created, any id works), runs one
 * scenario and reports JSON: to the parent over IPC when started by `bench/run.ts`, else on stdout.
 *
 *   node --import tsx bench/load.ts --scenario fanout --url http://127.0.0.1:8000 [--kind docsync|baseline] [flags]
 *
 * Scenarios (flags and defaults in bench/README.md): fanout, many-docs, idle, join.
 *
 * When started by the runner it announces phases with `mark(name)` and waits for the runner to have sampled the
 * server's /proc at that moment (window of the measurement, idle before/after), so server CPU and RSS line up with
 * what this process measured. Every phase is bounded in time; the whole process exits after `--timeout` seconds.
 */
import { randomBytes } from "node:crypto"
import { WebSocket } from "ws"
import { bool, type Flags, Histogram, median, num, parseFlags, pool, round, sleep, str, withTimeout } from "./lib.js"

const flags: Flags = parseFlags(process.argv.slice(2))
const scenario = str(flags, "scenario", "fanout")
const baseUrl = str(flags, "url", "http://127.0.0.1:8000").replace(/\/$/, "")
const kind = str(flags, "kind", "docsync")
if (kind !== "docsync" && kind !== "baseline") throw new Error("--kind must be docsync or baseline")
if (!/^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(baseUrl)) {
  throw new Error(`--url must be a loopback address, got ${baseUrl}`)
}
const wsBase = baseUrl.replace(/^http/, "ws")

// ---------------------------------------------------------------------------------------------------------------
// phases (IPC with bench/run.ts)

let markCounter = 0
const pendingMarks = new Map<number, () => void>()
process.on("message", (message: { type?: string; id?: number }) => {
  if (message?.type === "marked" && typeof message.id === "number") pendingMarks.get(message.id)?.()
})

/** Tells the runner a phase boundary was reached and waits (at most 2 s) until it has sampled the server. */
const mark = (name: string): Promise<void> => {
  if (process.send === undefined) return Promise.resolve()
  const id = ++markCounter
  return new Promise<void>((resolve) => {
    const done = () => {
      pendingMarks.delete(id)
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(done, 2000)
    pendingMarks.set(id, done)
    process.send!({ type: "mark", id, name })
  })
}

const cpuSince = (start: NodeJS.CpuUsage, startedAt: number): number => {
  const used = process.cpuUsage(start)
  const wallMs = performance.now() - startedAt
  return wallMs > 0 ? round(((used.user + used.system) / 1000 / wallMs) * 100, 1) : 0
}

// ---------------------------------------------------------------------------------------------------------------
// frames: a few fields read straight from the received Buffer (our own ids and base64 never contain quotes), so
// a reader costs no JSON.parse per update and the generator stays far from saturation.

const TYPE_KEY = Buffer.from('"type":"')
const OPID_KEY = Buffer.from('"opId":"')
const SEQ_KEY = Buffer.from('"seq":')
const VERSION_KEY = Buffer.from('"version":')
const CODE_KEY = Buffer.from('"code":"')
const QUOTE = 34

const stringField = (buf: Buffer, key: Buffer): string => {
  const i = buf.indexOf(key)
  if (i < 0) return ""
  const start = i + key.length
  return buf.toString("latin1", start, buf.indexOf(QUOTE, start))
}

const intField = (buf: Buffer, key: Buffer): number => {
  const i = buf.indexOf(key)
  if (i < 0) return -1
  let value = 0
  for (let j = i + key.length; j < buf.length; j++) {
    const c = buf[j]!
    if (c < 48 || c > 57) break
    value = value * 10 + (c - 48)
  }
  return value
}

/** Our opIds are `<sender>.<n>`: sets `opSender`/`opN` from the frame without allocating; false if absent. */
let opSender = 0
let opN = 0
const parseOpId = (buf: Buffer): boolean => {
  const i = buf.indexOf(OPID_KEY)
  if (i < 0) return false
  let j = i + OPID_KEY.length
  let a = 0
  for (; buf[j] !== 46; j++) {
    const c = buf[j]!
    if (c < 48 || c > 57) return false
    a = a * 10 + (c - 48)
  }
  let b = 0
  for (j++; buf[j] !== QUOTE; j++) {
    const c = buf[j]!
    if (c < 48 || c > 57) return false
    b = b * 10 + (c - 48)
  }
  opSender = a
  opN = b
  return true
}

// ---------------------------------------------------------------------------------------------------------------
// connections

const errorsByCode: Record<string, number> = {}
const unexpectedCloses: Record<string, number> = {}
const count = (record: Record<string, number>, key: string) => {
  record[key] = (record[key] ?? 0) + 1
}

interface Conn {
  readonly ws: WebSocket
  readonly index: number
  /** latest seq seen (state, ack, remote_update) */
  version: number
  startedAt: number
  openedAt: number
  stateAt: number
  state: Buffer | undefined
  closing: boolean
}

type OnFrame = (conn: Conn, type: string, frame: Buffer) => void

interface ConnectOptions {
  /** Keep the raw state frame on the connection (join scenario); else its version is read and it is dropped. */
  readonly keepState?: boolean
  /** Answer `snapshot_request` with a snapshot of this many bytes (0: ignore requests). */
  readonly snapshotBytes?: number
}

let connIndex = 0
const snapshotPayloads = new Map<number, string>()

/** Opens a socket to the document and resolves once its `state` frame arrived; later frames go to `onFrame`. */
const connect = (documentId: string, actorId: string, onFrame: OnFrame, options: ConnectOptions = {}): Promise<Conn> =>
  new Promise<Conn>((resolve, reject) => {
    const startedAt = performance.now()
    const ws = new WebSocket(`${wsBase}/ws/documents/${encodeURIComponent(documentId)}?actorId=${encodeURIComponent(actorId)}`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 15_000,
      maxPayload: 256 * 1024 * 1024
    })
    const conn: Conn = {
      ws,
      index: connIndex++,
      version: 0,
      startedAt,
      openedAt: 0,
      stateAt: 0,
      state: undefined,
      closing: false
    }
    let joined = false
    ws.on("open", () => {
      conn.openedAt = performance.now()
    })
    ws.on("message", (data, isBinary) => {
      const frame = data as Buffer
      if (!joined) {
        conn.stateAt = performance.now()
        joined = true
        const type = isBinary ? "" : stringField(frame, TYPE_KEY)
        if (type !== "state") {
          ws.terminate()
          return reject(new Error(`first frame of ${documentId} is not state: ${frame.toString("utf8", 0, 200)}`))
        }
        if (options.keepState) conn.state = frame
        else conn.version = (JSON.parse(frame.toString("utf8")) as { version: number }).version
        return resolve(conn)
      }
      const type = stringField(frame, TYPE_KEY)
      if (type === "error") count(errorsByCode, stringField(frame, CODE_KEY) || "unknown")
      else if (type === "snapshot_request" && options.snapshotBytes) {
        const version = intField(frame, VERSION_KEY)
        let payload = snapshotPayloads.get(options.snapshotBytes)
        if (payload === undefined) {
          payload = randomBytes(options.snapshotBytes).toString("base64")
          snapshotPayloads.set(options.snapshotBytes, payload)
        }
        ws.send(`{"type":"snapshot","version":${version},"snapshotB64":"${payload}"}`)
      }
      onFrame(conn, type, frame)
    })
    ws.on("close", (code) => {
      if (!joined) return reject(new Error(`socket to ${documentId} closed with ${code} before state`))
      if (!conn.closing) count(unexpectedCloses, String(code))
    })
    ws.on("error", (error) => {
      if (!joined) reject(error)
    })
  })

/** Closes every socket (code 1000) and waits for them to be closed, at most `ms`. */
const closeAll = async (conns: ReadonlyArray<Conn>, ms = 10_000): Promise<void> => {
  const closed = conns.map(
    (conn) =>
      new Promise<void>((resolve) => {
        if (conn.ws.readyState === WebSocket.CLOSED) return resolve()
        conn.ws.once("close", () => resolve())
        conn.closing = true
        conn.ws.close(1000)
      })
  )
  await withTimeout(Promise.all(closed), ms, "closing sockets").catch(() => {
    for (const conn of conns) conn.ws.terminate()
  })
}

/** Documents to use: created with `POST /api/v1/documents` on docsync, made-up ids on the baseline. */
const createDocuments = async (n: number): Promise<Array<string>> => {
  const nonce = randomBytes(4).toString("hex")
  if (kind === "baseline") return Array.from({ length: n }, (_, i) => `bench-${nonce}-${i}`)
  return pool(n, 16, async (i) => {
    const response = await fetch(`${baseUrl}/api/v1/documents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: `bench ${scenario} ${nonce} ${i}` }),
      signal: AbortSignal.timeout(10_000)
    })
    if (response.status !== 201) throw new Error(`POST /api/v1/documents: ${response.status} ${await response.text()}`)
    return ((await response.json()) as { id: string }).id
  })
}

const deltaB64 = (bytes: number): string => randomBytes(bytes).toString("base64")

/** A sender: its number (first part of its opIds) and the send time of each of its updates, by n. */
interface Sender {
  readonly id: number
  readonly conn: Conn
  readonly actorId: string
  readonly delta: string
  readonly sentAt: Array<number>
  inFlight: number
}

const senders: Array<Sender> = []
const makeSender = (conn: Conn, deltaBytes: number): Sender => {
  const sender: Sender = { id: senders.length, conn, actorId: `w${senders.length}`, delta: deltaB64(deltaBytes), sentAt: [], inFlight: 0 }
  senders.push(sender)
  return sender
}

const sendUpdate = (sender: Sender): void => {
  const n = sender.sentAt.length
  sender.sentAt.push(performance.now())
  sender.inFlight++
  sender.conn.ws.send(
    `{"type":"update","opId":"${sender.id}.${n}","baseVersion":${sender.conn.version},"actorId":"${sender.actorId}","deltaB64":"${sender.delta}"}`
  )
}

/** The send time of the update in the frame, or -1. */
const sentAtOf = (frame: Buffer): number => (parseOpId(frame) ? (senders[opSender]?.sentAt[opN] ?? -1) : -1)

const waitUntil = async (predicate: () => boolean, ms: number): Promise<boolean> => {
  const deadline = performance.now() + ms
  while (!predicate()) {
    if (performance.now() > deadline) return false
    await sleep(10)
  }
  return true
}

const common = () => ({ errors: { ...errorsByCode }, unexpectedCloses: { ...unexpectedCloses } })

// ---------------------------------------------------------------------------------------------------------------
// fanout: W writers keep `inflight` updates unacknowledged each; R readers per document count remote_updates.

const fanout = async () => {
  const docs = num(flags, "docs", 1)
  const writersPerDoc = num(flags, "writers", 1)
  const readersPerDoc = num(flags, "readers", 10)
  const deltaBytes = num(flags, "delta-bytes", 80)
  const inflight = num(flags, "inflight", 16)
  const warmupMs = num(flags, "warmup", 2) * 1000
  const durationMs = num(flags, "duration", 8) * 1000
  const snapshotBytes = num(flags, "snapshot-bytes", 4096)

  const ids = await createDocuments(docs)
  const latency = new Histogram()
  const ackLatency = new Histogram()
  let windowStart = Number.POSITIVE_INFINITY
  let windowEnd = Number.POSITIVE_INFINITY
  let running = true
  let delivered = 0
  let acked = 0
  let gaps = 0

  const onReader: OnFrame = (conn, type, frame) => {
    if (type !== "remote_update") return
    const now = performance.now()
    const seq = intField(frame, SEQ_KEY)
    if (seq !== conn.version + 1) gaps++
    conn.version = seq
    if (now >= windowStart && now < windowEnd) delivered++
    const sentAt = sentAtOf(frame)
    if (sentAt >= windowStart && sentAt < windowEnd) latency.record(now - sentAt)
  }
  const writerOf = new Map<Conn, Sender>()
  const onWriter: OnFrame = (conn, type, frame) => {
    if (type === "ack") {
      const now = performance.now()
      const seq = intField(frame, SEQ_KEY)
      if (seq > conn.version) conn.version = seq
      const sentAt = sentAtOf(frame)
      if (sentAt >= windowStart && sentAt < windowEnd) ackLatency.record(now - sentAt)
      if (now >= windowStart && now < windowEnd) acked++
      const sender = writerOf.get(conn)!
      sender.inFlight--
      if (running) sendUpdate(sender)
    } else if (type === "remote_update") {
      const seq = intField(frame, SEQ_KEY)
      if (seq > conn.version) conn.version = seq
    } else if (type === "error" && frame.indexOf(OPID_KEY) >= 0) {
      // not stored (counted in errors): keep the pipeline full with the next update
      const sender = writerOf.get(conn)!
      sender.inFlight--
      if (running) sendUpdate(sender)
    }
  }

  const readers = (
    await pool(docs * readersPerDoc, 50, (i) => connect(ids[i % docs]!, `r${i}`, onReader))
  )
  const writers: Array<Sender> = []
  for (let d = 0; d < docs; d++) {
    for (let w = 0; w < writersPerDoc; w++) {
      const conn = await connect(ids[d]!, `w${senders.length}`, onWriter, { snapshotBytes })
      const sender = makeSender(conn, deltaBytes)
      writerOf.set(conn, sender)
      writers.push(sender)
    }
  }

  const start = performance.now()
  windowStart = start + warmupMs
  windowEnd = windowStart + durationMs
  for (const sender of writers) for (let i = 0; i < inflight; i++) sendUpdate(sender)
  await sleep(warmupMs)
  await mark("measure-start")
  const cpu0 = process.cpuUsage()
  const cpuT0 = performance.now()
  await sleep(Math.max(0, windowEnd - performance.now()))
  const loadCpuPercent = cpuSince(cpu0, cpuT0)
  running = false
  await mark("measure-end")
  const drained = await waitUntil(() => writers.every((w) => w.inFlight === 0), 15_000)
  const sent = writers.reduce((n, w) => n + w.sentAt.length, 0)
  // Let the readers receive what was acked, then hang up.
  await waitUntil(() => readers.every((r) => r.version >= Math.max(...writers.map((w) => w.conn.version))), 5000)
  await closeAll([...readers, ...writers.map((w) => w.conn)])
  const seconds = durationMs / 1000
  return {
    shape: { docs, writersPerDoc, readersPerDoc, deltaBytes, inflight, warmupSec: warmupMs / 1000, durationSec: seconds },
    deliveredPerSec: round(delivered / seconds, 1),
    ackedPerSec: round(acked / seconds, 1),
    latency: latency.summary(),
    ackLatency: ackLatency.summary(),
    sent,
    drained,
    gaps,
    loadCpuPercent,
    ...common()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// many-docs: D documents × C clients, each client sends `rate` updates/s (open loop) and receives the others'.

const manyDocs = async () => {
  const docs = num(flags, "docs", 200)
  const clientsPerDoc = num(flags, "clients", 4)
  const rate = num(flags, "rate", 5)
  const deltaBytes = num(flags, "delta-bytes", 80)
  const warmupMs = num(flags, "warmup", 2) * 1000
  const durationMs = num(flags, "duration", 20) * 1000
  const snapshotBytes = num(flags, "snapshot-bytes", 4096)
  if (rate <= 0) throw new Error("--rate must be > 0")

  const ids = await createDocuments(docs)
  const latency = new Histogram()
  const ackLatency = new Histogram()
  let windowStart = Number.POSITIVE_INFINITY
  let windowEnd = Number.POSITIVE_INFINITY
  let delivered = 0
  let gaps = 0
  const senderOf = new Map<Conn, Sender>()
  const onFrame: OnFrame = (conn, type, frame) => {
    if (type === "ack") {
      const now = performance.now()
      const seq = intField(frame, SEQ_KEY)
      if (seq !== conn.version + 1) gaps++
      conn.version = seq
      senderOf.get(conn)!.inFlight--
      const sentAt = sentAtOf(frame)
      if (sentAt >= windowStart && sentAt < windowEnd) ackLatency.record(now - sentAt)
    } else if (type === "remote_update") {
      const now = performance.now()
      const seq = intField(frame, SEQ_KEY)
      if (seq !== conn.version + 1) gaps++
      conn.version = seq
      const sentAt = sentAtOf(frame)
      if (sentAt >= windowStart && sentAt < windowEnd) {
        delivered++
        latency.record(now - sentAt)
      }
    } else if (type === "error" && frame.indexOf(OPID_KEY) >= 0) {
      senderOf.get(conn)!.inFlight--
    }
  }
  const total = docs * clientsPerDoc
  const connectStart = performance.now()
  const conns = await pool(total, 50, (i) => connect(ids[i % docs]!, `c${i}`, onFrame, { snapshotBytes }))
  const connectSec = (performance.now() - connectStart) / 1000
  const clients = conns.map((conn) => {
    const sender = makeSender(conn, deltaBytes)
    senderOf.set(conn, sender)
    return sender
  })

  const periodMs = 1000 / rate
  const start = performance.now() + 50
  const end = start + warmupMs + durationMs
  windowStart = start + warmupMs
  windowEnd = end
  let sentInWindow = 0
  const timers = new Set<NodeJS.Timeout>()
  for (const client of clients) {
    const phase = Math.random() * periodMs
    let k = 0
    const fire = () => {
      const due = start + phase + k * periodMs
      if (due >= end) return
      if (client.conn.ws.readyState === WebSocket.OPEN) {
        sendUpdate(client)
        // by the actual send time, like the latency samples (a late timer may cross the window's start)
        const at = client.sentAt[client.sentAt.length - 1]!
        if (at >= windowStart && at < windowEnd) sentInWindow++
      }
      k++
      const timer = setTimeout(fire, Math.max(0, start + phase + k * periodMs - performance.now()))
      timers.add(timer)
    }
    timers.add(setTimeout(fire, Math.max(0, start + phase - performance.now())))
  }
  await sleep(Math.max(0, windowStart - performance.now()))
  await mark("measure-start")
  const cpu0 = process.cpuUsage()
  const cpuT0 = performance.now()
  await sleep(Math.max(0, end - performance.now()))
  const loadCpuPercent = cpuSince(cpu0, cpuT0)
  await mark("measure-end")
  for (const timer of timers) clearTimeout(timer)
  // what was sent in the window and is still on its way gets `--drain` seconds more (then counts as undelivered)
  const drainMs = num(flags, "drain", 10) * 1000
  const drainStart = performance.now()
  const drained = await waitUntil(() => clients.every((c) => c.inFlight === 0), drainMs)
  await waitUntil(() => delivered >= sentInWindow * (clientsPerDoc - 1), Math.max(500, drainMs - (performance.now() - drainStart)))
  await closeAll(conns)
  return {
    shape: { docs, clientsPerDoc, rate, deltaBytes, warmupSec: warmupMs / 1000, durationSec: durationMs / 1000 },
    connectSec: round(connectSec, 2),
    sentInWindow,
    sentPerSec: round(sentInWindow / (durationMs / 1000), 1),
    delivered,
    expectedDeliveries: sentInWindow * (clientsPerDoc - 1),
    latency: latency.summary(),
    ackLatency: ackLatency.summary(),
    drained,
    gaps,
    loadCpuPercent,
    ...common()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// idle: N sockets over D documents, connected `concurrency` at a time, then left idle.

const idle = async () => {
  const sockets = num(flags, "sockets", 5000)
  const docs = num(flags, "docs", 500)
  const concurrency = num(flags, "concurrency", 100)
  const settleMs = num(flags, "settle", 2) * 1000
  const holdMs = num(flags, "hold", 3) * 1000

  const ids = await createDocuments(docs)
  await sleep(500)
  await mark("idle-before")
  const connectLatency = new Histogram()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  // In two halves, held apart: the RSS added by the second half is the marginal cost of a connection, without what
  // a server pays once (the young generation V8 grows under the first burst of allocation, documents loading).
  const half = Math.floor(sockets / 2)
  const connectRange = (from: number, to: number) =>
    pool(to - from, concurrency, async (k) => {
      const i = from + k
      const conn = await connect(ids[i % docs]!, `i${i}`, () => {})
      connectLatency.record(conn.stateAt - conn.startedAt)
      return conn
    })
  const first = await connectRange(0, half)
  let connectMs = performance.now() - t0
  let connectCpu = process.cpuUsage(cpu0)
  await sleep(settleMs)
  await mark("half-hold-start")
  await sleep(holdMs)
  await mark("half-hold-end")
  const t1 = performance.now()
  const cpu1 = process.cpuUsage()
  const conns = [...first, ...(await connectRange(half, sockets))]
  connectMs += performance.now() - t1
  const second = process.cpuUsage(cpu1)
  connectCpu = { user: connectCpu.user + second.user, system: connectCpu.system + second.system }
  const connectSec = connectMs / 1000
  // While connecting (the pause between the halves left out, as in connectSec).
  const loadCpuPercent = round(((connectCpu.user + connectCpu.system) / 1000 / connectMs) * 100, 1)
  await sleep(settleMs)
  await mark("hold-start")
  await sleep(holdMs)
  await mark("hold-end")
  const stillOpen = conns.filter((c) => c.ws.readyState === WebSocket.OPEN).length
  await closeAll(conns, 20_000)
  return {
    shape: { sockets, half, docs, concurrency, settleSec: settleMs / 1000, holdSec: holdMs / 1000 },
    connectSec: round(connectSec, 3),
    connectPerSec: round(sockets / connectSec, 1),
    connectLatency: connectLatency.summary(),
    stillOpen,
    loadCpuPercent,
    ...common()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// join: a document with U updates, and one with a snapshot every SNAPSHOT_EVERY; socket open → state received.

const seed = async (documentId: string, updates: number, deltaBytes: number, inflight: number, snapshotBytes: number) => {
  let stored = 0
  let snapshotAcks = 0
  let lastSnapshotAck = -1
  let sender: Sender | undefined
  const next = () => {
    if (stored + sender!.inFlight < updates) sendUpdate(sender!)
  }
  const onFrame: OnFrame = (conn, type, frame) => {
    if (type === "ack") {
      const seq = intField(frame, SEQ_KEY)
      if (seq > conn.version) conn.version = seq
      stored++
      sender!.inFlight--
      next()
    } else if (type === "error" && frame.indexOf(OPID_KEY) >= 0) {
      // not stored: another update takes its place, so the document still ends with `updates` updates
      sender!.inFlight--
      next()
    } else if (type === "snapshot_ack") {
      snapshotAcks++
      lastSnapshotAck = intField(frame, VERSION_KEY)
    }
  }
  const conn = await connect(documentId, "seeder", onFrame, { snapshotBytes })
  sender = makeSender(conn, deltaBytes)
  const t0 = performance.now()
  for (let i = 0; i < Math.min(inflight, updates); i++) sendUpdate(sender)
  const done = await waitUntil(() => stored >= updates && sender.inFlight === 0, 120_000)
  if (!done) throw new Error(`seeding ${documentId} did not finish in 120 s (${stored} stored)`)
  if (snapshotBytes > 0) await waitUntil(() => updates - lastSnapshotAck < 2 * num(flags, "snapshot-every", 100), 3000)
  const seconds = (performance.now() - t0) / 1000
  await closeAll([conn])
  return { seconds: round(seconds, 2), perSec: round(updates / seconds, 1), version: conn.version, snapshotAcks, lastSnapshotAck }
}

const join = async () => {
  const updates = num(flags, "updates", 10_000)
  const joins = num(flags, "joins", 20)
  const warmupJoins = num(flags, "warmup-joins", 20)
  const deltaBytes = num(flags, "delta-bytes", 80)
  const snapshotBytes = num(flags, "snapshot-bytes", 32_768)
  const coldJoins = kind === "docsync" ? num(flags, "cold-joins", 0) : 0
  const coldGapMs = num(flags, "cold-gap", 1.5) * 1000
  const seedInflight = num(flags, "seed-inflight", 64)

  const ids = await createDocuments(2)
  const seeding =
    kind === "docsync"
      ? {
          plain: await seed(ids[0]!, updates, deltaBytes, seedInflight, 0),
          snapshot: await seed(ids[1]!, updates, deltaBytes, seedInflight, snapshotBytes)
        }
      : null

  const measure = async (documentId: string, n: number, gapMs: number) => {
    const openToState: Array<number> = []
    const connectToState: Array<number> = []
    let check: { stateBytes: number; version: number; updates: number; snapshotVersion: number | null } | undefined
    for (let i = 0; i < n; i++) {
      if (gapMs > 0) await sleep(gapMs)
      const conn = await connect(documentId, `j${i}`, () => {}, { keepState: true })
      openToState.push(conn.stateAt - conn.openedAt)
      connectToState.push(conn.stateAt - conn.startedAt)
      if (check === undefined) {
        const state = JSON.parse(conn.state!.toString("utf8")) as {
          version: number
          updates: Array<unknown>
          snapshot: { version: number } | null
        }
        check = { stateBytes: conn.state!.length, version: state.version, updates: state.updates.length, snapshotVersion: state.snapshot?.version ?? null }
      }
      conn.state = undefined
      await closeAll([conn])
    }
    return {
      joins: n,
      openToStateMs: {
        median: round(median(openToState)),
        min: round(Math.min(...openToState)),
        max: round(Math.max(...openToState)),
        // In join order: the first joins of a run are slower than the later ones (see docs/performance.md).
        each: openToState.map((ms) => round(ms))
      },
      connectToStateMs: { median: round(median(connectToState)), min: round(Math.min(...connectToState)), max: round(Math.max(...connectToState)) },
      ...check
    }
  }

  // The generator's warm-up, not the server's: any ws client process takes ~11-16 ms to receive each of its first
  // ~12 messages of 1-2 MB, then 1-4 ms, from a plain ws server as well (docs/performance.md, "Join").
  for (let i = 0; i < warmupJoins; i++) {
    const conn = await connect(ids[0]!, `w${i}`, () => {}, { keepState: true })
    conn.state = undefined
    await closeAll([conn])
  }

  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await mark("measure-start")
  const rows = {
    plain: { warm: await measure(ids[0]!, joins, 0), cold: coldJoins > 0 ? await measure(ids[0]!, coldJoins, coldGapMs) : null },
    snapshot: { warm: await measure(ids[1]!, joins, 0), cold: coldJoins > 0 ? await measure(ids[1]!, coldJoins, coldGapMs) : null }
  }
  await mark("measure-end")
  return { shape: { updates, joins, warmupJoins, coldJoins, deltaBytes, snapshotBytes }, seeding, rows, loadCpuPercent: cpuSince(cpu0, t0), ...common() }
}

// ---------------------------------------------------------------------------------------------------------------

const scenarios: Record<string, () => Promise<unknown>> = { fanout, "many-docs": manyDocs, idle, join }

const main = async () => {
  const run = scenarios[scenario]
  if (run === undefined) throw new Error(`unknown --scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`)
  const timeoutSec = num(flags, "timeout", 300)
  const hardStop = setTimeout(() => {
    console.error(`load: scenario ${scenario} exceeded --timeout ${timeoutSec}s`)
    process.exit(3)
  }, timeoutSec * 1000)
  hardStop.unref()
  const result = { scenario, kind, url: baseUrl, ...((await run()) as object) }
  if (process.send !== undefined && !bool(flags, "stdout", false)) {
    await new Promise<void>((resolve) => process.send!({ type: "result", result }, () => resolve()))
  } else {
    console.log(JSON.stringify(result, null, 2))
  }
  process.exit(0)
}

main().catch((error: unknown) => {
  console.error("load:", error instanceof Error ? error.message : error)
  process.exit(1)
})
