/**
 * IdleWatch: one timer for the presence idleness of every loaded document, and for unloading the documents nobody
 * holds (DocumentRegistry). Each asks to be checked at a time; one fiber sleeps until the earliest time asked for
 * and runs the checks that are due, each of which says when it wants to be checked next. (A timer fiber per
 * document held ~6 KB of heap each, a loaded document's largest single cost.) Times come from the Clock, so tests
 * drive it with TestClock.
 */
import { Cause, Duration, Effect, type Scope } from "effect"

/** Something to check over time: a document, which asks its actor to check its members that are due. */
export interface Watched {
  /** Annotations of the log line if its check throws (the document's id). */
  readonly annotations: Readonly<Record<string, unknown>>
  /** Runs the checks due at `now`; returns when to check next, or undefined to be checked no more until `watch`. */
  readonly check: (now: number) => number | undefined
}

export interface IdleWatch {
  /** Checks `watched` at `at` (or at the time it already has, if that is earlier). */
  readonly watch: (watched: Watched, at: number) => void
  /** Stops checking `watched` (a document unloaded). */
  readonly unwatch: (watched: Watched) => void
}

/** An entry of the timer heap: stale once `at` is no longer its watched's time in `due`. */
interface Entry {
  readonly at: number
  readonly watched: Watched
}

/** The watch, with its fiber in the current scope. A check that throws is logged, and that watched is not checked again. */
export const make: Effect.Effect<IdleWatch, never, Scope.Scope> = Effect.gen(function* () {
  const clock = yield* Effect.clock
  /** The time each watched is to be checked at. */
  const due = new Map<Watched, number>()
  /** A binary min-heap on `at`; an entry whose time is no longer its watched's in `due` is skipped when popped. */
  let heap: Array<Entry> = []
  /** While the fiber waits: when it wakes (Infinity: nothing is due), and how to wake it earlier. */
  let sleepingUntil = Number.POSITIVE_INFINITY
  let wake: (() => void) | undefined

  const push = (entry: Entry): void => {
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((heap[parent] as Entry).at <= entry.at) break
      heap[i] = heap[parent] as Entry
      i = parent
    }
    heap[i] = entry
  }

  const pop = (): void => {
    const last = heap.pop() as Entry
    if (heap.length === 0) return
    let i = 0
    while (true) {
      const left = 2 * i + 1
      if (left >= heap.length) break
      const right = left + 1
      const child = right < heap.length && (heap[right] as Entry).at < (heap[left] as Entry).at ? right : left
      if ((heap[child] as Entry).at >= last.at) break
      heap[i] = heap[child] as Entry
      i = child
    }
    heap[i] = last
  }

  /** Drops stale entries (each keeps its watched alive) once they outnumber the live ones. */
  const compact = (): void => {
    if (heap.length <= 2 * due.size + 16) return
    const live = heap.filter((entry) => due.get(entry.watched) === entry.at)
    heap = []
    for (const entry of live) push(entry)
  }

  const watch = (watched: Watched, at: number): void => {
    const current = due.get(watched)
    if (current !== undefined && current <= at) return
    due.set(watched, at)
    push({ at, watched })
    compact()
    if (at < sleepingUntil) wake?.()
  }

  /** The earliest time due (Infinity: none), once stale entries are dropped from the top. */
  const earliest = (): number => {
    while (heap.length > 0) {
      const entry = heap[0] as Entry
      if (due.get(entry.watched) === entry.at) return entry.at
      pop()
    }
    return Number.POSITIVE_INFINITY
  }

  /** Runs the checks due at `now`; returns the earliest time still due (Infinity: none) and what the checks threw. */
  const runDue = (now: number, failures: Array<readonly [Watched, unknown]>): number => {
    while (earliest() <= now) {
      const { watched } = heap[0] as Entry
      pop()
      due.delete(watched)
      try {
        const next = watched.check(now)
        if (next !== undefined) watch(watched, Math.max(next, now + 1))
      } catch (failure) {
        failures.push([watched, failure])
      }
    }
    return earliest()
  }

  /** Waits until `until` on the clock (for ever if Infinity), or until `watch` asks for an earlier time. */
  const waitUntil = (until: number): Effect.Effect<void> => {
    const woken = Effect.async<void>((resume) => {
      // Asked for meanwhile (the fiber may have yielded since `runDue`).
      if (earliest() < until) return resume(Effect.void)
      sleepingUntil = until
      wake = () => {
        wake = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => {
        wake = undefined
      })
    })
    const sleep = Effect.suspend(() => Effect.sleep(Duration.millis(Math.max(0, until - clock.unsafeCurrentTimeMillis()))))
    const waited = until === Number.POSITIVE_INFINITY ? woken : Effect.raceFirst(sleep, woken)
    return Effect.ensuring(waited, Effect.sync(() => {
      sleepingUntil = Number.POSITIVE_INFINITY
      wake = undefined
    }))
  }

  // A loop of functions, not a generator: a generator's variables would keep the last entry (a document, its
  // members and their sockets) alive while the fiber waits.
  const loop: Effect.Effect<never> = Effect.suspend(() => {
    const now = clock.unsafeCurrentTimeMillis()
    const failures: Array<readonly [Watched, unknown]> = []
    const wait = waitUntil(runDue(now, failures))
    if (failures.length === 0) return wait
    return Effect.zipRight(
      Effect.forEach(
        failures,
        ([watched, failure]) =>
          Effect.logError("an idle check failed (presence or unload); it is not checked again", Cause.die(failure)).pipe(
            Effect.annotateLogs(watched.annotations)
          ),
        { discard: true }
      ),
      wait
    )
  }).pipe(Effect.zipRight(Effect.suspend(() => loop)))
  yield* Effect.forkScoped(loop)

  return {
    watch,
    unwatch: (watched) => {
      due.delete(watched)
      compact()
    }
  }
})
