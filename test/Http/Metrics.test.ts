import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, startServer } from "../support/TestServer.js"
import { connect } from "../support/WsClient.js"

/** The value of one series in a Prometheus text scrape (0 when absent). */
const value = (text: string, series: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

describe("GET /metrics", () => {
  it.scoped("serves Prometheus text with the connection, document, update, latency and process metrics", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const scrape = Effect.map(request("GET", `${url}/metrics`), (reply) => {
        assert.strictEqual(reply.status, 200)
        assert.match(reply.contentType, /^text\/plain/)
        return reply.text
      })
      const before = yield* scrape
      for (const name of [
        "docsync_connections",
        "docsync_documents_loaded",
        "docsync_updates_total",
        "docsync_ack_latency_seconds",
        "docsync_storage_batch_size",
        "docsync_storage_commit_seconds",
        "docsync_slow_consumer_closes_total",
        "docsync_errors_total",
        "process_resident_memory_bytes",
        "nodejs_heap_used_bytes",
        "nodejs_eventloop_delay_p99_seconds"
      ]) {
        assert.include(before, `# TYPE ${name} `, name)
      }
      const id = ((yield* request("POST", `${url}/api/v1/documents`, { title: "m" })).body as { id: string }).id
      const c = yield* connect(url, id)
      yield* c.take("state")
      for (const opId of ["a", "b", "a"]) {
        yield* c.send({ type: "update", opId, baseVersion: 0, actorId: "m", deltaB64: "AQ==" })
        yield* c.take("ack")
      }
      const after = yield* scrape
      const delta = (series: string) => value(after, series) - value(before, series)
      assert.strictEqual(delta("docsync_connections"), 1)
      assert.strictEqual(delta("docsync_documents_loaded"), 1)
      assert.strictEqual(delta(`docsync_updates_total{outcome="stored"}`), 2)
      assert.strictEqual(delta(`docsync_updates_total{outcome="duplicate"}`), 1)
      assert.strictEqual(delta("docsync_ack_latency_seconds_count"), 3)
      assert.isAtLeast(delta("docsync_storage_batch_size_count"), 1)
      assert.isAbove(value(after, "process_resident_memory_bytes"), 0)
      const buckets = after.split("\n").filter((l) => l.startsWith("docsync_ack_latency_seconds_bucket"))
      const counts = buckets.map((l) => Number(l.split(" ")[1]))
      assert.deepStrictEqual(counts, [...counts].sort((x, y) => x - y), "buckets are cumulative")
      assert.match(buckets.at(-1) ?? "", /le="\+Inf"/)
    }))
})
