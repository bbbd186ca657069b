/**
 * DocumentRegistry: at most one DocumentActor per document, loaded lazily and unloaded after DOCUMENT_IDLE_MS with
 * no connection and no message. Each loaded document is a mailbox (bounded, see `Mailbox`) drained by one fiber at a
 * time, which runs the actor and supervises it: a defect fails only the commands in flight, and the next command runs
 * on an actor rebuilt from storage. The fiber exists only while there is work: the mailbox's next command starts
 * another. While there is none and nothing is queued, a command that needs nothing but
 * the actor's state (an update to send, a batch's outcome: see `DocumentActor.now`) is handled at once, in the
 * socket's or the storage's callback, under the same supervision: that is the hot path, with no fiber and no Effect.
 */
import { Cause, type Clock, Context, Duration, Effect, Equal, Exit, Fiber, FiberRef, FiberRefs, Layer, Option, Runtime, type Scheduler, Scope } from "effect"
import { ServerConfig } from "../Config.js"
import type { DocumentId } from "../Domain/Document.js"
import { DocumentStorage, withTimeout } from "../Storage/DocumentStorage.js"
import * as DocumentActor from "./DocumentActor.js"
import * as IdleWatch from "./IdleWatch.js"
import * as Mailbox from "./Mailbox.js"
import * as Metrics from "./Metrics.js"

/** A connection's handle on a document it joined. */
export interface Session {
  /**
   * Hands a command to the document's actor at once when it can take it (see `DocumentActor.now`), else puts it in
   * the document's mailbox, waiting while the mailbox is full.
   */
  readonly submit: (command: DocumentActor.Command) => Effect.Effect<void>
  /**
   * `submit` without an Effect (a socket's frames, in its message callback): false when the actor did not take the
   * command at once and the mailbox is full, so that it was not taken at all.
   */
  readonly offer: (command: DocumentActor.Command) => boolean
  /** Puts commands in the document's mailbox in order, in one offer, waiting while the mailbox is full. */
  readonly submitAll: (commands: Iterable<DocumentActor.Command>) => Effect.Effect<void>
  /** Records that the client sent a message (presence idleness). Cheap: call it for every frame. */
  readonly touch: () => void
}

/** An update as REST submits it. */
export interface UpdateInput {
  readonly opId: string
  readonly baseVersion: number
  readonly actorId: string
  readonly delta: Uint8Array
  readonly deltaB64: string
}

/** A connection's membership of a document, as `enter` gives it. */
export interface Membership {
  /** Leaves (on `Joined`: after every command the connection submitted is served) and lets go of the document; once. */
  leave(): Effect.Effect<void>
}

/** What `enter` gives: the outcome, the session, and the membership to end when the connection ends. */
export type Entered = readonly [DocumentActor.JoinOutcome, Session, Membership]

export interface DocumentRegistryShape {
  /**
   * Joins a document for the lifetime of the current scope. On `Joined`, `state` has been sent to the connection
   * and every later event follows; when the scope closes, the connection leaves after every command it submitted
   * has been served. Any other outcome means the connection did not join.
   */
  readonly join: (
    documentId: DocumentId,
    connection: DocumentActor.Connection,
    since: number | undefined
  ) => Effect.Effect<readonly [DocumentActor.JoinOutcome, Session], never, Scope.Scope>
  /**
   * `join` for a connection that ends itself rather than with a scope (the WebSocket route's): run
   * `membership.leave()` when the connection ends (on `Joined` it leaves, after every command it submitted has been
   * served, and lets go of the document; on any other outcome it does nothing). A plain object to keep: a scope and
   * its finalizer cost a connection ~1 KB for its lifetime. `keep`, if given, runs with a `Joined` membership
   * before `enter` returns, uninterruptibly: a caller that may be interrupted stores the membership there (an
   * interruption after `enter` returns would otherwise drop it, and the document would stay held for ever).
   * Interrupted before that, while the actor has not answered, its Join is abandoned (an actor that has not served
   * it drops it) and it lets go; if the actor had just made the member, it leaves first.
   */
  readonly enter: (
    documentId: DocumentId,
    connection: DocumentActor.Connection,
    since: number | undefined,
    keep?: (membership: Membership) => Effect.Effect<void>
  ) => Effect.Effect<Entered>
  /** Submits an update (REST): ordered, deduplicated and broadcast like a socket update. */
  readonly update: (documentId: DocumentId, update: UpdateInput) => Effect.Effect<DocumentActor.UpdateOutcome>
  /** Reads updates after a seq, in the document's order. */
  readonly read: (documentId: DocumentId, after: number, limit: number) => Effect.Effect<DocumentActor.ReadOutcome>
  /** Soft-deletes a document and closes its connections with 4410. */
  readonly remove: (documentId: DocumentId) => Effect.Effect<DocumentActor.DeleteOutcome>
  /** Ids of the documents loaded in memory now. */
  readonly loaded: Effect.Effect<ReadonlyArray<DocumentId>>
}

export class DocumentRegistry extends Context.Tag("docsync/DocumentRegistry")<DocumentRegistry, DocumentRegistryShape>() {}

/** @internal Exported for tests (`askSlot`). */
export interface Slot {
  readonly mailbox: Mailbox.Mailbox<DocumentActor.Command>
  /** `Session.offer`: handled at once when the actor can (see `DocumentActor.now`), else into the mailbox if it has room. */
  readonly offer: (command: DocumentActor.Command) => boolean
  /** `Session.submit`: handled at once when the actor can, else into the mailbox, waiting while it is full. */
  readonly submit: (command: DocumentActor.Command) => Effect.Effect<void>
  /**
   * Tells the slot's presence idleness that a member joined, active since `activeSince` (its session's first
   * activity time): the document is checked by then + PRESENCE_IDLE_MS (a document with no member is not checked).
   */
  readonly joined: (activeSince: number) => void
}

export const make: Effect.Effect<DocumentRegistryShape, never, Scope.Scope | ServerConfig | DocumentStorage> = Effect.gen(
  function* () {
    const config = yield* ServerConfig
    const storage = yield* withTimeout(yield* DocumentStorage, config.storageTimeout)
    const idleMillis = Duration.toMillis(config.presenceIdle)
    const settings: DocumentActor.ActorSettings = {
      snapshotEvery: config.snapshotEvery,
      snapshotRequestTimeoutMillis: Duration.toMillis(config.snapshotRequestTimeout),
      presenceIdleMillis: idleMillis,
      logTailBytes: config.logTailBytes,
      maxBatchSize: config.maxBatchSize
    }
    // Made before the documents, so released after them.
    const idleWatch = yield* IdleWatch.make
    // A document's context is only what it uses: the storage (and its scope). With `provideService` each loaded
    // document kept a copy of the whole server's Context (~1 KB); see `acquire` for the first caller's.
    const storageContext = Context.make(DocumentStorage, storage)
    const documents = yield* makeDocuments(
      (documentId, scope, scheduler) =>
        makeSlot(documentId, settings, config.mailboxCapacity, idleMillis, idleWatch, scheduler).pipe(
          Effect.mapInputContext(() => Context.add(storageContext, Scope.Scope, scope))
        ),
      Duration.toMillis(config.documentIdle),
      idleWatch
    )

    /** Runs a command in the document's order and waits for its reply. */
    const ask = <A>(documentId: DocumentId, command: (reply: (outcome: A) => boolean) => DocumentActor.Command) =>
      Effect.acquireUseRelease(documents.acquire(documentId), (loaded) => askSlot(loaded.slot, command), documents.release)

    // The closures made here die with the join: a joined connection keeps only its `Joined` (three references).
    const enter: DocumentRegistryShape["enter"] = (documentId, connection, since, keep) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(documents.acquire(documentId), (loaded) => {
          const asked: AskedJoin = { abandoned: false, joined: false }
          return Effect.flatMap(
            Effect.onExit(
              restore(Effect.flatMap(Effect.clock, (clock) => {
                const session = new MemberSession(loaded.slot, clock)
                return Effect.map(askJoin(loaded.slot, connection, session, since, asked), (outcome) => [outcome, session] as const)
              })),
              (exit) => {
                if (Exit.isSuccess(exit)) return exit.value[0]._tag === "Joined" ? Effect.void : documents.release(loaded)
                // Interrupted (or dead) while it waited: its Join is abandoned, so the actor drops it rather than make
                // a member nobody would leave for. If the actor had made the member already (it does that and sets
                // `joined` in one synchronous step), a Leave after it takes it out.
                asked.abandoned = true
                if (!asked.joined) return documents.release(loaded)
                return Effect.ensuring(leaveSlot(loaded.slot, connection), documents.release(loaded))
              }
            ),
            ([outcome, session]): Effect.Effect<Entered> => {
              if (outcome._tag !== "Joined") return Effect.succeed([outcome, session, notJoined] as const)
              Metrics.add(Metrics.connections, 1)
              loaded.slot.joined(session.last)
              const membership = new Joined(documents, loaded, connection)
              const entered = [outcome, session, membership] as const
              return keep === undefined ? Effect.succeed(entered) : Effect.as(keep(membership), entered)
            }
          )
        }))

    return {
      join: (documentId, connection, since) =>
        Effect.flatMap(Effect.scope, (scope) =>
          Effect.map(
            // On a scope closed meanwhile the leave runs at once.
            enter(documentId, connection, since, (membership) => Scope.addFinalizer(scope, membership.leave())),
            ([outcome, session]) => [outcome, session] as const
          )),
      enter,
      update: (documentId, update) =>
        ask<DocumentActor.UpdateOutcome>(documentId, (reply) => ({ _tag: "Update", origin: undefined, ...update, reply })),
      read: (documentId, after, limit) =>
        ask<DocumentActor.ReadOutcome>(documentId, (reply) => ({ _tag: "ReadUpdates", after, limit, reply })),
      remove: (documentId) => ask<DocumentActor.DeleteOutcome>(documentId, (reply) => ({ _tag: "Delete", reply })),
      loaded: Effect.sync(() => documents.keys())
    }
  }
)

/** A document loaded in memory: its slot, in a scope of its own, and how many hold it. @internal */
export interface Loaded {
  readonly documentId: DocumentId
  readonly slot: Slot
  readonly scope: Scope.CloseableScope
  /** Joined connections (and connections joining) and REST calls in progress. */
  holders: number
  /** While nobody holds it: when it unloads. */
  idleUntil: number
  /** Its entry on the IdleWatch while nobody holds it. */
  readonly unloadCheck: IdleWatch.Watched
}

/** The loaded documents. @internal */
export interface Documents {
  /** The document's slot, loaded now if it is not (at most one per document), held until `release`. */
  readonly acquire: (documentId: DocumentId) => Effect.Effect<Loaded>
  /** Lets go of a hold; the last one leaves the document loaded for `idleMillis` more, then unloads it. */
  readonly release: (loaded: Loaded) => Effect.Effect<void>
  readonly keys: () => ReadonlyArray<DocumentId>
}

/**
 * The loaded documents, each a slot in a scope of its own, counted by who holds it: a connection for its lifetime,
 * a REST call for the call. When the last hold goes, the document stays `idleMillis` (checked on the IdleWatch)
 * and its scope is then closed, in a fiber of its own: the fiber stops after the batch in hand and whatever is
 * still queued is served (see `makeSlot`). Closing the registry's scope closes every document's, one at a time, and
 * waits for the unloads in progress. (An `RcMap` did this until the twelfth round: per document it kept a copy of
 * the server's Context and a scope, and per connection a finalizer holding its lookup's generator, ~1 KB.)
 *
 * A slot is made synchronously (`makeSlot` never suspends, run with `Runtime.runSync`) with the FiberRefs of the
 * first `acquire`'s fiber, as RcMap's lookup was, in one step from the look-up: concurrent first acquires of one
 * document therefore cannot make two.
 */
const makeDocuments = (
  makeSlotFor: (documentId: DocumentId, scope: Scope.Scope, scheduler: Scheduler.Scheduler) => Effect.Effect<Slot>,
  idleMillis: number,
  idleWatch: IdleWatch.IdleWatch
): Effect.Effect<Documents, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const loaded = new Map<DocumentId, Loaded>()
    const unloading = new Set<Fiber.RuntimeFiber<void>>()
    let closed = false
    const registryRuntime = yield* Effect.runtime<never>()

    /** Takes the document out of the map and closes its scope: the document's finalizers flush and serve the rest. */
    const unload = (entry: Loaded): void => {
      loaded.delete(entry.documentId)
      const fiber = Runtime.runFork(registryRuntime)(Scope.close(entry.scope, Exit.void))
      unloading.add(fiber)
      fiber.addObserver(() => unloading.delete(fiber))
    }

    const load = (runtime: Runtime.Runtime<never>, scheduler: Scheduler.Scheduler, documentId: DocumentId): Loaded => {
      const scope = Runtime.runSync(runtime)(Scope.make())
      let slot: Slot
      try {
        slot = Runtime.runSync(runtime)(makeSlotFor(documentId, scope, scheduler))
      } catch (defect) {
        Runtime.runFork(runtime)(Scope.close(scope, Exit.die(defect)))
        throw defect
      }
      const entry: Loaded = {
        documentId,
        slot,
        scope,
        holders: 1,
        idleUntil: 0,
        unloadCheck: {
          annotations: { documentId },
          check: (now) => {
            // Held again, or unloaded already (the registry closing): nothing to do until the next release.
            if (entry.holders > 0 || loaded.get(documentId) !== entry) return undefined
            if (now < entry.idleUntil) return entry.idleUntil
            unload(entry)
            return undefined
          }
        }
      }
      loaded.set(documentId, entry)
      return entry
    }

    const held = (documentId: DocumentId): Loaded | undefined => {
      const found = loaded.get(documentId)
      if (found !== undefined) found.holders++
      return found
    }

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        closed = true
        for (const entry of [...loaded.values()]) {
          // Unloaded meanwhile by its idle check (awaited below).
          if (loaded.get(entry.documentId) !== entry) continue
          loaded.delete(entry.documentId)
          yield* Scope.close(entry.scope, Exit.void)
        }
        yield* Fiber.awaitAll([...unloading])
      })
    )

    return {
      // One synchronous step from the look-up to the map's new entry: nothing can come between.
      acquire: (documentId) =>
        Effect.withFiberRuntime((fiber) => {
          if (closed) return Effect.interrupt
          const found = held(documentId)
          if (found !== undefined) return Effect.succeed(found)
          // The caller's FiberRefs go to the document's fiber, but not its Context: `currentContext` keeps a stack
          // of values, and the caller's (a REST request's, say) would stay under the document's for its lifetime.
          const runtime = Runtime.make({
            context: Context.empty(),
            fiberRefs: FiberRefs.delete(fiber.getFiberRefs(), FiberRef.currentContext),
            runtimeFlags: Runtime.defaultRuntimeFlags
          })
          return Effect.succeed(load(runtime, fiber.currentScheduler, documentId))
        }),
      release: (entry) =>
        Effect.suspend(() => {
          entry.holders--
          if (entry.holders > 0 || closed || loaded.get(entry.documentId) !== entry) return Effect.void
          if (idleMillis <= 0) {
            loaded.delete(entry.documentId)
            return Scope.close(entry.scope, Exit.void)
          }
          entry.idleUntil = clock.unsafeCurrentTimeMillis() + idleMillis
          idleWatch.watch(entry.unloadCheck, entry.idleUntil)
          return Effect.void
        }),
      keys: () => [...loaded.keys()]
    }
  })

/** Not a member (any outcome but `Joined`): nothing to leave, and `enter` let go of the document already. */
const notJoined: Membership = { leave: () => Effect.void }

/** A joined connection's membership: one small object per connection, its method shared. */
class Joined implements Membership {
  private left = false
  constructor(
    private readonly documents: Documents,
    private readonly loaded: Loaded,
    private readonly connection: DocumentActor.Connection
  ) {}
  leave(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.left) return Effect.void
      this.left = true
      return Effect.ensuring(leave(this.loaded.slot, this.connection), this.documents.release(this.loaded))
    })
  }
}

/**
 * A member's session: the slot's own functions, and the member's activity (`touch` moves it), which the actor reads
 * as the member's `Activity`. One object per connection, with its methods shared.
 */
class MemberSession implements Session, DocumentActor.Activity {
  last: number
  readonly submit: Slot["submit"]
  readonly offer: Slot["offer"]
  readonly submitAll: Session["submitAll"]
  constructor(slot: Slot, private readonly clock: Clock.Clock) {
    this.submit = slot.submit
    this.offer = slot.offer
    this.submitAll = slot.mailbox.offerAll
    this.last = clock.unsafeCurrentTimeMillis()
  }
  touch(): void {
    this.last = this.clock.unsafeCurrentTimeMillis()
  }
}

/**
 * Submits the command `make` builds (`Slot.submit`: at once when the actor can take it, else into the mailbox,
 * waiting while it is full) and waits for the actor's reply. The reply resumes the wait itself: a Deferred and its
 * wait cost a few KB more per command (a join and a leave per connection). @internal Exported for tests.
 */
export const askSlot = <A>(slot: Slot, make: (reply: (outcome: A) => boolean) => DocumentActor.Command): Effect.Effect<A> =>
  Effect.suspend(() => {
    let answered: Option.Option<A> = Option.none()
    let resume: ((effect: Effect.Effect<A>) => void) | undefined
    const reply = DocumentActor.once((outcome: A) => {
      if (resume === undefined) answered = Option.some(outcome)
      else resume(Effect.succeed(outcome))
    })
    return Effect.zipRight(
      slot.submit(make(reply)),
      Effect.async<A>((waiting) => {
        if (Option.isSome(answered)) return waiting(Effect.succeed(answered.value))
        resume = waiting
      })
    )
  })

/** A join asked of the actor: whether its asker stopped waiting, and whether the actor made the member. */
interface AskedJoin {
  abandoned: boolean
  joined: boolean
}

/**
 * Asks the actor to join `connection`, with `activity` as its activity. Once `asked.abandoned` is set (by `enter`,
 * when its wait ends without an answer), an actor that has not served the Join drops it; `asked.joined` says
 * whether it had made the member.
 */
const askJoin = (
  slot: Slot,
  connection: DocumentActor.Connection,
  activity: DocumentActor.Activity,
  since: number | undefined,
  asked: AskedJoin
) =>
  askSlot<DocumentActor.JoinOutcome>(slot, (reply) => ({
    _tag: "Join",
    connection,
    activity,
    since,
    abandoned: () => asked.abandoned,
    reply: (outcome) => {
      if (outcome._tag === "Joined") asked.joined = true
      reply(outcome)
    }
  }))

/** A member's leave (see `Joined`): the actor answers once it is no longer a member. */
const leave = (slot: Slot, connection: DocumentActor.Connection): Effect.Effect<void> =>
  Effect.suspend(() => {
    Metrics.add(Metrics.connections, -1)
    return leaveSlot(slot, connection)
  })

/** Takes a connection out of the document, in its order, whether or not it is a member; answered once it is not. */
const leaveSlot = (slot: Slot, connection: DocumentActor.Connection): Effect.Effect<void> =>
  Effect.suspend(() => {
    // Shut down means the registry is gone and the document with it: nothing to leave.
    if (slot.mailbox.isShutdown()) return Effect.void
    return askSlot<void>(slot, (reply) => ({ _tag: "Leave", connection, reply: () => reply(undefined) }))
  })

export const layer: Layer.Layer<DocumentRegistry, never, ServerConfig | DocumentStorage> = Layer.scoped(
  DocumentRegistry,
  make
)

/**
 * One loaded document: its mailbox and the fiber that drains it while it has work. Runs in the document's scope,
 * so closing that scope (idle passivation or shutdown) stops the fiber after the batch in hand and serves what is
 * queued.
 */
const makeSlot = (
  documentId: DocumentId,
  settings: DocumentActor.ActorSettings,
  capacity: number,
  idleMillis: number,
  idleWatch: IdleWatch.IdleWatch,
  /** The caller's: the runtime captured here is `Runtime.runSync`'s, whose scheduler is its own, for one run. */
  scheduler: Scheduler.Scheduler
): Effect.Effect<Slot, never, Scope.Scope | DocumentStorage> =>
  Effect.gen(function* () {
    // The document's fiber runs only while it has work (see `drain` below): started by the mailbox's first command
    // after it parked, on this runtime (annotated with the document, so that a start costs no annotation).
    const runtime = yield* Effect.annotateLogs(Effect.withScheduler(Effect.runtime<DocumentStorage>(), scheduler), "documentId", documentId)
    let running: Fiber.RuntimeFiber<void> | undefined
    const start = () => {
      running = Runtime.runFork(runtime)(drain, { immediate: false })
    }
    const mailbox = Mailbox.make<DocumentActor.Command>(capacity, settings.maxBatchSize, start)
    const members: DocumentActor.Members = new Map()
    let actor: Option.Option<DocumentActor.DocumentActor> = Option.none()

    // Supervision: answer what was in flight, drop the actor's state and rebuild it from storage next time. (Batches
    // still being stored come back as `Appended` and are answered from their outcome: see DocumentActor.Appended.)
    // Done at once, and returns the log lines: it may run in a socket's or the storage's callback (see `guarded`),
    // so nothing it calls may throw out of it.
    const drop = (cause: Cause.Cause<never>, commands: ReadonlyArray<DocumentActor.Command>): Effect.Effect<void> => {
      const waiting = Option.match(actor, { onNone: () => [], onSome: (dropped) => dropped.abandon() })
      actor = Option.none()
      const failures: Array<unknown> = []
      for (const command of [...commands, ...waiting]) {
        try {
          // Its leave is answered: it must not stay a member (members outlive the actor).
          if (command._tag === "Leave") DocumentActor.leaveUnserved(members, command.connection)
          DocumentActor.fail(command, "internal error; retry with the same opId")
        } catch (failure) {
          failures.push(failure)
        }
      }
      return Effect.zipRight(
        Effect.logError("document actor crashed; it will be rebuilt from storage", Cause.pretty(cause)),
        Effect.forEach(failures, (failure) => Effect.logError("answering a command of the crashed actor failed", Cause.die(failure)), {
          discard: true
        })
      ).pipe(Effect.annotateLogs("documentId", documentId))
    }
    const crashed = (cause: Cause.Cause<never>, commands: ReadonlyArray<DocumentActor.Command>) =>
      Effect.suspend(() => drop(cause, commands))

    // Commands handled at once, outside the fiber (see DocumentActor.now): only while the mailbox is parked (no fiber
    // runs) and empty, so they are in order with everything a fiber handles. A defect there is a crash.
    const guarded = (body: () => boolean, commands: ReadonlyArray<DocumentActor.Command>): boolean => {
      try {
        return body()
      } catch (defect) {
        Runtime.runFork(runtime)(drop(Cause.die(defect), commands))
        return true
      }
    }
    let flushing = false
    const flush = () => {
      flushing = false
      if (Option.isNone(actor)) return
      const current = actor.value
      guarded(() => {
        current.flush()
        return true
      }, [])
    }
    const now = (command: DocumentActor.Command): boolean => {
      if (Option.isNone(actor) || !mailbox.idle()) return false
      const current = actor.value
      if (!guarded(() => current.now(command), [command])) return false
      // The updates taken until the microtasks run (those of one socket read: ws emits them together) go as one batch.
      if (command._tag === "Update" && !flushing) {
        flushing = true
        queueMicrotask(flush)
      }
      return true
    }

    /** Answers commands no actor serves; a Leave among them still ends its membership (members outlive the actor). */
    const unserved = (commands: ReadonlyArray<DocumentActor.Command>, answer: (command: DocumentActor.Command) => void) => {
      for (const command of commands) {
        if (command._tag === "Leave") DocumentActor.leaveUnserved(members, command.connection)
        answer(command)
      }
    }

    const load = (commands: Array<DocumentActor.Command>) =>
      Effect.gen(function* () {
        const loaded = yield* DocumentActor.load(documentId, members, settings, deliver).pipe(Effect.exit)
        if (Exit.isFailure(loaded)) {
          yield* Effect.logError("document failed to load", loaded.cause)
          return unserved(commands, (command) => DocumentActor.fail(command, "the document could not be loaded; retry"))
        }
        if (Option.isNone(loaded.value)) return unserved(commands, DocumentActor.notFound)
        actor = loaded.value
        yield* run(commands)
      })

    /** Where the outcome of a batch the actor did not wait for goes (false once the mailbox is shut down). */
    const deliver = (appended: DocumentActor.Appended): boolean => now(appended) || mailbox.unsafeOfferAlways(appended)

    /**
     * Runs one batch on the actor (loading it first if needed), under supervision: a defect while loading (a reply
     * that throws) is a crash too, else the fiber would die with the mailbox neither parked nor taken from.
     * The batch is emptied once handled: measured, these arrays were otherwise kept, with the commands, frames and
     * replies they hold, until V8's next full collection (docs/performance.md, thirteenth round).
     */
    const run = (commands: Array<DocumentActor.Command>): Effect.Effect<void, never, DocumentStorage> =>
      Effect.flatMap(Effect.exit(Option.isNone(actor) ? load(commands) : actor.value.handle(commands)), (handled) => {
        if (Exit.isFailure(handled)) return crashed(handled.cause, commands)
        commands.length = 0
        return Effect.void
      })

    Metrics.add(Metrics.documentsLoaded, 1)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        Metrics.add(Metrics.documentsLoaded, -1)
        // Until nothing is left: commands may arrive while the last ones are served (they would be lost unanswered),
        // and batches still being stored come back as commands (bounded by the storage's timeout).
        while (true) {
          let rest = mailbox.takeAll()
          if (rest.length === 0) {
            // Updates taken at once and not sent yet go now (their outcomes are waited for below).
            flush()
            if (Option.isSome(actor) && actor.value.busy()) rest = yield* mailbox.takeOwn
          }
          if (rest.length === 0) break
          yield* run(rest).pipe(Effect.uninterruptible, Effect.annotateLogs("documentId", documentId))
        }
        mailbox.shutdown()
        yield* Effect.logDebug("document unloaded").pipe(Effect.annotateLogs("documentId", documentId))
      })
    )
    // The document's fiber: it runs batches while there are commands, then ends, and the mailbox's next command
    // starts another (a parked fiber per loaded document held ~3 KB of heap). A batch is everything waiting when
    // the fiber takes: while it stores one batch, the next one grows. Only the take is interruptible: closing the
    // slot's scope stops the fiber after the batch in hand. (Not `Effect.forever`, which yields to the scheduler
    // after every batch.) While the actor holds commands for its batches in flight, the fiber waits for their
    // outcomes, and only those are taken: the mailbox fills and its senders wait, as they would for a slow commit.
    const next = Effect.suspend(() => (Option.isSome(actor) && actor.value.holding() ? mailbox.takeOwn : mailbox.takeOrPark))
    /** A fiber that parked lets go of itself (an ended fiber keeps its FiberRefs), unless another started since. */
    const ended = Effect.fiberIdWith((id) =>
      Effect.sync(() => {
        if (running !== undefined && Equal.equals(running.id(), id)) running = undefined
      })
    )
    const drain: Effect.Effect<void, never, DocumentStorage> = Effect.uninterruptibleMask((restore) => {
      const loop: Effect.Effect<void, never, DocumentStorage> = Effect.flatMap(
        restore(next),
        (batch) => (batch.length === 0 ? ended : Effect.flatMap(run(batch), () => loop))
      )
      return loop
    })
    // Released before the finalizer above: the fiber running stops after its batch, and none starts from now on
    // (only a fiber parks the mailbox, in `takeOrPark`, which an interrupted one does not reach). Unparked, the
    // mailbox is not idle either: commands, and the outcomes the finalizer waits for, go through it.
    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.suspend(() => {
        mailbox.unpark()
        return running === undefined ? Effect.void : Fiber.interrupt(running)
      })
    )
    const idle = yield* watchIdle(idleWatch, documentId, members, mailbox, idleMillis)
    return {
      mailbox,
      offer: (command) => now(command) || mailbox.unsafeOffer(command),
      submit: (command) => Effect.suspend(() => (now(command) ? Effect.void : mailbox.offer(command))),
      joined: idle.joined
    }
  })

/**
 * A document's presence idleness, on the registry's `IdleWatch`: checked at the earliest moment a member will have
 * been silent for `idleMillis`, it asks the actor to check each member that is due (the actor re-checks against
 * the latest activity, so a message that raced the timer wins), and says when to look next: that earliest moment
 * among the members not yet checked for their current silence, at the latest `idleMillis` from now, or in a second
 * when the mailbox was full. Activity only moves deadlines later, so a join needs a check only when its member is
 * due before the document's next one (or the document had no member: it is not checked while it has none).
 */
const watchIdle = (
  watch: IdleWatch.IdleWatch,
  documentId: DocumentId,
  members: DocumentActor.Members,
  mailbox: Mailbox.Mailbox<DocumentActor.Command>,
  idleMillis: number
): Effect.Effect<{ readonly joined: (activeSince: number) => void }, never, Scope.Scope> => {
  /** The activity time each member was last checked for: checked once per silence. */
  const checked = new WeakMap<DocumentActor.Member, number>()
  const watched: IdleWatch.Watched = {
    annotations: { documentId },
    check: (now) => {
      if (members.size === 0) return undefined
      let next = now + idleMillis
      for (const member of members.values()) {
        if (member.idle || checked.get(member) === member.activity.last) continue
        const due = member.activity.last + idleMillis
        if (due <= now) {
          // A full mailbox: ask again in a second rather than wait in a fiber.
          if (mailbox.unsafeOffer({ _tag: "CheckIdle", connection: member.connection })) checked.set(member, member.activity.last)
          else next = Math.min(next, now + 1_000)
        } else {
          next = Math.min(next, due)
        }
      }
      return next
    }
  }
  return Effect.flatMap(Effect.scope, (scope) =>
    Effect.as(Scope.addFinalizer(scope, Effect.sync(() => watch.unwatch(watched))), {
      joined: (activeSince) => watch.watch(watched, activeSince + idleMillis)
    }))
}
