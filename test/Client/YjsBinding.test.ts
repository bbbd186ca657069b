/**
 * The Yjs binding on fake sockets: what goes out, what is applied, and that remote changes are not echoed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Y from "yjs"
import { DocSyncClient } from "../../src/Client/DocSyncClient.js"
import * as Base64 from "../../src/Client/Base64.js"
import { type AwarenessChange, YjsBinding } from "../../src/Client/YjsBinding.js"
import { FakeScheduler, fakeWebSocket } from "./support/Fakes.js"

const setup = (doc?: Y.Doc) => {
  const { WebSocket, sockets } = fakeWebSocket()
  const binding = YjsBinding.connect({
    url: "http://127.0.0.1:8000",
    documentId: "doc",
    actorId: "me",
    WebSocket,
    scheduler: new FakeScheduler(),
    ...(doc === undefined ? {} : { doc })
  })
  const socket = () => {
    const last = sockets.at(-1)
    if (last === undefined) throw new Error("no socket")
    return last
  }
  return { binding, socket, sockets }
}

/** A delta made by another Y.Doc. */
const remoteDelta = (edit: (doc: Y.Doc) => void, base?: Y.Doc): Uint8Array => {
  const other = new Y.Doc()
  if (base !== undefined) Y.applyUpdate(other, Y.encodeStateAsUpdate(base))
  const before = Y.encodeStateVector(other)
  edit(other)
  return Y.encodeStateAsUpdate(other, before)
}

describe("YjsBinding", () => {
  it("sends local changes as deltas that rebuild the document elsewhere", () => {
    const { binding, socket } = setup()
    socket().join()
    binding.doc.getText("t").insert(0, "hello")
    binding.doc.getText("t").insert(5, " world")
    const updates = socket().sentOf("update")
    expect(updates).toHaveLength(2)
    const elsewhere = new Y.Doc()
    for (const u of updates) Y.applyUpdate(elsewhere, Base64.decode(String(u.deltaB64)))
    expect(elsewhere.getText("t").toString()).toBe("hello world")
  })

  it("applies the snapshot and remote updates, without sending them back", () => {
    const { binding, socket } = setup()
    const base = new Y.Doc()
    base.getText("t").insert(0, "base")
    const later = remoteDelta((d) => d.getText("t").insert(4, "+more"), base)
    socket().join({
      version: 2,
      snapshot: { version: 1, snapshotB64: Base64.encode(Y.encodeStateAsUpdate(base)) },
      updates: [{ seq: 2, opId: "x", actorId: "bob", deltaB64: Base64.encode(later) }]
    })
    expect(binding.doc.getText("t").toString()).toBe("base+more")
    socket().receive({
      type: "remote_update",
      seq: 3,
      opId: "y",
      actorId: "bob",
      deltaB64: Base64.encode(remoteDelta((d) => d.getText("t").insert(0, "!"), binding.doc))
    })
    expect(binding.doc.getText("t").toString()).toBe("!base+more")
    expect(socket().sentOf("update")).toEqual([])
  })

  it("sends content the document already had when bound", () => {
    const doc = new Y.Doc()
    doc.getText("t").insert(0, "offline draft")
    const { socket } = setup(doc)
    socket().join()
    const sent = socket().sentOf("update")
    expect(sent).toHaveLength(1)
    const elsewhere = new Y.Doc()
    Y.applyUpdate(elsewhere, Base64.decode(String(sent[0]?.deltaB64)))
    expect(elsewhere.getText("t").toString()).toBe("offline draft")
  })

  it("answers snapshot requests with the whole document state", () => {
    const { binding, socket } = setup()
    socket().join({ version: 100 })
    binding.doc.getText("t").insert(0, "abc")
    const opId = String(socket().sentOf("update")[0]?.opId)
    socket().receive({ type: "ack", opId, seq: 101 })
    socket().receive({ type: "snapshot_request", version: 101 })
    const snapshot = socket().sentOf("snapshot")[0]
    expect(snapshot?.version).toBe(101)
    const restored = new Y.Doc()
    Y.applyUpdate(restored, Base64.decode(String(snapshot?.snapshotB64)))
    expect(restored.getText("t").toString()).toBe("abc")
  })

  it("after a reset, gives the server everything the document has", () => {
    const { binding, socket, sockets } = setup()
    socket().join()
    binding.doc.getText("t").insert(0, "kept")
    socket().receive({ type: "ack", opId: String(socket().sentOf("update")[0]?.opId), seq: 1 })
    socket().serverClose(1006)
    binding.client.reconnectNow()
    expect(sockets).toHaveLength(2)
    socket().join({ version: 0, reset: true })
    const sent = socket().sentOf("update")
    expect(sent).toHaveLength(1)
    const restored = new Y.Doc()
    Y.applyUpdate(restored, Base64.decode(String(sent[0]?.deltaB64)))
    expect(restored.getText("t").toString()).toBe("kept")
  })

  it("awareness: local state and fields go out as presence; others' changes are reported", () => {
    const { binding, socket } = setup()
    const changes: Array<AwarenessChange> = []
    binding.awareness.on("change", (change) => changes.push(change))
    expect(binding.awareness.getLocalState()).toBeNull()
    binding.awareness.setLocalState({ name: "Ada" })
    binding.awareness.setLocalStateField("cursor", 3)
    expect(binding.awareness.getLocalState()).toEqual({ name: "Ada", cursor: 3 })
    socket().join({ presence: [{ clientId: "p1", actorId: "bob", state: null }] })
    expect(socket().sentOf("presence")).toEqual([{ type: "presence", state: { name: "Ada", cursor: 3 } }])
    socket().receive({ type: "presence_join", clientId: "p2", actorId: "eve" })
    socket().receive({ type: "presence", clientId: "p2", actorId: "eve", state: { name: "Eve" } })
    socket().receive({ type: "presence_leave", clientId: "p1", actorId: "bob", reason: "disconnect" })
    expect(changes).toEqual([
      { added: ["p1"], updated: [], removed: [] },
      { added: ["p2"], updated: [], removed: [] },
      { added: [], updated: ["p2"], removed: [] },
      { added: [], updated: [], removed: ["p1"] }
    ])
    expect(binding.awareness.getStates().get("p2")?.state).toEqual({ name: "Eve" })
  })

  it("destroy unbinds the document and closes the client", () => {
    const { binding, socket } = setup()
    socket().join()
    binding.destroy()
    expect(binding.client.status).toBe("closed")
    binding.doc.getText("t").insert(0, "after")
    expect(socket().sentOf("update")).toEqual([])
  })

  it("binds to a client made separately, connecting when told to", () => {
    const { WebSocket, sockets } = fakeWebSocket()
    const client = new DocSyncClient({ url: "http://x", documentId: "d", WebSocket, autoConnect: false })
    const binding = new YjsBinding(client)
    expect(sockets).toHaveLength(0)
    const lazy = YjsBinding.connect({ url: "http://x", documentId: "d", WebSocket, autoConnect: false })
    expect(sockets).toHaveLength(0)
    client.connect()
    expect(sockets).toHaveLength(1)
    binding.destroy()
    lazy.destroy()
  })
})
