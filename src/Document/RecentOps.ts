/**
 * RecentOps: the opIds a document actor stored most recently, with their seqs, so that a resent update is answered
 * from memory. Owned by one document actor; plain synchronous code.
 */

/**
 * The last `capacity` opIds remembered, each with its seq; remembering one more forgets the oldest. An opId
 * remembered again keeps its place. Older opIds are still found in storage, which dedupes too.
 *
 * The ring grows as opIds arrive: a loaded document that receives few updates holds a few entries, not an array
 * of `capacity` slots (80 KB at 10,000, which made every loaded document cost that much).
 */
export class RecentOps {
  private readonly seqs = new Map<string, number>()
  /** opIds in the order remembered, as a ring once full: evicting from a Map's front gets slower with every delete. */
  private readonly order: Array<string> = []
  /** Once full: the index in `order` of the oldest opId, the next one forgotten. */
  private next = 0

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`)
  }

  /** The seq an opId was stored at, if it is among the last `capacity` remembered. */
  get(opId: string): number | undefined {
    return this.seqs.get(opId)
  }

  remember(opId: string, seq: number): void {
    if (this.seqs.has(opId)) {
      this.seqs.set(opId, seq)
      return
    }
    if (this.order.length < this.capacity) {
      this.order.push(opId)
    } else {
      this.seqs.delete(this.order[this.next] as string)
      this.order[this.next] = opId
      this.next = (this.next + 1) % this.capacity
    }
    this.seqs.set(opId, seq)
  }

  /** How many opIds are remembered (at most `capacity`). */
  get size(): number {
    return this.seqs.size
  }
}
