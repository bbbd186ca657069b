/**
 * Mailbox: a document's bounded queue of commands, taken in batches by the one fiber that runs its actor.
 *
 * Effect's `Queue` would do, at a price paid on every update: each `takeBetween` on an empty queue builds a
 * deferred, a taker entry and a chain of effects, and allocates again to append the item to a `Chunk` (about a
 * tenth of all the memory the server allocated per update under the many-docs load). Here a fiber waiting for work
 * is one `Effect.async` whose callback is kept in a field, and a batch is the array the commands were pushed into.
 *
 * Semantics are those of a bounded `Queue` with back-pressure: `offer` waits while the mailbox is full, senders
 * that wait are served in order (and nothing overtakes them: `unsafeOffer` refuses while any waits), and after
 * `shutdown` offers and takes are interrupted and `unsafeOffer` refuses.
 */
import { Effect } from "effect"

/** Every take returns a new array, the taker's own (it may empty it once done: see DocumentRegistry's `run`). */
export interface Mailbox<A> {
  /** Puts an item in if there is room (and no sender waiting), without an Effect; false when it did not. */
  readonly unsafeOffer: (item: A) => boolean
  /** Puts an item in, waiting while the mailbox is full. Interrupted once the mailbox is shut down. */
  readonly offer: (item: A) => Effect.Effect<void>
  /**
   * Puts an item in a lane of its own, outside the capacity (false once shut down): for the actor's own results,
   * which must never wait or be dropped (there are at most a few per document). A take returns them first.
   */
  readonly unsafeOfferAlways: (item: A) => boolean
  /** Takes what is waiting in that lane only, waiting while there is none (the rest waits, and fills the mailbox). */
  readonly takeOwn: Effect.Effect<Array<A>>
  /** Puts items in, in order, waiting while the mailbox is full. Interrupted once the mailbox is shut down. */
  readonly offerAll: (items: Iterable<A>) => Effect.Effect<void>
  /**
   * Takes what is waiting, 1 to `maxBatch` items in arrival order, waiting while there is none. What a waiting
   * taker gets is what has arrived by the time its fiber runs again, not only the item that woke it.
   */
  readonly take: Effect.Effect<Array<A>>
  /**
   * `take` without waiting, for a taker that runs only while there is work (see `make`'s `onWork`): with nothing
   * waiting it returns no items and parks the mailbox, and the next item calls `onWork` (which starts a taker).
   */
  readonly takeOrPark: Effect.Effect<Array<A>>
  /** Stops parking: an item that comes from now on waits for a taker, and `onWork` is not called again. */
  readonly unpark: () => void
  /** Takes everything waiting now (also from waiting senders), without waiting. */
  readonly takeAll: () => Array<A>
  /** Refuses everything from now on: waiting senders and a waiting taker are interrupted. */
  readonly shutdown: () => void
  readonly isShutdown: () => boolean
  /**
   * Whether a taker waits (in `take`, not `takeOwn`), or the mailbox is parked, with nothing in it: no taker has
   * work due, so a command handled at once, without passing through the mailbox, is in order.
   */
  readonly idle: () => boolean
}

/** A sender waiting for room: its items from `next` on are still to go in. */
interface Sender<A> {
  readonly items: ReadonlyArray<A>
  next: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

/**
 * A mailbox of `capacity` items, taken at most `maxBatch` at a time. With `onWork` it starts parked (see
 * `takeOrPark`): its first item calls `onWork`, so that its taker need not exist while there is nothing to take.
 */
export const make = <A>(capacity: number, maxBatch: number, onWork?: () => void): Mailbox<A> => {
  // `items` and `own` live as long as the mailbox and are emptied in place (`splice`), never handed to a taker:
  // an array that sat empty long enough to reach V8's old generation and is then dropped with commands in it
  // keeps them alive until the next full garbage collection (docs/performance.md, thirteenth round).
  const items: Array<A> = []
  /** No taker exists, and the next item calls `onWork`. */
  let parked = onWork !== undefined
  /** The lane of `unsafeOfferAlways`. */
  const own: Array<A> = []
  /** Whether the waiting taker takes from the own lane only. */
  let takerOwnOnly = false
  let closed = false
  const senders: Array<Sender<A>> = []
  let taker: ((effect: Effect.Effect<Array<A>>) => void) | undefined

  /** Moves waiting senders' items in while there is room, and lets the senders that are done go on. */
  const admit = (): void => {
    while (senders.length > 0 && items.length < capacity) {
      const sender = senders[0] as Sender<A>
      while (sender.next < sender.items.length && items.length < capacity) items.push(sender.items[sender.next++] as A)
      if (sender.next < sender.items.length) return
      senders.shift()
      sender.resume(Effect.void)
    }
  }

  /** The own lane's items first, then up to `maxBatch` of the others. */
  const drain = (): Array<A> => {
    const batch = items.splice(0, Math.min(items.length, maxBatch))
    admit()
    if (own.length === 0) return batch
    const first = own.splice(0)
    for (const item of batch) first.push(item)
    return first
  }

  const drainOwn = (): Array<A> => own.splice(0)

  /** Evaluated when the woken taker runs again: it gets everything that arrived meanwhile. */
  const drained: Effect.Effect<Array<A>> = Effect.suspend(() => take)
  const drainedOwn: Effect.Effect<Array<A>> = Effect.suspend(() => takeOwn)

  const wake = (fromOwnLane: boolean): void => {
    if (parked) {
      parked = false
      return (onWork as () => void)()
    }
    if (taker === undefined || (takerOwnOnly && !fromOwnLane)) return
    const resume = taker
    taker = undefined
    resume(takerOwnOnly ? drainedOwn : drained)
  }

  const cancelTake = Effect.sync(() => {
    taker = undefined
  })

  const wait = (ownOnly: boolean): Effect.Effect<Array<A>> =>
    Effect.async<Array<A>>((resume) => {
      taker = resume
      takerOwnOnly = ownOnly
      return cancelTake
    })
  const waitAny = wait(false)
  const waitOwn = wait(true)

  const take: Effect.Effect<Array<A>> = Effect.suspend(() =>
    closed ? Effect.interrupt : items.length > 0 || own.length > 0 ? Effect.succeed(drain()) : waitAny
  )

  const takeOrPark: Effect.Effect<Array<A>> = Effect.suspend(() => {
    if (closed) return Effect.interrupt
    if (items.length > 0 || own.length > 0) return Effect.succeed(drain())
    parked = onWork !== undefined
    return Effect.succeed([])
  })

  const takeOwn: Effect.Effect<Array<A>> = Effect.suspend(() =>
    closed ? Effect.interrupt : own.length > 0 ? Effect.succeed(drainOwn()) : waitOwn
  )

  const unsafeOffer = (item: A): boolean => {
    if (closed || senders.length > 0 || items.length >= capacity) return false
    items.push(item)
    wake(false)
    return true
  }

  const waitForRoom = (rest: ReadonlyArray<A>): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const sender: Sender<A> = { items: rest, next: 0, resume }
      senders.push(sender)
      return Effect.sync(() => {
        const at = senders.indexOf(sender)
        if (at >= 0) senders.splice(at, 1)
      })
    })

  const offerAll = (all: Iterable<A>): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (closed) return Effect.interrupt
      const list = Array.from(all)
      let next = 0
      if (senders.length === 0) {
        while (next < list.length && items.length < capacity) items.push(list[next++] as A)
        if (next > 0) wake(false)
      }
      return next === list.length ? Effect.void : waitForRoom(list.slice(next))
    })

  return {
    unsafeOffer,
    unsafeOfferAlways: (item) => {
      if (closed) return false
      own.push(item)
      wake(true)
      return true
    },
    takeOwn,
    offer: (item) => Effect.suspend(() => (closed ? Effect.interrupt : unsafeOffer(item) ? Effect.void : waitForRoom([item]))),
    offerAll,
    take,
    takeOrPark,
    unpark: () => {
      parked = false
    },
    takeAll: () => {
      const all = own.splice(0)
      for (const item of items.splice(0)) all.push(item)
      for (const sender of senders.splice(0, senders.length)) {
        for (let i = sender.next; i < sender.items.length; i++) all.push(sender.items[i] as A)
        sender.resume(Effect.void)
      }
      return all
    },
    shutdown: () => {
      if (closed) return
      closed = true
      parked = false
      for (const sender of senders.splice(0, senders.length)) sender.resume(Effect.interrupt)
      const waiting = taker
      taker = undefined
      waiting?.(Effect.interrupt)
    },
    isShutdown: () => closed,
    idle: () =>
      (parked || (taker !== undefined && !takerOwnOnly)) && items.length === 0 && own.length === 0 && senders.length === 0
  }
}
