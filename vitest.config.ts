import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // `gc()` for the tests that check what a document keeps alive (test/Document/Presence.test.ts).
    poolOptions: { forks: { execArgv: ["--expose-gc"] } },
    coverage: {
      provider: "v8",
      include: ["src/**/*.ts"],
      exclude: ["src/main.ts"],
      reporter: ["text-summary", "json-summary"],
      thresholds: { lines: 85, branches: 80 }
    }
  }
})
