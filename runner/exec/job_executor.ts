/**
 * One text job, from its command line to its status and output: the
 * {@linkcode JobExecutor} a text runner's workers and the manager's
 * `--local` workers both run jobs through. It starts the job under the
 * shell (`runProcess`), with its output written by the job itself into a
 * spool file, and turns what cannot be kept (an output over the limit, a
 * spool that failed) into a failure of that job alone, with a note.
 *
 * @module
 */

import type { ExecutedJobOutcome, ExecutedJobSpec, JobRunner } from "../../core/executed_job.ts";
import { logger } from "../../util/log.ts";
import { OwnedTempDir } from "../../io/owned_temp_dir.ts";
import type { JobCgroups } from "./job_cgroup.ts";
import { OutputSpool, SpoolFiles, SpoolFullError } from "./output_spool.ts";
import {
  type JobLedger,
  runProcess,
  SEQ_VARIABLE,
  shellArgv,
  SLOT_VARIABLE,
  STATUS_RUNNER_FAILURE,
} from "./process_runner.ts";
import type { RunAs } from "./run_as.ts";

const log = logger("runner");

/** Exit statuses of a job killed by SIGHUP, SIGINT or SIGTERM. */
const STOP_SIGNAL_STATUSES: ReadonlySet<number> = new Set([128 + 1, 128 + 2, 128 + 15]);

/** How every job of one executor runs. */
export interface JobExecutorOptions {
  /** Where spool files go (and are reused). */
  files: SpoolFiles;
  /** The shell jobs run under (`sh -c` compatible). @default {"/bin/sh"} */
  shell?: string;
  /** Grace between SIGTERM and SIGKILL when a job must end. @default {2000} */
  killGraceMs?: number;
  /** Run jobs as this user. */
  runAs?: RunAs;
  /** Run each job in a cgroup leaf with these limits. */
  jobCgroups?: JobCgroups;
  /** Where running jobs are written down (`--persist`). */
  ledger?: JobLedger;
}

/** How one job ended, with its output: the outcome both sides know, and what only the runner needs. */
export interface ExecutedJob extends ExecutedJobOutcome {
  /** Its merged stdout and stderr, until disposed of. */
  readonly output: OutputSpool;
  /** The runner itself ended the job (its time limit, or its memory limit). */
  readonly endedByRunner: boolean;
}

/**
 * Runs text jobs, one call per job.
 *
 * @example
 * ```ts ignore
 * const executor = new JobExecutor({ files: new SpoolFiles(await Deno.makeTempDir()) });
 * const done = await executor.run({ command: "echo hi", slot: 1, maxOutputBytes: 1 << 20 });
 * await done.output.pipeTo(async (chunk) => console.log(chunk.length));
 * await done.output.dispose();
 * ```
 */
export class JobExecutor implements JobRunner {
  readonly #options: JobExecutorOptions;
  /** The spool directory {@linkcode open} made (removed by {@linkcode close}). */
  #ownDir: OwnedTempDir | undefined;

  /**
   * An executor whose jobs all run this way.
   *
   * @param options How every job runs.
   */
  constructor(options: JobExecutorOptions) {
    this.#options = options;
  }

  /**
   * An executor spooling into `spoolDir`, or into a fresh temporary
   * directory named after `prefix` that {@linkcode close} removes (and
   * that the next vico removes if this process dies first: see
   * {@linkcode OwnedTempDir}).
   *
   * @throws {Error} When the directory cannot be made.
   */
  static open(
    options: Omit<JobExecutorOptions, "files"> & { spoolDir?: string; prefix: "vico-local-" | "vico-runner-" },
  ): Promise<JobExecutor> {
    // A failure to make the directory rejects.
    return new Promise((resolve) => {
      const { spoolDir, prefix, ...rest } = options;
      const own = spoolDir === undefined ? OwnedTempDir.make(prefix) : undefined;
      const executor = new JobExecutor({ ...rest, files: new SpoolFiles(own?.path ?? spoolDir!) });
      executor.#ownDir = own;
      resolve(executor);
    });
  }

  /** Removes the spool files kept for reuse, and the directory {@linkcode open} made. */
  async close(): Promise<void> {
    await this.#options.files.clear();
    this.#ownDir?.remove();
  }

  /** Runs one job to its end. Never rejects: what goes wrong in the runner is the job's status 125 and a note. */
  async run(spec: ExecutedJobSpec): Promise<ExecutedJob> {
    const { files } = this.#options;
    const { command, maxOutputBytes } = spec;
    const output = new OutputSpool({ dir: files.dir, maxBytes: maxOutputBytes, files });
    try {
      // The job writes its output file itself (the runner touches no byte of it while it runs).
      const outcome = await runProcess(shellArgv(command, this.#options.shell), {
        env: {
          [SLOT_VARIABLE]: String(spec.slot),
          ...(spec.seq === undefined ? {} : { [SEQ_VARIABLE]: String(spec.seq) }),
        },
        stderrOnStdout: true,
        outputFile: output.reserveFile(),
        maxOutputBytes,
        signal: spec.signal,
        killGraceMs: this.#options.killGraceMs,
        timeoutMs: spec.timeoutMs,
        runAs: this.#options.runAs,
        cgroups: this.#options.jobCgroups,
        ledger: this.#options.ledger,
      });
      output.adopt(outcome.outputBytes ?? 0);
      if (outcome.memoryExceeded) {
        log.warn("Job {job} {note}", { job: command, note: this.#options.jobCgroups!.memoryNote });
      }
      if (outcome.outputAbandoned) {
        log.warn("Job {job} has ended, but a process that left its process group still holds its output: not read", {
          job: command,
        });
      }
      if (outcome.timedOut) {
        log.warn("Job {job} ran past its {s}s limit and was stopped", { job: command, s: spec.timeoutMs! / 1000 });
      }
      const endedByRunner = (outcome.timedOut ?? false) || (outcome.memoryExceeded ?? false);
      return {
        status: outcome.status,
        output,
        endedByRunner,
        timedOut: outcome.timedOut ?? false,
        stopSignal: STOP_SIGNAL_STATUSES.has(outcome.status) && !endedByRunner,
        ...(outcome.unrecorded !== undefined ? { unrecorded: outcome.unrecorded } : {}),
      };
    } catch (err) {
      // The job's output could not be kept (over the limit, or the spool
      // failed): the job fails on its own, with a note saying why.
      await output.dispose();
      const reason = err instanceof Error ? err.message : String(err);
      log.warn("Job {job} failed in the runner: {reason}", { job: command, reason });
      const note = new OutputSpool({ dir: files.dir });
      // A full spool is found once the job has ended: it was not killed.
      const ending = err instanceof SpoolFullError ? "" : "; the job was killed";
      await note.write(new TextEncoder().encode(`vico runner: ${reason}${ending}\n`));
      return { status: STATUS_RUNNER_FAILURE, output: note, endedByRunner: false, timedOut: false, stopSignal: false };
    }
  }
}
