/**
 * Scheduling, as `on*` handlers over the {@linkcode JobQueue} plus an
 * outbound {@linkcode RunnerLink} per connected runner. It knows nothing of
 * sockets or wire formats, so it is tested by driving the handlers with
 * recording links.
 *
 * Rules (protocol notes, text protocol):
 * - a request is answered with the next pending job;
 * - with nothing pending but jobs still running elsewhere, a request from a
 *   runner that holds no job is held (a requeued job will still find a
 *   runner); a runner that holds jobs is released at once (holding its
 *   request would deadlock its communication lock);
 * - a runner that is lost gives its jobs back to the front of the queue;
 * - a job settles once: a second result for it is refused.
 *
 * @module
 */

import type { JobQueue } from "./job_queue.ts";

/** What the scheduler can tell one connected runner (its outbound side). */
export interface RunnerLink {
  /** Name for logs and counts (the runner's announced host name). */
  readonly host: string;
  /** The runner's address, for logs. */
  readonly peer: string;
  /** Answers the runner's pending request with `job`. */
  assign(job: number): void;
  /** Answers the runner's pending request: there will be no more jobs. */
  release(): void;
}

/** Notifications for logs, progress display and the summary. */
export interface SchedulerEvents {
  /** A runner completed its handshake. */
  onJoined?(link: RunnerLink): void;
  /** A job settled with `status` on `link`. */
  onSettled?(job: number, status: number, link: RunnerLink): void;
  /** Jobs of a lost runner went back to the queue. */
  onRequeued?(jobs: readonly number[], link: RunnerLink): void;
}

/**
 * Hands out jobs to runners and tracks which runner holds which job.
 *
 * @example
 * ```ts
 * import { JobQueue } from "./job_queue.ts";
 * import { Scheduler } from "./scheduler.ts";
 * const s = new Scheduler(new JobQueue(1));
 * const got: number[] = [];
 * const link = { host: "a", peer: "10.0.0.7:5000", assign: (j: number) => got.push(j), release() {} };
 * s.onRunnerJoined(link);
 * s.onJobRequest(link);
 * console.assert(got[0] === 0);
 * ```
 */
export class Scheduler {
  /** The queue being drained. */
  readonly queue: JobQueue;
  /** Resolves when every job is settled. */
  readonly done: Promise<void>;
  readonly #events: SchedulerEvents;
  readonly #holding = new Map<RunnerLink, Set<number>>();
  readonly #claimed = new Set<number>();
  readonly #held = new Set<RunnerLink>();
  readonly #settledBy = new Map<string, number>();
  #failed = 0;
  #resolveDone!: () => void;

  /**
   * @param queue The jobs to hand out.
   * @param events Optional observers.
   */
  constructor(queue: JobQueue, events: SchedulerEvents = {}) {
    this.queue = queue;
    this.#events = events;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    if (queue.finished) this.#resolveDone();
  }

  /** Jobs that settled with a non-zero status. */
  get failed(): number {
    return this.#failed;
  }

  /** Settled job counts per runner host. */
  get settledByHost(): ReadonlyMap<string, number> {
    return this.#settledBy;
  }

  /** Number of connected runners. */
  get runners(): number {
    return this.#holding.size;
  }

  /** A runner connected and completed its handshake. */
  onRunnerJoined(link: RunnerLink): void {
    this.#holding.set(link, new Set());
    this.#events.onJoined?.(link);
  }

  /** A runner asks for a job: assign, hold or release it. */
  onJobRequest(link: RunnerLink): void {
    const mine = this.#holding.get(link);
    if (mine === undefined) return;
    const job = this.queue.take();
    if (job !== -1) {
      mine.add(job);
      link.assign(job);
    } else if (this.queue.running > 0 && mine.size === 0) {
      this.#held.add(link);
    } else {
      link.release();
    }
  }

  /** The jobs `link` holds right now. */
  jobsOf(link: RunnerLink): ReadonlySet<number> {
    return this.#holding.get(link) ?? new Set();
  }

  /**
   * A runner announces a result: claims the first job it holds that
   * `matches` and whose result is not already arriving.
   *
   * @returns The job, or `undefined` if the runner holds no such job.
   */
  claimResult(link: RunnerLink, matches: (job: number) => boolean): number | undefined {
    for (const job of this.#holding.get(link) ?? []) {
      if (!this.#claimed.has(job) && matches(job)) {
        this.#claimed.add(job);
        return job;
      }
    }
    return undefined;
  }

  /**
   * A claimed result was recorded: the job is settled. Only the runner that
   * holds the job can settle it.
   *
   * @returns Whether the job was settled by this call.
   */
  onJobSettled(link: RunnerLink, job: number, status: number): boolean {
    const mine = this.#holding.get(link);
    if (mine === undefined || !mine.delete(job)) return false;
    this.#claimed.delete(job);
    if (!this.queue.settle(job)) return false;
    if (status !== 0) this.#failed++;
    this.#settledBy.set(link.host, (this.#settledBy.get(link.host) ?? 0) + 1);
    this.#events.onSettled?.(job, status, link);
    if (this.queue.finished) {
      for (const held of this.#held) held.release();
      this.#held.clear();
      this.#resolveDone();
    }
    return true;
  }

  /** A runner is gone (closed, broke protocol, timed out): its jobs go back to the front. */
  onRunnerLost(link: RunnerLink): void {
    const mine = this.#holding.get(link);
    this.#holding.delete(link);
    this.#held.delete(link);
    if (mine === undefined || mine.size === 0) return;
    const jobs = [...mine];
    // Requeue in reverse so the runner's oldest job ends up first.
    for (let i = jobs.length - 1; i >= 0; i--) {
      this.#claimed.delete(jobs[i]);
      this.queue.requeue(jobs[i]);
    }
    this.#events.onRequeued?.(jobs, link);
    for (const held of [...this.#held]) {
      if (this.queue.pending === 0) break;
      this.#held.delete(held);
      this.onJobRequest(held);
    }
  }
}
