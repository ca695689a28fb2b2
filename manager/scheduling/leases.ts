/**
 * Leases: the jobs an identified runner (one with a stable id, the vico
 * extension) was carrying when it was lost wait for it to come back, for the
 * lease time, instead of going back to the queue at once: it may only have
 * lost its connection. This part keeps which jobs wait for which runner
 * and, when it is given a timer callback, runs each lease's clock.
 *
 * @module
 */

/**
 * Jobs leased to lost runners, by runner id.
 *
 * @example
 * ```ts
 * import { Leases } from "./leases.ts";
 * const leases = new Leases();
 * leases.grant("r1", [3, 4]);
 * console.assert(leases.size === 2 && leases.runnerOf(3) === "r1");
 * console.assert(leases.take("r1").size === 2 && leases.size === 0);
 * ```
 */
export class Leases {
  /** Runner id → the jobs that wait for it. */
  readonly #byRunner = new Map<string, Set<number>>();
  /** Job → the runner id it waits for. */
  readonly #runnerOf = new Map<number, string>();
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #expire: ((runnerId: string) => void) | undefined;

  /**
   * @param expire Called when a lease armed with {@linkcode arm} runs out
   *   (without it, {@linkcode arm} does nothing and the owner ends leases itself).
   */
  constructor(expire?: (runnerId: string) => void) {
    this.#expire = expire;
  }

  /** Jobs leased right now. */
  get size(): number {
    return this.#runnerOf.size;
  }

  /** The runner id `job` waits for, if it is leased. */
  runnerOf(job: number): string | undefined {
    return this.#runnerOf.get(job);
  }

  /** Leases `jobs` to `runnerId` (added to what already waits for it). */
  grant(runnerId: string, jobs: Iterable<number>): void {
    let lease = this.#byRunner.get(runnerId);
    if (lease === undefined) this.#byRunner.set(runnerId, lease = new Set());
    for (const job of jobs) {
      lease.add(job);
      this.#runnerOf.set(job, runnerId);
    }
  }

  /** Every lease: runner id → its jobs. */
  entries(): IterableIterator<[string, ReadonlySet<number>]> {
    return this.#byRunner.entries();
  }

  /** Ends `runnerId`'s lease (it came back, or its time ran out): returns its jobs (none if it had no lease). */
  take(runnerId: string): Set<number> {
    const lease = this.#byRunner.get(runnerId) ?? new Set<number>();
    this.#byRunner.delete(runnerId);
    for (const job of lease) this.#runnerOf.delete(job);
    return lease;
  }

  /** Whether `runnerId` has a lease (possibly of no jobs). */
  has(runnerId: string): boolean {
    return this.#byRunner.has(runnerId);
  }

  /** Takes `job` out of whichever lease it is in (it settled, or is retried). */
  drop(job: number): void {
    const runner = this.#runnerOf.get(job);
    if (runner === undefined) return;
    this.#runnerOf.delete(job);
    this.#byRunner.get(runner)?.delete(job);
  }

  /**
   * Starts (or starts again) `runnerId`'s clock: in `ms`, the expire
   * callback is called with it (a no-op, then, if the runner came back).
   */
  arm(runnerId: string, ms: number): void {
    const expire = this.#expire;
    if (expire === undefined) return;
    clearTimeout(this.#timers.get(runnerId));
    this.#timers.set(
      runnerId,
      setTimeout(() => {
        this.#timers.delete(runnerId);
        expire(runnerId);
      }, ms),
    );
  }

  /** Stops every clock (the run is over). */
  close(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
