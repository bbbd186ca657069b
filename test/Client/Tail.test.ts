/**
 * docsync-tail: argument parsing, and a live tail of a real server while another client writes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { DocSyncClient } from "../../src/Client/DocSyncClient.js"
import * as RestClient from "../../src/Client/RestClient.js"
import { DEFAULT_URL, main, parseArgs, USAGE } from "../../src/Client/Tail.js"
import { startServer } from "../support/TestServer.js"

describe("docsync-tail arguments", () => {
  it("takes a document id and options, with DOCSYNC_URL / DOCSYNC_TOKEN from the environment", () => {
    expect(parseArgs(["doc1"], {})).toEqual({ documentId: "doc1", url: DEFAULT_URL, since: undefined, token: undefined, actorId: undefined, json: false })
    expect(parseArgs(["doc1"], { DOCSYNC_URL: "http://h:1", DOCSYNC_TOKEN: "t" })).toMatchObject({ url: "http://h:1", token: "t" })
    expect(parseArgs(["--url", "https://x", "doc1", "--since=5", "--json", "--token", "jwt", "--actor", "me"], {})).toEqual({
      documentId: "doc1",
      url: "https://x",
      since: 5,
      token: "jwt",
      actorId: "me",
      json: true
    })
    expect(parseArgs(["-h"], {})).toBe("help")
    expect(parseArgs(["doc", "--help"], {})).toBe("help")
  })

  it("explains what is wrong", () => {
    const errors = [
      [[], "missing <documentId>"],
      [["a", "b"], "unexpected argument b"],
      [["a", "--bogus"], "unknown option --bogus"],
      [["a", "--url", "ftp://x"], "--url needs an http(s):// URL"],
      [["a", "--url"], "--url needs an http(s):// URL"],
      [["a", "--since", "-1"], "--since needs a non-negative integer"],
      [["a", "--token"], "--token needs a value"],
      [["a", "--actor", ""], "--actor needs 1..128 characters"]
    ] as const
    for (const [argv, error] of errors) expect(parseArgs(argv, {})).toEqual({ error })
  })

  it("prints the usage for --help (exit 0) and for bad arguments (exit 2)", async () => {
    const out: Array<string> = []
    const err: Array<string> = []
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }
    expect(await main(["--help"], {}, io, new AbortController().signal)).toBe(0)
    expect(out).toEqual([USAGE])
    expect(await main([], {}, io, new AbortController().signal)).toBe(2)
    expect(err[0]).toContain("missing <documentId>")
  })
})

describe("docsync-tail on a live document", () => {
  it.scopedLive("prints the state, then updates and presence as they come; stops on abort with 0", () =>
    Effect.gen(function* () {
      const url = yield* startServer({ config: { snapshotEvery: 2 } })
      const document = yield* Effect.promise(() => RestClient.run({ baseUrl: url }, (c) => c.documents.create({ payload: { title: "tail" } })))
      const writer = new DocSyncClient({ url, documentId: document.id, actorId: "writer", snapshot: () => new Uint8Array([9, 9]) })
      yield* Effect.addFinalizer(() => Effect.sync(() => writer.close()))
      writer.submit(new Uint8Array([1]))
      writer.submit(new Uint8Array([2]))
      // Asked for a snapshot after the second update, with nothing pending: it answers at version 2.
      yield* Effect.promise(() => waitFor(() => writer.version === 2))
      writer.submit(new Uint8Array([3]))
      yield* Effect.promise(() => waitFor(() => writer.version === 3 && writer.status === "synced"))

      const lines: Array<string> = []
      const errors: Array<string> = []
      const stop = new AbortController()
      const wake: Array<() => void> = []
      const io = {
        out: (line: string) => {
          lines.push(line)
          for (const w of wake.splice(0)) w()
        },
        err: (line: string) => errors.push(line)
      }
      const until = (pattern: RegExp) =>
        Effect.promise(() => waitFor(() => lines.some((l) => pattern.test(l)), wake))
      const exit = main([document.id, "--url", url, "--actor", "tailer"], {}, io, stop.signal)

      yield* until(/^joined/)
      writer.setPresence({ cursor: 1 })
      writer.submit(new Uint8Array(Array.from({ length: 2000 }, (_, i) => i % 256)))
      yield* until(/^update +#4 by writer/)
      yield* until(/^presence +~ writer/)
      const second = new DocSyncClient({ url, documentId: document.id, actorId: "second" })
      yield* until(/^presence +\+ second/)
      second.close()
      yield* until(/^presence +- second .* left \(disconnect\)/)
      stop.abort()
      expect(yield* Effect.promise(() => exit)).toBe(0)

      const text = lines.join("\n")
      // The join's summary first, then what it delivered, then the live events.
      expect(lines.findIndex((l) => l.startsWith("joined"))).toBe(1)
      expect(lines[2]).toMatch(/^snapshot/)
      expect(text).toMatch(/^connecting to http:\/\/127\.0\.0\.1:\d+ …$/m)
      expect(text).toMatch(/^snapshot +v2 \(2 B\)$/m)
      expect(text).toMatch(/^update +#3 by writer \(1 B, op writer:[0-9a-z]+:3\) 03$/m)
      expect(text).toMatch(/^joined +\S+ as \S+: version 3, from snapshot v2, 1 update\(s\), 1 other connection\(s\)\n +here: writer \(/m)
      expect(text).toMatch(/^update +#4 by writer \(2\.0 KiB, op \S+\) 000102030405060708090a0b…$/m)
      expect(text).toMatch(/^presence +~ writer \(\w+\) \{"cursor":1\}$/m)
      expect(errors).toEqual([])
    }))

  it.scopedLive("--json prints one object per line; an unknown document exits 1", () =>
    Effect.gen(function* () {
      const url = yield* startServer()
      const document = yield* Effect.promise(() => RestClient.run({ baseUrl: url }, (c) => c.documents.create({ payload: { title: "json" } })))
      const lines: Array<string> = []
      const errors: Array<string> = []
      const wake: Array<() => void> = []
      const io = {
        out: (line: string) => {
          lines.push(line)
          for (const w of wake.splice(0)) w()
        },
        err: (line: string) => errors.push(line)
      }
      const stop = new AbortController()
      const exit = main([document.id, "--json", "--since", "0"], { DOCSYNC_URL: url }, io, stop.signal)
      yield* Effect.promise(() => waitFor(() => lines.some((l) => l.includes('"event":"state"')), wake))
      stop.abort()
      expect(yield* Effect.promise(() => exit)).toBe(0)
      const events = lines.map((l) => JSON.parse(l) as { event: string })
      expect(events.map((e) => e.event)).toEqual(["status", "state", "close"])
      expect(events[1]).toMatchObject({ event: "state", version: 0, reset: false, peers: [] })

      const gone = yield* Effect.promise(() => main(["no-such-document", "--url", url], {}, io, new AbortController().signal))
      expect(gone).toBe(1)
      expect(lines.at(-1)).toContain("connection closed (4404")
      expect(errors.at(-1)).toContain("4404")

      const aborted = new AbortController()
      aborted.abort()
      expect(yield* Effect.promise(() => main([document.id, "--url", url], {}, io, aborted.signal))).toBe(0)
    }))
})

/** Resolves when `done()` holds: re-checked when woken through `wake`, and every 20 ms. */
const waitFor = (done: () => boolean, wake?: Array<() => void>): Promise<void> =>
  new Promise((resolve) => {
    const check = () => {
      if (done()) {
        clearInterval(timer)
        resolve()
      } else wake?.push(check)
    }
    const timer = setInterval(check, 20)
    check()
  })
