/**
 * LogTail: the end of a document's log in memory, for joins (`state` splices it in as is). Owned by one document
 * actor; plain synchronous code.
 */

/**
 * The end of a document's log in memory, as the `Update` JSON of `state`: the updates after `start` up to the
 * latest, kept as UTF-8 bytes separated by commas in one buffer, which a join sends as it is. Bounded by
 * `maxBytes`: past it the oldest are dropped (`start` moves up).
 *
 * Offsets are virtual (they never move); `origin` is the virtual offset of `buffer[0]`. Bytes once written are
 * never written over, so views handed out by `after` stay valid: appends write past the end, and growing,
 * compacting or prepending copies into a new buffer.
 */
export class LogTail {
  private buffer: Buffer = EMPTY
  private origin = 0
  /** Virtual offsets: where the oldest kept update starts, and where the bytes end. */
  private from = 0
  private end = 0
  /** The virtual end offset of each kept update, oldest first, from index `head`. */
  private ends: Array<number> = []
  private head = 0
  constructor(public start: number, private readonly maxBytes: number) {}

  /** The updates after `seq` (>= start), comma-separated: a view of the bytes, which later changes never write over. */
  after(seq: number): Uint8Array {
    const skip = seq - this.start
    if (skip >= this.ends.length - this.head) return EMPTY
    const at = skip === 0 ? this.from : (this.ends[this.head + skip - 1] as number) + 1
    return this.buffer.subarray(at - this.origin, this.end - this.origin)
  }

  /** The next update. */
  append(fragment: string): void {
    const length = Buffer.byteLength(fragment)
    const separator = this.end > this.from ? 1 : 0
    if (this.end + separator + length - this.origin > this.buffer.length) this.grow(separator + length)
    if (separator === 1) this.buffer[this.end++ - this.origin] = 0x2c
    this.buffer.write(fragment, this.end - this.origin, length, "utf8")
    this.end += length
    this.ends.push(this.end)
    this.trim()
  }

  /** Updates `from + 1 .. start`, read from storage. */
  prepend(from: number, fragments: ReadonlyArray<string>): void {
    const kept = this.buffer.subarray(this.from - this.origin, this.end - this.origin)
    const keptEnds = this.ends.slice(this.head).map((end) => end - this.from)
    this.reset(from)
    for (const fragment of fragments) this.append(fragment)
    if (kept.length === 0) return
    // The kept bytes follow on: one copy, their offsets shifted.
    const separator = this.end > this.from ? 1 : 0
    const shift = this.end + separator
    this.grow(separator + kept.length)
    if (separator === 1) this.buffer[this.end++ - this.origin] = 0x2c
    this.buffer.set(kept, this.end - this.origin)
    this.end += kept.length
    for (const end of keptEnds) this.ends.push(end + shift)
    this.trim()
  }

  /** Forgets the updates up to `seq` (a snapshot covers them). */
  dropThrough(seq: number): void {
    while (this.start < seq && this.head < this.ends.length) this.dropOldest()
    if (this.start < seq) this.reset(seq)
  }

  /** Empties the tail at `seq`. */
  reset(seq: number): void {
    this.buffer = EMPTY
    this.origin = 0
    this.from = 0
    this.end = 0
    this.ends = []
    this.head = 0
    this.start = seq
  }

  private get bytes(): number {
    return this.end - this.from
  }

  /** A new buffer with room for `extra` more bytes after the kept ones (never in place: views may be out). */
  private grow(extra: number): void {
    const kept = this.bytes
    const next = Buffer.allocUnsafe(Math.max(4096, Math.ceil((kept + extra) * 1.5)))
    this.buffer.copy(next, 0, this.from - this.origin, this.end - this.origin)
    this.buffer = next
    this.origin = this.from
  }

  private trim(): void {
    while (this.bytes > this.maxBytes && this.head < this.ends.length) this.dropOldest()
  }

  private dropOldest(): void {
    const end = this.ends[this.head] as number
    this.head++
    this.start++
    this.from = this.head < this.ends.length ? end + 1 : this.end
    // Compact the offsets now and then rather than shifting the array on every drop; the bytes are compacted when
    // the buffer next grows.
    if (this.head > 1024 && this.head * 2 > this.ends.length) {
      this.ends = this.ends.slice(this.head)
      this.head = 0
    }
  }
}

const EMPTY: Buffer = Buffer.alloc(0)
