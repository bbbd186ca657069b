/**
 * `docsync-tail`: joins a document and prints its `state`, then every later update and presence event as they
 * arrive, one line each (or one JSON object per line with `--json`). The quickest way to watch a document live.
 *
 *   npm run tail -- <documentId> [--url http://127.0.0.1:8000] [--since N] [--json] [--token JWT]
 *
 * It never writes to the document and does not answer snapshot requests.
 */
import { type ClientOptions, DocSyncClient, type Peer } from "./DocSyncClient.js"

export const USAGE = `usage: docsync-tail <documentId> [options]

Joins a document and prints its state, then every update and presence event as they arrive.

options:
  --url URL       server base URL (default: $DOCSYNC_URL or http://127.0.0.1:8000)
  --since N       start from version N (only later updates are printed)
  --token JWT     token when the server has authentication on (default: $DOCSYNC_TOKEN)
  --actor NAME    identity shown to the others in presence (default: tail-<random>)
  --json          one JSON object per line instead of text
  -h, --help      this help`

export const DEFAULT_URL = "http://127.0.0.1:8000"

export interface TailArgs {
  readonly documentId: string
  readonly url: string
  readonly since: number | undefined
  readonly token: string | undefined
  readonly actorId: string | undefined
  readonly json: boolean
}

/** Parses the command line: the arguments, `"help"`, or an error message. */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): TailArgs | "help" | { readonly error: string } => {
  let documentId: string | undefined
  let url = env.DOCSYNC_URL ?? DEFAULT_URL
  let since: number | undefined
  let token = env.DOCSYNC_TOKEN
  let actorId: string | undefined
  let json = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ""
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined]
    const value = (): string | undefined => inline ?? argv[++i]
    switch (flag) {
      case "-h":
      case "--help":
        return "help"
      case "--json":
        json = true
        break
      case "--url": {
        const given = value()
        if (given === undefined || !/^(https?|wss?):\/\//.test(given)) return { error: "--url needs an http(s):// URL" }
        url = given
        break
      }
      case "--since": {
        const given = value()
        if (given === undefined || !/^\d+$/.test(given)) return { error: "--since needs a non-negative integer" }
        since = Number(given)
        break
      }
      case "--token":
        token = value()
        if (token === undefined) return { error: "--token needs a value" }
        break
      case "--actor":
        actorId = value()
        if (actorId === undefined || actorId.length < 1 || actorId.length > 128) return { error: "--actor needs 1..128 characters" }
        break
      default:
        if (flag.startsWith("-")) return { error: `unknown option ${flag}` }
        if (documentId !== undefined) return { error: `unexpected argument ${flag}` }
        documentId = flag
    }
  }
  if (documentId === undefined) return { error: "missing <documentId>" }
  return { documentId, url, since, token, actorId, json }
}

export interface TailIO {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

/**
 * Runs the tail until `signal` aborts (exit code 0) or the server refuses the document for good (exit code 1).
 * `client` options (a WebSocket constructor, a scheduler) are for tests.
 */
export const main = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
  io: TailIO,
  signal: AbortSignal,
  client: Partial<ClientOptions> = {}
): Promise<number> => {
  const args = parseArgs(argv, env)
  if (args === "help") {
    io.out(USAGE)
    return Promise.resolve(0)
  }
  if ("error" in args) {
    io.err(`docsync-tail: ${args.error}\n\n${USAGE}`)
    return Promise.resolve(2)
  }
  const tail = start(args, io, client)
  return new Promise((resolve) => {
    const stop = () => {
      resolve(0) // first: closing emits the `close` event below, which would resolve 1
      tail.close()
    }
    if (signal.aborted) return stop()
    signal.addEventListener("abort", stop, { once: true })
    tail.on("close", (info) => {
      if (info.willRetry || tail.status !== "closed") return
      signal.removeEventListener("abort", stop)
      resolve(1)
    })
  })
}

/** Connects and prints; returns the client (close it to stop). */
export const start = (args: TailArgs, io: TailIO, options: Partial<ClientOptions> = {}): DocSyncClient => {
  const client = new DocSyncClient({
    ...options,
    url: args.url,
    documentId: args.documentId,
    ...(args.actorId === undefined ? {} : { actorId: args.actorId }),
    ...(args.since === undefined ? {} : { since: args.since }),
    ...(args.token === undefined ? {} : { token: args.token }),
    autoConnect: false
  })
  const write = args.json
    ? (event: string, fields: Record<string, unknown>, _text: string) => io.out(JSON.stringify({ event, ...fields }))
    : (_event: string, _fields: Record<string, unknown>, text: string) => io.out(text)
  // The join's snapshot and updates arrive before its summary: hold them so that the summary comes first.
  let held: Array<() => void> | undefined
  const print = (event: string, fields: Record<string, unknown>, text: string) => {
    if (held !== undefined && (event === "snapshot" || event === "update")) held.push(() => write(event, fields, text))
    else write(event, fields, text)
  }

  client.on("status", (status) => {
    if (status !== "connecting") return
    held = []
    print("status", { status }, `connecting to ${args.url} …`)
  })
  client.on("snapshot", (s) =>
    print("snapshot", { version: s.version, bytes: s.data.byteLength }, `snapshot   v${s.version} (${bytes(s.data.byteLength)})`))
  client.on("update", (u) =>
    print(
      "update",
      { seq: u.seq, opId: u.opId, actorId: u.actorId, bytes: u.delta.byteLength, deltaB64: preview(u.delta) },
      `update     #${u.seq} by ${u.actorId} (${bytes(u.delta.byteLength)}, op ${u.opId}) ${preview(u.delta)}`
    ))
  client.on("state", (s) =>
    print(
      "state",
      { ...s, peers: [...client.peers.values()] },
      `joined     ${args.documentId} as ${s.clientId}: version ${s.version}` +
        (s.snapshotVersion === null ? "" : `, from snapshot v${s.snapshotVersion}`) +
        `, ${s.updates} update(s)${s.reset ? " (reset: the server had less than --since)" : ""}` +
        `, ${client.peers.size} other connection(s)` +
        [...client.peers.values()].map((p) => `\n           here: ${who(p)}${state(p)}`).join("")
    ))
  client.on("state", () => {
    const lines = held ?? []
    held = undefined
    for (const line of lines) line()
  })
  client.on("presence", ({ change }) => {
    switch (change.type) {
      case "join":
        return print("presence_join", { ...change.peer }, `presence   + ${who(change.peer)} joined`)
      case "update":
        return print("presence", { ...change.peer }, `presence   ~ ${who(change.peer)}${state(change.peer)}`)
      case "leave":
        return print("presence_leave", { ...change.peer, reason: change.reason }, `presence   - ${who(change.peer)} left (${change.reason})`)
      case "sync":
        return
    }
  })
  client.on("close", (c) =>
    print(
      "close",
      { ...c },
      c.willRetry
        ? `connection closed (${c.code}${c.reason === "" ? "" : ` ${c.reason}`}); reconnecting`
        : `connection closed (${c.code}${c.reason === "" ? "" : ` ${c.reason}`})`
    ))
  client.on("error", (e) => {
    if (e.code === "closed") io.err(`docsync-tail: ${e.message}`)
    else io.err(`docsync-tail: ${e.code}: ${e.message}`)
  })
  client.connect()
  return client
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

const who = (peer: Peer): string => `${peer.actorId} (${peer.clientId.slice(0, 8)})`

const state = (peer: Peer): string => (peer.state === null ? "" : ` ${JSON.stringify(peer.state)}`)

const bytes = (n: number): string => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`)

/** The first bytes of a delta in hex: deltas are opaque, but a glimpse helps tell them apart. */
const preview = (data: Uint8Array): string => {
  const head = [...data.subarray(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("")
  return data.byteLength > 12 ? `${head}…` : head
}
