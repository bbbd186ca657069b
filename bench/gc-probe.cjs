// Preload for memory investigations (not used by the benchmark itself): run the server with
//   node --expose-gc -r ./bench/gc-probe.cjs dist/main.js
// and `kill -USR2 <pid>` prints, on stderr, the process memory right after full garbage collections:
//   MEM rss=<bytes> heapUsed=<bytes> external=<bytes> arrayBuffers=<bytes>
// i.e. the live JS heap, without the garbage that the RSS and /metrics' heap gauge include between collections.
process.on("SIGUSR2", () => {
  for (let i = 0; i < 3; i++) global.gc()
  const m = process.memoryUsage()
  process.stderr.write(`MEM rss=${m.rss} heapUsed=${m.heapUsed} external=${m.external} arrayBuffers=${m.arrayBuffers}\n`)
})
