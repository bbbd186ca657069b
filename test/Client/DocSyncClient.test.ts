/**
 * Unit tests of the client against fake sockets and a fake clock: the test plays the server frame by frame, and
 * time moves only when the test advances it (no sleeping).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type ClientError,
  type ClientEvents,
  type ClientOptions,
  DocSyncClient,
  type Status
} from "../../src/Client/DocSyncClient.js"
import { backoffDelay, defaultBackoff } from "../../src/Client/Scheduler.js"
import { b64, bytes, FakeScheduler, type FakeSocket, fakeWebSocket, settle, text } from "./support/Fakes.js"

const setup = (options: Partial<ClientOptions> = {}) => {
  const clock = new FakeScheduler()
  const { WebSocket, sockets } = fakeWebSocket()
  const client = new DocSyncClient({
    url: "http://127.0.0.1:8000",
    documentId: "doc",
    actorId: "me",
    WebSocket,
    scheduler: clock,
    random: () => 0.5,
    backoff: { initialMs: 100, maxMs: 1000, factor: 2 },
    ...options
  })
  const events = record(client)
  const socket = (index: number): FakeSocket => {
    const found = sockets[index]
    if (found === undefined) throw new Error(`no socket #${index} (${sockets.length} opened)`)
    return found
  }
  const last = (): FakeSocket => socket(sockets.length - 1)
  return { client, clock, sockets, socket, last, events }
}

/** Every event of the client, in order. */
const record = (client: DocSyncClient) => {
  const log: Array<{ readonly [K in keyof ClientEvents]: { readonly event: K; readonly value: ClientEvents[K] } }[keyof ClientEvents]> = []
  const names: ReadonlyArray<keyof ClientEvents> = ["status", "state", "update", "snapshot", "reset", "ack", "rejected", "presence", "error", "close"]
  for (const event of names) client.on(event, (value: unknown) => log.push({ event, value } as never))
  return {
    log,
    of: <K extends keyof ClientEvents>(event: K): Array<ClientEvents[K]> =>
      log.filter((e) => e.event === event).map((e) => e.value as ClientEvents[K]),
    statuses: (): Array<Status> => log.filter((e) => e.event === "status").map((e) => e.value as Status),
    clear: () => log.splice(0)
  }
}

const update = (seq: number, opId: string, delta: string, actorId = "other") => ({ seq, opId, actorId, deltaB64: b64(delta) })

describe("DocSyncClient: connecting", () => {
  it("opens ws://…/ws/documents/:id with its actorId, and no since before it has state", () => {
    const { last, client } = setup({ url: "http://example.test:8000/base", documentId: "a b" })
    expect(last().url).toBe("ws://example.test:8000/base/ws/documents/a%20b?actorId=me")
    expect(client.status).toBe("connecting")
  })

  it("uses wss for https and sends since when the app resumes from a version, and the token", () => {
    const { last } = setup({ url: "https://example.test", since: 7, token: "jwt" })
    const query = last().query
    expect(last().url.startsWith("wss://example.test/ws/documents/doc?")).toBe(true)
    expect(query.get("since")).toBe("7")
    expect(query.get("token")).toBe("jwt")
  })

  it("calls a token function before every connect", async () => {
    let calls = 0
    const { last, sockets, clock } = setup({ token: () => Promise.resolve(`t${++calls}`) })
    expect(sockets).toHaveLength(0)
    await settle()
    expect(last().query.get("token")).toBe("t1")
    last().serverClose(1006)
    clock.advance(100)
    await settle()
    expect(last().query.get("token")).toBe("t2")
  })

  it("retries when the token function fails", async () => {
    const { sockets, clock, events } = setup({ token: () => Promise.reject(new Error("no token")) })
    await settle()
    expect(sockets).toHaveLength(0)
    expect(events.of("error")[0]?.message).toContain("no token")
    expect(clock.delays).toEqual([75])
  })

  it("retries when the WebSocket constructor throws", () => {
    const clock = new FakeScheduler()
    const client = new DocSyncClient({
      url: "http://x",
      documentId: "d",
      scheduler: clock,
      random: () => 0,
      WebSocket: class {
        constructor() {
          throw new Error("boom")
        }
      } as never
    })
    expect(client.status).toBe("offline")
    expect(clock.delays).toEqual([125])
  })

  it("does not connect with autoConnect false until connect()", () => {
    const { sockets, client } = setup({ autoConnect: false })
    expect(sockets).toHaveLength(0)
    expect(client.status).toBe("offline")
    client.connect()
    client.connect()
    expect(sockets).toHaveLength(1)
  })

  it("validates its options", () => {
    const { WebSocket } = fakeWebSocket()
    expect(() => new DocSyncClient({ url: "http://x", documentId: "d", actorId: "", WebSocket })).toThrow(/actorId/)
    expect(() => new DocSyncClient({ url: "http://x", documentId: "d", actorId: "x".repeat(129), WebSocket })).toThrow(/actorId/)
    expect(() => new DocSyncClient({ url: "http://x", documentId: "d", since: -1, WebSocket })).toThrow(/since/)
    const generated = new DocSyncClient({ url: "http://x", documentId: "d", WebSocket, autoConnect: false })
    expect(generated.actorId).toMatch(/^actor-[0-9a-z]{10}$/)
  })
})

describe("DocSyncClient: joining", () => {
  it("delivers the snapshot, then the updates in order, then state; tracks version, clientId and peers", () => {
    const { last, client, events } = setup()
    last().join({
      clientId: "c1",
      version: 12,
      snapshot: { version: 10, snapshotB64: b64("S") },
      updates: [update(11, "o11", "u11"), update(12, "o12", "u12")],
      presence: [{ clientId: "p1", actorId: "bob", state: { cursor: 3 } }, { clientId: "p2", actorId: "eve", state: null }]
    })
    const order = events.log.filter((e) => e.event !== "status" && e.event !== "presence").map((e) => e.event)
    expect(order).toEqual(["snapshot", "update", "update", "state"])
    expect(events.of("snapshot")[0]).toEqual({ version: 10, data: bytes("S") })
    expect(events.of("update").map((u) => [u.seq, u.opId, u.actorId, text(u.delta)])).toEqual([
      [11, "o11", "other", "u11"],
      [12, "o12", "other", "u12"]
    ])
    expect(events.of("state")).toEqual([{ clientId: "c1", version: 12, snapshotVersion: 10, updates: 2, reset: false }])
    expect(client.version).toBe(12)
    expect(client.clientId).toBe("c1")
    expect(client.status).toBe("synced")
    expect([...client.peers.values()]).toEqual([
      { clientId: "p1", actorId: "bob", state: { cursor: 3 } },
      { clientId: "p2", actorId: "eve", state: null }
    ])
    expect(events.statuses()).toEqual(["synced"])
  })

  it("a state with reset starts over from the server's version", () => {
    const { last, client, events, clock } = setup({ since: 50 })
    last().join({ version: 2, updates: [update(1, "a", "1"), update(2, "b", "2")], reset: true })
    expect(events.of("reset")).toEqual([{ version: 2 }])
    expect(events.of("update").map((u) => u.seq)).toEqual([1, 2])
    expect(client.version).toBe(2)
    last().serverClose(1006)
    clock.advance(100)
    expect(last().query.get("since")).toBe("2")
  })

  it("reports frames that are not JSON messages, and messages before state", () => {
    const { last, events, client } = setup()
    last().open()
    last().receiveRaw("not json")
    last().receiveRaw(new Uint8Array([1]))
    last().receiveRaw(JSON.stringify([1]))
    last().receive({ type: "pong" })
    expect(events.of("error").map((e) => e.code)).toEqual(["protocol", "protocol", "protocol", "protocol"])
    expect(client.status).toBe("connecting")
    last().join()
    last().receive({ type: "state", documentId: "doc", clientId: "me", version: 0, snapshot: null, updates: [], presence: [] })
    expect(events.of("error").at(-1)?.message).toContain("second state")
  })

  it("reports an update whose delta is not base64, and skips it", () => {
    const { last, events, client } = setup()
    last().join({ version: 1, updates: [{ seq: 1, opId: "x", actorId: "a", deltaB64: "!!" }] })
    expect(events.of("update")).toEqual([])
    expect(events.of("error")[0]?.message).toContain("not base64")
    expect(client.version).toBe(1)
  })
})

describe("DocSyncClient: the pending queue", () => {
  it("queues updates made before the join and sends them after it, with baseVersion = version", () => {
    const { last, client } = setup()
    const a = client.submit(bytes("A"))
    const b = client.submit(bytes("B"))
    expect(a).not.toBe(b)
    expect(last().sent).toEqual([])
    last().join({ version: 3, updates: [update(1, "x", "1"), update(2, "y", "2"), update(3, "z", "3")] })
    expect(last().sentOf("update")).toEqual([
      { type: "update", opId: a, baseVersion: 3, actorId: "me", deltaB64: b64("A") },
      { type: "update", opId: b, baseVersion: 3, actorId: "me", deltaB64: b64("B") }
    ])
    expect(client.status).toBe("online")
    expect(client.pendingOpIds).toEqual([a, b])
  })

  it("keeps an update pending until its ack, which moves the version; then synced", () => {
    const { last, client, events } = setup()
    last().join({ version: 4 })
    const op = client.submit(bytes("A"))
    expect(last().sentOf("update")[0]).toMatchObject({ opId: op, baseVersion: 4 })
    expect(client.status).toBe("online")
    last().receive({ type: "ack", opId: op, seq: 5 })
    expect(client.pendingCount).toBe(0)
    expect(client.version).toBe(5)
    expect(client.status).toBe("synced")
    expect(events.of("ack")).toEqual([{ opId: op, seq: 5, duplicate: false }])
    expect(events.statuses()).toEqual(["synced", "online", "synced"])
  })

  it("ignores an ack for an opId it is not waiting for", () => {
    const { last, client, events } = setup()
    last().join({ version: 1 })
    last().receive({ type: "ack", opId: "unknown", seq: 2 })
    expect(client.version).toBe(1)
    expect(events.of("ack")).toEqual([])
  })

  it("a duplicate ack settles the update without moving the version", () => {
    const { last, client, events } = setup()
    last().join({ version: 9 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "ack", opId: op, seq: 3, duplicate: true })
    expect(client.pendingCount).toBe(0)
    expect(client.version).toBe(9)
    expect(events.of("ack")).toEqual([{ opId: op, seq: 3, duplicate: true }])
  })

  it("treats its own opId arriving as a remote_update as the ack (server-side recovery), without delivering it", () => {
    const { last, client, events } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "remote_update", ...update(2, op, "A", "me") })
    expect(client.pendingCount).toBe(0)
    expect(client.version).toBe(2)
    expect(events.of("update")).toEqual([])
    expect(events.of("ack")).toEqual([{ opId: op, seq: 2, duplicate: false }])
    // The retry's duplicate ack that may follow changes nothing.
    last().receive({ type: "ack", opId: op, seq: 2, duplicate: true })
    expect(events.of("ack")).toHaveLength(1)
  })

  it("refuses empty and oversized deltas, and submits after close", () => {
    const { client } = setup({ maxUpdateBytes: 4 })
    expect(() => client.submit(new Uint8Array())).toThrow(/empty/)
    expect(() => client.submit(bytes("12345"))).toThrow(/over the limit/)
    client.close()
    expect(() => client.submit(bytes("1"))).toThrow(/closed/)
  })
})

describe("DocSyncClient: ordering and exactly-once delivery", () => {
  it("delivers remote updates in seq order once, skipping seqs it already has", () => {
    const { last, client, events } = setup()
    last().join({ version: 2, updates: [update(1, "a", "1"), update(2, "b", "2")] })
    last().receive({ type: "remote_update", ...update(2, "b", "2") })
    last().receive({ type: "remote_update", ...update(3, "c", "3") })
    last().receive({ type: "remote_update", ...update(3, "c", "3") })
    expect(events.of("update").map((u) => u.seq)).toEqual([1, 2, 3])
    expect(client.version).toBe(3)
  })

  it("interleaves its own acks and others' updates by seq", () => {
    const { last, client, events } = setup()
    last().join()
    const op = client.submit(bytes("mine"))
    last().receive({ type: "remote_update", ...update(1, "theirs", "t") })
    last().receive({ type: "ack", opId: op, seq: 2 })
    last().receive({ type: "remote_update", ...update(3, "theirs2", "t") })
    expect(events.of("update").map((u) => u.seq)).toEqual([1, 3])
    expect(client.version).toBe(3)
  })

  it("on a gap, resyncs with since = the last seq it has rather than deliver out of order", () => {
    const { last, client, events, clock, sockets } = setup()
    last().join({ version: 1, updates: [update(1, "a", "1")] })
    last().receive({ type: "remote_update", ...update(3, "c", "3") })
    expect(events.of("update").map((u) => u.seq)).toEqual([1])
    expect(events.of("error")[0]?.message).toContain("expected seq 2, got 3")
    expect(sockets[0]?.closedWith?.code).toBe(4000)
    expect(client.status).toBe("offline")
    clock.advance(100)
    expect(last().query.get("since")).toBe("1")
    last().join({ version: 3, updates: [update(2, "b", "2"), update(3, "c", "3")] })
    expect(events.of("update").map((u) => u.seq)).toEqual([1, 2, 3])
  })

  it("an ack past the next seq is a gap too", () => {
    const { last, client, sockets } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "ack", opId: op, seq: 5 })
    expect(sockets[0]?.closedWith?.code).toBe(4000)
    expect(client.version).toBe(1)
  })

  it("a gap inside a state resyncs too", () => {
    const { last, client, sockets } = setup()
    last().join({ version: 3, updates: [update(1, "a", "1"), update(3, "c", "3")] })
    expect(sockets[0]?.closedWith?.code).toBe(4000)
    expect(client.version).toBe(1)
  })
})

describe("DocSyncClient: reconnecting and resending", () => {
  it("after a drop, reconnects with since and resends pending updates with the same opIds, in order", () => {
    const { last, client, clock, sockets, events } = setup()
    last().join({ version: 2, updates: [update(1, "a", "1"), update(2, "b", "2")] })
    const first = client.submit(bytes("A"))
    const second = client.submit(bytes("B"))
    last().serverClose(1006)
    expect(client.status).toBe("offline")
    expect(events.of("close")).toEqual([{ code: 1006, reason: "", willRetry: true }])
    const third = client.submit(bytes("C")) // made offline
    clock.advance(74)
    expect(sockets).toHaveLength(1)
    clock.advance(1)
    expect(sockets).toHaveLength(2)
    expect(last().query.get("since")).toBe("2")
    // The first one was stored before the drop: the state carries it, which settles it.
    last().join({ version: 3, updates: [{ ...update(3, first, "A", "me") }] })
    expect(last().sentOf("update").map((m) => [m.opId, m.baseVersion, m.deltaB64])).toEqual([
      [second, 3, b64("B")],
      [third, 3, b64("C")]
    ])
    expect(events.of("update").map((u) => u.seq)).toEqual([1, 2])
    last().receive({ type: "ack", opId: second, seq: 4 })
    last().receive({ type: "ack", opId: third, seq: 5 })
    expect(client.status).toBe("synced")
    expect(client.version).toBe(5)
  })

  it("an update stored before the drop but folded into a snapshot gets a duplicate ack on resend", () => {
    const { last, client, clock } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    last().serverClose(1006)
    clock.advance(100)
    last().join({ version: 150, snapshot: { version: 150, snapshotB64: b64("S") } })
    expect(last().sentOf("update")[0]).toMatchObject({ opId: op, baseVersion: 150 })
    last().receive({ type: "ack", opId: op, seq: 2, duplicate: true })
    expect(client.status).toBe("synced")
    expect(client.version).toBe(150)
  })

  it("backs off exponentially with jitter up to the maximum, and starts over after a join", () => {
    const { last, clock, sockets } = setup({ random: () => 0.5 })
    const delays: Array<number> = []
    for (let i = 0; i < 6; i++) {
      last().serverClose(1006)
      delays.push(clock.delays[0] ?? -1)
      clock.advance(clock.delays[0] ?? 0)
    }
    // ceilings 100, 200, 400, 800, 1000, 1000; equal jitter at 0.5 gives 3/4 of each
    expect(delays).toEqual([75, 150, 300, 600, 750, 750])
    expect(sockets).toHaveLength(7)
    last().join()
    last().serverClose(1006)
    expect(clock.delays).toEqual([75])
  })

  it("reconnects after 4408 (slow consumer) and 1001 (server restart), resuming with since", () => {
    for (const code of [4408, 1001, 1011]) {
      const { last, client, clock, sockets, events } = setup()
      last().join({ version: 8 })
      last().serverClose(code, "bye")
      expect(events.of("close")).toEqual([{ code, reason: "bye", willRetry: true }])
      clock.advance(100)
      expect(sockets).toHaveLength(2)
      expect(last().query.get("since")).toBe("8")
      expect(client.status).toBe("connecting")
    }
  })

  it("stops for good on 4401, 4403, 4404 and 4410", () => {
    for (const code of [4401, 4403, 4404, 4410]) {
      const { last, client, clock, sockets, events } = setup()
      client.submit(bytes("A"))
      last().open()
      last().serverClose(code, "no")
      expect(client.status).toBe("closed")
      expect(events.of("close")).toEqual([{ code, reason: "no", willRetry: false }])
      expect(events.of("error").map((e) => e.code)).toEqual(["closed"])
      clock.advance(60_000)
      expect(sockets).toHaveLength(1)
      expect(() => client.connect()).toThrow(/closed/)
    }
  })

  it("disconnect() keeps pending updates and stays offline until connect()", () => {
    const { last, client, clock, sockets, events } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    client.disconnect()
    expect(sockets[0]?.closedWith).toEqual({ code: 1000, reason: "disconnect" })
    expect(events.of("close").at(-1)).toEqual({ code: 1000, reason: "disconnect", willRetry: false })
    expect(client.status).toBe("offline")
    clock.advance(60_000)
    expect(sockets).toHaveLength(1)
    client.disconnect()
    client.connect()
    expect(last().query.get("since")).toBe("1")
    last().join({ version: 1 })
    expect(last().sentOf("update")[0]?.opId).toBe(op)
  })

  it("reconnectNow() skips the backoff wait", () => {
    const { last, client, clock, sockets } = setup()
    last().join()
    last().serverClose(1006)
    last().serverClose(1006) // late events of a replaced socket are ignored
    client.reconnectNow()
    expect(sockets).toHaveLength(2)
    client.reconnectNow()
    expect(sockets).toHaveLength(2)
    clock.advance(10_000)
    expect(sockets).toHaveLength(2)
  })

  it("close() closes the socket and stops everything", () => {
    const { last, client, clock, sockets } = setup()
    last().join()
    client.close()
    client.close()
    expect(client.status).toBe("closed")
    expect(sockets[0]?.closedWith?.code).toBe(1000)
    clock.advance(60_000)
    expect(sockets).toHaveLength(1)
  })

  it("survives a socket whose close throws", () => {
    const { last, client, clock, sockets } = setup()
    last().close = () => {
      throw new Error("still connecting")
    }
    client.disconnect()
    expect(client.status).toBe("offline")
    client.connect()
    clock.advance(0)
    expect(sockets).toHaveLength(2)
  })

  it("reports a failed send; the close that follows brings the update back", () => {
    const { last, client, events, clock } = setup()
    last().join()
    last().readyState = 2
    const op = client.submit(bytes("A"))
    expect(events.of("error")[0]?.message).toContain("send failed")
    last().serverClose(1006)
    clock.advance(100)
    last().join()
    expect(last().sentOf("update")[0]?.opId).toBe(op)
  })
})

describe("DocSyncClient: watchdog", () => {
  it("drops a connection that sends no state in time, and retries", () => {
    const { last, clock, sockets, client } = setup({ responseTimeoutMs: 5000 })
    last().open()
    clock.advance(4999)
    expect(sockets).toHaveLength(1)
    clock.advance(1)
    expect(sockets[0]?.closedWith).toEqual({ code: 4000, reason: "no answer from the server" })
    expect(client.status).toBe("offline")
    clock.advance(75)
    expect(sockets).toHaveLength(2)
  })

  it("drops a connection that goes silent while an update awaits its ack, and resends it", () => {
    const { last, clock, sockets, client } = setup({ responseTimeoutMs: 5000 })
    last().join()
    clock.advance(60_000) // nothing awaited: an idle connection is fine
    expect(sockets).toHaveLength(1)
    const op = client.submit(bytes("A"))
    clock.advance(3000)
    last().receive({ type: "presence_join", clientId: "p", actorId: "bob" }) // any frame counts as life
    clock.advance(4999)
    expect(sockets).toHaveLength(1)
    clock.advance(1)
    expect(sockets[0]?.closedWith?.code).toBe(4000)
    clock.advance(75)
    last().join()
    expect(last().sentOf("update")[0]?.opId).toBe(op)
  })

  it("can be turned off", () => {
    const { last, clock, sockets } = setup({ responseTimeoutMs: 0 })
    last().open()
    clock.advance(600_000)
    expect(sockets).toHaveLength(1)
  })
})

describe("DocSyncClient: server errors", () => {
  it("resends an update after an internal error, with the same opId, after a backoff pause", () => {
    const { last, client, clock, events } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "error", code: "internal", message: "db down", opId: op })
    expect(events.of("error")).toEqual([{ code: "internal", message: "db down", opId: op }])
    expect(last().sentOf("update")).toHaveLength(1)
    clock.advance(75)
    expect(last().sentOf("update").map((m) => m.opId)).toEqual([op, op])
    last().receive({ type: "error", code: "rate_limited", message: "slow down", opId: op })
    clock.advance(149)
    expect(last().sentOf("update")).toHaveLength(2)
    clock.advance(1)
    expect(last().sentOf("update")).toHaveLength(3)
    last().receive({ type: "ack", opId: op, seq: 2 })
    expect(client.status).toBe("synced")
  })

  it("drops an update the server rejects for good (bad_message, too_large, forbidden)", () => {
    for (const code of ["bad_message", "too_large", "forbidden"] as const) {
      const { last, client, events } = setup()
      last().join()
      const op = client.submit(bytes("A"))
      last().receive({ type: "error", code, message: "no", opId: op })
      expect(client.pendingCount).toBe(0)
      expect(client.status).toBe("synced")
      expect(events.of("rejected")).toEqual([{ opId: op, code, message: "no" }])
    }
  })

  it("rejoins after invalid_base_version", () => {
    const { last, client, sockets, clock } = setup()
    last().join({ version: 1 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "error", code: "invalid_base_version", message: "ahead", opId: op })
    expect(sockets[0]?.closedWith?.reason).toBe("resync after invalid_base_version")
    clock.advance(100)
    last().join({ version: 0, reset: true })
    expect(last().sentOf("update")[0]).toMatchObject({ opId: op, baseVersion: 0 })
  })

  it("reports errors that concern no pending update", () => {
    const { last, client, events } = setup()
    last().join()
    last().receive({ type: "error", code: "bad_message", message: "what" })
    last().receive({ type: "error", code: "internal", message: "late", opId: "settled-long-ago" })
    expect(events.of("error").map((e: ClientError) => e.code)).toEqual(["bad_message", "internal"])
    expect(client.status).toBe("synced")
  })

  it("a listener that throws is reported as an error and does not break the client", () => {
    const { last, client, events } = setup()
    client.on("state", () => {
      throw new Error("app bug")
    })
    client.on("error", () => {
      throw new Error("error listener bug")
    })
    last().join()
    expect(events.of("error")[0]?.code).toBe("listener")
    expect(client.status).toBe("synced")
  })
})

describe("DocSyncClient: snapshots", () => {
  it("answers a snapshot_request with the callback's bytes at its version", () => {
    const asked: Array<number> = []
    const { last } = setup({ snapshot: (version) => (asked.push(version), bytes(`S${version}`)) })
    last().join({ version: 100 })
    last().receive({ type: "snapshot_request", version: 100 })
    expect(asked).toEqual([100])
    expect(last().sentOf("snapshot")).toEqual([{ type: "snapshot", version: 100, snapshotB64: b64("S100") }])
    last().receive({ type: "snapshot_ack", version: 100 })
  })

  it("waits until nothing is pending, then answers with the version it has then", () => {
    const asked: Array<number> = []
    const { last, client } = setup({ snapshot: (version) => (asked.push(version), bytes("S")) })
    last().join({ version: 100 })
    const op = client.submit(bytes("A"))
    last().receive({ type: "snapshot_request", version: 100 })
    expect(last().sentOf("snapshot")).toEqual([])
    last().receive({ type: "remote_update", ...update(101, "x", "x") })
    expect(last().sentOf("snapshot")).toEqual([])
    last().receive({ type: "ack", opId: op, seq: 102 })
    expect(asked).toEqual([102])
    expect(last().sentOf("snapshot")[0]?.version).toBe(102)
  })

  it("supports an async callback, and one that declines", async () => {
    let answer: Uint8Array | undefined = bytes("S")
    const { last } = setup({ snapshot: () => Promise.resolve(answer) })
    last().join({ version: 5 })
    last().receive({ type: "snapshot_request", version: 5 })
    await settle()
    expect(last().sentOf("snapshot")).toHaveLength(1)
    answer = undefined
    last().receive({ type: "snapshot_request", version: 5 })
    await settle()
    expect(last().sentOf("snapshot")).toHaveLength(1)
  })

  it("reports a callback that throws or rejects", async () => {
    const { last, events, client } = setup({
      snapshot: () => {
        throw new Error("cannot")
      }
    })
    last().join({ version: 5 })
    last().receive({ type: "snapshot_request", version: 5 })
    expect(events.of("error")[0]?.code).toBe("snapshot_failed")
    client.setSnapshotProvider(() => Promise.reject(new Error("later")))
    last().receive({ type: "snapshot_request", version: 5 })
    await settle()
    expect(events.of("error")[1]?.message).toContain("later")
  })

  it("ignores requests without a callback; a provider set later answers an outstanding one", () => {
    const { last, client, events } = setup()
    last().join({ version: 5 })
    last().receive({ type: "snapshot_request", version: 5 })
    expect(last().sentOf("snapshot")).toEqual([])
    client.setSnapshotProvider(() => bytes("S"))
    expect(last().sentOf("snapshot")).toEqual([])
    last().receive({ type: "snapshot_request", version: 5 })
    expect(last().sentOf("snapshot")).toHaveLength(1)
    last().receive({ type: "error", code: "snapshot_rejected", message: "too soon" })
    expect(events.of("error").at(-1)?.code).toBe("snapshot_rejected")
    client.setSnapshotProvider(undefined)
  })
})

describe("DocSyncClient: presence", () => {
  it("sends its state when joined, and again after every reconnect", () => {
    const { last, client, clock } = setup()
    client.setPresence({ name: "Ada" })
    expect(last().sent).toEqual([])
    last().join()
    expect(last().sentOf("presence")).toEqual([{ type: "presence", state: { name: "Ada" } }])
    client.setPresence({ name: "Ada", cursor: 4 })
    expect(last().sentOf("presence")).toHaveLength(2)
    expect(client.presence).toEqual({ name: "Ada", cursor: 4 })
    last().serverClose(1006)
    clock.advance(100)
    last().join()
    expect(last().sentOf("presence")).toEqual([{ type: "presence", state: { name: "Ada", cursor: 4 } }])
  })

  it("tracks the others through join, presence and leave, and forgets them when offline", () => {
    const { last, client, events } = setup()
    last().join({ presence: [{ clientId: "p1", actorId: "bob", state: { c: 1 } }] })
    last().receive({ type: "presence_join", clientId: "p2", actorId: "eve" })
    last().receive({ type: "presence", clientId: "p2", actorId: "eve", state: { c: 2 } })
    last().receive({ type: "presence_join", clientId: "p2", actorId: "eve" }) // keeps the known state
    last().receive({ type: "presence", clientId: "p3", actorId: "zed", state: "not an object" })
    expect([...client.peers.values()]).toEqual([
      { clientId: "p1", actorId: "bob", state: { c: 1 } },
      { clientId: "p2", actorId: "eve", state: { c: 2 } },
      { clientId: "p3", actorId: "zed", state: null }
    ])
    last().receive({ type: "presence_leave", clientId: "p1", actorId: "bob", reason: "idle" })
    last().receive({ type: "presence_leave", clientId: "p9", actorId: "ghost", reason: "disconnect" })
    expect([...client.peers.keys()]).toEqual(["p2", "p3"])
    expect(events.of("presence").map((e) => e.change.type)).toEqual(["sync", "join", "update", "join", "update", "leave", "leave"])
    expect(events.of("presence")[5]?.change).toEqual({ type: "leave", peer: { clientId: "p1", actorId: "bob", state: { c: 1 } }, reason: "idle" })
    last().serverClose(1006)
    expect(client.peers.size).toBe(0)
    expect(events.of("presence").at(-1)?.change).toEqual({ type: "sync" })
  })
})

describe("DocSyncClient: whenSynced", () => {
  it("resolves once synced, at once when already synced, and rejects when closed", async () => {
    const { last, client } = setup()
    const waiting = client.whenSynced()
    last().open()
    last().join()
    await waiting
    await client.whenSynced()
    client.submit(bytes("A"))
    const never = client.whenSynced()
    client.close()
    await expect(never).rejects.toThrow(/closed/)
    await expect(client.whenSynced()).rejects.toThrow(/closed/)
  })

  it("ignores other status changes while waiting", async () => {
    const { last, client, clock } = setup()
    const waiting = client.whenSynced()
    last().serverClose(1006)
    clock.advance(100)
    last().join()
    await waiting
  })
})

describe("DocSyncClient: the browser's network events", () => {
  it("drops the connection on offline and reconnects at once on online", () => {
    const target = new EventTarget()
    const global = globalThis as { addEventListener?: unknown; removeEventListener?: unknown }
    global.addEventListener = target.addEventListener.bind(target)
    global.removeEventListener = target.removeEventListener.bind(target)
    try {
      const { last, client, sockets, clock } = setup()
      last().join()
      target.dispatchEvent(new Event("offline"))
      expect(sockets[0]?.closedWith?.reason).toBe("network offline")
      expect(client.status).toBe("offline")
      target.dispatchEvent(new Event("offline"))
      clock.advance(10) // the backoff has not run out
      expect(sockets).toHaveLength(1)
      target.dispatchEvent(new Event("online"))
      expect(sockets).toHaveLength(2)
      client.close()
      target.dispatchEvent(new Event("online"))
      expect(sockets).toHaveLength(2)
    } finally {
      delete global.addEventListener
      delete global.removeEventListener
    }
  })
})

describe("backoffDelay", () => {
  it("grows by the factor up to the maximum, with half of it random", () => {
    const options = { initialMs: 100, maxMs: 1000, factor: 2 }
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(options, n, () => 0))).toEqual([50, 100, 200, 400, 500, 500])
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(options, n, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000])
    expect(backoffDelay(defaultBackoff, 0, () => 0.5)).toBe(188)
  })
})

describe("the package entry (src/Client/index.ts)", () => {
  it("exports the client, the REST client, base64 and backoff", async () => {
    const Client = await import("../../src/Client/index.js")
    expect(Client.DocSyncClient).toBe(DocSyncClient)
    expect(typeof Client.RestClient.make).toBe("function")
    expect(typeof Client.RestClient.run).toBe("function")
    expect(Client.Base64.decode(Client.Base64.encode(bytes("hi")))).toEqual(bytes("hi"))
    expect(Client.backoffDelay(Client.defaultBackoff, 0, () => 0)).toBe(125)
    expect([...Client.FATAL_CLOSE_CODES].sort()).toEqual([4401, 4403, 4404, 4410])
  })

  it("once() listens to one event only", () => {
    const { last, client } = setup()
    const seen: Array<Status> = []
    client.once("status", (status) => seen.push(status))
    last().join()
    last().serverClose(1006)
    expect(seen).toEqual(["synced"])
  })
})
