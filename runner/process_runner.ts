/**
 * The one place vico starts a process. Each process leads its own process
 * group (so a kill reaches everything it started), its stdout and stderr go
 * to one sink in the order written, and its end is reported with shell
 * conventions: the exit code, 128+N for signal N, 127 when it cannot start.
 *
 * @module
 */

import type { JobCgroups } from "./job_cgroup.ts";

/** Receives output chunks, in order; the next chunk waits for the promise. */
export type OutputSink = (chunk: Uint8Array) => Promise<void>;

/** Options for {@linkcode runProcess}. */
export interface RunProcessOptions {
  /** Working directory. */
  cwd?: string;
  /** Where stdout and stderr go, merged. */
  sink: OutputSink;
  /** Aborting ends the process group: SIGTERM, then SIGKILL after `killGraceMs`. */
  signal?: AbortSignal;
  /** Grace between SIGTERM and SIGKILL. @default {2000} */
  killGraceMs?: number;
  /** Kill whatever is left in the process group once the process exits. @default {false} */
  killGroupOnExit?: boolean;
  /** End the process group (as for an abort) after this many milliseconds. */
  timeoutMs?: number;
  /** Run as this user and group (the runner must be root); supplementary groups are dropped. */
  runAs?: { uid: number; gid: number };
  /**
   * The argv sends its own stderr to stdout (as {@linkcode shellArgv} and
   * {@linkcode programArgv} do): read stdout only. One pipe and one stream
   * fewer per job, about a fifth of the cost of starting a trivial job.
   */
  stderrOnStdout?: boolean;
  /**
   * Run in a fresh cgroup v2 leaf with the runner's per-job limits
   * (`--job-memory`, `--job-cpus`), removed once the process has ended.
   */
  cgroups?: JobCgroups;
}

/** How a process ended. */
export interface ProcessOutcome {
  /** Exit status, 0-255, with shell conventions for signals and failure to start. */
  status: number;
  /** Signal name if a signal ended it. */
  signal?: string;
  /** Why it could not start, if it could not. */
  error?: string;
  /** It ran past its time limit and was ended. */
  timedOut?: boolean;
  /** The kernel's OOM killer ended it: over its `--job-memory` (a note was added to its output). */
  memoryExceeded?: boolean;
}

/** Status for a command that could not be started (shell convention). */
export const STATUS_CANNOT_START = 127;

/**
 * Status for a job the runner had to give up on: its output could not be
 * kept (over the size limit, or the spool failed). Like `timeout`'s 125,
 * it marks a failure of the tool around the job rather than of the job.
 */
export const STATUS_RUNNER_FAILURE = 125;

const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGXCPU: 24,
  SIGXFSZ: 25,
};

/**
 * The argv that runs a job's command line exactly as `sh -c COMMAND sh`
 * would: the command is line 1 of its shell's script and `$0` is `sh`, so
 * an error reads `sh: 1: cmd: not found`. A first shell only puts stderr on
 * stdout (so that both streams reach the sink through one pipe, in exactly
 * the order the job wrote them) and execs the job's shell: one exec, no
 * fork, and no line of its own in the job's script.
 */
export function shellArgv(command: string): string[] {
  return ["/bin/sh", "-c", 'exec /bin/sh -c "$1" sh 2>&1', "sh", command];
}

/**
 * The argv that runs a program file with its stderr on its stdout pipe
 * (order kept, as for {@linkcode shellArgv}). A file that starts with `#!`
 * is executed directly; any other file is run by `/bin/sh`, as shells do.
 */
export function programArgv(path: string, hasShebang: boolean): string[] {
  const argv = hasShebang ? [path] : ["/bin/sh", path];
  return ["/bin/sh", "-c", 'exec "$@" 2>&1', "sh", ...argv];
}

/**
 * `setsid(1)`, when the system has it. A job must lead a process group of its
 * own (so a timeout or stop ends everything it started), and Deno's
 * `detached: true` gets one by forking the whole runner process, about
 * 2 ms a job and serialised; `setsid` gets it in the child for the price of
 * one small exec (it does not fork: a fresh child never leads a group).
 */
export const SETSID: string | undefined = ["/usr/bin/setsid", "/bin/setsid"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/**
 * Runs `argv` in a new process group, streaming its output to the sink.
 *
 * @example
 * ```ts ignore
 * const chunks: Uint8Array[] = [];
 * const { status } = await runProcess(shellArgv("echo hi"), {
 *   sink: async (c) => void chunks.push(c.slice()),
 * });
 * ```
 */
export function runProcess(argv: string[], options: RunProcessOptions): Promise<ProcessOutcome> {
  // Without limits, straight on: not one extra step per job.
  return options.cgroups === undefined ? runDirect(argv, options) : runInCgroup(argv, options, options.cgroups);
}

/**
 * {@linkcode runProcess} in a cgroup leaf of its own: the process's wrapper
 * shell makes the leaf and enters it before exec'ing the process, and once
 * it has ended the leaf says whether the OOM killer struck, and goes.
 */
async function runInCgroup(argv: string[], options: RunProcessOptions, cgroups: JobCgroups): Promise<ProcessOutcome> {
  if (options.signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM" };
  const leaf = cgroups.next();
  let outcome: ProcessOutcome;
  let oomKilled = false;
  try {
    // As another user, the wrapper enters the leaf as root, then drops to the user.
    outcome = await runDirect(leaf.wrap(argv, options.runAs), { ...options, runAs: undefined });
  } finally {
    ({ oomKilled } = await leaf.finish());
  }
  if (!oomKilled) return outcome;
  await options.sink(new TextEncoder().encode(`\nvico: ${cgroups.memoryNote}\n`));
  return { ...outcome, memoryExceeded: true };
}

async function runDirect(argv: string[], options: RunProcessOptions): Promise<ProcessOutcome> {
  const { signal, sink } = options;
  if (signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM" };
  let child: Deno.ChildProcess;
  try {
    const viaSetsid = SETSID !== undefined;
    child = new Deno.Command(SETSID ?? argv[0], {
      args: viaSetsid ? argv : argv.slice(1),
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: options.stderrOnStdout ? "null" : "piped",
      // A new session, hence a new process group led by the child.
      detached: !viaSetsid,
      ...(options.runAs === undefined ? {} : { uid: options.runAs.uid, gid: options.runAs.gid }),
    }).spawn();
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    await sink(new TextEncoder().encode(`vico: cannot start ${argv[0]}: ${error}\n`));
    return { status: STATUS_CANNOT_START, error };
  }

  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let ending = false;
  const onAbort = () => {
    if (ending) return;
    ending = true;
    killGroup(child.pid, "SIGTERM");
    killTimer = setTimeout(() => killGroup(child.pid, "SIGKILL"), options.killGraceMs ?? 2000);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let timedOut = false;
  const deadline = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    onAbort();
  }, options.timeoutMs);

  // Chunks from both pipes go to the sink one at a time, in arrival order.
  let tail = Promise.resolve();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      tail = tail.then(() => sink(chunk));
      await tail;
    }
  };
  try {
    const [status] = await Promise.all([
      child.status,
      pump(child.stdout),
      options.stderrOnStdout ? undefined : pump(child.stderr),
    ]);
    await tail;
    const more = timedOut ? { timedOut } : {};
    if (status.signal !== null) {
      const n = SIGNAL_NUMBERS[status.signal] ?? status.code - 128;
      return { status: (128 + n) & 0xff, signal: status.signal, ...more };
    }
    return { status: status.code & 0xff, ...more };
  } catch (err) {
    // The sink failed (e.g. a full disk): the job's output is lost, so is the job.
    killGroup(child.pid, "SIGKILL");
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    clearTimeout(killTimer);
    clearTimeout(deadline);
    // Whatever the job left behind in its group goes with it.
    if (ending || options.killGroupOnExit) killGroup(child.pid, "SIGKILL");
  }
}

function killGroup(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(-pid, sig);
  } catch {
    // The group is already gone.
  }
}
