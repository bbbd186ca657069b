/**
 * Convergence through a real server: three Yjs clients make random concurrent edits while the test randomly
 * drops their connections (mid-flight, right after edits), takes them offline and back, and restarts the server
 * (on the same port, over the same storage). At the end the three documents and a fresh joiner are identical,
 * and every edit made is in all of them: nothing was lost, nothing applied twice.
 *
 * Seeded: the seed drives every choice of the test (and the clients' jitter); the interleaving with the network
 * still varies from run to run, which is the point. A failing seed is printed with its action log.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import WebSocket from "ws"
import * as Y from "yjs"
import { DocSyncClient } from "../../src/Client/DocSyncClient.js"
import * as RestClient from "../../src/Client/RestClient.js"
import { YjsBinding } from "../../src/Client/YjsBinding.js"
import { DocumentStorage, makeMemory } from "../../src/Storage/DocumentStorage.js"
import { startServer } from "../support/TestServer.js"

const SEEDS = 20
const STEPS = 70

describe("convergence of Yjs clients through docsync", () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed}`, () => converge(seed), 20_000)
  }
})

interface Peer {
  readonly name: string
  readonly binding: YjsBinding
  readonly sockets: Array<WebSocket>
  /** The edit ids this client made. */
  readonly edits: Array<string>
}

const converge = async (seed: number): Promise<void> => {
  const random = mulberry32(seed)
  const int = (n: number) => Math.floor(random() * n)
  const log: Array<string> = []
  const storage = Layer.succeed(DocumentStorage, Effect.runSync(makeMemory))
  let server = await Server.start(storage, 0)
  const port = Number(new URL(server.url).port)
  const peers: Array<Peer> = []
  try {
    const document = await RestClient.run({ baseUrl: server.url }, (client) =>
      client.documents.create({ payload: { title: `convergence ${seed}` } }))

    for (const name of ["a", "b", "c"]) peers.push(peer(name, server.url, document.id, mulberry32(seed * 100 + peers.length)))

    for (let step = 0; step < STEPS; step++) {
      const p = peers[int(peers.length)] ?? peers[0]
      if (p === undefined) throw new Error("no peers")
      const roll = random()
      if (roll < 0.55) {
        edit(p, random, `${p.name}${step}`)
      } else if (roll < 0.7) {
        // The network dies right after a burst of edits: those updates are lost in flight unless resent.
        const burst = 1 + int(3)
        for (let i = 0; i < burst; i++) edit(p, random, `${p.name}${step}.${i}`)
        log.push(`${step}: ${p.name} edits ${burst}x then drops`)
        terminate(p)
      } else if (roll < 0.8) {
        log.push(`${step}: ${p.name} drops`)
        terminate(p)
      } else if (roll < 0.87) {
        log.push(`${step}: ${p.name} goes offline`)
        p.binding.client.disconnect()
      } else if (roll < 0.95) {
        log.push(`${step}: ${p.name} comes back`)
        p.binding.client.connect()
      } else {
        log.push(`${step}: server restarts`)
        await server.stop()
        server = await Server.start(storage, port)
      }
      await pause(int(6))
    }

    log.push("heal: everybody back online")
    for (const p of peers) p.binding.client.connect()
    await until(peers.map((p) => p.binding.client), () => {
      const clients = peers.map((p) => p.binding.client)
      return clients.every((c) => c.status === "synced" && c.version === clients[0]?.version)
    }, 10_000, () => peers.map((p) => `${p.name}: ${p.binding.client.status} v${p.binding.client.version} pending ${p.binding.client.pendingCount}`).join(", "))

    const joiner = YjsBinding.connect({ url: server.url, documentId: document.id, actorId: "joiner", WebSocket })
    try {
      await until([joiner.client], () => joiner.client.status === "synced", 10_000, () => joiner.client.status)
      expect(joiner.client.version).toBe(peers[0]?.binding.client.version)

      const everyEdit = peers.flatMap((p) => p.edits).sort()
      for (const doc of [...peers.map((p) => p.binding.doc), joiner.doc]) {
        // Same text everywhere...
        expect(doc.getText("text").toString()).toBe(joiner.doc.getText("text").toString())
        // ...and every edit of every client is there, once.
        expect([...doc.getArray<string>("edits").toArray()].sort()).toEqual(everyEdit)
        // Every client's every operation is integrated (none pending for a missing predecessor).
        const vector = stateVector(doc)
        for (const p of peers) expect(vector.get(p.binding.doc.clientID)).toBe(stateVector(p.binding.doc).get(p.binding.doc.clientID))
        expect(doc.store.pendingStructs).toBeNull()
      }
    } finally {
      joiner.destroy()
    }
  } catch (error) {
    console.error(`convergence seed ${seed} failed; actions:\n  ${log.join("\n  ")}`)
    throw error
  } finally {
    for (const p of peers) p.binding.destroy()
    await server.stop()
  }
}

/** A client on its own Y.Doc, with fast backoff and seeded jitter; its sockets are kept so the test can kill them. */
const peer = (name: string, url: string, documentId: string, random: () => number): Peer => {
  const sockets: Array<WebSocket> = []
  class TrackedWebSocket extends WebSocket {
    constructor(address: string) {
      super(address)
      sockets.push(this)
    }
  }
  const client = new DocSyncClient({
    url,
    documentId,
    actorId: name,
    WebSocket: TrackedWebSocket,
    random,
    backoff: { initialMs: 10, maxMs: 80 },
    // A connection attempt that races a server restart can hang unanswered (seen here: an upgrade accepted by the
    // stopping server, never served nor closed); the watchdog is what rescues it, kept short to bound the test.
    responseTimeoutMs: 1000,
    autoConnect: false
  })
  const binding = new YjsBinding(client)
  client.connect()
  return { name, binding, sockets, edits: [] }
}

/** One random edit: an insert (at a random place) or a delete of a short range, recorded in the `edits` array. */
const edit = (p: Peer, random: () => number, id: string): void => {
  const doc = p.binding.doc
  const text = doc.getText("text")
  doc.transact(() => {
    if (text.length > 0 && random() < 0.3) {
      const at = Math.floor(random() * text.length)
      text.delete(at, Math.min(text.length - at, 1 + Math.floor(random() * 4)))
    } else {
      text.insert(Math.floor(random() * (text.length + 1)), `[${id}]`)
    }
    doc.getArray<string>("edits").push([id])
  })
  p.edits.push(id)
}

/** Kills the client's live socket abruptly, as a network failure would (the client reconnects by itself). */
const terminate = (p: Peer): void => {
  const socket = p.sockets.at(-1)
  if (socket !== undefined && socket.readyState !== WebSocket.CLOSED) socket.terminate()
}

/** A real server over `storage` (kept across restarts) on `port` (0: a free one). */
const Server = {
  start: async (storage: Layer.Layer<DocumentStorage>, port: number) => {
    const scope = Effect.runSync(Scope.make())
    const url = await Effect.runPromise(
      Scope.extend(startServer({ storage, config: { port, snapshotEvery: 25 } }), scope)
    )
    return { url, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  }
}

/** Resolves when `done()` holds, re-checked on every event of the clients; fails after `ms`. */
const until = (
  clients: ReadonlyArray<DocSyncClient>,
  done: () => boolean,
  ms: number,
  describe: () => string
): Promise<void> =>
  new Promise((resolve, reject) => {
    const offs: Array<() => void> = []
    const finish = (error?: Error) => {
      clearTimeout(timer)
      for (const off of offs) off()
      if (error === undefined) resolve()
      else reject(error)
    }
    const check = () => {
      if (done()) finish()
    }
    const timer = setTimeout(() => finish(new Error(`not converged after ${ms} ms: ${describe()}`)), ms)
    for (const client of clients) {
      for (const event of ["status", "ack", "update", "state"] as const) offs.push(client.on(event, check))
    }
    check()
  })

const stateVector = (doc: Y.Doc): Map<number, number> => Y.decodeStateVector(Y.encodeStateVector(doc))

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A small seeded PRNG (mulberry32). */
const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
