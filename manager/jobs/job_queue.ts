/**
 * The job queue: which jobs are pending, running and settled, and how many
 * times each was handed out. Jobs are numbered `0..size-1` (their index in
 * the job list) and belong to a class (what a runner must offer to take
 * them). Pending jobs wait in one double-ended ring per class; `take` looks
 * only at the head of each class a runner accepts, so dispatch costs
 * O(classes), never O(jobs), and a million jobs fit in a few megabytes.
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

/** Options for {@linkcode JobQueue}. */
export interface JobQueueOptions {
  /** Class of each job (default: every job in class 0). */
  classOf?: Uint16Array;
  /** Number of classes (default: 1 + the largest in `classOf`). */
  classes?: number;
  /** Jobs already settled (by an earlier run), which are never queued. */
  settled?: (job: number) => boolean;
  /** Jobs that start out running (leased to a runner of an earlier run), not queued. */
  running?: (job: number) => boolean;
  /**
   * Attempts earlier runs handed out (the journal's), so attempt numbers
   * continue where they left off and never repeat for a key.
   */
  attemptsBefore?: (job: number) => number;
  /** Failed attempts earlier runs kept (`--retries` counts them). */
  failuresBefore?: (job: number) => number;
}

interface Ring {
  buf: Int32Array;
  head: number;
  count: number;
  unsettled: number;
}

/**
 * Pending jobs in double-ended rings per class (requeued jobs go to the
 * front), plus per-job state and attempt counters.
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
  readonly #classOf: Uint16Array | undefined;
  readonly #rings: Ring[];
  #pending = 0;
  #running = 0;
  #settled = 0;
  readonly #state: Uint8Array;
  readonly #attempts: Uint16Array;
  readonly #failures: Uint8Array;
  readonly #losses: Uint8Array;

  /**
   * @param size Number of jobs.
   * @param options Classes and jobs settled earlier.
   */
  constructor(size: number, options: JobQueueOptions = {}) {
    this.size = size;
    const classOf = options.classOf;
    this.#classOf = classOf;
    let classes = options.classes ?? 1;
    if (options.classes === undefined && classOf) { for (const c of classOf) classes = Math.max(classes, c + 1); }
    const counts = new Int32Array(classes);
    for (let job = 0; job < size; job++) counts[classOf ? classOf[job] : 0]++;
    this.#rings = Array.from(counts, (n) => ({ buf: new Int32Array(Math.max(n, 1)), head: 0, count: 0, unsettled: 0 }));
    this.#state = new Uint8Array(size);
    this.#attempts = new Uint16Array(size);
    this.#failures = new Uint8Array(size);
    this.#losses = new Uint8Array(size);
    for (let job = 0; job < size; job++) {
      if (options.attemptsBefore) this.#attempts[job] = Math.min(options.attemptsBefore(job), 0xffff);
      if (options.failuresBefore) this.#failures[job] = Math.min(options.failuresBefore(job), 0xff);
      if (options.settled?.(job)) {
        this.#state[job] = JobState.SETTLED;
        this.#settled++;
      } else if (options.running?.(job)) {
        this.#state[job] = JobState.RUNNING;
        this.#rings[classOf ? classOf[job] : 0].unsettled++;
        this.#running++;
        if (this.#attempts[job] === 0) this.#attempts[job] = 1;
      } else {
        const ring = this.#rings[classOf ? classOf[job] : 0];
        ring.buf[ring.count++] = job;
        ring.unsettled++;
        this.#pending++;
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
  get done(): boolean {
    return this.#settled === this.size;
  }

  /** Number of classes. */
  get classes(): number {
    return this.#rings.length;
  }

  /** The class of `job`. */
  classOf(job: number): number {
    return this.#classOf ? this.#classOf[job] : 0;
  }

  /** Pending jobs of class `cls`. */
  pendingIn(cls: number): number {
    return this.#rings[cls].count;
  }

  /** Jobs of class `cls` not settled yet (pending or running). */
  unsettledIn(cls: number): number {
    return this.#rings[cls].unsettled;
  }

  /** The state of `job`. */
  stateOf(job: number): JobStateValue {
    return this.#state[job] as JobStateValue;
  }

  /** How many times `job` has been handed out (in this run and the earlier ones): its latest attempt number. */
  attempts(job: number): number {
    return this.#attempts[job];
  }

  /** How many times `job` exited non-zero and was put back to be tried again. */
  failures(job: number): number {
    return this.#failures[job];
  }

  /** How many times the runner holding `job` was lost. */
  losses(job: number): number {
    return this.#losses[job];
  }

  /** Counts a loss of `job`'s runner. */
  noteLoss(job: number): void {
    if (this.#losses[job] < 0xff) this.#losses[job]++;
  }

  /**
   * Puts a running job that failed at the back of its class, to be tried
   * again after the others, and counts the failure.
   */
  retry(job: number): void {
    if (this.#state[job] !== JobState.RUNNING) return;
    const ring = this.#rings[this.classOf(job)];
    ring.buf[(ring.head + ring.count) % ring.buf.length] = job;
    ring.count++;
    this.#pending++;
    this.#running--;
    this.#state[job] = JobState.PENDING;
    this.noteFailure(job);
  }

  /** Counts a failed attempt of `job` (one `--retries` allows) without moving it. */
  noteFailure(job: number): void {
    if (this.#failures[job] < 0xff) this.#failures[job]++;
  }

  /**
   * Takes the oldest pending job among the classes `accepts` allows (all
   * when omitted), marks it running and returns it; -1 if there is none.
   */
  take(accepts?: (cls: number) => boolean): number {
    let best: Ring | undefined;
    for (let c = 0; c < this.#rings.length; c++) {
      const ring = this.#rings[c];
      if (ring.count === 0 || (accepts && !accepts(c))) continue;
      if (best === undefined || ring.buf[ring.head] < best.buf[best.head]) best = ring;
    }
    if (best === undefined) return -1;
    const job = best.buf[best.head];
    best.head = (best.head + 1) % best.buf.length;
    best.count--;
    this.#pending--;
    this.#state[job] = JobState.RUNNING;
    this.#running++;
    if (this.#attempts[job] < 0xffff) this.#attempts[job]++;
    return job;
  }

  /**
   * Takes a particular pending job out of the queue and marks it running (a
   * returning runner says it holds it). O(jobs of its class): for rare use.
   */
  claim(job: number): boolean {
    if (this.#state[job] !== JobState.PENDING) return false;
    const ring = this.#rings[this.classOf(job)];
    const len = ring.buf.length;
    let i = 0;
    while (i < ring.count && ring.buf[(ring.head + i) % len] !== job) i++;
    if (i === ring.count) return false;
    for (; i < ring.count - 1; i++) ring.buf[(ring.head + i) % len] = ring.buf[(ring.head + i + 1) % len];
    ring.count--;
    this.#pending--;
    this.#state[job] = JobState.RUNNING;
    this.#running++;
    if (this.#attempts[job] < 0xffff) this.#attempts[job]++;
    return true;
  }

  /** Puts a running job back at the front of its class. */
  requeue(job: number): void {
    if (this.#state[job] !== JobState.RUNNING) return;
    const ring = this.#rings[this.classOf(job)];
    ring.head = (ring.head - 1 + ring.buf.length) % ring.buf.length;
    ring.buf[ring.head] = job;
    ring.count++;
    this.#pending++;
    this.#running--;
    this.#state[job] = JobState.PENDING;
  }

  /** Marks a running job settled. Returns false if it was not running. */
  settle(job: number): boolean {
    if (this.#state[job] !== JobState.RUNNING) return false;
    this.#state[job] = JobState.SETTLED;
    this.#rings[this.classOf(job)].unsettled--;
    this.#running--;
    this.#settled++;
    return true;
  }
}
