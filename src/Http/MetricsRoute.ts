/**
 * `GET /metrics`: every Effect metric of the process in Prometheus text format (version 0.0.4), plus process
 * memory and event-loop delay, sampled when scraped.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Metric, MetricState, Option } from "effect"
import type * as MetricPair from "effect/MetricPair"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Metrics from "../Document/Metrics.js"

export const path = "/metrics"

const residentMemory = Metric.gauge("process_resident_memory_bytes", { description: "Resident set size" })
const heapUsed = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use" })
const eventLoopDelayP99 = Metric.gauge("nodejs_eventloop_delay_p99_seconds", {
  description: "99th percentile of event-loop delay since the previous scrape"
})
const eventLoopDelayMax = Metric.gauge("nodejs_eventloop_delay_max_seconds", {
  description: "Largest event-loop delay since the previous scrape"
})

/** The route; it samples event-loop delay for as long as the server runs. */
export const route = Layer.unwrapScoped(
  Effect.gen(function* () {
    // Registered up front, so that a scrape lists every metric even before its first update.
    for (const metric of known) metric.unsafeValue([])
    const delay = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const histogram = monitorEventLoopDelay({ resolution: 10 })
        histogram.enable()
        return histogram
      }),
      (histogram) => Effect.sync(() => histogram.disable())
    )
    const scrape = Effect.gen(function* () {
      const memory = process.memoryUsage()
      yield* Metric.set(residentMemory, memory.rss)
      yield* Metric.set(heapUsed, memory.heapUsed)
      yield* Metric.set(eventLoopDelayP99, delay.percentile(99) / 1e9)
      yield* Metric.set(eventLoopDelayMax, delay.max / 1e9)
      delay.reset()
      const text = render(yield* Metric.snapshot)
      return HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
    })
    return HttpLayerRouter.add("GET", path, scrape)
  })
)

/** Prometheus text exposition of a metric snapshot: one HELP and TYPE per name, series grouped under it. */
export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const byName = new Map<string, { help: string; type: string; lines: Array<string> }>()
  for (const pair of pairs) {
    const key = pair.metricKey
    const state = pair.metricState
    const tags = key.tags.map((t) => [t.key, t.value] as const)
    const type = MetricState.isCounterState(state)
      ? "counter"
      : MetricState.isGaugeState(state)
      ? "gauge"
      : MetricState.isHistogramState(state)
      ? "histogram"
      : undefined
    if (type === undefined) continue
    let entry = byName.get(key.name)
    if (entry === undefined) {
      entry = { help: Option.getOrElse(key.description, () => key.name), type, lines: [] }
      byName.set(key.name, entry)
    }
    if (MetricState.isCounterState(state) || MetricState.isGaugeState(state)) {
      entry.lines.push(`${key.name}${labels(tags)} ${num(Number(MetricState.isCounterState(state) ? state.count : state.value))}`)
    } else if (MetricState.isHistogramState(state)) {
      for (const [boundary, count] of state.buckets) {
        if (Number.isFinite(boundary)) entry.lines.push(`${key.name}_bucket${labels([...tags, ["le", num(boundary)]])} ${count}`)
      }
      entry.lines.push(`${key.name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
      entry.lines.push(`${key.name}_sum${labels(tags)} ${num(state.sum)}`)
      entry.lines.push(`${key.name}_count${labels(tags)} ${state.count}`)
    }
  }
  const out: Array<string> = []
  for (const [name, entry] of [...byName.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`# HELP ${name} ${entry.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`)
    out.push(`# TYPE ${name} ${entry.type}`)
    out.push(...entry.lines)
  }
  return `${out.join("\n")}\n`
}

/** Every metric docsync defines, so a scrape lists them even before their first update. */
export const known = [
  Metrics.connections,
  Metrics.documentsLoaded,
  Metrics.updates,
  Metrics.ackLatency,
  Metrics.batchSize,
  Metrics.commitLatency,
  Metrics.slowConsumerCloses,
  Metrics.errors
] as const

const labels = (tags: ReadonlyArray<readonly [string, string]>): string =>
  tags.length === 0
    ? ""
    : `{${tags.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")}"`).join(",")}}`

const num = (n: number): string => (Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n))
