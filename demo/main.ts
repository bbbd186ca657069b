/**
 * The docsync demo page: pick or create a document, then edit a shared text area backed by the Yjs binding.
 * Other people's names and carets come from presence; the badge shows the connection status.
 *
 * Plain DOM, no framework; bundled by scripts/build-demo.mjs into dist/demo/app.js.
 */
import * as Y from "yjs"
import type { Status } from "../src/Client/DocSyncClient.js"
import * as RestClient from "../src/Client/RestClient.js"
import { YjsBinding } from "../src/Client/YjsBinding.js"
import { type DeltaOp, diff, transformPosition } from "./text.js"

const baseUrl = window.location.origin
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324", "#800000"]

const element = <T extends HTMLElement>(id: string, type: new () => T): T => {
  const found = document.getElementById(id)
  if (!(found instanceof type)) throw new Error(`#${id} is missing`)
  return found
}

const picker = element("picker", HTMLElement)
const editor = element("editor", HTMLElement)
const list = element("documents", HTMLUListElement)
const createForm = element("create", HTMLFormElement)
const titleInput = element("title", HTMLInputElement)
const nameInput = element("name", HTMLInputElement)
const badge = element("status", HTMLSpanElement)
const docTitle = element("doc-title", HTMLElement)
const peersList = element("peers", HTMLUListElement)
const textarea = element("text", HTMLTextAreaElement)
const mirror = element("mirror", HTMLDivElement)
const toggle = element("toggle", HTMLButtonElement)
const message = element("message", HTMLParagraphElement)

// ---------------------------------------------------------------------------------------------------------------
// Who am I

const storedName = window.localStorage.getItem("docsync-name")
nameInput.value = storedName ?? `Guest ${Math.floor(Math.random() * 900 + 100)}`
const myColor = COLORS[Math.floor(Math.random() * COLORS.length)] ?? "#4363d8"

// ---------------------------------------------------------------------------------------------------------------
// The document picker

const showError = (error: unknown) => {
  message.textContent = error instanceof Error ? error.message : String(error)
  message.hidden = false
}

const loadDocuments = async () => {
  const page = await RestClient.run({ baseUrl }, (client) =>
    client.documents.list({ urlParams: { include_deleted: false, limit: 100 } }))
  list.replaceChildren(
    ...page.items.map((item) => {
      const li = document.createElement("li")
      const link = document.createElement("a")
      link.href = `#${item.id}`
      link.textContent = item.title
      const meta = document.createElement("span")
      meta.className = "meta"
      meta.textContent = ` version ${item.version}`
      li.append(link, meta)
      return li
    })
  )
  if (page.items.length === 0) list.innerHTML = "<li class=\"meta\">No documents yet: create one.</li>"
}

createForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const title = titleInput.value.trim()
  if (title === "") return showError("A title needs at least one character.")
  RestClient.run({ baseUrl }, (client) => client.documents.create({ payload: { title } })).then(
    (created) => {
      titleInput.value = ""
      window.location.hash = created.id
    },
    showError
  )
})

// ---------------------------------------------------------------------------------------------------------------
// The editor

let current: { readonly binding: YjsBinding; readonly stop: () => void } | undefined

const open = async (documentId: string) => {
  close()
  message.hidden = true
  const meta = await RestClient.run({ baseUrl }, (client) =>
    client.documents.get({ path: { id: documentId as never }, urlParams: { include_deleted: false } }))
  docTitle.textContent = meta.title
  picker.hidden = true
  editor.hidden = false

  const binding = YjsBinding.connect({ url: baseUrl, documentId, actorId: nameInput.value.slice(0, 128) || "guest" })
  const { doc, client, awareness } = binding
  const ytext = doc.getText("text")
  const local = Symbol("textarea")
  textarea.value = ytext.toString()

  // Local typing: one splice of the Y.Text per input event.
  const onInput = () => {
    const change = diff(ytext.toString(), textarea.value)
    if (change === undefined) return
    doc.transact(() => {
      if (change.remove > 0) ytext.delete(change.index, change.remove)
      if (change.insert.length > 0) ytext.insert(change.index, change.insert)
    }, local)
    publishCursor()
  }

  // Remote changes: rewrite the text area, keeping the local selection where it was in the text.
  const onRemote = (event: Y.YTextEvent, transaction: Y.Transaction) => {
    if (transaction.origin === local) return
    const delta = event.delta as ReadonlyArray<DeltaOp>
    const focused = document.activeElement === textarea
    const start = transformPosition(textarea.selectionStart, delta)
    const end = transformPosition(textarea.selectionEnd, delta)
    textarea.value = ytext.toString()
    if (focused) textarea.setSelectionRange(start, end)
    renderCursors()
  }
  ytext.observe(onRemote)

  // Presence: my name, colour and selection (as Yjs relative positions, so they survive concurrent edits).
  let scheduled = false
  const publishCursor = () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(() => {
      scheduled = false
      awareness.setLocalState({
        name: nameInput.value,
        color: myColor,
        anchor: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, textarea.selectionStart)),
        head: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, textarea.selectionEnd))
      })
    })
  }

  const renderCursors = () => {
    const text = ytext.toString()
    const carets: Array<{ index: number; name: string; color: string }> = []
    const items: Array<HTMLLIElement> = []
    for (const peer of awareness.getStates().values()) {
      const state = peer.state ?? {}
      const name = typeof state.name === "string" ? state.name : peer.actorId
      const color = typeof state.color === "string" ? state.color : "#888"
      const index = absolute(state.head, doc)
      const li = document.createElement("li")
      const dot = document.createElement("span")
      dot.className = "dot"
      dot.style.background = color
      li.append(dot, document.createTextNode(index === undefined ? name : `${name} (${lineCol(text, index)})`))
      items.push(li)
      if (index !== undefined) carets.push({ index, name, color })
    }
    peersList.replaceChildren(...items)
    if (items.length === 0) {
      const note = document.createElement("li")
      note.className = "meta"
      note.textContent = client.status === "offline" || client.status === "connecting"
        ? "Offline: who else is here shows again once you are back."
        : "Nobody else here. Open this page in another tab to edit together."
      peersList.replaceChildren(note)
    }
    mirror.replaceChildren(...mirrorNodes(text, carets))
    mirror.scrollTop = textarea.scrollTop
  }

  const onStatus = (status: Status) => {
    const shown = status === "synced" ? "synced" : status === "online" ? "online" : status === "closed" ? "closed" : "offline"
    badge.textContent = status === "connecting" ? "connecting…" : status === "online" ? "online · saving" : shown
    badge.dataset.status = shown
    renderCursors()
  }

  let wantOffline = false
  const onToggle = () => {
    wantOffline = !wantOffline
    if (wantOffline) client.disconnect()
    else client.connect()
    toggle.textContent = wantOffline ? "Go online" : "Go offline"
  }

  const stops = [
    client.on("status", onStatus),
    client.on("state", () => {
      renderCursors()
      publishCursor()
    }),
    client.on("close", (info) => {
      if (!info.willRetry && info.code === 4410) showError("This document was deleted.")
      if (!info.willRetry && info.code === 4404) showError("No such document.")
    }),
    awareness.on("change", renderCursors)
  ]
  const selection = () => publishCursor()
  const scroll = () => (mirror.scrollTop = textarea.scrollTop)
  textarea.addEventListener("input", onInput)
  for (const type of ["select", "keyup", "mouseup", "focus"]) textarea.addEventListener(type, selection)
  textarea.addEventListener("scroll", scroll)
  toggle.addEventListener("click", onToggle)
  onStatus(client.status)
  renderCursors()

  current = {
    binding,
    stop: () => {
      for (const stop of stops) stop()
      ytext.unobserve(onRemote)
      textarea.removeEventListener("input", onInput)
      for (const type of ["select", "keyup", "mouseup", "focus"]) textarea.removeEventListener(type, selection)
      textarea.removeEventListener("scroll", scroll)
      toggle.removeEventListener("click", onToggle)
      binding.destroy()
    }
  }
}

const close = () => {
  current?.stop()
  current = undefined
}

nameInput.addEventListener("change", () => {
  window.localStorage.setItem("docsync-name", nameInput.value)
  const binding = current?.binding
  if (binding !== undefined) binding.awareness.setLocalStateField("name", nameInput.value)
})

// ---------------------------------------------------------------------------------------------------------------
// Routing: #<documentId> opens a document, no hash shows the list

const route = () => {
  const documentId = decodeURIComponent(window.location.hash.slice(1))
  if (documentId === "") {
    close()
    editor.hidden = true
    picker.hidden = false
    badge.textContent = ""
    delete badge.dataset.status
    loadDocuments().catch(showError)
  } else {
    open(documentId).catch((error: unknown) => {
      showError(error)
      picker.hidden = false
      loadDocuments().catch(showError)
    })
  }
}
window.addEventListener("hashchange", route)
route()

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** A presence position (relative position JSON) as an index in the text, if it still resolves. */
function absolute(json: unknown, doc: Y.Doc): number | undefined {
  if (typeof json !== "object" || json === null) return undefined
  const position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc)
  return position === null ? undefined : position.index
}

function lineCol(text: string, index: number): string {
  const before = text.slice(0, index).split("\n")
  return `line ${before.length}, col ${(before.at(-1)?.length ?? 0) + 1}`
}

/** The text with a coloured caret and name tag at each peer's position (the text itself is invisible). */
function mirrorNodes(text: string, carets: ReadonlyArray<{ index: number; name: string; color: string }>): Array<Node> {
  const nodes: Array<Node> = []
  let at = 0
  for (const caret of [...carets].sort((a, b) => a.index - b.index)) {
    const index = Math.min(caret.index, text.length)
    nodes.push(document.createTextNode(text.slice(at, index)))
    const mark = document.createElement("span")
    mark.className = "caret"
    mark.style.borderColor = caret.color
    const label = document.createElement("span")
    label.className = "label"
    label.style.background = caret.color
    label.textContent = caret.name
    mark.append(label)
    nodes.push(mark)
    at = index
  }
  // A trailing newline needs a character after it to take up its line, as it does in the text area.
  nodes.push(document.createTextNode(`${text.slice(at)}\u200b`))
  return nodes
}
