/**
 * The docsync client: one live connection to one document (protocol section 2), in plain TypeScript with no
 * Node-only API, so the same code runs in browsers and in Node.
 *
 * What it does for the application:
 * - applies the join `state` (snapshot, then updates) and every later update, in seq order, exactly once
 *   (deduplicated by seq, a gap forces a resync with `since`);
 * - sends local deltas with generated opIds and keeps each one pending until it is acknowledged, resending the
 *   pending ones with the same opIds after every reconnect (the server deduplicates them by opId);
 * - reconnects with exponential backoff and jitter, resuming with `since`, except after the close codes that
 *   mean "never" (4401, 4403, 4404, 4410);
 * - tracks presence (its own state, re-sent after reconnects, and the other connections');
 * - answers `snapshot_request` through the application's `snapshot` callback, once it has nothing pending, so
 *   the snapshot is exactly the merged state of every update up to its version.
 */
import type {
  AckMessage,
  ErrorCode,
  ErrorMessage,
  PresenceEntry,
  RemoteUpdateMessage,
  ServerMessage,
  StateMessage
} from "../Domain/Protocol.js"
import * as Base64 from "./Base64.js"
import { Emitter } from "./Emitter.js"
import { backoffDelay, type BackoffOptions, type Cancel, defaultBackoff, real, type Scheduler } from "./Scheduler.js"

/**
 * - `connecting`: opening a socket, waiting for the join `state`;
 * - `online`: joined, with local updates not acknowledged yet;
 * - `synced`: joined, every local update acknowledged;
 * - `offline`: no connection; a reconnect is scheduled unless `disconnect()` was called;
 * - `closed`: stopped for good (`close()`, or a close code that forbids retrying).
 */
export type Status = "connecting" | "online" | "synced" | "offline" | "closed"

/** The part of the WebSocket API the client uses: the browser's `WebSocket` and the `ws` package both have it. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: Handler<unknown> | null
  onmessage: Handler<{ readonly data: unknown }> | null
  onclose: Handler<{ readonly code: number; readonly reason: string }> | null
  onerror: Handler<unknown> | null
}

/**
 * An event handler checked bivariantly (as a method would be), so that handlers typed with the richer event
 * classes of the DOM and of `ws` fit.
 */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"]

export type WebSocketConstructor = new (url: string) => WebSocketLike

/** An update of another connection (or of an earlier session of this one), delivered once, in seq order. */
export interface RemoteUpdate {
  readonly seq: number
  readonly opId: string
  readonly actorId: string
  readonly delta: Uint8Array
}

/** A snapshot the join started from: the merged state of every update with seq <= `version`. */
export interface SnapshotData {
  readonly version: number
  readonly data: Uint8Array
}

/** One of this client's updates, acknowledged (`duplicate` when the server had stored it before). */
export interface Ack {
  readonly opId: string
  readonly seq: number
  readonly duplicate: boolean
}

/** Another connection of the document. `state` is null until it sends one. */
export interface Peer {
  readonly clientId: string
  readonly actorId: string
  readonly state: Readonly<Record<string, unknown>> | null
}

export type PresenceChange =
  | { readonly type: "join"; readonly peer: Peer }
  | { readonly type: "update"; readonly peer: Peer }
  | { readonly type: "leave"; readonly peer: Peer; readonly reason: "idle" | "disconnect" }
  /** The whole list was replaced: after a join, or emptied after a disconnect. */
  | { readonly type: "sync" }

export interface PresenceEvent {
  readonly change: PresenceChange
  /** Every other connection, by clientId, after the change. */
  readonly peers: ReadonlyMap<string, Peer>
}

/** Summary of a join, after its snapshot and updates were delivered. */
export interface StateInfo {
  readonly clientId: string
  readonly version: number
  /** The version of the snapshot the join started from, if any. */
  readonly snapshotVersion: number | null
  /** How many updates the join delivered (not counting this client's own). */
  readonly updates: number
  readonly reset: boolean
}

export type ClientErrorCode = ErrorCode | "protocol" | "listener" | "snapshot_failed" | "closed"

/** Something went wrong; `opId` names the update it concerns, `fatal` says whether that update was dropped. */
export interface ClientError {
  readonly code: ClientErrorCode
  readonly message: string
  readonly opId?: string
  readonly cause?: unknown
}

export interface CloseInfo {
  readonly code: number
  readonly reason: string
  /** Whether the client will reconnect by itself. */
  readonly willRetry: boolean
}

export interface ClientEvents {
  readonly status: Status
  /** A join completed (after the `snapshot` and `update` events it implied). */
  readonly state: StateInfo
  /** Another connection's update, in seq order, exactly once. */
  readonly update: RemoteUpdate
  /** The join started from a snapshot: merge it before the updates that follow. */
  readonly snapshot: SnapshotData
  /** The server has less than this client had (it lost data or was restored); `version` is the server's. */
  readonly reset: { readonly version: number }
  readonly ack: Ack
  /** A local update was rejected for good and dropped from the pending queue. */
  readonly rejected: { readonly opId: string; readonly code: ErrorCode; readonly message: string }
  readonly presence: PresenceEvent
  readonly error: ClientError
  readonly close: CloseInfo
}

export interface ClientOptions {
  /** The server's base URL, `http(s)://host:port` (a path prefix is kept; `ws(s)://` works too). */
  readonly url: string
  readonly documentId: string
  /** Identity shown in presence and stored with updates, 1..128 characters. Default: a random one. */
  readonly actorId?: string
  /** JWT when the server has authentication on; a function is called before every connect (token refresh). */
  readonly token?: string | (() => string | Promise<string>)
  /** A version the application already has (restored from its own storage): the first join resumes from it. */
  readonly since?: number
  /** Default: `globalThis.WebSocket` when present, else the `ws` package (Node), loaded on first connect. */
  readonly WebSocket?: WebSocketConstructor
  /** Default: the host's timers. */
  readonly scheduler?: Scheduler
  /** Default: `Math.random` (jitter and generated ids). */
  readonly random?: () => number
  readonly backoff?: Partial<BackoffOptions>
  /**
   * A connection that has not sent `state` this long after opening, or that has not sent anything this long
   * while an update awaits its ack, is dropped and reconnected (a dead network often keeps sockets "open").
   * 0 disables. Default 15000: longer than the server takes to answer `internal` when its storage hangs
   * (STORAGE_TIMEOUT_MS, 10 s by default), so a slow database is not mistaken for a dead connection.
   */
  readonly responseTimeoutMs?: number
  /** Local deltas larger than this are refused by `submit` (the server's MAX_UPDATE_BYTES). Default 1 MiB. */
  readonly maxUpdateBytes?: number
  /**
   * Answers the server's `snapshot_request`: the merged state of every update with seq <= `version`. Called
   * only when nothing is pending, so the application state is exactly that. Return undefined to decline.
   */
  readonly snapshot?: (version: number) => Uint8Array | undefined | Promise<Uint8Array | undefined>
  /** Connect in the constructor. Default true. */
  readonly autoConnect?: boolean
  /** In a browser, go offline on the window's `offline` event and reconnect at once on `online`. Default true. */
  readonly watchNetwork?: boolean
}

/** Close codes after which retrying cannot help (protocol section 2). */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([4401, 4403, 4404, 4410])

/** Error codes that reject an update for good: resending it would fail the same way. */
const REJECTING: ReadonlySet<ErrorCode> = new Set(["bad_message", "too_large", "forbidden"])

interface PendingUpdate {
  readonly opId: string
  readonly deltaB64: string
  /** The connection it was last sent on; undefined while it waits to be (re)sent. */
  sentOn: number | undefined
}

interface Connection {
  readonly id: number
  readonly socket: WebSocketLike
  joined: boolean
}

export class DocSyncClient extends Emitter<ClientEvents> {
  readonly documentId: string
  readonly actorId: string

  private readonly options: ClientOptions
  private readonly scheduler: Scheduler
  private readonly random: () => number
  private readonly backoff: BackoffOptions
  private readonly responseTimeoutMs: number
  private readonly maxUpdateBytes: number

  private currentStatus: Status = "offline"
  private currentVersion: number
  /** Whether the application has state to resume from (`since` is sent only then). */
  private hasState: boolean
  private currentClientId: string | undefined
  private readonly pending: Array<PendingUpdate> = []
  private readonly peerMap = new Map<string, Peer>()
  private ownPresence: Readonly<Record<string, unknown>> | null = null

  /** Whether the application wants a connection (`connect()` / `disconnect()`). */
  private wanted = false
  private stopped = false
  private connection: Connection | undefined
  private connectionCount = 0
  /** An open being prepared (token, WebSocket constructor) before the socket exists. */
  private opening = false
  private attempt = 0
  private cancelReconnect: Cancel | undefined
  private cancelWatchdog: Cancel | undefined
  private cancelRetry: Cancel | undefined
  private retryAttempt = 0
  private opSequence = 0
  private readonly opPrefix: string
  private snapshotWanted = false
  private snapshotBusy = false
  private unwatchNetwork: (() => void) | undefined
  private webSocket: WebSocketConstructor | undefined
  private snapshotProvider: ClientOptions["snapshot"]

  constructor(options: ClientOptions) {
    super()
    this.options = options
    this.scheduler = options.scheduler ?? real
    this.random = options.random ?? Math.random
    this.backoff = { ...defaultBackoff, ...options.backoff }
    this.responseTimeoutMs = options.responseTimeoutMs ?? 15_000
    this.maxUpdateBytes = options.maxUpdateBytes ?? 1024 * 1024
    this.documentId = options.documentId
    this.actorId = options.actorId ?? `actor-${randomId(this.random, 10)}`
    if (this.actorId.length < 1 || this.actorId.length > 128) throw new RangeError("actorId must be 1..128 characters")
    if (options.since !== undefined && (!Number.isSafeInteger(options.since) || options.since < 0)) {
      throw new RangeError("since must be a non-negative integer")
    }
    this.currentVersion = options.since ?? 0
    this.hasState = options.since !== undefined
    // Unique per document for its lifetime: a random part per client instance, a counter per update.
    this.opPrefix = `${this.actorId.slice(0, 64)}:${randomId(this.random, 12)}:`
    this.webSocket = options.WebSocket ?? globalWebSocket()
    this.snapshotProvider = options.snapshot
    if (options.watchNetwork !== false) {
      this.unwatchNetwork = watchNetwork(() => this.networkLost(), () => this.reconnectNow())
    }
    if (options.autoConnect !== false) this.connect()
  }

  /** The connection status; `status` events announce every change. */
  get status(): Status {
    return this.currentStatus
  }

  /** The seq of the latest update the application has (received, or its own acknowledged). */
  get version(): number {
    return this.currentVersion
  }

  /** The server-assigned id of the current (or last) connection. */
  get clientId(): string | undefined {
    return this.currentClientId
  }

  /** How many local updates wait for their acknowledgement. */
  get pendingCount(): number {
    return this.pending.length
  }

  /** The opIds of the local updates waiting for their acknowledgement, oldest first. */
  get pendingOpIds(): ReadonlyArray<string> {
    return this.pending.map((p) => p.opId)
  }

  /** The other connections of the document, by clientId (empty while offline). */
  get peers(): ReadonlyMap<string, Peer> {
    return this.peerMap
  }

  /** This client's own presence state, as last set. */
  get presence(): Readonly<Record<string, unknown>> | null {
    return this.ownPresence
  }

  /**
   * Sends a local delta: it gets a new opId, stays pending until acknowledged, and is resent with the same opId
   * after a reconnect. Works offline too (sent once connected). Returns the opId.
   */
  submit(delta: Uint8Array): string {
    if (this.stopped) throw new Error("the client is closed")
    if (delta.byteLength === 0) throw new RangeError("a delta must not be empty")
    if (delta.byteLength > this.maxUpdateBytes) {
      throw new RangeError(`a delta of ${delta.byteLength} bytes is over the limit of ${this.maxUpdateBytes}`)
    }
    const update: PendingUpdate = {
      opId: `${this.opPrefix}${(++this.opSequence).toString(36)}`,
      deltaB64: Base64.encode(delta),
      sentOn: undefined
    }
    this.pending.push(update)
    const connection = this.connection
    if (connection?.joined === true) {
      this.sendUpdate(connection, update)
      this.refreshStatus()
    }
    return update.opId
  }

  /** Sets this client's presence state (a JSON object), shown to the others; re-sent after every reconnect. */
  setPresence(state: Readonly<Record<string, unknown>>): void {
    this.ownPresence = state
    const connection = this.connection
    if (connection?.joined === true) this.send(connection, { type: "presence", state })
  }

  /** Sets (or with undefined, removes) the `snapshot` callback of the options. */
  setSnapshotProvider(provider: ClientOptions["snapshot"]): void {
    this.snapshotProvider = provider
    if (provider === undefined) this.snapshotWanted = false
    else if (this.connection !== undefined) this.maybeSnapshot(this.connection)
  }

  /** Opens the connection (after `disconnect()`, or with `autoConnect: false`). Does nothing when already on. */
  connect(): void {
    if (this.stopped) throw new Error("the client is closed")
    this.wanted = true
    if (this.connection !== undefined || this.opening) return
    this.cancelReconnect?.()
    this.cancelReconnect = undefined
    this.open()
  }

  /** Reconnects at once, skipping the backoff wait (e.g. when the network is back). */
  reconnectNow(): void {
    if (this.stopped || !this.wanted || this.connection !== undefined || this.opening) return
    this.attempt = 0
    this.connect()
  }

  /**
   * The network is gone (the browser said so): drop the connection now rather than wait for it to time out, and
   * retry with backoff (`reconnectNow()` skips the wait when the network is back).
   */
  networkLost(): void {
    if (this.connection !== undefined) this.drop(this.connection, 4000, "network offline", true)
  }

  /**
   * Goes offline and stays so until `connect()`: local updates stay pending and are sent on reconnect.
   */
  disconnect(): void {
    this.wanted = false
    this.cancelReconnect?.()
    this.cancelReconnect = undefined
    if (this.connection !== undefined) this.drop(this.connection, 1000, "disconnect", false)
    else this.setStatus("offline")
  }

  /** Closes for good. Pending updates that were not acknowledged are abandoned. */
  close(): void {
    if (this.stopped) return
    this.wanted = false
    this.stopped = true
    this.cancelReconnect?.()
    this.cancelRetry?.()
    this.unwatchNetwork?.()
    if (this.connection !== undefined) this.drop(this.connection, 1000, "closed", false)
    this.setStatus("closed")
  }

  /** Resolves when the client is `synced` (at once if it is); rejects if it closes for good first. */
  whenSynced(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.currentStatus === "synced") return resolve()
      if (this.currentStatus === "closed") return reject(new Error("the client is closed"))
      const off = this.on("status", (status) => {
        if (status === "synced") {
          off()
          resolve()
        } else if (status === "closed") {
          off()
          reject(new Error("the client is closed"))
        }
      })
    })
  }

  protected override onListenerError(event: keyof ClientEvents, error: unknown): void {
    if (event === "error") return
    this.emit("error", { code: "listener", message: `a listener of "${String(event)}" threw: ${describe(error)}`, cause: error })
  }

  // -------------------------------------------------------------------------------------------------------------
  // Connecting and reconnecting

  private open(): void {
    this.setStatus("connecting")
    const token = this.options.token
    const WebSocket = this.webSocket
    // Synchronous when nothing needs waiting for; async for a token function or loading `ws`.
    if (typeof token !== "function" && WebSocket !== undefined) return this.openWith(WebSocket, token)
    this.opening = true
    void Promise.all([WebSocket ?? loadWs(), typeof token === "function" ? token() : token]).then(
      ([loaded, resolved]) => {
        this.opening = false
        this.webSocket = loaded
        if (this.wanted && !this.stopped && this.connection === undefined) this.openWith(loaded, resolved)
      },
      (error: unknown) => {
        this.opening = false
        this.emit("error", { code: "protocol", message: `cannot connect: ${describe(error)}`, cause: error })
        if (this.wanted && !this.stopped) this.scheduleReconnect()
      }
    )
  }

  private openWith(WebSocket: WebSocketConstructor, token: string | undefined): void {
    const url = this.socketUrl(token)
    let socket: WebSocketLike
    try {
      socket = new WebSocket(url)
    } catch (error) {
      this.emit("error", { code: "protocol", message: `cannot open ${url}: ${describe(error)}`, cause: error })
      return this.scheduleReconnect()
    }
    this.attach(socket)
  }

  private socketUrl(token: string | undefined): string {
    const base = new URL(this.options.url)
    base.protocol = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:"
    const prefix = base.pathname.endsWith("/") ? base.pathname : `${base.pathname}/`
    const url = new URL(`${prefix}ws/documents/${encodeURIComponent(this.documentId)}`, base)
    if (this.hasState) url.searchParams.set("since", String(this.currentVersion))
    url.searchParams.set("actorId", this.actorId)
    if (token !== undefined) url.searchParams.set("token", token)
    return url.toString()
  }

  private attach(socket: WebSocketLike): void {
    const connection: Connection = { id: ++this.connectionCount, socket, joined: false }
    this.connection = connection
    socket.onmessage = (event) => {
      if (this.connection === connection) this.receive(connection, event.data)
    }
    socket.onclose = (event) => {
      if (this.connection === connection) this.lost(connection, event.code, event.reason)
    }
    // An error is always followed by a close event; that is where the client reacts.
    socket.onerror = ignore
    this.armWatchdog(connection)
  }

  /** The socket closed under us. */
  private lost(connection: Connection, code: number, reason: string): void {
    this.detach(connection)
    if (FATAL_CLOSE_CODES.has(code)) {
      this.stopped = true
      this.wanted = false
      this.cancelRetry?.()
      this.unwatchNetwork?.()
      this.setStatus("closed")
      this.emit("close", { code, reason, willRetry: false })
      return this.emit("error", { code: "closed", message: `the server closed the connection for good: ${code} ${reason}` })
    }
    const retry = this.wanted
    if (retry) this.scheduleReconnect()
    else this.setStatus("offline")
    this.emit("close", { code, reason, willRetry: retry })
  }

  /** Closes a connection ourselves (ignoring its late events), then reconnects if `retry`. */
  private drop(connection: Connection, code: number, reason: string, retry: boolean): void {
    this.detach(connection)
    try {
      connection.socket.close(code, reason)
    } catch {
      // Closing a socket that is still connecting may throw; it is abandoned either way.
    }
    const willRetry = retry && this.wanted
    // The status first, so that a `close` listener sees where the client stands.
    if (willRetry) this.scheduleReconnect()
    else this.setStatus(this.stopped ? "closed" : "offline")
    this.emit("close", { code, reason, willRetry })
  }

  private detach(connection: Connection): void {
    const socket = connection.socket
    socket.onmessage = null
    socket.onclose = null
    socket.onopen = null
    // Not null: `ws` reports closing a socket that is still connecting as an error event, which must be handled.
    socket.onerror = ignore
    if (this.connection === connection) this.connection = undefined
    this.disarmWatchdog()
    for (const update of this.pending) update.sentOn = undefined
    this.cancelRetry?.()
    this.cancelRetry = undefined
    this.snapshotBusy = false
    if (this.peerMap.size > 0) {
      this.peerMap.clear()
      this.emit("presence", { change: { type: "sync" }, peers: this.peerMap })
    }
  }

  private scheduleReconnect(): void {
    const delay = backoffDelay(this.backoff, this.attempt++, this.random)
    this.setStatus("offline")
    this.cancelReconnect?.()
    this.cancelReconnect = this.scheduler.setTimeout(() => {
      this.cancelReconnect = undefined
      if (this.wanted && !this.stopped && this.connection === undefined && !this.opening) this.open()
    }, delay)
  }

  /** Drops a connection that stays silent while an answer is due (see `responseTimeoutMs`). */
  private armWatchdog(connection: Connection): void {
    if (this.responseTimeoutMs <= 0 || this.cancelWatchdog !== undefined) return
    this.cancelWatchdog = this.scheduler.setTimeout(() => {
      this.cancelWatchdog = undefined
      if (this.connection === connection) this.drop(connection, 4000, "no answer from the server", true)
    }, this.responseTimeoutMs)
  }

  private disarmWatchdog(): void {
    this.cancelWatchdog?.()
    this.cancelWatchdog = undefined
  }

  // -------------------------------------------------------------------------------------------------------------
  // Receiving

  private receive(connection: Connection, data: unknown): void {
    this.disarmWatchdog()
    const message = parse(data)
    if (message === undefined) {
      this.emit("error", { code: "protocol", message: "the server sent a frame that is not a JSON message" })
    } else if (!connection.joined && message.type !== "state") {
      this.emit("error", { code: "protocol", message: `expected state first, got ${message.type}` })
    } else {
      this.handle(connection, message)
    }
    // Still waiting for acks (or for the join): keep watching.
    if (this.connection === connection && (!connection.joined || this.pending.some((p) => p.sentOn === connection.id))) {
      this.armWatchdog(connection)
    }
  }

  private handle(connection: Connection, message: ServerMessage): void {
    switch (message.type) {
      case "state":
        return this.joined(connection, message)
      case "ack":
        return this.acked(connection, message)
      case "remote_update":
        return this.delivered(connection, message)
      case "error":
        return this.failed(connection, message)
      case "snapshot_request":
        this.snapshotWanted = this.snapshotProvider !== undefined
        return this.maybeSnapshot(connection)
      case "snapshot_ack":
        return
      case "presence_join":
        return this.peerChanged({ type: "join", peer: { clientId: message.clientId, actorId: message.actorId, state: null } })
      case "presence":
        return this.peerChanged({
          type: "update",
          peer: { clientId: message.clientId, actorId: message.actorId, state: presenceState(message.state) }
        })
      case "presence_leave": {
        const peer = this.peerMap.get(message.clientId) ?? { clientId: message.clientId, actorId: message.actorId, state: null }
        return this.peerChanged({ type: "leave", peer, reason: message.reason })
      }
      case "pong":
        return
    }
  }

  private joined(connection: Connection, message: StateMessage): void {
    if (connection.joined) {
      return this.emit("error", { code: "protocol", message: "a second state on one connection" })
    }
    connection.joined = true
    this.attempt = 0
    this.currentClientId = message.clientId
    const reset = message.reset === true
    if (reset) {
      // The server has less than we had: its seqs from its snapshot (or 1) on are new to us.
      this.currentVersion = 0
      this.emit("reset", { version: message.version })
    }
    let snapshotVersion: number | null = null
    if (message.snapshot !== null && message.snapshot.version > this.currentVersion) {
      snapshotVersion = message.snapshot.version
      this.currentVersion = message.snapshot.version
      this.hasState = true
      this.emit("snapshot", { version: snapshotVersion, data: Base64.decode(message.snapshot.snapshotB64) })
    }
    let delivered = 0
    for (const update of message.updates) {
      if (this.connection !== connection) return
      if (this.incoming(connection, update)) delivered++
    }
    if (this.connection !== connection) return
    this.hasState = true
    this.currentVersion = Math.max(this.currentVersion, message.version)

    this.peerMap.clear()
    for (const entry of message.presence) this.peerMap.set(entry.clientId, peerOf(entry))
    this.emit("presence", { change: { type: "sync" }, peers: this.peerMap })
    if (this.ownPresence !== null) this.send(connection, { type: "presence", state: this.ownPresence })

    this.emit("state", {
      clientId: message.clientId,
      version: this.currentVersion,
      snapshotVersion,
      updates: delivered,
      reset
    })
    // Resend everything still pending, in submit order, with the same opIds.
    this.flush(connection)
    this.refreshStatus()
    this.maybeSnapshot(connection)
  }

  private acked(connection: Connection, message: AckMessage): void {
    const index = this.pending.findIndex((p) => p.opId === message.opId)
    // An ack for an update already settled (a retry's duplicate ack after a remote_update of it): nothing to do.
    if (index < 0) return
    this.pending.splice(index, 1)
    if (message.duplicate !== true) {
      if (message.seq > this.currentVersion + 1) return this.gap(connection, message.seq)
      this.currentVersion = Math.max(this.currentVersion, message.seq)
    }
    this.retryAttempt = 0
    this.emit("ack", { opId: message.opId, seq: message.seq, duplicate: message.duplicate === true })
    this.refreshStatus()
    this.maybeSnapshot(connection)
  }

  private delivered(connection: Connection, message: RemoteUpdateMessage): void {
    this.incoming(connection, message)
    if (this.connection !== connection) return
    this.refreshStatus()
    this.maybeSnapshot(connection)
  }

  /**
   * One update of the log (from `state` or `remote_update`): delivered once, in seq order. Our own pending opId
   * arriving this way is its acknowledgement (after a reconnect, or a server-side recovery). Returns whether it
   * was delivered to the application.
   */
  private incoming(connection: Connection, update: { readonly seq: number; readonly opId: string; readonly actorId: string; readonly deltaB64: string }): boolean {
    if (update.seq <= this.currentVersion) return false
    if (update.seq > this.currentVersion + 1) {
      this.gap(connection, update.seq)
      return false
    }
    this.currentVersion = update.seq
    const index = this.pending.findIndex((p) => p.opId === update.opId)
    if (index >= 0) {
      this.pending.splice(index, 1)
      this.emit("ack", { opId: update.opId, seq: update.seq, duplicate: false })
      return false
    }
    let delta: Uint8Array
    try {
      delta = Base64.decode(update.deltaB64)
    } catch (error) {
      this.emit("error", { code: "protocol", message: `update ${update.seq} has a delta that is not base64`, cause: error })
      return false
    }
    this.emit("update", { seq: update.seq, opId: update.opId, actorId: update.actorId, delta })
    return true
  }

  /** A seq past the next one: something was missed. Resync from what we have rather than apply out of order. */
  private gap(connection: Connection, seq: number): void {
    this.emit("error", {
      code: "protocol",
      message: `expected seq ${this.currentVersion + 1}, got ${seq}: resuming from ${this.currentVersion}`
    })
    this.drop(connection, 4000, "gap in the update stream", true)
  }

  private failed(connection: Connection, message: ErrorMessage): void {
    const opId = message.opId
    const update = opId === undefined ? undefined : this.pending.find((p) => p.opId === opId)
    if (message.code === "snapshot_rejected") this.snapshotWanted = false
    this.emit("error", opId === undefined ? { code: message.code, message: message.message } : { code: message.code, message: message.message, opId })
    if (update === undefined) return
    if (REJECTING.has(message.code)) {
      this.pending.splice(this.pending.indexOf(update), 1)
      this.emit("rejected", { opId: update.opId, code: message.code, message: message.message })
      this.refreshStatus()
      return this.maybeSnapshot(connection)
    }
    if (message.code === "invalid_base_version") {
      // Our version is ahead of the server's: rejoin, and the state (with reset) tells us where it stands.
      return this.drop(connection, 4000, "resync after invalid_base_version", true)
    }
    // internal, rate_limited: nothing was stored; send it again with the same opId after a pause.
    update.sentOn = undefined
    this.scheduleRetry(connection)
  }

  private scheduleRetry(connection: Connection): void {
    if (this.cancelRetry !== undefined) return
    const delay = backoffDelay(this.backoff, this.retryAttempt++, this.random)
    this.cancelRetry = this.scheduler.setTimeout(() => {
      this.cancelRetry = undefined
      if (this.connection === connection) this.flush(connection)
    }, delay)
  }

  private peerChanged(change: Exclude<PresenceChange, { type: "sync" }>): void {
    if (change.type === "leave") this.peerMap.delete(change.peer.clientId)
    else {
      const known = this.peerMap.get(change.peer.clientId)
      // A join does not erase a state we already have (a re-announce after idle comes as `presence`).
      this.peerMap.set(change.peer.clientId, change.type === "join" && known !== undefined ? known : change.peer)
    }
    this.emit("presence", { change, peers: this.peerMap })
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sending

  private flush(connection: Connection): void {
    for (const update of this.pending) {
      if (this.connection !== connection) return
      if (update.sentOn !== connection.id) this.sendUpdate(connection, update)
    }
  }

  private sendUpdate(connection: Connection, update: PendingUpdate): void {
    update.sentOn = connection.id
    this.send(connection, {
      type: "update",
      opId: update.opId,
      baseVersion: this.currentVersion,
      actorId: this.actorId,
      deltaB64: update.deltaB64
    })
    this.armWatchdog(connection)
  }

  private send(connection: Connection, message: object): void {
    try {
      connection.socket.send(JSON.stringify(message))
    } catch (error) {
      // The socket is closing under us: the close event follows, and pending updates are resent after it.
      this.emit("error", { code: "protocol", message: `send failed: ${describe(error)}`, cause: error })
    }
  }

  /** Answers an outstanding snapshot request once nothing is pending (see `ClientOptions.snapshot`). */
  private maybeSnapshot(connection: Connection): void {
    const provide = this.snapshotProvider
    if (!this.snapshotWanted || this.snapshotBusy || provide === undefined) return
    if (!connection.joined || this.connection !== connection || this.pending.length > 0 || this.currentVersion === 0) return
    const version = this.currentVersion
    this.snapshotBusy = true
    const answer = (data: Uint8Array | undefined) => {
      this.snapshotBusy = false
      this.snapshotWanted = false
      if (data === undefined || data.byteLength === 0 || this.connection !== connection) return
      this.send(connection, { type: "snapshot", version, snapshotB64: Base64.encode(data) })
    }
    const fail = (error: unknown) => {
      this.snapshotBusy = false
      this.snapshotWanted = false
      this.emit("error", { code: "snapshot_failed", message: `the snapshot callback failed: ${describe(error)}`, cause: error })
    }
    try {
      const result = provide(version)
      if (result instanceof Promise) result.then(answer, fail)
      else answer(result)
    } catch (error) {
      fail(error)
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Status

  private refreshStatus(): void {
    if (this.connection?.joined === true) this.setStatus(this.pending.length === 0 ? "synced" : "online")
  }

  private setStatus(status: Status): void {
    if (this.currentStatus === status) return
    this.currentStatus = status
    this.emit("status", status)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

const parse = (data: unknown): ServerMessage | undefined => {
  if (typeof data !== "string") return undefined
  try {
    const value: unknown = JSON.parse(data)
    if (typeof value === "object" && value !== null && "type" in value && typeof value.type === "string") {
      return value as ServerMessage
    }
  } catch {
    // fall through
  }
  return undefined
}

const presenceState = (state: unknown): Readonly<Record<string, unknown>> | null =>
  typeof state === "object" && state !== null && !Array.isArray(state) ? (state as Record<string, unknown>) : null

const peerOf = (entry: PresenceEntry): Peer => ({
  clientId: entry.clientId,
  actorId: entry.actorId,
  state: presenceState(entry.state)
})

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

const randomId = (random: () => number, length: number): string => {
  let id = ""
  for (let i = 0; i < length; i++) id += ALPHABET[Math.floor(random() * ALPHABET.length)] ?? "0"
  return id
}

const ignore = (): void => {}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const globalWebSocket = (): WebSocketConstructor | undefined => {
  const candidate: unknown = (globalThis as { WebSocket?: unknown }).WebSocket
  return typeof candidate === "function" ? (candidate as WebSocketConstructor) : undefined
}

/** Node without a global WebSocket: the `ws` package, loaded only then (hidden from browser bundlers). */
const loadWs = async (): Promise<WebSocketConstructor> => {
  const specifier = "ws"
  const module: unknown = await import(/* @vite-ignore */ specifier)
  const candidate = typeof module === "object" && module !== null && "default" in module ? module.default : undefined
  if (typeof candidate !== "function") {
    throw new Error("no WebSocket: pass the `WebSocket` option (e.g. the `ws` package's export)")
  }
  return candidate as WebSocketConstructor
}

/** Browser only: calls `offline` / `online` on the window's events; returns the function that stops it. */
const watchNetwork = (offline: () => void, online: () => void): (() => void) | undefined => {
  const target: unknown = globalThis
  if (!isEventTarget(target)) return undefined
  target.addEventListener("online", online)
  target.addEventListener("offline", offline)
  return () => {
    target.removeEventListener("online", online)
    target.removeEventListener("offline", offline)
  }
}

interface NetworkEvents {
  addEventListener(type: string, listener: () => void): void
  removeEventListener(type: string, listener: () => void): void
}

// Node 20 has no global addEventListener; a browser window (and a worker) has.
const isEventTarget = (value: unknown): value is NetworkEvents =>
  typeof value === "object" && value !== null && "addEventListener" in value &&
  typeof value.addEventListener === "function" && "removeEventListener" in value &&
  typeof value.removeEventListener === "function"
