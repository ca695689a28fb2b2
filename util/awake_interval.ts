/**
 * A repeating check of a peer's silence that does not blame the peer for
 * this process's own pause. After SIGSTOP and SIGCONT (Ctrl-Z, `fg`), a
 * suspended VM or a long stall, the first tick comes late, and the peer's
 * messages of that time still wait unread in the socket: judged then, a
 * healthy peer was dropped the moment this side woke. A tick that comes
 * more than two periods and {@linkcode LATE_TICK_SLACK_MS} after the last
 * calls `onLate` (count a sign of life) instead of `tick`, so the peer
 * gets a whole window again before it is judged.
 *
 * @module
 */

/** How much later than two periods a tick may come before it is taken for a pause of this process. */
export const LATE_TICK_SLACK_MS = 1000;

/** Time and ticks (the manager's sessions pass their clock; the default is the real one). */
export interface IntervalClock {
  now(): number;
  every(ms: number, tick: () => void): () => void;
}

const REAL: IntervalClock = {
  now: () => performance.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    return () => clearInterval(timer);
  },
};

/**
 * Calls `tick` every `everyMs`, or `onLate` for a tick that came late
 * (see the module doc), until the returned function is called.
 *
 * @example
 * ```ts
 * import { awakeInterval } from "./awake_interval.ts";
 * const stop = awakeInterval(1000, () => {}, () => {});
 * stop();
 * ```
 */
export function awakeInterval(
  everyMs: number,
  tick: () => void,
  onLate: () => void,
  clock: IntervalClock = REAL,
): () => void {
  let last = clock.now();
  return clock.every(everyMs, () => {
    const now = clock.now();
    const late = now - last > 2 * everyMs + LATE_TICK_SLACK_MS;
    last = now;
    if (late) onLate();
    else tick();
  });
}
