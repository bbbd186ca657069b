/**
 * A Yjs binding on the docsync client: a `Y.Doc` whose local updates go out as deltas and whose remote deltas are
 * applied with `Y.applyUpdate` (with this binding as the transaction origin, so they are not sent back),
 * snapshots from `Y.encodeStateAsUpdate`, and awareness-style presence.
 *
 * ```ts
 * const binding = YjsBinding.connect({ url: "http://127.0.0.1:8000", documentId })
 * binding.doc.getText("text").insert(0, "hello")
 * binding.awareness.setLocalStateField("name", "Ada")
 * ```
 */
import * as Y from "yjs"
import { type ClientOptions, DocSyncClient, type Peer } from "./DocSyncClient.js"
import { Emitter } from "./Emitter.js"

export interface AwarenessChange {
  /** clientIds of connections that appeared, changed their state, or left. */
  readonly added: ReadonlyArray<string>
  readonly updated: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
}

/**
 * Presence shaped like y-protocols' Awareness: a local state (a JSON object) shown to the others, and the others'
 * states by clientId. Backed by the client's presence messages, so it needs no extra traffic.
 */
export class Awareness extends Emitter<{ readonly change: AwarenessChange }> {
  private readonly client: DocSyncClient
  private readonly stop: () => void

  constructor(client: DocSyncClient) {
    super()
    this.client = client
    this.stop = client.on("presence", ({ change, peers }) => {
      switch (change.type) {
        case "join":
          return this.emit("change", { added: [change.peer.clientId], updated: [], removed: [] })
        case "update":
          return this.emit("change", { added: [], updated: [change.peer.clientId], removed: [] })
        case "leave":
          return this.emit("change", { added: [], updated: [], removed: [change.peer.clientId] })
        case "sync":
          return this.emit("change", { added: [...peers.keys()], updated: [], removed: [] })
      }
    })
  }

  /** This connection's state, or null before one is set. */
  getLocalState(): Readonly<Record<string, unknown>> | null {
    return this.client.presence
  }

  setLocalState(state: Readonly<Record<string, unknown>>): void {
    this.client.setPresence(state)
  }

  /** Sets one field of the local state, keeping the others. */
  setLocalStateField(field: string, value: unknown): void {
    this.client.setPresence({ ...this.client.presence, [field]: value })
  }

  /** The other connections, by clientId (their state is null until they send one). */
  getStates(): ReadonlyMap<string, Peer> {
    return this.client.peers
  }

  destroy(): void {
    this.stop()
  }
}

export interface YjsBindingOptions {
  /** The document to bind; a new one by default. Content it already has is sent as one update. */
  readonly doc?: Y.Doc
}

export class YjsBinding {
  readonly doc: Y.Doc
  readonly client: DocSyncClient
  readonly awareness: Awareness
  private readonly stops: Array<() => void> = []

  /** Creates a client for `options` and binds a document to it. */
  static connect(options: ClientOptions & YjsBindingOptions): YjsBinding {
    const client = new DocSyncClient({ ...options, autoConnect: false })
    const binding = new YjsBinding(client, options.doc === undefined ? {} : { doc: options.doc })
    if (options.autoConnect !== false) client.connect()
    return binding
  }

  /** Binds `doc` to `client`; bind before the client's first join so that no update is missed. */
  constructor(client: DocSyncClient, options: YjsBindingOptions = {}) {
    this.client = client
    this.doc = options.doc ?? new Y.Doc()
    this.awareness = new Awareness(client)
    const doc = this.doc

    const onLocal = (update: Uint8Array, origin: unknown) => {
      if (origin !== this) client.submit(update)
    }
    doc.on("update", onLocal)
    this.stops.push(() => doc.off("update", onLocal))

    this.stops.push(client.on("update", (update) => Y.applyUpdate(doc, update.delta, this)))
    this.stops.push(client.on("snapshot", (snapshot) => Y.applyUpdate(doc, snapshot.data, this)))

    // The server has less than we do (it lost data or was restored): once joined, give it everything we have.
    let resetPending = false
    this.stops.push(client.on("reset", () => (resetPending = true)))
    this.stops.push(client.on("state", () => {
      if (resetPending && hasContent(doc)) client.submit(Y.encodeStateAsUpdate(doc))
      resetPending = false
    }))

    // Only asked when nothing is pending, so the document is exactly the merged state of the updates so far.
    client.setSnapshotProvider(() => Y.encodeStateAsUpdate(doc))
    this.stops.push(() => client.setSnapshotProvider(undefined))

    if (hasContent(doc)) client.submit(Y.encodeStateAsUpdate(doc))
  }

  /** Unbinds the document (it keeps its content) and closes the client. */
  destroy(): void {
    for (const stop of this.stops.splice(0)) stop()
    this.awareness.destroy()
    this.client.close()
  }
}

const hasContent = (doc: Y.Doc): boolean => Y.encodeStateVector(doc).byteLength > 1
