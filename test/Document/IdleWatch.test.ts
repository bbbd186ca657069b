/**
 * IdleWatch: one timer for every loaded document's presence idleness, driven by TestClock (no real time passes).
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import * as IdleWatch from "../../src/Document/IdleWatch.js"
import { collectGarbage } from "./support.js"

/** Lets the watch's fiber run until it waits again. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/** A watched that records the times it is checked at and answers each check with `next(now)`. */
const recording = (next: (now: number) => number | undefined = () => undefined) => {
  const checks: Array<number> = []
  const watched: IdleWatch.Watched = {
    annotations: {},
    check: (now) => {
      checks.push(now)
      return next(now)
    }
  }
  return { watched, checks }
}

/** Moves the clock to `at` (from wherever it is) and lets the fiber run. */
const advanceTo = (at: number) =>
  Effect.gen(function* () {
    const now = yield* TestClock.currentTimeMillis
    yield* TestClock.adjust(Duration.millis(at - now))
    yield* settle
  })

describe("IdleWatch", () => {
  it.scoped("checks each watched at its own time, and again when its check asks", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      const a = recording((now) => (now < 30_000 ? now + 10_000 : undefined))
      const b = recording()
      watch.watch(a.watched, 10_000)
      watch.watch(b.watched, 15_000)
      yield* settle
      yield* advanceTo(9_999)
      assert.deepStrictEqual(a.checks, [], "not before its time")
      yield* advanceTo(10_000)
      assert.deepStrictEqual(a.checks, [10_000])
      assert.deepStrictEqual(b.checks, [])
      yield* advanceTo(15_000)
      assert.deepStrictEqual(b.checks, [15_000])
      yield* advanceTo(60_000)
      assert.deepStrictEqual(a.checks, [10_000, 20_000, 30_000], "rescheduled by its check until it returned undefined")
      assert.deepStrictEqual(b.checks, [15_000], "undefined: not checked again")
      // Watched again after it stopped.
      watch.watch(b.watched, 70_000)
      yield* advanceTo(70_000)
      assert.deepStrictEqual(b.checks, [15_000, 70_000])
    }))

  it.scoped("wakes for a time earlier than the one it sleeps until, and from waiting with nothing to check", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      const first = recording()
      yield* settle
      // Nothing is scheduled: the fiber waits for a watch.
      watch.watch(first.watched, 5_000)
      const late = recording()
      watch.watch(late.watched, 50_000)
      yield* settle
      const early = recording()
      // The fiber sleeps until 5,000; this asks for 2,000.
      watch.watch(early.watched, 2_000)
      yield* advanceTo(2_000)
      assert.deepStrictEqual(early.checks, [2_000])
      assert.deepStrictEqual(first.checks, [])
      yield* advanceTo(5_000)
      assert.deepStrictEqual(first.checks, [5_000])
      // A later time for a watched already due earlier keeps the earlier one.
      watch.watch(late.watched, 90_000)
      yield* advanceTo(50_000)
      assert.deepStrictEqual(late.checks, [50_000])
    }))

  it.scoped("a watch that arrives after the checks ran but before the fiber waits still wakes it", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      const later = recording()
      // Its check asks for 10,000 and, in a microtask, watches `soon` for 1,500: the microtask runs after the checks
      // but before the fiber's race for that wait has started, while there is no wake-up to call yet. (That order
      // is Effect's: forked fibers start from its scheduler, after the microtasks queued before them. Were they to
      // start at once, the window would close and this test would pass without the re-check it is about.)
      const soon = recording()
      const first = recording((now) => {
        queueMicrotask(() => watch.watch(soon.watched, 1_500))
        return now === 1_000 ? 10_000 : undefined
      })
      watch.watch(first.watched, 1_000)
      watch.watch(later.watched, 10_000)
      yield* advanceTo(1_000)
      assert.deepStrictEqual(first.checks, [1_000])
      yield* advanceTo(1_500)
      assert.deepStrictEqual(soon.checks, [1_500], "checked at its own time, not when the fiber next woke (10,000)")
      yield* advanceTo(10_000)
      assert.deepStrictEqual(later.checks, [10_000])
    }))

  it.scoped("an unwatched is not checked again, and the watch keeps at most a bounded few of them alive", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      // Checked every second: the stale entries of the others stay behind it in the timer's heap.
      const kept = recording((now) => now + 1_000)
      watch.watch(kept.watched, 1_000)
      // Made in a function of its own, so that only the watch could still hold them.
      const droppedChecks: Array<Array<number>> = []
      const gone = (() => {
        const refs: Array<WeakRef<IdleWatch.Watched>> = []
        for (let i = 0; i < 100; i++) {
          const dropped = recording()
          watch.watch(dropped.watched, 100_000 + i)
          refs.push(new WeakRef(dropped.watched))
          droppedChecks.push(dropped.checks)
          watch.unwatch(dropped.watched)
        }
        return refs
      })()
      yield* advanceTo(2_000)
      assert.deepStrictEqual(kept.checks, [1_000, 2_000])
      // A WeakRef's target is kept until the current job ends.
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      collectGarbage()
      // Stale entries are dropped once they outnumber the live ones (2 × live + 16): a bounded few may remain.
      assert.isAtMost(gone.filter((ref) => ref.deref() !== undefined).length, 18)
      yield* advanceTo(200_000)
      assert.deepStrictEqual(droppedChecks.flat(), [], "never checked")
    }))

  it.scoped("a check that asks for a time already past is checked again a millisecond later, not at once", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      const eager = recording((now) => (now < 1_003 ? now - 5 : undefined))
      watch.watch(eager.watched, 1_000)
      yield* advanceTo(1_000)
      assert.deepStrictEqual(eager.checks, [1_000])
      yield* advanceTo(1_010)
      assert.deepStrictEqual(eager.checks, [1_000, 1_001, 1_002, 1_003])
    }))

  it.scoped("a check that throws stops only that watched; the others are still checked", () =>
    Effect.gen(function* () {
      const watch = yield* IdleWatch.make
      let thrown = 0
      const broken: IdleWatch.Watched = {
        annotations: { documentId: "broken" },
        check: () => {
          thrown++
          throw new Error("broken check")
        }
      }
      const fine = recording((now) => now + 1_000)
      watch.watch(broken, 1_000)
      watch.watch(fine.watched, 1_000)
      yield* advanceTo(3_000)
      assert.strictEqual(thrown, 1)
      assert.deepStrictEqual(fine.checks, [1_000, 2_000, 3_000])
    }))
})
