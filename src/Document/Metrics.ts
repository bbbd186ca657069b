/**
 * The metrics docsync keeps (Effect `Metric`s, served in Prometheus text format at `GET /metrics`).
 * Updated synchronously (`unsafe*`) on the hot path: a frame or an ack must not pay for an Effect.
 */
import { Metric, MetricBoundaries, MetricLabel } from "effect"

/** Sockets joined to a document now. */
export const connections = Metric.gauge("docsync_connections", { description: "WebSocket connections joined to a document" })

/** Documents loaded in memory (one actor each). */
export const documentsLoaded = Metric.gauge("docsync_documents_loaded", {
  description: "Documents loaded in memory, one actor each"
})

/** Updates by outcome: stored, duplicate, invalid_base_version, not_found, failed. */
export const updates = Metric.counter("docsync_updates_total", {
  description: "Updates handled by the document actors, by outcome"
})

/** From the update's arrival at the server to its ack (or other answer). */
export const ackLatency = Metric.histogram(
  "docsync_ack_latency_seconds",
  MetricBoundaries.exponential({ start: 0.000_25, factor: 2, count: 16 }),
  "Time from an update's arrival to its answer"
)

/** Updates a document stores with one append (group commit; on SQLite several documents share a transaction). */
export const batchSize = Metric.histogram(
  "docsync_storage_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 12 }),
  "Updates a document stored with one append (group commit)"
)

/** Time of one `append`, as the document sees it (waiting for its transaction included). */
export const commitLatency = Metric.histogram(
  "docsync_storage_commit_seconds",
  MetricBoundaries.exponential({ start: 0.000_1, factor: 2, count: 16 }),
  "Duration of one append of updates, as the document sees it"
)

/** Connections closed with 4408 because their outbound buffer overflowed. */
export const slowConsumerCloses = Metric.counter("docsync_slow_consumer_closes_total", {
  description: "Connections closed with 4408 (slow consumer)"
})

/** Error frames sent to clients, by code. */
export const errors = Metric.counter("docsync_errors_total", { description: "Error frames sent, by code" })

/** Labels of a metric update, made once with `tags` (Effect caches a metric's hook by this array's identity). */
export type Tags = ReadonlyArray<MetricLabel.MetricLabel>

/** The labels for a set of tags, the same array for the same tags. */
export const tags = (record: Record<string, string>): Tags => {
  const entries = Object.entries(record)
  if (entries.length === 0) return noTags
  const key = JSON.stringify(entries)
  let cached = tagCache.get(key)
  if (cached === undefined) {
    cached = entries.map(([name, value]) => MetricLabel.make(name, value))
    tagCache.set(key, cached)
  }
  return cached
}

const tagCache = new Map<string, Tags>()
const noTags: Tags = []

/** Adds `by` to a gauge or counter, with optional tags, without an Effect. */
export const add = <Type, Out>(metric: Metric.Metric<Type, number, Out>, by: number, labels: Tags = noTags): void =>
  metric.unsafeModify(by, labels)

/** Records a value in a histogram, without an Effect. */
export const record = <Type, Out>(metric: Metric.Metric<Type, number, Out>, value: number, labels: Tags = noTags): void =>
  metric.unsafeUpdate(value, labels)
