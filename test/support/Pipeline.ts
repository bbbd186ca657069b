/**
 * A WebSocket writer that keeps a window of updates in flight and records everything the server said: every ack
 * (opId, seq, duplicate), every remote_update, every error and the close code. Promise-based, because crash tests
 * drive it from socket events (SIGKILL the server right after the n-th ack) rather than step by step.
 */
import WebSocket from "ws"

/** One update to send: its retry key and payload. */
export interface Op {
  readonly opId: string
  readonly deltaB64: string
}

export interface Ack {
  readonly seq: number
  readonly duplicate: boolean
}

export interface PipelineReport {
  readonly documentId: string
  /** Version in the `state` frame the connection started from. */
  readonly stateVersion: number
  /** Every update sent, by opId, in send order. */
  readonly sent: ReadonlyMap<string, Op>
  readonly acks: ReadonlyMap<string, Ack>
  /** remote_update frames received: seq -> opId. */
  readonly remotes: ReadonlyMap<number, string>
  /** error frames received, as sent. */
  readonly errors: ReadonlyArray<Record<string, unknown>>
  /** Frames that break the protocol: an ack for an opId never sent, a second ack, a seq out of order... */
  readonly violations: ReadonlyArray<string>
  readonly closeCode: number
}

export interface PipelineOptions {
  readonly baseUrl: string
  readonly documentId: string
  /** Updates kept unacknowledged at once. */
  readonly window: number
  /** The n-th update to send (from 0), or undefined when there is nothing more. */
  readonly next: (n: number) => Op | undefined
  /** Called on every ack, after it was recorded. */
  readonly onAck?: (opId: string, ack: Ack) => void
  readonly actorId?: string
}

export interface Pipeline {
  /** Resolves when the socket closed: by itself once every op was acked, or by the server. */
  readonly finished: Promise<PipelineReport>
  /** What was recorded so far. */
  readonly report: () => PipelineReport
}

/** Connects, waits for `state`, then sends with `window` updates in flight until `next` runs out or the socket closes. */
export const openPipeline = (options: PipelineOptions): Promise<Pipeline> =>
  new Promise((resolveOpen, rejectOpen) => {
    const url = `${options.baseUrl.replace(/^http/, "ws")}/ws/documents/${encodeURIComponent(options.documentId)}`
    const ws = new WebSocket(url)
    const sent = new Map<string, Op>()
    const acks = new Map<string, Ack>()
    const remotes = new Map<number, string>()
    const errors: Array<Record<string, unknown>> = []
    const violations: Array<string> = []
    let stateVersion = -1
    let lastSeq = -1
    let n = 0
    let inFlight = 0
    let exhausted = false
    let closeCode = -1
    let opened = false

    const report = (): PipelineReport => ({
      documentId: options.documentId,
      stateVersion,
      sent,
      acks,
      remotes,
      errors,
      violations,
      closeCode
    })

    const fill = () => {
      while (!exhausted && inFlight < options.window && ws.readyState === WebSocket.OPEN) {
        const op = options.next(n)
        if (op === undefined) {
          exhausted = true
          break
        }
        n++
        inFlight++
        sent.set(op.opId, op)
        ws.send(
          JSON.stringify({
            type: "update",
            opId: op.opId,
            baseVersion: 0,
            actorId: options.actorId ?? "pipeline",
            deltaB64: op.deltaB64
          })
        )
      }
      if (exhausted && inFlight === 0 && ws.readyState === WebSocket.OPEN) ws.close(1000)
    }

    /** Acks and remote_updates interleave in seq order with no gap (protocol 2.1), duplicates aside. */
    const checkOrder = (seq: number, what: string) => {
      if (lastSeq >= 0 && seq !== lastSeq + 1) violations.push(`${what} seq ${seq} after ${lastSeq}`)
      lastSeq = seq
    }

    ws.on("message", (data, isBinary) => {
      if (isBinary) return void violations.push("binary frame from the server")
      const frame = JSON.parse(data.toString()) as Record<string, unknown>
      switch (frame["type"]) {
        case "state": {
          stateVersion = typeof frame["version"] === "number" ? frame["version"] : -1
          lastSeq = stateVersion
          opened = true
          resolveOpen({ finished, report })
          return fill()
        }
        case "ack": {
          const opId = String(frame["opId"])
          const ack: Ack = { seq: Number(frame["seq"]), duplicate: frame["duplicate"] === true }
          if (!sent.has(opId)) violations.push(`ack for ${opId}, never sent`)
          if (acks.has(opId)) violations.push(`second ack for ${opId}`)
          // A duplicate's seq is an old one: it is not part of the live stream.
          if (!ack.duplicate) checkOrder(ack.seq, `ack ${opId}`)
          acks.set(opId, ack)
          inFlight--
          options.onAck?.(opId, ack)
          return fill()
        }
        case "remote_update": {
          const seq = Number(frame["seq"])
          const opId = String(frame["opId"])
          checkOrder(seq, `remote_update ${opId}`)
          remotes.set(seq, opId)
          // Recovery after an unknown storage outcome may relay our own update instead of acking it.
          if (sent.has(opId) && !acks.has(opId)) {
            acks.set(opId, { seq, duplicate: false })
            inFlight--
            options.onAck?.(opId, { seq, duplicate: false })
            return fill()
          }
          return
        }
        case "error": {
          errors.push(frame)
          if (typeof frame["opId"] === "string" && sent.has(frame["opId"])) inFlight--
          return fill()
        }
        case "presence_join":
        case "presence":
        case "presence_leave":
        case "snapshot_request":
        case "pong":
          return
        default:
          violations.push(`unexpected frame ${data.toString().slice(0, 200)}`)
      }
    })

    const finished = new Promise<PipelineReport>((resolve) => {
      ws.on("close", (code) => {
        closeCode = code
        resolve(report())
        if (!opened) rejectOpen(new Error(`closed with ${code} before state`))
      })
    })
    ws.on("error", (error) => {
      if (!opened && ws.readyState !== WebSocket.OPEN) rejectOpen(error)
    })
  })
