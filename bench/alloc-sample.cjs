/**
 * Preload for allocation investigations (not used by the benchmark itself): samples every allocation of the main
 * thread, objects collected since included, from ALLOC_START_MS to ALLOC_STOP_MS after start, and writes a
 * `.heapprofile` (open it in Chrome DevTools' Memory tab) to ALLOC_OUT. Worker threads inherit the preload and
 * are skipped.
 *
 *   ALLOC_START_MS=15000 ALLOC_STOP_MS=23000 ALLOC_OUT=/tmp/many-docs.heapprofile \
 *     DATABASE_URL=sqlite:///./alloc.db node -r ./bench/alloc-sample.cjs dist/main.js &
 *   node --import tsx bench/load.ts --scenario many-docs --url http://127.0.0.1:8000 --warmup 1 --duration 20
 */
const { isMainThread } = require("node:worker_threads")

if (isMainThread) {
  const inspector = require("node:inspector")
  const { writeFileSync } = require("node:fs")
  const start = Number(process.env.ALLOC_START_MS ?? 8000)
  const stop = Number(process.env.ALLOC_STOP_MS ?? 18000)
  const out = process.env.ALLOC_OUT ?? "allocations.heapprofile"
  const session = new inspector.Session()
  session.connect()
  setTimeout(() => {
    session.post("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    }, (error) => {
      if (error) process.stderr.write(`alloc-sample: ${error.message}\n`)
    })
    setTimeout(() => {
      session.post("HeapProfiler.stopSampling", (error, result) => {
        if (error) return process.stderr.write(`alloc-sample: ${error.message}\n`)
        writeFileSync(out, JSON.stringify(result.profile))
        process.stderr.write(`alloc-sample: wrote ${out}\n`)
      })
    }, stop - start).unref()
  }, start).unref()
}
