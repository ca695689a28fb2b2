/**
 * The one place a delivery turns into a record. Both session kinds, before
 * they read a result's bytes, ask {@linkcode ResultRecorder.admit} whether
 * the delivery may commit (the {@linkcode Ledger} decides: issued to that
 * runner, attempt not delivered yet, job not settled or being settled);
 * then they hand over what arrived, and acknowledge their runner only when
 * {@linkcode ResultRecorder.record} resolves, which is once a record is
 * durable:
 *
 * - a settled job (its `job` record; the scheduler is told), or
 * - with `--retries`, a failed attempt kept as an `attempt` record while
 *   the job goes back to the queue, or
 * - a quarantine suspect (a fast failure held back by the black-hole rule)
 *   kept as an `attempt` record marked `suspect`; later it either settles
 *   the job (a `job` record naming the same output), or the job runs again
 *   elsewhere, or another attempt settles the job first.
 *
 * Jobs given up as lost go through the same ledger: the first claim wins,
 * so a job is never both lost and recorded. A gang's K deliveries are
 * collected and committed together as one record; each member waits for
 * that commit before acknowledging its node.
 *
 * @module
 */

import { type JobList, taskOf } from "../jobs/job_list.ts";
import type { AttemptRecord, JobFields, JobRecord, ResultsStore, ReturnedFile, StagedOutput } from "./results_store.ts";
import type { RunnerLink, Scheduler } from "../scheduling/scheduler.ts";
import type { Claim, Ledger, Ticket } from "./ledger.ts";
import type { Quarantine, Verdict } from "../scheduling/quarantine.ts";
import { logger } from "../../util/log.ts";
import { isoNow } from "../../util/iso_now.ts";

const log = logger("manager");

/** What one runner (or one gang member) delivered for a job. */
export interface Delivery {
  /** The session that delivered it. */
  link: RunnerLink;
  /** Gang rank, from 1 (1 for a single runner). */
  rank: number;
  /** Exit status. */
  status: number;
  /** When the manager handed the job out (ISO-8601 UTC). */
  handedOutAt: string;
  /** The node's own start time, for binary tasks. */
  started?: string;
  /** The job's output (a plain job's, or a task's command log). */
  output?: StagedOutput;
  /** Other returned files, in Ret order. */
  returned: ReturnedFile[];
  /** The runner stopped the job at its `--timeout`. */
  timedOut?: boolean;
  /**
   * Nobody waits on this result's record to go on (a pipelined runner, a
   * local worker): its commit may share a sync (see `CommitOptions`).
   */
  patient?: boolean;
}

/** Options for {@linkcode ResultRecorder}. */
export interface ResultRecorderOptions {
  /** Times a job that exits non-zero is tried again. @default {0} */
  retries?: number;
  /** Black-hole detection (off when absent). */
  quarantine?: Quarantine;
  /** Told when a host is quarantined. */
  onQuarantine?: (host: string, until: number, reason: string) => void;
  /** The clock (ms). @default {Date.now} */
  now?: () => number;
  /**
   * Called with each job's settling record once it is durable (its output
   * file is final then), before the job counts as settled.
   */
  onRecorded?: (job: number, record: JobRecord) => void;
}

/**
 * The answer to {@linkcode ResultRecorder.admit}: commit (read the bytes,
 * then {@linkcode ResultRecorder.record}); a duplicate (read and discard
 * the bytes, then acknowledge once `settled` resolves); or unknown (the
 * manager never issued it: a protocol error of the runner's).
 */
export type Admission =
  | { readonly kind: "accepted"; readonly ticket: Admitted }
  | { readonly kind: "duplicate"; readonly settled: Promise<void>; readonly busy?: boolean }
  | { readonly kind: "unknown" };

/** An admitted delivery: the ledger's ticket (a gang's is taken once all its parts are in). */
export interface Admitted {
  /** The job. */
  readonly job: number;
  /** The attempt delivering. */
  readonly attempt: number;
  /** The ledger's ticket; undefined for a gang member (the gang claims once, when complete). */
  readonly ticket?: Ticket;
}

interface Pending {
  attempt: number;
  parts: Map<number, Delivery>;
  waiters: { resolve(): void; reject(err: unknown): void }[];
}

interface Suspect {
  attempt: number;
  delivery: Delivery;
  /** Its attempt record, durable once this resolves (held from the verdict on, so the quarantine and the recorder agree). */
  record: Promise<AttemptRecord>;
}

/** Records results, one settlement per job, through the ledger. */
export class ResultRecorder {
  readonly #scheduler: Scheduler;
  readonly #ledger: Ledger;
  readonly #results: ResultsStore;
  readonly #jobs: JobList;
  readonly #keyOf: (job: number) => string;
  readonly #retries: number;
  readonly #quarantine: Quarantine | undefined;
  readonly #onQuarantine: ResultRecorderOptions["onQuarantine"];
  readonly #now: () => number;
  readonly #onRecorded: ResultRecorderOptions["onRecorded"];
  /** Suspects held back by the quarantine (each durable as an attempt record), by job. */
  readonly #suspects = new Map<number, Suspect>();
  /** Gang deliveries being collected, by job. */
  readonly #pending = new Map<number, Pending>();
  /** Hosts the quarantine gave a break, and until when (ms since the epoch). */
  readonly #pauses = new Map<string, number>();

  /**
   * @param scheduler Settles and requeues jobs; its ledger decides.
   * @param results Where results go.
   * @param jobs The job list.
   * @param keyOf Content key of a job.
   * @param options Retry policy, quarantine, and who is told of each settling record.
   */
  constructor(
    scheduler: Scheduler,
    results: ResultsStore,
    jobs: JobList,
    keyOf: (job: number) => string,
    options: ResultRecorderOptions = {},
  ) {
    this.#scheduler = scheduler;
    this.#ledger = scheduler.ledger;
    this.#results = results;
    this.#jobs = jobs;
    this.#keyOf = keyOf;
    this.#retries = options.retries ?? 0;
    this.#quarantine = options.quarantine?.enabled ? options.quarantine : undefined;
    this.#onQuarantine = options.onQuarantine;
    this.#now = options.now ?? Date.now;
    this.#onRecorded = options.onRecorded;
  }

  /**
   * A runner announces a delivery of `job` by `attempt`: may it commit?
   * Call before reading its bytes. While another attempt of the job is
   * being recorded, waits for that commit first: it may settle the job
   * (this one is then a duplicate) or not (a retry, a failed commit: this
   * one may commit).
   */
  async admit(job: number, attempt: number, link: RunnerLink): Promise<Admission> {
    while (true) {
      const admission = this.admitNow(job, attempt, link);
      if (admission.kind !== "duplicate" || admission.busy !== true) return admission;
      await admission.settled;
    }
  }

  /**
   * {@linkcode admit} without waiting: while another attempt of the job is
   * being recorded, the answer is a duplicate marked `busy` (then call
   * {@linkcode admit}, which waits for that commit).
   */
  admitNow(job: number, attempt: number, link: RunnerLink): Admission {
    if ((this.#jobs.bundles?.[job]?.nodes ?? 1) > 1) {
      // A gang claims once, when all its members have delivered.
      const a = this.#ledger.assignment(job, attempt);
      if (a === undefined || this.#ledger.isSettled(job)) return admission(this.#ledger.claim(job, attempt));
      return { kind: "accepted", ticket: { job, attempt } };
    }
    return admission(this.#ledger.claim(job, attempt, link.runnerId));
  }

  /** The bytes of an admitted delivery did not arrive (the runner is dropped): nothing is recorded. */
  refuse(admitted: Admitted): void {
    if (admitted.ticket !== undefined) this.#ledger.abort(admitted.ticket);
  }

  /**
   * Records an admitted delivery. Resolves once its record (or attempt
   * record) is durable; rejects if its gang was abandoned or the commit
   * failed (nothing was recorded: the session drops its runner).
   */
  record(admitted: Admitted, delivery: Delivery): Promise<void> {
    const job = admitted.job;
    if (admitted.ticket === undefined) return this.#gangPart(admitted, delivery);
    if (this.#quarantine !== undefined) return this.#judge(admitted.ticket, delivery);
    return this.#commit(admitted.ticket, [delivery], job);
  }

  /**
   * How long (ms) the break the quarantine gives `host` still lasts (0: none
   * now): a session that does not wait for its acks (the pipelined
   * exchange) holds its answers to `PETO` that long.
   */
  pauseLeft(host: string): number {
    const until = this.#pauses.get(host);
    if (until === undefined) return 0;
    const left = until - this.#now();
    if (left <= 0) this.#pauses.delete(host);
    return Math.max(0, left);
  }

  /** A late duplicate: logged, discarded; the runner is acknowledged once `settled` resolves. */
  async discard(job: number, delivery: Delivery, settled: Promise<void>): Promise<void> {
    this.#scheduler.drop(delivery.link, job);
    log.info("Job at line {line} was already recorded; the result from {host} is discarded", {
      line: this.#jobs.lines[job],
      host: delivery.link.host,
    });
    await discard(delivery);
    await settled.catch(() => {});
  }

  #gangPart(admitted: Admitted, delivery: Delivery): Promise<void> {
    const job = admitted.job;
    const size = this.#jobs.bundles?.[job]?.nodes ?? 1;
    let pending = this.#pending.get(job);
    if (pending === undefined || pending.attempt !== admitted.attempt) {
      this.#pending.set(job, pending = { attempt: admitted.attempt, parts: new Map(), waiters: [] });
    }
    pending.parts.set(delivery.rank, delivery);
    const done = new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject }));
    if (pending.parts.size === size) {
      this.#pending.delete(job);
      const parts = [...pending.parts.values()].sort((a, b) => a.rank - b.rank);
      const claim = this.#ledger.claim(job, admitted.attempt);
      const commit = claim.kind === "accepted"
        ? this.#commit(claim.ticket, parts, job)
        : Promise.all(parts.map(discard)).then(() => claim.kind === "duplicate" ? claim.settled : undefined);
      commit.then(
        () => pending.waiters.forEach((w) => w.resolve()),
        (err) => pending.waiters.forEach((w) => w.reject(err)),
      );
    }
    return done;
  }

  /** Asks the quarantine about a single-node result and acts on its verdict. */
  #judge(ticket: Ticket, delivery: Delivery): Promise<void> {
    const job = ticket.job;
    const now = this.#now();
    const took = now - Date.parse(delivery.handedOutAt);
    const verdict = this.#quarantine!.onResult(delivery.link.host, job, delivery.status, took, now);
    if (
      !verdict.held && verdict.record.length === 1 && verdict.record[0] === job && verdict.requeue.length === 0 &&
      verdict.pause === undefined && verdict.quarantine === undefined && this.#suspects.size === 0
    ) {
      return this.#commit(ticket, [delivery], job); // the usual verdict: record it, nothing else to do
    }
    return this.#actOn(ticket, delivery, verdict, now);
  }

  /** Acts on a quarantine verdict other than "record this one". */
  async #actOn(ticket: Ticket, delivery: Delivery, verdict: Verdict, now: number): Promise<void> {
    const job = ticket.job;
    const host = delivery.link.host;
    let heldRecord: Promise<AttemptRecord> | undefined;
    if (verdict.held) {
      // Held from now on (the quarantine holds it already); durable, as an
      // attempt record marked suspect, before it is acknowledged.
      this.#scheduler.detach(delivery.link, job);
      heldRecord = this.#results.commitAttempt(
        this.#attemptFields(job, delivery, ticket.attempt),
        this.#outputOf(delivery),
        true,
        delivery.returned,
      ).then((record) => {
        this.#ledger.consume(ticket, true);
        return record;
      }, (err) => {
        this.#ledger.abort(ticket);
        this.#suspects.delete(job);
        this.#scheduler.requeueDetached(job);
        throw err;
      });
      heldRecord.catch(() => {});
      this.#suspects.set(job, { attempt: ticket.attempt, delivery, record: heldRecord });
    }
    if (verdict.pause !== undefined) this.#pauses.set(host, verdict.pause.until);
    if (verdict.quarantine !== undefined) {
      this.#scheduler.bar(host, verdict.quarantine.until);
      this.#onQuarantine?.(host, verdict.quarantine.until, verdict.quarantine.reason);
    }
    for (const j of verdict.requeue) {
      const held = this.#suspects.get(j);
      if (held === undefined) continue;
      this.#suspects.delete(j);
      try {
        await held.record;
      } catch {
        continue; // not recorded: already back in the queue
      }
      this.#ledger.unhold(j);
      this.#scheduler.requeueDetached(j);
    }
    // A job may stand in the list twice: this delivery, and an earlier
    // attempt of it held as a suspect (which this one then supersedes).
    for (const j of new Set(verdict.record)) {
      if (j === job && !verdict.held) await this.#commit(ticket, [delivery], job);
      else if (j !== job) await this.#flushSuspect(j);
    }
    if (this.#suspects.size > 0) await this.#releaseIfIdle();
    if (heldRecord !== undefined) await heldRecord;
    // A break before the host is judged: its session (every worker of it) answers nothing until then.
    if (verdict.pause !== undefined) await new Promise((r) => setTimeout(r, Math.max(0, verdict.pause!.until - now)));
  }

  /**
   * Records suspects held longer than allowed, or all of them once nothing
   * else is pending or running, as the failures they are.
   */
  async expireSuspects(): Promise<void> {
    if (this.#quarantine === undefined) return;
    for (const job of this.#quarantine.expire(this.#now())) await this.#flushSuspect(job);
    await this.#releaseIfIdle();
  }

  /** When the held suspects are all that is left of the run, records them now. */
  async #releaseIfIdle(): Promise<void> {
    const queue = this.#scheduler.queue;
    if (this.#suspects.size === 0 || queue.pending > 0 || queue.running > this.#suspects.size) return;
    for (const job of this.#quarantine!.release()) await this.#flushSuspect(job);
  }

  /** A held suspect is recorded as the failure it is: its attempt record settles the job (if nothing else has). */
  async #flushSuspect(job: number): Promise<void> {
    const held = this.#suspects.get(job);
    if (held === undefined) return;
    this.#suspects.delete(job);
    let record: AttemptRecord;
    try {
      record = await held.record;
    } catch {
      return; // not recorded: already back in the queue
    }
    let claim = this.#ledger.claimHeld(job, held.attempt);
    while (claim.kind === "duplicate" && !this.#ledger.isSettled(job) && this.#ledger.isHeld(job, held.attempt)) {
      // Another attempt's commit is in flight: it may settle the job, or not.
      await claim.settled;
      claim = this.#ledger.claimHeld(job, held.attempt);
    }
    if (claim.kind !== "accepted") return; // another attempt settled it meanwhile
    const status = held.delivery.status;
    if (status !== 0 && this.#scheduler.queue.failures(job) < this.#retries) {
      // Its attempt record is kept already: try again later.
      this.#ledger.abort(claim.ticket);
      this.#ledger.unhold(job);
      this.#scheduler.onJobRetry(held.delivery.link, job);
      return;
    }
    let settling: JobRecord;
    try {
      settling = await this.#results.commitFromAttempt(
        { ...this.#fields(job, held.delivery, held.attempt), status },
        record,
      );
    } catch (err) {
      this.#ledger.abort(claim.ticket);
      this.#suspects.set(job, held);
      throw err;
    }
    this.#tell(job, settling);
    this.#ledger.settle(claim.ticket);
    this.#scheduler.onJobSettled(held.delivery.link, job, status);
  }

  /** Drops the deliveries received for an abandoned gang job. */
  async abandon(job: number, reason: string): Promise<void> {
    const pending = this.#pending.get(job);
    if (pending === undefined) return;
    this.#pending.delete(job);
    for (const part of pending.parts.values()) await discard(part);
    for (const w of pending.waiters) w.reject(new Error(`gang abandoned: ${reason}`));
  }

  /**
   * Records a job given up as lost, then settles it, unless a result for
   * it is being (or was) recorded: then that result stands.
   */
  async lost(job: number, reason: string, link: RunnerLink): Promise<boolean> {
    while (true) {
      const claim = this.#ledger.claimLost(job);
      if (claim.kind === "duplicate") {
        await claim.settled;
        if (this.#ledger.isSettled(job)) return false;
        continue; // the commit in flight failed: try again
      }
      if (claim.kind !== "accepted") return false;
      let settling: JobRecord;
      try {
        settling = await this.#results.commitLost(
          { ...this.#fields(job, { link, handedOutAt: isoNow() }) },
          reason,
        );
      } catch (err) {
        this.#ledger.abort(claim.ticket);
        throw err;
      }
      this.#tell(job, settling);
      this.#ledger.settle(claim.ticket);
      this.#suspects.delete(job);
      this.#scheduler.settleLost(job);
      return true;
    }
  }

  #fields(job: number, d: Pick<Delivery, "link" | "handedOutAt">, attempt?: number): Omit<JobFields, "status"> {
    const jobs = this.#jobs;
    const name = jobs.bundles?.[job]?.name;
    return {
      key: this.#keyOf(job),
      line: jobs.lines[job],
      command: jobs.commands[job],
      host: d.link.host,
      start: d.handedOutAt,
      end: isoNow(),
      attempt: attempt ?? this.#scheduler.queue.attempts(job),
      ...(name !== undefined ? { name } : {}),
    };
  }

  #attemptFields(job: number, d: Delivery, attempt: number): JobFields & { status: number } {
    return {
      ...this.#fields(job, d, attempt),
      status: d.status,
      ...(d.timedOut ? { timedOut: true as const } : {}),
    };
  }

  #outputOf(d: Delivery): StagedOutput {
    return d.output ?? this.#results.stageOutput();
  }

  #commit(ticket: Ticket, parts: Delivery[], job: number): Promise<void> {
    let committed: Promise<void>;
    try {
      committed = this.#commitParts(ticket, parts, job);
    } catch (err) {
      committed = Promise.reject(err);
    }
    return committed.catch((err) => {
      this.#ledger.abort(ticket);
      throw err;
    });
  }

  #commitParts(ticket: Ticket, parts: Delivery[], job: number): Promise<void> {
    const gang = parts.length > 1;
    const status = gang ? parts.find((p) => p.status !== 0)?.status ?? 0 : parts[0].status;
    const link = parts[0].link;
    const timedOut = gang ? parts.some((p) => p.timedOut) : parts[0].timedOut;
    const fields = this.#fields(job, { link, handedOutAt: parts[0].handedOutAt }, ticket.attempt) as JobFields;
    if (gang) fields.host = parts.map((p) => p.link.host).join(",");
    fields.status = status;
    if (timedOut) fields.timedOut = true;
    const queue = this.#scheduler.queue;
    if (status !== 0 && queue.failures(job) < this.#retries) return this.#keepForRetry(ticket, parts, job, fields);
    const bundle = this.#jobs.bundles?.[job];
    if (bundle !== undefined) {
      fields.nodes = parts.map((p) => ({
        host: p.link.host,
        rank: p.rank,
        status: p.status,
        started: p.started ?? "",
      }));
    }
    const outputLog = gang ? taskOf(this.#jobs, job).outputLog : undefined;
    const returned = gang
      ? parts.flatMap((p) =>
        [
          ...(p.output && outputLog ? [{ name: outputLog, staged: p.output }] : []),
          ...p.returned,
        ].map((f) => ({ ...f, node: p.rank }))
      )
      : parts[0].returned;
    // A patient record waits for company only while a job that is not
    // already in the journal's batch is still out (it may bring some): the
    // last results of a run are synced at once.
    const patient = parts.every((p) => p.patient === true) && queue.running > this.#results.unsynced + 1;
    return this.#results.commit(fields, gang ? undefined : parts[0].output, returned, { patient }).then((settling) => {
      this.#tell(job, settling);
      this.#ledger.settle(ticket);
      this.#suspects.delete(job);
      this.#scheduler.onJobSettled(link, job, status);
    });
  }

  /**
   * Tells `onRecorded` of a durable settling record. What it throws is
   * logged, never the commit's failure: the record is in the journal, so
   * the job settles all the same.
   */
  #tell(job: number, record: JobRecord): void {
    try {
      this.#onRecorded?.(job, record);
    } catch (err) {
      log.error("Job at line {line} is recorded, but telling of it failed: {error}", {
        line: this.#jobs.lines[job],
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** A failed attempt with retries left: keeps what it said, then the job goes back to the queue. */
  async #keepForRetry(ticket: Ticket, parts: Delivery[], job: number, fields: JobFields): Promise<void> {
    for (const part of parts.slice(1)) await discard(part);
    for (const f of parts[0].returned) await f.staged?.discard();
    await this.#results.commitAttempt({ ...fields, status: fields.status as number }, this.#outputOf(parts[0]));
    this.#ledger.consume(ticket);
    this.#scheduler.onJobRetry(parts[0].link, job);
  }
}

function admission(claim: Claim): Admission {
  if (claim.kind !== "accepted") return claim;
  return { kind: "accepted", ticket: { job: claim.ticket.job, attempt: claim.ticket.attempt, ticket: claim.ticket } };
}

async function discard(part: Delivery): Promise<void> {
  await part.output?.discard();
  for (const f of part.returned) await f.staged?.discard();
}
