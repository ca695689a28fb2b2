/**
 * The one place vico starts a job's process (through `util/command.ts`,
 * where every process starts). Each process leads its own process
 * group (so a kill reaches everything it started), its stdout and stderr go
 * to one sink in the order written, and its end is reported with shell
 * conventions: the exit code, 128+N for signal N, 127 when it cannot start.
 * When it exits, what it left in its group (or cgroup leaf) is ended before
 * its end is reported, and output still held open by a process that left
 * the group is not waited for (see docs/guarantees.md, "No process outlives
 * its job"). Every process gets a {@linkcode JOB_ID_VARIABLE} of its own, and
 * the runner's environment as {@linkcode unsetInheritedVariables} leaves it.
 * Output limits follow the one rule of runner/exec/output_limit.ts.
 *
 * Two ways to start one, with the same results: with an
 * {@linkcode RunProcessOptions.outputFile} (a path, or a file already open,
 * as a binary run's log) and where libc's `posix_spawn` can be used (see
 * runner/exec/posix_spawn.ts), the child gets its session and its output
 * file as its stdout and stderr, and the runner touches no byte of the
 * output while it runs (a run into an open file writes a file of its own,
 * copied into the open one once the run has ended, so that a process that
 * left its group never writes into the shared file); else
 * (output to a sink, FFI not available or not permitted, `--user` without
 * per-job cgroups, `VICO_SPAWN=command`) `Deno.Command` starts it through
 * `setsid(1)` and the runner pumps its output.
 *
 * @module
 */

import { dirname } from "node:path";
import { PosixSpawn, type SpawnedProcess } from "./posix_spawn.ts";
import { copyExact } from "../../io/copy_exact.ts";
import { OutputLimitError, outputLimitNote } from "./output_limit.ts";
import { SpoolFullError } from "./output_spool.ts";
import { writeAll } from "../../io/write_all.ts";
import { startProcess } from "../../util/command.ts";
import { OwnedTempDir } from "../../io/owned_temp_dir.ts";

/**
 * Receives output chunks, in order; the next chunk waits for the promise.
 * A chunk is only lent: its memory is reused once the promise settles, so a
 * sink copies what it keeps.
 */
export type OutputSink = (chunk: Uint8Array) => Promise<void>;

/** Options for {@linkcode runProcess}. */
export interface RunProcessOptions {
  /** Working directory. */
  cwd?: string;
  /**
   * Variables added to the job's environment (the runner's own are
   * inherited: see {@linkcode unsetInheritedVariables}).
   */
  env?: Readonly<Record<string, string>>;
  /** Where stdout and stderr go, merged (unless {@linkcode outputFile} is given). */
  sink?: OutputSink;
  /**
   * Where stdout and stderr go, merged, instead of a sink: this file, created
   * (or truncated) for the job; or a file open for writing, which gets the
   * job's output at its offset, after what it holds (a binary task's log,
   * shared by its runs). With `posix_spawn` the job's process writes its
   * file itself (a run into an open file writes a file of its own, added to
   * the open one once it has ended); the outcome's
   * {@linkcode ProcessOutcome.outputBytes} is the file's size.
   */
  outputFile?: string | Deno.FsFile;
  /**
   * The largest output kept: the one `--max-output` rule of
   * runner/exec/output_limit.ts. A job that writes more has its group
   * killed, its output cut to this size and followed by the note, and
   * `runProcess` throws an {@linkcode OutputLimitError} (a `RangeError`).
   * With `posix_spawn` the output file's size is measured every
   * {@linkcode OUTPUT_POLL_MS} while the job runs, and once it has ended.
   */
  maxOutputBytes?: number;
  /**
   * How to start it: `posix_spawn` where it can be used (the default), or
   * `command` (`Deno.Command`) always. The default can be set with the
   * environment variable `VICO_SPAWN=command`.
   */
  via?: "posix_spawn" | "command";
  /**
   * Aborting ends the process group: SIGTERM, then SIGKILL after
   * `killGraceMs`. The group is ended the same way when the process exits:
   * nothing it started in its group outlives it.
   */
  signal?: AbortSignal;
  /** Grace between SIGTERM and SIGKILL. @default {2000} */
  killGraceMs?: number;
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
  cgroups?: JobLeaves;
  /**
   * Where the job is written down while it runs (a `--persist` runner's
   * state directory), so that a runner restarted after a crash can end it.
   * The job starts only once its record is written.
   */
  ledger?: JobLedger;
}

/** A running job as a ledger writes it down: enough to end it from another process. */
export interface JobRecord {
  /** Its process group (its main process leads it). */
  readonly pgid: number;
  /**
   * Its {@linkcode JOB_ID_VARIABLE}, which every process of the job inherits:
   * it tells the job's group from a later one that got the same id.
   */
  readonly id: string;
  /** Its cgroup leaf, with per-job cgroups. */
  readonly cgroup?: string;
}

/** Keeps the records of running jobs (see {@linkcode RunProcessOptions.ledger}). */
export interface JobLedger {
  /** The job's process exists and has not run yet; throwing keeps it from running. */
  started(job: JobRecord): void;
  /** The job and its process group have ended. */
  ended(job: JobRecord): void;
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
  /**
   * Its output was still held open when it and its process group had ended,
   * by a process that left the group (`setsid`): vico stopped reading it.
   */
  outputAbandoned?: boolean;
  /** With {@linkcode RunProcessOptions.outputFile}: its size once the job has ended. */
  outputBytes?: number;
  /**
   * With a ledger: why the job could not be recorded, if it could not; it
   * then did not run (its gate exited 125, and a note says why).
   */
  unrecorded?: string;
  /** How it was started. */
  via?: "posix_spawn" | "command";
}

/** Status for a command that could not be started (shell convention). */
export const STATUS_CANNOT_START = 127;

/** Status for a program found but not executable (shell convention, as `setsid(1)` gives on the other path). */
export const STATUS_NOT_EXECUTABLE = 126;

const EACCES = 13;

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
  SIGCONT: 18,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/**
 * The argv that runs a job's command line exactly as `sh -c COMMAND sh`
 * would: the command is line 1 of its shell's script and `$0` is `sh`, so
 * an error reads `sh: 1: cmd: not found`. A first shell only puts stderr on
 * stdout (so that both streams reach the sink through one pipe, in exactly
 * the order the job wrote them) and execs the job's shell: one exec, no
 * fork, and no line of its own in the job's script. (`exec 2>&1; <job>` on
 * one line would lose a syntax error: the shell parses the whole line, and
 * reports it, before the redirection runs.)
 */
export function shellArgv(command: string, shell = "/bin/sh"): string[] {
  return [...MERGE_STDERR, shell, "-c", command, shell === "/bin/sh" ? "sh" : shell.slice(shell.lastIndexOf("/") + 1)];
}

/** The first shell of {@linkcode shellArgv} and {@linkcode programArgv}: stderr onto stdout, then exec. */
const MERGE_STDERR = ["/bin/sh", "-c", 'exec "$@" 2>&1', "sh"];

/** The argv without its {@linkcode MERGE_STDERR} shell, for a child whose stderr is its stdout already. */
function withoutMerge(argv: string[]): string[] {
  return MERGE_STDERR.every((arg, i) => argv[i] === arg) && argv.length > MERGE_STDERR.length
    ? argv.slice(MERGE_STDERR.length)
    : argv;
}

/**
 * The argv that runs a program file with its stderr on its stdout pipe
 * (order kept, as for {@linkcode shellArgv}). A file that starts with `#!`
 * is executed directly; any other file is run by `/bin/sh`, as shells do.
 */
export function programArgv(path: string, hasShebang: boolean): string[] {
  const argv = hasShebang ? [path] : ["/bin/sh", path];
  return [...MERGE_STDERR, ...argv];
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
  const spawner = spawnerFor(options);
  const start: Start = spawner === undefined
    ? (argv, options, leaf) => runViaCommand(argv, options, leaf)
    : typeof options.outputFile === "object"
    ? (argv, options, leaf) => runSpawnedInto(options.outputFile as Deno.FsFile, spawner, argv, options, leaf)
    : (argv, options, leaf) => runSpawned(spawner, argv, options, leaf);
  // The child's stderr is its stdout already: no shell to merge them.
  if (spawner !== undefined) argv = withoutMerge(argv);
  // Without limits, straight on: not one extra step per job.
  return options.cgroups === undefined ? start(argv, options) : runInCgroup(argv, options, options.cgroups, start);
}

type Start = (argv: string[], options: RunProcessOptions, leaf?: LeafEnd) => Promise<ProcessOutcome>;

let defaultVia: "posix_spawn" | "command" | undefined;

/** `posix_spawn` when the job's output goes to a file and nothing asks for more than it can do. */
function spawnerFor(options: RunProcessOptions): PosixSpawn | undefined {
  if (options.outputFile === undefined) return undefined;
  defaultVia ??= (() => {
    try {
      return Deno.env.get("VICO_SPAWN") === "command" ? "command" : "posix_spawn";
    } catch {
      return "posix_spawn";
    }
  })();
  if ((options.via ?? defaultVia) === "command") return undefined;
  // posix_spawn cannot change user: a cgroup's wrapper shell can (it drops to the user after entering its leaf).
  if (options.runAs !== undefined && options.cgroups === undefined) return undefined;
  const spawner = PosixSpawn.open();
  if (spawner === undefined) return undefined;
  if (options.cwd !== undefined && !spawner.canChdir) return undefined;
  return spawner;
}

/** What each aborted signal ends: one listener per signal, not one added and removed per job. */
const abortWatches = new WeakMap<AbortSignal, Set<() => void>>();

/** Calls `end` once when `signal` aborts, until the returned function is called. */
function onAbort(signal: AbortSignal | undefined, end: () => void): () => void {
  if (signal === undefined) return () => {};
  let watches = abortWatches.get(signal);
  if (watches === undefined) {
    const all = new Set<() => void>();
    watches = all;
    abortWatches.set(signal, all);
    signal.addEventListener("abort", () => {
      for (const watch of [...all]) watch();
      all.clear();
    }, { once: true });
  }
  watches.add(end);
  const mine = watches;
  return () => void mine.delete(end);
}

/** How often a job's output file is measured against {@linkcode RunProcessOptions.maxOutputBytes}. */
export const OUTPUT_POLL_MS = 50;

/** The measurements of running jobs' output files: one timer for all of them, not a timer per job. */
const outputWatches = new Set<() => void>();
let outputTimer: ReturnType<typeof setInterval> | undefined;

/**
 * Calls `measure` every {@linkcode OUTPUT_POLL_MS} (the first within that
 * time) until the returned function is called. The one timer goes once a
 * round finds no job to measure, and never keeps the process alive.
 */
function watchOutput(measure: () => void): () => void {
  outputWatches.add(measure);
  if (outputTimer === undefined) {
    outputTimer = setInterval(() => {
      if (outputWatches.size === 0) {
        clearInterval(outputTimer);
        outputTimer = undefined;
        return;
      }
      for (const watch of outputWatches) watch();
    }, OUTPUT_POLL_MS);
    Deno.unrefTimer(outputTimer);
  }
  return () => void outputWatches.delete(measure);
}

/** Adds a note at the end of the job's output, wherever it goes. */
async function addNote(options: RunProcessOptions, note: string): Promise<void> {
  const bytes = new TextEncoder().encode(note);
  if (options.outputFile === undefined) return options.sink!(bytes);
  if (typeof options.outputFile === "object") return writeAll(options.outputFile, bytes);
  using file = await Deno.open(options.outputFile, { append: true, create: true });
  await writeAll(file, bytes);
}

/**
 * The environment every job inherits, read once (`Deno.env.toObject()` for
 * every job cost about as much as the rest of starting it); see
 * {@linkcode unsetInheritedVariables}.
 */
let inherited: Readonly<Record<string, string>> | undefined;

function inheritedEnvironment(): Readonly<Record<string, string>> {
  return inherited ??= Object.freeze(Deno.env.toObject());
}

/**
 * Removes variables from the runner's environment, so that no job started
 * afterwards inherits them (a join token, `NOTIFY_SOCKET`): the one way to
 * change what jobs inherit. The environment jobs get through `posix_spawn`
 * is a snapshot taken at the first job and renewed by this call only (with
 * no names it renews it); a `Deno.env.set`/`delete` elsewhere reaches the
 * `Deno.Command` path alone.
 */
export function unsetInheritedVariables(...names: string[]): void {
  for (const name of names) Deno.env.delete(name);
  inherited = undefined;
}

/**
 * {@linkcode runProcess} in a cgroup leaf of its own: the process's wrapper
 * shell makes the leaf and enters it before exec'ing the process, and once
 * it has ended the leaf says whether the OOM killer struck, and goes.
 */
async function runInCgroup(
  argv: string[],
  options: RunProcessOptions,
  cgroups: JobLeaves,
  start: Start,
): Promise<ProcessOutcome> {
  if (options.signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM" };
  const leaf = cgroups.next();
  let finished: Promise<{ oomKilled: boolean }> | undefined;
  // Once the job's process has exited, its leaf ends all the job left, in its group or not.
  const finish = () => finished ??= leaf.finish();
  let outcome: ProcessOutcome;
  let oomKilled = false;
  try {
    // As another user, the wrapper enters the leaf as root, then drops to the user.
    outcome = await start(leaf.wrap(argv, options.runAs), { ...options, runAs: undefined }, {
      path: leaf.path,
      end: finish,
    });
  } finally {
    ({ oomKilled } = await finish());
  }
  if (!oomKilled) return outcome;
  const note = `\nvico: ${cgroups.memoryNote}\n`;
  await addNote(options, note);
  const more = outcome.outputBytes === undefined ? {} : { outputBytes: outcome.outputBytes + note.length };
  return { ...outcome, memoryExceeded: true, ...more };
}

/**
 * What {@linkcode runProcess} needs of the cgroups jobs run in: `JobCgroups`
 * (`job_cgroup.ts`) is the one. Declared here so that the process runner,
 * which that module builds on, does not import it back.
 */
export interface JobLeaves {
  /** A fresh leaf for the next job. */
  next(): JobLeaf;
  /** The note a job killed for exceeding its memory limit gets in its output. */
  readonly memoryNote: string;
}

/** One job's cgroup leaf (`JobCgroup`). */
export interface JobLeaf {
  /** The leaf's directory. */
  readonly path: string;
  /** The argv that enters the leaf (and, with `runAs`, drops to that user) before exec'ing `argv`. */
  wrap(argv: readonly string[], runAs?: { uid: number; gid: number }): string[];
  /** Ends everything left in the leaf and removes it; says whether the OOM killer struck. */
  finish(): Promise<{ oomKilled: boolean }>;
}

/** A job's cgroup leaf, for {@linkcode runDirect}: ending it ends every process in it. */
interface LeafEnd {
  readonly path: string;
  readonly end: () => Promise<unknown>;
}

/**
 * {@linkcode runProcess} through `Deno.Command`: with an output file, the
 * runner writes into it what the job's pipe brings.
 */
async function runViaCommand(argv: string[], options: RunProcessOptions, leaf?: LeafEnd): Promise<ProcessOutcome> {
  const max = options.maxOutputBytes ?? Infinity;
  const output = options.outputFile;
  if (output === undefined && max === Infinity) return runDirect(argv, options, options.sink!, leaf);
  if (options.signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM", via: "command" };
  const file = typeof output === "string"
    ? await Deno.open(output, { write: true, create: true, truncate: true, mode: 0o600 })
    : output;
  try {
    const target: OutputSink = file === undefined ? options.sink! : (chunk) => writeAll(file, chunk);
    // Bytes in the output: an open file's count from its size.
    let size = typeof output === "object" ? (await output.stat()).size : 0;
    const outcome = await runDirect(argv, options, async (chunk) => {
      if (size + chunk.length > max) {
        // The output's first `max` bytes are kept; the job goes (the sink's failure kills its group).
        if (max > size) await target(chunk.subarray(0, max - size));
        size = Math.max(size, max);
        throw new OutputLimitError(max);
      }
      size += chunk.length;
      await target(chunk);
    }, leaf).catch(async (err) => {
      if (err instanceof OutputLimitError) await target(new TextEncoder().encode("\n" + outputLimitNote(max)));
      throw err;
    });
    return file === undefined ? outcome : { ...outcome, outputBytes: size };
  } finally {
    if (typeof output === "string") file!.close();
  }
}

async function runDirect(
  argv: string[],
  options: RunProcessOptions,
  sink: OutputSink,
  leaf?: LeafEnd,
): Promise<ProcessOutcome> {
  const { signal, ledger } = options;
  if (signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM" };
  const graceMs = options.killGraceMs ?? 2000;
  const id = nextJobId();
  // With a ledger, the job waits behind a gate until its record is written.
  const gated = ledger === undefined ? argv : [...GATE, ...argv];
  let child: Deno.ChildProcess;
  try {
    const viaSetsid = SETSID !== undefined;
    child = startProcess(viaSetsid ? SETSID! : gated[0], {
      args: viaSetsid ? gated : gated.slice(1),
      cwd: options.cwd,
      env: { ...options.env, [JOB_ID_VARIABLE]: id },
      stdin: ledger === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: options.stderrOnStdout ? "null" : "piped",
      // A new session, hence a new process group led by the child.
      detached: !viaSetsid,
      ...(options.runAs === undefined ? {} : { uid: options.runAs.uid, gid: options.runAs.gid }),
    });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    await sink(new TextEncoder().encode(`vico: cannot start ${argv[0]}: ${error}\n`));
    return { status: STATUS_CANNOT_START, error, via: "command" };
  }
  const record: JobRecord = { pgid: child.pid, id, ...(leaf === undefined ? {} : { cgroup: leaf.path }) };
  const unrecorded = ledger === undefined ? undefined : await openGate(child, ledger, record);
  if (unrecorded !== undefined) {
    await sink(new TextEncoder().encode(`vico: the job was not run: cannot record it: ${unrecorded}\n`));
  }

  const watch = watchGroup(child.pid, graceMs, signal, options.timeoutMs);

  // Chunks from both pipes go to the sink one at a time, in arrival order.
  const readers = [child.stdout, ...(options.stderrOnStdout ? [] : [child.stderr])].map(pipeReader);
  let chunks = 0;
  let sinking = 0;
  let tail = Promise.resolve();
  let failure: { err: unknown } | undefined;
  const pump = async (reader: PipeReader) => {
    for (;;) {
      const value = await reader.read();
      if (value === undefined) return;
      chunks++;
      sinking++;
      tail = tail.then(() => sink(value));
      try {
        await tail;
      } finally {
        sinking--;
      }
    }
  };
  const pumped = Promise.all(readers.map(pump)).then(() => {}, (err) => {
    // The sink failed (e.g. a full disk): the job's output is lost, so is the job.
    failure ??= { err };
    signalGroup(child.pid, "SIGKILL");
    for (const reader of readers) reader.cancel().catch(() => {});
  });
  try {
    const status = await statusOf(child);
    // The job is its main process: whatever it left in its group goes with it.
    await watch.endGroup();
    // A leaf holds even what left the group: it ends it all, and the pipe closes.
    await leaf?.end().catch(() => {});
    // What the group wrote is in the pipe now; a process that left the group
    // may hold the pipe open for ever, so once it is quiet, stop reading.
    const outputAbandoned = !await drained(pumped, () => chunks, () => sinking > 0, graceMs);
    if (outputAbandoned) { for (const reader of readers) reader.cancel().catch(() => {}); }
    await pumped;
    if (failure !== undefined) throw failure.err;
    const more = {
      ...(watch.timedOut ? { timedOut: true } : {}),
      ...(outputAbandoned ? { outputAbandoned } : {}),
      ...(unrecorded !== undefined ? { unrecorded } : {}),
      via: "command" as const,
    };
    if (status.signal !== null) {
      const n = SIGNAL_NUMBERS[status.signal] ?? status.code - 128;
      return { status: (128 + n) & 0xff, signal: status.signal, ...more };
    }
    return { status: status.code & 0xff, ...more };
  } finally {
    watch.stop();
    ledger?.ended(record);
  }
}

/** How much of a pipe one read takes. */
const PIPE_CHUNK_BYTES = 64 * 1024;

/** Reads a pipe into one buffer of its own, lent to each chunk in turn. */
interface PipeReader {
  /** The next chunk (valid until the next read), or `undefined` at the end. */
  read(): Promise<Uint8Array | undefined>;
  cancel(): Promise<void>;
}

/**
 * A {@linkcode PipeReader} on a child's pipe: a BYOB reader that reuses one
 * buffer, so that a big output is not a fresh 64 KiB allocation per read
 * left for the garbage collector (a plain reader where the stream is not a
 * byte stream).
 */
function pipeReader(stream: ReadableStream<Uint8Array>): PipeReader {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    const reader = stream.getReader();
    return { read: async () => (await reader.read()).value, cancel: () => reader.cancel() };
  }
  let buffer = new ArrayBuffer(PIPE_CHUNK_BYTES);
  return {
    async read() {
      const { value, done } = await byob.read(new Uint8Array(buffer));
      if (done || value === undefined) return undefined;
      buffer = value.buffer as ArrayBuffer; // the same memory, handed back by the stream
      return value;
    },
    cancel: () => byob.cancel(),
  };
}

/**
 * {@linkcode runProcess} through `posix_spawn`: the job writes its output
 * file itself; the runner only measures it (against the limit while it
 * runs, for its size once it has ended).
 */
async function runSpawned(
  spawner: PosixSpawn,
  argv: string[],
  options: RunProcessOptions,
  leaf?: LeafEnd,
  prior = 0,
): Promise<ProcessOutcome> {
  const { signal } = options;
  if (signal?.aborted) return { status: 128 + SIGNAL_NUMBERS.SIGTERM, signal: "SIGTERM", via: "posix_spawn" };
  // The runner opens the output (the job gets it as its stdout): its size is an lseek, not a stat.
  const fd = spawner.openOutput(options.outputFile as string);
  try {
    return await runSpawnedOn(spawner, fd, argv, options, leaf, prior);
  } finally {
    spawner.closeFd(fd);
  }
}

/**
 * {@linkcode runSpawned} for output to a file already open (a binary task's
 * log, shared by its runs): the run writes a file of its own, which is
 * added to the shared one once the run has ended. Whatever a process that
 * left the run's group writes later goes to that private file (gone by
 * then), never into the shared one, nor past its limit's cut; the limit
 * counts what the shared file held before, as on the `Deno.Command` path.
 */
async function runSpawnedInto(
  shared: Deno.FsFile,
  spawner: PosixSpawn,
  argv: string[],
  options: RunProcessOptions,
  leaf?: LeafEnd,
): Promise<ProcessOutcome> {
  const before = (await shared.stat()).size;
  const own = runOutputPath();
  let outcome: ProcessOutcome | undefined;
  let failure: unknown;
  try {
    outcome = await runSpawned(spawner, argv, { ...options, outputFile: own }, leaf, before);
  } catch (err) {
    failure = err;
  }
  try {
    using file = await Deno.open(own, { read: true }).catch(() => undefined);
    if (file !== undefined) {
      // Over the limit, the run's first bytes up to it are kept and the note is written here, into the log: a
      // process that escaped the run's group shares its own file's offset and may write there after the cut.
      const overLimit = failure instanceof OutputLimitError;
      const max = options.maxOutputBytes ?? Infinity;
      const size = (await file.stat()).size;
      const kept = overLimit ? Math.min(size, Math.max(0, max - before)) : size;
      await copyExact(file, kept, (chunk) => writeAll(shared, chunk), {
        shortMessage: `The output of a run shrank while it was kept`,
      });
      if (overLimit) await writeAll(shared, new TextEncoder().encode("\n" + outputLimitNote(max)));
      if (outcome !== undefined) outcome = { ...outcome, outputBytes: before + size };
    }
  } finally {
    await Deno.remove(own).catch(() => {});
  }
  if (failure !== undefined) throw failure;
  return outcome!;
}

/** Where runs into a shared file write their own output first: one directory per process, removed at its exit. */
let runOutputDir: string | undefined;
let runOutputs = 0;

function runOutputPath(): string {
  if (runOutputDir === undefined) {
    const dir = OwnedTempDir.make("vico-run-");
    runOutputDir = dir.path;
    globalThis.addEventListener("unload", () => dir.remove());
  }
  return `${runOutputDir}/run-${++runOutputs}`;
}

async function runSpawnedOn(
  spawner: PosixSpawn,
  fd: number,
  argv: string[],
  options: RunProcessOptions,
  leaf: LeafEnd | undefined,
  prior: number,
): Promise<ProcessOutcome> {
  const { signal, ledger } = options;
  const graceMs = options.killGraceMs ?? 2000;
  const max = options.maxOutputBytes ?? Infinity;
  // The limit counts what the output held before this run (`prior`: a shared log's earlier runs).
  const room = Math.max(0, max - prior);
  const id = nextJobId();
  const child = spawner.spawn({
    // With a ledger, the job waits behind a gate until its record is written.
    argv: ledger === undefined ? argv : [...GATE, ...argv],
    baseEnv: inheritedEnvironment(),
    env: { ...options.env, [JOB_ID_VARIABLE]: id },
    outputFd: fd,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    gated: ledger !== undefined,
  });
  if (!("pid" in child)) {
    await addNote(options, `vico: cannot start ${argv[0]}: ${child.error}\n`);
    const status = child.errno === EACCES ? STATUS_NOT_EXECUTABLE : STATUS_CANNOT_START;
    return { status, error: child.error, via: "posix_spawn", outputBytes: spawner.sizeOf(fd) };
  }
  const record: JobRecord = { pgid: child.pid, id, ...(leaf === undefined ? {} : { cgroup: leaf.path }) };
  const unrecorded = ledger === undefined ? undefined : openSpawnedGate(child, ledger, record);

  const watch = watchGroup(child.pid, graceMs, signal, options.timeoutMs);
  let overLimit = false;
  let ended = false;
  const unwatch = max === Infinity ? undefined : watchOutput(() => {
    if (ended || overLimit) return;
    if (spawner.sizeOf(fd) > room) {
      // As a sink that refuses a chunk: the job's output is lost, so is the job.
      overLimit = true;
      signalGroup(child.pid, "SIGKILL");
    }
  });
  try {
    const status = await child.status;
    // The job is its main process: whatever it left in its group goes with it.
    await watch.endGroup();
    // A leaf holds even what left the group: it ends it all.
    await leaf?.end().catch(() => {});
    ended = true;
    unwatch?.();
    if (unrecorded !== undefined) {
      await addNote(options, `vico: the job was not run: cannot record it: ${unrecorded}\n`);
    }
    const outputBytes = spawner.sizeOf(fd);
    if (overLimit || outputBytes > room) {
      // The output's first `max` bytes are kept, then the note.
      signalGroup(child.pid, "SIGKILL");
      spawner.truncate(fd, room);
      await addNote(options, "\n" + outputLimitNote(max));
      throw new OutputLimitError(max);
    }
    // The job wrote its output itself: a write the full disk refused failed in the job, unseen here.
    if (spawner.fileSystemFull(fd)) throw new SpoolFullError(dirname(String(options.outputFile)));
    const more = {
      ...(watch.timedOut ? { timedOut: true } : {}),
      ...(unrecorded !== undefined ? { unrecorded } : {}),
      outputBytes,
      via: "posix_spawn" as const,
    };
    if (status.signal !== null) {
      const name = SIGNAL_NAMES.get(status.signal);
      return { status: (128 + status.signal) & 0xff, ...(name === undefined ? {} : { signal: name }), ...more };
    }
    return { status: status.code! & 0xff, ...more };
  } finally {
    ended = true;
    unwatch?.();
    watch.stop();
    ledger?.ended(record);
  }
}

const SIGNAL_NAMES = new Map(Object.entries(SIGNAL_NUMBERS).map(([name, n]) => [n, name]));

/**
 * How a `Deno.Command` child ended. Deno (2.9) cannot name the real-time
 * signals and throws `TypeError: Invalid signal: N` for a child one of them
 * killed; its number is in that message only (no code says it), so it is
 * read from there: 128+N, as on the other path (255 if it cannot be read).
 */
async function statusOf(child: Deno.ChildProcess): Promise<{ code: number; signal: Deno.Signal | null }> {
  try {
    return await child.status;
  } catch (err) {
    const n = /Invalid signal: ([0-9]{1,3})\b/.exec(err instanceof Error ? err.message : String(err))?.[1];
    return { code: n === undefined ? 255 : 128 + Number(n), signal: null };
  }
}

/** {@linkcode openGate} for a spawned job. */
function openSpawnedGate(child: SpawnedProcess, ledger: JobLedger, record: JobRecord): string | undefined {
  try {
    ledger.started(record);
  } catch (err) {
    child.gate!.close();
    return err instanceof Error ? err.message : String(err);
  }
  child.gate!.open();
  return undefined;
}

/**
 * The gate in front of a job run with a ledger: its first shell waits for
 * one line on stdin (the runner writes it once the job's record is down),
 * then execs the job with stdin from `/dev/null`. A runner that dies first
 * closes the pipe, and the job never runs.
 */
const GATE = ["/bin/sh", "-c", 'read -r _ || exit 125; exec "$@" </dev/null', "sh"];

/** Records the job and lets it run; the reason when it could not be recorded (the job then exits 125 unrun). */
async function openGate(child: Deno.ChildProcess, ledger: JobLedger, record: JobRecord): Promise<string | undefined> {
  const writer = child.stdin.getWriter();
  try {
    ledger.started(record);
  } catch (err) {
    // Not recorded: the job does not run (its gate sees the end of its stdin).
    await writer.close().catch(() => {});
    return err instanceof Error ? err.message : String(err);
  }
  try {
    await writer.write(new TextEncoder().encode("\n"));
  } catch {
    // The gate is gone already (killed): its status says so.
  } finally {
    await writer.close().catch(() => {});
  }
  return undefined;
}

/** The environment variable every process of a job inherits: the job's id, unique to this runner's life. */
export const JOB_ID_VARIABLE = "VICO_JOB_ID";

/** The variable that gives each job its worker slot on its runner, 1..N (`{%}`). */
export const SLOT_VARIABLE = "VICO_SLOT";

/** The variable that gives each job its sequence number (its line in the manager's list; a template's `{#}`). */
export const SEQ_VARIABLE = "VICO_SEQ";

const LIFE = crypto.randomUUID().slice(0, 8);
let jobSeq = 0;

function nextJobId(): string {
  return `${Deno.pid}.${LIFE}.${++jobSeq}`;
}

/**
 * Ends a process group as a job's is ended: SIGTERM (and SIGCONT), then
 * SIGKILL after `graceMs`; resolves when it is gone or SIGKILL is sent.
 */
export function endProcessGroup(pgid: number, graceMs: number): Promise<void> {
  return groupEnder(pgid, graceMs)();
}

/**
 * Ends a process group, once however often it is called: SIGTERM (and
 * SIGCONT, so that a stopped process acts on it), then SIGKILL after the
 * grace, or as soon as no member runs but zombies (see
 * `PosixSpawn.groupRunning`); resolves when the group is gone, or once
 * SIGKILL is sent. An empty group (the common case: a job that left
 * nothing) costs one kill(2).
 */
/** What ends a running job's group: its stop (the abort signal) and its `--timeout`. */
interface GroupWatch {
  /** Ends the group (SIGTERM, then SIGKILL after the grace), once however often called. */
  readonly endGroup: () => Promise<void>;
  /** Whether the deadline ended it. */
  readonly timedOut: boolean;
  /** Stops watching (the job is over). */
  stop(): void;
}

/** Ends the group of `pgid` when `signal` aborts or when `timeoutMs` has passed. */
function watchGroup(
  pgid: number,
  graceMs: number,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): GroupWatch {
  const endGroup = groupEnder(pgid, graceMs);
  const unwatchAbort = onAbort(signal, () => void endGroup());
  let timedOut = false;
  const deadline = timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    void endGroup();
  }, timeoutMs);
  return {
    endGroup,
    get timedOut() {
      return timedOut;
    },
    stop() {
      unwatchAbort();
      clearTimeout(deadline);
    },
  };
}

function groupEnder(pgid: number, graceMs: number): () => Promise<void> {
  let ending: Promise<void> | undefined;
  return () =>
    ending ??= (async () => {
      if (!signalGroup(pgid, "SIGTERM")) return;
      signalGroup(pgid, "SIGCONT");
      const until = performance.now() + graceMs;
      for (let wait = 5; performance.now() < until; wait = Math.min(wait * 2, 100)) {
        await sleep(Math.min(wait, until - performance.now()));
        // SIGCONT as the probe: harmless to a running process.
        if (!signalGroup(pgid, "SIGCONT")) return;
        // It reaches zombies too: past the first probe, a group left with
        // nothing but zombies (orphans an init has not reaped yet) is over;
        // SIGKILL all the same (the look at /proc is not atomic: a member
        // that forked meanwhile may have been missed).
        if (wait > 5 && PosixSpawn.open()?.groupRunning(pgid) === false) break;
      }
      signalGroup(pgid, "SIGKILL");
    })();
}

/**
 * Waits for the output to end after the job's group is gone: true once it
 * has, false when it stayed quiet (no chunk, none being written) for
 * {@linkcode DRAIN_IDLE_MS}, or still runs after `maxMs`: a process that left
 * the group holds it.
 */
async function drained(
  pumped: Promise<void>,
  chunks: () => number,
  busy: () => boolean,
  maxMs: number,
): Promise<boolean> {
  const until = performance.now() + Math.max(maxMs, DRAIN_IDLE_MS);
  for (;;) {
    const before = chunks();
    if (await settlesWithin(pumped, DRAIN_IDLE_MS)) return true;
    if ((chunks() === before && !busy()) || performance.now() >= until) return false;
  }
}

/** How long the output of a finished job may stay quiet before vico stops reading it. */
export const DRAIN_IDLE_MS = 100;

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    p.then(() => true, () => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends a signal to a process group; false when the group is gone (or not ours to signal). */
function signalGroup(pgid: number, sig: Deno.Signal): boolean {
  // Never kill(-1) or kill(0): those reach every process, or the runner's own group.
  if (!(pgid > 1)) return false;
  // Through libc where it can: a group that is gone is then a return value, not an exception built per job.
  const spawner = PosixSpawn.open();
  const number = SIGNAL_NUMBERS[sig];
  if (spawner !== undefined && number !== undefined) return spawner.kill(-pgid, number);
  try {
    Deno.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}
