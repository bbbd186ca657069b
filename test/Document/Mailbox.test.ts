/**
 * Mailbox: a bounded queue with back-pressure, taken in batches by one fiber.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as Mailbox from "../../src/Document/Mailbox.js"

/** Lets forked fibers run until they suspend. */
const settle = Effect.repeatN(Effect.yieldNow(), 10)

describe("Mailbox", () => {
  it.effect("idle only while a taker waits for any item: not before, not once woken, not for the own lane only", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(1, 10)
      assert.isFalse(mailbox.idle(), "no taker")
      const taker = yield* Effect.fork(mailbox.take)
      yield* settle
      assert.isTrue(mailbox.idle())
      assert.isTrue(mailbox.unsafeOffer(1))
      assert.isFalse(mailbox.idle(), "woken, not run yet")
      assert.deepStrictEqual(yield* Fiber.join(taker), [1])
      // A taker of the own lane only: the rest would wait behind it.
      const own = yield* Effect.fork(mailbox.takeOwn)
      yield* settle
      assert.isFalse(mailbox.idle(), "its taker takes the own lane only")
      assert.isTrue(mailbox.unsafeOfferAlways(2))
      assert.deepStrictEqual(yield* Fiber.join(own), [2])
      const again = yield* Effect.fork(mailbox.take)
      yield* settle
      assert.isTrue(mailbox.idle())
      mailbox.shutdown()
      assert.isFalse(mailbox.idle(), "shut down")
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(again)))
    }))

  it.effect("a batch is everything waiting, in arrival order, at most maxBatch", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(10, 3)
      for (const n of [1, 2, 3, 4, 5]) assert.isTrue(mailbox.unsafeOffer(n))
      assert.deepStrictEqual(yield* mailbox.take, [1, 2, 3])
      assert.deepStrictEqual(yield* mailbox.take, [4, 5])
    }))

  it.effect("a waiting taker gets what arrived by the time it runs, not only the item that woke it", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(10, 10)
      const taker = yield* Effect.fork(mailbox.take)
      yield* settle
      // Both in the same turn: the first wakes the taker, which has not run yet when the second arrives.
      assert.isTrue(mailbox.unsafeOffer(1))
      assert.isTrue(mailbox.unsafeOffer(2))
      assert.deepStrictEqual(yield* Fiber.join(taker), [1, 2])
    }))

  it.effect("full: unsafeOffer refuses, offer waits, and waiting senders go in in order as room appears", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<string>(2, 2)
      assert.isTrue(mailbox.unsafeOffer("a"))
      assert.isTrue(mailbox.unsafeOffer("b"))
      assert.isFalse(mailbox.unsafeOffer("refused"))
      const first = yield* Effect.fork(mailbox.offerAll(["c", "d", "e"]))
      yield* settle
      const second = yield* Effect.fork(mailbox.offer("f"))
      yield* settle
      assert.isNull(first.unsafePoll())
      // The room that appeared went to the waiting sender, before anyone who comes later.
      assert.deepStrictEqual(yield* mailbox.take, ["a", "b"])
      assert.isFalse(mailbox.unsafeOffer("overtaker"))
      assert.deepStrictEqual(yield* mailbox.take, ["c", "d"])
      assert.deepStrictEqual(yield* mailbox.take, ["e", "f"])
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.isTrue(mailbox.unsafeOffer("g"))
      assert.deepStrictEqual(yield* mailbox.take, ["g"])
    }))

  it.effect("an interrupted sender's items are withdrawn; the senders behind it go on", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<string>(1, 5)
      assert.isTrue(mailbox.unsafeOffer("a"))
      const withdrawn = yield* Effect.fork(mailbox.offer("withdrawn"))
      yield* settle
      const kept = yield* Effect.fork(mailbox.offer("kept"))
      yield* settle
      yield* Fiber.interrupt(withdrawn)
      assert.deepStrictEqual(yield* mailbox.take, ["a"])
      assert.deepStrictEqual(yield* mailbox.take, ["kept"])
      yield* Fiber.join(kept)
    }))

  it.effect("takeAll takes waiting senders' items too, and lets the senders go on", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(2, 2)
      yield* mailbox.offerAll([1, 2])
      const sender = yield* Effect.fork(mailbox.offerAll([3, 4, 5]))
      yield* settle
      assert.deepStrictEqual(mailbox.takeAll(), [1, 2, 3, 4, 5])
      yield* Fiber.join(sender)
      assert.deepStrictEqual(mailbox.takeAll(), [])
    }))

  it.effect("shutdown interrupts a waiting taker and waiting senders; later offers are refused or interrupted", () =>
    Effect.gen(function* () {
      const empty = Mailbox.make<number>(1, 1)
      const taker = yield* Effect.fork(empty.take)
      yield* settle
      empty.shutdown()
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(taker)))

      const full = Mailbox.make<number>(1, 1)
      assert.isTrue(full.unsafeOffer(1))
      const sender = yield* Effect.fork(full.offer(2))
      yield* settle
      full.shutdown()
      assert.isTrue(full.isShutdown())
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(sender)))
      assert.isFalse(full.unsafeOffer(3))
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(full.offer(3))))
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(full.offerAll([3]))))
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(full.take)))
    }))

  it.effect("an interrupted taker does not swallow the next item", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(4, 4)
      const taker = yield* Effect.fork(mailbox.take)
      yield* settle
      yield* Fiber.interrupt(taker)
      assert.isTrue(mailbox.unsafeOffer(1))
      assert.deepStrictEqual(yield* mailbox.take, [1])
    }))
  it.effect("the own lane: outside the capacity, taken first; takeOwn waits for it alone while the rest fills up", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<string>(2, 2)
      assert.isTrue(mailbox.unsafeOffer("a"))
      assert.isTrue(mailbox.unsafeOffer("b"))
      assert.isTrue(mailbox.unsafeOfferAlways("result-1"), "accepted on a full mailbox")
      assert.deepStrictEqual(yield* mailbox.take, ["result-1", "a", "b"])
      const own = yield* Effect.fork(mailbox.takeOwn)
      yield* settle
      assert.isTrue(mailbox.unsafeOffer("c"))
      assert.isTrue(mailbox.unsafeOffer("d"))
      const waiting = yield* Effect.fork(mailbox.offer("e"))
      yield* settle
      assert.strictEqual(own.unsafePoll(), null, "other commands do not wake it")
      assert.strictEqual(waiting.unsafePoll(), null, "the sender waits: the mailbox is full")
      assert.isTrue(mailbox.unsafeOfferAlways("result-2"))
      assert.deepStrictEqual(yield* Fiber.join(own), ["result-2"])
      assert.deepStrictEqual(yield* mailbox.take, ["c", "d"])
      yield* Fiber.join(waiting)
      assert.isTrue(mailbox.unsafeOfferAlways("result-3"))
      assert.deepStrictEqual(mailbox.takeAll(), ["result-3", "e"])
      mailbox.shutdown()
      assert.isFalse(mailbox.unsafeOfferAlways("late"))
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(mailbox.takeOwn)))
    }))

  it.effect("parked (no taker): the first item after a park calls onWork once; takeOrPark takes or parks again", () =>
    Effect.gen(function* () {
      let started = 0
      const mailbox = Mailbox.make<string>(2, 10, () => started++)
      assert.isTrue(mailbox.idle(), "made parked: nothing to take and no taker, so a command may be handled at once")
      assert.isTrue(mailbox.unsafeOffer("a"))
      assert.strictEqual(started, 1)
      assert.isFalse(mailbox.idle(), "a taker is starting")
      assert.isTrue(mailbox.unsafeOffer("b"))
      assert.isTrue(mailbox.unsafeOfferAlways("result"))
      assert.strictEqual(started, 1, "started once, until it parks again")
      assert.deepStrictEqual(yield* mailbox.takeOrPark, ["result", "a", "b"])
      assert.isFalse(mailbox.idle(), "the taker runs until it finds nothing")
      assert.deepStrictEqual(yield* mailbox.takeOrPark, [])
      assert.isTrue(mailbox.idle())
      assert.isTrue(mailbox.unsafeOfferAlways("result-2"), "the own lane wakes it too")
      assert.strictEqual(started, 2)
      assert.deepStrictEqual(yield* mailbox.takeOrPark, ["result-2"])
      assert.deepStrictEqual(yield* mailbox.takeOrPark, [])
      // Unparked (the document is unloading): items wait for whoever takes them, and nothing is started.
      mailbox.unpark()
      assert.isFalse(mailbox.idle())
      assert.isTrue(mailbox.unsafeOffer("c"))
      assert.strictEqual(started, 2)
      assert.deepStrictEqual(mailbox.takeAll(), ["c"])
      mailbox.shutdown()
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(mailbox.takeOrPark)))
    }))

  it.effect("unparked after a park, a taker waiting in takeOwn is resumed by its lane (the unload's last wait)", () =>
    Effect.gen(function* () {
      let started = 0
      const mailbox = Mailbox.make<string>(2, 10, () => started++)
      assert.deepStrictEqual(yield* mailbox.takeOrPark, [], "parked")
      mailbox.unpark()
      const own = yield* Effect.fork(mailbox.takeOwn)
      yield* settle
      assert.isTrue(mailbox.unsafeOfferAlways("outcome"))
      assert.deepStrictEqual(yield* Fiber.join(own), ["outcome"])
      assert.strictEqual(started, 0)
    }))
})
