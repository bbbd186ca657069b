import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Exit, Fiber, FiberId, FiberRef, Layer, Option, Scheduler, Scope, Supervisor, TestClock } from "effect"
import { ServerConfig } from "../../src/Config.js"
import type { DocumentId } from "../../src/Domain/Document.js"
import * as DocumentActor from "../../src/Document/DocumentActor.js"
import * as DocumentRegistryModule from "../../src/Document/DocumentRegistry.js"
import { askSlot, DocumentRegistry, type Slot } from "../../src/Document/DocumentRegistry.js"
import * as Metrics from "../../src/Document/Metrics.js"
import {
  boundsItself,
  DocumentStorage,
  type DocumentStorageShape,
  inOrderAppends,
  StorageError
} from "../../src/Storage/DocumentStorage.js"
import { layerMemorySequential } from "../support/TestStorage.js"
import { appendPaths, delta, type RecordingConnection, recordingConnection, registryLayer, wrapStorage } from "./support.js"

const createDocument = Effect.flatMap(DocumentStorage, (storage) => storage.create("doc")).pipe(
  Effect.map((document) => document.id)
)

const update = (documentId: DocumentId, opId: string, baseVersion = 0, text = opId) =>
  Effect.flatMap(DocumentRegistry, (registry) =>
    registry.update(documentId, { opId, baseVersion, actorId: "rest", ...delta(text) })
  )

/** An update from a connection as a socket offers it (`Session.offer`, no Effect), with its outcome. */
const updateCommand = (origin: DocumentActor.Connection, opId: string, baseVersion = 0) => {
  const done = Deferred.unsafeMake<DocumentActor.UpdateOutcome>(FiberId.none)
  const command: DocumentActor.Update = {
    _tag: "Update",
    origin,
    opId,
    baseVersion,
    actorId: origin.actorId,
    ...delta(opId),
    reply: DocumentActor.once((outcome) => Deferred.unsafeDone(done, Exit.succeed(outcome)))
  }
  return { command, done }
}

/** Submits an update from a connection and resolves with its outcome. */
const submit = (
  session: { readonly submit: (command: DocumentActor.Command) => Effect.Effect<void> },
  origin: DocumentActor.Connection,
  opId: string,
  baseVersion = 0
) =>
  Effect.suspend(() => {
    const { command, done } = updateCommand(origin, opId, baseVersion)
    return Effect.as(session.submit(command), done)
  })

const join = (documentId: DocumentId, connection: DocumentActor.Connection, since?: number) =>
  Effect.flatMap(DocumentRegistry, (registry) => registry.join(documentId, connection, since))

/** A document with two members, a and b, a's membership in a scope of its own (close it and a leaves). */
const twoMembersOneLeaving = Effect.gen(function* () {
  const id = yield* createDocument
  const a = recordingConnection()
  const b = recordingConnection()
  const membership = yield* Scope.make()
  const [, session] = yield* join(id, a).pipe(Scope.extend(membership))
  yield* join(id, b)
  return { id, a, b, session, membership }
})

/** A document with two members, a and b. */
const twoMembers = Effect.gen(function* () {
  const id = yield* createDocument
  const a = recordingConnection()
  const b = recordingConnection()
  const [, session] = yield* join(id, a)
  yield* join(id, b)
  return { id, a, b, session }
})


/**
 * Memory storage whose appends commit in order and start without a fiber, as SQLite's commit worker does
 * (`inOrderAppends`): each append waits until the test commits it (in order), succeeds or fails it. `poison`
 * makes the lookup of one opId die and its append throw (a defect in the actor).
 */
const inOrderStorage = () => {
  const appends: Array<{
    readonly opIds: ReadonlyArray<string>
    readonly commit: (outcome?: "fail" | "fail after commit" | "no result for the last") => Effect.Effect<void>
  }> = []
  const layer = wrapStorage((inner) => {
    const append: DocumentStorageShape["append"] = (id, updates) => inner.append(id, updates)
    boundsItself.add(append)
    inOrderAppends.set(append, (id, updates, done) => {
      if (updates.some((update) => update.opId === poisoned)) throw new Error("injected defect")
      const failure = (cause: string) => Exit.fail(new StorageError({ operation: "append", cause }))
      appends.push({
        opIds: updates.map((update) => update.opId),
        commit: (outcome) =>
          outcome === "fail"
            ? Effect.sync(() => done(failure("injected")))
            : Effect.flatMap(Effect.exit(inner.append(id, updates)), (exit) =>
              Effect.sync(() =>
                done(
                  outcome === "fail after commit"
                    ? failure("no answer in time")
                    : outcome === "no result for the last"
                    ? Exit.map(exit, (results) => results.slice(0, -1))
                    : exit
                )
              ))
      })
    })
    // A lookup (of an update ahead of the document) that dies for the poisoned opId, and the actor with it; its
    // append throws.
    const findByOpId: DocumentStorageShape["findByOpId"] = (id, opId) =>
      opId === poisoned ? Effect.die("injected defect") : inner.findByOpId(id, opId)
    return { append, findByOpId }
  })
  let poisoned: string | undefined
  const poison = (opId: string | undefined) => {
    poisoned = opId
  }
  /** Lets every fiber that can run run, until `n` appends have been sent (or it is clear they will not be). */
  const sent = (n: number) => Effect.repeat(Effect.yieldNow(), { until: () => appends.length >= n, times: 100 })
  /** Submits an update, waits until it is sent to storage, commits it and resolves with its outcome. */
  const storeNext = (...update: Parameters<typeof submit>) =>
    Effect.gen(function* () {
      const before = appends.length
      const done = yield* submit(...update)
      yield* sent(before + 1)
      yield* appends[before]!.commit()
      return yield* Deferred.await(done)
    })
  /** A document with members a and b, and a's op-1 sent to storage (not committed yet). */
  const oneInFlight = Effect.gen(function* () {
    const { id, a, b, session } = yield* twoMembers
    const first = yield* submit(session, a, "op-1")
    yield* sent(1)
    return { id, a, b, session, first }
  })
  return { appends, layer, oneInFlight, poison, sent, storeNext }
}

/** Lets every fiber that can run run (no timers involved). */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Counts the fibers started under it (`Effect.supervised`). */
class FiberStarts extends Supervisor.AbstractSupervisor<number> {
  started = 0
  readonly value = Effect.sync(() => this.started)
  override onStart(): void {
    this.started++
  }
}

/** Hands each fiber started under it (`Effect.supervised`), with its context, to `started`. */
class FiberStartsWith extends Supervisor.AbstractSupervisor<void> {
  readonly value = Effect.void
  constructor(private readonly started: (fiber: Fiber.RuntimeFiber<unknown, unknown>, context: Context.Context<never>) => void) {
    super()
  }
  override onStart<A, E, R>(
    context: Context.Context<R>,
    _effect: Effect.Effect<A, E, R>,
    _parent: Option.Option<Fiber.RuntimeFiber<unknown, unknown>>,
    fiber: Fiber.RuntimeFiber<A, E>
  ): void {
    this.started(fiber as Fiber.RuntimeFiber<unknown, unknown>, context as Context.Context<never>)
  }
}

describe("DocumentRegistry", () => {
  it.effect("an update the actor took at once is sent to storage before the next batch it handles is served", () => {
    const storage = inOrderStorage()
    return Effect.gen(function* () {
      const id = yield* createDocument
      const settings: DocumentActor.ActorSettings = {
        snapshotEvery: 100,
        snapshotRequestTimeoutMillis: 30_000,
        presenceIdleMillis: 30_000,
        logTailBytes: 1 << 20,
        maxBatchSize: 100
      }
      // Outcomes come back here; the test hands them to the actor.
      const delivered: Array<DocumentActor.Appended> = []
      const actor = Option.getOrThrow(
        yield* DocumentActor.load(id, new Map(), settings, (appended) => delivered.push(appended) > 0)
      )
      const joinCommand = (connection: DocumentActor.Connection, outcomes: Array<DocumentActor.JoinOutcome>): DocumentActor.Join => ({
        _tag: "Join",
        connection,
        activity: { last: 0 },
        since: undefined,
        reply: (outcome) => outcomes.push(outcome)
      })
      const a = recordingConnection()
      yield* actor.handle([joinCommand(a, [])])
      // Taken at once (as from a socket's callback), and not sent yet: the registry flushes it in a microtask.
      const { command, done } = updateCommand(a, "op-1")
      assert.isTrue(actor.now(command))
      assert.strictEqual(storage.appends.length, 0)
      // A join that arrives after it, handled before that flush: the update goes first, and the join waits for it.
      const c = recordingConnection()
      const joined: Array<DocumentActor.JoinOutcome> = []
      yield* actor.handle([joinCommand(c, joined)])
      assert.deepStrictEqual(storage.appends.map((append) => append.opIds), [["op-1"]])
      assert.deepStrictEqual(c.of("state"), [], "served after the update before it")
      yield* storage.appends[0]!.commit()
      assert.strictEqual(delivered.length, 1)
      yield* actor.handle(delivered.splice(0))
      assert.deepStrictEqual(yield* Deferred.await(done), { _tag: "Stored", seq: 1 })
      assert.deepStrictEqual(joined, [{ _tag: "Joined", version: 1 }])
      assert.strictEqual(c.of("state")[0]?.version, 1, "its state holds the update")
      assert.deepStrictEqual(c.of("remote_update"), [])
    }).pipe(Effect.provide(storage.layer))
  })

  // The default storage, on both of the ways an actor stores (memory:// takes the in-order one, as SQLite does).
  describe.each(appendPaths)("appends %s", (path, onStorage) => {
    it.effect("the storage takes the path its name says", () =>
      Effect.gen(function* () {
        const storage = yield* DocumentStorage
        assert.strictEqual(inOrderAppends.has(storage.append), path.startsWith("in order"))
      }).pipe(Effect.provide(onStorage)))

    it.effect("acks the sender and broadcasts to the others, never echoing to the sender", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const a = recordingConnection()
        const b = recordingConnection()
        const [joinedA, sessionA] = yield* join(id, a)
        yield* join(id, b)
        assert.deepStrictEqual(joinedA, { _tag: "Joined", version: 0 })
        const outcome = yield* Deferred.await(yield* submit(sessionA, a, "op-1"))
        assert.deepStrictEqual(outcome, { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual(b.of("remote_update"), [
          { type: "remote_update", seq: 1, opId: "op-1", actorId: a.actorId, deltaB64: delta("op-1").deltaB64 }
        ])
        assert.strictEqual(a.of("remote_update").length, 0)
        assert.deepStrictEqual(a.of("state")[0]?.version, 0)
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("a loaded document with nothing to do has no fiber; an update starts one only on the one-at-a-time path", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        // Fibers forked under the join (the document's load, and its fibers, on the runtime it captured) report here.
        const tracker = yield* Supervisor.track
        const starts = new FiberStarts()
        const a = recordingConnection()
        yield* join(id, a).pipe(Effect.supervised(tracker), Effect.supervised(starts))
        yield* settle
        assert.deepStrictEqual(yield* tracker.value, [], "every fiber of the document has ended")
        assert.deepStrictEqual(yield* Effect.flatMap(DocumentRegistry, (registry) => registry.loaded), [id])
        const before = starts.started
        assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Stored", seq: 1 })
        // In order, the update is taken at once and stored without a fiber; one at a time, it starts the document's.
        if (path.startsWith("in order")) assert.strictEqual(starts.started, before, "taken at once, without a fiber")
        else assert.isAbove(starts.started, before, "the update started the document's fiber")
        assert.deepStrictEqual(a.of("remote_update").map((frame) => frame.opId), ["op-1"])
        yield* settle
        assert.deepStrictEqual(yield* tracker.value, [])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("answers a repeated opId with the original seq and stores nothing", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const b = recordingConnection()
        yield* join(id, b)
        assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual(yield* update(id, "op-2", 1), { _tag: "Stored", seq: 2 })
        assert.deepStrictEqual(yield* update(id, "op-1", 2), { _tag: "Duplicate", seq: 1 })
        const storage = yield* DocumentStorage
        assert.strictEqual(yield* storage.latestVersion(id), 2)
        assert.strictEqual(b.of("remote_update").length, 2)
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("finds duplicates in storage after the actor was unloaded (cache cold)", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        yield* update(id, "op-1")
        yield* TestClock.adjust(Duration.minutes(2))
        assert.deepStrictEqual(yield* Effect.flatMap(DocumentRegistry, (r) => r.loaded), [])
        // baseVersion 5 is ahead of the document, but the opId is stored: it is a duplicate, not an error.
        assert.deepStrictEqual(yield* update(id, "op-1", 5), { _tag: "Duplicate", seq: 1 })
        assert.deepStrictEqual(yield* update(id, "op-2", 5), { _tag: "InvalidBaseVersion", version: 1 })
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("serves joins from `since` and resets a client that is ahead", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        for (let i = 0; i < 5; i++) yield* update(id, `op-${i}`, i)
        const fresh = recordingConnection()
        yield* join(id, fresh)
        const resumed = recordingConnection()
        yield* join(id, resumed, 3)
        const ahead = recordingConnection()
        yield* join(id, ahead, 9)
        const seqs = (c: ReturnType<typeof recordingConnection>) =>
          (c.of("state")[0]?.updates as Array<{ seq: number }>).map((u) => u.seq)
        assert.deepStrictEqual(seqs(fresh), [1, 2, 3, 4, 5])
        assert.deepStrictEqual(seqs(resumed), [4, 5])
        assert.strictEqual(resumed.of("state")[0]?.reset, undefined)
        assert.deepStrictEqual(seqs(ahead), [1, 2, 3, 4, 5])
        assert.strictEqual(ahead.of("state")[0]?.reset, true)
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("unloads an idle document only after DOCUMENT_IDLE_MS with no connection, keeping its version", () =>
      Effect.gen(function* () {
        const registry = yield* DocumentRegistry
        const id = yield* createDocument
        yield* update(id, "op-1")
        const scope = yield* Scope.make()
        yield* join(id, recordingConnection()).pipe(Scope.extend(scope))
        yield* TestClock.adjust(Duration.minutes(10))
        assert.deepStrictEqual(yield* registry.loaded, [id], "a connected document stays loaded")
        yield* Scope.close(scope, Exit.void)
        yield* TestClock.adjust(Duration.millis(59_999))
        assert.deepStrictEqual(yield* registry.loaded, [id])
        yield* TestClock.adjust(Duration.millis(1))
        assert.deepStrictEqual(yield* registry.loaded, [])
        const back = recordingConnection()
        const [outcome] = yield* join(id, back)
        assert.deepStrictEqual(outcome, { _tag: "Joined", version: 1 })
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ documentIdle: Duration.millis(60_000) }, onStorage))))

    it.effect("a leave waits until the connection's submitted commands are served", () =>
      Effect.gen(function* () {
        const { a, b, membership, session } = yield* twoMembersOneLeaving
        const pending = yield* submit(session, a, "op-1")
        yield* Scope.close(membership, Exit.void)
        assert.deepStrictEqual(yield* Deferred.poll(pending).pipe(Effect.flatMap(Option.getOrThrow)), {
          _tag: "Stored",
          seq: 1
        })
        assert.deepStrictEqual(b.of("presence_leave").map((f) => f.reason), ["disconnect"])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, onStorage))))

    it.effect("a log tail over logTailBytes keeps only the newest updates; joins still get the whole log", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const writer = recordingConnection()
        const [, session] = yield* join(id, writer)
        for (let i = 0; i < 40; i++) yield* Deferred.await(yield* submit(session, writer, `op-${i}`))
        for (const since of [undefined, 0, 10, 39, 40]) {
          const reader = recordingConnection()
          yield* join(id, reader, since)
          const seqs = (reader.of("state")[0]?.updates as Array<{ seq: number }>).map((u) => u.seq)
          assert.deepStrictEqual(seqs, Array.from({ length: 40 - (since ?? 0) }, (_, i) => (since ?? 0) + i + 1), `since ${since}`)
        }
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ logTailBytes: 300 }, onStorage))))

    it.effect("a full mailbox makes senders wait instead of dropping", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const a = recordingConnection()
        const [, session] = yield* join(id, a)
        const results = yield* Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i) => Effect.flatMap(submit(session, a, `op-${i}`), Deferred.await),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(
          results.map((r) => (r._tag === "Stored" ? r.seq : -1)).sort((x, y) => x - y),
          Array.from({ length: 30 }, (_, i) => i + 1)
        )
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ mailboxCapacity: 2, maxBatchSize: 3 }, onStorage))))
  })

  it.effect("a join and a leave on a loaded document with nothing to do are served at once, without a fiber", () =>
    Effect.gen(function* () {
      const id = yield* createDocument
      const starts = new FiberStarts()
      const a = recordingConnection()
      // The load, and the fibers the document starts later (on the runtime it captured), report to `starts`.
      yield* join(id, a).pipe(Effect.supervised(starts))
      yield* settle
      const afterLoad = starts.started
      assert.isAbove(afterLoad, 0)
      const b = recordingConnection()
      const membership = yield* Scope.make()
      const [outcome] = yield* join(id, b).pipe(Scope.extend(membership))
      assert.deepStrictEqual(outcome, { _tag: "Joined", version: 0 })
      assert.strictEqual(b.of("state").length, 1)
      assert.strictEqual(a.of("presence_join").length, 1)
      yield* Scope.close(membership, Exit.void)
      assert.strictEqual(a.of("presence_leave").length, 1)
      yield* settle
      assert.strictEqual(starts.started, afterLoad, "no fiber started for the join or the leave")
      // A command that needs the fiber still starts one.
      assert.deepStrictEqual(yield* Effect.flatMap(DocumentRegistry, (registry) => registry.read(id, 0, 10)), {
        _tag: "Read",
        version: 0,
        updates: []
      })
      assert.isAbove(starts.started, afterLoad)
    }).pipe(Effect.scoped, Effect.provide(registryLayer())))

  it.effect("a document's fiber runs with the storage alone in its context, not the server's nor its first joiner's", () =>
    Effect.gen(function* () {
      const id = yield* createDocument
      // The services each fiber started under the join (the document's fibers included) holds: in its context, and
      // in every context stacked under it in its FiberRefs.
      const contexts: Array<ReadonlyArray<string>> = []
      const recording = new FiberStartsWith((fiber, context) => {
        const stacked = fiber.getFiberRefs().locals.get(FiberRef.currentContext) ?? []
        contexts.push([context, ...stacked.map(([, value]) => value as Context.Context<never>)].flatMap((c) => [...c.unsafeMap.keys()]))
      })
      const a = recordingConnection()
      yield* join(id, a).pipe(Effect.supervised(recording))
      yield* settle
      const afterLoad = contexts.length
      // A read needs the document's fiber: it starts on the runtime the document captured.
      yield* Effect.flatMap(DocumentRegistry, (registry) => registry.read(id, 0, 10))
      const started = contexts.slice(afterLoad)
      assert.isAbove(started.length, 0)
      for (const keys of started) {
        assert.include(keys, DocumentStorage.key)
        assert.notInclude(keys, DocumentRegistry.key, "the server's services")
        assert.notInclude(keys, ServerConfig.key)
      }
    }).pipe(Effect.scoped, Effect.provide(registryLayer())))

  describe("a join interrupted while it waits is abandoned: at once, leaving no member behind", () => {
    // The document takes 5 s to load: joins wait meanwhile.
    const slowLoad = wrapStorage((inner) => ({
      get: (id, includeDeleted) => Effect.delay(inner.get(id, includeDeleted), Duration.seconds(5))
    }))
    /** Starts `connection`'s join and lets it run until it waits. */
    const entering = (id: DocumentId, connection: RecordingConnection) =>
      Effect.flatMap(DocumentRegistry, (registry) => Effect.zipLeft(Effect.fork(registry.enter(id, connection, undefined)), settle))
    /** Interrupts `joining` (a server shutting down interrupts its connections' joins; a host may time one out). */
    const interruptAtOnce = (joining: Fiber.RuntimeFiber<unknown>) =>
      Effect.gen(function* () {
        const interrupted = yield* Effect.fork(Fiber.interrupt(joining))
        yield* settle
        const done = Option.isSome(yield* Fiber.poll(interrupted))
        // Else the load is let finish first, so that the test fails here, not by its timeout (closing waits for it).
        if (!done) yield* TestClock.adjust(Duration.seconds(5))
        assert.isTrue(done, "done before the document has loaded")
        assert.isTrue(Exit.isInterrupted(yield* Fiber.join(interrupted)))
      })
    /** Once loaded: who a later joiner sees, and that the abandoned connection was sent nothing. */
    const afterLoad = (id: DocumentId, ghost: RecordingConnection, present: ReadonlyArray<RecordingConnection>) =>
      Effect.gen(function* () {
        yield* TestClock.adjust(Duration.seconds(5))
        yield* settle
        const b = recordingConnection()
        yield* join(id, b)
        const presence = (b.of("state")[0]?.presence as Array<{ clientId: string }>).map((entry) => entry.clientId)
        assert.deepStrictEqual(presence, present.map((member) => member.clientId), "the abandoned join is not present")
        assert.deepStrictEqual(ghost.frames, [], "nor was it sent anything, its state included")
      })

    it.effect("its Join in the batch that waits for the load", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const ghost = recordingConnection()
        const joining = yield* entering(id, ghost)
        yield* interruptAtOnce(joining)
        yield* afterLoad(id, ghost, [])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, slowLoad))))

    it.effect("its Join queued behind another join in the mailbox; the other one is served", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const a = recordingConnection()
        const ghost = recordingConnection()
        const first = yield* entering(id, a)
        const joining = yield* entering(id, ghost)
        yield* interruptAtOnce(joining)
        yield* afterLoad(id, ghost, [a])
        assert.strictEqual((yield* Fiber.join(first))[0]._tag, "Joined")
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, slowLoad))))

    it.effect("its Join being served, while the actor reads the older updates of its state from storage", () => {
      let slowReads = false
      const slowRead = wrapStorage((inner) => ({
        updatesAfter: (id, after, limit) =>
          slowReads ? Effect.delay(inner.updatesAfter(id, after, limit), Duration.seconds(5)) : inner.updatesAfter(id, after, limit)
      }))
      return Effect.gen(function* () {
        const id = yield* createDocument
        for (const [n, opId] of ["op-1", "op-2"].entries()) yield* update(id, opId, n)
        // No log tail in memory: a join's state is read from storage.
        slowReads = true
        const ghost = recordingConnection()
        const joining = yield* entering(id, ghost)
        slowReads = false
        yield* interruptAtOnce(joining)
        yield* afterLoad(id, ghost, [])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ logTailBytes: 0 }, slowRead)))
    })

    it.effect("interrupted as the actor serves its Join: the member it made leaves again", () =>
      Effect.gen(function* () {
        const registry = yield* DocumentRegistry
        const id = yield* createDocument
        const a = recordingConnection()
        yield* join(id, a)
        // Interrupted from inside the actor's serving of the Join (as its state is sent): the member is made and
        // the reply given, but the joining fiber takes the interruption before the reply.
        let joining: Fiber.RuntimeFiber<unknown> | undefined
        const recorded = recordingConnection()
        const ghost: RecordingConnection = {
          ...recorded,
          send: (frame) => {
            recorded.send(frame)
            if (joining !== undefined) Effect.runFork(Fiber.interrupt(joining))
          }
        }
        joining = yield* Effect.fork(registry.enter(id, ghost, undefined))
        assert.isTrue(Exit.isInterrupted(yield* Fiber.await(joining)))
        assert.deepStrictEqual(ghost.of("state").length, 1, "served")
        assert.deepStrictEqual(
          a.of("presence_join").concat(a.of("presence_leave")).map((frame) => [frame.type, frame.clientId]),
          [["presence_join", ghost.clientId], ["presence_leave", ghost.clientId]],
          "made a member, then left"
        )
        const b = recordingConnection()
        yield* join(id, b)
        const presence = (b.of("state")[0]?.presence as Array<{ clientId: string }>).map((entry) => entry.clientId)
        assert.deepStrictEqual(presence, [a.clientId])
      }).pipe(Effect.scoped, Effect.provide(registryLayer())))

    it.effect("its Join waiting for room in a full mailbox", () =>
      Effect.gen(function* () {
        const id = yield* createDocument
        const a = recordingConnection()
        const c = recordingConnection()
        const ghost = recordingConnection()
        const first = yield* entering(id, a)
        // Fills the mailbox (capacity 1): the next join waits for room.
        const second = yield* entering(id, c)
        const joining = yield* entering(id, ghost)
        yield* interruptAtOnce(joining)
        yield* afterLoad(id, ghost, [a, c])
        assert.strictEqual((yield* Fiber.join(first))[0]._tag, "Joined")
        assert.strictEqual((yield* Fiber.join(second))[0]._tag, "Joined")
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ mailboxCapacity: 1 }, slowLoad))))
  })

  it.effect("enter's keep runs uninterruptibly before it returns: a join interrupted then still keeps and ends its membership", () =>
    Effect.gen(function* () {
      const registry = yield* DocumentRegistry
      const id = yield* createDocument
      const keeping = yield* Deferred.make<void>()
      const kept: Array<DocumentRegistryModule.Membership> = []
      const a = recordingConnection()
      // `keep` takes a second (on the test clock); the joining fiber is interrupted meanwhile.
      const joining = yield* Effect.fork(
        registry.enter(id, a, undefined, (membership) =>
          Effect.zipRight(
            Effect.zipRight(Deferred.succeed(keeping, undefined), Effect.sleep(Duration.seconds(1))),
            Effect.sync(() => kept.push(membership))
          ))
      )
      yield* Deferred.await(keeping)
      const interrupted = yield* Effect.fork(Fiber.interrupt(joining))
      yield* TestClock.adjust(Duration.seconds(1))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.join(interrupted)))
      assert.strictEqual(kept.length, 1, "kept though the join was interrupted")
      // Ending it lets go of the document: it unloads after DOCUMENT_IDLE_MS.
      yield* kept[0]!.leave()
      yield* TestClock.adjust(Duration.millis(60_000))
      assert.deepStrictEqual(yield* registry.loaded, [])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ documentIdle: Duration.millis(60_000) }))))

  it.effect("a document's fibers run on the scheduler of the fiber that loaded it (a host's own, say)", () =>
    Effect.gen(function* () {
      const id = yield* createDocument
      // A host's scheduler: runs tasks as the default one does, and counts them.
      let tasks = 0
      const scheduler: Scheduler.Scheduler = {
        shouldYield: (fiber) => Scheduler.defaultScheduler.shouldYield(fiber),
        scheduleTask: (task, priority) => {
          tasks++
          Scheduler.defaultScheduler.scheduleTask(task, priority)
        }
      }
      const schedulers: Array<Scheduler.Scheduler> = []
      const recording = new FiberStartsWith((fiber) => schedulers.push(fiber.currentScheduler))
      yield* join(id, recordingConnection()).pipe(Effect.supervised(recording), Effect.withScheduler(scheduler))
      yield* settle
      const afterLoad = schedulers.length
      const before = tasks
      // The read needs the document's fiber, started (outside the host's fiber) on the runtime the document captured.
      yield* Effect.flatMap(DocumentRegistry, (registry) => registry.read(id, 0, 10))
      const started = schedulers.slice(afterLoad)
      assert.isAbove(started.length, 0)
      for (const used of started) assert.strictEqual(used, scheduler)
      assert.isAbove(tasks, before)
    }).pipe(Effect.scoped, Effect.provide(registryLayer())))

  it.effect("a reply that throws while a document is loaded does not leave the document unserved", () =>
    Effect.gen(function* () {
      const registry = yield* DocumentRegistry
      const missing = "missing-document" as DocumentId
      const a = recordingConnection()
      const [outcome, session] = yield* join(missing, a)
      assert.deepStrictEqual(outcome, { _tag: "NotFound" })
      // Answered not_found while the document is looked up, outside the actor: the reply throws.
      const { command } = updateCommand(a, "op-1")
      yield* session.submit({ ...command, reply: () => { throw new Error("a reply that throws") } })
      yield* settle
      const read = yield* Effect.fork(registry.read(missing, 0, 10))
      yield* settle
      assert.deepStrictEqual(read.unsafePoll(), Exit.succeed({ _tag: "NotFound" }), "the next command is served")
    }).pipe(Effect.scoped, Effect.provide(registryLayer())))

  it.effect("answers unknown and deleted documents, and closes members of a deleted one with 4410", () =>
    Effect.gen(function* () {
      const registry = yield* DocumentRegistry
      const [unknown] = yield* join("nope" as DocumentId, recordingConnection())
      assert.deepStrictEqual(unknown, { _tag: "NotFound" })
      const id = yield* createDocument
      const member = recordingConnection()
      yield* join(id, member)
      assert.deepStrictEqual(yield* registry.remove(id), { _tag: "Deleted" })
      assert.deepStrictEqual(member.closed, [4410])
      assert.deepStrictEqual(yield* registry.remove(id), { _tag: "NotFound" })
      const [late] = yield* join(id, recordingConnection())
      assert.deepStrictEqual(late, { _tag: "Deleted" })
      assert.deepStrictEqual(yield* update(id, "op-x"), { _tag: "NotFound" })
    }).pipe(Effect.scoped, Effect.provide(registryLayer())))


  it.effect("stores waiting updates in one transaction (group commit) with contiguous seqs", () => {
    const batches: Array<number> = []
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => {
        batches.push(updates.length)
        return inner.append(id, updates)
      }
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      const a = recordingConnection()
      const [, session] = yield* join(id, a)
      const pending = []
      for (let i = 0; i < 50; i++) pending.push(yield* submit(session, a, `op-${i}`))
      const outcomes = yield* Effect.forEach(pending, Deferred.await)
      assert.deepStrictEqual(
        outcomes.map((o) => (o._tag === "Stored" ? o.seq : -1)),
        Array.from({ length: 50 }, (_, i) => i + 1)
      )
      assert.isBelow(batches.length, 50)
      assert.strictEqual(batches.reduce((a, b) => a + b, 0), 50)
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("a defect in one document's actor fails its in-flight commands; it recovers, others never notice", () => {
    let poisoned: string | undefined
    const storage = wrapStorage((inner) => ({
      append: (id, updates) =>
        updates.some((u) => u.opId === poisoned) ? Effect.die("injected defect") : inner.append(id, updates)
    }))
    return Effect.gen(function* () {
      const sick = yield* createDocument
      const healthy = yield* createDocument
      const watcher = recordingConnection()
      const other = recordingConnection()
      yield* join(sick, watcher)
      yield* join(healthy, other)
      assert.deepStrictEqual(yield* update(sick, "op-1"), { _tag: "Stored", seq: 1 })
      poisoned = "op-2"
      const failed = yield* update(sick, "op-2", 1)
      assert.strictEqual(failed._tag, "Failed")
      assert.deepStrictEqual(yield* update(healthy, "h-1"), { _tag: "Stored", seq: 1 })
      poisoned = undefined
      // The client retries with the same opId on the rebuilt actor.
      assert.deepStrictEqual(yield* update(sick, "op-2", 1), { _tag: "Stored", seq: 2 })
      assert.deepStrictEqual(
        watcher.of("remote_update").map((f) => f.seq),
        [1, 2]
      )
      assert.deepStrictEqual(other.of("remote_update").map((f) => f.seq), [1])
      assert.deepStrictEqual(other.closed, [])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("a member that leaves while its crashed actor cannot be rebuilt is no member of the rebuilt one", () => {
    let poisoned: string | undefined
    let down = false
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => (updates.some((u) => u.opId === poisoned) ? Effect.die("injected defect") : inner.append(id, updates)),
      get: (id, includeDeleted) => (down ? Effect.fail(new StorageError({ operation: "get", cause: "down" })) : inner.get(id, includeDeleted))
    }))
    return Effect.gen(function* () {
      const { id, a, b, membership } = yield* twoMembersOneLeaving
      poisoned = "op-1"
      assert.strictEqual((yield* update(id, "op-1"))._tag, "Failed", "the actor crashed: it is rebuilt on the next command")
      // a's leave is that command, and the document cannot be read: the leave is answered all the same.
      down = true
      yield* Scope.close(membership, Exit.void)
      down = false
      const c = recordingConnection()
      yield* join(id, c)
      const presence = (c.of("state")[0]?.presence as Array<{ clientId: string }>).map((entry) => entry.clientId)
      assert.deepStrictEqual(presence, [b.clientId], "a left")
      assert.deepStrictEqual(b.of("presence_leave").map((frame) => [frame.clientId, frame.reason]), [[a.clientId, "disconnect"]], "b was told")
      assert.deepStrictEqual(b.of("presence_join").map((frame) => frame.clientId), [c.clientId])
      assert.isFalse(a.of("presence_join").some((frame) => frame.clientId === c.clientId), "a is sent nothing more")
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("updates answered by supervision, by a failed lookup or for a missing document are counted once", () => {
    let failure: "defect" | "lookup" | undefined
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => failure === "defect" ? Effect.die("injected defect") : inner.append(id, updates),
      findByOpId: (id, opId) =>
        failure === "lookup" ? Effect.fail(new StorageError({ operation: "findByOpId", cause: "injected" })) : inner.findByOpId(id, opId)
    }))
    const count = (outcome: string) => Metrics.updates.unsafeValue(Metrics.tags({ outcome })).count as number
    return Effect.gen(function* () {
      const id = yield* createDocument
      const failed = count("failed")
      const stored = count("stored")
      const notFound = count("not_found")
      assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Stored", seq: 1 })
      // A crash: supervision answers the update.
      failure = "defect"
      assert.strictEqual((yield* update(id, "op-2", 1))._tag, "Failed")
      // A baseVersion ahead of the document is looked up in storage (a retry may be a duplicate); the lookup fails.
      failure = "lookup"
      assert.strictEqual((yield* update(id, "op-3", 9))._tag, "Failed")
      failure = undefined
      assert.strictEqual((yield* update("missing" as DocumentId, "op-4"))._tag, "NotFound")
      assert.strictEqual(count("failed") - failed, 2)
      assert.strictEqual(count("stored") - stored, 1)
      assert.strictEqual(count("not_found") - notFound, 1)
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("a command's reply is waited for whether it comes before or after the wait begins", () =>
    Effect.gen(function* () {
      let later: (() => void) | undefined
      // Read through a function: the loops below wait for the fake mailbox to set it.
      const pending = () => later
      const slotAnswering = (when: "at once" | "later") =>
        ({
          submit: (command: DocumentActor.Command) =>
            Effect.sync(() => {
              const reply = () => (command as DocumentActor.Join).reply({ _tag: "Joined", version: 7 })
              if (when === "at once") reply()
              else later = reply
            })
        }) as unknown as Slot
      const ask = (slot: Slot) =>
        askSlot<DocumentActor.JoinOutcome>(slot, (reply) => ({
          _tag: "Join",
          connection: recordingConnection(),
          activity: { last: 0 },
          since: undefined,
          reply
        }))
      assert.deepStrictEqual(yield* ask(slotAnswering("at once")), { _tag: "Joined", version: 7 })
      const waiting = yield* Effect.fork(ask(slotAnswering("later")))
      while (pending() === undefined) yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      pending()?.()
      assert.deepStrictEqual(yield* Fiber.join(waiting), { _tag: "Joined", version: 7 })
      // A wait interrupted (a REST request gone): the late reply is harmless.
      later = undefined
      const gone = yield* Effect.fork(ask(slotAnswering("later")))
      while (pending() === undefined) yield* Effect.yieldNow()
      yield* Fiber.interrupt(gone)
      pending()?.()
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(gone)))
    }))

  it("an update answered before supervision fails it is not counted again; one answered only by it is counted", () => {
    const count = () => Metrics.updates.unsafeValue(Metrics.tags({ outcome: "failed" })).count as number
    const replies: Array<string> = []
    const answered = { ...updateCommand(recordingConnection(), "op-1").command, reply: DocumentActor.once((o: DocumentActor.UpdateOutcome) => replies.push(o._tag)) }
    answered.reply({ _tag: "Stored", seq: 1 })
    const before = count()
    DocumentActor.fail(answered, "crash")
    assert.strictEqual(count() - before, 0)
    const waiting = { ...answered, reply: DocumentActor.once((o: DocumentActor.UpdateOutcome) => replies.push(o._tag)) }
    DocumentActor.fail(waiting, "crash")
    DocumentActor.fail(waiting, "crash")
    assert.strictEqual(count() - before, 1)
    assert.deepStrictEqual(replies, ["Stored", "Failed"])
  })

  it.effect("after a crash mid-broadcast, members are sent what they missed before anything else", () => {
    let crashAfterAppend = false
    const storage = wrapStorage((inner) => ({
      append: (id, updates) =>
        Effect.flatMap(inner.append(id, updates), (results) => (crashAfterAppend ? Effect.die("after commit") : Effect.succeed(results)))
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      const reader = recordingConnection()
      yield* join(id, reader)
      crashAfterAppend = true
      const crashed = yield* update(id, "op-1")
      assert.strictEqual(crashed._tag, "Failed")
      crashAfterAppend = false
      assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Duplicate", seq: 1 })
      assert.deepStrictEqual(yield* update(id, "op-2", 1), { _tag: "Stored", seq: 2 })
      assert.deepStrictEqual(reader.of("remote_update").map((f) => f.seq), [1, 2])
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("storage failures answer `internal` and nothing is acked; the document works again after", () => {
    let down = false
    const storage = wrapStorage((inner) => ({
      append: (id, updates) =>
        down ? Effect.fail(new StorageError({ operation: "append", cause: "down" })) : inner.append(id, updates)
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      down = true
      const failed = yield* update(id, "op-1")
      assert.strictEqual(failed._tag, "Failed")
      down = false
      assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Stored", seq: 1 })
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("a storage call that hangs past STORAGE_TIMEOUT_MS fails the update; nothing is acked, then it recovers", () => {
    let hang = false
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => (hang ? Effect.never : inner.append(id, updates))
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      const other = yield* createDocument
      hang = true
      const stuck = yield* Effect.fork(update(id, "op-1"))
      yield* TestClock.adjust(Duration.millis(9_999))
      assert.strictEqual(stuck.unsafePoll(), null, "still waiting before the timeout")
      yield* TestClock.adjust(Duration.millis(1))
      const outcome = yield* Fiber.join(stuck)
      assert.strictEqual(outcome._tag, "Failed")
      hang = false
      assert.deepStrictEqual(yield* update(other, "x"), { _tag: "Stored", seq: 1 })
      assert.deepStrictEqual(yield* update(id, "op-1"), { _tag: "Stored", seq: 1 })
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ storageTimeout: Duration.seconds(10) }, storage)))
  })

  it.effect("each storage call times out at its own deadline, also one started while an earlier call is timed", () => {
    const hangs = new Set<string>()
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => (updates.some((u) => hangs.has(u.opId)) ? Effect.never : inner.append(id, updates))
    }))
    return Effect.gen(function* () {
      const first = yield* createDocument
      const second = yield* createDocument
      hangs.add("slow-1")
      const stuck = yield* Effect.fork(update(first, "slow-1"))
      yield* TestClock.adjust(Duration.millis(4_000))
      assert.deepStrictEqual(yield* update(second, "quick"), { _tag: "Stored", seq: 1 })
      hangs.add("slow-2")
      const later = yield* Effect.fork(update(second, "slow-2", 1))
      yield* TestClock.adjust(Duration.millis(6_000))
      assert.strictEqual((yield* Fiber.join(stuck))._tag, "Failed", "the first fails at 10 s")
      assert.strictEqual(later.unsafePoll(), null, "the second, started at 4 s, still waits")
      yield* TestClock.adjust(Duration.millis(3_999))
      assert.strictEqual(later.unsafePoll(), null)
      yield* TestClock.adjust(Duration.millis(1))
      assert.strictEqual((yield* Fiber.join(later))._tag, "Failed", "and fails at 14 s")
    }).pipe(Effect.scoped, Effect.provide(registryLayer({ storageTimeout: Duration.seconds(10) }, storage)))
  })

  it.effect("a batch reported failed that commits later is relayed before the next one: no gap, tail in order", () => {
    // The first append is answered "failed" at once (a timeout) and really committed just before the next append.
    let late: Effect.Effect<unknown, StorageError> | undefined
    let calls = 0
    const storage = wrapStorage((inner) => ({
      append: (id, updates) => {
        if (calls++ === 0) {
          late = inner.append(id, updates)
          return Effect.fail(new StorageError({ operation: "append", cause: "no answer within 10 s" }))
        }
        return Effect.zipRight(late === undefined ? Effect.void : Effect.ignore(late), inner.append(id, updates))
      }
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      const writer = recordingConnection()
      const reader = recordingConnection()
      const [, session] = yield* join(id, writer)
      yield* join(id, reader)
      assert.strictEqual((yield* Deferred.await(yield* submit(session, writer, "op-1")))._tag, "Failed")
      assert.deepStrictEqual(yield* Deferred.await(yield* submit(session, writer, "op-2")), { _tag: "Stored", seq: 2 })
      assert.deepStrictEqual(reader.of("remote_update").map((f) => [f.seq, f.opId]), [[1, "op-1"], [2, "op-2"]])
      assert.deepStrictEqual(writer.of("remote_update").map((f) => [f.seq, f.opId]), [[1, "op-1"]], "its own late commit")
      assert.deepStrictEqual(yield* Deferred.await(yield* submit(session, writer, "op-1")), { _tag: "Duplicate", seq: 1 })
      for (const since of [undefined, 1]) {
        const late = recordingConnection()
        yield* join(id, late, since)
        assert.deepStrictEqual(
          (late.of("state")[0]?.updates as Array<{ seq: number; opId: string }>).map((u) => [u.seq, u.opId]),
          [[1, "op-1"], [2, "op-2"]].slice(since ?? 0)
        )
      }
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("joins come from memory after the first: storage is read once, every state equals the stored log", () => {
    const reads: Array<[number, number]> = []
    const storage = wrapStorage((inner) => ({
      updatesAfter: (id, after, limit) =>
        Effect.zipRight(Effect.sync(() => reads.push([after, limit])), inner.updatesAfter(id, after, limit))
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      // Stored before the document is loaded: its actor starts with an empty tail at version 5.
      yield* Effect.flatMap(DocumentStorage, (s) =>
        s.append(id, Array.from({ length: 5 }, (_, i) => ({ opId: `old-${i}`, actorId: "earlier", delta: delta(`old-${i}`).delta }))))
      const first = recordingConnection()
      const [, session] = yield* join(id, first)
      yield* Deferred.await(yield* submit(session, first, "live-1"))
      const late = recordingConnection()
      yield* join(id, late)
      const resumed = recordingConnection()
      yield* join(id, resumed, 4)
      assert.deepStrictEqual(reads, [[0, 5]], "only the first join read the log")
      const stored = yield* Effect.flatMap(DocumentStorage, (s) => s.updatesAfter(id, 0, 100))
      const expected = stored.map((u) => ({ seq: u.seq, opId: u.opId, actorId: u.actorId, deltaB64: Buffer.from(u.delta).toString("base64") }))
      assert.deepStrictEqual(first.of("state")[0]?.updates, expected.slice(0, 5))
      assert.deepStrictEqual(late.of("state")[0]?.updates, expected)
      assert.deepStrictEqual(resumed.of("state")[0]?.updates, expected.slice(4))
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("at most one actor per document under concurrent first joins", () => {
    let loads = 0
    const storage = wrapStorage((inner) => ({
      // Read once per load.
      latestSnapshot: (id) => Effect.zipRight(Effect.sync(() => loads++), inner.latestSnapshot(id))
    }))
    return Effect.gen(function* () {
      const id = yield* createDocument
      const fibers = yield* Effect.forEach(
        Array.from({ length: 20 }, () => recordingConnection()),
        (c) => Effect.fork(join(id, c)),
        { concurrency: "unbounded" }
      )
      yield* Fiber.joinAll(fibers)
      assert.strictEqual(loads, 1)
    }).pipe(Effect.scoped, Effect.provide(registryLayer({}, storage)))
  })

  it.effect("unloading serves what is queued, and also commands that arrive while it serves them", () => {
    // Every append waits at a gate of its own, opened by the test.
    const gates: Array<Deferred.Deferred<void>> = []
    const storage = wrapStorage((inner) => ({
      append: (id, updates) =>
        Effect.flatMap(Deferred.make<void>(), (gate) => {
          gates.push(gate)
          return Effect.zipRight(Deferred.await(gate), inner.append(id, updates))
        })
    }))
    const appends = (n: number) => Effect.repeat(Effect.yieldNow(), { until: () => gates.length >= n })
    return Effect.gen(function* () {
      const registryScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(registryLayer({}, storage), registryScope)
      const id = yield* Effect.provide(createDocument, context)
      const a = recordingConnection()
      const [, session] = yield* Effect.provide(join(id, a), context)
      const first = yield* submit(session, a, "op-1")
      yield* appends(1)
      // Queued behind the batch in hand when the registry starts closing.
      const queued = yield* submit(session, a, "op-2")
      const closing = yield* Effect.fork(Scope.close(registryScope, Exit.void))
      // Every fiber that can run runs (no timers involved): the close reaches the document, whose fiber is then
      // stopped after the batch in hand, so op-2 is left to the unloading.
      yield* Effect.repeatN(Effect.yieldNow(), 50)
      yield* Deferred.succeed(gates[0]!, undefined)
      yield* appends(2)
      // Arrives while the unloading document serves op-2.
      const late = yield* submit(session, a, "op-3")
      yield* Deferred.succeed(gates[1]!, undefined)
      yield* appends(3)
      yield* Deferred.succeed(gates[2]!, undefined)
      yield* Fiber.join(closing)
      assert.deepStrictEqual(
        yield* Effect.forEach([first, queued, late], (done) =>
          Effect.flatMap(Deferred.poll(done), (outcome) =>
            Option.isSome(outcome) ? outcome.value : Effect.succeed<DocumentActor.UpdateOutcome | "unanswered">("unanswered"))
        ),
        [{ _tag: "Stored", seq: 1 }, { _tag: "Stored", seq: 2 }, { _tag: "Stored", seq: 3 }]
      )
    }).pipe(Effect.scoped)
  })
  it.effect("a document's fiber interrupted before it ever ran: closing the registry serves the command it would have taken", () => {
    // Not the in-order path: an update goes through the mailbox, and starts the document's fiber.
    const storage = layerMemorySequential
    return Effect.gen(function* () {
      const registryScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(registryLayer({}, storage), registryScope)
      const id = yield* Effect.provide(createDocument, context)
      const a = recordingConnection()
      const b = recordingConnection()
      // The document's fibers (started on the runtime the first join's fiber gave it) report here.
      const started: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
      const [, session] = yield* Effect.provide(join(id, a), context).pipe(
        Effect.supervised(new FiberStartsWith((fiber) => started.push(fiber)))
      )
      yield* Effect.provide(join(id, b), context)
      yield* settle
      const before = started.length
      const { command, done } = updateCommand(a, "op-1")
      // Whether the fiber the update forks had ended when the update was answered (by the unloading, then).
      let forked: Fiber.RuntimeFiber<unknown, unknown> | undefined
      let answeredAfterItEnded: boolean | undefined
      const offered: DocumentActor.Update = {
        ...command,
        reply: (outcome) => {
          answeredAfterItEnded = forked !== undefined && forked.unsafePoll() !== null
          return command.reply(outcome)
        }
      }
      // A fresh run of this fiber: from here until the registry's close waits, it does not yield to the scheduler,
      // so the fiber the update forks has not run when the close reaches the document.
      yield* Effect.yieldNow()
      assert.isTrue(session.offer(offered), "into the parked mailbox")
      assert.strictEqual(started.length, before + 1, "the update forked the document's fiber")
      forked = started[before]
      yield* Scope.close(registryScope, Exit.void)
      const exit = forked?.unsafePoll()
      assert.isTrue(exit !== undefined && exit !== null && Exit.isInterrupted(exit), "the fiber the update forked was interrupted")
      assert.deepStrictEqual(
        yield* Effect.flatMap(Deferred.poll(done), (outcome) =>
          Option.isSome(outcome) ? outcome.value : Effect.succeed<DocumentActor.UpdateOutcome | "unanswered">("unanswered")),
        { _tag: "Stored", seq: 1 }
      )
      assert.isTrue(answeredAfterItEnded, "the update was served after the fiber ended, not by it")
      assert.deepStrictEqual(b.of("remote_update").map((frame) => frame.seq), [1])
      const stored = yield* Effect.flatMap(DocumentStorage, (s) => s.updatesAfter(id, 0, 10)).pipe(Effect.provide(context))
      assert.deepStrictEqual(stored.map((update) => update.opId), ["op-1"])
    }).pipe(Effect.scoped)
  })

  describe("on storage that commits a document's appends in order", () => {
    it.effect("a batch is sent while the one before it is stored; acks and relays stay in seq order", () => {
      const { appends, layer, oneInFlight, sent } = inOrderStorage()
      return Effect.gen(function* () {
        const { a, b, session, first } = yield* oneInFlight
        const second = yield* submit(session, a, "op-2")
        yield* sent(2)
        assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-1"], ["op-2"]], "op-2 sent before op-1 was stored")
        yield* appends[0]!.commit()
        yield* appends[1]!.commit()
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual(yield* Deferred.await(second), { _tag: "Stored", seq: 2 })
        assert.deepStrictEqual(b.of("remote_update").map((frame) => [frame.seq, frame.opId]), [[1, "op-1"], [2, "op-2"]])
        assert.deepStrictEqual(a.of("remote_update"), [])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    it.effect("a join waits until the batches before it are applied, and gets them in its state, not relayed", () => {
      const { appends, layer, oneInFlight } = inOrderStorage()
      return Effect.gen(function* () {
        const { id, first } = yield* oneInFlight
        const c = recordingConnection()
        const joining = yield* Effect.fork(join(id, c))
        yield* settle
        assert.strictEqual(joining.unsafePoll(), null, "the join waits for op-1")
        yield* appends[0]!.commit()
        const [outcome] = yield* Fiber.join(joining)
        assert.deepStrictEqual(outcome, { _tag: "Joined", version: 1 })
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual((c.of("state")[0]?.updates as Array<{ seq: number }>).map((update) => update.seq), [1])
        assert.deepStrictEqual(c.of("remote_update"), [])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    it.effect("a leave waits until the batches before it are applied: the others see the update, then the leave", () => {
      const { appends, layer, sent } = inOrderStorage()
      return Effect.gen(function* () {
        const { a, b, membership, session } = yield* twoMembersOneLeaving
        const first = yield* submit(session, a, "op-1")
        yield* sent(1)
        const leaving = yield* Effect.fork(Scope.close(membership, Exit.void))
        yield* settle
        assert.strictEqual(leaving.unsafePoll(), null, "the leave waits for op-1")
        assert.deepStrictEqual(b.of("presence_leave"), [])
        yield* appends[0]!.commit()
        yield* Fiber.join(leaving)
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual(b.frames.slice(-2).map((frame) => frame.type), ["remote_update", "presence_leave"])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    // The first batch fails while the second is in flight: the second is stored after it, and members see every
    // stored update once, in seq order (the first relayed from storage if it committed after all).
    for (
      const { name, outcome, stored } of [
        {
          name: "a batch reported failed that committed, with the next one in flight: members see each update once, in order",
          outcome: "fail after commit" as const,
          stored: [[1, "op-1"], [2, "op-2"]]
        },
        {
          name: "a failed batch with the next one in flight: the next is stored and relayed, nothing is skipped",
          outcome: "fail" as const,
          stored: [[1, "op-2"]]
        }
      ]
    ) {
      it.effect(name, () => {
        const { appends, layer, oneInFlight, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session, first } = yield* oneInFlight
          const second = yield* submit(session, a, "op-2")
          yield* sent(2)
          yield* appends[0]!.commit(outcome)
          yield* appends[1]!.commit()
          assert.strictEqual((yield* Deferred.await(first))._tag, "Failed")
          assert.deepStrictEqual(yield* Deferred.await(second), { _tag: "Stored", seq: stored.length })
          assert.deepStrictEqual(b.of("remote_update").map((frame) => [frame.seq, frame.opId]), stored)
          // The client retries op-1: a duplicate if it was stored, stored now if not.
          const retried = yield* submit(session, a, "op-1")
          yield* sent(3)
          yield* appends[2]!.commit()
          assert.deepStrictEqual(
            yield* Deferred.await(retried),
            outcome === "fail after commit" ? { _tag: "Duplicate", seq: 1 } : { _tag: "Stored", seq: 2 }
          )
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })
    }

    it.effect("unloading waits for the batches in flight: they are acked and relayed", () => {
      const { appends, layer, sent } = inOrderStorage()
      return Effect.gen(function* () {
        const registryScope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(registryLayer({}, layer), registryScope)
        const id = yield* Effect.provide(createDocument, context)
        const a = recordingConnection()
        const b = recordingConnection()
        const [, session] = yield* Effect.provide(join(id, a), context)
        yield* Effect.provide(join(id, b), context)
        const first = yield* submit(session, a, "op-1")
        yield* sent(1)
        const closing = yield* Effect.fork(Scope.close(registryScope, Exit.void))
        yield* settle
        assert.strictEqual(closing.unsafePoll(), null, "unloading waits for op-1")
        yield* appends[0]!.commit()
        yield* Fiber.join(closing)
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        assert.deepStrictEqual(b.of("remote_update").map((frame) => frame.seq), [1])
      }).pipe(Effect.scoped)
    })

    it.effect("after a crash, a batch the crashed actor had in flight is acked, and relayed by the rebuilt actor", () => {
      const { appends, layer, oneInFlight, poison } = inOrderStorage()
      return Effect.gen(function* () {
        const { id, a, b, session, first } = yield* oneInFlight
        // An update ahead of the document is looked up in storage: that lookup dies, and the actor with it.
        poison("op-x")
        const crashing = yield* submit(session, a, "op-x", 5)
        assert.strictEqual((yield* Deferred.await(crashing))._tag, "Failed")
        // A join loads a new actor (at version 0: op-1 is not stored yet).
        const c = recordingConnection()
        assert.deepStrictEqual((yield* join(id, c))[0], { _tag: "Joined", version: 0 })
        yield* appends[0]!.commit()
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        yield* settle
        for (const member of [b, c]) assert.deepStrictEqual(member.of("remote_update").map((frame) => frame.seq), [1])
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    it.effect("while commands wait for a batch in flight, the mailbox fills and senders wait; batches stay within MAX_BATCH_SIZE", () => {
      const { appends, layer, oneInFlight, sent } = inOrderStorage()
      return Effect.gen(function* () {
        const { a, session, first } = yield* oneInFlight
        // A presence message waits for op-1, and so does everything after it.
        yield* session.submit({ _tag: "Presence", connection: a, state: { cursor: 1 } })
        let accepted = 0
        const senders = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => `op-${i + 2}`), (opId) =>
          Effect.fork(Effect.flatMap(submit(session, a, opId), (done) => {
            accepted++
            return Deferred.await(done)
          })))
        yield* settle
        assert.strictEqual(accepted, 2, "the mailbox (capacity 2) took two; the other senders wait")
        assert.strictEqual(appends.length, 1, "nothing more is sent while op-1 is in flight and the presence waits")
        yield* appends[0]!.commit()
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        for (let n = 1; n < 20 && appends.length < 20; n++) {
          yield* sent(n + 1)
          if (appends.length > n) yield* appends[n]!.commit()
        }
        const outcomes = yield* Effect.forEach(senders, Fiber.join)
        assert.deepStrictEqual(outcomes.map((outcome) => outcome._tag === "Stored" ? outcome.seq : -1), Array.from({ length: 10 }, (_, i) => i + 2))
        assert.isAtMost(Math.max(...appends.map((append) => append.opIds.length)), 2, "no batch beyond MAX_BATCH_SIZE")
      }).pipe(Effect.scoped, Effect.provide(registryLayer({ mailboxCapacity: 2, maxBatchSize: 2 }, layer)))
    })

    it.effect("a crash while the actor serves the commands that waited answers every one of them", () => {
      const { appends, layer, oneInFlight, poison, storeNext } = inOrderStorage()
      return Effect.gen(function* () {
        const { a, session, first } = yield* oneInFlight
        yield* session.submit({ _tag: "Presence", connection: a, state: { cursor: 1 } })
        // Ahead of the document: looked up in storage, and that lookup dies.
        poison("op-x")
        const crashing = yield* submit(session, a, "op-x", 5)
        const after = yield* submit(session, a, "op-y")
        // The three wait inside the actor for op-1; once it is stored they are served, and op-x crashes the actor.
        yield* settle
        yield* appends[0]!.commit()
        yield* settle
        const answered = (done: Deferred.Deferred<DocumentActor.UpdateOutcome>) =>
          Effect.map(Deferred.poll(done), (outcome) => (Option.isSome(outcome) ? "answered" : "unanswered"))
        assert.deepStrictEqual(yield* Effect.forEach([first, crashing, after], answered), ["answered", "answered", "answered"])
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        assert.strictEqual((yield* Deferred.await(crashing))._tag, "Failed")
        assert.strictEqual((yield* Deferred.await(after))._tag, "Failed", "the command after the crash is answered too")
        // The rebuilt actor goes on.
        poison(undefined)
        assert.deepStrictEqual(yield* storeNext(session, a, "op-y", 1), { _tag: "Stored", seq: 2 })
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    it.effect("a retry of a batch that failed but committed later is acked as a duplicate and relayed, with no gap", () => {
      const { appends, layer, oneInFlight, storeNext } = inOrderStorage()
      return Effect.gen(function* () {
        const { id, a, b, session, first } = yield* oneInFlight
        // Reported failed (a timeout): the actor catches up and finds nothing stored yet.
        yield* appends[0]!.commit("fail")
        assert.strictEqual((yield* Deferred.await(first))._tag, "Failed")
        yield* settle
        // Then the timed-out transaction commits after all.
        const storage = yield* DocumentStorage
        yield* storage.append(id, [{ opId: "op-1", actorId: a.actorId, ...delta("op-1") }])
        assert.deepStrictEqual(yield* storeNext(session, a, "op-1"), { _tag: "Duplicate", seq: 1 })
        yield* settle
        assert.deepStrictEqual(b.of("remote_update").map((frame) => [frame.seq, frame.opId]), [[1, "op-1"]])
        // The document goes on from seq 2.
        assert.deepStrictEqual(yield* storeNext(session, a, "op-2", 1), { _tag: "Stored", seq: 2 })
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })
    it.effect("a leave failed by a crash still ends the membership: the rebuilt actor sends that connection nothing", () => {
      const { appends, layer, oneInFlight, poison, storeNext } = inOrderStorage()
      return Effect.gen(function* () {
        const { a, b, session, first } = yield* oneInFlight
        // Behind op-1, in one batch: a presence message, an update whose lookup dies, then b's leave (as the
        // connection's scope queues it when the socket closes).
        yield* session.submit({ _tag: "Presence", connection: a, state: { cursor: 1 } })
        poison("op-x")
        yield* submit(session, a, "op-x", 5)
        const left = yield* Deferred.make<void>()
        yield* session.submit({ _tag: "Leave", connection: b, reply: DocumentActor.once<void>(() => Deferred.unsafeDone(left, Exit.void)) })
        yield* settle
        yield* appends[0]!.commit()
        yield* Deferred.await(left)
        assert.deepStrictEqual(yield* Deferred.await(first), { _tag: "Stored", seq: 1 })
        poison(undefined)
        assert.deepStrictEqual(yield* storeNext(session, a, "op-2", 1), { _tag: "Stored", seq: 2 })
        assert.deepStrictEqual(b.of("remote_update").map((frame) => frame.seq), [1], "nothing after its leave")
        assert.deepStrictEqual(a.of("presence_leave").map((frame) => frame.clientId), [b.clientId], "a was told b left")
      }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
    })

    describe("commands the actor takes at once, while its fiber waits for work", () => {
      /** A document with members a and b, its actor loaded and its fiber waiting. */
      const members = Effect.zipLeft(twoMembers, settle)
      const seqs = (connection: { readonly of: (type: string) => Array<Record<string, unknown>> }) =>
        connection.of("remote_update").map((frame) => frame.seq)
      /** Every update acked with seqs 1, 2, ... in order, and relayed to `reader` in that order. */
      const storedInOrder = (
        updates: ReadonlyArray<{ readonly done: Deferred.Deferred<DocumentActor.UpdateOutcome> }>,
        reader?: DocumentActor.Connection & { readonly of: (type: string) => Array<Record<string, unknown>> }
      ) =>
        Effect.gen(function* () {
          const expected = updates.map((_, i) => i + 1)
          const outcomes = yield* Effect.forEach(updates, ({ done }) => Deferred.await(done))
          assert.deepStrictEqual(outcomes, expected.map((seq) => ({ _tag: "Stored", seq })))
          if (reader !== undefined) assert.deepStrictEqual(seqs(reader), expected)
        })

      it.effect("updates skip the mailbox, and those taken before the microtasks run go as one batch", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          const updates = Array.from({ length: 5 }, (_, i) => updateCommand(a, `op-${i + 1}`))
          // A mailbox of capacity 1 would have taken one of them.
          assert.deepStrictEqual(updates.map(({ command }) => session.offer(command)), [true, true, true, true, true])
          yield* sent(1)
          assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-1", "op-2", "op-3", "op-4", "op-5"]])
          yield* appends[0]!.commit()
          yield* storedInOrder(updates, b)
        }).pipe(Effect.scoped, Effect.provide(registryLayer({ mailboxCapacity: 1 }, layer)))
      })

      it.effect("a batch's outcome is applied in the storage's callback: acks and relays go out before it returns", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          const first = updateCommand(a, "op-1")
          assert.isTrue(session.offer(first.command))
          yield* sent(1)
          yield* appends[0]!.commit()
          // No fiber has run since the commit.
          assert.isTrue(yield* Deferred.isDone(first.done), "acked in the callback")
          assert.deepStrictEqual(seqs(b), [1])
          assert.deepStrictEqual(yield* Deferred.await(first.done), { _tag: "Stored", seq: 1 })
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a presence message is relayed at once when nothing is in flight", () => {
        const { layer } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          assert.isTrue(session.offer({ _tag: "Presence", connection: a, state: { cursor: 7 } }))
          assert.deepStrictEqual(b.of("presence").map((frame) => frame.state), [{ cursor: 7 }])
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("batches taken at once stay within MAX_BATCH_SIZE, and the rest follows in order through the mailbox", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          const updates = Array.from({ length: 5 }, (_, i) => updateCommand(a, `op-${i + 1}`))
          for (const { command } of updates) assert.isTrue(session.offer(command))
          for (let n = 0; n < 3; n++) {
            yield* sent(n + 1)
            yield* appends[n]!.commit()
          }
          assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-1", "op-2"], ["op-3", "op-4"], ["op-5"]])
          yield* storedInOrder(updates, b)
        }).pipe(Effect.scoped, Effect.provide(registryLayer({ maxBatchSize: 2 }, layer)))
      })

      it.effect("at most 8 batches are in flight: the next update waits for the oldest outcome", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, session } = yield* members
          const updates = Array.from({ length: 9 }, (_, i) => updateCommand(a, `op-${i + 1}`))
          // One per turn: each is a batch of its own.
          for (const [i, { command }] of updates.entries()) {
            assert.isTrue(session.offer(command))
            yield* sent(i + 1)
          }
          assert.strictEqual(appends.length, 8)
          yield* appends[0]!.commit()
          yield* sent(9)
          assert.deepStrictEqual(appends[8]?.opIds, ["op-9"])
          for (const append of appends.slice(1)) yield* append.commit()
          yield* storedInOrder(updates)
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a reply that throws is contained: the storage's callback never sees it, and the document goes on", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          const throwing: DocumentActor.Update = {
            ...updateCommand(a, "op-1").command,
            reply: () => {
              throw new Error("injected defect")
            }
          }
          assert.isTrue(session.offer(throwing))
          yield* sent(1)
          // Applied at once, the ack throws (a crash), and so does answering it again from the outcome.
          yield* appends[0]!.commit()
          const next = yield* submit(session, a, "op-2", 1)
          yield* sent(2)
          yield* appends[1]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(next), { _tag: "Stored", seq: 2 })
          assert.deepStrictEqual(seqs(b), [1, 2])
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("an update whose baseVersion is ahead is not taken at once: it is looked up and answered invalid_base_version", () => {
        const { appends, layer } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, session } = yield* members
          const ahead = updateCommand(a, "op-ahead", 5)
          assert.isTrue(session.offer(ahead.command))
          assert.deepStrictEqual(yield* Deferred.await(ahead.done), { _tag: "InvalidBaseVersion", version: 0 })
          assert.strictEqual(appends.length, 0, "nothing sent to storage")
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a command that cannot be taken at once keeps its place: what comes after it waits for it", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          const first = updateCommand(a, "op-1")
          const second = updateCommand(a, "op-2")
          // The presence message waits for op-1 (it goes through the mailbox), and op-2 behind it.
          assert.isTrue(session.offer(first.command))
          assert.isTrue(session.offer({ _tag: "Presence", connection: a, state: { cursor: 1 } }))
          assert.isTrue(session.offer(second.command))
          yield* sent(1)
          yield* settle
          assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-1"]])
          yield* appends[0]!.commit()
          yield* sent(2)
          yield* appends[1]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(second.done), { _tag: "Stored", seq: 2 })
          assert.deepStrictEqual(
            b.frames.filter((frame) => frame.type !== "presence_join" && frame.type !== "state").map((frame) => frame.type === "remote_update" ? frame.seq : frame.type),
            [1, "presence", 2]
          )
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a defect while applying an outcome at once is a crash: the update is acked, the rebuilt actor relays it", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const id = yield* createDocument
          const a = recordingConnection()
          const recorded = recordingConnection()
          // b's next send throws (a bug in a connection), once.
          let armed = false
          const b: typeof recorded = {
            ...recorded,
            send: (frame) => {
              if (armed) {
                armed = false
                throw new Error("injected defect")
              }
              recorded.send(frame)
            }
          }
          const [, session] = yield* join(id, a)
          yield* join(id, b)
          yield* settle
          const first = updateCommand(a, "op-1")
          assert.isTrue(session.offer(first.command))
          yield* sent(1)
          armed = true
          yield* appends[0]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(first.done), { _tag: "Stored", seq: 1 })
          assert.deepStrictEqual(seqs(b), [], "the relay to b failed")
          // The next command loads a new actor, which sends b what it missed first.
          const next = yield* submit(session, a, "op-2", 1)
          yield* sent(2)
          yield* appends[1]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(next), { _tag: "Stored", seq: 2 })
          assert.deepStrictEqual(seqs(b), [1, 2])
          assert.deepStrictEqual(seqs(a), [])
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a crash halfway through applying a batch counts each of its updates once in the metrics", () => {
        const { appends, layer, sent } = inOrderStorage()
        const storedCount = () => Metrics.updates.unsafeValue(Metrics.tags({ outcome: "stored" })).count as number
        return Effect.gen(function* () {
          const id = yield* createDocument
          const a = recordingConnection()
          const recorded = recordingConnection()
          // b's second relay from now on throws (a bug in a connection): after op-1 is acked, before op-2 is.
          let relays: number | undefined
          const b: typeof recorded = {
            ...recorded,
            send: (frame) => {
              if (relays !== undefined && ++relays === 2) throw new Error("injected defect")
              recorded.send(frame)
            }
          }
          const [, session] = yield* join(id, a)
          yield* join(id, b)
          yield* settle
          const before = storedCount()
          // One socket read: one batch of two.
          const first = updateCommand(a, "op-1")
          const second = updateCommand(a, "op-2")
          assert.isTrue(session.offer(first.command))
          assert.isTrue(session.offer(second.command))
          yield* sent(1)
          assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-1", "op-2"]])
          relays = 0
          yield* appends[0]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(first.done), { _tag: "Stored", seq: 1 })
          assert.deepStrictEqual(yield* Deferred.await(second.done), { _tag: "Stored", seq: 2 })
          assert.deepStrictEqual(seqs(b), [1], "the relay of op-2 to b threw")
          assert.strictEqual(storedCount() - before, 2, "op-1 was counted when acked, and not again after the crash")
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a batch answered from its outcome after a crash answers and counts only what was not answered yet, once", () =>
        Effect.gen(function* () {
          const storedCount = () => Metrics.updates.unsafeValue(Metrics.tags({ outcome: "stored" })).count as number
          const a = recordingConnection()
          const updates = ["op-1", "op-2", "op-3"].map((opId) => updateCommand(a, opId))
          const replies: Array<string> = []
          const pending = updates.map(({ command }) => ({ ...command, reply: (o: DocumentActor.UpdateOutcome) => {
            replies.push(command.opId)
            return command.reply(o)
          } }))
          // op-1 was answered before the crash.
          const batch = { pending, started: 0n, committing: 0n, answered: 1 }
          const exit = Exit.succeed(pending.map((u, i) => ({ opId: u.opId, seq: i + 1, duplicate: false })))
          const before = storedCount()
          DocumentActor.answerFrom(exit, batch)
          DocumentActor.answerFrom(exit, batch)
          assert.deepStrictEqual(replies, ["op-2", "op-3"])
          assert.strictEqual(storedCount() - before, 2)
          assert.deepStrictEqual(yield* Deferred.await(updates[2]!.done), { _tag: "Stored", seq: 3 })
        }))

      it.effect("an update storage returns no result for is answered failed, not left waiting", () => {
        const { appends, layer, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, session } = yield* members
          const first = updateCommand(a, "op-1")
          const second = updateCommand(a, "op-2")
          assert.isTrue(session.offer(first.command))
          assert.isTrue(session.offer(second.command))
          yield* sent(1)
          yield* appends[0]!.commit("no result for the last")
          assert.deepStrictEqual(yield* Deferred.await(first.done), { _tag: "Stored", seq: 1 })
          assert.strictEqual((yield* Deferred.await(second.done))._tag, "Failed")
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("a defect while sending the batch taken at once is a crash: its updates are answered, the next actor goes on", () => {
        const { appends, layer, poison, sent } = inOrderStorage()
        return Effect.gen(function* () {
          const { a, b, session } = yield* members
          poison("op-boom")
          const boom = updateCommand(a, "op-boom")
          assert.isTrue(session.offer(boom.command))
          assert.strictEqual((yield* Deferred.await(boom.done))._tag, "Failed")
          poison(undefined)
          const next = yield* submit(session, a, "op-2")
          yield* sent(1)
          assert.deepStrictEqual(appends.map((append) => append.opIds), [["op-2"]])
          yield* appends[0]!.commit()
          assert.deepStrictEqual(yield* Deferred.await(next), { _tag: "Stored", seq: 1 })
          assert.deepStrictEqual(seqs(b), [1])
        }).pipe(Effect.scoped, Effect.provide(registryLayer({}, layer)))
      })

      it.effect("an update taken at once and not sent yet when the registry closes is sent by the unloading: stored, acked and relayed", () =>
        Effect.gen(function* () {
          const registryScope = yield* Scope.make()
          // memory:// commits in order: updates are taken at once, and sent by a microtask's flush.
          const context = yield* Layer.buildWithScope(registryLayer(), registryScope)
          const id = yield* Effect.provide(createDocument, context)
          const a = recordingConnection()
          const b = recordingConnection()
          const starts = new FiberStarts()
          const [, session] = yield* Effect.provide(join(id, a), context).pipe(Effect.supervised(starts))
          yield* Effect.provide(join(id, b), context)
          yield* settle
          const before = starts.started
          const { command, done } = updateCommand(a, "op-1")
          const storage = Context.get(context, DocumentStorage)
          // A fresh run of this fiber: from here until the unloading waits for the outcome, it does not yield to the
          // scheduler, so no microtask (the flush queued for op-1 among them) runs before the document's finalizer.
          yield* Effect.yieldNow()
          // Queued before op-1's flush, so it runs first: was op-1 stored before any microtask ran (by the finalizer)?
          let storedBeforeMicrotasks: boolean | undefined
          queueMicrotask(() => {
            // memory:// reads without waiting; were that to change, this fails the assertion below, not the run.
            const read = Effect.runSyncExit(storage.updatesAfter(id, 0, 10))
            storedBeforeMicrotasks = Exit.isSuccess(read) && read.value.length === 1
          })
          assert.isTrue(session.offer(command))
          assert.strictEqual(starts.started, before, "taken at once, without a fiber")
          yield* Scope.close(registryScope, Exit.void)
          // Else the microtask's flush sent it, and this test no longer shows what the finalizer's flush does.
          assert.isTrue(storedBeforeMicrotasks, "sent by the unloading itself, before any microtask ran")
          assert.deepStrictEqual(
            yield* Effect.flatMap(Deferred.poll(done), (outcome) =>
              Option.isSome(outcome) ? outcome.value : Effect.succeed<DocumentActor.UpdateOutcome | "unanswered">("unanswered")),
            { _tag: "Stored", seq: 1 }
          )
          // Applied by the actor before it unloaded: an outcome that came back after would only be acked.
          assert.deepStrictEqual(seqs(b), [1], "relayed to the other member")
          const stored = yield* Effect.flatMap(DocumentStorage, (s) => s.updatesAfter(id, 0, 10)).pipe(Effect.provide(context))
          assert.deepStrictEqual(stored.map((update) => update.opId), ["op-1"])
        }).pipe(Effect.scoped))
    })
  })
})
