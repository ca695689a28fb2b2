/**
 * Who a connected runner is to the scheduler, and what it can be told:
 * {@linkcode RunnerLink}, implemented by each session kind (and by the
 * recording links of tests).
 *
 * @module
 */

import type { JobClass } from "../jobs/job_list.ts";

/** What the scheduler can tell one connected runner (its outbound side). */
export interface RunnerLink {
  /**
   * What the runner is counted and judged as: the key of quarantine (a
   * black hole is barred by it), of the per-host counts and of the
   * journal's `host`. A text runner's announced {@linkcode name}: runners
   * on one machine, or behind one NAT address, are told apart by it, and
   * local workers all share one address. A binary node announces no name
   * and connects once per task, so it is its address (the peer without
   * its port): the one thing that stays the same from task to task.
   */
  readonly host: string;
  /** The name the runner announced (a text runner's hail); undefined for a binary node, which announces none. */
  readonly name?: string;
  /** The runner's address with its port, for logs. */
  readonly peer: string;
  /** A stable identity, for runners that can come back after being lost (the vico extension). */
  readonly runnerId?: string;
  /**
   * Whether the runner keeps reporting results while a request of its is
   * held (the pipelined exchange: one worker's `PETO` waits while another
   * worker's result goes out). Its requests are then held as an idle
   * runner's are, even while it carries jobs, so a job that comes back to
   * the queue (a retry, a lost runner's) can still go to it. A lock-step
   * runner's are not: its one conversation would wait on itself, so it is
   * released instead.
   */
  readonly reportsWhileAsking?: boolean;
  /** What a binary node announced in its Join; absent for a text runner. */
  readonly binary?: { readonly modules: readonly string[] };
  /** Whether this runner can carry jobs of class `cls`. */
  accepts(cls: JobClass): boolean;
  /**
   * Answers the pending request with `job`, handed out as `attempt`; `rank`
   * numbers gang members from 1.
   */
  assign(job: number, rank: number, attempt: number): void;
  /** Answers the pending request: there is nothing left to do. */
  release(): void;
  /** Answers the pending request: jobs remain, but none this runner can take. */
  refuse(reason: string): void;
  /** Starts the staged task now (gang members are started together). */
  start?(): void;
  /** The task this runner carries was abandoned (another gang member was lost). */
  abandon?(reason: string): void;
}

/** A job a (re)joining identified runner says it still carries (running, or ended and kept): the hand-out it came with. */
export interface CarriedJob {
  /** The job. */
  readonly job: number;
  /** The attempt it was handed out as. */
  readonly attempt: number;
}
