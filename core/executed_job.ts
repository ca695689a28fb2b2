/**
 * One text job as both sides see it: what to run ({@linkcode ExecutedJobSpec})
 * and how it ended ({@linkcode ExecutedJobOutcome}). The runner's
 * `JobExecutor` implements it; the manager's `--local` workers call it
 * through {@linkcode JobRunner} without importing the runner.
 *
 * @module
 */

/** One job to run. */
export interface ExecutedJobSpec {
  /** Its command line. */
  readonly command: string;
  /** `VICO_SLOT`: the worker's number, from 1. */
  readonly slot: number;
  /** `VICO_SEQ`: the job's line in its list, when the manager said. */
  readonly seq?: number;
  /** Its time limit. */
  readonly timeoutMs?: number;
  /** Its largest output. */
  readonly maxOutputBytes: number;
  /** Ends it (its process group) when aborted. */
  readonly signal?: AbortSignal;
}

/** A job's output, held until it is sent: streamed once, then disposed of. */
export interface JobOutput {
  /** Its size in bytes. */
  readonly size: number;
  /** Streams it whole to `sink`. */
  pipeTo(sink: (chunk: Uint8Array) => Promise<void>): Promise<void>;
  /** Releases it (its spool file). */
  dispose(): Promise<void>;
}

/** How one job ended, with its output. */
export interface ExecutedJobOutcome {
  /** Its exit status (128+N for signal N; 125 for a failure in the runner, with a note as its output). */
  readonly status: number;
  /** Its merged stdout and stderr, until disposed of. */
  readonly output: JobOutput;
  /** It was ended by its time limit. */
  readonly timedOut: boolean;
  /**
   * It died of SIGHUP, SIGINT or SIGTERM from outside: perhaps the signal
   * that stops its runner too (Slurm signals every process of a step, a
   * terminal its process group), in which case it is no result.
   */
  readonly stopSignal: boolean;
}

/** Runs text jobs, one call per job; never rejects (a failure in the runner is status 125 with a note). */
export interface JobRunner {
  /** Runs one job to its end. */
  run(spec: ExecutedJobSpec): Promise<ExecutedJobOutcome>;
}
