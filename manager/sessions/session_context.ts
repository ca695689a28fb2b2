/**
 * What a session (text or binary) is given and what it gives back: the
 * manager around it ({@linkcode SessionContext}), the handshake window and
 * the vico hello the listener hands it, and the {@linkcode Session} shape the
 * listener tracks. The sessions and the listener both import this; the
 * sessions never import the listener.
 *
 * @module
 */

import type { Limits } from "../../core/limits.ts";
import type { ClientHello, ServerHello } from "../../protocol/vico_extension.ts";
import type { JobList } from "../jobs/job_list.ts";
import type { ResultRecorder } from "../results/result_recorder.ts";
import type { ResultsStore } from "../results/results_store.ts";
import type { CarriedJob, RunnerLink, Scheduler } from "../scheduling/scheduler.ts";

/** What every session (text or binary) needs from the manager around it. */
export interface SessionContext {
  /** Hands out jobs. */
  readonly scheduler: Scheduler;
  /** Stores results. */
  readonly results: ResultsStore;
  /** Records results (gangs once for all members). */
  readonly recorder: ResultRecorder;
  /** The job list (job `i` is `commands[i]`). */
  readonly jobs: JobList;
  /** Wire limits. */
  readonly limits: Limits;
  /** A peer whose result stalls this long mid-transfer is dropped. */
  readonly transferIdleTimeoutMs: number;
  /**
   * A pipelined runner's next job waits until its results so far are
   * recorded (`--halt`: each result is judged before that worker starts
   * another, as in the lock-step exchange).
   */
  readonly settleBeforeNext?: boolean;
  /**
   * Makes durable that an identified runner holds `job`, before it is handed
   * over: a manager restarted after a crash then waits for that runner
   * instead of running the job again elsewhere.
   */
  noteAssignment(job: number, attempt: number, link: RunnerLink): Promise<void>;
  /** This run's identity (tags carry it). */
  readonly run: string;
  /** Content key of a job. */
  keyOf(job: number): string;
}

/** A running session, as the server tracks it. */
export interface Session {
  /** Serves the connection until it ends; never rejects. */
  run(): Promise<void>;
  /** Ends the connection now. */
  close(): void;
}

/**
 * The window a new connection has to complete its handshake. The session
 * calls `done()` once the peer is known; a connection still in its window
 * at `deadline` is closed.
 */
export interface HandshakeWindow {
  /** `Date.now()` by which the handshake must be complete. */
  readonly deadline: number;
  /** The handshake completed (or the session ended). */
  done(): void;
}

/** What a vico peer said in the extension's hello (absent for a plain peer). */
export interface Extension {
  /** The hello. */
  readonly hello: ClientHello;
  /** Of those, the hand-outs the manager takes back (issued to this runner, still unsettled). */
  readonly held: readonly CarriedJob[];
  /** Whether the runner proved it knows the manager's secret. */
  readonly authenticated: boolean;
  /** What the manager answered. */
  readonly answer: Extract<ServerHello, { kind: "ok" }>;
}
