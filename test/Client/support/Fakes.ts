/**
 * A fake clock and fake WebSockets for the client's unit tests: time moves only when a test advances it, and the
 * test plays the server by hand.
 */
import type { WebSocketConstructor, WebSocketLike } from "../../../src/Client/DocSyncClient.js"
import type { Cancel, Scheduler } from "../../../src/Client/Scheduler.js"

interface Timer {
  readonly id: number
  readonly at: number
  readonly callback: () => void
}

export class FakeScheduler implements Scheduler {
  private time = 0
  private nextId = 0
  private timers: Array<Timer> = []

  readonly now = (): number => this.time

  readonly setTimeout = (callback: () => void, ms: number): Cancel => {
    const timer = { id: ++this.nextId, at: this.time + ms, callback }
    this.timers.push(timer)
    return () => {
      this.timers = this.timers.filter((t) => t.id !== timer.id)
    }
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.time + ms
    while (true) {
      const due = this.timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at || a.id - b.id)[0]
      if (due === undefined) break
      this.timers = this.timers.filter((t) => t.id !== due.id)
      this.time = due.at
      due.callback()
    }
    this.time = until
  }

  /** Milliseconds from now of every scheduled timer, soonest first. */
  get delays(): ReadonlyArray<number> {
    return this.timers.map((t) => t.at - this.time).sort((a, b) => a - b)
  }
}

export type Sent = Record<string, unknown> & { readonly type: string }

export class FakeSocket implements WebSocketLike {
  readyState = 0
  onopen: WebSocketLike["onopen"] = null
  onmessage: WebSocketLike["onmessage"] = null
  onclose: WebSocketLike["onclose"] = null
  onerror: WebSocketLike["onerror"] = null
  readonly raw: Array<string> = []
  closedWith: { readonly code: number | undefined; readonly reason: string | undefined } | undefined

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error(`send on a socket in state ${this.readyState}`)
    this.raw.push(data)
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason }
    this.readyState = 3
  }

  /** Every message the client sent, parsed. */
  get sent(): ReadonlyArray<Sent> {
    return this.raw.map((text) => JSON.parse(text) as Sent)
  }

  /** Messages of one type the client sent. */
  sentOf(type: string): ReadonlyArray<Sent> {
    return this.sent.filter((m) => m.type === type)
  }

  /** The query parameters of the URL the client opened. */
  get query(): URLSearchParams {
    return new URL(this.url).searchParams
  }

  // --- the test plays the server ---

  open(): void {
    this.readyState = 1
    this.onopen?.({})
  }

  receive(message: object): void {
    this.onmessage?.({ data: JSON.stringify(message) })
  }

  receiveRaw(data: unknown): void {
    this.onmessage?.({ data })
  }

  /** The server closes (or the network drops: 1006). */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3
    this.onerror?.({})
    this.onclose?.({ code, reason })
  }

  /** Opens and sends a `state` (version 0, nothing in it) merged with `fields`. */
  join(fields: Record<string, unknown> = {}): void {
    this.open()
    this.receive({
      type: "state",
      documentId: "doc",
      clientId: "me",
      version: 0,
      snapshot: null,
      updates: [],
      presence: [],
      ...fields
    })
  }
}

/** A WebSocket constructor that records the sockets it made. */
export const fakeWebSocket = (): { readonly WebSocket: WebSocketConstructor; readonly sockets: Array<FakeSocket> } => {
  const sockets: Array<FakeSocket> = []
  class Socket extends FakeSocket {
    constructor(url: string) {
      super(url)
      sockets.push(this)
    }
  }
  return { WebSocket: Socket, sockets }
}

/** Resolves after pending promise callbacks ran (the client opens its socket after an await). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Base64 of a short ASCII string (the client treats deltas as opaque bytes). */
export const b64 = (text: string): string => btoa(text)
export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
export const text = (data: Uint8Array): string => new TextDecoder().decode(data)
