/**
 * The wait between a runner's attempts to reach its manager: exponential,
 * with full jitter so that a fleet does not reconnect in lockstep.
 *
 * @module
 */

import { logger } from "../../util/log.ts";

const log = logger("runner");

/** What a {@linkcode Backoff} waits, and what it tells. */
export interface BackoffOptions {
  /** The first wait, milliseconds. */
  readonly initialMs: number;
  /** The longest wait, milliseconds (also the pause of a service whose manager has no work). */
  readonly maxMs: number;
  /** Put before each logged reason (`Node 2: `). */
  readonly prefix?: string;
  /** Sleeps up to `ms` (or less, when the runner stops). */
  readonly sleep: (ms: number) => Promise<void>;
  /** Told each time a retry begins, with its reason. */
  readonly onDown?: (why: string) => void;
}

/** A runner's first and longest wait unless its options say otherwise (`RunnerOptions.backoff`). */
export const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;

/**
 * Reconnection backoff: {@linkcode Backoff.retry} logs its reason once per
 * new reason and waits, doubling up to the longest wait;
 * {@linkcode Backoff.reset} after a success.
 *
 * @example
 * ```ts
 * import { Backoff } from "./backoff.ts";
 * const waits: number[] = [];
 * const backoff = new Backoff({ initialMs: 100, maxMs: 400, sleep: async (ms) => void waits.push(ms) });
 * for (let i = 0; i < 4; i++) await backoff.retry("no route");
 * console.assert(waits[3] >= 200 && waits[3] <= 400 && backoff.down === "no route");
 * ```
 */
export class Backoff {
  readonly #options: BackoffOptions;
  #wait: number;
  #down: string | undefined;

  /** @param options The waits, and where to sleep and report. */
  constructor(options: BackoffOptions) {
    this.#options = options;
    this.#wait = options.initialMs;
  }

  /** The longest wait, milliseconds. */
  get maxMs(): number {
    return this.#options.maxMs;
  }

  /** The reason of the failure being retried, if any. */
  get down(): string | undefined {
    return this.#down;
  }

  /** Logs `why` (when it is new), reports it, and waits the next wait. */
  async retry(why: string): Promise<void> {
    if (this.#down !== why) log.warn("{prefix}{why}; retrying", { prefix: this.#options.prefix ?? "", why });
    this.#options.onDown?.(why);
    this.#down = why;
    // Full jitter keeps a fleet from reconnecting in lockstep.
    await this.#options.sleep(this.#wait / 2 + Math.random() * this.#wait / 2);
    this.#wait = Math.min(this.#wait * 2, this.#options.maxMs);
  }

  /** After a success: the next wait is the first again. */
  reset(): void {
    this.#wait = this.#options.initialMs;
    this.#down = undefined;
  }
}
