/**
 * The one `--max-output` rule, for every job (text jobs and binary runs,
 * whichever way they were started):
 *
 * - a job's output may hold at most the limit's bytes (for an output file
 *   the job appends to, such as a binary task's log shared by its runs, the
 *   file may not grow past it);
 * - a job that writes more has its process group killed with SIGKILL at
 *   once (found on a chunk through the runner, or from the output file's
 *   size, measured every `OUTPUT_POLL_MS` while it runs and once it has
 *   ended);
 * - its output keeps its first bytes up to the limit, then the note
 *   {@linkcode outputLimitNote} on a line of its own;
 * - and `runProcess` throws {@linkcode OutputLimitError}: the job fails with
 *   status 125 (`STATUS_RUNNER_FAILURE`), a failure of the tool around it.
 *
 * A text runner sends only the note as the job's output (the manager takes
 * no output over its limit), a binary node keeps its log as it is.
 *
 * @module
 */

/** A job's output went over its limit (see the module doc); the job was killed. */
export class OutputLimitError extends RangeError {
  /** The limit, in bytes. */
  readonly limit: number;

  /** @param limit The limit, in bytes. */
  constructor(limit: number) {
    super(`Output exceeds the limit of ${limit} bytes`);
    this.name = "OutputLimitError";
    this.limit = limit;
  }
}

/**
 * The note a job over its output limit gets in its output (a text runner's
 * note for the job reads the same: `vico runner: <error>; the job was killed`).
 *
 * @example
 * ```ts
 * import { outputLimitNote } from "./output_limit.ts";
 * console.assert(outputLimitNote(1000) === "vico runner: Output exceeds the limit of 1000 bytes; the job was killed\n");
 * ```
 */
export function outputLimitNote(limit: number): string {
  return `vico runner: ${new OutputLimitError(limit).message}; the job was killed\n`;
}
