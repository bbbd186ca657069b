/**
 * The real entry point as a child process (through tsx): start-up, a request, SIGTERM, exit code.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Duration, Effect, Schedule } from "effect"
import { request } from "../support/TestServer.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const DEADLINE = Duration.seconds(20)

interface Running {
  readonly child: ChildProcess
  readonly output: () => string
}

/** `src/main.ts` with `env` on top of a clean docsync environment; killed at scope end if still running. */
const startMain = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync((): Running => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: ROOT,
        env: { PATH: process.env["PATH"] ?? "", NO_COLOR: "1", PORT: "0", HOST: "127.0.0.1", DATABASE_URL: "memory://", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      return { child, output: () => output }
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  )

/** Polls the output until `pattern` shows up, failing after DEADLINE. */
const waitForOutput = (running: Running, pattern: RegExp) =>
  Effect.suspend(() => {
    const match = pattern.exec(running.output())
    return match === null ? Effect.fail("not yet" as const) : Effect.succeed(match)
  }).pipe(
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeoutFail({ duration: DEADLINE, onTimeout: () => new Error(`no ${pattern} in:\n${running.output()}`) })
  )

const exitCode = (child: ChildProcess) =>
  Effect.async<number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  }).pipe(Effect.timeoutFail({ duration: DEADLINE, onTimeout: () => new Error("the process did not exit") }))

describe("main", () => {
  it.scopedLive("serves until SIGTERM, then drains and exits 0", () =>
    Effect.gen(function* () {
      const running = yield* startMain({ LOG_LEVEL: "info" })
      const [, base] = yield* waitForOutput(running, /docsync listening on (http:\/\/[\d.]+:\d+)/)
      const health = yield* request("GET", `${base}/api/v1/health`)
      assert.strictEqual(health.status, 200)
      assert.deepStrictEqual(health.body, { status: "ok" })
      yield* waitForOutput(running, /GET \/api\/v1\/health 200/)
      assert.include(running.output(), "authentication is off")

      running.child.kill("SIGTERM")
      assert.strictEqual(yield* exitCode(running.child), 0, running.output())
      assert.include(running.output(), "HTTP server drained")
      const lines = running.output().trim().split("\n")
      assert.match(lines[lines.length - 1] ?? "", /level=INFO .*message="docsync stopped: connections closed, storage closed"/, "the last line")
      // Not on a terminal, LOG_FORMAT=auto writes logfmt: one line per event.
      for (const line of running.output().trim().split("\n")) assert.match(line, /^timestamp=\S+ level=[A-Z]+ fiber=#\d+ message=/)
    }), 60_000)

  it.scopedLive("LOG_FORMAT=json writes one JSON object per line; LOG_FORMAT=pretty, Effect's pretty log", () =>
    Effect.gen(function* () {
      const json = yield* startMain({ LOG_LEVEL: "info", LOG_FORMAT: "json" })
      yield* waitForOutput(json, /docsync listening on/)
      json.child.kill("SIGTERM")
      assert.strictEqual(yield* exitCode(json.child), 0, json.output())
      const events = json.output().trim().split("\n").map((line) => JSON.parse(line) as { message: unknown; logLevel: string })
      const listening = events.find((event) => String(event.message).includes("docsync listening on"))
      assert.strictEqual(listening?.logLevel, "INFO")
      const pretty = yield* startMain({ LOG_LEVEL: "info", LOG_FORMAT: "pretty" })
      yield* waitForOutput(pretty, /^\[[\d:.]+\] INFO \(#\d+\): docsync listening on/m)
    }), 60_000)

  it.scopedLive("a server that cannot start says why in one line of its log format, and exits 1", () =>
    Effect.gen(function* () {
      const running = yield* startMain({ DATABASE_URL: "sqlite:///./no-such-directory-for-docsync/dev.db" })
      assert.strictEqual(yield* exitCode(running.child), 1, running.output())
      const lines = running.output().trim().split("\n")
      for (const line of lines) assert.match(line, /^timestamp=\S+ level=[A-Z]+ fiber=#\d+ message=/, running.output())
      assert.isTrue(lines.some((line) => /level=ERROR .*message="docsync stopped"/.test(line)), running.output())
    }), 60_000)

  it.scopedLive("an invalid variable stops start-up with one line naming it and exit code 1", () =>
    Effect.gen(function* () {
      const running = yield* startMain({ PORT: "abc" })
      assert.strictEqual(yield* exitCode(running.child), 1)
      const lines = running.output().trim().split("\n")
      assert.strictEqual(lines.length, 1, running.output())
      assert.match(lines[0] ?? "", /^invalid configuration: .*PORT/)
    }), 60_000)
})
