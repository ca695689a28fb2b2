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
  /**
   * It did not run: its record could not be written (a `--persist`
   * runner's state directory full, read-only or gone); why. Its status is
   * 125 and its output a note saying so.
   */
  readonly unrecorded?: string;
}

/** Runs text jobs, one call per job; never rejects (a failure in the runner is status 125 with a note). */
export interface JobRunner {
  /** Runs one job to its end. */
  run(spec: ExecutedJobSpec): Promise<ExecutedJobOutcome>;
}

/** How long a job dead of a stop signal waits for its runner's own stop to show. */
export const STOP_SIGNAL_WAIT_MS = 500;

/**
 * For a job whose outcome says {@linkcode ExecutedJobOutcome.stopSignal}:
 * whether the runner (or the manager, for `--local`) is stopping too, in
 * which case the signal that ended the job is its own stop and the job is
 * no result. Its signal handler may run just after the job's end is seen,
 * so `stopping` is asked again every 50 ms for {@linkcode STOP_SIGNAL_WAIT_MS}.
 */
export async function stoppedWithIt(stopping: () => boolean): Promise<boolean> {
  for (let waited = 0; !stopping() && waited < STOP_SIGNAL_WAIT_MS; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return stopping();
}
