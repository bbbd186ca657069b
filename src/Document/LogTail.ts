/**
 * LogTail: the end of a document's log in memory, for joins (`state` splices it in as is). Owned by one document
 * actor; plain synchronous code.
 */

/**
 * Bytes per new chunk: a power of two near half the bytes kept, from 1 KiB to 64 KiB (a small tail takes little
 * memory, a large one few chunks, and few sizes are in use). An update never spans two chunks: a larger one gets a
 * chunk of its own size.
 */
const chunkBytes = (kept: number, length: number): number =>
  Math.max(length, Math.min(64 * 1024, Math.max(1024, 2 ** Math.ceil(Math.log2(Math.max(1, kept / 2))))))

interface Chunk {
  readonly bytes: Buffer
  /** Bytes written, from 0. */
  used: number
  /** Where its first kept update starts (after the ones dropped from it). */
  begin: number
}

/**
 * The end of a document's log in memory, as the `Update` JSON of `state`: the updates after `start` up to the
 * latest, as UTF-8 bytes, comma-separated within chunks, which a join sends as they are. Bounded by
 * `maxBytes` (the updates' bytes and the commas between them): past it the oldest are dropped (`start` moves up)
 * and chunks with nothing left in them are let go.
 *
 * Bytes once written are never written over: appends write past a chunk's end, and a new chunk is a new buffer,
 * so the views `after` hands out stay valid while a socket still holds them. Nothing is copied as the tail moves:
 * chunks with nothing kept are let go whole.
 */
export class LogTail {
  /** Chunks from number `firstChunk` on. */
  private chunks: Array<Chunk> = []
  private firstChunk = 0
  /** Per kept update, oldest first from index `head`: its chunk number and its bytes' start and end in it. */
  private chunkOf: Array<number> = []
  private begins: Array<number> = []
  private ends: Array<number> = []
  private head = 0
  private bytes = 0
  constructor(public start: number, private readonly maxBytes: number) {}

  /** The updates after `seq` (>= start), as views of the chunks with commas between: concatenated, their JSON. */
  after(seq: number): ReadonlyArray<Uint8Array> {
    const first = this.head + seq - this.start
    if (first >= this.ends.length) return []
    const parts: Array<Uint8Array> = []
    const from = this.chunkOf[first] as number
    for (let number = from; number < this.firstChunk + this.chunks.length; number++) {
      const chunk = this.chunks[number - this.firstChunk] as Chunk
      const at = number === from ? (this.begins[first] as number) : chunk.begin
      if (parts.length > 0) parts.push(COMMA)
      parts.push(chunk.bytes.subarray(at, chunk.used))
    }
    return parts
  }

  /** The next update. */
  append(fragment: string): void {
    const length = Buffer.byteLength(fragment)
    let chunk = this.chunks[this.chunks.length - 1]
    const separator = chunk !== undefined && chunk.used > chunk.begin ? 1 : 0
    if (chunk === undefined || chunk.used + separator + length > chunk.bytes.length) {
      chunk = { bytes: Buffer.allocUnsafe(chunkBytes(this.bytes, length)), used: 0, begin: 0 }
      this.chunks.push(chunk)
    } else if (separator === 1) {
      chunk.bytes[chunk.used++] = 0x2c
    }
    chunk.bytes.write(fragment, chunk.used, length, "utf8")
    this.chunkOf.push(this.firstChunk + this.chunks.length - 1)
    this.begins.push(chunk.used)
    chunk.used += length
    this.ends.push(chunk.used)
    this.bytes += length + (this.ends.length - this.head > 1 ? 1 : 0)
    this.trim()
  }

  /** Updates `from + 1 .. start`, read from storage: put before the kept ones (in chunks of their own). */
  prepend(from: number, fragments: ReadonlyArray<string>): void {
    const kept = {
      chunks: this.chunks,
      firstChunk: this.firstChunk,
      chunkOf: this.chunkOf.slice(this.head),
      begins: this.begins.slice(this.head),
      ends: this.ends.slice(this.head)
    }
    this.reset(from)
    for (const fragment of fragments) this.append(fragment)
    if (kept.ends.length === 0) return
    // The kept updates' chunks follow on, renumbered; the first may hold dropped updates before its `begin`.
    const shift = this.firstChunk + this.chunks.length - (kept.chunkOf[0] as number)
    for (let number = kept.chunkOf[0] as number; number < kept.firstChunk + kept.chunks.length; number++) {
      this.chunks.push(kept.chunks[number - kept.firstChunk] as Chunk)
    }
    const separator = this.ends.length > this.head ? 1 : 0
    kept.ends.forEach((end, i) => {
      this.chunkOf.push((kept.chunkOf[i] as number) + shift)
      this.begins.push(kept.begins[i] as number)
      this.ends.push(end)
      this.bytes += end - (kept.begins[i] as number) + (i > 0 || separator === 1 ? 1 : 0)
    })
    this.trim()
  }

  /** Forgets the updates up to `seq` (a snapshot covers them). */
  dropThrough(seq: number): void {
    while (this.start < seq && this.head < this.ends.length) this.dropOldest()
    if (this.start < seq) this.reset(seq)
  }

  /** Empties the tail at `seq`. */
  reset(seq: number): void {
    this.chunks = []
    this.firstChunk = 0
    this.chunkOf = []
    this.begins = []
    this.ends = []
    this.head = 0
    this.bytes = 0
    this.start = seq
  }

  private trim(): void {
    while (this.bytes > this.maxBytes && this.head < this.ends.length) this.dropOldest()
  }

  private dropOldest(): void {
    const dropped = this.head
    this.head++
    this.start++
    const left = this.ends.length - this.head
    this.bytes -= (this.ends[dropped] as number) - (this.begins[dropped] as number) + (left > 0 ? 1 : 0)
    if (left === 0) {
      // Nothing kept: the last chunk may take the next updates (they start after what it holds).
      const last = this.chunks[this.chunks.length - 1] as Chunk
      last.begin = last.used
      this.firstChunk += this.chunks.length - 1
      this.chunks = [last]
    } else {
      const next = this.chunkOf[this.head] as number
      const chunk = this.chunks[next - this.firstChunk] as Chunk
      chunk.begin = this.begins[this.head] as number
      // Chunks before the oldest kept update's are let go.
      if (next > this.firstChunk) {
        this.chunks = this.chunks.slice(next - this.firstChunk)
        this.firstChunk = next
      }
    }
    // Compact the per-update arrays now and then rather than shifting them on every drop.
    if (this.head > 1024 && this.head * 2 > this.ends.length) {
      this.chunkOf = this.chunkOf.slice(this.head)
      this.begins = this.begins.slice(this.head)
      this.ends = this.ends.slice(this.head)
      this.head = 0
    }
  }
}

/** The separator between two updates' JSON, as bytes. */
export const COMMA: Buffer = Buffer.from(",")
