/**
 * The baseline of the benchmark (issue 6): a plain `ws` relay that stores nothing.
 *
 * Same wire shapes as docsync, so one load generator drives both: `GET /ws/documents/:id` joins a room and gets a
 * `state` frame; an `update` is answered with `ack {opId, seq}` (a per-room counter) and relayed to the other sockets
 * of the room as `remote_update`, encoded once for all of them; `ping` gets `pong`. `GET /api/v1/health` answers 200
 * so the runner can wait for readiness. Any document id works. Env: PORT (default 8001), HOST (default 127.0.0.1).
 */
import { WebSocket } from "ws"
import { serveRelay } from "./relay-http.js"

interface Room { seq: number; readonly sockets: Set<WebSocket> }
const rooms = new Map<string, Room>()
let nextClient = 0

const { http, wss } = serveRelay(join)

function join(documentId: string, ws: WebSocket): void {
  let room = rooms.get(documentId)
  if (room === undefined) rooms.set(documentId, (room = { seq: 0, sockets: new Set() }))
  const r = room
  const clientId = `c${++nextClient}`
  r.sockets.add(ws)
  ws.send(JSON.stringify({ type: "state", documentId, clientId, version: r.seq, snapshot: null, updates: [], presence: [] }))
  ws.on("message", (data, isBinary) => {
    let msg: { type?: unknown; opId?: unknown; actorId?: unknown; deltaB64?: unknown }
    try {
      msg = JSON.parse(String(data))
    } catch {
      return void ws.send('{"type":"error","code":"bad_message","message":"not JSON"}')
    }
    if (isBinary || msg === null || typeof msg !== "object") return void ws.send('{"type":"error","code":"bad_message","message":"bad frame"}')
    if (msg.type === "ping") return void ws.send('{"type":"pong"}')
    if (msg.type !== "update") return
    const seq = ++r.seq
    ws.send(JSON.stringify({ type: "ack", opId: msg.opId, seq }))
    const out = JSON.stringify({ type: "remote_update", seq, opId: msg.opId, actorId: msg.actorId, deltaB64: msg.deltaB64 })
    for (const other of r.sockets) if (other !== ws && other.readyState === WebSocket.OPEN) other.send(out)
  })
  ws.on("close", () => {
    r.sockets.delete(ws)
    if (r.sockets.size === 0) rooms.delete(documentId)
  })
  ws.on("error", () => ws.terminate())
}

const port = Number(process.env.PORT ?? 8001)
http.listen(port, process.env.HOST ?? "127.0.0.1")
const stop = () => {
  for (const ws of wss.clients) ws.close(1001, "going away")
  http.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
