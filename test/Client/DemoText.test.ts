/**
 * The demo page's textarea <-> Y.Text helpers (demo/text.ts): splices and caret transforms, checked against Yjs.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Y from "yjs"
import { type DeltaOp, diff, transformPosition } from "../../demo/text.js"

describe("demo text helpers", () => {
  it("diff finds the one splice between two strings", () => {
    expect(diff("abc", "abc")).toBeUndefined()
    expect(diff("", "hello")).toEqual({ index: 0, remove: 0, insert: "hello" })
    expect(diff("hello", "help")).toEqual({ index: 3, remove: 2, insert: "p" })
    expect(diff("aaa", "aaaa")).toEqual({ index: 3, remove: 0, insert: "a" })
    expect(diff("abcdef", "abXYef")).toEqual({ index: 2, remove: 2, insert: "XY" })
    expect(diff("abc", "")).toEqual({ index: 0, remove: 3, insert: "" })
  })

  it("applying the splice to a Y.Text gives the new string", () => {
    const pairs = [["", "x"], ["hello world", "hello brave world"], ["one two", "one"], ["abab", "ab"], ["x\ny", "x\n\ny"]]
    for (const [before = "", after = ""] of pairs) {
      const doc = new Y.Doc()
      const text = doc.getText("t")
      text.insert(0, before)
      const splice = diff(before, after)
      if (splice !== undefined) {
        text.delete(splice.index, splice.remove)
        text.insert(splice.index, splice.insert)
      }
      expect(text.toString()).toBe(after)
    }
  })

  it("transformPosition moves a caret with the text around it", () => {
    const retain = (n: number): DeltaOp => ({ retain: n })
    expect(transformPosition(5, [{ insert: "ab" }])).toBe(7) // insert before
    expect(transformPosition(5, [retain(5), { insert: "ab" }])).toBe(5) // insert at the caret stays after it
    expect(transformPosition(5, [retain(6), { insert: "ab" }])).toBe(5) // insert after
    expect(transformPosition(5, [retain(1), { delete: 2 }])).toBe(3) // delete before
    expect(transformPosition(5, [retain(3), { delete: 4 }])).toBe(3) // caret inside the deletion
    expect(transformPosition(5, [retain(5), { delete: 4 }])).toBe(5) // delete after
    expect(transformPosition(5, [{ insert: {} }])).toBe(6) // an embed counts as one
  })

  it("agrees with Yjs's own event deltas", () => {
    const doc = new Y.Doc()
    const text = doc.getText("t")
    text.insert(0, "hello world")
    let delta: ReadonlyArray<DeltaOp> = []
    text.observe((event) => (delta = event.delta as ReadonlyArray<DeltaOp>))
    doc.transact(() => {
      text.insert(0, ">> ")
      text.delete(8, 6) // " world", after the prefix
    })
    expect(text.toString()).toBe(">> hello")
    expect(transformPosition(5, delta)).toBe(8) // inside "hello": shifted by the prefix
    expect(transformPosition(11, delta)).toBe(8) // at the end of the deleted word: to the deletion's start
  })
})
