/**
 * LogTail against a model (an array of the fragments it should hold): after any sequence of appends, prepends of
 * older updates, snapshot drops and resets, `after(seq)` is exactly the model's fragments after `seq` joined with
 * commas, `start` matches, and the kept bytes stay within the bound.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { LogTail } from "../../src/Document/LogTail.js"

type Op =
  | { readonly _tag: "append"; readonly text: string }
  | { readonly _tag: "prepend"; readonly count: number }
  | { readonly _tag: "dropThrough"; readonly back: number }
  | { readonly _tag: "reset" }

/** An `Update` JSON of a seq (non-ASCII text, so bytes and UTF-16 units differ). */
const fragment = (seq: number, text: string) => JSON.stringify({ seq, opId: `op-${seq}`, actorId: text, deltaB64: "AA==" })

const bytesOf = (fragments: ReadonlyArray<string>) => Buffer.byteLength(fragments.join(","))

describe("LogTail", () => {
  it("after(seq) is the fragments after seq, comma-separated, whatever happened before (property)", () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }).map((text) => ({ _tag: "append" as const, text })) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }).map((count) => ({ _tag: "prepend" as const, count })) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }).map((back) => ({ _tag: "dropThrough" as const, back })) },
      { weight: 1, arbitrary: fc.constant({ _tag: "reset" as const }) }
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 0, max: 12_000 }), (ops, maxBytes) => {
        const tail = new LogTail(0, maxBytes)
        // The whole log by seq (1-based), and the model of what the tail keeps: seqs start+1 .. latest.
        const log: Array<string> = []
        let start = 0
        const kept = () => log.slice(start)
        const trim = () => {
          while (bytesOf(kept()) > maxBytes && start < log.length) start++
        }
        // Views taken along the way must keep their bytes.
        const views: Array<{ readonly view: ReadonlyArray<Uint8Array>; readonly expected: string }> = []
        for (const step of ops) {
          switch (step._tag) {
            case "append": {
              const text = fragment(log.length + 1, step.text)
              log.push(text)
              tail.append(text)
              trim()
              break
            }
            case "prepend": {
              // What a join reads from storage when the tail does not go back far enough.
              const from = Math.max(0, start - step.count)
              if (from === start) break
              tail.prepend(from, log.slice(from, start))
              start = from
              trim()
              break
            }
            case "dropThrough": {
              const seq = Math.max(0, log.length - step.back)
              tail.dropThrough(seq)
              start = Math.max(start, seq)
              break
            }
            case "reset": {
              tail.reset(log.length)
              start = log.length
              break
            }
          }
          assert.strictEqual(tail.start, start)
          for (let seq = start; seq <= log.length; seq++) {
            const expected = log.slice(seq).join(",")
            assert.strictEqual(Buffer.concat(tail.after(seq)).toString("utf8"), expected)
          }
          views.push({ view: tail.after(start), expected: kept().join(",") })
        }
        for (const { view, expected } of views) assert.strictEqual(Buffer.concat(view).toString("utf8"), expected)
      }),
      { numRuns: 300 }
    )
  })

  it("keeps the newest updates within maxBytes, counted in UTF-8 bytes with the commas", () => {
    const a = fragment(1, "é".repeat(20)) // 40 bytes for 20 UTF-16 units
    const b = fragment(2, "x")
    const maxBytes = bytesOf([a, b]) - 1
    // Counted in UTF-16 units, as before, both would fit.
    assert.isAtMost(`${a},${b}`.length, maxBytes)
    const tail = new LogTail(0, maxBytes)
    tail.append(a)
    assert.strictEqual(tail.start, 0)
    tail.append(b)
    assert.strictEqual(tail.start, 1)
    assert.strictEqual(Buffer.concat(tail.after(1)).toString(), b)
  })

  it("a join's views keep their bytes while the tail grows into new chunks", () => {
    const tail = new LogTail(0, 1 << 20)
    tail.append(fragment(1, "first"))
    const view = tail.after(0)
    for (let seq = 2; seq < 500; seq++) tail.append(fragment(seq, "more"))
    assert.strictEqual(Buffer.concat(view).toString(), fragment(1, "first"))
  })
})
