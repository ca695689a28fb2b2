/**
 * Records tasks run on binary nodes: one node's part at a time, committed
 * once per job. A gang's K parts are collected until all have arrived, then
 * committed together as one record; each member's session waits for that
 * commit before it acknowledges its node's Leave.
 *
 * @module
 */

import type { ReturnedFile, StagedOutput } from "./results_store.ts";
import type { ResultsStore } from "./results_store.ts";
import type { RunnerLink, Scheduler } from "./scheduler.ts";
import { type JobList, taskOf } from "./job_list.ts";

/** One node's part of a task, as its owner session received it. */
export interface NodePart {
  /** The session that ran it. */
  link: RunnerLink;
  /** Gang rank, from 1. */
  rank: number;
  /** Status from Finished. */
  status: number;
  /** The node's start time (from its reply to Start). */
  started: string;
  /** When the manager handed the task out. */
  handedOutAt: string;
  /** The task's output log, when the task has one (plain commands). */
  output?: StagedOutput;
  /** Every other returned file, in Ret order. */
  returned: ReturnedFile[];
}

interface Pending {
  parts: Map<number, NodePart>;
  waiters: { resolve(): void; reject(err: unknown): void }[];
}

/** Commits binary tasks, one record per job. */
export class TaskRecorder {
  readonly #scheduler: Scheduler;
  readonly #results: ResultsStore;
  readonly #jobs: JobList;
  readonly #keyOf: (job: number) => string;
  readonly #pending = new Map<number, Pending>();

  /**
   * @param scheduler Settles jobs once committed.
   * @param results Where results go.
   * @param jobs The job list.
   * @param keyOf Content key of a job.
   */
  constructor(scheduler: Scheduler, results: ResultsStore, jobs: JobList, keyOf: (job: number) => string) {
    this.#scheduler = scheduler;
    this.#results = results;
    this.#jobs = jobs;
    this.#keyOf = keyOf;
  }

  /**
   * Records one node's part of `job`. Resolves once the whole job is
   * committed; rejects if the gang was abandoned or the commit failed.
   */
  record(job: number, part: NodePart): Promise<void> {
    const size = taskOf(this.#jobs, job).nodes;
    let pending = this.#pending.get(job);
    if (pending === undefined) this.#pending.set(job, pending = { parts: new Map(), waiters: [] });
    pending.parts.set(part.rank, part);
    const done = new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject }));
    if (pending.parts.size === size) {
      this.#pending.delete(job);
      this.#commit(job, [...pending.parts.values()].sort((a, b) => a.rank - b.rank)).then(
        () => pending.waiters.forEach((w) => w.resolve()),
        (err) => pending.waiters.forEach((w) => w.reject(err)),
      );
    }
    return done;
  }

  /** Drops the parts received for an abandoned gang job. */
  async abandon(job: number, reason: string): Promise<void> {
    const pending = this.#pending.get(job);
    if (pending === undefined) return;
    this.#pending.delete(job);
    for (const part of pending.parts.values()) {
      await part.output?.discard();
      for (const f of part.returned) await f.staged?.discard();
    }
    for (const w of pending.waiters) w.reject(new Error(`gang abandoned: ${reason}`));
  }

  async #commit(job: number, parts: NodePart[]): Promise<void> {
    const jobs = this.#jobs;
    const bundle = jobs.bundles?.[job];
    const gang = parts.length > 1;
    const status = parts.find((p) => p.status !== 0)?.status ?? 0;
    const returned = parts.flatMap((p) =>
      gang
        ? [...(p.output ? [{ name: taskOf(jobs, job).outputLog!, node: p.rank, staged: p.output }] : []), ...p.returned]
          .map((f) => ({ ...f, node: p.rank }))
        : p.returned
    );
    await this.#results.commit(
      {
        key: this.#keyOf(job),
        line: jobs.lines[job],
        command: jobs.commands[job],
        status,
        host: parts.map((p) => p.link.host).join(","),
        start: parts[0].handedOutAt,
        end: new Date().toISOString(),
        attempt: this.#scheduler.queue.attempts(job),
        ...(bundle?.name !== undefined ? { name: bundle.name } : {}),
        ...(bundle !== undefined
          ? { nodes: parts.map((p) => ({ host: p.link.host, rank: p.rank, status: p.status, started: p.started })) }
          : {}),
      },
      gang ? undefined : parts[0].output,
      returned,
    );
    this.#scheduler.onJobSettled(parts[0].link, job, status);
  }
}
