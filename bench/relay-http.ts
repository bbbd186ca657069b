/**
 * What the benchmark's relays (`baseline-relay.ts`, `durable-relay.ts`) share: `GET /api/v1/health` answers 200 so
 * the runner can wait for readiness, and `GET /ws/documents/:id` upgrades to a WebSocket handed to `join` with the
 * decoded document id. Nothing else is served.
 */
import { createServer, type Server } from "node:http"
import { type WebSocket, WebSocketServer } from "ws"

const PATH = /^\/ws\/documents\/([^/?]+)(?:\?.*)?$/

export const serveRelay = (join: (documentId: string, ws: WebSocket) => void): { readonly http: Server; readonly wss: WebSocketServer } => {
  const http = createServer((req, res) => {
    const ok = req.url === "/api/v1/health"
    res.writeHead(ok ? 200 : 404, { "content-type": "application/json" }).end(ok ? '{"status":"ok"}' : '{"message":"not found"}')
  })
  const wss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 * 1024 })
  http.on("upgrade", (req, socket, head) => {
    const id = PATH.exec(req.url ?? "")?.[1]
    if (id === undefined) return void socket.destroy()
    wss.handleUpgrade(req, socket, head, (ws) => join(decodeURIComponent(id), ws))
  })
  return { http, wss }
}
