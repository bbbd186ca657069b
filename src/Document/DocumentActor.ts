/**
 * DocumentActor: the logic of one loaded document. It owns the document's version, its dedupe cache and its
 * members (the connections that joined), persists through DocumentStorage and writes frames to the members.
 *
 * It handles a batch of commands at a time and does not know how they reach it: DocumentRegistry feeds it from a
 * mailbox drained by one fiber at a time (one exists only while there is work), which is what serialises a document
 * without locks, and hands it the commands it can take at once (`now`) only while no fiber has work and nothing is
 * queued. The actor never blocks on a
 * connection: `Connection.send` returns at once (a connection that falls too far behind closes itself).
 */
import { Cause, Clock, Effect, Exit, Option } from "effect"
import * as Base64 from "../Domain/Base64.js"
import * as CloseCodes from "../Domain/CloseCodes.js"
import type { DocumentId, Snapshot, StoredUpdate } from "../Domain/Document.js"
import { type UpdateOut, updateOut } from "../Domain/Document.js"
import type { PresenceEntry, StateMessage } from "../Domain/Protocol.js"
import { type AppendInOrder, type AppendResult, DocumentStorage, inOrderAppends, StorageError } from "../Storage/DocumentStorage.js"
import { COMMA, LogTail } from "./LogTail.js"
import * as Metrics from "./Metrics.js"
import { RecentOps } from "./RecentOps.js"

/** What the actor needs of a connection. Both methods return at once and never throw. */
export interface Connection {
  readonly clientId: string
  readonly actorId: string
  /**
   * Queues an encoded text message for the client: a string, its UTF-8 bytes (a frame for many connections is
   * encoded once, not once per connection), or those bytes in parts, sent as one message without being copied
   * together first (`state`, whose log runs are views of the log tail).
   */
  readonly send: (frame: Frame) => void
  /** Closes the connection with a WebSocket close code. */
  readonly close: (code: number, reason: string) => void
}

/** One text message for a connection: see `Connection.send`. */
export type Frame = string | Uint8Array | ReadonlyArray<Uint8Array>

/** A frame's length: in bytes, or in UTF-16 units for a string (close to bytes for this mostly ASCII JSON). */
export const frameLength = (frame: Frame): number => {
  if (typeof frame === "string" || frame instanceof Uint8Array) return frame.length
  let length = 0
  for (const part of frame) length += part.length
  return length
}

/** A connection that joined, with what it has been sent so far. Outlives an actor rebuilt after a crash. */
export interface Member {
  readonly connection: Connection
  /** When the connection last sent anything; written by the connection, read when deciding idleness. */
  readonly activity: Activity
  /** Highest seq this member has been sent (in `state`, an `ack` or a `remote_update`). */
  lastSeq: number
  /** Its latest presence state, null until it sends one. */
  presence: unknown
  /** Idle members are left out of presence until their next `presence` message. */
  idle: boolean
}

/** The time (epoch millis, from `Clock`) of a connection's latest message. */
export interface Activity {
  last: number
}

/** The members of one document, keyed by connection. Owned by the registry so that it survives a rebuild. */
export type Members = Map<Connection, Member>

export type JoinOutcome =
  | { readonly _tag: "Joined"; readonly version: number }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Deleted" }
  | { readonly _tag: "Failed"; readonly message: string }

export type UpdateOutcome =
  | { readonly _tag: "Stored"; readonly seq: number }
  | { readonly _tag: "Duplicate"; readonly seq: number }
  | { readonly _tag: "InvalidBaseVersion"; readonly version: number }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Failed"; readonly message: string }

export type ReadOutcome =
  | { readonly _tag: "Read"; readonly version: number; readonly updates: ReadonlyArray<StoredUpdate> }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Failed"; readonly message: string }

export type SnapshotOutcome =
  | { readonly _tag: "Accepted"; readonly version: number }
  | { readonly _tag: "Rejected"; readonly message: string }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Failed"; readonly message: string }

export type DeleteOutcome =
  | { readonly _tag: "Deleted" }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Failed"; readonly message: string }

/** Join: send `state` to the connection, then every later update. `since` resumes from a version. */
export interface Join {
  readonly _tag: "Join"
  readonly connection: Connection
  readonly activity: Activity
  readonly since: number | undefined
  readonly reply: (outcome: JoinOutcome) => void
  /** True once whoever asked stopped waiting (an interrupted join): the join is then dropped, neither made nor answered. */
  readonly abandoned?: () => boolean
}

export interface Leave {
  readonly _tag: "Leave"
  readonly connection: Connection
  readonly reply: () => void
}

/** An update from a connection (`origin`) or from REST (no origin). */
export interface Update {
  readonly _tag: "Update"
  readonly origin: Connection | undefined
  readonly opId: string
  readonly baseVersion: number
  readonly actorId: string
  readonly delta: Uint8Array
  /** The delta as the client sent it, relayed as is. */
  readonly deltaB64: string
  /** When the update reached the server (`Clock` nanos), for the ack latency metric. */
  readonly receivedAt?: bigint
  /**
   * Answers the update; returns whether this call did (false: it was answered before). Made with `once`, so that
   * an update answered twice (supervision after a crash) is answered and counted once.
   */
  readonly reply: (outcome: UpdateOutcome) => boolean
}

/** REST `GET /documents/{id}/updates`, read in the actor's order. */
export interface ReadUpdates {
  readonly _tag: "ReadUpdates"
  readonly after: number
  readonly limit: number
  readonly reply: (outcome: ReadOutcome) => void
}

/** Soft delete: members are closed with 4410 and later joins are refused. */
export interface Delete {
  readonly _tag: "Delete"
  readonly reply: (outcome: DeleteOutcome) => void
}

/** A client's merged state of every update with seq <= version (protocol 2.3). */
export interface SubmitSnapshot {
  readonly _tag: "Snapshot"
  readonly connection: Connection
  readonly version: number
  readonly data: Uint8Array
  readonly reply: (outcome: SnapshotOutcome) => void
}

/** A presence upsert: relayed to the other members, and re-announces an idle member. */
export interface Presence {
  readonly _tag: "Presence"
  readonly connection: Connection
  readonly state: unknown
}

/** The connection may have gone idle: checked against its activity when handled. */
export interface CheckIdle {
  readonly _tag: "CheckIdle"
  readonly connection: Connection
}

/**
 * The outcome of a batch of updates whose append the actor did not wait for (storage that commits a document's
 * appends in order: see `inOrderAppends`). It comes back in the order the appends were made, through `deliver`: handed
 * to the actor at once when it can take it (`now`), else through the mailbox.
 */
export interface Appended {
  readonly _tag: "Appended"
  /** The actor's record of the batch: an actor applies only its own batches. */
  readonly batch: object
  readonly exit: Exit.Exit<ReadonlyArray<AppendResult>, StorageError>
  /**
   * Answers the batch's updates from `exit` alone (acks for what was stored, failures otherwise), for when the
   * actor that sent it is gone: it crashed, and a rebuilt one relays from storage what its members missed.
   */
  readonly orphaned: () => void
}

export type Command = Join | Leave | Update | ReadUpdates | Delete | SubmitSnapshot | Presence | CheckIdle | Appended

/** Timing and thresholds the actor applies. */
export interface ActorSettings {
  readonly snapshotEvery: number
  readonly snapshotRequestTimeoutMillis: number
  readonly presenceIdleMillis: number
  /**
   * Most bytes of encoded updates kept in memory for joins (the log since the latest snapshot); a join that needs
   * older updates reads them from storage.
   */
  readonly logTailBytes: number
  /** Most updates in one batch (one append). */
  readonly maxBatchSize: number
}

export interface DocumentActor {
  /**
   * Handles commands in order; consecutive updates are stored in one transaction (group commit). On storage that
   * commits a document's appends in order, a batch of updates is sent without waiting for the previous one to
   * commit; its outcome comes back as an `Appended` command, and every other kind of command waits (inside the
   * actor) until the batches before it are applied, so that it sees the document as its clients do.
   */
  readonly handle: (commands: ReadonlyArray<Command>) => Effect.Effect<void>
  /**
   * Handles a command at once, without an Effect, when it needs nothing but the actor's state; false when it must
   * go through `handle`. Only for a caller that knows no `handle` is running or due (the registry calls it while
   * the document's mailbox is empty and the fiber that drains it waits). Taken at once:
   * - on storage that commits a document's appends in order, an update that can be sent as it is (it joins the
   *   batch that `flush` sends), and the success of the oldest batch in flight when storage holds nothing this
   *   actor has not relayed;
   * - on any storage, when nothing is in flight: a presence message, a leave, and a join whose state is in memory
   *   (the log tail covers it; a join that reads older updates from storage goes through `handle`).
   */
  readonly now: (command: Command) => boolean
  /** Sends the batch of updates `now` took (`handle` sends it before anything else, too). */
  readonly flush: () => void
  /** Whether batches are in flight (an `Appended` will come for each) or commands wait for them (after a `flush`). */
  readonly busy: () => boolean
  /** Whether commands wait for batches in flight: then only `Appended` should be handed to `handle`. */
  readonly holding: () => boolean
  /**
   * Takes the commands waiting for batches in flight, those being served after waiting and the updates taken by
   * `now` and not sent yet, for a supervisor that drops this actor: it fails them (some may have been answered
   * already; replies count once).
   */
  readonly abandon: () => ReadonlyArray<Command>
}

/** Most batches of a document in flight at once on storage that commits in order (see `DocumentActor.handle`). */
const MAX_BATCHES_IN_FLIGHT = 8

/** What an update whose batch failed to be stored is answered (its outcome is unknown: the client retries). */
const STORAGE_FAILED = "storage failed; retry with the same opId"

/** Most opIds remembered in memory; older ones are still found in storage. */
export const DEDUPE_CACHE_SIZE = 10_000

/**
 * Loads a document's actor from storage; none when the document does not exist. Members that were sent less than
 * the stored version (because the previous actor crashed mid-broadcast) are sent what they missed first, so that
 * no member ever sees a gap.
 */
export const load = (
  documentId: DocumentId,
  members: Members,
  settings: ActorSettings,
  /**
   * Hands an `Appended` back: to the actor at once when it can take it, else into the document's mailbox whatever
   * its fill (false once it is shut down).
   */
  deliver: (appended: Appended) => boolean
): Effect.Effect<Option.Option<DocumentActor>, StorageError, DocumentStorage> =>
  Effect.gen(function* () {
    const storage = yield* DocumentStorage
    const clock = yield* Effect.clock
    const found = yield* storage.get(documentId, true)
    if (Option.isNone(found)) return Option.none()
    let deleted = found.value.deletedAt !== null
    // The document's row carries its version (`Document.version`, what `latestVersion` reads): one storage call
    // less per load (~65 KB allocated per call through @effect/sql).
    let version = found.value.version
    let snapshot: Option.Option<Snapshot> = yield* storage.latestSnapshot(documentId)
    const recent = new RecentOps(DEDUPE_CACHE_SIZE)
    /** The updates after `tail.start`, up to `version`, encoded as in `state` (filled by the first join). */
    const tail = new LogTail(version, settings.logTailBytes)
    /** The snapshot_request in flight, at most one per document. */
    let requested: { readonly connection: Connection; readonly at: number } | undefined
    const snapshotVersion = () => Option.match(snapshot, { onNone: () => 0, onSome: (s) => s.version })

    const broadcast = (text: string, except?: Connection) => {
      const frame = Buffer.from(text)
      for (const member of members.values()) {
        if (member.connection !== except) member.connection.send(frame)
      }
    }

    const sendMissed = Effect.gen(function* () {
      let from = version
      for (const member of members.values()) from = Math.min(from, member.lastSeq)
      if (from >= version) return
      const missed = yield* storage.updatesAfter(documentId, from, version - from)
      for (const update of missed) {
        const frame = remoteUpdateFrame(JSON.stringify(updateOut(update)))
        for (const member of members.values()) {
          if (member.lastSeq < update.seq) {
            member.connection.send(frame)
            member.lastSeq = update.seq
          }
        }
      }
    })
    yield* sendMissed

    /** Where a join's state starts: after `base` (a snapshot's version, or what the client has), `reset` if ahead. */
    const joinFrom = (since: number | undefined) => {
      const reset = since !== undefined && since > version
      const resumeFrom = since === undefined || reset ? 0 : since
      const fromSnapshot = Option.filter(snapshot, (s) => s.version > resumeFrom && s.version <= version)
      const base = Option.match(fromSnapshot, { onNone: () => resumeFrom, onSome: (s) => s.version })
      return { reset, fromSnapshot, base }
    }

    /**
     * A join served from memory, at once (`now`): false when its state needs updates older than the tail, which
     * `join` reads from storage.
     */
    const joinNow = (command: Join): boolean => {
      if (deleted) {
        command.reply({ _tag: "Deleted" })
        return true
      }
      const from = joinFrom(command.since)
      if (from.base < tail.start) return false
      joined(command, from, [tail.after(from.base)])
      return true
    }

    const join = (command: Join) =>
      Effect.gen(function* () {
        if (command.abandoned?.() === true) return
        if (deleted) return command.reply({ _tag: "Deleted" })
        const from = joinFrom(command.since)
        const base = from.base
        // Taken before `prepend` below (these views stay valid: the tail never writes over its bytes).
        let updates: ReadonlyArray<ReadonlyArray<Uint8Array>> = [tail.after(Math.max(base, tail.start))]
        if (base < tail.start) {
          // Read from storage once, then kept (within logTailBytes): the next join is served from memory.
          const older = yield* storage.updatesAfter(documentId, base, tail.start - base)
          if (older.length !== tail.start - base || older[0]?.seq !== base + 1) {
            return yield* new StorageError({ operation: "join", cause: `the log of ${documentId} has a gap after ${base}` })
          }
          const encoded = older.map((update) => JSON.stringify(updateOut(update)))
          updates = [[Buffer.from(encoded.join(","))], ...updates]
          tail.prepend(base, encoded)
        }
        joined(command, from, updates)
      })

    /** Sends the joining connection its state, announces it to the other members, and makes it a member. */
    const joined = (command: Join, from: ReturnType<typeof joinFrom>, updates: ReadonlyArray<ReadonlyArray<Uint8Array>>) => {
      // Abandoned while its older updates were read.
      if (command.abandoned?.() === true) return
      const presence: Array<PresenceEntry> = []
      for (const member of members.values()) {
        if (member.idle) continue
        presence.push({ clientId: member.connection.clientId, actorId: member.connection.actorId, state: member.presence })
      }
      const state: Omit<StateMessage, "updates"> = {
        type: "state",
        documentId,
        clientId: command.connection.clientId,
        version,
        snapshot: Option.match(from.fromSnapshot, {
          onNone: () => null,
          onSome: (s) => ({ version: s.version, snapshotB64: Base64.encode(s.data) })
        }),
        presence,
        ...(from.reset ? { reset: true as const } : {})
      }
      command.connection.send(stateFrame(state, updates))
      broadcast(JSON.stringify({ type: "presence_join", clientId: command.connection.clientId, actorId: command.connection.actorId }))
      members.set(command.connection, {
        connection: command.connection,
        activity: command.activity,
        lastSeq: version,
        presence: null,
        idle: false
      })
      command.reply({ _tag: "Joined", version })
    }

    const leave = (command: Leave) => {
      const member = members.get(command.connection)
      if (member !== undefined) {
        members.delete(command.connection)
        if (requested?.connection === command.connection) requested = undefined
        if (!member.idle) broadcast(presenceLeave(command.connection, "disconnect"))
      }
      command.reply()
    }

    const presence = (command: Presence) => {
      const member = members.get(command.connection)
      if (member === undefined) return
      member.presence = command.state
      member.idle = false
      broadcast(
        JSON.stringify({
          type: "presence",
          clientId: command.connection.clientId,
          actorId: command.connection.actorId,
          state: command.state
        }),
        command.connection
      )
    }

    const checkIdle = (command: CheckIdle) =>
      Effect.gen(function* () {
        const member = members.get(command.connection)
        if (member === undefined || member.idle) return
        const now = yield* Clock.currentTimeMillis
        // Activity may have arrived after the check was queued: only a member silent for the whole span is idle.
        if (now - member.activity.last < settings.presenceIdleMillis) return
        member.idle = true
        broadcast(presenceLeave(command.connection, "idle"), command.connection)
      })

    /** Asks one member that has applied the version for a snapshot, when enough updates went by since the last. */
    const maybeRequestSnapshot = (preferred: Connection | undefined): void => {
      if (version - snapshotVersion() < settings.snapshotEvery) return
      const now = clock.unsafeCurrentTimeMillis()
      if (requested !== undefined && now - requested.at < settings.snapshotRequestTimeoutMillis) return
      const asked = requested?.connection
      let chosen: Member | undefined
      const origin = preferred === undefined ? undefined : members.get(preferred)
      if (origin !== undefined && origin.lastSeq === version && origin.connection !== asked) chosen = origin
      for (const member of members.values()) {
        if (chosen !== undefined) break
        if (member.lastSeq === version && member.connection !== asked) chosen = member
      }
      // Nobody else to ask: ask the same client again rather than nobody.
      if (chosen === undefined && asked !== undefined && members.get(asked)?.lastSeq === version) chosen = members.get(asked)
      if (chosen === undefined) {
        requested = undefined
        return
      }
      requested = { connection: chosen.connection, at: now }
      chosen.connection.send(JSON.stringify({ type: "snapshot_request", version }))
    }

    const submitSnapshot = (command: SubmitSnapshot) =>
      Effect.gen(function* () {
        if (deleted) return command.reply({ _tag: "NotFound" })
        const latest = snapshotVersion()
        if (command.version > version) {
          return command.reply({
            _tag: "Rejected",
            message: `snapshot version ${command.version} is ahead of the document version ${version}`
          })
        }
        if (command.version - latest < settings.snapshotEvery) {
          return command.reply({
            _tag: "Rejected",
            message: `snapshot version ${command.version} is less than SNAPSHOT_EVERY (${settings.snapshotEvery}) past the latest snapshot (${latest})`
          })
        }
        yield* storage.putSnapshot(documentId, { version: command.version, data: command.data })
        // A copy of its own, kept while the document is loaded: a small snapshot decoded from base64 is a view of
        // Node's shared 8 KiB pool, which it would keep alive.
        snapshot = Option.some({ version: command.version, data: new Uint8Array(command.data) })
        tail.dropThrough(command.version)
        requested = undefined
        command.reply({ _tag: "Accepted", version: command.version })
      })

    /**
     * Group commit: one transaction for the run, then acks and broadcasts in seq order. Plain code around the one
     * storage call (and a lookup for the rare update whose baseVersion is ahead): this runs for every batch.
     */
    const updateRun = (run: ReadonlyArray<Update>): Effect.Effect<void, StorageError> => {
      const started = clock.unsafeCurrentTimeNanos()
      const ahead: Array<Update> = []
      const pending = sift(run, started, ahead)
      // A retry of a stored update may carry any baseVersion: it is still a duplicate, not an error.
      const checkAhead = ahead.length === 0 ? Effect.void : Effect.forEach(ahead, (command) =>
        Effect.map(storage.findByOpId(documentId, command.opId), (stored) =>
          answer(
            command,
            Option.match(stored, {
              onNone: () => ({ _tag: "InvalidBaseVersion", version }),
              onSome: (update) => ({ _tag: "Duplicate", seq: update.seq })
            }),
            started
          )), { discard: true })
      if (pending.length === 0) return checkAhead
      return Effect.zipRight(checkAhead, Effect.suspend(() => commit(pending, started)))
    }

    /**
     * Answers the updates of a run that need no storage (all of them for a deleted document, duplicates known in
     * memory); returns those to store, and puts into `ahead` those whose baseVersion is ahead of the version.
     */
    const sift = (run: ReadonlyArray<Update>, started: bigint, ahead: Array<Update>): Array<Update> => {
      const pending: Array<Update> = []
      if (deleted) {
        for (const command of run) answer(command, { _tag: "NotFound" }, started)
        return pending
      }
      for (const command of run) {
        const known = recent.get(command.opId)
        if (known !== undefined) answer(command, { _tag: "Duplicate", seq: known }, started)
        else if (command.baseVersion > version) ahead.push(command)
        else pending.push(command)
      }
      return pending
    }

    /** Moves to `to` (what storage holds), drops the log tail there, and relays to members what they missed. */
    const catchUp = (to: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        version = to
        tail.reset(version)
        return Effect.ignore(sendMissed)
      })

    /** Appends without a fiber, in order, where the storage allows it (SQLite's commit worker, memory://). */
    const appendInOrder = inOrderAppends.get(storage.append)
    /** Batches sent and not applied yet, oldest first (only with `appendInOrder`). */
    const inFlight: Array<InFlight> = []
    /**
     * Commands that wait for `inFlight` to be applied (or for room in it), in arrival order. While any wait, the
     * slot takes only `Appended` (`holding`), so the mailbox fills and its senders wait: at most one batch waits.
     */
    const held: Array<Command> = []
    /** Held commands being handled now (see `abandon`). */
    let serving: ReadonlyArray<Command> = []

    /** Updates taken by `now`, not sent yet: one batch, sent by `flush` (or by `handle`, before anything else). */
    const open: Array<Update> = []

    const flush = (): void => {
      if (open.length === 0) return
      // Emptied in place, as `held` (see Mailbox.make).
      const run = open.splice(0)
      try {
        const started = clock.unsafeCurrentTimeNanos()
        const ahead: Array<Update> = []
        const pending = sift(run, started, ahead)
        // `now` took none ahead, and the version only moves on.
        if (ahead.length > 0) throw new Error("an update taken at once is ahead of the version")
        if (pending.length > 0) send(appendInOrder as AppendInOrder, pending, started)
      } catch (defect) {
        // A crash: the supervisor fails them (`abandon`; replies count once).
        open.push(...run)
        throw defect
      }
    }

    /** A batch about to be sent to storage: committing from now, nothing answered yet. */
    const newBatch = (pending: ReadonlyArray<Update>, started: bigint): InFlight => ({
      pending,
      started,
      committing: clock.unsafeCurrentTimeNanos(),
      answered: 0
    })

    /** Sends a batch without waiting for its outcome, which comes back as an `Appended`. */
    const send = (append: AppendInOrder, pending: ReadonlyArray<Update>, started: bigint): void => {
      const batch = newBatch(pending, started)
      inFlight.push(batch)
      append(documentId, pending, (exit) => {
        const appended: Appended = { _tag: "Appended", batch, exit, orphaned: () => answerFrom(exit, batch) }
        if (!deliver(appended)) appended.orphaned()
      })
    }

    const commit = (pending: ReadonlyArray<Update>, started: bigint): Effect.Effect<void> => {
      if (appendInOrder !== undefined) {
        send(appendInOrder, pending, started)
        return Effect.void
      }
      const batch = newBatch(pending, started)
      // (A defect is not an outcome: it ends the batch as a crash, for the supervisor.)
      return Effect.matchEffect(storage.append(documentId, pending), {
        onFailure: (error) => applyAppend(Exit.fail(error), batch),
        onSuccess: (results) => applyAppend(Exit.succeed(results), batch)
      })
    }

    /** Acks, broadcasts and remembers a batch's outcome, or fails its updates and catches up with storage. */
    const applyAppend = (exit: Exit.Exit<ReadonlyArray<AppendResult>, StorageError>, batch: InFlight): Effect.Effect<void> => {
      if (Exit.isFailure(exit)) {
        for (let i = 0; i < batch.pending.length; i++) {
          answer(batch.pending[i] as Update, { _tag: "Failed", message: STORAGE_FAILED }, batch.started)
          batch.answered = i + 1
        }
        release(batch)
        return Effect.gen(function* () {
          const error = Cause.failureOption(exit.cause)
          yield* Effect.logWarning("append failed; nothing acked", Option.isSome(error) ? error.value.message : Cause.pretty(exit.cause))
          // The transaction may have committed before the failure was reported: catch up from storage. (So may
          // later batches in flight: `stored` does not relay again what this sends.)
          yield* catchUp(yield* storage.latestVersion(documentId).pipe(Effect.orElseSucceed(() => version)))
        })
      }
      const results = exit.value
      const before = storedBefore(results)
      if (before <= version) {
        return Effect.sync(() => stored(batch, results))
      }
      return Effect.logWarning("the log moved past this actor (a failed batch committed late); relaying it").pipe(
        Effect.zipRight(catchUp(before)),
        Effect.zipRight(Effect.sync(() => stored(batch, results)))
      )
    }

    /**
     * The seq storage held before a batch's first new update (with none, the latest of `version` and its
     * duplicates' seqs). Past `version`, something was committed that this actor did not relay (an earlier batch
     * reported failed, by a timeout, but committed later): it is relayed first, or members would see a gap and the
     * log tail would be misnumbered.
     */
    const storedBefore = (results: ReadonlyArray<AppendResult>): number => {
      const first = results.find((result) => !result.duplicate)
      if (first !== undefined) return first.seq - 1
      let before = version
      for (const result of results) before = Math.max(before, result.seq)
      return before
    }

    /** Acks, broadcasts and remembers what storage stored. */
    const stored = (batch: InFlight, results: ReadonlyArray<AppendResult>) => {
      const { committing, pending, started } = batch
      Metrics.record(Metrics.commitLatency, Number(clock.unsafeCurrentTimeNanos() - committing) / 1e9)
      Metrics.record(Metrics.batchSize, pending.length)
      for (let i = 0; i < pending.length; i++) {
        const command = pending[i] as Update
        answer(command, storedOne(command, results[i]), started)
        batch.answered = i + 1
      }
      maybeRequestSnapshot(pending[pending.length - 1]?.origin)
      release(batch)
    }

    /** Remembers and relays one stored update; its answer. */
    const storedOne = (command: Update, result: AppendResult | undefined): UpdateOutcome => {
      // Storage owes one result per update; without one, the update is not known to be stored.
      if (result === undefined) return { _tag: "Failed", message: STORAGE_FAILED }
      recent.remember(command.opId, result.seq)
      if (result.duplicate) return { _tag: "Duplicate", seq: result.seq }
      // Already relayed from storage by a catch-up (a batch before it failed while it was in flight).
      if (result.seq <= version) return { _tag: "Stored", seq: result.seq }
      version = result.seq
      // `updateOut`'s object, built from the command's base64 (no re-encoding): same fields, same order.
      const out: UpdateOut = { seq: result.seq, opId: command.opId, actorId: command.actorId, deltaB64: command.deltaB64 }
      const fragment = JSON.stringify(out)
      tail.append(fragment)
      const frame = remoteUpdateFrame(fragment)
      for (const member of members.values()) {
        if (member.connection !== command.origin) member.connection.send(frame)
        member.lastSeq = result.seq
      }
      return { _tag: "Stored", seq: result.seq }
    }

    const answer = (command: Update, outcome: UpdateOutcome, started: bigint) => {
      if (!replyCounted(command, outcome)) return
      Metrics.record(Metrics.ackLatency, Number(clock.unsafeCurrentTimeNanos() - (command.receivedAt ?? started)) / 1e9)
    }

    const readUpdates = (command: ReadUpdates) =>
      Effect.gen(function* () {
        if (deleted) return command.reply({ _tag: "NotFound" })
        const updates = yield* storage.updatesAfter(documentId, command.after, command.limit)
        command.reply({ _tag: "Read", version, updates })
      })

    const remove = (command: Delete) =>
      Effect.gen(function* () {
        const removed = yield* storage.softDelete(documentId)
        if (Option.isNone(removed)) return command.reply({ _tag: "NotFound" })
        deleted = true
        for (const member of members.values()) {
          member.connection.close(CloseCodes.Gone, CloseCodes.reason[CloseCodes.Gone] ?? "document deleted")
        }
        members.clear()
        requested = undefined
        command.reply({ _tag: "Deleted" })
      })

    const one = (command: Exclude<Command, Update | Appended>): Effect.Effect<void, StorageError> => {
      switch (command._tag) {
        case "Join":
          return join(command)
        case "Leave":
          return Effect.sync(() => leave(command))
        case "ReadUpdates":
          return readUpdates(command)
        case "Delete":
          return remove(command)
        case "Snapshot":
          return submitSnapshot(command)
        case "Presence":
          return Effect.sync(() => presence(command))
        case "CheckIdle":
          return checkIdle(command)
      }
    }

    /** Applies the outcome of the oldest batch in flight (or answers one sent by an actor that is gone). */
    const appended = (command: Appended): Effect.Effect<void> => {
      const at = inFlight.indexOf(command.batch as InFlight)
      if (at < 0) {
        // Sent by an actor that crashed (this one was rebuilt since): acked from its outcome, and what it stored
        // after this actor loaded is relayed from storage, ahead of this actor's own batches (sent later).
        command.orphaned()
        let last = 0
        if (Exit.isSuccess(command.exit)) for (const result of command.exit.value) last = Math.max(last, result.seq)
        return last <= version ? Effect.void : catchUp(last)
      }
      if (at > 0) return Effect.dieMessage("append outcomes arrived out of order")
      const batch = inFlight.shift() as InFlight
      return applyAppend(command.exit, batch)
    }

    const now = (command: Command): boolean => {
      if (held.length > 0) return false
      switch (command._tag) {
        case "Update":
          if (appendInOrder === undefined || deleted || command.baseVersion > version) return false
          if (open.length === 0 ? inFlight.length >= MAX_BATCHES_IN_FLIGHT : open.length >= settings.maxBatchSize) {
            return false
          }
          open.push(command)
          return true
        case "Appended": {
          if (inFlight[0] !== command.batch || Exit.isFailure(command.exit)) return false
          if (storedBefore(command.exit.value) > version) return false
          const batch = inFlight.shift() as InFlight
          stored(batch, command.exit.value)
          return true
        }
        case "Presence":
          if (open.length > 0 || inFlight.length > 0) return false
          presence(command)
          return true
        case "Join":
          return open.length === 0 && inFlight.length === 0 && joinNow(command)
        case "Leave":
          if (open.length > 0 || inFlight.length > 0) return false
          leave(command)
          return true
        default:
          return false
      }
    }

    const handle = (commands: ReadonlyArray<Command>): Effect.Effect<void> =>
      Effect.gen(function* () {
        // Taken by `now` before these arrived.
        flush()
        let i = 0
        while (i < commands.length) {
          const command = commands[i] as Command
          if (command._tag === "Appended") {
            i++
            yield* appended(command)
            // What waited for it, before the rest of this batch (which came later). Kept in `serving` meanwhile,
            // for a supervisor that drops this actor halfway (it fails them; replies count once).
            if (held.length > 0) {
              serving = held.splice(0)
              yield* handle(serving)
              serving = []
            }
          } else if (held.length > 0) {
            // Behind a command that waits: in order, so it waits too.
            held.push(command)
            i++
          } else if (command._tag === "Update") {
            if (inFlight.length >= MAX_BATCHES_IN_FLIGHT) {
              held.push(command)
              i++
              continue
            }
            const run: Array<Update> = []
            while (i < commands.length) {
              const next = commands[i] as Command
              if (next._tag !== "Update") break
              run.push(next)
              i++
            }
            yield* updateRun(run).pipe(
              Effect.catchAll((error) => Effect.sync(() => run.forEach((update) => fail(update, error.message))))
            )
          } else if (inFlight.length > 0) {
            // It sees the document once the updates before it are applied.
            held.push(command)
            i++
          } else {
            i++
            yield* one(command).pipe(Effect.catchAll((error) => Effect.sync(() => fail(command, error.message))))
          }
        }
      })

    return Option.some({
      handle,
      now,
      flush,
      busy: () => inFlight.length > 0 || held.length > 0,
      holding: () => held.length > 0,
      abandon: () => {
        const waiting = [...open.splice(0), ...serving, ...held.splice(0)]
        serving = []
        return waiting
      }
    })
  })

/** Answers a command that could not be served (storage failed, or the actor crashed while serving it). */
export const fail = (command: Command, message: string): void => settle(command, { _tag: "Failed", message })

/** Answers a command for a document that does not exist. */
export const notFound = (command: Command): void => settle(command, { _tag: "NotFound" })

const settle = (
  command: Command,
  outcome: { readonly _tag: "Failed"; readonly message: string } | { readonly _tag: "NotFound" }
): void => {
  switch (command._tag) {
    case "Appended":
      return command.orphaned()
    case "Leave":
      return command.reply()
    case "Presence":
    case "CheckIdle":
      return
    case "Update":
      replyCounted(command, outcome)
      return
    case "Join":
    case "ReadUpdates":
    case "Delete":
    case "Snapshot":
      return command.reply(outcome)
  }
}

/** A batch of updates sent to storage and not applied yet. */
interface InFlight {
  /**
   * Its updates; let go once all are answered (`release`): the batch may outlive them (an `Appended` waiting in a
   * mailbox), and whatever keeps it keeps them, with their frames and replies.
   */
  pending: ReadonlyArray<Update>
  readonly started: bigint
  readonly committing: bigint
  /**
   * How many of `pending`, from the first, have been answered. On the in-order path (SQLite, memory://) a crash halfway through
   * applying the outcome leaves the rest to the `Appended`'s `orphaned`, which neither answers nor counts the
   * answered ones again. (On the sequential path a crash fails the batch's commands through the supervisor.)
   */
  answered: number
}

const NO_UPDATES: ReadonlyArray<Update> = []

/** Lets go of a batch's updates once all are answered (nothing is left for `answerFrom`). */
const release = (batch: InFlight): void => {
  batch.pending = NO_UPDATES
  batch.answered = 0
}

/**
 * Answers the updates of a batch not answered yet from its append's outcome alone (no broadcast, no actor state).
 * Called again (a crash after an orphaned outcome was answered), it answers and counts nothing twice.
 * (@internal Exported for tests.)
 */
export const answerFrom = (exit: Exit.Exit<ReadonlyArray<AppendResult>, StorageError>, batch: InFlight): void => {
  const { pending } = batch
  for (let i = batch.answered; i < pending.length; i++) {
    const command = pending[i] as Update
    const result = Exit.isSuccess(exit) ? exit.value[i] : undefined
    const outcome: UpdateOutcome = result === undefined
      ? { _tag: "Failed", message: STORAGE_FAILED }
      : result.duplicate
      ? { _tag: "Duplicate", seq: result.seq }
      : { _tag: "Stored", seq: result.seq }
    replyCounted(command, outcome)
    batch.answered = i + 1
  }
}

/**
 * Wraps a reply so that only its first call counts: supervision may answer a command a second time. The wrapper
 * returns whether this call replied (false: an earlier one had), so that an update is counted once (`replyCounted`).
 */
export const once = <A>(reply: (outcome: A) => void): ((outcome: A) => boolean) => {
  let replied = false
  return (outcome) => {
    if (replied) return false
    replied = true
    reply(outcome)
    return true
  }
}

/**
 * Answers an update and counts it in `docsync_updates_total`, unless it was answered before (its reply says so).
 * So an update is counted once, whichever path answers it: the actor, a batch's outcome, or supervision after a
 * crash. Returns whether it replied.
 */
const replyCounted = (command: Update, outcome: UpdateOutcome): boolean => {
  if (!command.reply(outcome)) return false
  Metrics.add(Metrics.updates, 1, outcomeTags[outcome._tag])
  return true
}

const outcomeTags: Record<UpdateOutcome["_tag"], Metrics.Tags> = {
  Stored: Metrics.tags({ outcome: "stored" }),
  Duplicate: Metrics.tags({ outcome: "duplicate" }),
  InvalidBaseVersion: Metrics.tags({ outcome: "invalid_base_version" }),
  NotFound: Metrics.tags({ outcome: "not_found" }),
  Failed: Metrics.tags({ outcome: "failed" })
}

/**
 * Ends a membership whose leave no actor serves (it crashed, or the document could not be loaded): members outlive
 * the actor, so the member is taken out here, and the others are told as the actor's own leave tells them.
 */
export const leaveUnserved = (members: Members, connection: Connection): void => {
  const member = members.get(connection)
  if (member === undefined) return
  members.delete(connection)
  if (member.idle) return
  const frame = Buffer.from(presenceLeave(connection, "disconnect"))
  for (const other of members.values()) other.connection.send(frame)
}

const presenceLeave = (connection: Connection, reason: "idle" | "disconnect"): string =>
  JSON.stringify({ type: "presence_leave", clientId: connection.clientId, actorId: connection.actorId, reason })

/**
 * `state` as UTF-8 bytes in parts, with its updates spliced in as already-encoded JSON (the same text
 * `JSON.stringify` would give): `runs` are runs of comma-separated `Update` JSON in seq order, each in parts
 * (views of the log tail's chunks), passed on as they are: nothing of the log is copied or encoded again.
 */
const stateFrame = (
  state: Omit<StateMessage, "updates">,
  runs: ReadonlyArray<ReadonlyArray<Uint8Array>>
): ReadonlyArray<Uint8Array> => {
  const { presence, reset, ...head } = state
  const tail = JSON.stringify({ presence, ...(reset === true ? { reset } : {}) })
  const parts: Array<Uint8Array> = [Buffer.from(`${JSON.stringify(head).slice(0, -1)},"updates":[`)]
  for (const run of runs) {
    if (run.length === 0) continue
    if (parts.length > 1) parts.push(COMMA)
    parts.push(...run)
  }
  parts.push(Buffer.from(`],${tail.slice(1)}`))
  return parts
}

/**
 * `remote_update` from an update's `Update` JSON (as in `state`, the same key order), as bytes: encoded once, the
 * same buffer goes to every member. (@internal Exported for bench/micro-frame.ts.)
 */
export const remoteUpdateFrame = (fragment: string): Buffer => Buffer.from(`{"type":"remote_update",${fragment.slice(1)}`)