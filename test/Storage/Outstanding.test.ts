/**
 * Outstanding: the unanswered requests of a storage, oldest first, for one timeout timer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Outstanding } from "../../src/Storage/Outstanding.js"

interface Request {
  open: boolean
  readonly since: number
  readonly name: string
}

const request = (name: string, since: number): Request => ({ open: false, since, name })

describe("Outstanding", () => {
  it("answers each request once", () => {
    const outstanding = new Outstanding<Request>()
    const a = request("a", 0)
    outstanding.add(a)
    assert.isTrue(a.open)
    assert.isTrue(outstanding.close(a))
    assert.isFalse(a.open)
    assert.isFalse(outstanding.close(a), "a second answer is refused")
  })

  it("gives the requests whose timeout passed, oldest first, skipping answered ones, and when the next one is due", () => {
    const outstanding = new Outstanding<Request>()
    const [a, b, c, d] = [request("a", 0), request("b", 10), request("c", 20), request("d", 50)]
    for (const r of [a, b, c, d]) outstanding.add(r)
    outstanding.close(b)
    const at30 = outstanding.due(30, 10)
    assert.deepStrictEqual(at30.due.map((r) => r.name), ["a", "c"])
    assert.strictEqual(at30.nextInMillis, 30, "d is due at 60")
    // Due ones stay in until answered.
    assert.deepStrictEqual(outstanding.due(30, 10).due.map((r) => r.name), ["a", "c"])
    for (const r of at30.due) outstanding.close(r)
    assert.deepStrictEqual(outstanding.due(30, 10), { due: [], nextInMillis: 30 })
    outstanding.close(d)
    assert.deepStrictEqual(outstanding.due(1_000, 10), { due: [], nextInMillis: undefined })
    assert.strictEqual(outstanding.slots, 0, "emptied once none is left")
  })

  it("stays bounded under steady load, where it never empties, and still times out every unanswered request", () => {
    const outstanding = new Outstanding<Request>()
    const inFlight: Array<Request> = []
    // Three in flight at all times, answered in order: 10,000 requests in all.
    for (let i = 0; i < 10_000; i++) {
      const r = request(`r${i}`, i)
      outstanding.add(r)
      inFlight.push(r)
      if (inFlight.length > 3) outstanding.close(inFlight.shift() as Request)
      assert.isAtMost(outstanding.slots, 1_100, `slots after ${i + 1} requests`)
      assert.deepStrictEqual(outstanding.due(Infinity, 0).due, inFlight, `every unanswered one is found after ${i + 1}`)
      assert.strictEqual(outstanding.references, inFlight.length, `no answered one is kept after ${i + 1}`)
    }
    // One answered out of order (behind an older one) is not timed out; the others are, oldest first.
    outstanding.close(inFlight[1] as Request)
    assert.strictEqual(outstanding.references, 3, "one answered behind an unanswered one stays until that one is")
    const { due, nextInMillis } = outstanding.due(20_000, 10)
    assert.deepStrictEqual(due.map((r) => r.name), ["r9997", "r9999"])
    assert.isUndefined(nextInMillis)
  })
})
