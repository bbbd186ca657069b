import { assert, describe, it } from "@effect/vitest"
import { decodeClientFrame, MAX_PRESENCE_DEPTH } from "../../src/Domain/Protocol.js"

const limits = { maxUpdateBytes: 1024, maxPresenceBytes: 1_000_000 }
const codeOf = (text: string) => {
  const decoded = decodeClientFrame(text, limits)
  return decoded.type === "error" ? decoded.code : decoded.type
}
const nested = (levels: number) => {
  let state: Record<string, unknown> = { leaf: 1 }
  for (let i = 1; i < levels; i++) state = { child: state }
  return state
}

describe("decodeClientFrame", () => {
  it("refuses opIds and actorIds with lone surrogates (they could not be found again after storage)", () => {
    const update = { type: "update", baseVersion: 0, deltaB64: "AQ==" }
    assert.strictEqual(codeOf(JSON.stringify({ ...update, opId: "a\uD800", actorId: "x" })), "bad_message")
    assert.strictEqual(codeOf(JSON.stringify({ ...update, opId: "\uDC00b", actorId: "x" })), "bad_message")
    assert.strictEqual(codeOf(JSON.stringify({ ...update, opId: "ok", actorId: "\uD83D" })), "bad_message")
    assert.strictEqual(codeOf(JSON.stringify({ ...update, opId: "emoji \uD83D\uDE00", actorId: "x" })), "update")
  })

  it("refuses presence states nested deeper than the limit without serialising them", () => {
    assert.strictEqual(codeOf(JSON.stringify({ type: "presence", state: nested(MAX_PRESENCE_DEPTH) })), "presence")
    assert.strictEqual(codeOf(JSON.stringify({ type: "presence", state: nested(MAX_PRESENCE_DEPTH + 1) })), "bad_message")
    const deep = `{"type":"presence","state":${"{\"a\":".repeat(5000)}1${"}".repeat(5000)}}`
    assert.strictEqual(codeOf(deep), "bad_message")
  })

  it("answers JSON too deep for the parser with bad_message", () => {
    assert.strictEqual(codeOf("[".repeat(200_000) + "]".repeat(200_000)), "bad_message")
  })
})
