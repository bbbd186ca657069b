/**
 * The server-wide heartbeat (Http/Heartbeat.ts), on the Effect clock: a peer that misses a round is terminated, one
 * that answers is kept, and a socket whose reading is paused (its document's mailbox is full) is not judged until it
 * reads again, since its pongs cannot be read meanwhile.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import { EventEmitter } from "node:events"
import type { WebSocket } from "ws"
import * as Config from "../../src/Config.js"
import * as Heartbeat from "../../src/Http/Heartbeat.js"

/** The part of a `ws` socket the heartbeat uses; `answers` says whether it replies to pings. */
class FakeSocket extends EventEmitter {
  isPaused = false
  pings = 0
  terminated = false
  constructor(private readonly answers: boolean) {
    super()
  }
  ping() {
    this.pings++
    if (this.answers) queueMicrotask(() => this.emit("pong"))
  }
  terminate() {
    this.terminated = true
  }
}

const interval = Duration.seconds(30)

describe("Heartbeat", () => {
  it.scoped("terminates a silent peer after a missed round, keeps one that answers, and skips paused sockets", () =>
    Effect.gen(function* () {
      const heartbeat = yield* Heartbeat.make
      const silent = new FakeSocket(false)
      const answering = new FakeSocket(true)
      const paused = new FakeSocket(false)
      paused.isPaused = true
      const gone = new FakeSocket(false)
      for (const socket of [silent, answering, paused, gone]) heartbeat.watch(socket as unknown as WebSocket)
      heartbeat.unwatch(gone as unknown as WebSocket)

      yield* TestClock.adjust(interval)
      assert.deepStrictEqual([silent.pings, answering.pings, paused.pings], [1, 1, 0])
      yield* TestClock.adjust(interval)
      assert.isTrue(silent.terminated, "no pong since the last ping")
      assert.deepStrictEqual([gone.pings, gone.terminated], [0, false], "an unwatched socket is left alone")
      assert.isTrue(heartbeat.timedOut(silent as unknown as WebSocket), "the log line can say the server closed it")
      assert.isFalse(answering.terminated)
      assert.isFalse(heartbeat.timedOut(answering as unknown as WebSocket))
      for (let round = 0; round < 5; round++) yield* TestClock.adjust(interval)
      assert.isFalse(paused.terminated, "a paused socket is not pinged nor judged")
      assert.strictEqual(paused.pings, 0)
      assert.isFalse(answering.terminated)

      // Reading again: judged like any other from the next rounds on.
      paused.isPaused = false
      yield* TestClock.adjust(interval)
      assert.strictEqual(paused.pings, 1)
      yield* TestClock.adjust(interval)
      assert.isTrue(paused.terminated)
      assert.isFalse(answering.terminated)
    }).pipe(Effect.provide(Config.layer({ heartbeatInterval: interval }))))
})
