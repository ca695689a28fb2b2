/**
 * `--halt`, as GNU Parallel's: when to stop a run early, and with what
 * exit status.
 *
 * `--halt WHEN,WHY=N` or `WHEN,WHY=N%`, where WHEN is `soon` (start no new
 * jobs, let the running ones end) or `now` (also end the running ones), and
 * WHY counts jobs that failed (`fail`), succeeded (`success`) or ended
 * (`done`). A percentage is of all the jobs of the run. `never` (the
 * default) and Parallel's old forms `0` `1` `2` `-1` `-2` `N%` are accepted.
 *
 * A job failed when its exit status is not 0 (a signal is a failure too).
 *
 * The exit status of a halted run is Parallel's: when one job is enough
 * (`fail=1`, `done=1`, or a percentage that comes to exactly one job) the
 * status of the job that triggered the halt; for `fail=N` and
 * `done=N` the number of failed jobs, at most 101; for a percentage, the
 * percentage of all jobs that failed, rounded up; 0 for `success`.
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";

/** What `--halt` says. */
export type HaltPolicy =
  | { readonly when: "never" }
  | {
    readonly when: "soon" | "now";
    readonly why: "fail" | "success" | "done";
    /** A number of jobs, or a percentage of all jobs when `percent`. */
    readonly threshold: number;
    readonly percent: boolean;
  };

const LEGACY: Readonly<Record<string, string>> = {
  "0": "never",
  "1": "soon,fail=1",
  "2": "now,fail=1",
  "-1": "soon,success=1",
  "-2": "now,success=1",
};

const EXPECTED = "never, or soon|now,fail|success|done=N or =N% (e.g. now,fail=1)";

/**
 * Parses a `--halt` value.
 *
 * @example
 * ```ts
 * import { parseHalt } from "./halt_policy.ts";
 * console.assert(JSON.stringify(parseHalt("soon,fail=10%")) ===
 *   JSON.stringify({ when: "soon", why: "fail", threshold: 10, percent: true }));
 * console.assert(parseHalt("2").when === "now");
 * ```
 * @throws {VicoError} `USAGE` naming the flag and the expected form.
 */
export function parseHalt(text: string): HaltPolicy {
  let value = LEGACY[text] ?? text;
  if (/^[0-9]+%$/.test(value)) value = `soon,fail=${value}`;
  if (value === "never") return { when: "never" };
  const m = /^(soon|now),(fail|success|done)=([0-9]+)(%?)$/.exec(value);
  const bad = () => new VicoError("USAGE", `--halt needs ${EXPECTED}, got ${JSON.stringify(text)}`);
  if (m === null) throw bad();
  const threshold = Number(m[3]);
  const percent = m[4] === "%";
  if (threshold < 1 || (percent && threshold > 100) || !Number.isSafeInteger(threshold)) throw bad();
  return { when: m[1] as "soon" | "now", why: m[2] as "fail" | "success" | "done", threshold, percent };
}

/** How one job ended, for {@linkcode HaltWatch}. */
export interface JobEnd {
  /** Exit status, 0-255 (shell convention: 128+n for signal n). */
  readonly status: number;
  /** The signal that ended it, if one did (a failure even with status 0). */
  readonly signal?: number;
}

/** A decision to halt. */
export interface HaltDecision {
  /** `soon`: start no new jobs; `now`: also end the running ones. */
  readonly action: "soon" | "now";
  /** The run's exit status (Parallel's). */
  readonly exitStatus: number;
  /** One line for the user, e.g. `2 jobs failed (--halt soon,fail=2)`. */
  readonly reason: string;
}

/**
 * Counts jobs as they end and says when the policy halts the run (once).
 *
 * @example
 * ```ts
 * import { HaltWatch, parseHalt } from "./halt_policy.ts";
 * const watch = new HaltWatch(parseHalt("now,fail=1"), 10);
 * console.assert(watch.ended({ status: 0 }) === undefined);
 * console.assert(watch.ended({ status: 3 })?.exitStatus === 3);
 * ```
 */
export class HaltWatch {
  readonly #policy: HaltPolicy;
  readonly #total: number;
  #failed = 0;
  #succeeded = 0;
  #decision: HaltDecision | undefined;

  /**
   * @param policy The parsed `--halt`.
   * @param totalJobs All jobs of the run (what a percentage is of).
   */
  constructor(policy: HaltPolicy, totalJobs: number) {
    this.#policy = policy;
    this.#total = totalJobs;
  }

  /** The decision taken, once the run halted. */
  get decision(): HaltDecision | undefined {
    return this.#decision;
  }

  /** Jobs counted as failed so far. */
  get failed(): number {
    return this.#failed;
  }

  /**
   * Counts a job that ended; returns the decision the first time the
   * policy is met, `undefined` otherwise (and after it).
   */
  ended(job: JobEnd): HaltDecision | undefined {
    const failed = job.status !== 0 || job.signal !== undefined;
    if (failed) this.#failed++;
    else this.#succeeded++;
    const policy = this.#policy;
    if (policy.when === "never" || this.#decision !== undefined) return undefined;
    if ((policy.why === "fail" && !failed) || (policy.why === "success" && failed)) return undefined;
    const count = policy.why === "fail" ? this.#failed : policy.why === "success" ? this.#succeeded : this.#failed +
      this.#succeeded;
    if (count < this.#needed()) return undefined;
    const jobs = (n: number) => n === 1 ? "1 job" : `${n} jobs`;
    const verb = policy.why === "fail" ? "failed" : policy.why === "success" ? "succeeded" : "ended";
    const flag = `--halt ${policy.when},${policy.why}=${policy.threshold}${policy.percent ? "%" : ""}`;
    this.#decision = {
      action: policy.when,
      exitStatus: this.#exitStatus(job),
      reason: `${jobs(count)} ${verb}${policy.percent ? ` of ${this.#total}` : ""} (${flag})`,
    };
    return this.#decision;
  }

  /** How many jobs of the policy's kind halt the run (a fraction for a percentage, as in Parallel). */
  #needed(): number {
    const policy = this.#policy as Exclude<HaltPolicy, { when: "never" }>;
    return policy.percent ? (this.#total * policy.threshold) / 100 : policy.threshold;
  }

  #exitStatus(job: JobEnd): number {
    const policy = this.#policy as Exclude<HaltPolicy, { when: "never" }>;
    if (policy.why === "success") return 0;
    if (this.#needed() === 1) return job.status !== 0 ? job.status : job.signal !== undefined ? 128 + job.signal : 0;
    if (policy.percent) return Math.ceil((this.#failed / Math.max(1, this.#total)) * 100);
    return Math.min(this.#failed, 101);
  }

  /**
   * The run's exit status as Parallel's: the decision's once halted;
   * otherwise the number of failed jobs (at most 101), or with a
   * percentage policy the percentage of the `started` jobs that failed.
   */
  exitStatus(started: number): number {
    if (this.#decision !== undefined) return this.#decision.exitStatus;
    const policy = this.#policy;
    if (policy.when !== "never" && policy.percent) return Math.ceil((this.#failed / Math.max(1, started)) * 100);
    return Math.min(this.#failed, 101);
  }
}
