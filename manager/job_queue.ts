/**
 * The job queue: which jobs are pending, running and settled, and how many
 * times each was handed out. Jobs are numbered `0..size-1` (their index in
 * the {@linkcode JobList}). Every operation is O(1) and the whole queue
 * lives in typed arrays, so a million jobs cost a few megabytes and
 * dispatch does not slow down as the queue grows.
 *
 * @module
 */

/** Where a job is in its life. */
export const JobState = Object.freeze(
  {
    PENDING: 0,
    RUNNING: 1,
    SETTLED: 2,
  } as const,
);

/** One of {@linkcode JobState}'s values. */
export type JobStateValue = typeof JobState[keyof typeof JobState];

/**
 * Pending jobs in a double-ended ring (requeued jobs go to the front), plus
 * per-job state and attempt counters.
 *
 * @example
 * ```ts
 * import { JobQueue } from "./job_queue.ts";
 * const q = new JobQueue(3);
 * const a = q.take(); // 0
 * q.requeue(a);       // back to the front
 * console.assert(q.take() === 0 && q.attempts(0) === 2);
 * ```
 */
export class JobQueue {
  /** Number of jobs in the run. */
  readonly size: number;
  readonly #ring: Int32Array;
  #head = 0;
  #pending = 0;
  #running = 0;
  #settled = 0;
  readonly #state: Uint8Array;
  readonly #attempts: Uint16Array;

  /**
   * @param size Number of jobs.
   * @param initiallySettled Jobs already settled (e.g. by an earlier run), which are never queued.
   */
  constructor(size: number, initiallySettled?: (job: number) => boolean) {
    this.size = size;
    this.#ring = new Int32Array(Math.max(size, 1));
    this.#state = new Uint8Array(size);
    this.#attempts = new Uint16Array(size);
    for (let job = 0; job < size; job++) {
      if (initiallySettled?.(job)) {
        this.#state[job] = JobState.SETTLED;
        this.#settled++;
      } else {
        this.#ring[this.#pending++] = job;
      }
    }
  }

  /** Jobs waiting to be handed out. */
  get pending(): number {
    return this.#pending;
  }

  /** Jobs handed out and not settled. */
  get running(): number {
    return this.#running;
  }

  /** Jobs with a recorded result. */
  get settled(): number {
    return this.#settled;
  }

  /** Whether every job is settled. */
  get finished(): boolean {
    return this.#settled === this.size;
  }

  /** The state of `job`. */
  stateOf(job: number): JobStateValue {
    return this.#state[job] as JobStateValue;
  }

  /** How many times `job` has been handed out. */
  attempts(job: number): number {
    return this.#attempts[job];
  }

  /** Takes the next pending job and marks it running, or returns -1. */
  take(): number {
    if (this.#pending === 0) return -1;
    const job = this.#ring[this.#head];
    this.#head = (this.#head + 1) % this.#ring.length;
    this.#pending--;
    this.#state[job] = JobState.RUNNING;
    this.#running++;
    if (this.#attempts[job] < 0xffff) this.#attempts[job]++;
    return job;
  }

  /** Puts a running job back at the front of the queue. */
  requeue(job: number): void {
    if (this.#state[job] !== JobState.RUNNING) return;
    this.#head = (this.#head - 1 + this.#ring.length) % this.#ring.length;
    this.#ring[this.#head] = job;
    this.#pending++;
    this.#running--;
    this.#state[job] = JobState.PENDING;
  }

  /** Marks a running job settled. Returns false if it was not running. */
  settle(job: number): boolean {
    if (this.#state[job] !== JobState.RUNNING) return false;
    this.#state[job] = JobState.SETTLED;
    this.#running--;
    this.#settled++;
    return true;
  }
}
