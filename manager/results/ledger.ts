/**
 * The commit authority: the one place that decides whether what arrived for
 * a job may become a record. Every path that writes a job's record (a
 * result, a held quarantine suspect, a job given up as lost, a result that
 * an identified runner kept across a lost connection or a manager restart,
 * a retried attempt) first asks for a {@linkcode Ticket} here, and returns
 * it when its commit is durable (or has failed).
 *
 * The rules, per job:
 *
 * - a job is **settled once**: after one settling commit, every other
 *   delivery is a duplicate;
 * - at most **one commit at a time**: while one is in flight, another
 *   delivery is a duplicate, acknowledged only after that commit ends;
 * - a result belongs to an **assignment the manager issued**: the attempt
 *   number it was handed out with, to the runner (by id, for identified
 *   runners) it was handed to, in a run of this results directory; each
 *   attempt delivers once;
 * - a job given up as lost needs no attempt, but loses to a result that is
 *   being committed (and vice versa: the first to claim wins).
 *
 * Pure bookkeeping, no I/O: the model-based test drives it (through the
 * recorder) with random interleavings.
 *
 * @module
 */

/** One hand-out of a job: attempt `attempt`, to `runner` (an identified runner's id), in run `run`. */
export interface Assignment {
  /** The attempt number (1 for the first hand-out; it never repeats for a key). */
  readonly attempt: number;
  /** The identified runner it went to, if it has an id. */
  readonly runner?: string;
  /** The manager run that issued it. */
  readonly run: string;
}

/** A claim that may commit. Give it back with {@linkcode Ledger.settle}, {@linkcode Ledger.consume} or {@linkcode Ledger.abort}. */
export interface Ticket {
  /** The job. */
  readonly job: number;
  /** The attempt delivering (0 for a job given up as lost, or a held suspect being recorded). */
  readonly attempt: number;
}

/** The answer to a claim. */
export type Claim =
  /** Commit it; this ticket is the only one for the job right now. */
  | { readonly kind: "accepted"; readonly ticket: Ticket }
  /**
   * Already settled, being settled, or this attempt already delivered:
   * discard it, and acknowledge once `settled` resolves (the commit in
   * flight is durable, or failed).
   */
  | { readonly kind: "duplicate"; readonly settled: Promise<void>; readonly busy?: boolean }
  /** The manager never issued this assignment (to this runner, in a run of this directory). */
  | { readonly kind: "unknown" };

interface Commit {
  readonly attempt: number;
  readonly done: Promise<void>;
  resolve(): void;
}

/**
 * Who may settle which job, and whether it is settled.
 *
 * @example
 * ```ts
 * import { Ledger } from "./ledger.ts";
 * const ledger = new Ledger(1, "run-a");
 * ledger.issue(0, { attempt: 1, run: "run-a" });
 * const c = ledger.claim(0, 1);
 * console.assert(c.kind === "accepted");
 * if (c.kind === "accepted") ledger.settle(c.ticket);
 * console.assert(ledger.claim(0, 1).kind === "duplicate");
 * ```
 */
export class Ledger {
  /** This run's identity. */
  readonly run: string;
  readonly #settled: Uint8Array;
  readonly #runs: Set<string>;
  /** Open assignments of unsettled jobs: job → attempt → assignment. */
  readonly #issued = new Map<number, Map<number, Assignment>>();
  /** Attempts of unsettled jobs that have delivered (their late copies are duplicates). */
  readonly #spent = new Map<number, Set<number>>();
  /** Commits in flight, by job. */
  readonly #commits = new Map<number, Commit>();
  /** Held suspects: job → the attempt whose durable attempt record may still settle it. */
  readonly #held = new Map<number, number>();
  /** Content keys of unsettled jobs issued to identified runners, both ways. */
  readonly #byKey = new Map<string, number>();
  readonly #keyOf = new Map<number, string>();
  /** Each job's content key, for keys that were not issued; absent: only issued keys are known. */
  readonly #keys: ((job: number) => string) | undefined;
  /** Every job of the list by content key: made the first time a key not issued is looked up. */
  #everyKey: Map<string, number> | undefined;

  /**
   * @param size Jobs in the list.
   * @param run This run's identity (its `run` record's id).
   * @param earlierRuns Identities of the earlier runs on this results directory.
   * @param settled Jobs settled by earlier runs.
   * @param keyOf Each job's content key (the one {@linkcode issue} is given):
   * {@linkcode jobOfKey} finds jobs never issued, or settled, by it. Without
   * it, only the keys of issued jobs are known.
   */
  constructor(
    size: number,
    run: string,
    earlierRuns: Iterable<string> = [],
    settled?: (job: number) => boolean,
    keyOf?: (job: number) => string,
  ) {
    this.run = run;
    this.#keys = keyOf;
    this.#runs = new Set([run, ...earlierRuns]);
    this.#settled = new Uint8Array(size);
    if (settled !== undefined) {
      for (let job = 0; job < size; job++) if (settled(job)) this.#settled[job] = 1;
    }
  }

  /** Whether `job` is settled. */
  isSettled(job: number): boolean {
    return this.#settled[job] === 1;
  }

  /** Whether `run` is this run or an earlier run on the same results directory. */
  knowsRun(run: string): boolean {
    return this.#runs.has(run);
  }

  /**
   * Records a hand-out: `job` went out as `assignment`. With its content
   * `key` (for identified runners, whose kept results name the key), the
   * job can be found by key in O(1).
   */
  issue(job: number, assignment: Assignment, key?: string): void {
    if (this.#settled[job] === 1) return;
    if (key !== undefined && !this.#keyOf.has(job)) {
      this.#keyOf.set(job, key);
      this.#byKey.set(key, job);
    }
    let byAttempt = this.#issued.get(job);
    if (byAttempt === undefined) this.#issued.set(job, byAttempt = new Map());
    byAttempt.set(assignment.attempt, assignment);
  }

  /**
   * The job of the list with content key `key`, whether it was issued,
   * settled or neither. An unsettled job issued to an identified runner is
   * found in O(1) ({@linkcode issuedJobOfKey}); any other key is looked up
   * in an index of every job's key (from the constructor's `keyOf`), made
   * the first time such a key is asked for: a run that never asks (no
   * returning runner naming a result this run did not hand out) never
   * makes it.
   */
  jobOfKey(key: string): number | undefined {
    const issued = this.#byKey.get(key);
    if (issued !== undefined || this.#keys === undefined) return issued;
    if (this.#everyKey === undefined) {
      const everyKey = new Map<string, number>();
      for (let job = 0; job < this.#settled.length; job++) everyKey.set(this.#keys(job), job);
      this.#everyKey = everyKey;
    }
    return this.#everyKey.get(key);
  }

  /**
   * The unsettled job with content key `key` that went to an identified
   * runner, if any: the O(1) part of {@linkcode jobOfKey}, which never
   * looks over the whole list (a result a runner delivers must be one it
   * was issued).
   */
  issuedJobOfKey(key: string): number | undefined {
    return this.#byKey.get(key);
  }

  /** The open assignment `attempt` of `job`, if the manager issued it and it has not delivered. */
  assignment(job: number, attempt: number): Assignment | undefined {
    return this.#issued.get(job)?.get(attempt);
  }

  /**
   * Whether the manager already has what attempt `attempt` of `job`
   * delivers: the job is settled, or that attempt delivered (a kept result
   * announced again by a runner stopped after its ack, before it forgot it).
   */
  hasResult(job: number, attempt: number): boolean {
    return this.#settled[job] === 1 || this.#wasIssued(job, attempt);
  }

  /**
   * Whether an identified runner's kept result (`run`, `job`, `attempt`) is
   * one the manager wants: issued to that runner in a run of this
   * directory, not yet delivered, and the job not settled.
   */
  wants(runner: string, run: string, job: number, attempt: number): boolean {
    const a = this.assignment(job, attempt);
    // A job being recorded as lost wants no result any more.
    const losing = this.#commits.get(job)?.attempt === 0;
    return this.#settled[job] === 0 && !losing && a !== undefined && a.runner === runner && a.run === run;
  }

  /**
   * A delivery of `job` by `attempt` (from the identified `runner`, if it has
   * an id): may it commit? While another attempt's commit is in flight the
   * answer is a duplicate marked `busy`: ask again once `settled` resolves.
   */
  claim(job: number, attempt: number, runner?: string): Claim {
    const a = this.assignment(job, attempt);
    if (this.#settled[job] === 1 || (a === undefined && this.#wasIssued(job, attempt))) return this.#duplicate(job);
    const commit = this.#commits.get(job);
    if (commit !== undefined) {
      // Another attempt is being recorded: it may settle the job, or not (a
      // retry, a failed commit). Only then is this one a duplicate, or not.
      return { kind: "duplicate", settled: commit.done, busy: a !== undefined && commit.attempt !== attempt };
    }
    if (a === undefined || (a.runner !== undefined && a.runner !== runner)) return { kind: "unknown" };
    return this.#begin(job, attempt);
  }

  /** A job given up as lost: may it be recorded as lost? */
  claimLost(job: number): Claim {
    if (this.#settled[job] === 1 || this.#commits.has(job)) return this.#duplicate(job);
    return this.#begin(job, 0);
  }

  /** A held suspect of `job` by `attempt` is to be recorded as the failure it is: may it? */
  claimHeld(job: number, attempt: number): Claim {
    if (this.#held.get(job) !== attempt) return this.#duplicate(job);
    if (this.#settled[job] === 1 || this.#commits.has(job)) return this.#duplicate(job);
    return this.#begin(job, 0);
  }

  /** The ticket's commit settled the job: it is done, for good. */
  settle(ticket: Ticket): void {
    const job = ticket.job;
    this.#end(ticket);
    if (this.#settled[job] === 1) return;
    this.#settled[job] = 1;
    this.#issued.delete(job);
    this.#spent.delete(job);
    this.#held.delete(job);
    const key = this.#keyOf.get(job);
    if (key !== undefined) {
      this.#keyOf.delete(job);
      this.#byKey.delete(key);
    }
  }

  /**
   * The ticket's attempt was recorded as an attempt, not a settlement (a
   * failure to retry, or a held suspect): that attempt has delivered; the
   * job stays open. With `hold`, the attempt record may still settle the
   * job later ({@linkcode claimHeld}).
   */
  consume(ticket: Ticket, hold = false): void {
    this.#end(ticket);
    this.#spend(ticket.job, ticket.attempt);
    if (hold) this.#held.set(ticket.job, ticket.attempt);
  }

  /** Whether the attempt record of `attempt` is held as a suspect of `job` (it may still settle it). */
  isHeld(job: number, attempt: number): boolean {
    return this.#held.get(job) === attempt;
  }

  /** A held suspect of `job` is not to be recorded (it runs again elsewhere). */
  unhold(job: number): void {
    this.#held.delete(job);
  }

  /** The ticket's commit failed: nothing was recorded; the assignment may deliver again. */
  abort(ticket: Ticket): void {
    this.#end(ticket);
  }

  #spend(job: number, attempt: number): void {
    const byAttempt = this.#issued.get(job);
    if (byAttempt === undefined) return;
    byAttempt.delete(attempt);
    let spent = this.#spent.get(job);
    if (spent === undefined) this.#spent.set(job, spent = new Set());
    spent.add(attempt);
  }

  #wasIssued(job: number, attempt: number): boolean {
    return this.#spent.get(job)?.has(attempt) ?? false;
  }

  #begin(job: number, attempt: number): Claim {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.#commits.set(job, { attempt, done, resolve });
    return { kind: "accepted", ticket: { job, attempt } };
  }

  #end(ticket: Ticket): void {
    const commit = this.#commits.get(ticket.job);
    if (commit === undefined) return;
    this.#commits.delete(ticket.job);
    commit.resolve();
  }

  #duplicate(job: number): Claim {
    return { kind: "duplicate", settled: this.#commits.get(job)?.done ?? Promise.resolve() };
  }
}
