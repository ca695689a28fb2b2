/**
 * The one place a result turns into a record. Both session kinds hand over
 * what a runner delivered; the recorder decides what it becomes:
 *
 * - a settled job (the result is committed and the scheduler told), or
 * - with `--retries`, a failed attempt kept as an `attempt` record while the
 *   job goes back to the queue;
 *
 * and records jobs given up as lost. A gang's K deliveries are collected
 * and committed together as one record; each member waits for that commit
 * before acknowledging its node.
 *
 * @module
 */

import { type JobList, taskOf } from "./job_list.ts";
import type { JobFields, ResultsStore, ReturnedFile, StagedOutput } from "./results_store.ts";
import type { RunnerLink, Scheduler } from "./scheduler.ts";
import { JobState } from "./job_queue.ts";
import type { Quarantine } from "./quarantine.ts";
import { logger } from "../util/log.ts";

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
}

interface Pending {
  parts: Map<number, Delivery>;
  waiters: { resolve(): void; reject(err: unknown): void }[];
}

/** Records results, one settlement per job. */
export class ResultRecorder {
  readonly #scheduler: Scheduler;
  readonly #results: ResultsStore;
  readonly #jobs: JobList;
  readonly #keyOf: (job: number) => string;
  readonly #retries: number;
  readonly #quarantine: Quarantine | undefined;
  readonly #onQuarantine: ResultRecorderOptions["onQuarantine"];
  readonly #now: () => number;
  /** Suspect results held back by the quarantine, by job. */
  readonly #suspects = new Map<number, Delivery>();
  readonly #pending = new Map<number, Pending>();
  readonly #committing = new Set<number>();

  /**
   * @param scheduler Settles and requeues jobs.
   * @param results Where results go.
   * @param jobs The job list.
   * @param keyOf Content key of a job.
   * @param options Retry policy.
   */
  constructor(
    scheduler: Scheduler,
    results: ResultsStore,
    jobs: JobList,
    keyOf: (job: number) => string,
    options: ResultRecorderOptions = {},
  ) {
    this.#scheduler = scheduler;
    this.#results = results;
    this.#jobs = jobs;
    this.#keyOf = keyOf;
    this.#retries = options.retries ?? 0;
    this.#quarantine = options.quarantine?.enabled ? options.quarantine : undefined;
    this.#onQuarantine = options.onQuarantine;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Records one delivery for `job`. Resolves once the job's record (or its
   * attempt record) is durable; rejects if its gang was abandoned or the
   * commit failed (the job then stays with its runner, which is dropped).
   */
  record(job: number, delivery: Delivery): Promise<void> {
    const size = this.#jobs.bundles?.[job]?.nodes ?? 1;
    if (size === 1 && (this.#scheduler.queue.stateOf(job) === JobState.SETTLED || this.#committing.has(job))) {
      // Two runners ran it (a lease ran out, then the first came back): the
      // first result recorded wins; this one is acknowledged and dropped.
      this.#scheduler.drop(delivery.link, job);
      log.info("Job at line {line} was already recorded; the result from {host} is discarded", {
        line: this.#jobs.lines[job],
        host: delivery.link.host,
      });
      return discard(delivery);
    }
    if (size === 1 && this.#quarantine !== undefined) return this.#judge(job, delivery);
    this.#committing.add(job);
    let pending = this.#pending.get(job);
    if (pending === undefined) this.#pending.set(job, pending = { parts: new Map(), waiters: [] });
    pending.parts.set(delivery.rank, delivery);
    const done = new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject }));
    if (pending.parts.size === size) {
      this.#pending.delete(job);
      const parts = [...pending.parts.values()].sort((a, b) => a.rank - b.rank);
      this.#commit(job, parts).finally(() => this.#committing.delete(job)).then(
        () => pending.waiters.forEach((w) => w.resolve()),
        (err) => pending.waiters.forEach((w) => w.reject(err)),
      );
    }
    return done;
  }

  /** Asks the quarantine about a single-node result and acts on its verdict. */
  async #judge(job: number, delivery: Delivery): Promise<void> {
    const now = this.#now();
    const host = delivery.link.host;
    const took = now - Date.parse(delivery.handedOutAt);
    const verdict = this.#quarantine!.onResult(host, job, delivery.status, took, now);
    if (verdict.held) {
      this.#scheduler.detach(delivery.link, job);
      this.#suspects.set(job, delivery);
    }
    if (verdict.quarantine !== undefined) {
      this.#scheduler.bar(host, verdict.quarantine.until);
      this.#onQuarantine?.(host, verdict.quarantine.until, verdict.quarantine.reason);
    }
    for (const j of verdict.requeue) {
      const held = this.#suspects.get(j);
      this.#suspects.delete(j);
      if (held !== undefined) await discard(held);
      this.#scheduler.requeueDetached(j);
    }
    for (const j of verdict.record) {
      if (j === job) await this.#commitOne(job, delivery, false);
      else await this.#flushSuspect(j);
    }
    await this.#releaseIfIdle();
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

  async #flushSuspect(job: number): Promise<void> {
    const held = this.#suspects.get(job);
    if (held === undefined) return;
    this.#suspects.delete(job);
    await this.#commitOne(job, held, true);
  }

  async #commitOne(job: number, delivery: Delivery, detached: boolean): Promise<void> {
    this.#committing.add(job);
    try {
      await this.#commit(job, [delivery], detached);
    } finally {
      this.#committing.delete(job);
    }
  }

  /** Drops the deliveries received for an abandoned gang job. */
  async abandon(job: number, reason: string): Promise<void> {
    const pending = this.#pending.get(job);
    if (pending === undefined) return;
    this.#pending.delete(job);
    for (const part of pending.parts.values()) await discard(part);
    for (const w of pending.waiters) w.reject(new Error(`gang abandoned: ${reason}`));
  }

  /** Records a job given up as lost, then settles it. */
  async lost(job: number, reason: string, link: RunnerLink): Promise<void> {
    const now = new Date().toISOString();
    await this.#results.commitLost({ ...this.#fields(job, link.host, now) }, reason);
    this.#scheduler.settleLost(job);
  }

  #fields(job: number, host: string, start: string): Omit<JobFields, "status"> {
    const jobs = this.#jobs;
    const name = jobs.bundles?.[job]?.name;
    return {
      key: this.#keyOf(job),
      line: jobs.lines[job],
      command: jobs.commands[job],
      host,
      start,
      end: new Date().toISOString(),
      attempt: this.#scheduler.queue.attempts(job),
      ...(name !== undefined ? { name } : {}),
    };
  }

  async #commit(job: number, parts: Delivery[], detached = false): Promise<void> {
    const gang = parts.length > 1;
    const status = parts.find((p) => p.status !== 0)?.status ?? 0;
    const link = parts[0].link;
    const fields: JobFields = {
      ...this.#fields(job, parts.map((p) => p.link.host).join(","), parts[0].handedOutAt),
      status,
    };
    const queue = this.#scheduler.queue;
    if (status !== 0 && queue.failures(job) < this.#retries) {
      // Keep what this attempt said, then try again later.
      for (const part of parts.slice(1)) await discard(part);
      for (const f of parts[0].returned) await f.staged?.discard();
      await this.#results.commitAttempt({ ...fields, status }, parts[0].output ?? this.#results.stageOutput());
      if (detached) this.#scheduler.retryDetached(job);
      else this.#scheduler.onJobRetry(link, job);
      return;
    }
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
    await this.#results.commit(fields, gang ? undefined : parts[0].output, returned);
    if (detached) this.#scheduler.settleDetached(job, status, link);
    else this.#scheduler.onJobSettled(link, job, status);
  }
}

async function discard(part: Delivery): Promise<void> {
  await part.output?.discard();
  for (const f of part.returned) await f.staged?.discard();
}
