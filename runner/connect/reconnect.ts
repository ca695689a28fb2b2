/**
 * The one step a runner's connection loops take after each outcome: look it
 * up in the reconnect policy, then wait and connect again, or end.
 *
 * @module
 */

import type { RunnerEnd } from "../runner_options.ts";
import { Backoff, type BackoffOptions } from "./backoff.ts";
import { type ConnectionOutcome, endOf, stepAfter } from "./reconnect_policy.ts";

/** An outcome and what it says. */
export interface Happened {
  /** How the connection came out. */
  readonly outcome: ConnectionOutcome;
  /** Why: the end's reason, and the logged reason of a retry unless `retryReason` says otherwise. */
  readonly reason?: string;
  /** The reason a retry logs and reports, when it differs from the end's. */
  readonly retryReason?: string;
  /** A refusal was for authentication. */
  readonly auth?: boolean;
  /** Called before an idle pause (to say why the runner waits). */
  readonly onIdle?: () => void;
}

/** What a {@linkcode Reconnect} is told. */
export interface ReconnectOptions extends BackoffOptions {
  /** `--persist`. */
  readonly persist: boolean;
  /** Whether the runner is stopping. */
  readonly stopping: () => boolean;
  /** Jobs (binary: tasks) this loop has reported. */
  readonly jobs: () => number;
}

/**
 * One connection loop's reconnection: its backoff, and {@linkcode Reconnect.after},
 * the retry-or-finish step of the reconnect policy.
 *
 * @example
 * ```ts
 * import { Reconnect } from "./reconnect.ts";
 * const reconnect = new Reconnect({
 *   initialMs: 10, maxMs: 20, sleep: () => Promise.resolve(),
 *   persist: false, stopping: () => false, jobs: () => 0,
 * });
 * const end = await reconnect.after({ outcome: "unreachable", reason: "no route" });
 * console.assert(end?.kind === "failed");
 * ```
 */
export class Reconnect {
  /** The loop's backoff (reset by the loop after useful work). */
  readonly backoff: Backoff;
  readonly #options: ReconnectOptions;

  /** @param options The loop's backoff, mode, and what it has done. */
  constructor(options: ReconnectOptions) {
    this.#options = options;
    this.backoff = new Backoff(options);
  }

  /** Waits as the policy says and returns undefined to connect again, or returns how the loop ends. */
  async after(happened: Happened): Promise<RunnerEnd | undefined> {
    const { persist, stopping, jobs } = this.#options;
    const step = stepAfter(happened.outcome, { persist, stopping: stopping() });
    if ("finish" in step) return endOf(step, { reason: happened.reason, auth: happened.auth, jobs: jobs() });
    if (step.reset) this.backoff.reset();
    if (step.retry === "backoff") await this.backoff.retry(happened.retryReason ?? happened.reason ?? "");
    else if (step.retry === "idle") {
      happened.onIdle?.();
      await this.#options.sleep(this.backoff.maxMs);
    }
    return undefined;
  }
}
