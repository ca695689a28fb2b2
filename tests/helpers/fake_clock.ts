/**
 * A {@linkcode SessionClock} whose time moves only when a test says so:
 * `advance(ms)` runs every tick that falls due on the way, in order.
 */

import type { SessionClock } from "../../manager/sessions/session_clock.ts";

interface Tick {
  due: number;
  readonly ms: number;
  readonly tick: () => void;
}

/** Time by hand, for the sessions' watches. */
export class FakeClock implements SessionClock {
  #now = 0;
  readonly #ticks = new Set<Tick>();

  now(): number {
    return this.#now;
  }

  every(ms: number, tick: () => void): () => void {
    const t: Tick = { due: this.#now + ms, ms, tick };
    this.#ticks.add(t);
    return () => this.#ticks.delete(t);
  }

  /** Ticks running now. */
  get running(): number {
    return this.#ticks.size;
  }

  /**
   * Moves time on by `ms` as a stopped process lives it (SIGSTOP, a
   * suspended VM): no tick runs meanwhile; then each tick that fell due
   * runs once, late, as a timer does when the process runs again.
   */
  pause(ms: number): void {
    this.#now += ms;
    for (const t of [...this.#ticks]) {
      if (t.due > this.#now) continue;
      t.due = this.#now + t.ms;
      t.tick();
    }
  }

  /** Moves time on by `ms`, running each tick as it falls due. */
  advance(ms: number): void {
    const end = this.#now + ms;
    while (true) {
      let next: Tick | undefined;
      for (const t of this.#ticks) if (t.due <= end && (next === undefined || t.due < next.due)) next = t;
      if (next === undefined) break;
      this.#now = next.due;
      next.due += next.ms;
      next.tick();
    }
    this.#now = end;
  }
}
