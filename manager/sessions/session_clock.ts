/**
 * The clock a session's watches read and the ticks they run on: the real
 * one in the manager, a fake one in a test (which then moves time by hand).
 *
 * @module
 */

/** Time and a repeating tick, as the liveness check and the transfer watchdog use them. */
export interface SessionClock {
  /** Milliseconds on a monotonic clock (`performance.now()`). */
  now(): number;
  /**
   * Calls `tick` every `ms` milliseconds until the returned function is
   * called.
   */
  every(ms: number, tick: () => void): () => void;
}

/** The real clock: `performance.now()` and `setInterval`. */
export const SYSTEM_CLOCK: SessionClock = {
  now: () => performance.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    return () => clearInterval(timer);
  },
};
