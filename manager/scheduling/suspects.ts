/**
 * The scheduler's side of black-hole detection (`quarantine.ts` is the
 * judge): jobs held back as suspects, taken off their runner while the
 * verdict on their fast failure is pending, and the hosts barred from new
 * jobs until their quarantine ends. When given a callback, it ends each
 * quarantine on a timer of its own.
 *
 * @module
 */

/**
 * Held suspects and barred hosts.
 *
 * @example
 * ```ts
 * import { Suspects } from "./suspects.ts";
 * const s = new Suspects();
 * s.hold(4);
 * console.assert(s.isHeld(4) && s.release(4) && !s.isHeld(4));
 * s.bar("node-7", 1_000);
 * console.assert(s.isBarred("node-7", 500) && !s.isBarred("node-7", 1_000));
 * ```
 */
export class Suspects {
  /** Jobs held back as suspects (off their runner, still running). */
  readonly #held = new Set<number>();
  /** Quarantined hosts: host → until (ms). */
  readonly #barred = new Map<string, number>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #lift: ((host: string) => void) | undefined;
  readonly #now: () => number;

  /**
   * @param lift Called when a quarantine ends (without it, the owner lifts bars itself).
   * @param now The clock (ms) the bars' times are on.
   */
  constructor(lift?: (host: string) => void, now: () => number = Date.now) {
    this.#lift = lift;
    this.#now = now;
  }

  /** Holds `job` back as a suspect. */
  hold(job: number): void {
    this.#held.add(job);
  }

  /** Whether `job` is held back as a suspect. */
  isHeld(job: number): boolean {
    return this.#held.has(job);
  }

  /** Lets go of a held suspect; returns whether it was held. */
  release(job: number): boolean {
    return this.#held.delete(job);
  }

  /** Bars `host` from new jobs until `until` (ms); with a lift callback, it is called then. */
  bar(host: string, until: number): void {
    this.#barred.set(host, until);
    const lift = this.#lift;
    if (lift === undefined) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      lift(host);
    }, until - this.#now());
    this.#timers.add(timer);
  }

  /** Lets `host` have jobs again. */
  unbar(host: string): void {
    this.#barred.delete(host);
  }

  /** Whether `host` is barred at `now`. */
  isBarred(host: string, now: number): boolean {
    return (this.#barred.get(host) ?? 0) > now;
  }

  /** Stops every quarantine's clock (the run is over). */
  close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
