/**
 * RecentOps against a model (the last `capacity` distinct opIds in the order first remembered, with their latest
 * seq), and its memory: the ring grows with what is remembered.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { RecentOps } from "../../src/Document/RecentOps.js"

describe("RecentOps", () => {
  it("remembers the last `capacity` distinct opIds with their latest seq (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.nat()), { maxLength: 120 }),
        (capacity, ops) => {
          const recent = new RecentOps(capacity)
          const model: Array<[string, number]> = []
          for (const [n, seq] of ops) {
            const opId = `op-${n}`
            recent.remember(opId, seq)
            const at = model.findIndex(([id]) => id === opId)
            if (at >= 0) model[at] = [opId, seq]
            else {
              model.push([opId, seq])
              if (model.length > capacity) model.shift()
            }
          }
          assert.strictEqual(recent.size, model.length)
          for (let n = 0; n <= 15; n++) {
            const opId = `op-${n}`
            assert.strictEqual(recent.get(opId), model.find(([id]) => id === opId)?.[1], opId)
          }
        }
      )
    )
  })

  it("forgets the oldest first, and an opId remembered again keeps its place", () => {
    const recent = new RecentOps(3)
    recent.remember("a", 1)
    recent.remember("b", 2)
    recent.remember("a", 7)
    recent.remember("c", 3)
    recent.remember("d", 4)
    assert.strictEqual(recent.get("a"), undefined)
    assert.deepStrictEqual(["b", "c", "d"].map((id) => recent.get(id)), [2, 3, 4])
  })

  it("holds only what it was given: a document with few updates does not pay for the whole ring", () => {
    const recent = new RecentOps(10_000)
    recent.remember("a", 1)
    // The ring's array, read through the instance: its length is the opIds remembered, not the capacity.
    const order = (recent as unknown as { readonly order: ReadonlyArray<string> }).order
    assert.strictEqual(order.length, 1)
    for (let i = 0; i < 20_000; i++) recent.remember(`op-${i}`, i)
    assert.strictEqual(order.length, 10_000)
    assert.strictEqual(recent.size, 10_000)
  })

  it("refuses a capacity that is not a positive integer", () => {
    assert.throws(() => new RecentOps(0), RangeError)
    assert.throws(() => new RecentOps(1.5), RangeError)
  })
})
