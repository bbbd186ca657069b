/**
 * Outstanding: the requests a storage has sent and not answered yet, oldest first, so that one timer can time them
 * all out. Plain synchronous code, owned by one storage (SqliteLog).
 *
 * Why not a `Set`: V8 moves a long-lived Set's entries to a new table, allocated in the old generation, every few
 * additions and deletions, and each table left behind still points at the entries it held. A dead table in the old
 * generation keeps them alive through every young collection until the next full one, so every request (with the
 * updates, frames and replies it holds) lived until then: measured, this was the largest share of what the server
 * promoted under the fanout load (docs/performance.md, thirteenth round). Here answered requests' slots are
 * cleared from the front (one answered behind an unanswered one stays until that one is: SqliteLog answers in
 * order but for closing), and the array is compacted in place, never replaced.
 */

/** What is kept: whether it is still unanswered (set by `Outstanding`), and since when it waits. */
export interface Entry {
  open: boolean
  readonly since: number
}

/** Clearing slots from the front, the array is compacted once at least this many are cleared and half are. */
const COMPACT_AFTER = 1024

export class Outstanding<A extends Entry> {
  /** Oldest first from `oldest`; answered ones are cleared (or, behind an open one, left closed until it is). */
  private readonly entries: Array<A | undefined> = []
  private oldest = 0

  add(entry: A): void {
    entry.open = true
    this.entries.push(entry)
  }

  /** Takes `entry` out: false if it was taken out before (it is answered once). */
  close(entry: A): boolean {
    if (!entry.open) return false
    entry.open = false
    const { entries } = this
    while (this.oldest < entries.length && entries[this.oldest]?.open !== true) entries[this.oldest++] = undefined
    if (this.oldest === entries.length) {
      entries.length = 0
      this.oldest = 0
    } else if (this.oldest >= COMPACT_AFTER && this.oldest * 2 >= entries.length) {
      // Under steady load the array never empties: what is cleared at its front is dropped now and then.
      entries.copyWithin(0, this.oldest)
      entries.length -= this.oldest
      this.oldest = 0
    }
    return true
  }

  /**
   * The unanswered entries that have waited `timeoutMillis` or more at `now`, oldest first (they stay in until
   * closed), and how long until the next one has: undefined when none is left waiting.
   */
  due(now: number, timeoutMillis: number): { readonly due: ReadonlyArray<A>; readonly nextInMillis: number | undefined } {
    const due: Array<A> = []
    for (let i = this.oldest; i < this.entries.length; i++) {
      const entry = this.entries[i]
      if (entry === undefined || !entry.open) continue
      const left = entry.since + timeoutMillis - now
      if (left > 0) return { due, nextInMillis: left }
      due.push(entry)
    }
    return { due, nextInMillis: undefined }
  }

  /** Slots in use, cleared ones included (for tests: it stays bounded under steady load). */
  get slots(): number {
    return this.entries.length
  }

  /** Requests it still points at (for tests: no answered one, unless behind an unanswered one). */
  get references(): number {
    return this.entries.reduce((n, entry) => (entry === undefined ? n : n + 1), 0)
  }
}
