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

/** Updates stored per transaction (group commit). */
export const batchSize = Metric.histogram(
  "docsync_storage_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 12 }),
  "Updates stored in one transaction"
)

/** Time of one `append` transaction. */
export const commitLatency = Metric.histogram(
  "docsync_storage_commit_seconds",
  MetricBoundaries.exponential({ start: 0.000_1, factor: 2, count: 16 }),
  "Duration of one storage transaction of updates"
)

/** Connections closed with 4408 because their outbound buffer overflowed. */
export const slowConsumerCloses = Metric.counter("docsync_slow_consumer_closes_total", {
  description: "Connections closed with 4408 (slow consumer)"
})

/** Error frames sent to clients, by code. */
export const errors = Metric.counter("docsync_errors_total", { description: "Error frames sent, by code" })

/** Adds `by` to a gauge or counter, with optional tags, without an Effect. */
export const add = <Type, Out>(metric: Metric.Metric<Type, number, Out>, by: number, tags: Record<string, string> = {}): void =>
  metric.unsafeModify(by, labels(tags))

/** Records a value in a histogram, without an Effect. */
export const record = <Type, Out>(metric: Metric.Metric<Type, number, Out>, value: number, tags: Record<string, string> = {}): void =>
  metric.unsafeUpdate(value, labels(tags))

/**
 * One label array per tag set, reused: Effect caches a metric's hook by the identity of this array, so a new array
 * per call would hash the metric key and look it up in the registry on every update.
 */
const labelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

const labels = (tags: Record<string, string>): ReadonlyArray<MetricLabel.MetricLabel> => {
  const entries = Object.entries(tags)
  if (entries.length === 0) return noLabels
  const key = JSON.stringify(entries)
  let cached = labelCache.get(key)
  if (cached === undefined) {
    cached = entries.map(([name, value]) => MetricLabel.make(name, value))
    labelCache.set(key, cached)
  }
  return cached
}
